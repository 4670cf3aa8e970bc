'use strict';

// Kubernetes in production, through the facade and real processes: TLS verified against
// the CA, the service-account folder, a rotated token, RBAC either way.
const { test, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { startStandin } = require('./kube-standin');
const { NodeProcess, freePort, eventually } = require('./helpers/cluster');
const { makeCertificates } = require('./helpers/certs');

const trusted = makeCertificates('trusted-ca');
const stranger = makeCertificates('stranger-ca');
const cleanups = [];

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  for (const dir of [trusted.dir, stranger.dir]) fs.rmSync(dir, { recursive: true, force: true });
});

async function standin (opts = {}) {
  const s = await startStandin(Object.assign({ appName: 'web' }, opts));
  cleanups.push(() => s.close());
  return s;
}

async function node (ip, env, opts) {
  const n = new NodeProcess(ip, Object.assign({ SWARM_PORT: String(await freePort()) }, env), opts);
  cleanups.push(() => n.kill());
  return n;
}

const explicit = (s, extra) => Object.assign({ KUBE_URL: s.url, KUBE_TOKEN: s.token, KUBE_NS: s.namespace }, extra);
const ready = n => n.waitEvent(e => e.event === 'ready', 20000, 'ready');
const error = (n, pattern) => n.waitEvent(e => e.event === 'error' && pattern.test(e.message), 20000, `an error ${pattern}`);

test('TLS to the API server is verified against the given CA', async () => {
  const s = await standin({ tls: trusted });
  s.addPod({ name: 'web-0', ip: '127.0.0.61' });
  const n = await node('127.0.0.61', explicit(s, { KUBE_CA_FILE: path.join(trusted.dir, 'ca.crt') }));
  assert.deepStrictEqual((await ready(n)).nodes, ['127.0.0.61']);
});

test('a server certificate from another CA is refused with an error event, not ignored', async () => {
  const s = await standin({ tls: trusted });
  s.addPod({ name: 'web-0', ip: '127.0.0.62' });
  const n = await node('127.0.0.62', explicit(s, { KUBE_CA_FILE: path.join(stranger.dir, 'ca.crt') }));
  await error(n, /certificate|UnknownIssuer|tls|TLS/);
  assert.ok(!n.events.some(e => e.event === 'ready'), 'not ready, and not standalone');
});

test('skipping TLS verification is an explicit option, and it is logged', async () => {
  const s = await standin({ tls: trusted });
  s.addPod({ name: 'web-0', ip: '127.0.0.63' });
  const n = await node('127.0.0.63', explicit(s, { KUBE_CA_FILE: path.join(stranger.dir, 'ca.crt'), KUBE_INSECURE: '1' }), { captureStderr: true });
  await ready(n);
  assert.match(n.stderr, /TLS verification of the Kubernetes API server is disabled/);
});

test('in a pod: the service-account folder and KUBERNETES_SERVICE_HOST/PORT, then a rotated token', async () => {
  const s = await standin({ tls: trusted, token: 'first-token' });
  const folder = fs.mkdtempSync(path.join(trusted.dir, 'sa-'));
  fs.writeFileSync(path.join(folder, 'token'), 'first-token\n'); // trimmed, as client-go does
  fs.writeFileSync(path.join(folder, 'namespace'), s.namespace);
  fs.copyFileSync(path.join(trusted.dir, 'ca.crt'), path.join(folder, 'ca.crt'));
  s.addPod({ name: 'web-0', ip: '127.0.0.64' });
  const n = await node('127.0.0.64', {
    KUBE_FOLDER: folder, KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(s.port)
  });
  await ready(n);

  // The kubelet rotates the projected token; the old one stops working.
  fs.writeFileSync(path.join(folder, 'token'), 'second-token');
  s.setToken('second-token');
  s.endWatches();
  s.addPod({ name: 'web-1', ip: '127.0.0.65' });
  // The file is checked on every request, so the reconnecting watch uses the new token.
  await n.waitEvent(e => e.event === 'nodeAdded' && e.ip === '127.0.0.65', 10000, 'the change seen with the new token');
});

test('RBAC: with neither resource allowed, one error names the missing permission; endpoints alone work', async () => {
  const s = await standin();
  s.forbid('endpointslices');
  s.forbid('endpoints');
  s.addPod({ name: 'web-0', ip: '127.0.0.66' });
  const n = await node('127.0.0.66', explicit(s), { captureStderr: true });
  await error(n, /grant get\/list\/watch on endpointslices\.discovery\.k8s\.io/);
  assert.ok(!n.events.some(e => e.event === 'ready'), 'standalone is not assumed');
  s.forbid('endpoints', false);
  await ready(n);
  await eventually(() => /watching endpoints/.test(n.stderr), 10000, 'the log naming the source');
  assert.match(n.stderr, /grant get\/list\/watch on endpointslices/);
  assert.strictEqual(n.events.filter(e => e.event === 'error').length, 1, 'one error for the whole outage');
});

