'use strict';

// Clusters of 3+ real node processes on 127.0.0.x against the Kubernetes API stand-in:
// convergence, messaging, task placement by the ring, master agreement, leaves.
const { test } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { useCluster, NodeProcess, eventually } = require('./helpers/cluster');

const IPS = ['127.0.0.21', '127.0.0.22', '127.0.0.23'];
const used = useCluster(IPS);

const sameSet = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

test('every node converges on the same topology and master', async () => {
  for (const node of used.cluster.nodes) {
    const view = await eventually(async () => {
      const v = await node.request('nodes');
      return sameSet(v.nodes, IPS) && v;
    }, 10000, `topology on ${node.ip}`);
    assert.strictEqual(view.master, '127.0.0.21');
    assert.strictEqual(view.amIMaster, node.ip === '127.0.0.21');
  }
});

test('send and broadcast between processes', async () => {
  const [a, b] = used.cluster.nodes;
  const reply = await a.request('send', { to: b.ip, topic: 'echo', data: { hello: 1 } });
  assert.deepStrictEqual(reply, { message: { hello: 1 }, topics: ['echo'], from: a.ip, me: b.ip });
  const all = await a.request('broadcast', { topic: 'whoami', data: {} });
  assert.deepStrictEqual(all.map(x => x === null ? a.ip : x).sort(), [...IPS].sort());
});

test('texts of every script, replies and failures arrive intact, many in one delivery', async () => {
  const [a, b] = used.cluster.nodes;
  await a.request('send', { to: b.ip, topic: 'whoami', data: {} });
  const texts = ['plain', 'é', '日本語のテキスト', '😀 astral', 'mixed ü 😀 end', `${'x'.repeat(5000)}ü`, '\u0000 nul'];
  const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
  const owners = await a.request('owners', { keys });
  const remoteKeys = keys.filter((_, i) => owners[i] === b.ip);
  const calls = [];
  texts.forEach((t, i) => {
    calls.push({ to: b.ip, topic: 'back', data: t }, { to: b.ip, topic: 'back', data: { t, list: [t, i] } });
    calls.push({ to: b.ip, topic: 'nothing', data: t });
    calls.push({ task: 'args', args: [remoteKeys[i], t, { t }] });
  });
  // Nothing listens on this one: the call fails with a code and a message.
  calls.push({ to: '127.0.0.29', topic: 'back', data: 'nobody' });
  const outcomes = await a.request('many', { calls }, 20000);
  texts.forEach((t, i) => {
    const [text, json, nothing, args] = outcomes.slice(i * 4, i * 4 + 4);
    assert.deepStrictEqual(text, { value: t });
    assert.deepStrictEqual(json, { value: { t, list: [t, i] } });
    assert.deepStrictEqual(nothing, { value: '(undefined)' });
    assert.deepStrictEqual(args, { value: [remoteKeys[i], t, { t }] });
  });
  const failed = outcomes[outcomes.length - 1];
  assert.strictEqual(failed.code, 'ERR_SWARM_SEND');
  assert.match(failed.message, /127\.0\.0\.29/);
});

test('an answer given after the delivery that brought its message still goes out', async () => {
  const [a, b] = used.cluster.nodes;
  await a.request('send', { to: b.ip, topic: 'whoami', data: {} });
  const held = a.request('send', { to: b.ip, topic: 'hold', data: {} });
  await eventually(async () => await b.request('gates') > 0, 10000, 'the message held on b');
  await b.request('open');
  assert.strictEqual(await held, b.ip);
});

test('requests and answers made in any phase of the event loop go out in that turn', async () => {
  const [a, b] = used.cluster.nodes;
  await a.request('send', { to: b.ip, topic: 'whoami', data: {} });
  // Nothing else wakes either loop: a request or answer left for a later turn would
  // wait until the request's own deadline.
  for (const phase of ['immediate', 'timer', 'tick']) {
    const answer = await a.request('sendIn', { phase, to: b.ip, topic: 'later', data: { phase } }, 5000);
    assert.deepStrictEqual(answer, { phase });
  }
});

