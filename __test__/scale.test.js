'use strict';

// Topologies past one object: EndpointSlices joined across a Service, and the Endpoints
// fallback's 1,000-address truncation, which is logged.
const { test, after } = require('node:test');
const assert = require('node:assert');
const { startStandin } = require('./kube-standin');
const { NodeProcess, freePort, eventually } = require('./helpers/cluster');

const cleanups = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const PODS = Array.from({ length: 1050 }, (_, i) => ({ name: `web-${i}`, ip: `127.7.${i >> 8}.${i & 255}` }));
// Loopback addresses: nothing is sent to these pods, and nothing could leave the machine.

async function nodeAgainst (standin, ip) {
  standin.addPod({ name: 'web-local', ip });
  const n = new NodeProcess(ip, {
    KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(await freePort())
  }, { captureStderr: true });
  cleanups.push(() => n.kill());
  await n.waitEvent(e => e.event === 'ready', 30000, 'ready');
  return n;
}

test('slices of 100 are joined into one topology of 1,051 nodes', async () => {
  const standin = await startStandin({ appName: 'web', sliceSize: 100, pods: PODS });
  cleanups.push(() => standin.close());
  const n = await nodeAgainst(standin, '127.0.0.81');
  assert.ok(standin.endpointSlices().length > 10 || (standin.endpointSlices().items || []).length > 10, 'several slices');
  const view = await n.request('nodes');
  assert.strictEqual(view.nodes.length, 1051);
  assert.strictEqual(view.master, '127.0.0.81');
  standin.removePod('web-500');
  await n.waitEvent(e => e.event === 'nodeRemoved' && e.ip === PODS[500].ip, 10000, 'a removal in one slice');
});

test('the Endpoints fallback warns when the API truncated the addresses', async () => {
  const standin = await startStandin({ appName: 'web', pods: PODS });
  cleanups.push(() => standin.close());
  standin.forbid('endpointslices');
  const n = await nodeAgainst(standin, '127.0.0.82');
  await eventually(() => /truncated at 1000 addresses/.test(n.stderr), 10000, 'the truncation warning');
  assert.strictEqual((await n.request('nodes')).nodes.length, 1000, 'what the truncated object lists');
});
