'use strict';
// HTTP/1.1 connections, both ways, are read and written on the JavaScript thread's own
// loop (src/driver.rs): answers given later, from timers, still go out; the handler
// timeout and the request timeout (timers of the runtime) still fire; bodies larger
// than the sockets' buffers go through; a node in a worker thread that ends takes its
// connections with it and leaves the process running; a closed node lets the process
// exit; and HTTP/2 without TLS, which hyper serves on the same port, works there too.
// Each case runs in a child process, as a user's service would.
const { test } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const path = require('node:path');
const readline = require('node:readline');
const { spawn } = require('node:child_process');
const { freePort, eventually } = require('./helpers/cluster');

function post (ip, port, topic, body, agent) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: ip, port, method: 'POST', path: `/${topic}`, agent, headers: { 'content-type': 'application/json' } }, res => {
      const chunks = [];
      res.on('data', c => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Runs `script` in a child process; resolves its output lines as they come and its exit. */
function child (script) {
  const proc = spawn(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  readline.createInterface({ input: proc.stdout }).on('line', line => lines.push(line));
  const exited = new Promise(resolve => proc.on('exit', code => resolve(code)));
  return { proc, lines, exited };
}

test('answers from timers, large answers and timeouts go out on kept-alive connections; close() lets the process exit', { timeout: 30000 }, async () => {
  const ip = '127.0.0.13';
  const port = await freePort();
  const { proc, lines, exited } = child(`
    const swarm = require('.');
    const say = line => process.stdout.write(line + '\\n');
    swarm.messages.on('later', ({ ms }) => new Promise(resolve => setTimeout(() => resolve({ after: ms }), ms)));
    swarm.messages.on('never', () => new Promise(() => {}));
    swarm.messages.on('big', ({ text }) => text.repeat(3));
    swarm.messages.on('close', () => { setImmediate(() => swarm.close().then(() => say('closed'))); return 'closing'; });
    swarm.init({ standalone: true, ip: '${ip}', messages: { port: ${port}, bind: '${ip}', maxProcessingTime: 400 } })
      .then(() => say('ready'));`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  try {
    await eventually(() => lines.includes('ready'), 10000, 'the child ready');
    const never = post(ip, port, 'never', {}, agent);
    // Answered from timers while another request on its own connection waits.
    for (let round = 0; round < 3; round++) {
      const replies = await Promise.all([1, 20, 50].map(ms => post(ip, port, 'later', { ms }, agent)));
      replies.forEach((reply, i) => assert.deepStrictEqual([reply.status, JSON.parse(reply.body)], [200, { after: [1, 20, 50][i] }]));
    }
    // Larger than the sockets' buffers both ways: written as the socket drains.
    const text = 'é'.repeat(1024 * 1024);
    const big = await post(ip, port, 'big', { text }, agent);
    assert.strictEqual(big.status, 200);
    assert.ok(big.body === text.repeat(3), 'the 6 MB answer whole');
    assert.deepStrictEqual(await never, { status: 500, body: 'operation timed out' });
    assert.strictEqual((await post(ip, port, 'close', {}, agent)).body, 'closing');
    agent.destroy();
    assert.strictEqual(await exited, 0);
    assert.strictEqual(lines.at(-1), 'closed');
  } finally {
    agent.destroy();
    proc.kill();
  }
});

test('a node in a worker thread that ends cuts its connections and leaves the process running', { timeout: 30000 }, async () => {
  const ip = '127.0.0.14';
  const port = await freePort();
  const { proc, lines, exited } = child(`
    const { Worker } = require('node:worker_threads');
    const say = line => process.stdout.write(line + '\\n');
    const worker = new Worker(\`
      const { parentPort } = require('node:worker_threads');
      const swarm = require(process.cwd());
      swarm.messages.on('echo', message => message);
      swarm.messages.on('hold', () => { parentPort.postMessage('held'); return new Promise(() => {}); });
      swarm.init({ standalone: true, ip: '${ip}', messages: { port: ${port}, bind: '${ip}' } })
        .then(() => parentPort.postMessage('ready'));\`, { eval: true });
    worker.on('message', message => {
      say(message);
      if (message === 'held') worker.terminate().then(() => { say('terminated'); setTimeout(() => say('alive'), 100); });
    });`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  try {
    await eventually(() => lines.includes('ready'), 10000, 'the worker ready');
    assert.deepStrictEqual(await post(ip, port, 'echo', { a: 1 }, agent), { status: 200, body: '{"a":1}' });
    // The kept-alive connection of that exchange is open, and another waits on 'hold'.
    await assert.rejects(post(ip, port, 'hold', {}, agent), e => ['ECONNRESET', 'ECONNREFUSED'].includes(e.code) || /socket hang up/.test(e.message));
    await eventually(() => lines.includes('alive'), 10000, 'the process running after its worker ended');
    assert.strictEqual(await exited, 0, 'the process exits on its own, nothing of the worker left on its loop');
  } finally {
    agent.destroy();
    proc.kill();
  }
});

test('sends over HTTP/1.1 made on the JavaScript thread get late and large answers, and time out', { timeout: 30000 }, async () => {
  // A 0.5.1-like peer: node:http at the swarm's port on its own address.
  const ip = '127.0.0.15';
  const peerIp = '127.0.0.16';
  const port = await freePort();
  const big = 'ü'.repeat(1024 * 1024);
  const peer = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/late') setTimeout(() => res.end(JSON.stringify({ late: true })), 50);
      else if (req.url === '/big') res.end(JSON.stringify({ big: big.repeat(3) }));
      // '/never' is never answered.
    });
  });
  await new Promise(resolve => peer.listen(port, peerIp, resolve));
  const { proc, lines, exited } = child(`
    const swarm = require('.');
    const say = line => process.stdout.write(line + '\\n');
    const outcome = p => p.then(value => ({ value }), e => ({ error: e.message }));
    swarm.init({ standalone: true, ip: '${ip}', messages: { port: ${port}, bind: '${ip}', multiplex: false, requestTimeout: 500 } })
      .then(() => Promise.all([
        outcome(swarm.messages.send('${peerIp}', 'late', {})),
        outcome(swarm.messages.send('${peerIp}', 'big', {}).then(reply => reply.big.length)),
        outcome(swarm.messages.send('${peerIp}', 'never', {})),
        // Sent from a timer, when nothing else is going on.
        new Promise(resolve => setTimeout(resolve, 20)).then(() => outcome(swarm.messages.send('${peerIp}', 'late', {})))
      ]))
      .then(results => { say(JSON.stringify(results)); return swarm.close(); });`);
  try {
    assert.strictEqual(await exited, 0);
    const [late, large, never, fromTimer] = JSON.parse(lines.find(line => line.startsWith('[{')));
    assert.deepStrictEqual(late, { value: { late: true } });
    assert.deepStrictEqual(large, { value: big.length * 3 });
    assert.match(never.error, /No reply from 127\.0\.0\.16 within 500 ms/);
    assert.deepStrictEqual(fromTimer, { value: { late: true } });
  } finally {
    proc.kill();
    peer.closeAllConnections();
    await new Promise(resolve => peer.close(resolve));
  }
});

test('HTTP/2 without TLS on the same port is served there too, streams at once', { timeout: 30000 }, async () => {
  const http2 = require('node:http2');
  const ip = '127.0.0.17';
  const port = await freePort();
  const { proc, lines } = child(`
    const swarm = require('.');
    swarm.messages.on('later', ({ ms }) => new Promise(resolve => setTimeout(() => resolve({ after: ms }), ms)));
    swarm.init({ standalone: true, ip: '${ip}', messages: { port: ${port}, bind: '${ip}' } })
      .then(() => process.stdout.write('ready\\n'));`);
  let client;
  try {
    await eventually(() => lines.includes('ready'), 10000, 'the child ready');
    client = http2.connect(`http://${ip}:${port}`);
    const ask = ms => new Promise((resolve, reject) => {
      const req = client.request({ ':method': 'POST', ':path': '/later', 'content-type': 'application/json' });
      let body = '';
      let status;
      req.on('response', headers => { status = headers[':status']; });
      req.on('data', chunk => { body += chunk; });
      req.on('end', () => resolve({ status, body: JSON.parse(body) }));
      req.on('error', reject);
      req.end(JSON.stringify({ ms }));
    });
    // On one connection, the quick answer does not wait for the slow one.
    const order = [];
    await Promise.all([200, 1].map(ms => ask(ms).then(reply => order.push(reply))));
    assert.deepStrictEqual(order, [{ status: 200, body: { after: 1 } }, { status: 200, body: { after: 200 } }]);
  } finally {
    if (client) client.close();
    proc.kill();
  }
});
