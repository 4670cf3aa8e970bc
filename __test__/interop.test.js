'use strict';

// Pods of 0.5.1 and of this version talk both ways (docs/compat.md §3), checked against a
// peer that speaks 0.5.1's protocol: object and string bodies, replies, errors, `_task`.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { freePort } = require('./helpers/cluster');
const { startLegacyServer, legacySend } = require('./helpers/legacy-peer');

const OURS = '127.0.0.41';
const LEGACY = '127.0.0.42';
const swarm = require('..');
const agent = new http.Agent({ keepAlive: true, localAddress: LEGACY });
let port;
let legacy;
const legacyGot = [];

before(async () => {
  port = await freePort();
  swarm.messages.on('echo', (message, topics, from) => ({ message, topics, from }));
  swarm.messages.on('text', message => `text:${message}`);
  swarm.messages.on('fail', () => { const e = new Error('refused'); e.statusCode = 409; throw e; });
  swarm.tasks.register('double', n => n * 2);
  await swarm.init({ standalone: true, ip: OURS, messages: { port, bind: OURS } });
  legacy = await startLegacyServer({
    host: LEGACY,
    port,
    handlers: {
      legacy: [(message, topics, from) => { legacyGot.push({ message, from }); return { ok: true, message }; }],
      plain: [message => `plain:${message}`],
      broken: [() => { throw new Error('legacy broke'); }]
    }
  });
});

after(async () => {
  agent.destroy();
  await new Promise(resolve => legacy.close(resolve));
  await swarm.close();
});

test('0.5.1 -> ours: objects, strings and errors', async () => {
  assert.deepStrictEqual(await legacySend(agent, OURS, port, 'echo', { a: [1, 'x'] }),
    { message: { a: [1, 'x'] }, topics: ['echo'], from: LEGACY });
  assert.strictEqual(await legacySend(agent, OURS, port, 'text', 'hello'), 'text:hello');
  assert.strictEqual(await legacySend(agent, OURS, port, 'text', { x: 1 }), 'text:[object Object]');
  await assert.rejects(legacySend(agent, OURS, port, 'fail', { x: 1 }), e => e.statusCode === 409 && e.message === '409 - "refused"');
  assert.strictEqual(await legacySend(agent, OURS, port, '_task', { task: 'double', args: [21] }), 42);
  await assert.rejects(legacySend(agent, OURS, port, '_task', { task: 'nope', args: [] }), e => e.statusCode === 500 && /No such task nope/.test(e.message));
});

test('ours -> 0.5.1: objects, strings, scalars and errors', async () => {
  legacyGot.length = 0;
  assert.deepStrictEqual(await swarm.messages.send(LEGACY, 'legacy', { b: 2 }), { ok: true, message: { b: 2 } });
  assert.strictEqual(await swarm.messages.send(LEGACY, 'plain', 'hi'), 'plain:hi');
  for (const value of [0, false, null, true]) {
    assert.deepStrictEqual(await swarm.messages.send(LEGACY, 'legacy', value), { ok: true, message: value }, `${value} arrives intact`);
  }
  assert.deepStrictEqual(legacyGot.map(g => g.from), Array(5).fill(OURS), 'the sender is our node IP');
  await assert.rejects(swarm.messages.send(LEGACY, 'broken', {}), e => e.statusCode === 500 && e.message === '500 - "legacy broke"');
});

test('ours -> 0.5.1 stays on HTTP/1.1; ours offers the multiplexed transport to 0.5.1 harmlessly', async () => {
  const unparsed = [];
  legacy.on('clientError', (error, socket) => { unparsed.push(error.code); socket.destroy(); });
  legacyGot.length = 0;
  await Promise.all(Array.from({ length: 50 }, (_, i) => swarm.messages.send(LEGACY, 'legacy', { i })));
  assert.strictEqual(legacyGot.length, 50);
  assert.deepStrictEqual(unparsed, [], 'the 0.5.1 peer never got a request it could not parse (a multiplexed preface)');
  const offer = await new Promise((resolve, reject) => {
    http.request({ agent, host: OURS, port, path: '/echo', method: 'POST' }, res => { res.resume(); resolve(res.headers['x-swarm-kb-mux']); }).on('error', reject).end();
  });
  assert.strictEqual(offer, '3', 'our replies carry the offer (level 3: pings, rings named in the handshake), which a 0.5.1 client ignores');
});
