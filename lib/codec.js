'use strict';

// Bodies across the native boundary: a kind number (0 nothing, 1 text, 2 JSON) and a string.
const NONE = 0;
const TEXT = 1;
const JSON_KIND = 2;

// A value to send: a string travels raw, `undefined` as no body, anything else as JSON
// (0.5.1 dropped `0`, `false`, `null` and `true`; they arrive intact here).
function encode (value) {
  if (value === undefined) return [NONE, null];
  if (typeof value === 'string') return [TEXT, value];
  const json = JSON.stringify(value);
  return json === undefined ? [NONE, null] : [JSON_KIND, json];
}

// A reply body, as 0.5.1's sender decoded it: raw text for a string request, parsed
// JSON for a JSON reply otherwise, `undefined` for nothing. A text reply stays a string
// (0.5.1 parsed it when it looked like JSON, turning the string "12" into 12).
function decodeReply (kind, body, rawText) {
  if (kind === NONE || body === null || body === undefined) return undefined;
  if (rawText || kind === TEXT) return body;
  try {
    return JSON.parse(body);
  } catch (_) {
    return body;
  }
}

// A received message body, as 0.5.1's handlers got it.
function decodeMessage (kind, body) {
  if (kind === JSON_KIND) return JSON.parse(body);
  return body || '';
}

module.exports = { encode, decodeReply, decodeMessage, NONE, TEXT, JSON: JSON_KIND };
