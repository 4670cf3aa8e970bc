'use strict';

// The API objects, shaped the way the kube-apiserver serves them and the way the
// k8s-openapi structs (Endpoints, EndpointSlice, ObjectMeta, ObjectReference)
// deserialize them. Builders return objects WITHOUT metadata.resourceVersion;
// the store stamps it when it writes them.

const crypto = require('node:crypto');

const RESOURCES = {
  endpoints: {
    kind: 'Endpoints',
    listKind: 'EndpointsList',
    apiVersion: 'v1',
    group: '',
    plural: 'endpoints',
  },
  endpointslices: {
    kind: 'EndpointSlice',
    listKind: 'EndpointSliceList',
    apiVersion: 'discovery.k8s.io/v1',
    group: 'discovery.k8s.io',
    plural: 'endpointslices',
  },
  leases: {
    kind: 'Lease',
    listKind: 'LeaseList',
    apiVersion: 'coordination.k8s.io/v1',
    group: 'coordination.k8s.io',
    plural: 'leases',
  },
};

// The endpoints controller caps an Endpoints object at 1000 addresses.
const ENDPOINTS_MAX_CAPACITY = 1000;
const OVER_CAPACITY_ANNOTATION = 'endpoints.kubernetes.io/over-capacity';

/** RFC 3339 with second precision, as metav1.Time serializes. */
function timestamp(date = new Date()) {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** A pod as given by a test, with defaults applied. `serving` follows `ready` unless set. */
function normalizePod(raw, appName) {
  if (!raw || typeof raw !== 'object') throw new TypeError('a pod must be an object');
  if (typeof raw.ip !== 'string' || raw.ip === '') throw new TypeError('a pod needs an ip');
  const name = raw.name || `${appName}-${raw.ip.replace(/[.:]/g, '-')}`;
  const ready = raw.ready !== undefined ? Boolean(raw.ready) : true;
  return {
    name,
    ip: raw.ip,
    ipv6: raw.ipv6 || ipv6For(raw.ip),
    ready,
    terminating: Boolean(raw.terminating),
    serving: raw.serving !== undefined ? Boolean(raw.serving) : ready,
    nodeName: raw.nodeName || 'node-1',
    zone: raw.zone || 'zone-a',
    uid: raw.uid || uidFor(`pod/${name}`),
  };
}

/** fd00::<the IPv4 address as the low 32 bits>, in canonical (Go net.IP) form. */
function ipv6For(ip) {
  const octets = ip.split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255))) return undefined;
  const hi = (octets[0] << 8) | octets[1];
  const lo = (octets[2] << 8) | octets[3];
  return hi === 0 ? `fd00::${lo.toString(16)}` : `fd00::${hi.toString(16)}:${lo.toString(16)}`;
}

