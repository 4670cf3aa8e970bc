'use strict';

// swarm.stats(): what each pod of a cluster counts, after a known workload between two
// pods of real processes.
const { test } = require('node:test');
const assert = require('node:assert');
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

  assert.deepStrictEqual(sender.messages.sent, { ok: 18, refused: 6, timeout: 0, unreachable: 0, failed: 0, left: 0 });
  assert.deepStrictEqual(sender.messages.inFlight, { out: 0, in: 0 });
  assert.strictEqual(sender.messages.received, 0);
  assert.strictEqual(receiver.messages.received, calls.length);
  assert.deepStrictEqual(receiver.messages.refused, {}, 'a handler that fails refuses nothing');
  assert.strictEqual(receiver.messages.bytes.received, sender.messages.bytes.sent);
  assert.ok(sender.messages.bytes.sent > 0);
  assert.deepStrictEqual(receiver.tasks.where, { running: 0, queued: 0, waiters: 0, executed: 5, failed: 0, timedOut: 0, retried: 0, moved: 0 });
  assert.deepStrictEqual(receiver.tasks.failsAtOnce, { running: 0, queued: 0, waiters: 0, executed: 4, failed: 4, timedOut: 0, retried: 0, moved: 0 });
  assert.strictEqual(sender.tasks.where.executed, 0, 'ran on its owner');
});

test('stats() tells who this pod is and what it sees: the same ring on every pod of one view', async () => {
  const stats = await Promise.all(used.cluster.nodes.map(node => node.request('swarmStats')));
  for (const [i, one] of stats.entries()) {
    assert.deepStrictEqual(one.ips, [IPS[i]]);
    assert.strictEqual(one.master, IPS[0]);
    assert.strictEqual(one.amIMaster, i === 0);
    assert.strictEqual(one.version, require('../package.json').version);
    assert.ok(one.uptimeMs >= 0);
    assert.deepStrictEqual(one.topology.nodes, { total: 2, serving: 2, terminating: 0 });
    assert.match(one.topology.ring.checksum, /^[0-9a-f]{16}$/);
  }
  assert.strictEqual(stats[0].topology.ring.checksum, stats[1].topology.ring.checksum);
});

test('a pod whose view differs has another ring checksum, and counts the change', async () => {
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
  assert.strictEqual(later.topology.nodes.total, 3);
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
});
