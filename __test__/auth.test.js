'use strict';

// Opt-in authentication of pod traffic: with SWARM_SECRET, requests are signed
// (HMAC-SHA256 over method, path, timestamp, nonce, destination, content type and body)
// and anything else gets 401.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const http = require('node:http');
const { startStandin } = require('./kube-standin');
const { startCluster, NodeProcess } = require('./helpers/cluster');

const SECRET = 'shared-secret-of-the-test';
const IPS = ['127.0.0.71', '127.0.0.72'];
let standin;
let cluster;

before(async () => {
  standin = await startStandin({ appName: 'web' });
  cluster = await startCluster(standin, IPS, { env: { SWARM_SECRET: SECRET } });
});

after(async () => {
  if (cluster) await cluster.stop();
  if (standin) await standin.close();
});

// A request signed as docs/security.md says, so the format is checked independently: for
// `signedFor` (the pod it names), sent to `to`, as `contentType` (signed as `signedAs`).
function signedPost (topic, body, {
  secret = SECRET, timestamp = Date.now(), nonce = crypto.randomBytes(16).toString('hex'),
  to = IPS[1], signedFor = to, contentType = 'application/json', signedAs = contentType
} = {}) {
  const path = `/${topic}`;
  const mac = crypto.createHmac('sha256', secret);
  for (const part of ['POST', path, String(timestamp), nonce, `${signedFor}:${cluster.port}`, signedAs]) mac.update(`${part}\n`);
  mac.update(body);
  const headers = {
    'content-type': contentType,
    'x-swarm-timestamp': String(timestamp),
    'x-swarm-nonce': nonce,
    'x-swarm-signature': mac.digest('hex')
  };
  return post(topic, body, headers, to);
}

function post (topic, body, headers = {}, to = IPS[1]) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: to, port: cluster.port, method: 'POST', path: `/${topic}`, headers }, res => {
      let text = '';
      res.on('data', c => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: text, headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('nodes sharing the secret talk as usual', async () => {
  const [a, b] = cluster.nodes;
  assert.strictEqual(await a.request('send', { to: b.ip, topic: 'whoami', data: {} }), b.ip);
  const keys = Array.from({ length: 50 }, (_, i) => `s-${i}`);
  assert.deepStrictEqual(await a.request('execMany', { name: 'where', keys }), await a.request('owners', { keys }));
});

test('unsigned, wrongly signed, stale and replayed requests get 401', async () => {
  assert.strictEqual((await post('whoami', '{}', { 'content-type': 'application/json' })).status, 401);
  assert.strictEqual((await signedPost('whoami', '{}', { secret: 'another' })).status, 401);
  assert.strictEqual((await signedPost('whoami', '{}', { timestamp: Date.now() - 5 * 60000 })).status, 401);
  const first = await signedPost('whoami', '{}');
  assert.strictEqual(first.status, 200);
  assert.strictEqual(first.body, IPS[1]);
  assert.strictEqual((await post('whoami', '{}', first.headers)).status, 401, 'the same signed request again');
  const task = await signedPost('_task', JSON.stringify({ task: 'where', args: ['x'] }));
  assert.strictEqual(task.status, 200, 'a signed task runs');
  assert.strictEqual((await post('_task', JSON.stringify({ task: 'where', args: ['x'] }), { 'content-type': 'application/json' })).status, 401, 'an unsigned one does not');
});

test('a request signed for one pod runs on no other, and one resent with another content type runs nowhere', async () => {
  const task = JSON.stringify({ task: 'where', args: ['moved'] });
  const forA = await signedPost('_task', task, { to: IPS[1], signedFor: IPS[0] });
  assert.strictEqual(forA.status, 401, 'signed for A, sent to B');
  assert.match(forA.body, /bad signature/);
  const asText = await signedPost('whoami', '{}', { contentType: 'text/plain; charset=utf-8', signedAs: 'application/json' });
  assert.strictEqual(asText.status, 401, 'signed as JSON, sent as text');
  // Refused for its signature, a request does not use up its nonce: the genuine one runs.
  const nonce = crypto.randomBytes(16).toString('hex');
  assert.strictEqual((await signedPost('whoami', '{}', { nonce, signedFor: IPS[0] })).status, 401);
  assert.strictEqual((await signedPost('whoami', '{}', { nonce })).status, 200);
});

test('during a rollout, a node that only signs still answers unsigned requests', async () => {
  standin.addPod({ name: 'web-rolling', ip: '127.0.0.74' });
  const rolling = new NodeProcess('127.0.0.74', {
    KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(cluster.port),
    SWARM_SECRET: SECRET, SWARM_REQUIRE_SIGNATURES: 'false'
  });
  cluster.nodes.push(rolling);
  await rolling.waitEvent(e => e.event === 'ready', 20000, 'ready');
  const unsigned = await new Promise((resolve, reject) => {
    http.request({ host: '127.0.0.74', port: cluster.port, method: 'POST', path: '/whoami' }, res => { res.resume(); resolve(res.statusCode); })
      .on('error', reject).end();
  });
  assert.strictEqual(unsigned, 200);
  assert.strictEqual(await rolling.request('send', { to: IPS[0], topic: 'whoami', data: {} }), IPS[0], 'and signs its own');
});

test('a node with another secret is refused by the others', async () => {
  standin.addPod({ name: 'web-intruder', ip: '127.0.0.73' });
  const intruder = new NodeProcess('127.0.0.73', {
    KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(cluster.port), SWARM_SECRET: 'wrong'
  });
  cluster.nodes.push(intruder);
  await intruder.waitEvent(e => e.event === 'ready', 20000, 'ready');
  await assert.rejects(intruder.request('send', { to: IPS[0], topic: 'whoami', data: {} }), /401/);
});