test('large messages travel whole, several at once, between pods of ours', async () => {
  const [a, b] = used.cluster.nodes;
  // Multiplexed from the second send on (the first reply offers it): frames of several
  // MiB arrive in many reads, on the JavaScript thread of each end.
  await a.request('send', { to: b.ip, topic: 'whoami', data: {} });
  const big = i => ({ i, text: `${i}`.repeat(3 * 1024 * 1024) });
  const replies = await Promise.all([1, 2, 3].map(i => a.request('send', { to: b.ip, topic: 'echo', data: big(i) }, 60000)));
  replies.forEach((reply, n) => assert.deepStrictEqual(reply.message, big(n + 1)));
});

test("a node's memory does not grow with the messages it answers", async () => {
  const [a, b] = used.cluster.nodes;
  // After a first load as large as the one measured (connections, compiled code, the
  // allocators' arenas at their high-water mark: a smaller one left a step of ~10 MiB to
  // the measured run now and then), a receiver keeps about what it had: each message
  // answered is let go (a request answered from JavaScript once stayed queued until its
  // connection's task woke, ~100 bytes each: ~19 MiB over the run).
  await a.request('bench', { kind: 'send', to: b.ip, n: 200000, concurrency: 64, seconds: 30 }, 60000);
  const before = (await b.request('usage')).rss;
  const run = await a.request('bench', { kind: 'send', to: b.ip, n: 200000, concurrency: 64, seconds: 30 }, 60000);
  const grown = ((await b.request('usage')).rss - before) / 1048576;
  assert.ok(run.n >= 100000, `only ${run.n} messages in 30 s`);
  assert.ok(grown < 8, `the receiver grew by ${grown.toFixed(1)} MiB over ${run.n} messages`);
});

test('1,000 keys run on the owner every node names', async () => {
  const keys = Array.from({ length: 1000 }, (_, i) => `customer-${i}`);
  const owners = await Promise.all(used.cluster.nodes.map(n => n.request('owners', { keys })));
  for (const other of owners.slice(1)) assert.deepStrictEqual(other, owners[0]);
  assert.ok(new Set(owners[0]).size === 3, 'keys spread over all nodes');
  for (const node of used.cluster.nodes) {
    const ran = await node.request('execMany', { name: 'where', keys }, 60000);
    assert.deepStrictEqual(ran, owners[0], `tasks sent from ${node.ip} ran on their owners`);
  }
});

// A key that `b` owns, as `a` places it.
async function keyOwnedBy (a, b) {
  const keys = Array.from({ length: 100 }, (_, i) => `key-${i}`);
  const owners = await a.request('owners', { keys });
  return keys[owners.indexOf(b.ip)];
}

test('singleTrigger, N and maxQueueLength hold for calls from another node', async () => {
  const [a, b] = used.cluster.nodes;
  const key = await keyOwnedBy(a, b);
  const exec = name => a.request('exec', { name, args: [key] });
  const stats = (name, predicate, what) =>
    eventually(async () => predicate(await b.request('stats', { name })), 10000, `${name}: ${what}`);
  // Lets the run that is waiting at its gate finish (once it has reached the gate).
  const openNext = async () => {
    await eventually(async () => await b.request('gates') > 0, 10000, 'a run at its gate');
    assert.strictEqual(await b.request('open'), 1);
  };

  const joined = [exec('single'), exec('single'), exec('single')];
  await stats('single', s => s.running === 1 && s.waiters === 3, 'three callers on one run');
  await openNext();
  assert.strictEqual(new Set(await Promise.all(joined)).size, 1, 'all callers got the one result');

  const first = exec('next');
  await stats('next', s => s.running === 1, 'the first run');
  const burst = [exec('next'), exec('next'), exec('next'), exec('next')];
  await stats('next', s => s.queued === 1 && s.waiters === 5, 'the burst on one queued run');
  await openNext();
  await openNext();
  const results = await Promise.all(burst);
  assert.strictEqual(new Set(results).size, 1);
  assert.notStrictEqual(results[0], await first, 'the burst ran once more, after the first run');
  assert.strictEqual((await b.request('stats', { name: 'next' })).running, 0);

  const running = exec('limited');
  await stats('limited', s => s.running === 1, 'the running call');
  const queued = [exec('limited'), exec('limited')];
  await stats('limited', s => s.queued === 2, 'two queued calls');
  await assert.rejects(exec('limited'), error => error.code === 'ERR_SWARM_QUEUE_FULL' &&
    /Task limited execution failed on remote node 127\.0\.0\.22: Max execution queue size reached for task limited/.test(error.message));
  for (let i = 0; i < 3; i++) await openNext();
  await Promise.all([running, ...queued]);
});

