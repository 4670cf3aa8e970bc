'use strict';

// State of the stand-in: the pods of one Service, the Endpoints and EndpointSlice
// objects derived from them, the Leases clients write, the global resourceVersion, and
// the event history that watches replay from.
//
// resourceVersion semantics, as in etcd + the apiserver watch cache:
// - one counter for all resources; every object write takes the next value,
//   so one pod change that rewrites three objects advances it by three;
// - a list answers with the current value; items carry the value of their last write;
// - a DELETED event carries the object's last state stamped with the deletion's value;
// - `historyStart` is the oldest value a watch can resume from: a watch from
//   R >= historyStart gets every event with rv > R; an older R is "too old"
//   (410 Expired), with the message "too old resource version: R (historyStart)".

const { EventEmitter } = require('node:events');
const crypto = require('node:crypto');
const {
  RESOURCES, timestamp, normalizePod, uidFor, generateSuffix, buildEndpoints, buildSlice,
} = require('./objects');

const FAMILIES = ['IPv4', 'IPv6'];

class Store extends EventEmitter {
  constructor(opts = {}) {
    super();
    this.setMaxListeners(0);
    this.namespace = opts.namespace || 'default';
    this.appName = opts.appName || 'web';
    this.sliceSize = opts.sliceSize || 100;
    this.historyLimit = opts.historyLimit || 1000;
    this.dualStack = Boolean(opts.dualStack);
    this.rv = Number(opts.initialResourceVersion || 1000);
    this.historyStart = this.rv;
    this.history = []; // { rv, resource, type, object, prev }
    this.pods = new Map(); // name -> raw pod (as given, merged with patches)
    this.objects = { endpoints: new Map(), endpointslices: new Map(), leases: new Map() };
    this.families = { IPv4: [], IPv6: [] }; // slice records, in creation order
    this.sliceSeq = 0;
    const created = timestamp();
    this.ctx = {
      namespace: this.namespace,
      appName: this.appName,
      messagingPort: opts.messagingPort || 45892,
      serviceUid: crypto.randomUUID(),
      endpointsUid: crypto.randomUUID(),
      creationTimestamp: created,
    };
    this._sync(); // the Service exists from the start: its Endpoints and a placeholder slice
  }

  get resourceVersion() {
    return String(this.rv);
  }

  // ---- pods -------------------------------------------------------------

  /** Pods with defaults applied, in insertion order. */
  podList() {
    return [...this.pods.values()].map((p) => normalizePod(p, this.appName));
  }

  _find(nameOrIp) {
    const key = typeof nameOrIp === 'object' && nameOrIp ? (nameOrIp.name || nameOrIp.ip) : nameOrIp;
    if (this.pods.has(key)) return key;
    for (const [name, raw] of this.pods) {
      const pod = normalizePod(raw, this.appName);
      if (pod.ip === key || pod.ipv6 === key) return name;
    }
    throw new Error(`no such pod: ${key}`);
  }

  setPods(pods) {
    if (!Array.isArray(pods)) throw new TypeError('setPods expects an array');
    const next = new Map();
    for (const raw of pods) next.set(normalizePod(raw, this.appName).name, { ...raw });
    this.pods = next;
    return this._sync();
  }

  addPod(pod) {
    const { name } = normalizePod(pod, this.appName);
    this.pods.set(name, { ...pod });
    return this._sync();
  }

  removePod(nameOrIp) {
    this.pods.delete(this._find(nameOrIp));
    return this._sync();
  }

  updatePod(nameOrIp, patch) {
    const name = this._find(nameOrIp);
    const merged = { ...this.pods.get(name), ...patch, name };
    normalizePod(merged, this.appName); // validate before applying
    this.pods.set(name, merged);
    return this._sync();
  }

  setDualStack(on) {
    this.dualStack = Boolean(on);
    return this._sync();
  }

  // ---- history ----------------------------------------------------------

  /** Forgets the event history: any watch from an older resourceVersion gets 410. */
  compact() {
    this.history = [];
    this.historyStart = this.rv;
  }

  /** Events of `resource` after `rv`, or null when `rv` is older than the history. */
  eventsSince(resource, rv) {
    if (rv < this.historyStart) return null;
    return this.history.filter((e) => e.rv > rv && e.resource === resource);
  }

  /**
   * The objects of `resource` as they were at `rv` (for resourceVersionMatch=Exact),
   * or null when that state is no longer known. Undoes later history entries.
   */
  stateAt(resource, rv) {
    if (rv < this.historyStart || rv > this.rv) return null;
    const state = new Map(this.objects[resource]);
    for (let i = this.history.length - 1; i >= 0 && this.history[i].rv > rv; i--) {
      const e = this.history[i];
      if (e.resource !== resource) continue;
      if (e.prev) state.set(e.prev.metadata.name, e.prev);
      else state.delete(e.object.metadata.name);
    }
    return state;
  }

  /** Current objects of `resource`, sorted by name as a list returns them. */
  list(resource, state = this.objects[resource]) {
    return [...state.values()].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  }

