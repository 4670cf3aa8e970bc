'use strict';

// Writes of coordination.k8s.io/v1 Leases, as the apiserver answers them: create (201,
// or 409 AlreadyExists), update by name (200; 404 when absent, as Leases are not created
// by an update; 409 Conflict when the body's resourceVersion is not the stored one; 422
// without one), each validated as the API validates a Lease. Reads and watches are the
// stand-in's generic ones.

const crypto = require('node:crypto');
const { RESOURCES, timestamp } = require('./objects');
const S = require('./status');

const INFO = RESOURCES.leases;
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

// A 422 Invalid for `field` of Lease `name`.
function invalid (name, field, detail) {
  return S.status(422, 'Invalid', `Lease.coordination.k8s.io "${name}" is invalid: ${field}: ${detail}`, {
    name, group: INFO.group, kind: 'Lease', causes: [{ reason: 'FieldValueInvalid', message: detail, field }],
  });
}

// What is wrong with the body of a write of Lease `name` in `namespace`, or null.
function problem (body, namespace, name) {
  if (!body || typeof body !== 'object' || !body.metadata || typeof body.metadata !== 'object') {
    return [400, S.badRequest('the body is not a Lease object')];
  }
  if (body.kind !== undefined && body.kind !== INFO.kind) return [400, S.badRequest(`the kind ${body.kind} is not Lease`)];
  if (body.metadata.namespace !== undefined && body.metadata.namespace !== namespace) {
    return [400, S.badRequest('the namespace of the provided object does not match the namespace sent on the request')];
  }
  if (!name) return [422, invalid('', 'metadata.name', 'Required value: name or generateName is required')];
  if (!NAME.test(name) || name.length > 253) return [422, invalid(name, 'metadata.name', `Invalid value: "${name}"`)];
  const spec = body.spec || {};
  if (spec.leaseDurationSeconds !== undefined && spec.leaseDurationSeconds !== null && !(spec.leaseDurationSeconds > 0)) {
    return [422, invalid(name, 'spec.leaseDurationSeconds', `Invalid value: ${spec.leaseDurationSeconds}: must be greater than 0`)];
  }
  if (spec.leaseTransitions !== undefined && spec.leaseTransitions !== null && !(spec.leaseTransitions >= 0)) {
    return [422, invalid(name, 'spec.leaseTransitions', `Invalid value: ${spec.leaseTransitions}: must be greater than or equal to 0`)];
  }
  return null;
}

// The stored form of `body`: TypeMeta, and the metadata the server owns.
function stored (body, namespace, name, previous) {
  const { name: _n, namespace: _ns, uid: _u, resourceVersion: _rv, creationTimestamp: _c, ...rest } = body.metadata;
  return {
    kind: INFO.kind,
    apiVersion: INFO.apiVersion,
    metadata: {
      ...rest,
      name,
      namespace,
      uid: previous ? previous.metadata.uid : crypto.randomUUID(),
      creationTimestamp: previous ? previous.metadata.creationTimestamp : timestamp(),
    },
    spec: body.spec || {},
  };
}

// POST to the collection: [status, body].
function createLease (store, namespace, body) {
  const name = body && body.metadata && body.metadata.name;
  const wrong = problem(body, namespace, name);
  if (wrong) return wrong;
  if (store.objects.leases.has(name)) {
    return [409, S.status(409, 'AlreadyExists', `leases.${INFO.group} "${name}" already exists`, { name, group: INFO.group, kind: INFO.plural })];
  }
  store.putObject('leases', stored(body, namespace, name));
  return [201, store.objects.leases.get(name)];
}

// PUT to `name`: [status, body].
function updateLease (store, namespace, name, body) {
  const wrong = problem(body, namespace, name);
  if (wrong) return wrong;
  if (body.metadata.name !== undefined && body.metadata.name !== name) {
    return [400, S.badRequest(`the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`)];
  }
  const current = store.objects.leases.get(name);
  if (!current) return [404, S.objectNotFound(INFO, name)];
  const rv = body.metadata.resourceVersion;
  if (!rv) return [422, invalid(name, 'metadata.resourceVersion', 'Invalid value: 0x0: must be specified for an update')];
  if (rv !== current.metadata.resourceVersion) {
    return [409, S.status(409, 'Conflict',
      `Operation cannot be fulfilled on leases.${INFO.group} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      { name, group: INFO.group, kind: INFO.plural })];
  }
  store.putObject('leases', stored(body, namespace, name, current));
  return [200, store.objects.leases.get(name)];
}

module.exports = { createLease, updateLease };
