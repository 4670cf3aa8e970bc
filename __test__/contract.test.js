'use strict';

// The 0.5.1 contract through the facade, on one standalone node in this process
// (docs/compat.md §1, §3, §4): API shape, error messages, the wire codec, task semantics.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const Promise = require('bluebird');
const { freePort, eventually } = require('./helpers/cluster');

const IP = '127.0.0.9';
const swarm = require('..');
let port;

function post (topic, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: IP, port, method: 'POST', path: `/${topic}`, headers }, res => {
      const chunks = [];
      res.on('data', c => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  port = await freePort();
  swarm.messages.on('echo', (message, topics, from) => ({ message, topics, from }));
  swarm.messages.on('text', () => 'plain');
  swarm.messages.on('none', () => undefined);
  swarm.messages.on('fail', () => { const e = new Error('nope'); e.statusCode = 422; throw e; });
  swarm.messages.on('reject', () => Promise.reject(new Error('rejected')));
  swarm.tasks.register('add', (a, b) => a + b);
  const nodes = await swarm.init({ standalone: true, ip: IP, messages: { port, bind: IP, maxBodySize: 4096, headerTimeout: 300 } });
  assert.deepStrictEqual(Object.keys(nodes), [IP]);
});

after(() => swarm.close());

test('require never throws, whatever HOSTNAME says', () => {
  for (const hostname of ['web-7d9f8b6c5-x2x9z', 'web-0', 'web-12-abcde', 'weird']) {
    execFileSync(process.execPath, ['-e', "require('.')"], { cwd: path.join(__dirname, '..'), env: Object.assign({}, process.env, { HOSTNAME: hostname }) });
  }
  const { appNameFromHostname } = require('../lib/options');
  assert.strictEqual(appNameFromHostname('web-7d9f8b6c5-x2x9z'), 'web');
  assert.strictEqual(appNameFromHostname('web-0'), 'web');
  assert.strictEqual(appNameFromHostname('my-app-12-abcde'), 'my-app');
});

test('module surface: getters, isMe, a second init', async () => {
  assert.strictEqual(swarm.isReady, true);
  assert.strictEqual(swarm.master, IP);
  assert.strictEqual(swarm.amIMaster, true);
  assert.strictEqual(typeof Object.getOwnPropertyDescriptor(swarm, 'amIMaster').get, 'function');
  assert.ok(swarm.isMe(IP) && swarm.isMe({ ip: IP }) && !swarm.isMe('10.9.9.9'));
  const again = swarm.init();
  assert.strictEqual(typeof again.spread, 'function', 'a Bluebird promise');
  assert.deepStrictEqual(Object.keys(await again), [IP]);
});

test('the API\'s Bluebird promises resume as microtasks; the application\'s Bluebird keeps its scheduler', async () => {
  // A reply resumes its `await` in the callback that delivered it, so what the
  // continuation sends goes out with that callback instead of a turn of the loop later.
  const order = [];
  const immediate = new Promise(resolve => setImmediate(() => { order.push('immediate'); resolve(); }));
  const ours = swarm.send(IP, 'echo', { ignored: true });
  assert.strictEqual(typeof ours.tap, 'function', 'a Bluebird promise');
  ours.then(() => order.push('ours'));
  Promise.resolve().then(() => order.push('application'));
  await immediate;
  await new Promise(resolve => setImmediate(resolve));
  assert.deepStrictEqual(order, ['ours', 'immediate', 'application']);
  assert.ok(Promise.resolve(ours) instanceof Promise, 'the application\'s Bluebird adopts ours');
});

test('the facade keeps fast properties (its reads are inline-cached, not hash look-ups)', () => {
  // V8 tells, with its natives syntax, whether an object is in dictionary mode: an
  // accessor written into the facade's object literal would put it there.
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '-e',
    `const s = require(${JSON.stringify(path.join(__dirname, '..'))}); console.log(%HasFastProperties(s), %HasFastProperties(s.messages), %HasFastProperties(s.tasks))`],
  { encoding: 'utf8' });
  assert.strictEqual(out.trim(), 'true true true');
});

test('send validation: 0.5.1 messages and the error event', async () => {
  const seen = [];
  const onError = e => seen.push(e.message);
  swarm.on('error', onError);
  await assert.rejects(swarm.send(IP, '', 1), /Unable to send message: Missing topic/);
  await assert.rejects(swarm.send(null, 'echo', 1), /Unable to send message: Missing node/);
  swarm.off('error', onError);
  assert.deepStrictEqual(seen, ['Unable to send message: Missing topic', 'Unable to send message: Missing node']);
  assert.strictEqual(await swarm.send(IP, 'echo', { a: 1 }), undefined, 'a local IP is not delivered');
  assert.deepStrictEqual(await swarm.broadcast('echo', 1), [undefined]);
});

