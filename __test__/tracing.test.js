'use strict';

// Traces across pods: two real processes with the OpenTelemetry SDK and an in-memory
// exporter each (fixtures/tracing.js), over each transport. A send and a task call made
// inside a span of the app's make a CLIENT span, child of it; the receiver makes a
// SERVER span whose parent is that CLIENT span, in the same trace, and the handler runs
// with it active. The diagnostics channels publish each call, with the trace context
// carried. A task call that did not run on its first owner (listed, not listening) shows
// each such attempt as a child of its CLIENT span.
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert');
const { SpanKind, SpanStatusCode } = require('@opentelemetry/api');
const { startStandin } = require('./kube-standin');
const { startCluster, eventually } = require('./helpers/cluster');

const TRANSPORTS = [
  { name: 'multiplexed', ips: ['127.0.0.111', '127.0.0.112'], ghost: '127.0.0.116', messages: {} },
  { name: 'HTTP/1.1', ips: ['127.0.0.113', '127.0.0.114'], ghost: '127.0.0.117', messages: { multiplex: false } }
];

// The spans of `node` once `count` of them match `predicate`.
async function spansOf (node, predicate, count = 1) {
  let spans;
  await eventually(async () => {
    spans = await node.request('spans');
    return spans.filter(predicate).length >= count;
  }, 5000, `${count} span(s) on ${node.ip}`);
  return spans.filter(predicate);
}

