'use strict';

// Tests of the Kubernetes API stand-in's Leases (__test__/kube-standin/leases.js): writes
// with optimistic concurrency as the API answers them, watched, and refused by RBAC.

const { test, describe } = require('node:test');
const assert = require('node:assert/strict');
const { withStandin } = require('./kube-standin/client');

const NS = 'default';

describe('leases', () => {
  const LEASES = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`;
  // A write with a JSON body, as the kube client sends one.
  const write = (kube, method, path, body) => fetch(new URL(path, kube.url), {
    method, headers: { authorization: `Bearer ${kube.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body)
  }).then(async res => ({ status: res.status, body: await res.json() }));

  test('create, read and update with optimistic concurrency, each write watched', () => withStandin({}, async (kube, get, watch) => {
    const w = await watch(`${LEASES}?watch=true&resourceVersion=${kube.resourceVersion}`);
    const lease = { metadata: { name: 'web-master' }, spec: { holderIdentity: '10.0.0.1', leaseDurationSeconds: 15, leaseTransitions: 0 } };
    const created = await write(kube, 'POST', LEASES, lease);
    assert.equal(created.status, 201);
    assert.equal(created.body.kind, 'Lease');
    assert.equal(created.body.metadata.namespace, NS);
    assert.ok(created.body.metadata.uid && created.body.metadata.resourceVersion);
    assert.equal((await w.next()).type, 'ADDED');

    const again = await write(kube, 'POST', LEASES, lease);
    assert.deepEqual([again.status, again.body.reason], [409, 'AlreadyExists']);
    const { status, body } = await get(`${LEASES}/web-master`);
    assert.deepEqual([status, body.spec.holderIdentity], [200, '10.0.0.1']);

    const taken = { ...created.body, spec: { ...created.body.spec, holderIdentity: '10.0.0.2', leaseTransitions: 1 } };
    const updated = await write(kube, 'PUT', `${LEASES}/web-master`, taken);
    assert.equal(updated.status, 200);
    assert.notEqual(updated.body.metadata.resourceVersion, created.body.metadata.resourceVersion);
    assert.equal(updated.body.metadata.uid, created.body.metadata.uid);
    const modified = await w.next();
    assert.deepEqual([modified.type, modified.object.spec.holderIdentity], ['MODIFIED', '10.0.0.2']);

    const stale = await write(kube, 'PUT', `${LEASES}/web-master`, taken);
    assert.deepEqual([stale.status, stale.body.reason], [409, 'Conflict'], 'written over a version it did not read');
    const unversioned = await write(kube, 'PUT', `${LEASES}/web-master`, { metadata: { name: 'web-master' }, spec: {} });
    assert.equal(unversioned.status, 422);
    const missing = await write(kube, 'PUT', `${LEASES}/other`, { metadata: { name: 'other', resourceVersion: '1' }, spec: {} });
    assert.equal(missing.status, 404, 'an update creates no Lease');
    const invalid = await write(kube, 'POST', LEASES, { metadata: { name: 'bad' }, spec: { leaseDurationSeconds: 0 } });
    assert.equal(invalid.status, 422);
    w.close();
  }));

  test('forbidden as the Role says, and in another namespace', () => withStandin({}, async (kube) => {
    const lease = { metadata: { name: 'web-master' }, spec: {} };
    assert.equal((await write(kube, 'POST', '/apis/coordination.k8s.io/v1/namespaces/other/leases', lease)).status, 403);
    kube.forbid('leases');
    const denied = await write(kube, 'POST', LEASES, lease);
    assert.deepEqual([denied.status, denied.body.reason], [403, 'Forbidden']);
    assert.match(denied.body.message, /cannot create resource "leases" in API group "coordination.k8s.io"/);
  }));
});

