'use strict';

// `npm run bench`: this project and its peers measured in the same run, alternating,
// over several rounds; prints medians and ratios, and writes bench/results/latest.json.
// Peers: a pure-Node keep-alive implementation of the same wire protocol, a raw hyper
// client and server (no JavaScript), and hashring@3 for ring look-ups (beside our two
// rings: hashring@3's, `ours`, and the opt-in xxh3 one, `xxh3`). Messaging of ours
// runs twice: between pods of ours (the multiplexed transport, `ours`) and on the
// 0.5.1-compatible HTTP/1.1 path (`ours-http1`, a cluster with multiplexing off). The
// engine's client also sends from the runtime to the raw server (`engine`). Our pods run
// as in an application without OpenTelemetry, except those of `ours-traced`: the
// OpenTelemetry SDK registered, its spans batched and dropped (what tracing costs).
// Everything runs on 127.0.0.x; the Kubernetes API is the project's stand-in.
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { topologyAtScale } = require('./topology');
const { performance } = require('node:perf_hooks');
const { startStandin } = require('../__test__/kube-standin');
const { startCluster, NodeProcess, freePort } = require('../__test__/helpers/cluster');

const ROOT = path.join(__dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS || 5);
const SCALE = Number(process.env.BENCH_SCALE || 1);
const N = { seq: 2000 * SCALE, flight: 1e6 * SCALE, broadcast: 1000 * SCALE };
// Runs with 64 in flight last the same time for every peer (at most N.flight sends). A
// run starts slow after the rest below (its first tens of thousands of sends went at
// half speed), and fixed counts gave the fastest peer the shortest run, so the largest
// share of its start.
const FLIGHT_SECONDS = 1 * SCALE;
const WIDE = 20;
// Pods of ours as in an application without OpenTelemetry (a development dependency here).
const BARE = { FIXTURE_WITHOUT_OTEL: '1' };
const ONE_KEY_SERIALIZED = 'tasks.exec 64 in flight, one key, serialized';
const ONE_KEY_CONCURRENT = 'tasks.exec 64 in flight, one key, not serialized';
// The opt-in ring's options, for `HashRing`.
const XXH3 = { ring: 'xxh3' };

// Every timed messaging run starts after the same rest. On the VMs measured, a run that
// follows idle time goes much faster than one that follows load (sequential sends took
// about half the time after a rest), and the peers run in a fixed order: without it, the
// first run of a round, after the light topology figure, had a rest the others had not.
const REST_MS = 250;
const rested = run => new Promise(resolve => setTimeout(resolve, REST_MS)).then(run);

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = bytes => Math.round(bytes / 1048576 * 10) / 10;

function build () {
  console.log('building the release addon and the raw hyper peer...');
  execFileSync(process.execPath, ['scripts/install.js'], {
    cwd: ROOT, stdio: 'inherit', env: Object.assign({}, process.env, { NODE_SWARM_KB_FORCE_BUILD: '1', NODE_SWARM_KB_PROFILE: 'release' })
  });
  execFileSync('cargo', ['build', '--release', '-p', 'swarm-core', '--example', 'raw_hyper'], { cwd: ROOT, stdio: 'inherit' });
  return path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'release', 'examples', 'raw_hyper');
}

function startBaseline (ips, port) {
  const program = path.join(__dirname, 'peers', 'node-baseline.js');
  return ips.map(ip => new NodeProcess(ip, { SWARM_PORT: String(port) }, { program }));
}

function startRaw (binary, addr) {
  const child = spawn(binary, ['serve', addr], { stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', () => resolve(child));
    child.once('error', reject);
  });
}

// `mode`: 'bench' for hyper's own client, 'engine' for the engine's client on the runtime
// over HTTP/1.1 (how a node sends off the loop's thread: Windows, retried task calls).
function rawBench (binary, addr, n, concurrency, seconds, mode = 'bench') {
  const args = [mode, addr, String(n), String(concurrency)].concat(seconds === undefined ? [] : [String(seconds)]);
  return JSON.parse(execFileSync(binary, args, { encoding: 'utf8' }));
}

// How evenly `Ring` spreads `keys` over `servers`: the busiest server's keys over the
// average and over the least loaded's, and the coefficient of variation.
function ringSpread (Ring, servers, keys, options) {
  const ring = new Ring(servers, options);
  const counts = new Map(servers.map(s => [s, 0]));
  for (const key of keys) {
    const owner = ring.get(key);
    counts.set(owner, counts.get(owner) + 1);
  }
  const values = [...counts.values()];
  const mean = keys.length / servers.length;
  const sd = Math.sqrt(values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / values.length);
  const round = x => Math.round(x * 1000) / 1000;
  return { maxOverAvg: round(Math.max(...values) / mean), maxOverMin: round(Math.max(...values) / Math.min(...values)), sd: Math.round(sd), cv: round(sd / mean) };
}

