'use strict';

// swarm.stats(): what each pod of a cluster counts, after a known workload between two
// pods of real processes.
const { test } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { useCluster, eventually } = require('./helpers/cluster');

const IPS = ['127.0.0.87', '127.0.0.88'];
const used = useCluster(IPS);

// Keys the second pod owns, by the first pod's ring.
async function keysOf (from, owner, count) {
  const keys = Array.from({ length: 200 }, (_, i) => `stats-${i}`);
  const owners = await from.request('owners', { keys });
  return keys.filter((_, i) => owners[i] === owner.ip).slice(0, count);
}

test('stats() counts the requests each way, their outcomes and the tasks run, exactly', async () => {
  const [a, b] = used.cluster.nodes;
  const [keyOfB] = await keysOf(a, b, 1);
  const calls = [
    ...Array.from({ length: 10 }, (_, i) => ({ to: b.ip, topic: 'echo', data: { i } })),
    ...Array.from({ length: 3 }, () => ({ to: b.ip, topic: 'nothing', data: {} })),
    ...Array.from({ length: 2 }, () => ({ to: b.ip, topic: 'refuse', data: {} })),
    ...Array.from({ length: 5 }, () => ({ task: 'where', args: [keyOfB] })),
    ...Array.from({ length: 4 }, () => ({ task: 'failsAtOnce', args: [keyOfB] }))
  ];
  const outcomes = await a.request('many', { calls });
  assert.strictEqual(outcomes.filter(o => !('value' in o)).length, 2 + 4, 'the refused messages and the failing tasks failed');
  const [sender, receiver] = await Promise.all([a.request('swarmStats'), b.request('swarmStats')]);

  assert.deepStrictEqual(sender.messages.sent, { ok: 18, refused: 6, timeout: 0, unreachable: 0, failed: 0, left: 0, abandoned: 0 });
  assert.deepStrictEqual(sender.messages.inFlight, { out: 0, in: 0 });
  assert.strictEqual(sender.messages.received, 0);
  assert.strictEqual(receiver.messages.received, calls.length);
  assert.ok(Object.values(receiver.messages.refused).every(n => n === 0), 'a handler that fails refuses nothing');
  assert.strictEqual(receiver.messages.bytes.received, sender.messages.bytes.sent);
  assert.ok(sender.messages.bytes.sent > 0);
  const counts = task => Object.assign({}, task, { durations: task.durations.count });
  assert.deepStrictEqual(counts(receiver.tasks.where), { running: 0, queued: 0, waiters: 0, executed: 5, failed: 0, timedOut: 0, retried: 0, moved: 0, queueFull: 0, durations: 5 });
  assert.deepStrictEqual(counts(receiver.tasks.failsAtOnce), { running: 0, queued: 0, waiters: 0, executed: 4, failed: 4, timedOut: 0, retried: 0, moved: 0, queueFull: 0, durations: 4 });
  assert.strictEqual(sender.tasks.where.executed, 0, 'ran on its owner');
  // All made at once, before the first reply told the sender that the receiver speaks
  // the multiplexed transport: over HTTP/1.1.
  assert.deepStrictEqual([sender.messages.durations.http1.count, sender.messages.durations.multiplexed.count], [24, 0]);
});

// The samples of an exposition text, keyed `name{labels sorted}`.
function samples (text) {
  const found = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [, name, labels = '', value] = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    const sorted = labels ? labels.split(/,(?=[a-zA-Z_]+=)/).sort().join(',') : '';
    found.set(`${name}{${sorted}}`, Number(value));
  }
  return found;
}

