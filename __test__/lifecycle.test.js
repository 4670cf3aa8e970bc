'use strict';

// Pods leaving gracefully: a terminating pod leaves the ring and gets its SIGTERM
// heads-up while its endpoint is still listed; close() finishes queued work, answers
// in-flight calls, then releases the port.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { execFile } = require('node:child_process');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { startStandin } = require('./kube-standin');
const { startCluster, NodeProcess, freePort, eventually } = require('./helpers/cluster');

const IPS = ['127.0.0.51', '127.0.0.52', '127.0.0.53'];
let standin;
let cluster;

before(async () => {
  standin = await startStandin({ appName: 'web' });
  cluster = await startCluster(standin, IPS);
  for (const node of cluster.nodes) {
    await eventually(async () => (await node.request('nodes')).nodes.length === 3, 10000, `topology on ${node.ip}`);
  }
});

after(async () => {
  if (cluster) await cluster.stop();
  if (standin) await standin.close();
});

function refused (host, port) {
  return new Promise(resolve => {
    const socket = net.connect({ host, port }, () => { socket.destroy(); resolve(false); });
    socket.on('error', error => resolve(error.code === 'ECONNREFUSED'));
  });
}

// A node of its own, with extra messages options (the limits), listed in the stand-in.
async function nodeWith (ip, messages) {
  standin.addPod({ name: `web-${ip}`, ip });
  const port = await freePort();
  const node = new NodeProcess(ip, {
    KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(port),
    FIXTURE_MESSAGES: JSON.stringify(messages)
  });
  node.port = port;
  node.stop = async () => {
    await node.kill();
    standin.removePod(ip);
  };
  await node.waitEvent(e => e.event === 'ready', 20000, 'ready');
  return node;
}

test('a process that sent messages ends with its own exit code: process.exit() or an uncaught exception', async () => {
  const ends = [['exit', { code: 5 }, 5], ['throw', {}, 1]];
  for (const [i, [op, params, code]] of ends.entries()) {
    const ip = `127.0.0.${61 + i}`;
    standin.addPod({ name: `web-${ip}`, ip });
    const node = new NodeProcess(ip, {
      KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(cluster.port)
    }, { captureStderr: true });
    try {
      await node.waitEvent(e => e.event === 'ready', 20000, 'ready');
      // Connections of its own to a peer, watched by its loop.
      assert.strictEqual(await node.request('send', { to: IPS[1], topic: 'whoami', data: {} }), IPS[1]);
      node.child.stdin.write(`${JSON.stringify({ id: 0, op, ...params })}\n`);
      const exited = await node.exited;
      assert.deepStrictEqual(exited, { code, signal: null }, node.stderr);
      assert.doesNotMatch(node.stderr, /panicked|fatal runtime error/);
    } finally {
      await node.kill();
      standin.removePod(ip);
    }
  }
});

test('a terminating pod leaves the ring and gets its heads-up before its endpoint is gone', async () => {
  const [a, b, c] = cluster.nodes;
  const keys = Array.from({ length: 200 }, (_, i) => `t-${i}`);
  assert.ok((await a.request('owners', { keys })).includes(c.ip), 'c owns keys before');
  standin.updatePod(c.ip, { terminating: true });
  await c.waitEvent(e => e.event === 'sigterm', 10000, 'the heads-up');
  const slices = standin.endpointSlices().items || standin.endpointSlices();
  const listed = JSON.stringify(slices);
  assert.ok(listed.includes(c.ip), 'the endpoint is still listed, as terminating');
  for (const node of [a, b]) {
    await node.waitEvent(e => e.event === 'nodeRemoved' && e.ip === c.ip, 10000, 'nodeRemoved');
    const owners = await node.request('owners', { keys });
    assert.ok(!owners.includes(c.ip), `no key goes to the terminating pod from ${node.ip}`);
  }
  const ran = await a.request('execMany', { name: 'where', keys: keys.slice(0, 50) });
  assert.ok(!ran.includes(c.ip), 'no new task lands on it');
});