test('remote task timeouts and failures name the node', async () => {
  const [a, b] = used.cluster.nodes;
  const key = (await a.request('owners', { keys: Array.from({ length: 50 }, (_, i) => `k${i}`) }))
    .map((owner, i) => owner === b.ip ? `k${i}` : null).find(Boolean);
  await assert.rejects(a.request('exec', { name: 'short', args: [key] }), /execution failed on remote node 127\.0\.0\.22: operation timed out/);
  await b.request('open');
  await assert.rejects(a.request('exec', { name: 'fails', args: [key] }), /Task fails execution failed on remote node 127\.0\.0\.22: boom/);
});

test('a handler that fails with a value without text is answered as failed, and its node goes on', async () => {
  const [a, b] = used.cluster.nodes;
  const key = (await a.request('owners', { keys: Array.from({ length: 50 }, (_, i) => `t${i}`) }))
    .map((owner, i) => owner === b.ip ? `t${i}` : null).find(Boolean);
  for (const how of ['throw', 'reject', 'unreadable', 'then']) {
    await assert.rejects(a.request('exec', { name: 'failsTextless', args: [key, how] }),
      /Task failsTextless execution failed on remote node 127\.0\.0\.22: the handler failed with a value that has no text \((\[object Object\]|object)\)/);
    await assert.rejects(a.request('send', { to: b.ip, topic: 'refuseTextless', data: how }),
      /the handler failed with a value that has no text/);
  }
  // The serialized task's queue went on: the next call runs.
  assert.strictEqual(await a.request('exec', { name: 'failsTextless', args: [key, 'answer'] }), b.ip);
  assert.ok((await b.request('nodes')).nodes.includes(a.ip), 'the node that failed is alive');
});

// A task request as a pod of 1.x sends it, routed by the ring of checksum `routed` and
// of kind `ring`; without `routed`, as a pod of 0.5.1 sends it.
function postTask (to, key, routed, ring = 'hashring') {
  const headers = { 'content-type': 'application/json' };
  if (routed) headers['x-swarm-kb-routed'] = `${routed}${ring}/${encodeURIComponent(key)}`;
  const body = JSON.stringify({ task: 'where', args: [key] });
  return new Promise((resolve, reject) => {
    http.request({ host: to.ip, port: used.cluster.port, method: 'POST', path: '/_task', headers }, res => {
      let text = '';
      res.setEncoding('utf8').on('data', chunk => { text += chunk; }).on('end', () => resolve({ status: res.statusCode, text }));
    }).on('error', reject).end(body);
  });
}

test('a task request routed by a key the receiver does not own is refused as not run; unrouted ones run as 0.5.1 ran them', async () => {
  const [a, b] = used.cluster.nodes;
  const key = await keyOwnedBy(a, b);
  const rings = await Promise.all(used.cluster.nodes.map(n => n.request('ring')));
  assert.ok(rings.every(ring => ring.checksum === rings[0].checksum), 'one ring checksum on nodes with one view');
  // By the caller's view (its checksum) or another (the receiver waits for its own view
  // to change first), the receiver's view decides.
  for (const ring of [rings[0].checksum, '0000000000000000']) {
    const refused = await postTask(a, key, ring);
    assert.strictEqual(refused.status, 421, refused.text);
    assert.match(refused.text, new RegExp(`key ${key} moved: its owner is ${b.ip.replace(/\./g, '\\.')}`));
    assert.deepStrictEqual(await postTask(b, key, ring), { status: 200, text: b.ip });
  }
  assert.deepStrictEqual(await postTask(a, key), { status: 200, text: a.ip });
  // A caller on another kind of ring placed it by a ring the receiver cannot check: it
  // runs, as an unrouted call does.
  assert.deepStrictEqual(await postTask(a, key, rings[0].checksum, 'xxh3'), { status: 200, text: a.ip });
});