for (const transport of TRANSPORTS) {
  describe(`over ${transport.name}`, () => {
    let standin;
    let cluster;
    before(async () => {
      standin = await startStandin({ appName: 'web' });
      cluster = await startCluster(standin, transport.ips, {
        env: { FIXTURE_TRACING: '1', FIXTURE_MESSAGES: JSON.stringify(transport.messages) }
      });
    });
    after(async () => {
      if (cluster) await cluster.stop();
      if (standin) await standin.close();
    });

    test('a send joins the sender\'s trace: CLIENT span, SERVER span, the handler inside it', async () => {
      const [sender, receiver] = cluster.nodes;
      const { app, reply } = await sender.request('tracedSend', { to: receiver.ip, topic: 'traced' });
      const [client] = await spansOf(sender, s => s.name === 'traced' && s.traceId === app.traceId);
      assert.strictEqual(client.kind, SpanKind.CLIENT);
      assert.strictEqual(client.parent, app.spanId, 'a child of the app\'s span');
      assert.strictEqual(client.attributes['rpc.system'], 'node-swarm-kb');
      assert.strictEqual(client.attributes['server.address'], receiver.ip);
      const [server] = await spansOf(receiver, s => s.name === 'traced' && s.traceId === app.traceId);
      assert.strictEqual(server.kind, SpanKind.SERVER);
      assert.strictEqual(server.parent, client.spanId, 'a child of the sender\'s CLIENT span');
      assert.strictEqual(server.attributes['network.peer.address'], sender.ip);
      assert.deepStrictEqual(reply, { traceId: app.traceId, spanId: server.spanId }, 'the handler ran inside the SERVER span');

      // The channels: the send on the sender, with the traceparent it carried; the
      // handling on the receiver, with the same one.
      const carried = `00-${app.traceId}-${client.spanId}-01`;
      const sent = (await sender.request('published')).filter(e => e.channel === 'send' && e.traceparent === carried);
      assert.deepStrictEqual(sent.map(e => e.event), ['start', 'end', 'asyncStart', 'asyncEnd']);
      const handled = (await receiver.request('published')).filter(e => e.channel === 'handle' && e.traceparent === carried);
      assert.deepStrictEqual(handled.map(e => [e.event, e.topic]), [['start', 'traced'], ['end', 'traced'], ['asyncStart', 'traced'], ['asyncEnd', 'traced']]);
    });

    test('each target of a broadcast gets a CLIENT span, and its handler runs in the SERVER span under it', async () => {
      const [sender, receiver] = cluster.nodes;
      const { app, reply } = await sender.request('tracedBroadcast', { topic: 'traced' });
      const clients = await spansOf(sender, s => s.name === 'traced' && s.kind === SpanKind.CLIENT && s.traceId === app.traceId);
      assert.deepStrictEqual(clients.map(s => [s.parent, s.attributes['server.address']]), [[app.spanId, receiver.ip]], 'one per other pod');
      const [server] = await spansOf(receiver, s => s.name === 'traced' && s.traceId === app.traceId);
      assert.strictEqual(server.parent, clients[0].spanId);
      const theirs = reply.find(value => value !== null && value !== undefined);
      assert.deepStrictEqual(theirs, { traceId: app.traceId, spanId: server.spanId });
    });

    test('a failing handler ends both spans in error', async () => {
      const [sender, receiver] = cluster.nodes;
      const { app, error } = await sender.request('tracedSend', { to: receiver.ip, topic: 'tracedFails' });
      assert.match(error, /refused here/);
      const [client] = await spansOf(sender, s => s.name === 'tracedFails' && s.traceId === app.traceId);
      const [server] = await spansOf(receiver, s => s.name === 'tracedFails' && s.traceId === app.traceId);
      assert.deepStrictEqual([client.status, server.status], [SpanStatusCode.ERROR, SpanStatusCode.ERROR]);
      assert.strictEqual(server.parent, client.spanId);
    });

    test('a task call joins the caller\'s trace, on the key\'s owner and here', async () => {
      const [caller, owner] = cluster.nodes;
      const keys = Array.from({ length: 40 }, (_, i) => `traced-${i}`);
      const owners = await caller.request('owners', { keys });
      for (const [node, key] of [[owner, keys[owners.indexOf(owner.ip)]], [caller, keys[owners.indexOf(caller.ip)]]]) {
        const { app, reply } = await caller.request('tracedExec', { key });
        const [client] = await spansOf(caller, s => s.name === 'exec tracedTask' && s.kind === SpanKind.CLIENT && s.traceId === app.traceId);
        assert.strictEqual(client.parent, app.spanId);
        assert.strictEqual(client.attributes['rpc.method'], 'tracedTask');
        assert.strictEqual(client.attributes['server.address'], node.ip, 'the key\'s owner');
        const [server] = await spansOf(node, s => s.name === 'exec tracedTask' && s.kind === SpanKind.SERVER && s.traceId === app.traceId);
        assert.strictEqual(server.parent, client.spanId, `run on ${node === owner ? 'the owner' : 'the caller'}`);
        assert.deepStrictEqual(reply, { traceId: app.traceId, spanId: server.spanId }, 'the task ran inside the SERVER span');
      }
      const execs = (await caller.request('published')).filter(e => e.channel === 'exec' && e.task === 'tracedTask');
      assert.deepStrictEqual(execs.map(e => e.event), ['start', 'end', 'asyncStart', 'asyncEnd', 'start', 'end', 'asyncStart', 'asyncEnd']);
    });

    test('calls queued on one key run one after the other, each in its own SERVER span under its own CLIENT span', async () => {
      const [caller, owner] = cluster.nodes;
      const keys = Array.from({ length: 40 }, (_, i) => `queued-${i}`);
      const key = keys[(await caller.request('owners', { keys })).indexOf(owner.ip)];
      // In flight together: the owner's serialized queue runs them back to back.
      const calls = await Promise.all(Array.from({ length: 16 }, () => caller.request('tracedExec', { key })));
      for (const { app, reply } of calls) {
        const [client] = await spansOf(caller, s => s.name === 'exec tracedTask' && s.kind === SpanKind.CLIENT && s.traceId === app.traceId);
        const [server] = await spansOf(owner, s => s.name === 'exec tracedTask' && s.kind === SpanKind.SERVER && s.traceId === app.traceId);
        assert.strictEqual(server.parent, client.spanId);
        assert.deepStrictEqual(reply, { traceId: app.traceId, spanId: server.spanId }, 'the run inside its own SERVER span');
      }
    });

    test('what a span processor throws as a run\'s span ends is raised after the call: every queued call is answered', async () => {
      const [caller, owner] = cluster.nodes;
      const keys = Array.from({ length: 40 }, (_, i) => `throwing-${i}`);
      const key = keys[(await caller.request('owners', { keys })).indexOf(owner.ip)];
      const values = await caller.request('spanThrows', { key, n: 16 });
      assert.deepStrictEqual(values, Array.from({ length: 16 }, (_, i) => i));
      for (const node of [caller, owner]) {
        const raised = (await node.request('uncaught')).filter(m => m === 'the span processor failed');
        assert.strictEqual(raised.length, 16, `raised on ${node === owner ? 'the owner' : 'the caller'}`);
      }
    });

    test('the attempts of a task call that did not run are children of its CLIENT span', async () => {
      const [caller] = cluster.nodes;
      const { ghost } = transport;
      standin.addPod({ name: 'web-ghost', ip: ghost });
      await eventually(async () => (await caller.request('nodes')).nodes.includes(ghost), 10000, 'the listed pod');
      const keys = Array.from({ length: 60 }, (_, i) => `ghost-${i}`);
      const key = keys[(await caller.request('owners', { keys })).indexOf(ghost)];
      const retried = async () => (await caller.request('swarmStats')).tasks.tracedTask.retried;
      const before = await retried();
      const called = caller.request('tracedExec', { key });
      await eventually(async () => (await retried()) > before, 10000, 'a call sent again');
      standin.removePod(ghost);
      const { app, reply } = await called;
      const spans = await spansOf(caller, s => s.name === 'exec tracedTask' && s.kind === SpanKind.CLIENT && s.traceId === app.traceId, 2);
      const client = spans.find(s => s.parent === app.spanId);
      const attempts = spans.filter(s => s.parent === client.spanId);
      assert.ok(attempts.length >= 1, 'at least the first attempt did not run');
      for (const attempt of attempts) {
        assert.strictEqual(attempt.status, SpanStatusCode.ERROR);
        assert.strictEqual(attempt.attributes['server.address'], ghost);
        assert.match(attempt.attributes['node_swarm_kb.not_run'], /Unable to reach/);
      }
      const servers = (await Promise.all(cluster.nodes.map(n => n.request('spans')))).flat()
        .filter(s => s.kind === SpanKind.SERVER && s.spanId === reply.spanId);
      assert.deepStrictEqual(servers.map(s => s.parent), [client.spanId], 'the attempt that ran is the CLIENT span\'s child');
    });
  });
}
