'use strict';

// Errors that name the problem, each with its stable `code` (docs/api.md lists them all).
const { test, after } = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const { freePort } = require('./helpers/cluster');
const swarm = require('..');

const IP = '127.0.0.1';
const servers = [];
after(async () => {
  await swarm.close();
  for (const server of servers) server.close();
});

function listen (host, port, onConnection = () => {}) {
  const server = net.createServer(onConnection);
  servers.push(server);
  return new Promise(resolve => server.listen(port, host, () => resolve(server)));
}

const coded = (code, pattern) => error => error.code === code && pattern.test(error.message);

test('a bad option value is refused with ERR_SWARM_INVALID_ARG naming the option, and nothing starts', async () => {
  for (const [messages, name] of [
    [{ port: 'abc' }, /messages\.port/],
    [{ port: 70000 }, /messages\.port: expected an integer from 0 to 65535/],
    [{ requestTimeout: -1 }, /messages\.requestTimeout/],
    [{ departureTimeout: {} }, /messages\.departureTimeout/],
    [{ bind: 'not an address' }, /messages\.bind: expected an IP address/],
    [{ multiplex: 'no' }, /messages\.multiplex: expected true or false/]
  ]) {
    await assert.rejects(swarm.init({ standalone: true, ip: IP, messages }), coded('ERR_SWARM_INVALID_ARG', name));
    assert.strictEqual(swarm._node, null, 'no node started');
  }
  for (const [options, name] of [
    [{ tasks: { timeout: -5 } }, /tasks\.timeout/],
    [{ tasks: { maxQueueLength: 'x' } }, /tasks\.maxQueueLength/],
    [{ ip: 42 }, /Invalid argument ip: expected an IP address/],
    [{ onReady: 'x' }, /onReady: expected a function/],
    [{ kubernetes: { initTimeout: -1 } }, /kubernetes\.initTimeout/],
    [{ masterElection: 'leader' }, /masterElection: expected 'ip' or 'lease'/],
    [{ masterElection: 'lease', leaseName: 'Web_Master' }, /leaseName: expected a Kubernetes object name/],
    [{ masterElection: 'lease', lease: { renewDeadline: 20000 } }, /lease: expected 0 < retryPeriod < renewDeadline < duration/]
  ]) {
    await assert.rejects(swarm.init(Object.assign({ standalone: true, ip: IP }, options)), coded('ERR_SWARM_INVALID_ARG', name));
  }
  assert.throws(() => swarm.tasks.register('t', () => 1, { singleTrigger: 'M' }), coded('ERR_SWARM_INVALID_ARG', /singleTrigger: expected true, false or 'N'/));
  assert.ok(!('messages' in swarm.options) && !('tasks' in swarm.options), 'a rejected init() keeps none of its options');
});

test('a port in use: ERR_SWARM_ADDRESS_IN_USE, saying what to change', async () => {
  const port = await freePort();
  await listen(IP, port);
  await assert.rejects(swarm.init({ standalone: true, ip: IP, messages: { port, bind: IP } }),
    coded('ERR_SWARM_ADDRESS_IN_USE', /unable to listen on 127\.0\.0\.1:\d+: .*another process listens there: give this node another messages\.port/));
});

test('No such task keeps 0.5.1\'s message and carries the task', async () => {
  await assert.rejects(swarm.tasks.exec('nope', 1), error =>
    error.code === 'ERR_SWARM_NO_SUCH_TASK' && error.message === 'No such task' && error.task === 'nope');
});

test('a send that gets no reply in time: ERR_SWARM_TIMEOUT naming the peer', async () => {
  const port = await freePort();
  await listen('127.0.0.2', port); // accepts, never answers
  await swarm.init({ standalone: true, ip: IP, messages: { port, bind: IP, requestTimeout: 300 } });
  await assert.rejects(swarm.messages.send('127.0.0.2', 'x', {}), coded('ERR_SWARM_TIMEOUT', /No reply from 127\.0\.0\.2 within 300 ms/));
});

test('after close(), tasks.exec, messages.send and broadcast fail with ERR_SWARM_CLOSED', async () => {
  swarm.tasks.register('t', () => 1);
  await swarm.close();
  await assert.rejects(swarm.tasks.exec('t'), coded('ERR_SWARM_CLOSED', /after close\(\)/));
  await assert.rejects(swarm.messages.send(IP, 'x', {}), coded('ERR_SWARM_CLOSED', /swarm closed/));
  await assert.rejects(swarm.broadcast('x', {}), coded('ERR_SWARM_CLOSED', /swarm closed/));
});