test('the metrics, scraped by a prom-client registry of the app and as text(), say what stats() says', async () => {
  const [a, b] = used.cluster.nodes;
  const labels = { service: 'web' };
  const [sender, receiver] = await Promise.all([a.request('scrape', { labels }), b.request('scrape', { labels })]);
  for (const { scraped, text } of [sender, receiver]) assert.deepStrictEqual(samples(scraped), samples(text));
  const sent = samples(sender.scraped);
  assert.strictEqual(sent.get('swarm_messages_sent_total{outcome="ok",service="web"}'), 18);
  assert.strictEqual(sent.get('swarm_messages_sent_total{outcome="refused",service="web"}'), 6);
  const byTransport = name => ['http1', 'multiplexed'].map(transport => sent.get(name.replace('}', `,transport="${transport}"}`)));
  assert.deepStrictEqual(byTransport('swarm_message_duration_seconds_count{service="web"}'), [24, 0]);
  assert.deepStrictEqual(byTransport('swarm_message_duration_seconds_bucket{le="+Inf",service="web"}'), [24, 0]);
  assert.strictEqual(sent.get('swarm_connections{direction="out",service="web",transport="multiplexed"}'), 0);
  assert.strictEqual(sent.get('swarm_is_master{service="web"}'), 1);
  const got = samples(receiver.scraped);
  assert.strictEqual(got.get('swarm_connections{direction="in",service="web",transport="multiplexed"}'), 0);
  assert.strictEqual(got.get('swarm_messages_received_total{outcome="handled",service="web"}'), 24);
  assert.strictEqual(got.get('swarm_task_executions_total{outcome="ok",service="web",task="where"}'), 5);
  assert.strictEqual(got.get('swarm_task_executions_total{outcome="failed",service="web",task="failsAtOnce"}'), 4);
  assert.strictEqual(got.get('swarm_task_duration_seconds_count{service="web",task="where"}'), 5);
  const buckets = [...got].filter(([key]) => key.startsWith('swarm_task_duration_seconds_bucket{') && key.includes('task="where"')).map(([, n]) => n);
  assert.deepStrictEqual(buckets, [...buckets].sort((x, y) => x - y), 'cumulative buckets');
  assert.strictEqual(buckets[buckets.length - 1], 5);
  assert.ok(![...got.keys()].some(key => /127\.0\.0|stats-/.test(key)), 'no label per peer or key');
});

test('calls refused because the queue was full are counted on the pod that refused them, and scraped', async () => {
  const [a, b] = used.cluster.nodes;
  const [key] = await keysOf(a, b, 1);
  // Room for 2 behind the running call (which waits at its gate): the rest is refused.
  const calls = Array.from({ length: 6 }, () => ({ task: 'limited', args: [key] }));
  let settled = null;
  a.request('many', { calls }).then(outcomes => { settled = outcomes; });
  // At most 3 are taken (fewer while calls are held for the key's hand-off).
  const counted = async () => (await b.request('swarmStats')).tasks.limited.queueFull;
  await eventually(async () => await counted() >= 3, 10000, 'the refusals');
  await eventually(async () => {
    if (await b.request('gates') > 0) await b.request('open');
    return settled !== null;
  }, 10000, 'every call answered');
  const refused = settled.filter(o => o.code === 'ERR_SWARM_QUEUE_FULL').length;
  assert.ok(refused >= 3, `${refused} calls refused`);
  assert.strictEqual(await counted(), refused);
  assert.strictEqual((await a.request('swarmStats')).tasks.limited.queueFull, 0, 'counted where refused');
  const { text } = await b.request('scrape', { labels: { service: 'web' } });
  assert.strictEqual(samples(text).get('swarm_task_queue_full_total{service="web",task="limited"}'), refused);
});

test('stats() tells who this pod is and what it sees: the same ring on every pod of one view', async () => {
  const stats = await Promise.all(used.cluster.nodes.map(node => node.request('swarmStats')));
  for (const [i, one] of stats.entries()) {
    assert.deepStrictEqual(one.ips, [IPS[i]]);
    assert.strictEqual(one.master, IPS[0]);
    assert.strictEqual(one.amIMaster, i === 0);
    assert.strictEqual(one.version, require('../package.json').version);
    assert.ok(one.uptimeMs >= 0);
    assert.deepStrictEqual(one.topology.nodes, { ready: 2, draining: 0 });
    assert.match(one.topology.ring.checksum, /^[0-9a-f]{16}$/);
    assert.strictEqual(one.topology.ring.kind, 'hashring');
  }
  assert.strictEqual(stats[0].topology.ring.checksum, stats[1].topology.ring.checksum);
});

test('the ring checksum follows the view, and the change is counted', async () => {
  const [a] = used.cluster.nodes;
  const earlier = await a.request('swarmStats');
  // A pod listed, and not running: every pod's view (and ring) gains it.
  used.standin.addPod({ name: 'web-listed', ip: '127.0.0.89' });
  await a.waitEvent(e => e.event === 'nodeAdded' && e.ip === '127.0.0.89', 10000, 'nodeAdded');
  const later = await a.request('swarmStats');
  used.standin.removePod('127.0.0.89');
  await a.waitEvent(e => e.event === 'nodeRemoved' && e.ip === '127.0.0.89', 10000, 'nodeRemoved');
  assert.notStrictEqual(later.topology.ring.checksum, earlier.topology.ring.checksum);
  assert.strictEqual(later.topology.changes.nodeAdded, earlier.topology.changes.nodeAdded + 1);
  assert.strictEqual(later.topology.nodes.ready, 3);
});