test('a call waiting on a peer fails at once when the peer leaves the endpoints', async () => {
  const [a, , c] = cluster.nodes;
  const waiting = a.request('send', { to: c.ip, topic: 'hold', data: {} });
  await eventually(async () => await c.request('gates') > 0, 10000, 'the call held on c');
  const started = Date.now();
  standin.removePod(c.ip);
  await assert.rejects(waiting, new RegExp(`Node ${c.ip.replace(/\./g, '\\.')} left the cluster`));
  assert.ok(Date.now() - started < 5000, 'failed at once, not at a timeout');
  await c.request('open');
});

// The multiplexed replies of a node in a worker thread are read on the worker's loop:
// ending the worker, with its connection open or after close(), must not bring the
// process down (libuv refuses to close a loop that still holds handles).
const WORKER_IPS = { terminate: '127.0.0.54', close: '127.0.0.55', exit: '127.0.0.56' };
for (const end of Object.keys(WORKER_IPS)) {
  test(`a node in a worker thread gets its replies, and the process outlives the worker (${end})`, async () => {
    const ip = WORKER_IPS[end];
    const [peer] = cluster.nodes;
    standin.addPod({ name: `web-${ip}`, ip });
    try {
      const env = Object.assign({}, process.env, {
        KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace,
        SWARM_PORT: String(cluster.port), NODE_IP: ip, PEER: peer.ip, WORKER_END: end
      });
      const program = path.join(__dirname, 'fixtures', 'worker-sender.js');
      const stdout = await new Promise((resolve, reject) => {
        execFile(process.execPath, [program], { env, timeout: 20000 }, (error, out, err) =>
          error ? reject(new Error(`exit ${error.code} ${error.signal}: ${err}`)) : resolve(out));
      });
      assert.deepStrictEqual(JSON.parse(stdout), { replies: 50, from: [peer.ip] });
      if (end === 'exit') {
        // Sent by a worker that exited in the same turn: written as its thread ended.
        await eventually(async () => await peer.request('gates') === 1, 10000, 'the last send');
        await peer.request('open');
      }
    } finally {
      standin.removePod(ip);
    }
  });
}

// Worker pools (test runners, piscina) load the addon in one worker after another. The
// first thread to allocate through the addon's allocator was its "main" thread; once
// that worker had exited, the next one crashed the process on its first allocation.
test('workers load the addon one after another, the first to load it gone before the next', async () => {
  const load = `const { HashRing } = require(${JSON.stringify(path.join(__dirname, '..'))}); new HashRing(['10.0.0.1', '10.0.0.2']).get('k')`;
  const code = `
    const { Worker } = require('node:worker_threads');
    const load = ${JSON.stringify(load)};
    const next = i => i < 3 && new Worker(load, { eval: true }).once('exit', code => { console.log(code); next(i + 1); });
    next(0);`;
  const stdout = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', code], { timeout: 20000 }, (error, out, err) =>
      error ? reject(new Error(`exit ${error.code} ${error.signal} after ${JSON.stringify(out)}: ${err}`)) : resolve(out));
  });
  assert.strictEqual(stdout, '0\n0\n0\n', 'three workers, each exited 0');
});

test('close() past its grace: the call still running may have run and is not sent again, the queued one is', async () => {
  const [a, b] = cluster.nodes;
  const ip = '127.0.0.57';
  standin.addPod({ name: `web-${ip}`, ip });
  const c = new NodeProcess(ip, { KUBE_URL: standin.url, KUBE_TOKEN: standin.token, KUBE_NS: standin.namespace, SWARM_PORT: String(cluster.port) });
  try {
    await c.waitEvent(e => e.event === 'ready', 20000, 'ready');
    await eventually(async () => (await a.request('nodes')).nodes.includes(ip), 10000, 'the new pod, seen');
    const keys = Array.from({ length: 100 }, (_, i) => `g-${i}`);
    const key = keys[(await a.request('owners', { keys })).indexOf(ip)];
    const running = a.request('exec', { name: 'limited', args: [key] }, 20000);
    // It settles while this test waits for the close; looked at below.
    running.catch(() => {});
    await eventually(async () => (await c.request('stats', { name: 'limited' })).running === 1, 10000, 'a running call');
    const queued = a.request('exec', { name: 'limited', args: [key] }, 20000);
    await eventually(async () => (await c.request('stats', { name: 'limited' })).queued === 1, 10000, 'a queued call');
    // The run at its gate never ends: the grace runs out.
    assert.strictEqual(await c.request('close', { grace: 200 }), 'closed');
    await assert.rejects(running, /Task limited execution failed on remote node 127\.0\.0\.57: swarm closed while the task ran \(its grace was over\): it may have run/);
    // The pod leaves the endpoints, as it does once it ends: the call that did not run
    // goes to the key's next owner, and runs there once.
    standin.removePod(ip);
    const owner = async () => (await a.request('owners', { keys: [key] }))[0];
    await eventually(async () => [a.ip, b.ip].includes(await owner()), 10000, 'the key\'s next owner');
    const next = (await owner()) === a.ip ? a : b;
    await eventually(async () => await next.request('gates') > 0, 10000, 'the queued call at its gate there');
    await next.request('open');
    assert.ok((await queued).startsWith(`${next.ip}:`), 'the queued call ran on the next owner');
    assert.strictEqual((await next.request('stats', { name: 'limited' })).running, 0, 'and nothing else ran there');
  } finally {
    await c.kill();
    if (standin.pods().some(pod => pod.ip === ip)) standin.removePod(ip);
  }
});

