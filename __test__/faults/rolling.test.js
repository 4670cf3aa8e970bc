'use strict';

// Fault suite (on loopback: it needs no network namespace). Graceful replacement loses
// nothing: every pod of a cluster is replaced, one at a time,
// the Kubernetes way (a new pod becomes ready, the old one is marked terminating, gets
// SIGTERM and calls close(), then its endpoint goes), while another node keeps 32 calls
// to tasks.exec in flight. Not one call may fail.
const { test, after } = require('node:test');
const assert = require('node:assert');
const { startStandin } = require('../kube-standin');
const { startCluster, NodeProcess, eventually } = require('../helpers/cluster');

let standin;
let cluster;
after(async () => {
  if (cluster) await cluster.stop();
  if (standin) await standin.close();
});

test('a rolling restart of every pod under continuous load fails no call', async () => {
  standin = await startStandin({ appName: 'web' });
  const env = { FIXTURE_CLOSE_ON_SIGTERM: '1' };
  cluster = await startCluster(standin, ['127.0.1.10', '127.0.1.11', '127.0.1.12', '127.0.1.13'], { env });
  const [loader, ...pods] = cluster.nodes;
  const spawn = ip => {
    standin.addPod({ name: `web-${ip}`, ip });
    const node = new NodeProcess(ip, Object.assign({
      KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(cluster.port)
    }, env));
    cluster.nodes.push(node);
    return node;
  };
  await eventually(async () => (await loader.request('nodes')).nodes.length === 4, 10000, 'the cluster');
  await loader.request('loadStart', { concurrency: 32 });
  let replacement = 20;
  for (const old of pods) {
    const fresh = spawn(`127.0.1.${replacement++}`);
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
