'use strict';

// The diagnostics channels without an OpenTelemetry tracer provider (this process has
// the API, no provider): a subscriber that traces on its own sets the trace context on
// a send's context, and the pod that handles the message sees it on the `handle`
// channel, carried through the node's own socket. One standalone node in this process.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const dc = require('node:diagnostics_channel');
const { freePort } = require('./helpers/cluster');

const IP = '127.0.0.115';
const swarm = require('..');
const PARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const STATE = 'vendor=opaque';

const events = [];
const subscribers = {
  send: {
    start: ctx => {
      events.push(['send', 'start', ctx.topic]);
      ctx.traceparent = PARENT;
      ctx.tracestate = STATE;
    },
    end: ctx => events.push(['send', 'end', ctx.topic]),
    asyncStart: ctx => events.push(['send', 'asyncStart', ctx.topic]),
    asyncEnd: ctx => events.push(['send', 'asyncEnd', ctx.topic]),
    error: ctx => events.push(['send', 'error', ctx.topic, ctx.error.statusCode])
  },
  handle: {
    start: ctx => events.push(['handle', 'start', ctx.topic, ctx.traceparent, ctx.tracestate, ctx.message]),
    end: ctx => events.push(['handle', 'end', ctx.topic]),
    asyncStart: ctx => events.push(['handle', 'asyncStart', ctx.topic]),
    asyncEnd: ctx => events.push(['handle', 'asyncEnd', ctx.topic, ctx.result]),
    error: ctx => events.push(['handle', 'error', ctx.topic, ctx.error.message])
  }
};

before(async () => {
  const port = await freePort();
  swarm.messages.on('greet', message => `hello ${message.name}`);
  swarm.messages.on('refuse', () => { throw Object.assign(new Error('no'), { statusCode: 403 }); });
  for (const [name, handlers] of Object.entries(subscribers)) dc.tracingChannel(`node-swarm-kb:${name}`).subscribe(handlers);
  await swarm.init({ standalone: true, ip: IP, messages: { port, bind: IP } });
});

after(async () => {
  for (const [name, handlers] of Object.entries(subscribers)) dc.tracingChannel(`node-swarm-kb:${name}`).unsubscribe(handlers);
  await swarm.close();
});

test('a trace context a subscriber sets on a send reaches the handling pod\'s channel', async () => {
  events.length = 0;
  assert.strictEqual(await swarm.messages.send(IP, 'greet', { name: 'pod' }), 'hello pod');
  assert.deepStrictEqual(events, [
    ['send', 'start', 'greet'],
    ['send', 'end', 'greet'],
    ['handle', 'start', 'greet', PARENT, STATE, { name: 'pod' }],
    ['handle', 'end', 'greet'],
    ['handle', 'asyncStart', 'greet'],
    ['handle', 'asyncEnd', 'greet', 'hello pod'],
    ['send', 'asyncStart', 'greet'],
    ['send', 'asyncEnd', 'greet']
  ]);
});

test('a failed call publishes its error on both sides', async () => {
  events.length = 0;
  await assert.rejects(swarm.messages.send(IP, 'refuse', {}), e => e.statusCode === 403);
  assert.deepStrictEqual(events.filter(e => e.includes('error')), [
    ['handle', 'error', 'refuse', 'no'],
    ['send', 'error', 'refuse', 403]
  ]);
});