test('close() finishes queued work, answers in-flight calls, then releases the port', async () => {
  const [a, b] = cluster.nodes;
  const keys = Array.from({ length: 100 }, (_, i) => `c-${i}`);
  const owners = await a.request('owners', { keys });
  const key = keys[owners.indexOf(b.ip)];
  const running = a.request('exec', { name: 'limited', args: [key] });
  await eventually(async () => (await b.request('stats', { name: 'limited' })).running === 1, 10000, 'a running call');
  const queued = a.request('exec', { name: 'limited', args: [key] });
  await eventually(async () => (await b.request('stats', { name: 'limited' })).queued === 1, 10000, 'a queued call');
  const closing = b.request('close');
  for (let i = 0; i < 2; i++) {
    await eventually(async () => await b.request('gates') > 0, 10000, 'a run at its gate');
    await b.request('open');
  }
  const results = await Promise.all([running, queued]);
  assert.ok(results.every(r => r.startsWith(`${b.ip}:`)), 'both calls ran to completion on b');
  assert.strictEqual(await closing, 'closed');
  assert.ok(await refused(b.ip, cluster.port), 'the port is released');
});

test('past maxInFlight a request gets 503 at once, and the node recovers', async () => {
  const ip = '127.0.0.59';
  const limited = await nodeWith(ip, { maxInFlight: 1 });
  const port = limited.port;
  try {
    const post = topic => new Promise((resolve, reject) => {
      http.request({ host: ip, port, method: 'POST', path: `/${topic}` }, res => {
        let body = '';
        res.on('data', c => { body += c; });
        res.on('end', () => resolve({ status: res.statusCode, body }));
      }).on('error', reject).end();
    });
    const held = post('hold');
    await eventually(async () => await limited.request('gates') > 0, 10000, 'a held request');
    assert.strictEqual((await post('whoami')).status, 503);
    await limited.request('open');
    assert.strictEqual((await held).status, 200);
    assert.deepStrictEqual(await post('whoami'), { status: 200, body: ip });
  } finally {
    await limited.stop();
  }
});

test('past maxConnections a new connection waits for a free one', async () => {
  const ip = '127.0.0.58';
  const few = await nodeWith(ip, { maxConnections: 2, headerTimeout: 1000 });
  const port = few.port;
  try {
    // Two idle connections take both slots, until the header timeout ends them.
    const idle = await Promise.all([1, 2].map(() => new Promise(resolve => {
      const socket = net.connect({ host: ip, port }, () => resolve(socket));
      socket.on('error', () => {});
    })));
    const closed = Promise.all(idle.map(s => new Promise(resolve => s.on('close', resolve))));
    const started = Date.now();
    const status = await new Promise((resolve, reject) => {
      http.request({ host: ip, port, method: 'POST', path: '/whoami', agent: false }, res => { res.resume(); resolve(res.statusCode); })
        .on('error', reject).end();
    });
    await closed;
    assert.strictEqual(status, 200);
    assert.ok(Date.now() - started >= 800, 'the request waited for a slot');
  } finally {
    await few.stop();
  }
});
