'use strict';

// A pod that starts and goes straight to work: its first action after init() is a burst
// of sends and task calls to a peer of ours. The multiplexed connection to that peer is
// handed to the JavaScript thread while replies of the first calls are read on its loop,
// and it used to be started there, in a callback of libuv, before anything had been
// delivered: the first JavaScript value of the thread was made outside a handle scope,
// and V8 aborted the process ("Cannot create a handle without a HandleScope") in 4 to
// 15 starts of 30.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const { startStandin } = require('./kube-standin');
const { startCluster, NodeProcess } = require('./helpers/cluster');

const PEER = '127.0.0.31';
const STARTS = 30;
let standin;
let cluster;

before(async () => {
  standin = await startStandin({ appName: 'web' });
  cluster = await startCluster(standin, [PEER]);
});

after(async () => {
  if (cluster) await cluster.stop();
  if (standin) await standin.close();
});

// What ended the run of a process: its exit, or its report.
const outcome = (report, exited) => Promise.race([report.then(value => ({ value })), exited.then(exit => ({ exit }))]);

test(`${STARTS} fresh processes, each bursting at once after init(): none aborts, every call succeeds`, async () => {
  const fresh = '127.0.0.32';
  standin.addPod({ name: 'web-fresh', ip: fresh });
  const env = { KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(cluster.port), FIXTURE_BURST_TO: PEER };
  const aborted = [];
  for (let start = 0; start < STARTS; start++) {
    const node = new NodeProcess(fresh, env, { captureStderr: true });
    const ended = await outcome(node.waitEvent(e => e.event === 'burst', 20000, 'the burst'), node.exited);
    if (ended.exit) aborted.push(`start ${start}: ${JSON.stringify(ended.exit)} ${node.stderr.split('\n').slice(0, 6).join(' | ')}`);
    else assert.deepStrictEqual([ended.value.ok, ended.value.failed], [64 + ended.value.execs, 0], `start ${start}`);
    await node.kill();
  }
  standin.removePod(fresh);
  assert.deepStrictEqual(aborted, [], `${aborted.length} of ${STARTS} starts aborted`);
  // The peer answered the first calls of every fresh node, and is still up.
  assert.strictEqual(cluster.nodes[0].child.exitCode, null);
});

test(`${STARTS} fresh environments in worker threads of one process: each has the peer's connection handed to it before any delivery, and none aborts`, async () => {
  const ips = Array.from({ length: STARTS }, (_, i) => `127.0.0.${40 + i}`);
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'worker-burst.js')], {
    env: Object.assign({}, process.env, {
      KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(cluster.port), PEER, WORKER_IPS: JSON.stringify(ips)
    }),
    stdio: ['ignore', 'pipe', 'pipe']
  });
  let stderr = '';
  child.stderr.on('data', chunk => { stderr += chunk; });
  const reports = [];
  readline.createInterface({ input: child.stdout }).on('line', line => reports.push(JSON.parse(line)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120000);
  const exit = await new Promise(resolve => child.on('close', (code, signal) => resolve({ code, signal })));
  clearTimeout(timer);
  assert.deepStrictEqual(exit, { code: 0, signal: null }, `the process ended after ${reports.length} workers: ${stderr.split('\n').slice(0, 6).join(' | ')}`);
  assert.deepStrictEqual(reports, ips.map(ip => ({ ip, ok: 128, failed: 0 })));
});