test('once a pod knows its peer speaks the multiplexed transport, one connection carries its requests, counted each way', async () => {
  const [a, b] = used.cluster.nodes;
  const before = (await a.request('swarmStats')).messages.durations.multiplexed.count;
  assert.strictEqual(await a.request('send', { to: b.ip, topic: 'whoami', data: {} }), b.ip);
  const [sender, receiver] = await Promise.all([a.request('swarmStats'), b.request('swarmStats')]);
  assert.strictEqual(sender.messages.durations.multiplexed.count, before + 1);
  assert.deepStrictEqual([sender.messages.connections.out.multiplexed, receiver.messages.connections.in.multiplexed], [1, 1]);
  assert.deepStrictEqual([sender.messages.connections.in.multiplexed, receiver.messages.connections.out.multiplexed], [0, 0]);
});

test('stats() names the resource watched, and says when the Kubernetes API fails and recovers', async () => {
  const [a] = used.cluster.nodes;
  const healthy = (await a.request('swarmStats')).topology.kubernetes;
  assert.deepStrictEqual(healthy, { resource: 'endpointslices.discovery.k8s.io', state: 'ok', errors: 0 });
  used.standin.setOutage(true);
  try {
    await a.waitEvent(e => e.event === 'error', 20000, 'the API error');
    const failing = (await a.request('swarmStats')).topology.kubernetes;
    assert.deepStrictEqual(failing, { resource: 'endpointslices.discovery.k8s.io', state: 'failing', errors: 1 });
  } finally {
    used.standin.setOutage(false);
  }
  await eventually(async () => (await a.request('swarmStats')).topology.kubernetes.state === 'ok', 20000, 'the recovery');
  assert.strictEqual((await a.request('swarmStats')).topology.kubernetes.errors, 1, 'one outage, one error');
});

test('a request the server refuses before dispatching it is counted by status, and not as received', async () => {
  const [, b] = used.cluster.nodes;
  const before = (await b.request('swarmStats')).messages;
  const status = await new Promise((resolve, reject) => {
    const req = http.request({ host: b.ip, port: used.cluster.port, method: 'DELETE', path: '/echo' }, res => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
  assert.strictEqual(status, 405);
  const after = (await b.request('swarmStats')).messages;
  assert.strictEqual(after.refused['405'], before.refused['405'] + 1);
  assert.strictEqual(after.received, before.received);
});

test('a head too large for the server\'s read buffer is counted as refused (431)', async () => {
  const [, b] = used.cluster.nodes;
  const before = (await b.request('swarmStats')).messages.refused['431'];
  const status = await new Promise((resolve, reject) => {
    const req = http.request({ host: b.ip, port: used.cluster.port, method: 'POST', path: '/echo', headers: { 'x-large': 'a'.repeat(100000) } }, res => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end('{}');
  });
  assert.strictEqual(status, 431);
  await eventually(async () => (await b.request('swarmStats')).messages.refused['431'] === before + 1, 5000, 'the refusal counted');
});

test('a task request whose body is not one is counted as refused (400), and not as received', async () => {
  const [, b] = used.cluster.nodes;
  const before = (await b.request('swarmStats')).messages;
  const status = await new Promise((resolve, reject) => {
    const req = http.request({ host: b.ip, port: used.cluster.port, method: 'POST', path: '/_task', headers: { 'content-type': 'application/json' } }, res => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end('{"not":"a task"}');
  });
  assert.strictEqual(status, 400);
  const after = (await b.request('swarmStats')).messages;
  assert.strictEqual(after.refused['400'], before.refused['400'] + 1);
  assert.strictEqual(after.received, before.received);
});

test('metrics refuse what is not a registry, a bad prefix and labels of their own, saying which', () => {
  const { metrics } = require('..');
  const code = { code: 'ERR_SWARM_INVALID_ARG' };
  assert.throws(() => metrics.register({}), code);
  assert.throws(() => metrics.register({ registerMetric () {} }, { prefix: '1bad' }), code);
  assert.throws(() => metrics.text({ labels: { task: 'mine' } }), e => e.code === code.code && /labels\.task/.test(e.message));
  assert.strictEqual(metrics.text().includes('# TYPE swarm_messages_sent_total counter'), true, 'before init(): the metrics, no samples');
  assert.doesNotMatch(metrics.text(), /^swarm_/m);
});
