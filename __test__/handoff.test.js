'use strict';

// One key, one runner, while the topology changes: under a continuous load of
// key-routed serialized calls from every node (one call in flight per caller per key),
// a pod joins, a pod is replaced the Kubernetes way (a ready replacement, then the old
// pod terminating and closing), and a pod is removed abruptly. Every execution is
// reported with its start and end on the machine's monotonic clock; the test checks
// that no two executions of a task for one key overlapped, that each caller's calls for
// a key ran in the order it made them, that none ran twice, and that each call either
// ran once or failed saying it did not run or may have run.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { startStandin } = require('./kube-standin');
const { startCluster, NodeProcess, eventually } = require('./helpers/cluster');
const { executions, checkExecutions } = require('./helpers/executions');

const IPS = ['127.0.0.91', '127.0.0.92', '127.0.0.93'];
const KEYS = Array.from({ length: 12 }, (_, i) => `customer-${i}`);
let standin;
let cluster;
const started = [];

before(async () => {
  standin = await startStandin({ appName: 'web' });
  cluster = await startCluster(standin, IPS, { env: { FIXTURE_CLOSE_ON_SIGTERM: '1' } });
  started.push(...cluster.nodes);
});

after(async () => {
  await Promise.all(started.map(node => node.kill()));
  if (standin) await standin.close();
});

// A new pod, listed ready, with the cluster's settings; resolves once its node is ready.
async function join (ip, name) {
  standin.addPod({ name, ip });
  const node = new NodeProcess(ip, {
    KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace,
    SWARM_PORT: String(cluster.port), FIXTURE_CLOSE_ON_SIGTERM: '1'
  });
  started.push(node);
  await node.waitEvent(e => e.event === 'ready', 20000, 'ready');
  await node.request('orderedStart', { keys: KEYS });
  return node;
}

// Resolves once every one of `nodes` has had `more` more calls succeed.
async function progress (nodes, more = 30) {
  const from = await Promise.all(nodes.map(n => n.request('orderedDone')));
  await eventually(async () => {
    const now = await Promise.all(nodes.map(n => n.request('orderedDone')));
    return now.every((done, i) => done >= from[i] + more);
  }, 30000, `${more} more calls done on every node`);
}

test('no task key runs on two pods at once, in order, once, none lost, through a join, a replacement and a removal', async () => {
  const [a, b, c] = cluster.nodes;
  await Promise.all(cluster.nodes.map(n => n.request('orderedStart', { keys: KEYS })));
  await progress([a, b, c]);

  const d = await join('127.0.0.94', 'web-3');
  await progress([a, b, c, d]);

  // Replaced the Kubernetes way: the replacement is ready first, then the old pod is
  // terminating (out of the rings) and told so, and closes before it goes.
  const e = await join('127.0.0.95', 'web-4');
  await progress([a, b, c, d, e]);
  standin.updatePod(a.ip, { ready: false, terminating: true });
  a.child.kill('SIGTERM');
  await a.waitEvent(event => event.event === 'closed', 60000, 'closed');
  standin.removePod(a.ip);
  await progress([b, c, d, e]);

  // Removed abruptly: killed, then gone from the endpoints.
  await b.kill();
  standin.removePod(b.ip);
  await progress([c, d, e]);

  const outcomes = {};
  for (const node of [a, c, d, e]) outcomes[node.ip] = await node.request('orderedStop', {}, 60000);
  const runs = executions(started);
  assert.ok(runs.length > 500, `${runs.length} executions`);
  checkExecutions(runs, outcomes);
});
