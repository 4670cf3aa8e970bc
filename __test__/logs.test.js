'use strict';

// `DEBUG=node-swarm-kb*` reads as what the node did: our records in our namespaces, the
// libraries' steps (kube, hyper, tower) only under `node-swarm-kb:trace` when DEBUG names
// it; and errors say what is wrong in words, with a hint where a setting is the cause.
const { test, after } = require('node:test');
const assert = require('node:assert');
const { startStandin } = require('./kube-standin');
const { NodeProcess, freePort } = require('./helpers/cluster');

const cleanups = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function standin () {
  const s = await startStandin({ appName: 'web' });
  cleanups.push(() => s.close());
  s.addPod({ name: 'web-0', ip: '127.0.0.97' });
  return s;
}

async function node (s, env) {
  const n = new NodeProcess('127.0.0.97', Object.assign({
    KUBE_URL: s.url, KUBE_TOKEN: s.token, KUBE_NS: s.namespace, SWARM_PORT: String(await freePort())
  }, env), { captureStderr: true });
  cleanups.push(() => n.kill());
  return n;
}

// A start, a task run and a close, with `debug` as DEBUG: the lines logged.
async function story (debug) {
  const n = await node(await standin(), { DEBUG: debug });
  await n.waitEvent(e => e.event === 'ready', 20000, 'ready');
  await n.request('exec', { name: 'where', args: ['k'] });
  // `short` times out for its caller after 200 ms while its run waits at its gate.
  await assert.rejects(n.request('exec', { name: 'short', args: ['k'] }), /timed out/);
  await n.request('open');
  await n.request('close');
  await n.kill();
  return n.stderr.split('\n').filter(Boolean);
}

test('DEBUG=node-swarm-kb* tells what the node did, without the libraries\' steps', async () => {
  const lines = await story('node-swarm-kb*');
  for (const said of [/Listening on 127\.0\.0\.97:/, /Registering task where: timeout 30000 ms, not serialized/,
    /watching endpointslices/, /Ready with 1 nodes/, /Executing task where/, /Task short timed out for its caller/,
    /Tasks closed/]) {
    assert.ok(lines.some(line => said.test(line)), `a line ${said}`);
  }
  const noise = lines.filter(line => /\[trace\]|node-swarm-kb:trace|already registered|=\S*"\w/.test(line));
  assert.deepStrictEqual(noise, [], 'no library steps, no false news, no garbled fields');
  for (const line of lines) assert.match(line, /^\S+ node-swarm-kb(:\w+)? /, 'every line in a namespace of ours');
});

test('the libraries\' steps show under node-swarm-kb:trace when DEBUG names it', async () => {
  const lines = await story('node-swarm-kb,node-swarm-kb:trace');
  assert.ok(lines.some(line => / node-swarm-kb:trace \[(trace|debug)\] /.test(line)), 'kube\'s or hyper\'s records');
  assert.ok(!lines.some(line => / node-swarm-kb:(kubernetes|messages|tasks) /.test(line)), 'only the namespaces named');
});

test('a wrong token and a plain-HTTP API given as HTTPS say so in words', async () => {
  const s = await standin();
  const wrong = await node(s, { KUBE_TOKEN: 'wrong' });
  const unauthorized = await wrong.waitEvent(e => e.event === 'error', 20000, 'the error');
  assert.match(unauthorized.message, /endpointslices\.discovery\.k8s\.io: 401 Unauthorized \(Unauthorized\)$/);
  assert.doesNotMatch(wrong.stderr, /Status \{|ListMeta/, 'no Rust dump');
  const tls = await node(s, { KUBE_URL: s.url.replace('http:', 'https:') });
  const mismatch = await tls.waitEvent(e => e.event === 'error', 20000, 'the error');
  assert.match(mismatch.message, /is the API server plain HTTP\? then set kubernetes\.noSSL/);
});
