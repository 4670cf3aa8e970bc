'use strict';

// The topology at scale: 5,000 endpoints in slices of 100, then a churn of 100 changes a
// second; for one node of ours and the pure-Node watcher: time to the first topology,
// RSS, CPU per change and change-to-event latency.
const { performance } = require('node:perf_hooks');
const { startStandin } = require('../__test__/kube-standin');
const { NodeProcess, freePort } = require('../__test__/helpers/cluster');

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round1 = x => Math.round(x * 10) / 10;

// Loopback addresses: the pods only exist in the topology; nothing is sent to them.
const PODS = Array.from({ length: 5000 }, (_, i) => ({ name: `web-${i}`, ip: `127.50.${i >> 8}.${i & 255}` }));

async function churn (standin, watchers, changes, perSecond) {
  const latencies = [];
  const cpuBefore = await Promise.all(watchers.map(w => w.request('usage')));
  for (let i = 0; i < changes; i++) {
    const started = performance.now();
    const ip = `127.51.${i >> 8}.${i & 255}`;
    standin.addPod({ name: `churn-${i}`, ip });
    await Promise.all(watchers.map(async (w, k) => {
      await w.waitEvent(e => e.event === 'nodeAdded' && e.ip === ip, 10000, 'nodeAdded');
      (latencies[k] = latencies[k] || []).push(performance.now() - started);
    }));
    standin.removePod(ip);
    const wait = started + 2000 / perSecond - performance.now();
    if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait));
  }
  const cpuAfter = await Promise.all(watchers.map(w => w.request('usage')));
  return watchers.map((w, k) => {
    const cpu = (cpuAfter[k].cpu.user + cpuAfter[k].cpu.system) - (cpuBefore[k].cpu.user + cpuBefore[k].cpu.system);
    return {
      cpuPerChangeUs: Math.round(cpu / (2 * changes)),
      latencyP50Ms: round1(median(latencies[k])),
      latencyWorstMs: round1(Math.max(...latencies[k])),
      rssMiB: round1(cpuAfter[k].rss / 1048576)
    };
  });
}

async function topologyAtScale ({ changes = 200, perSecond = 100 } = {}) {
  const standin = await startStandin({ appName: 'web', sliceSize: 100, pods: PODS });
  const env = { KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace };
  standin.addPod({ name: 'web-ours', ip: '127.0.0.131' });
  const t0 = performance.now();
  const ours = new NodeProcess('127.0.0.131', Object.assign({ SWARM_PORT: String(await freePort()) }, env));
  const peer = new NodeProcess('127.0.0.132', env, { program: require.resolve('./peers/node-watcher') });
  try {
    const [oursReady, peerReady] = await Promise.all([ours, peer].map(w => w.waitEvent(e => e.event === 'ready', 30000, 'ready')));
    const startMs = round1(performance.now() - t0);
    const [o, p] = await churn(standin, [ours, peer], changes, perSecond);
    return {
      endpoints: PODS.length + 1,
      ours: Object.assign({ nodes: oursReady.nodes.length, initMs: round1(oursReady.initMs), processStartToReadyMs: startMs }, o),
      node: Object.assign({ nodes: peerReady.nodes.length }, p)
    };
  } finally {
    await Promise.all([ours.kill(), peer.kill()]);
    await standin.close();
  }
}

module.exports = { topologyAtScale };