test('a smaller IP joins: every node agrees on the new master', async () => {
  const newcomer = new NodeProcess('127.0.0.20', {
    KUBE_URL: used.standin.url, KUBE_TOKEN: used.standin.token, KUBE_NS: used.standin.namespace, SWARM_PORT: String(used.cluster.port)
  });
  used.cluster.nodes.push(newcomer);
  used.standin.addPod({ name: 'web-new', ip: '127.0.0.20' });
  await newcomer.waitEvent(e => e.event === 'ready', 20000, 'ready');
  for (const node of used.cluster.nodes) {
    await eventually(async () => (await node.request('nodes')).master === '127.0.0.20', 10000, `new master on ${node.ip}`);
  }
});

test('a readiness blip: no heads-up, out of the rings while not ready, its keys back when ready', async () => {
  const a = used.cluster.nodes.find(n => n.ip === '127.0.0.21');
  const b = used.cluster.nodes.find(n => n.ip === '127.0.0.22');
  const key = await keyOwnedBy(a, b);
  used.standin.updatePod(b.ip, { ready: false });
  await b.waitEvent(e => e.event === 'readinessChanged' && e.ip === b.ip && !e.ready, 10000, 'not ready');
  await a.waitEvent(e => e.event === 'nodeRemoved' && e.ip === b.ip, 10000, 'out of the ring');
  assert.notStrictEqual(await a.request('exec', { name: 'where', args: [key] }), b.ip, 'no new task goes to it');
  used.standin.updatePod(b.ip, { ready: true });
  await b.waitEvent(e => e.event === 'readinessChanged' && e.ip === b.ip && e.ready, 10000, 'ready again');
  // (Its first nodeAdded is long past: the ring itself is asked.)
  await eventually(async () => (await a.request('owners', { keys: [key] }))[0] === b.ip, 10000, 'back in the ring');
  assert.strictEqual(await a.request('exec', { name: 'where', args: [key] }), b.ip, 'its keys served by it again');
  assert.ok(!b.events.some(e => e.event === 'sigterm'), 'no SIGTERM heads-up for a blip');
});

test('a removed node gets its SIGTERM heads-up; a killed one disappears everywhere', async () => {
  const leaving = used.cluster.nodes.find(n => n.ip === '127.0.0.20');
  used.standin.removePod('127.0.0.20');
  await leaving.waitEvent(e => e.event === 'sigterm', 10000, 'the SIGTERM heads-up');
  for (const node of used.cluster.nodes.filter(n => n !== leaving)) {
    await node.waitEvent(e => e.event === 'nodeRemoved' && e.ip === '127.0.0.20', 10000, 'nodeRemoved');
    await eventually(async () => (await node.request('nodes')).master === '127.0.0.21', 10000, 'master back');
  }
  const victim = used.cluster.nodes.find(n => n.ip === '127.0.0.23');
  const first = used.cluster.nodes.find(n => n.ip === '127.0.0.21');
  const key = await keyOwnedBy(first, victim);
  await victim.kill('SIGKILL');
  // A send that goes out before `first` has read the end of its connection to the dead
  // node fails as in doubt (it may have been read); once it has, nothing can reach it.
  const refused = () => first.request('send', { to: victim.ip, topic: 'whoami', data: {} }).then(
    () => assert.fail('a killed node answered'),
    error => /Unable to reach 127\.0\.0\.23/.test(error.message));
  await eventually(refused, 10000, 'sends to the killed node to be refused');
  // A task sent to the dead node cannot be delivered: it waits for the topology...
  const rerouted = first.request('exec', { name: 'where', args: [key] });
  // (a send issued after it has been refused too, so the task has met the closed port)
  await assert.rejects(first.request('send', { to: victim.ip, topic: 'whoami', data: {} }), /Unable to reach 127\.0\.0\.23/);
  used.standin.removePod('127.0.0.23');
  // ...and runs on the key's new owner once the dead node is gone.
  const ranOn = await rerouted;
  assert.ok(['127.0.0.21', '127.0.0.22'].includes(ranOn), `ran on ${ranOn}`);
  assert.strictEqual(ranOn, (await first.request('owners', { keys: [key] }))[0]);
  for (const node of used.cluster.nodes.filter(n => n.ip === '127.0.0.21' || n.ip === '127.0.0.22')) {
    await node.waitEvent(e => e.event === 'nodeRemoved' && e.ip === '127.0.0.23', 10000, 'nodeRemoved of the killed node');
  }
});