// An API server that accepts connections and never answers (overloaded, or behind a
// broken proxy): each request gives up after 10 s, so the pod says so instead of waiting
// for ever, and keeps trying.
const NO_ANSWER = /no answer from the API server within 10 s/;

test('a hanging API server at the start: one error within 15 s, logged; ready once it answers', async () => {
  const s = await standin();
  s.addPod({ name: 'web-0', ip: '127.0.0.67' });
  s.setHang(true);
  const started = Date.now();
  const n = await node('127.0.0.67', explicit(s), { captureStderr: true });
  const hung = await n.waitEvent(e => e.event === 'error', 15000, 'the error of the hanging API');
  assert.match(hung.message, NO_ANSWER);
  console.log(`hanging API at the start: error after ${hung.at - started} ms`);
  await eventually(() => NO_ANSWER.test(n.stderr), 5000, 'the log naming it');
  s.setHang(false);
  assert.deepStrictEqual((await ready(n)).nodes, ['127.0.0.67']);
  assert.strictEqual(n.events.filter(e => e.event === 'error').length, 1, 'one error for the whole hang');
});

test('a hanging API server mid-run: one error within 15 s, the topology holds, changes flow when it answers', async () => {
  const s = await standin();
  s.addPod({ name: 'web-0', ip: '127.0.0.68' });
  s.addPod({ name: 'web-1', ip: '127.0.0.69' });
  const n = await node('127.0.0.68', explicit(s));
  await ready(n);
  await s.waitForWatch('endpointslices');
  s.setHang(true);
  const hung = Date.now();
  const e = await n.waitEvent(e => e.event === 'error', 15000, 'the error of the hanging API');
  assert.match(e.message, NO_ANSWER);
  console.log(`hanging API mid-run: error after ${e.at - hung} ms`);
  assert.deepStrictEqual((await n.request('nodes')).nodes.sort(), ['127.0.0.68', '127.0.0.69'], 'the topology holds');
  s.setHang(false);
  s.addPod({ name: 'web-2', ip: '127.0.0.70' });
  await n.waitEvent(e => e.event === 'nodeAdded' && e.ip === '127.0.0.70', 5000, 'the change after the hang');
});

// The port a node listens on is free again: nothing of it is left running.
function portIsFree (ip, port) {
  return new Promise(resolve => {
    const server = require('node:net').createServer();
    server.once('error', () => resolve(false));
    server.listen(port, ip, () => server.close(() => resolve(true)));
  });
}

test('kubernetes.initTimeout: init() rejects with ERR_SWARM_KUBERNETES naming the cause, and its node stops', async () => {
  const s = await standin();
  s.forbid('endpointslices');
  s.forbid('endpoints');
  s.addPod({ name: 'web-0', ip: '127.0.0.71' });
  const port = await freePort();
  const n = await node('127.0.0.71', explicit(s, { KUBE_INIT_TIMEOUT: '2000', SWARM_PORT: String(port) }));
  const failed = await n.waitEvent(e => e.event === 'initFailed', 10000, 'init() to fail');
  assert.strictEqual(failed.code, 'ERR_SWARM_KUBERNETES');
  assert.match(failed.message, /init\(\) did not finish within 2000 ms: .*grant get\/list\/watch on endpointslices/);
  await eventually(() => portIsFree('127.0.0.71', port), 10000, 'the port released');
});

test('close() during a pending init() rejects it with ERR_SWARM_CLOSED, without an error event', async () => {
  const s = await standin();
  s.addPod({ name: 'web-0', ip: '127.0.0.72' });
  s.setHang(true);
  const port = await freePort();
  const n = await node('127.0.0.72', explicit(s, { SWARM_PORT: String(port) }));
  await s.waitFor(stats => stats.hanging >= 1, 10000);
  assert.strictEqual(await n.request('close'), 'closed');
  const failed = await n.waitEvent(e => e.event === 'initFailed', 5000, 'init() to fail');
  assert.strictEqual(failed.code, 'ERR_SWARM_CLOSED');
  assert.ok(await portIsFree('127.0.0.72', port), 'the port released');
  assert.ok(!n.events.some(e => e.event === 'error'), 'closing is not an error');
});

test('a pod whose IP is not among the endpoints (a wrong appName or selector) is warned about, once', async () => {
  const s = await standin();
  s.addPod({ name: 'web-0', ip: '127.0.0.75' });
  const n = await node('127.0.0.76', explicit(s), { captureStderr: true });
  assert.deepStrictEqual((await ready(n)).nodes, ['127.0.0.75']);
  const warning = /none of this pod's IPs \(127\.0\.0\.76\) is among the endpoints watched yet; if it does not join, check appName/;
  await eventually(() => warning.test(n.stderr), 5000, 'the warning');
  s.addPod({ name: 'web-1', ip: '127.0.0.77' });
  await n.waitEvent(e => e.event === 'nodeAdded' && e.ip === '127.0.0.77', 5000, 'a later change');
  assert.strictEqual(n.stderr.split(warning).length - 1, 1, 'said once');
});