  _write(resource, type, body) {
    this.rv += 1;
    const map = this.objects[resource];
    const prev = map.get(body.metadata.name) || null;
    const object = { ...body, metadata: withResourceVersion(body.metadata, String(this.rv)) };
    if (type === 'DELETED') map.delete(body.metadata.name);
    else map.set(body.metadata.name, object);
    const entry = { rv: this.rv, resource, type, object, prev };
    this.history.push(entry);
    while (this.history.length > this.historyLimit) this.historyStart = this.history.shift().rv;
    this.emit('event', entry); // watches send synchronously, so order is preserved
  }

  /** Writes `body` as the next version of its object, whatever it was (an API write). */
  putObject(resource, body) {
    this._write(resource, this.objects[resource].has(body.metadata.name) ? 'MODIFIED' : 'ADDED', body);
  }

  /** Writes `body` if it differs from the stored object (ignoring resourceVersion). */
  _put(resource, body) {
    const cur = this.objects[resource].get(body.metadata.name);
    if (!cur) return this._write(resource, 'ADDED', body);
    const strip = (o) => JSON.stringify({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
    if (strip(cur) !== strip(body)) this._write(resource, 'MODIFIED', body);
  }

  // ---- controllers ------------------------------------------------------

  /** Recomputes every derived object from the pods, as the two controllers would. */
  _sync() {
    const pods = this.podList();
    this._put('endpoints', buildEndpoints(this.ctx, pods));
    for (const family of FAMILIES) {
      const enabled = family === 'IPv4' || this.dualStack;
      const members = family === 'IPv6' ? pods.filter((p) => p.ipv6) : pods;
      this._syncSlices(family, enabled ? members : null);
    }
    return this.resourceVersion;
  }

  /**
   * Packs pods into slices of at most `sliceSize` endpoints, touching as few slices
   * as possible: pods stay in their slice; new pods fill slices with room, then
   * new slices; emptied slices are deleted, except that a family keeps one slice
   * (the placeholder, reused in place as the real reconciler does). `pods === null`
   * removes the family altogether (dual-stack switched off).
   */
  _syncSlices(family, pods) {
    let records = this.families[family];
    const deleted = [];
    if (pods === null) {
      deleted.push(...records);
      records = [];
    } else {
      const byName = new Map(pods.map((p) => [p.name, p]));
      const placed = new Set();
      for (const r of records) {
        r.pods = r.pods.filter((n) => byName.has(n));
        r.pods.forEach((n) => placed.add(n));
      }
      const pending = pods.map((p) => p.name).filter((n) => !placed.has(n));
      for (const r of records) {
        while (r.pods.length < this.sliceSize && pending.length) r.pods.push(pending.shift());
      }
      while (pending.length) records.push(this._newRecord(family, pending.splice(0, this.sliceSize)));
      if (records.length === 0) records.push(this._newRecord(family, []));
      const nonEmpty = records.filter((r) => r.pods.length > 0);
      const keep = nonEmpty.length ? nonEmpty : [records[0]];
      deleted.push(...records.filter((r) => !keep.includes(r)));
      records = keep;
      for (const r of records) {
        const body = buildSlice(this.ctx, r, r.pods.map((n) => byName.get(n)));
        const cur = this.objects.endpointslices.get(r.name);
        if (cur && sameSlice(cur, body)) continue;
        if (cur) {
          r.generation += 1; // the EndpointSlice strategy bumps generation on change
          body.metadata.generation = r.generation;
        }
        this._put('endpointslices', body);
      }
    }
    this.families[family] = records;
    for (const r of deleted) {
      const last = this.objects.endpointslices.get(r.name);
      if (last) this._write('endpointslices', 'DELETED', last);
    }
  }

  _newRecord(family, podNames) {
    this.sliceSeq += 1;
    let name;
    do {
      name = `${this.appName}-${generateSuffix(`${this.ctx.serviceUid}/${this.sliceSeq}/${name || ''}`)}`;
    } while (this.objects.endpointslices.has(name) || this._recordNames().includes(name));
    return {
      family,
      name,
      uid: uidFor(`${this.ctx.serviceUid}/slice/${name}`),
      creationTimestamp: timestamp(),
      generation: 1,
      pods: podNames,
    };
  }

  _recordNames() {
    return FAMILIES.flatMap((f) => this.families[f].map((r) => r.name));
  }
}

/** metadata with resourceVersion set, placed after uid as the apiserver orders it. */
function withResourceVersion(metadata, rv) {
  const out = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (k === 'resourceVersion') continue;
    out[k] = v;
    if (k === 'uid') out.resourceVersion = rv;
  }
  if (!out.resourceVersion) out.resourceVersion = rv;
  return out;
}

/** Slice equality ignoring resourceVersion and generation. */
function sameSlice(a, b) {
  const strip = (o) => JSON.stringify({
    ...o,
    metadata: { ...o.metadata, resourceVersion: undefined, generation: undefined },
  });
  return strip(a) === strip(b);
}

module.exports = { Store, RESOURCES };
