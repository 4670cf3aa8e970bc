'use strict';

// Fault suite, with pods in network namespaces made by the test (`npm run test:faults`):
// replacement loses nothing. Every pod of a cluster is replaced, one at a time, while
// another node keeps 32 calls to tasks.exec in flight; not one call may fail. With
// every pod also making key-routed serialized calls (fixtures/ordered.js), no task key
// runs on two pods at once and each caller's calls for a key run in order:
// - the Kubernetes way with EndpointSlices: a new pod, on a host of its own, becomes
//   ready; the old one is marked terminating, gets SIGTERM and calls close(), then its
//   endpoint goes;
// - removal first, as the core Endpoints API does when a pod is deleted (no terminating
//   phase): the old pod leaves the endpoints while it is alive, gets SIGTERM right after,
//   and SIGKILL 2 s later; with close() on SIGTERM and without (an app that never calls
//   it). The calls in flight to it when it leaves are answered: it is probed, not failed.
const { test } = require('node:test');
const assert = require('node:assert');
const { eventually } = require('../helpers/cluster');
const { executions, checkExecutions } = require('../helpers/executions');
const netns = require('../helpers/netns');

const skip = netns.skipReason();

const KEYS = Array.from({ length: 12 }, (_, i) => `customer-${i}`);

// Replaces every pod but the loader, with `retire(old)` taking each old one out. With
// `ordered`, every pod also runs the keyed workload, and the executions are checked.
async function rollingRestart (env, retire, { ordered = false } = {}) {
  const cluster = await netns.startCluster(4, { env });
  try {
    const { standin } = cluster;
    const [loader, ...pods] = cluster.nodes;
    await loader.request('loadStart', { concurrency: 32 });
    if (ordered) await Promise.all(cluster.nodes.map(n => n.request('orderedStart', { keys: KEYS })));
    for (const old of pods) {
      const fresh = cluster.addNode();
      await fresh.waitEvent(e => e.event === 'ready', 20000, 'the new pod ready');
      if (ordered) await fresh.request('orderedStart', { keys: KEYS });
      await loader.waitEvent(e => e.event === 'nodeAdded' && e.ip === fresh.ip, 10000, 'the loader seeing it');
      const before = (await loader.request('loadStats')).ok;
      await eventually(async () => (await loader.request('loadStats')).ok > before + 200, 20000, 'load flowing');
      await retire(old, standin, loader);
    }
    const result = await loader.request('loadStop', {}, 60000);
    assert.ok(result.ok > 1000, `calls made: ${result.ok}`);
    if (ordered) {
      const alive = [loader, ...cluster.nodes.slice(pods.length + 1)];
      const outcomes = {};
      for (const node of alive) outcomes[node.ip] = await node.request('orderedStop', {}, 60000);
      const runs = executions(cluster.nodes);
      assert.ok(runs.length > 200, `${runs.length} keyed executions`);
      checkExecutions(runs, outcomes);
    }
    return { pods: pods.length, ...result };
  } finally {
    await cluster.stop();
  }
}

test('a rolling restart of every pod under continuous load fails no call', { skip }, async () => {
  const result = await rollingRestart({ FIXTURE_CLOSE_ON_SIGTERM: '1' }, async (old, standin) => {
    standin.updatePod(old.ip, { terminating: true });
    await old.waitEvent(e => e.event === 'closed', 30000, 'the old pod closed');
    standin.removePod(old.ip);
    await old.kill('SIGKILL');
  }, { ordered: true });
  console.log(`rolling restart of ${result.pods} pods: ${result.ok} calls ok, ${result.failed} failed`);
  assert.deepStrictEqual({ failed: result.failed, errors: result.errors }, { failed: 0, errors: [] });
});

for (const closes of [true, false]) {
  const how = closes ? 'with close() on SIGTERM' : 'without close()';
  test(`a rolling replacement that removes each pod before its SIGTERM fails no call, ${how}`, { skip }, async () => {
    const env = closes ? { FIXTURE_CLOSE_ON_SIGTERM: '1' } : {};
    const result = await rollingRestart(env, async (old, standin, loader) => {
      standin.removePod(old.ip);
      await loader.waitEvent(e => e.event === 'nodeRemoved' && e.ip === old.ip, 10000, 'the loader seeing it leave');
      old.child.kill('SIGTERM');
      await old.waitEvent(e => e.event === 'sigterm', 10000, 'the SIGTERM handled');
      // The pod's grace period, as the kubelet gives it, then SIGKILL.
      await new Promise(resolve => setTimeout(resolve, 2000));
      await old.kill('SIGKILL');
    });
    console.log(`rolling replacement, removal before SIGTERM, ${how}: ${result.ok} calls ok, ${result.failed} failed`);
    assert.deepStrictEqual({ failed: result.failed, errors: result.errors }, { failed: 0, errors: [] });
  });
}
