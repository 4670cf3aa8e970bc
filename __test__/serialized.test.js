'use strict';

// A serialized task's queue at full speed: calls from another pod for one key of a task
// whose handler returns a plain value run back to back, as the calls arrive, not one
// per wake-up of the JavaScript thread nor one per call into it; and a queue that keeps
// growing still lets the event loop run its timers. This process is one pod, a fixture process the other.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { startStandin } = require('./kube-standin');
const { NodeProcess, freePort, eventually } = require('./helpers/cluster');

const OURS = '127.0.0.85';
const PEER = '127.0.0.86';
const swarm = require('..');
let standin;
let peer;
const runs = [];
const keysSeen = new Set();
const gate = {};
const chain = { runs: 0, limit: 0, whenTimerFired: null };

before(async () => {
  standin = await startStandin({ appName: 'web' });
  standin.addPod({ name: 'web-0', ip: OURS });
  standin.addPod({ name: 'web-1', ip: PEER });
  const port = await freePort();
  // Registered by the fixture too, which calls them: it returns its IP there.
  // The first run waits for the peer's 'open' message, so that the other calls queue.
  swarm.tasks.register('whereInOrder', (key, i) => {
    runs.push(i);
    keysSeen.add(key);
    return runs.length > 1 ? i : new Promise(resolve => { gate.open = () => resolve(i); });
  }, { maxQueueLength: 64 });
  swarm.messages.on('open', () => gate.open());
  swarm.tasks.register('again', key => {
    chain.runs++;
    if (chain.runs === 1) setTimeout(() => { chain.whenTimerFired = chain.runs; }, 0);
    if (chain.runs < chain.limit) swarm.tasks.exec('again', key);
    return chain.runs;
  });
  peer = new NodeProcess(PEER, { KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(port) });
  await swarm.init({ ip: OURS, kubernetes: { appName: 'web', url: standin.url, token: standin.token, namespace: standin.namespace }, messages: { port, bind: OURS } });
  await peer.waitEvent(e => e.event === 'ready', 20000, 'the peer ready');
  await eventually(async () => (await peer.request('nodes')).nodes.length === 2 && Object.keys(swarm.nodes).length === 2, 10000, 'both pods seeing both');
});

after(async () => {
  if (peer) await peer.kill();
  await swarm.close();
  if (standin) await standin.close();
});

// A key this pod owns.
function ownKey (prefix) {
  for (let i = 0; ; i++) if (swarm.tasks.owner(`${prefix}-${i}`) === OURS) return `${prefix}-${i}`;
}

// Deliveries are made on the loop itself on Unix only; elsewhere a wake-up makes each.
const ON_THE_LOOP = { skip: process.platform === 'win32' && 'the runtime reads connections on Windows' };

test('a serialized queue whose handler returns a plain value drains in the delivery that freed it, each run handed back by the answer of the one before', ON_THE_LOOP, async () => {
  // Not ASCII, astral: the runs handed back carry their arguments as text.
  const key = ownKey('cüstömer-😀');
  const calls = Array.from({ length: 64 }, (_, i) => ({ task: 'whereInOrder', args: [key, i] }));
  const outcomes = peer.request('many', { calls });
  // Calls for a key this pod has just taken over start once its previous owner let
  // go of it (docs/handoff.md): on the runtime, which hands them to this thread.
  await eventually(() => swarm.tasks.stats('whereInOrder').queued === calls.length - 1, 10000, 'the calls queued');
  const { wakes, letters } = swarm._node.crossings();
  // The message is delivered on this pod's loop, as it is read; its handler ends the
  // first run, and the queue's runs follow, each handed back by the answer of the one
  // before rather than posted as a letter of its own.
  await peer.request('send', { to: OURS, topic: 'open', data: {} });
  const settled = await outcomes;
  const { wakes: wakesAfter, letters: lettersAfter } = swarm._node.crossings();
  assert.deepStrictEqual(settled.map(o => o.value), calls.map((_, i) => i));
  // Calls in flight together may arrive in another order (docs/handoff.md): each ran once.
  assert.deepStrictEqual([...runs].sort((x, y) => x - y), calls.map((_, i) => i));
  assert.deepStrictEqual([...keysSeen], [key]);
  assert.ok(wakesAfter - wakes <= 4, `${wakesAfter - wakes} wake-ups or deliveries for the ${calls.length - 1} queued runs`);
  assert.ok(lettersAfter - letters <= 4, `${lettersAfter - letters} letters delivered for the ${calls.length - 1} queued runs`);
});

test('a serialized queue that keeps growing lets the event loop run its timers meanwhile', async () => {
  chain.limit = 2000;
  await peer.request('exec', { name: 'again', args: [ownKey('job')] });
  await eventually(() => chain.runs >= chain.limit, 20000, 'the chain of runs');
  assert.ok(chain.whenTimerFired !== null && chain.whenTimerFired < chain.limit, `the timer fired after ${chain.whenTimerFired} of ${chain.limit} runs`);
});