test('messages.send delivers to itself with the 0.5.1 codec', async () => {
  const reply = await swarm.messages.send(IP, ['echo', 'x'], { a: 1 });
  assert.deepStrictEqual(reply, { message: { a: 1 }, topics: ['echo', 'x'], from: IP });
  for (const value of [0, false, null, true]) {
    assert.deepStrictEqual((await swarm.messages.send(IP, 'echo', value)).message, value);
  }
  assert.strictEqual(await swarm.messages.send(IP, 'echo', 'raw'), JSON.stringify({ message: 'raw', topics: ['echo'], from: IP }), 'a string request gets the raw text');
  assert.strictEqual(await swarm.messages.send(IP, 'text', {}), 'plain');
  assert.strictEqual(await swarm.messages.send(IP, 'none', {}), undefined);
  await assert.rejects(swarm.messages.send(5, 'echo', 1), /parameter host needs to be a string/);
  await assert.rejects(swarm.messages.send('not-an-ip', 'echo', 1), e => e.code === 'ERR_SWARM_SEND' && /not-an-ip/.test(e.message), 'a host that is not an IP address rejects, naming it');
  assert.deepStrictEqual((await swarm.messages.send(IP, 'echo', 1)).message, 1, 'and the node goes on');
});

test('a reply labelled JSON that does not parse arrives as its text; bytes that are not UTF-8 are replaced', async () => {
  // A peer that is not ours (as a 0.5.1 pod would be reached) on the same port.
  const peerIp = '127.0.0.12';
  const bodies = { '/bad': '{nope', '/good': '[1,"ü"]', '/bytes': Buffer.from([0x61, 0xff, 0x62]) };
  const server = http.createServer((req, res) => {
    req.resume();
    const type = req.url === '/bytes' ? 'text/plain' : 'application/json';
    req.on('end', () => res.writeHead(200, { 'content-type': type }).end(bodies[req.url]));
  });
  await new Promise(resolve => server.listen(port, peerIp, resolve));
  try {
    assert.strictEqual(await swarm.messages.send(peerIp, 'bad', { a: 1 }), '{nope');
    assert.deepStrictEqual(await swarm.messages.send(peerIp, 'good', { a: 1 }), [1, 'ü']);
    assert.strictEqual(await swarm.messages.send(peerIp, 'bytes', { a: 1 }), 'a\ufffdb', 'bytes that are not UTF-8 replaced');
  } finally {
    server.closeAllConnections();
    await new Promise(resolve => server.close(resolve));
  }
});

test('handler failures answer with their status and never crash the process', async () => {
  await assert.rejects(swarm.messages.send(IP, 'fail', {}), e => e.statusCode === 422 && e.name === 'StatusCodeError');
  await assert.rejects(swarm.messages.send(IP, 'reject', {}), e => e.statusCode === 500 && /rejected/.test(e.message));
});

test('bad requests get 4xx', async () => {
  assert.strictEqual((await post('echo', '{nope', { 'content-type': 'application/json' })).status, 400);
  assert.strictEqual((await post('echo', 'x'.repeat(5000))).status, 413);
  assert.strictEqual((await post('_task', '{"args":[]}', { 'content-type': 'application/json' })).status, 400);
  assert.strictEqual((await post('_task', JSON.stringify({ task: 'add', args: [1, 2] }), { 'content-type': 'application/json' })).body, '3');
});

