'use strict';

// Fault suite, with pods in network namespaces made by the test (`npm run test:faults`):
// graceful replacement loses nothing. Every pod of a cluster is replaced, one at a time,
// the Kubernetes way (a new pod, on a host of its own, becomes ready; the old one is
// marked terminating, gets SIGTERM and calls close(), then its endpoint goes), while
// another node keeps 32 calls to tasks.exec in flight. Not one call may fail.
const { test, after } = require('node:test');
const assert = require('node:assert');
const { eventually } = require('../helpers/cluster');
const netns = require('../helpers/netns');

const skip = netns.skipReason();
let cluster;
after(() => cluster && cluster.stop());

test('a rolling restart of every pod under continuous load fails no call', { skip }, async () => {
  cluster = await netns.startCluster(4, { env: { FIXTURE_CLOSE_ON_SIGTERM: '1' } });
  const { standin } = cluster;
  const [loader, ...pods] = cluster.nodes;
  await loader.request('loadStart', { concurrency: 32 });
  for (const old of pods) {
    const fresh = cluster.addNode();
    await fresh.waitEvent(e => e.event === 'ready', 20000, 'the new pod ready');
    await loader.waitEvent(e => e.event === 'nodeAdded' && e.ip === fresh.ip, 10000, 'the loader seeing it');
    const before = (await loader.request('loadStats')).ok;
    await eventually(async () => (await loader.request('loadStats')).ok > before + 200, 20000, 'load flowing');
    standin.updatePod(old.ip, { terminating: true });
    await old.waitEvent(e => e.event === 'closed', 30000, 'the old pod closed');
    standin.removePod(old.ip);
    await old.kill('SIGKILL');
  }
  const result = await loader.request('loadStop', {}, 60000);
  console.log(`rolling restart of ${pods.length} pods: ${result.ok} calls ok, ${result.failed} failed`);
  assert.ok(result.ok > 1000, `calls made: ${result.ok}`);
  assert.deepStrictEqual({ failed: result.failed, errors: result.errors }, { failed: 0, errors: [] });
});
