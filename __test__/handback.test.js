'use strict';

// A key handed to another pod and then handed back: the pod that released a task key
// keeps a mark, so that its older view cannot start the key while the new owner runs it.
// Once its view has caught up with the new owner's, the mark has done its work; a mark
// kept longer held the key's calls back when the key came home (its new owner going
// out of the endpoints, or killed, within the task's timeout), for up to that timeout.
const test = require('node:test');
const assert = require('node:assert');
const { useCluster, eventually } = require('./helpers/cluster');

const IPS = ['127.0.0.101', '127.0.0.102'];
const used = useCluster(IPS);

// Sets the second pod's readiness; resolves once each pod has seen it (its peers as
// the node removed or added, itself as its readiness changed).
async function setReady (standin, nodes, ip, ready) {
  const seen = node => node.events.filter(e => node.ip === ip
    ? e.event === 'readinessChanged' && e.ready === ready
    : e.event === (ready ? 'nodeAdded' : 'nodeRemoved') && e.ip === ip).length;
  const before = nodes.map(seen);
  standin.updatePod(ip, { ready });
  await eventually(async () => nodes.every((node, i) => seen(node) > before[i]), 10000, `${ip} ${ready ? 'ready' : 'not ready'}`);
}

test('a key handed back comes home at once: the mark of its release ends when the view catches up', async () => {
  const { standin, cluster } = used;
  const [home, away] = cluster.nodes;
  const keys = Array.from({ length: 40 }, (_, i) => `customer-${i}`);
  const owners = await home.request('owners', { keys });
  const key = keys[owners.indexOf(away.ip)];
  assert.ok(key, 'a key the second pod owns');

  // Out of the endpoints: the key is the first pod's, and runs there.
  await setReady(standin, cluster.nodes, away.ip, false);
  assert.strictEqual(await home.request('exec', { name: 'whereInOrder', args: [key] }), home.ip);

  // Back: the second pod asks the first to release the key, then runs it.
  await setReady(standin, cluster.nodes, away.ip, true);
  assert.strictEqual(await away.request('exec', { name: 'whereInOrder', args: [key] }), away.ip);

  // Out again, within the task's timeout (30 s): the key comes home, and its calls run
  // there at once (this request gives them 5 s; a mark kept held them for the timeout).
  await setReady(standin, cluster.nodes, away.ip, false);
  assert.deepStrictEqual(await home.request('owners', { keys: [key] }), [home.ip]);
  assert.strictEqual(await home.request('exec', { name: 'whereInOrder', args: [key] }, 5000), home.ip);
});