test('a body sent in pieces arrives whole, and one past the limit in pieces gets 413', async () => {
  // Chunked, no content-length: the server cannot size its buffer in advance, and a
  // multi-byte character is split between two pieces.
  const chunked = pieces => new Promise((resolve, reject) => {
    const req = http.request({ host: IP, port, method: 'POST', path: '/echo', headers: { 'content-type': 'application/json' } }, res => {
      const chunks = [];
      res.on('data', c => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    for (const piece of pieces) req.write(piece);
    req.end();
  });
  const text = `${'a'.repeat(700)}é${'b'.repeat(700)}`;
  const bytes = Buffer.from(JSON.stringify({ text }));
  const split = bytes.indexOf(Buffer.from('é')) + 1;
  const whole = await chunked([bytes.subarray(0, 300), bytes.subarray(300, split), bytes.subarray(split)]);
  assert.strictEqual(whole.status, 200);
  assert.deepStrictEqual(JSON.parse(whole.body).message, { text });
  const over = await chunked(Array.from({ length: 5 }, () => Buffer.alloc(1000, 'x')));
  assert.strictEqual(over.status, 413);
});

test('oversized headers get 431; other methods 405', async () => {
  assert.strictEqual((await post('echo', '{}', { 'content-type': 'application/json', 'x-big': 'y'.repeat(100 * 1024) })).status, 431);
  const status = await new Promise((resolve, reject) => {
    http.request({ host: IP, port, method: 'DELETE', path: '/echo' }, res => { res.resume(); resolve(res.statusCode); }).on('error', reject).end();
  });
  assert.strictEqual(status, 405);
});

test('a client that never finishes its headers is cut off and does not block others', async () => {
  const net = require('node:net');
  const slow = net.connect({ host: IP, port });
  await new Promise(resolve => slow.once('connect', resolve));
  slow.write('POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  const closed = new Promise(resolve => slow.once('close', resolve));
  assert.deepStrictEqual((await swarm.messages.send(IP, 'echo', { during: 1 })).message, { during: 1 });
  await closed;
});

test('tasks: registration, errors, local execution', async () => {
  assert.throws(() => swarm.tasks.register(5), /Unable to register task 5, wrong arguments/);
  await assert.rejects(swarm.tasks.exec('missing'), /No such task/);
  assert.strictEqual(await swarm.tasks.exec('add', 2, 3), 5);
  assert.strictEqual(swarm.tasks.owner('any-key'), IP);
  swarm.tasks.register({ objectForm: { handler: () => 'ok' } });
  assert.strictEqual(swarm.tasks.tasks.objectForm.timeout, 30000, 'the object form gets the defaults');
  assert.strictEqual(await swarm.tasks.exec('objectForm'), 'ok');
});

test('5,000 task calls made at once all run and answer (deliveries of more than one call)', async () => {
  swarm.tasks.register('sameKey', key => key, { serialized: false });
  const keys = Array.from({ length: 5000 }, (_, i) => `key-${i}`);
  assert.deepStrictEqual(await Promise.all(keys.map(key => swarm.tasks.exec('sameKey', key))), keys);
});

test('tasks: singleTrigger, N, maxQueueLength and timeout', async () => {
  let runs = 0;
  const gates = [];
  const gated = () => { runs++; return new Promise(resolve => gates.push(resolve)); };
  const open = () => gates.splice(0).forEach(g => g(runs));
  const waitRuns = n => new Promise(function poll (resolve) { runs >= n ? resolve() : setImmediate(() => poll(resolve)); });

  swarm.tasks.register('single', gated, { singleTrigger: true });
  const joined = [swarm.tasks.exec('single'), swarm.tasks.exec('single'), swarm.tasks.exec('single')];
  await waitRuns(1);
  open();
  assert.deepStrictEqual(await Promise.all(joined), [1, 1, 1]);

  runs = 0;
  swarm.tasks.register('next', gated, { singleTrigger: 'N' });
  const first = swarm.tasks.exec('next');
  await waitRuns(1);
  const burst = [1, 2, 3, 4].map(() => swarm.tasks.exec('next'));
  open();
  await waitRuns(2);
  open();
  assert.deepStrictEqual([await first, ...await Promise.all(burst)], [1, 2, 2, 2, 2]);

  runs = 0;
  swarm.tasks.register('limited', gated, { maxQueueLength: 1 });
  const running = swarm.tasks.exec('limited');
  await waitRuns(1);
  const queued = swarm.tasks.exec('limited');
  await assert.rejects(swarm.tasks.exec('limited'), /Max execution queue size reached for task limited/);
  open();
  await waitRuns(2);
  open();
  await Promise.all([running, queued]);

  swarm.tasks.register('short', gated, { timeout: 50 });
  await assert.rejects(swarm.tasks.exec('short'), e => e instanceof Promise.TimeoutError && e.message === 'operation timed out');
  open();
});

test('a throwing listener is reported as an error and the others still run', () => {
  const calls = [];
  const errorsSeen = [];
  const thrower = () => { calls.push('thrower'); throw new Error('listener bug'); };
  const after = () => calls.push('after');
  const onError = e => errorsSeen.push(e.message);
  swarm.on('nodeAdded', thrower).on('nodeAdded', after).on('error', onError);
  swarm.emit('nodeAdded', [{ ip: '10.1.1.1' }]);
  swarm.off('nodeAdded', thrower).off('nodeAdded', after).off('error', onError);
  assert.deepStrictEqual(calls, ['thrower', 'after']);
  assert.deepStrictEqual(errorsSeen, ['listener bug']);
});

test('DEBUG=node-swarm-kb* shows the Rust core in the debug namespaces', async () => {
  const script = `
    const swarm = require('.');
    swarm.tasks.register('t', () => 1);
    swarm.init({ standalone: true, ip: '127.0.0.10', messages: { port: 0, bind: '127.0.0.10' } })
      .then(() => swarm.tasks.exec('t')).then(() => swarm.close());`;
  const { spawnSync } = require('node:child_process');
  const run = spawnSync(process.execPath, ['-e', script], {
    cwd: path.join(__dirname, '..'),
    env: Object.assign({}, process.env, { DEBUG: 'node-swarm-kb*', DEBUG_COLORS: '0' }),
    encoding: 'utf8',
    timeout: 20000
  });
  assert.strictEqual(run.status, 0, run.stderr);
  assert.match(run.stderr, /node-swarm-kb:messages \[info\] Listening on 127\.0\.0\.10:\d+/);
  assert.match(run.stderr, /node-swarm-kb:tasks \[debug\] .*Executing task t/);
  assert.match(run.stderr, /node-swarm-kb Ready with 1 nodes/);
});

test('a local task gets the caller\'s own arguments and returns its own value, as in 0.5.1', async () => {
  class TaskRefused extends Error {}
  const circular = { name: 'loop' };
  circular.self = circular;
  swarm.tasks.register('identity', (...args) => args);
  swarm.tasks.register('circular', () => circular);
  swarm.tasks.register('refuses', () => { throw new TaskRefused('custom'); });
  const date = new Date(0);
  const object = { n: 1 };
  const [gotDate, gotObject, gotUndefined] = await swarm.tasks.exec('identity', date, object, undefined);
  assert.ok(gotDate instanceof Date && gotDate === date, 'a Date stays the same Date');
  assert.strictEqual(gotObject, object, 'the same object, not a copy');
  assert.strictEqual(gotUndefined, undefined);
  assert.strictEqual(await swarm.tasks.exec('circular'), circular, 'a value JSON cannot encode still comes back locally');
  await assert.rejects(swarm.tasks.exec('refuses'), e => e instanceof TaskRefused);
  await eventually(() => swarm.tasks._runValues.size === 0, 5000, 'the kept values released');
  assert.strictEqual(swarm.tasks._localCalls.size, 0, 'the kept arguments are released');
});

test('a running swarm keeps the process alive; close() lets it exit', async () => {
  const { spawn } = require('node:child_process');
  const readline = require('node:readline');
  const childIp = '127.0.0.11';
  // Nothing but the swarm holds the child's event loop: no stdin, one short timer.
  const script = `
    const swarm = require('.');
    const say = line => process.stdout.write(line + '\\n');
    process.on('beforeExit', () => say('beforeExit'));
    swarm.messages.on('alive', () => 'yes');
    swarm.messages.on('close', () => { setImmediate(() => swarm.close().then(() => say('closed'))); return 'closing'; });
    swarm.init({ standalone: true, ip: '${childIp}', messages: { port: ${port}, bind: '${childIp}' } })
      .then(() => setTimeout(() => say('timer'), 50));`;
  const child = spawn(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  readline.createInterface({ input: child.stdout }).on('line', line => lines.push(line));
  const exited = new Promise(resolve => child.on('exit', code => resolve(code)));
  try {
    await eventually(() => lines.includes('timer'), 10000, 'the child ready and its timer run');
    assert.strictEqual(await swarm.messages.send(childIp, 'alive', {}), 'yes');
    assert.ok(!lines.includes('beforeExit'), 'the event loop did not drain while the swarm runs');
    assert.strictEqual(await swarm.messages.send(childIp, 'close', {}), 'closing');
    assert.strictEqual(await exited, 0);
    assert.deepStrictEqual(lines.slice(-2), ['closed', 'beforeExit'], 'after close() the loop drains and the process exits');
  } finally {
    child.kill();
  }
});

test('a send still pending across close() and a new init() settles with its own reply', { timeout: 20000 }, async () => {
  // A peer (an HTTP server on another loopback address, at the swarm's port) that holds
  // 'hold' until told and answers 'quick' at once; the new node's calls must not be
  // mistaken for the closed node's.
  const peerIp = '127.0.0.12';
  const held = [];
  const peer = http.createServer((req, res) => {
    let body = '';
    req.on('data', chunk => { body += chunk; });
    req.on('end', () => {
      const answer = () => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ path: req.url, body: JSON.parse(body) })); };
      if (req.url === '/hold') held.push(answer);
      else answer();
    });
  });
  await new Promise(resolve => peer.listen(port, peerIp, resolve));
  try {
    const pending = swarm.messages.send(peerIp, 'hold', { call: 'old' });
    await eventually(() => held.length === 1, 5000, 'the held request at the peer');
    await swarm.close(0);
    await swarm.init({ standalone: true, ip: IP, messages: { port, bind: IP, maxBodySize: 4096, headerTimeout: 300 } });
    const quick = await Promise.all(Array.from({ length: 200 }, (_, i) => swarm.messages.send(peerIp, 'quick', { i })));
    quick.forEach((reply, i) => assert.deepStrictEqual(reply, { path: '/quick', body: { i } }));
    held[0]();
    assert.deepStrictEqual(await pending, { path: '/hold', body: { call: 'old' } });
  } finally {
    await new Promise(resolve => peer.close(resolve));
  }
});