function ringBench (Ring, servers, keys, options) {
  const ring = new Ring(servers, options);
  const t = performance.now();
  for (const key of keys) ring.get(key);
  return Math.round((performance.now() - t) * 1e6 / keys.length);
}

async function main () {
  const raw = build();
  const { HashRing } = require('..');
  const OldRing = require('hashring');
  const standin = await startStandin({ appName: 'web' });
  const ours = await startCluster(standin, ['127.0.0.101', '127.0.0.102', '127.0.0.103'], { env: BARE });
  const standinHttp1 = await startStandin({ appName: 'web' });
  const oursHttp1 = await startCluster(standinHttp1, ['127.0.0.104', '127.0.0.105', '127.0.0.106'], { env: { SWARM_MESSAGING_MULTIPLEX: 'false', ...BARE } });
  const standinTraced = await startStandin({ appName: 'web' });
  const oursTraced = await startCluster(standinTraced, ['127.0.0.107', '127.0.0.108'], { env: { FIXTURE_TRACING: 'bench' } });
  const basePort = await freePort();
  const base = startBaseline(['127.0.0.111', '127.0.0.112', '127.0.0.113'], basePort);
  await Promise.all(base.map(b => b.waitEvent(e => e.event === 'ready', 10000, 'baseline ready')));
  const rawAddr = `127.0.0.121:${await freePort()}`;
  const rawServer = await startRaw(raw, rawAddr);
  const results = {};
  const record = (figure, peer, value) => ((results[figure] = results[figure] || {})[peer] = results[figure][peer] || []).push(value);
  try {
    const [a, b] = ours.nodes;
    const [h1a, h1b] = oursHttp1.nodes;
    const [ta, tb] = oursTraced.nodes;
    const keys = Array.from({ length: 4000 }, (_, i) => `k${i}`);
    const ownedBy = async (sender, owner) => (await sender.request('owners', { keys })).map((o, i) => o === owner.ip ? keys[i] : null).filter(Boolean);
    const owned = await ownedBy(a, b);
    const ownedTraced = await ownedBy(ta, tb);
    const [idle, receiverIdle] = await Promise.all([a.request('usage'), b.request('usage')]);
    const [baseIdle, baseReceiverIdle] = await Promise.all([base[0].request('usage'), base[1].request('usage')]);
    // `seconds`: a time limit, or none (left out of the request).
    const sends = (n, c, seconds) => ({
      ours: () => crossed(a, b, () => a.request('bench', { kind: 'send', to: b.ip, n, concurrency: c, seconds }, 120000)),
      'ours-http1': () => crossed(h1a, h1b, () => h1a.request('bench', { kind: 'send', to: h1b.ip, n, concurrency: c, seconds }, 120000)),
      'ours-traced': () => crossed(ta, tb, () => ta.request('bench', { kind: 'send', to: tb.ip, n, concurrency: c, seconds }, 120000)),
      node: () => base[0].request('bench', { kind: 'send', to: base[1].ip, n, concurrency: c, seconds }, 120000),
      raw: () => rawBench(raw, rawAddr, n, c, seconds),
      engine: () => rawBench(raw, rawAddr, n, c, seconds, 'engine')
    });
    // One untimed run of each peer first: connections open, JavaScript compiled.
    for (const [n, c, seconds] of [[N.seq / 4, 1], [N.flight, 64, FLIGHT_SECONDS / 5]]) {
      for (const run of Object.values(sends(n, c, seconds))) await run();
    }
    for (let round = 1; round <= ROUNDS; round++) {
      console.log(`round ${round}/${ROUNDS}`);
      for (const [figure, n, c, seconds] of [['send sequential', N.seq, 1], ['send 64 in flight', N.flight, 64, FLIGHT_SECONDS]]) {
        for (const [peer, run] of Object.entries(sends(n, c, seconds))) record(figure, peer, await rested(run));
      }
      record('broadcast (3 nodes)', 'ours', await rested(() => a.request('bench', { kind: 'broadcast', n: N.broadcast, concurrency: 1 }, 120000)));
      record('broadcast (3 nodes)', 'node', await rested(() => base[0].request('bench', { kind: 'broadcast', to: base.map(x => x.ip), n: N.broadcast, concurrency: 1 }, 120000)));
      record('tasks.exec sequential', 'ours', await rested(() => a.request('bench', { kind: 'exec', keys: owned, n: N.seq, concurrency: 1 }, 120000)));
      record('tasks.exec 64 in flight', 'ours', await rested(() => crossed(a, b, () => a.request('bench', { kind: 'exec', keys: owned, n: N.flight, concurrency: 64, seconds: FLIGHT_SECONDS }, 120000))));
      record('tasks.exec 64 in flight', 'ours-traced', await rested(() => crossed(ta, tb, () => ta.request('bench', { kind: 'exec', keys: ownedTraced, n: N.flight, concurrency: 64, seconds: FLIGHT_SECONDS }, 120000))));
      // One key: a serialized task runs its calls one after the other, the other side by
      // side; which goes first alternates, so that neither always has the warmer machine.
      const oneKey = [[ONE_KEY_SERIALIZED, 'whereInOrder'], [ONE_KEY_CONCURRENT, 'where']];
      for (const [figure, task] of round % 2 ? oneKey : oneKey.reverse()) {
        record(figure, 'ours', await rested(() => crossed(a, b, () => a.request('bench', { kind: 'exec', task, keys: owned.slice(0, 1), n: N.flight, concurrency: 64, seconds: FLIGHT_SECONDS }, 120000))));
      }
      const ringKeys = Array.from({ length: 1e6 }, (_, i) => `customer-${round}-${i}`);
      // Made flat before either ring sees them: V8 builds these keys as cons strings and
      // flattens one on its first read, a cost that fell on whichever ring went first.
      for (const key of ringKeys) key.charCodeAt(key.length - 1);
      for (const count of [3, 100]) {
        const servers = Array.from({ length: count }, (_, i) => `10.${i >> 8}.${i & 255}.1`);
        const rings = [['ours', HashRing], ['xxh3', HashRing, XXH3], ['hashring', OldRing]];
        for (const [peer, Ring, options] of round % 2 ? rings : rings.reverse()) {
          record(`ring look-up, ${count} nodes (ns)`, peer, { ns: ringBench(Ring, servers, ringKeys, options) });
        }
      }
      // Pods that join only to be timed: loopback addresses, removed right after, so no
      // later broadcast or task is ever sent anywhere but this machine.
      const changes = [];
      for (let i = 0; i < 20; i++) {
        const ip = `127.99.${round}.${i + 1}`;
        const t = performance.now();
        standin.addPod({ name: `bench-${round}-${i}`, ip });
        await Promise.all(ours.nodes.map(n => n.waitEvent(e => e.event === 'nodeAdded' && e.ip === ip, 10000, 'nodeAdded')));
        changes.push(performance.now() - t);
        standin.removePod(ip);
        await Promise.all(ours.nodes.map(n => n.waitEvent(e => e.event === 'nodeRemoved' && e.ip === ip, 10000, 'nodeRemoved')));
      }
      record('API event to nodeAdded on every node (ms)', 'ours', { p50: Math.round(median(changes) * 10) / 10, worst: Math.round(Math.max(...changes) * 10) / 10 });
    }
    console.log(`broadcast to ${WIDE} nodes`);
    const wide = await widen(standin, ours, base, basePort);
    try {
      for (let round = 1; round <= ROUNDS; round++) {
        record(`broadcast (${WIDE} nodes)`, 'ours', await rested(() => a.request('bench', { kind: 'broadcast', n: N.broadcast, concurrency: 1 }, 120000)));
        record(`broadcast (${WIDE} nodes)`, 'node', await rested(() => base[0].request('bench', { kind: 'broadcast', to: wide.baseIps, n: N.broadcast, concurrency: 1 }, 120000)));
      }
    } finally {
      await wide.stop();
    }
    console.log('topology at scale');
    const scale = await topologyAtScale();
    const [loaded, receiverLoaded] = await Promise.all([a.request('usage'), b.request('usage')]);
    const [baseLoaded, baseReceiverLoaded] = await Promise.all([base[0].request('usage'), base[1].request('usage')]);
    const readyMs = ours.nodes.map(n => n.events.find(e => e.event === 'ready').initMs);
    const summary = summarize(results);
    summary.push({ figure: 'start to ready (ms)', ours: Math.round(median(readyMs)) });
    // The same for every run: placements depend only on the keys and the servers.
    const spreadKeys = Array.from({ length: 1e6 }, (_, i) => `customer-${i}`);
    for (const count of [3, 20, 100]) {
      const servers = Array.from({ length: count }, (_, i) => `10.${i >> 8}.${i & 255}.1`);
      summary.push({ figure: `ring spread of 1M keys, ${count} nodes`, ours: ringSpread(HashRing, servers, spreadKeys), xxh3: ringSpread(HashRing, servers, spreadKeys, XXH3) });
    }
    // The sending node's figure after load includes the benchmark's own arrays of
    // latencies (8 MB a run, garbage until V8 collects it); the receiving node's does not.
    summary.push({ figure: 'RSS idle / after load (MiB)', ours: `${mib(idle.rss)} / ${mib(loaded.rss)}`, node: `${mib(baseIdle.rss)} / ${mib(baseLoaded.rss)}` });
    summary.push({ figure: 'RSS idle / after load, receiving node (MiB)', ours: `${mib(receiverIdle.rss)} / ${mib(receiverLoaded.rss)}`, node: `${mib(baseReceiverIdle.rss)} / ${mib(baseReceiverLoaded.rss)}` });
    summary.push({ figure: `${scale.endpoints} endpoints: nodes, ready (ms)`, ours: { nodes: scale.ours.nodes, initMs: scale.ours.initMs }, node: { nodes: scale.node.nodes } });
    for (const field of ['cpuPerChangeUs', 'latencyP50Ms', 'latencyWorstMs', 'rssMiB']) {
      summary.push({ figure: `churn at 100/s over ${scale.endpoints} endpoints: ${field}`, ours: { [field]: scale.ours[field] }, node: { [field]: scale.node[field] } });
    }
    print(summary);
    // Each run is kept under its date and commit, to be committed with the change it
    // measured; latest.json is the newest, for a quick look.
    const saved = JSON.stringify({ machine: machine(), commit: commit(), rounds: ROUNDS, summary, raw: results }, null, 2);
    const dir = path.join(__dirname, 'results');
    const kept = path.join(dir, `${new Date().toISOString().slice(0, 16).replace(/:/g, '-')}-${commit()}.json`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(kept, saved);
    fs.writeFileSync(path.join(dir, 'latest.json'), saved);
    console.log(`\nwritten to ${path.relative(ROOT, kept)} (and latest.json)`);
  } finally {
    rawServer.stdin.end();
    rawServer.kill();
    await Promise.all([...base, ...ours.nodes, ...oursHttp1.nodes, ...oursTraced.nodes].map(n => n.kill()));
    await Promise.all([standin.close(), standinHttp1.close(), standinTraced.close()]);
  }
}

// Runs `run` and adds how many letters (calls into JavaScript) each wake-up of the
// JavaScript thread carried, on the sending and on the receiving node.
async function crossed (sender, receiver, run) {
  const before = await Promise.all([sender.request('usage'), receiver.request('usage')]);
  const result = await run();
  const after = await Promise.all([sender.request('usage'), receiver.request('usage')]);
  const perWake = i => {
    const [x, y] = [before[i].crossings, after[i].crossings];
    return Math.round((y.letters - x.letters) / Math.max(1, y.wakes - x.wakes) * 100) / 100;
  };
  return Object.assign(result, { callsPerWakeSender: perWake(0), callsPerWakeReceiver: perWake(1) });
}

// Grows both clusters to WIDE nodes (more loopback addresses, pods in the stand-in),
// until the sender of ours sees them all; `stop` kills and removes the extra ones.
async function widen (standin, ours, base, basePort) {
  const ips = Array.from({ length: WIDE - ours.nodes.length }, (_, i) => `127.0.0.${131 + i}`);
  const baseIps = Array.from({ length: WIDE - base.length }, (_, i) => `127.0.0.${171 + i}`);
  const extra = ips.map(ip => {
    standin.addPod({ name: `bench-wide-${ip}`, ip });
    return new NodeProcess(ip, { KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(ours.port), ...BARE });
  });
  const extraBase = startBaseline(baseIps, basePort);
  const stop = async () => {
    await Promise.all([...extra, ...extraBase].map(n => n.kill()));
    ips.forEach(ip => standin.removePod(ip));
  };
  try {
    await Promise.all([...extra, ...extraBase].map(n => n.waitEvent(e => e.event === 'ready', 30000, 'ready')));
    const sender = ours.nodes[0];
    await Promise.all(ips.map(ip => sender.waitEvent(e => e.event === 'nodeAdded' && e.ip === ip, 30000, 'nodeAdded')));
  } catch (error) {
    await stop();
    throw error;
  }
  return { baseIps: [...base.map(b => b.ip), ...baseIps], stop };
}

// Medians over the rounds, and ratios against the peers.
// The commit measured, with `+` when the tree had changes.
function commit () {
  const git = args => require('child_process').execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
  try {
    return git(['rev-parse', '--short', 'HEAD']) + (git(['status', '--porcelain', '--untracked-files=no']) ? '+' : '');
  } catch (error) {
    return 'unknown';
  }
}

function summarize (results) {
  return Object.entries(results).map(([figure, peers]) => {
    const row = { figure };
    for (const [peer, runs] of Object.entries(peers)) {
      const fields = Object.keys(runs[0]).filter(k => !['n', 'concurrency'].includes(k));
      row[peer] = Object.fromEntries(fields.map(f => [f, median(runs.map(r => r[f]))]));
    }
    return row;
  });
}

function show (value) {
  if (value === undefined) return '';
  if (typeof value !== 'object') return String(value);
  return Object.entries(value).map(([k, v]) => `${k} ${v}`).join(', ');
}

function print (summary) {
  console.log('\n| figure | ours | ours, HTTP/1.1 | ours, traced | ours, xxh3 ring | pure Node | raw hyper | the engine off the loop, HTTP/1.1 | hashring@3 |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const row of summary) console.log(`| ${row.figure} | ${show(row.ours)} | ${show(row['ours-http1'])} | ${show(row['ours-traced'])} | ${show(row.xxh3)} | ${show(row.node)} | ${show(row.raw)} | ${show(row.engine)} | ${show(row.hashring)} |`);
  const ratio = (figure, field, peer, higherIsBetter, mine = 'ours') => {
    const row = summary.find(r => r.figure === figure);
    if (!row || !row[peer] || !row[mine]) return;
    const x = row[mine][field] / row[peer][field];
    console.log(`${figure}, ${field}: ${mine} / ${peer} = ${x.toFixed(2)}${higherIsBetter ? ' (higher is better)' : ' (lower is better)'}`);
  };
  console.log('');
  ratio('send sequential', 'p50', 'raw', false);
  ratio('send sequential', 'p50', 'raw', false, 'ours-http1');
  ratio('send sequential', 'p50', 'node', false);
  ratio('send 64 in flight', 'opsPerSec', 'raw', true);
  ratio('send 64 in flight', 'opsPerSec', 'raw', true, 'ours-http1');
  ratio('send sequential', 'p50', 'raw', false, 'engine');
  ratio('send 64 in flight', 'opsPerSec', 'raw', true, 'engine');
  ratio('send 64 in flight', 'opsPerSec', 'node', true);
  ratio('send 64 in flight', 'opsPerSec', 'node', true, 'ours-http1');
  ratio('broadcast (3 nodes)', 'p50', 'node', false);
  ratio(`broadcast (${WIDE} nodes)`, 'p50', 'node', false);
  ratio('send sequential', 'p50', 'ours', false, 'ours-traced');
  ratio('send 64 in flight', 'opsPerSec', 'ours', true, 'ours-traced');
  ratio('tasks.exec 64 in flight', 'opsPerSec', 'ours', true, 'ours-traced');
  const traced = summary.find(r => r.figure === 'send 64 in flight');
  if (traced && traced['ours-traced']) {
    const us = ops => 1e6 / ops;
    console.log(`tracing's cost per message, 64 in flight: ${(us(traced['ours-traced'].opsPerSec) - us(traced.ours.opsPerSec)).toFixed(1)} µs (ours-traced minus ours, per send)`);
  }
  ratio('ring look-up, 3 nodes (ns)', 'ns', 'hashring', false);
  ratio('ring look-up, 100 nodes (ns)', 'ns', 'hashring', false);
  for (const count of [3, 100]) {
    const row = summary.find(r => r.figure === `ring look-up, ${count} nodes (ns)`);
    if (row && row.xxh3) console.log(`ring look-up, ${count} nodes: xxh3 ring / default ring = ${(row.xxh3.ns / row.ours.ns).toFixed(2)} (target <= 0.6)`);
  }
  const exec = summary.find(r => r.figure === 'tasks.exec 64 in flight');
  const send = summary.find(r => r.figure === 'send 64 in flight');
  if (exec && send) console.log(`tasks.exec / send, 64 in flight ops/s = ${(exec.ours.opsPerSec / send.ours.opsPerSec).toFixed(2)} (target >= 0.8)`);
  const serialized = summary.find(r => r.figure === ONE_KEY_SERIALIZED);
  const concurrent = summary.find(r => r.figure === ONE_KEY_CONCURRENT);
  if (serialized && concurrent) console.log(`tasks.exec on one key, 64 in flight ops/s: serialized / not serialized = ${(serialized.ours.opsPerSec / concurrent.ours.opsPerSec).toFixed(2)} (target >= 0.8)`);
}

function machine () {
  return { cpus: os.cpus().length, model: os.cpus()[0].model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` };
}

main().catch(error => {
  console.error(error);
  process.exit(1);
});