/** A stable, UUID-shaped uid derived from a seed (pods keep their uid across updates). */
function uidFor(seed) {
  const h = crypto.createHash('sha1').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// generateName suffixes use this alphabet (k8s.io/apimachinery/pkg/util/rand):
// no vowels, no confusable characters.
const SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function generateSuffix(seed) {
  const bytes = crypto.createHash('sha1').update(seed).digest();
  let s = '';
  for (let i = 0; i < 5; i++) s += SUFFIX_ALPHABET[bytes[i] % SUFFIX_ALPHABET.length];
  return s;
}

function targetRef(pod, namespace) {
  return { kind: 'Pod', name: pod.name, namespace, uid: pod.uid };
}

function servicePorts(ctx) {
  return [{ name: 'messaging', port: ctx.messagingPort, protocol: 'TCP' }];
}

/**
 * The Endpoints object of the Service, as the endpoints controller writes it.
 * Subtle, as in the real controller:
 * - a terminating pod (deletionTimestamp set) is left out entirely, it is in
 *   neither `addresses` nor `notReadyAddresses` (publishNotReadyAddresses off);
 * - addresses are sorted by IP string (bytes), as endpoints.SortSubsets does;
 * - empty arrays are omitted, and with no addresses at all there is no `subsets`;
 * - past 1000 addresses the object is truncated (not-ready first) and annotated.
 */
function buildEndpoints(ctx, pods) {
  const byIp = (a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0);
  const toAddress = (p) => ({ ip: p.ip, nodeName: p.nodeName, targetRef: targetRef(p, ctx.namespace) });
  const live = pods.filter((p) => !p.terminating);
  let ready = live.filter((p) => p.ready).sort(byIp).map(toAddress);
  let notReady = live.filter((p) => !p.ready).sort(byIp).map(toAddress);

  const metadata = {
    name: ctx.appName,
    namespace: ctx.namespace,
    uid: ctx.endpointsUid,
    creationTimestamp: ctx.creationTimestamp,
    labels: { app: ctx.appName },
  };
  if (ready.length + notReady.length > ENDPOINTS_MAX_CAPACITY) {
    if (ready.length >= ENDPOINTS_MAX_CAPACITY) {
      ready = ready.slice(0, ENDPOINTS_MAX_CAPACITY);
      notReady = [];
    } else {
      notReady = notReady.slice(0, ENDPOINTS_MAX_CAPACITY - ready.length);
    }
    metadata.annotations = { [OVER_CAPACITY_ANNOTATION]: 'truncated' };
  }

  const obj = { kind: 'Endpoints', apiVersion: 'v1', metadata };
  if (ready.length || notReady.length) {
    const subset = {};
    if (ready.length) subset.addresses = ready;
    if (notReady.length) subset.notReadyAddresses = notReady;
    subset.ports = servicePorts(ctx);
    obj.subsets = [subset];
  }
  return obj;
}

/**
 * One EndpointSlice, as the endpointslice controller writes it.
 * Subtle, as in the real controller:
 * - terminating pods stay in the slice with ready=false, serving=<pod ready>,
 *   terminating=true; all three conditions are always written;
 * - a slice with no endpoints (the placeholder kept when a Service has no pods)
 *   is served with `"endpoints": null` and `"ports": null`, not `[]`: the field has
 *   no omitempty and empty lists come back from storage as nil
 *   (kubernetes/kubernetes#135968). k8s-openapi reads null as an empty Vec.
 */
function buildSlice(ctx, record, pods) {
  const endpoints = pods.map((p) => ({
    addresses: [record.family === 'IPv6' ? p.ipv6 : p.ip],
    conditions: { ready: p.ready && !p.terminating, serving: p.serving, terminating: p.terminating },
    nodeName: p.nodeName,
    targetRef: targetRef(p, ctx.namespace),
    zone: p.zone,
  }));
  return {
    kind: 'EndpointSlice',
    apiVersion: 'discovery.k8s.io/v1',
    metadata: {
      name: record.name,
      generateName: `${ctx.appName}-`,
      namespace: ctx.namespace,
      uid: record.uid,
      generation: record.generation,
      creationTimestamp: record.creationTimestamp,
      labels: {
        app: ctx.appName,
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        'kubernetes.io/service-name': ctx.appName,
      },
      ownerReferences: [{
        apiVersion: 'v1',
        kind: 'Service',
        name: ctx.appName,
        uid: ctx.serviceUid,
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    addressType: record.family,
    endpoints: endpoints.length ? endpoints : null,
    ports: endpoints.length ? servicePorts(ctx) : null,
  };
}

/** A BOOKMARK event's object: only kind, apiVersion and metadata.resourceVersion. */
function bookmarkObject(resource, resourceVersion, annotations) {
  const info = RESOURCES[resource];
  const metadata = { resourceVersion: String(resourceVersion) };
  if (annotations) metadata.annotations = annotations;
  return { kind: info.kind, apiVersion: info.apiVersion, metadata };
}

module.exports = {
  RESOURCES,
  ENDPOINTS_MAX_CAPACITY,
  OVER_CAPACITY_ANNOTATION,
  timestamp,
  normalizePod,
  ipv6For,
  uidFor,
  generateSuffix,
  buildEndpoints,
  buildSlice,
  bookmarkObject,
};
