'use strict';

// Label and field selectors, parsed the way the kube-apiserver parses them
// (k8s.io/apimachinery/pkg/labels and .../fields), reduced to what a test needs.
//
// Label selector grammar (comma-separated requirements, all must hold):
//   key=value  key==value  key!=value      equality / inequality
//   key  !key                              existence / non-existence
//   key in (a,b)  key notin (a,b)          set-based
//   key>1  key<1                           numeric comparison
// Subtle, and kept: `key!=value` and `key notin (...)` also match objects that
// do not carry the label at all.

const KEY_RE = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const VALUE_RE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

class SelectorError extends Error {}

/** Splits on commas that are not inside parentheses. */
function splitRequirements(text) {
  const parts = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts.map((p) => p.trim());
}

function checkKey(key, raw) {
  if (!KEY_RE.test(key) || key.length > 316) {
    throw new SelectorError(`unable to parse requirement: invalid label key "${key}" in "${raw}"`);
  }
}

function checkValue(value, raw) {
  if (!VALUE_RE.test(value) || value.length > 63) {
    throw new SelectorError(`unable to parse requirement: invalid label value "${value}" in "${raw}"`);
  }
}

function parseRequirement(raw) {
  let m;
  if ((m = /^!\s*(\S+)$/.exec(raw))) {
    checkKey(m[1], raw);
    return { key: m[1], op: '!' };
  }
  if ((m = /^(\S+?)\s+(in|notin)\s*\((.*)\)$/.exec(raw))) {
    checkKey(m[1], raw);
    const values = m[3].split(',').map((v) => v.trim());
    values.forEach((v) => checkValue(v, raw));
    return { key: m[1], op: m[2], values };
  }
  if ((m = /^([^!=<>\s]+)\s*(!=|==|=)\s*(\S*)$/.exec(raw))) {
    checkKey(m[1], raw);
    checkValue(m[3], raw);
    return { key: m[1], op: m[2] === '==' ? '=' : m[2], values: [m[3]] };
  }
  if ((m = /^([^!=<>\s]+)\s*(<|>)\s*(-?\d+)$/.exec(raw))) {
    checkKey(m[1], raw);
    return { key: m[1], op: m[2], values: [m[3]] };
  }
  if ((m = /^([^!=<>\s()]+)$/.exec(raw))) {
    checkKey(m[1], raw);
    return { key: m[1], op: 'exists' };
  }
  throw new SelectorError(`unable to parse requirement: "${raw}"`);
}

function matchRequirement(req, labels) {
  const has = Object.prototype.hasOwnProperty.call(labels, req.key);
  const value = has ? String(labels[req.key]) : undefined;
  switch (req.op) {
    case 'exists': return has;
    case '!': return !has;
    case '=': return has && value === req.values[0];
    case '!=': return !has || value !== req.values[0];
    case 'in': return has && req.values.includes(value);
    case 'notin': return !has || !req.values.includes(value);
    case '>': return has && /^-?\d+$/.test(value) && Number(value) > Number(req.values[0]);
    case '<': return has && /^-?\d+$/.test(value) && Number(value) < Number(req.values[0]);
    default: return false;
  }
}

/**
 * Parses a label selector string. Returns `(labels) => boolean`.
 * An empty or absent selector matches everything. Throws SelectorError.
 */
function parseLabelSelector(text) {
  if (text == null || String(text).trim() === '') return () => true;
  const reqs = splitRequirements(String(text)).map((raw) => {
    if (raw === '') throw new SelectorError(`unable to parse requirement: empty requirement in "${text}"`);
    return parseRequirement(raw);
  });
  return (labels) => reqs.every((r) => matchRequirement(r, labels || {}));
}

// Field selectors: the apiserver supports only a few fields per resource; for
// Endpoints and EndpointSlice these are metadata.name and metadata.namespace
// (operators =, ==, !=). Anything else is a 400 "field label not supported".
const FIELD_GETTERS = {
  'metadata.name': (obj) => obj.metadata.name,
  'metadata.namespace': (obj) => obj.metadata.namespace,
};

/** Parses a field selector string. Returns `(object) => boolean`. Throws SelectorError. */
function parseFieldSelector(text) {
  if (text == null || String(text).trim() === '') return () => true;
  const reqs = String(text).split(',').map((raw) => {
    const m = /^\s*([^!=\s]+)\s*(!=|==|=)\s*(.*?)\s*$/.exec(raw);
    if (!m) throw new SelectorError(`invalid selector: '${text}'; can't understand '${raw}'`);
    const get = FIELD_GETTERS[m[1]];
    if (!get) throw new SelectorError(`field label not supported: ${m[1]}`);
    return { get, neg: m[2] === '!=', value: m[3] };
  });
  return (obj) => reqs.every((r) => (r.get(obj) === r.value) !== r.neg);
}

module.exports = { parseLabelSelector, parseFieldSelector, SelectorError };
