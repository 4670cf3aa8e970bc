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
  const runs = started.flatMap(node => node.events.filter(event => event.event === 'ran'))
    .map(run => ({ ...run, start: BigInt(run.start), end: BigInt(run.end) }));
  assert.ok(runs.length > 500, `${runs.length} executions`);

  // No two executions of a task for one key at the same time, on any pods.
  const byKey = new Map();
  for (const run of runs) {
    const id = `${run.task}/${run.key}`;
    if (!byKey.has(id)) byKey.set(id, []);
    byKey.get(id).push(run);
  }
  const overlaps = [];
  for (const [id, list] of byKey) {
    list.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
    for (let i = 1; i < list.length; i++) {
      if (list[i].start < list[i - 1].end) {
        const run = r => `${r.pod} ran ${r.caller} #${r.seq} at ${(Number(r.start - runs[0].start) / 1e6).toFixed(1)}-${(Number(r.end - runs[0].start) / 1e6).toFixed(1)} ms`;
        overlaps.push(`${id}: ${run(list[i - 1])}, ${run(list[i])}`);
      }
    }
  }
  assert.deepStrictEqual(overlaps.slice(0, 5), [], `${overlaps.length} overlaps`);

  // Each caller's calls for one key ran in the order it made them, and none twice.
  const seen = new Set();
  const last = new Map();
  for (const run of runs.filter(r => r.task === 'ordered').sort((x, y) => (x.start < y.start ? -1 : 1))) {
    const call = `${run.caller}/${run.key}/${run.seq}`;
    assert.ok(!seen.has(call), `${call} ran twice`);
    seen.add(call);
    const stream = `${run.caller}/${run.key}`;
    assert.ok((last.get(stream) || 0) < run.seq, `${stream}: #${run.seq} ran after #${last.get(stream)}`);
    last.set(stream, run.seq);
  }

  // Each call of a caller still alive ran once, or failed saying whether it may have run.
  for (const [caller, list] of Object.entries(outcomes)) {
    for (const outcome of list.filter(o => o.task === 'ordered')) {
      const ran = seen.has(`${caller}/${outcome.key}/${outcome.seq}`);
      if (outcome.ok) {
        assert.ok(ran, `${caller} ${outcome.key} #${outcome.seq} succeeded without running`);
      } else {
        assert.match(outcome.message, /did not run|may have|closed|Swarm closed|left the cluster/,
          `${caller} ${outcome.key} #${outcome.seq}: ${outcome.message}`);
        if (/did not run|Swarm closed/.test(outcome.message)) assert.ok(!ran, `${caller} #${outcome.seq} said it did not run, and ran`);
      }
    }
  }
});
