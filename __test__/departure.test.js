'use strict';

// Leaving the endpoints is not dying. A pod removed from them while it is alive (the core
// Endpoints API does so at once when the pod is deleted; an app that never calls close()
// stays alive) answers the calls in flight to it: the sender pings it on their
// multiplexed connection, and the calls wait while it answers. A pod that is gone without
// a word (frozen with SIGSTOP: its kernel keeps the connection open, nothing answers)
// has the calls waiting on it failed within the departure timeout (1 s) of its removal.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { startStandin } = require('./kube-standin');
const { startCluster, eventually } = require('./helpers/cluster');

const IPS = ['127.0.0.91', '127.0.0.92', '127.0.0.93'];
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
