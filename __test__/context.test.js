'use strict';

// The API's promises keep their caller's async context: an AsyncLocalStorage store set
// around a call is there after `await` and inside `.then` callbacks alike, on one
// standalone node in this process whose sends go through its own socket.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { AsyncLocalStorage } = require('node:async_hooks');
const { freePort } = require('./helpers/cluster');

const IP = '127.0.0.11';
const swarm = require('..');
const als = new AsyncLocalStorage();

before(async () => {
  const port = await freePort();
  swarm.messages.on('echo', message => message);
  swarm.tasks.register('double', n => n * 2);
  swarm.tasks.register('later', n => new Promise(resolve => setImmediate(() => resolve(n))));
  await swarm.init({ standalone: true, ip: IP, messages: { port, bind: IP } });
});

after(() => swarm.close());

const calls = {
  'messages.send': () => swarm.messages.send(IP, 'echo', { a: 1 }),
  'tasks.exec': () => swarm.tasks.exec('double', 21),
  'tasks.exec of a handler that answers later': () => swarm.tasks.exec('later', 1),
  broadcast: () => swarm.broadcast('echo', {})
};

for (const [name, call] of Object.entries(calls)) {
  test(`${name}: the caller's store after await and in .then`, async () => {
    const afterAwait = await als.run({ caller: name }, async () => {
      await call();
      return als.getStore();
    });
    assert.deepStrictEqual(afterAwait, { caller: name });
    const inThen = await als.run({ caller: name }, () => call().then(() => als.getStore()));
    assert.deepStrictEqual(inThen, { caller: name });
    const chained = await als.run({ caller: name }, () => call().then(() => call()).then(() => als.getStore()));
    assert.deepStrictEqual(chained, { caller: name });
  });
}
