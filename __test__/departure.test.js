'use strict';

// Leaving the endpoints is not dying. A pod removed from them while it is alive (the core
// Endpoints API does so at once when the pod is deleted; an app that never calls close()
// stays alive) answers the calls in flight to it: the sender pings it on their
// multiplexed connection, and the calls wait while it answers. A pod that is gone without
// a word (frozen with SIGSTOP: its kernel keeps the connection open, nothing answers)
// has the calls waiting on it failed within the departure timeout (1 s) of its removal.
// A 0.5.1 pod, which cannot be pinged, has the departure timeout to answer them.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { startStandin } = require('./kube-standin');
const { startCluster, eventually } = require('./helpers/cluster');
const { startLegacyServer } = require('./helpers/legacy-peer');

const IPS = ['127.0.0.91', '127.0.0.92', '127.0.0.93'];
const LEGACY = '127.0.0.94';
let standin;
let cluster;

before(async () => {
  standin = await startStandin({ appName: 'web' });
  cluster = await startCluster(standin, IPS, { env: { DEBUG: 'node-swarm-kb:messages' }, captureStderr: true });
});

after(async () => {
  if (cluster) await cluster.stop();
  if (standin) await standin.close();
});

// `n` calls from `from` to `to` that its handler holds until the test opens its gates,
// on the multiplexed connection (the first send, over HTTP/1.1, learns the offer); their
// outcomes, wrapped so that awaiting this does not wait for them.
async function held (from, to, n) {
  await from.request('send', { to: to.ip, topic: 'whoami', data: {} });
  await from.request('send', { to: to.ip, topic: 'whoami', data: {} });
  const calls = Array.from({ length: n }, () => ({ to: to.ip, topic: 'hold', data: {} }));
  const outcomes = from.request('many', { calls }, 30000);
  await eventually(async () => await to.request('gates') === n, 10000, `${n} calls held on ${to.ip}`);
  return { outcomes };
}

test('a pod removed from the endpoints while alive answers the calls in flight to it', async () => {
  const [a, b] = cluster.nodes;
  const { outcomes } = await held(a, b, 8);
  standin.removePod(b.ip);
  await a.waitEvent(e => e.event === 'nodeRemoved' && e.ip === b.ip, 10000, 'the removal');
  // Twice probed and found alive: the calls outlived the departure timeout.
  const waits = new RegExp(`${b.ip.replace(/\./g, '\\.')} left but answers: its calls wait[^]*${b.ip.replace(/\./g, '\\.')} left but answers`);
  await eventually(() => waits.test(a.stderr), 10000, 'two probes answered');
  assert.strictEqual(await b.request('open'), 8);
  const settled = await outcomes;
  assert.deepStrictEqual(settled, Array(8).fill({ value: b.ip }), 'every call answered');
});

test('a frozen pod removed from the endpoints has its calls failed within the departure timeout', async () => {
  const [a, , c] = cluster.nodes;
  const { outcomes } = await held(a, c, 4);
  process.kill(c.child.pid, 'SIGSTOP');
  try {
    standin.removePod(c.ip);
    const removed = await a.waitEvent(e => e.event === 'nodeRemoved' && e.ip === c.ip, 10000, 'the removal');
    const settled = await outcomes;
    const ms = Date.now() - removed.at;
    console.log(`a frozen pod: its calls failed ${ms} ms after its removal was seen`);
    for (const outcome of settled) assert.match(outcome.message, /left the cluster before answering; the message may have been delivered/);
    assert.ok(ms < 1500, `failed within the departure timeout: ${ms} ms`);
  } finally {
    process.kill(c.child.pid, 'SIGCONT');
  }
});

test('a 0.5.1 pod removed from the endpoints has the departure timeout to answer the calls in flight to it', async () => {
  const a = cluster.nodes[0];
  const gates = [];
  const legacy = await startLegacyServer({
    host: LEGACY,
    port: cluster.port,
    handlers: { hold: [() => new Promise(resolve => gates.push(resolve))] }
  });
  try {
    standin.addPod({ name: 'web-legacy', ip: LEGACY });
    await a.waitEvent(e => e.event === 'nodeAdded' && e.ip === LEGACY, 10000, 'the 0.5.1 pod');
    const calls = [0, 1].map(() => ({ to: LEGACY, topic: 'hold', data: {} }));
    const outcomes = a.request('many', { calls }, 20000);
    await eventually(() => gates.length === 2, 10000, 'both calls held');
    standin.removePod(LEGACY);
    const removed = await a.waitEvent(e => e.event === 'nodeRemoved' && e.ip === LEGACY, 10000, 'the removal');
    gates[0]('answered');
    const settled = await outcomes;
    const ms = Date.now() - removed.at;
    console.log(`a 0.5.1 pod: the call it left unanswered failed ${ms} ms after its removal was seen`);
    assert.deepStrictEqual(settled[0], { value: 'answered' }, 'answered within the departure timeout');
    assert.match(settled[1].message, /left the cluster before answering; the message may have been delivered/);
    assert.ok(ms >= 500 && ms < 1500, `failed after the departure timeout, not at once: ${ms} ms`);
  } finally {
    gates.forEach(open => open('late'));
    await new Promise(resolve => legacy.close(resolve));
  }
});
