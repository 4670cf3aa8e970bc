// Compiled by `tsc -p __test__/types/tsconfig.json` in `npm test` (CommonJS, esModuleInterop,
// strict): the typings accept 0.5.1-style code and refuse misuse (each @ts-expect-error
// line fails the build if it type-checks). usage.mts and usage.cts do the same under
// `nodenext` (tsconfig.nodenext.json).
import swarm = require('../..');
import swarmDefault, { init, send, broadcast, messages, tasks, close } from '../..';
import * as dc from 'node:diagnostics_channel';

interface Order { id: string; total: number }

async function main (): Promise<void> {
  // 0.5.1-style code.
  const nodes: swarm.Nodes = await swarm.init({
    appName: 'web',
    kubernetes: { url: 'http://127.0.0.1:1', namespace: 'default', token: 't', initTimeout: 30000, refreshInterval: 10000, noSSL: true },
    messages: { port: 45892, bind: '127.0.0.1', maxProcessingTime: 60000 },
    tasks: { timeout: 1000 },
    onNodeAdded: (node) => console.log(node.ip),
    onError: (error) => console.log(error.code)
  });
  console.log(Object.keys(nodes).length, swarm.amIMaster, swarm.master, swarm.isReady, swarm.isMe(nodes['10.0.0.1']));
  swarm.on('masterChanged', (master, previous) => console.log(master, previous));
  swarm.on('error', (error) => console.log(error.code, error.statusCode));
  swarm.on('readinessChanged', (node) => console.log(node.ip, node.ready));
  swarm.messages.on(['a', 'b'], (message, topics, from) => ({ message, topics, from }));
  swarm.messages.on('topic', () => 'response');
  const replies = await swarm.broadcast('a', { x: 1 });
  console.log(replies.length);
  await swarm.send('10.0.0.1', 'a/b', 'text').timeout(1000);
  await swarm.send(nodes['10.0.0.1'], ['a', 'b'], { x: 1 }).tap(() => undefined);
  swarm.tasks.register('sync', (id: string) => id, { singleTrigger: 'N', maxQueueLength: 5 });
  swarm.tasks.register({ other: { handler: () => 1, serialized: false }, plain: () => 2, typed: (n: number) => n * 2 });
  swarm.tasks.register('untyped', (...args) => args.length);
  const owner: string | null = swarm.tasks.owner('customer-1');
  const result = await swarm.tasks.exec('sync', 'customer-1').spread === undefined;
  console.log(owner, result, new swarm.HashRing(['10.0.0.1']).get('k'), swarm.tasks.stats('sync'));
  await swarm.close();

  // Typed results and messages.
  const n: number = await swarm.send<number>('10.0.0.1', 'count', { from: 1 });
  const raw: string | undefined = await swarm.send('10.0.0.1', 'echo', 'text');
  const rawToo: string | undefined = await swarm.messages.send('10.0.0.1', 'echo', 'text');
  const order: Order = await swarm.messages.send<Order>('10.0.0.1', 'order', { id: 'o1' });
  const unknownReply: unknown = await swarm.messages.send('10.0.0.1', 'order');
  const all: Array<number | undefined> = await swarm.broadcast<number>('count', { from: 1 });
  const texts: Array<string | undefined> = await swarm.broadcast('echo', 'text');
  const total: number = await swarm.tasks.exec<number>('sum', 1, 2);
  swarm.messages.on<Order>('order', (o, topics, from) => `${o.id} ${o.total} ${topics.join('/')} ${from}`);
  swarm.messages.on('order', (o: Order) => o.total);
  swarm.messages.on('any', (message) => typeof message === 'string' ? message.length : undefined);
  console.log(n, raw, rawToo, order, unknownReply, all, texts, total);

  // 0.5.1's quirk: send without data is broadcast(node, topic), an array of replies.
  const quirk: Array<string | undefined> = await swarm.send('10.0.0.1', 'topic');
  const quirkToo: Array<string | undefined> = await swarm.send('10.0.0.1', 'topic', undefined);
  console.log(quirk, quirkToo);

  // The same object, default-imported and destructured (its functions work detached).
  const same: typeof swarm = swarmDefault;
  const { isMe, on } = swarm;
  on('ready', (ready) => console.log(Object.keys(ready), isMe('10.0.0.1')));
  await init({ standalone: true, ip: ['127.0.0.1'], onReadinessChanged: (node) => console.log(node.ready) });
  const fromNamed: number = await send<number>('127.0.0.1', 'count', {});
  await broadcast('count', 1);
  messages.on('count', () => 1);
  tasks.register('sum', (a: number, b: number) => a + b);
  await close(0);
  console.log(same, fromNamed);

  // A master elected through a Lease, and its epoch.
  await swarm.init({ masterElection: 'lease', leaseName: 'web-master', lease: { duration: 15000, renewDeadline: 10000, retryPeriod: 2000 } });
  const epoch: number | null = swarm.masterEpoch;
  console.log(epoch);

  // The opt-in ring, on a node and outside one; a peer on another ring is an error event.
  await swarm.init({ ring: 'xxh3', onError: (error) => console.log(error.code === 'ERR_SWARM_RING_MISMATCH' && error.peer, error.peerRing) });
  const xxh3: swarm.RingKind = new swarm.HashRing(['10.0.0.1'], { ring: 'xxh3' }).ring;
  console.log(xxh3);
  // @ts-expect-error a ring that does not exist
  await swarm.init({ ring: 'md5' });

  // What this pod counts: null before init().
  const stats = swarm.stats();
  if (stats) {
    const sentOk: number = stats.messages.sent.ok;
    const checksum: string = stats.topology.ring.checksum;
    const sum: swarm.TaskReport | undefined = stats.tasks.sum;
    console.log(sentOk, checksum, sum && sum.timedOut, stats.messages.refused['421']);
  }
  const registry = swarm.metrics.register(new (await import('prom-client')).Registry(), { labels: { service: 'orders' } });
  console.log(await registry.metrics(), swarm.metrics.text({ prefix: 'orders_swarm_' }));
  // @ts-expect-error stats() may be null
  console.log(swarm.stats().uptimeMs);

  // Mistakes the typings catch.
  // @ts-expect-error amIMaster is a getter, not a method (0.5.1's README calls it)
  swarm.amIMaster();
  // @ts-expect-error a misspelled option
  swarm.init({ standlone: true });
  // @ts-expect-error an unknown event listener (onNodeAdded)
  swarm.init({ onNodeAdd: () => undefined });
  // @ts-expect-error a misspelled nested option
  swarm.init({ kubernetes: { namespce: 'default' } });
  // @ts-expect-error unknown event
  swarm.on('nodeAdd', () => undefined);
  // @ts-expect-error initTimeout is in milliseconds
  swarm.init({ kubernetes: { initTimeout: '30s' } });
  // @ts-expect-error the master's election is 'ip' or 'lease'
  swarm.init({ masterElection: 'leader' });
  // @ts-expect-error masterEpoch is a getter
  swarm.masterEpoch = 3;
  // @ts-expect-error singleTrigger is boolean or 'N'
  swarm.tasks.register('bad', () => 1, { singleTrigger: 'yes' });
  // @ts-expect-error a send<number> result is a number
  const notText: string = await swarm.send<number>('10.0.0.1', 'count', {});
  // @ts-expect-error a string request gets raw text, not the handler's object
  const notObject: Order = await swarm.messages.send('10.0.0.1', 'order', 'o1');
  // @ts-expect-error this node's entry of a broadcast is undefined
  const noHoles: number[] = await swarm.broadcast<number>('count', {});
  // @ts-expect-error a tasks.exec<number> result is a number
  const notString: string = await swarm.tasks.exec<number>('sum', 1, 2);
  // @ts-expect-error a message is unknown unless typed
  swarm.messages.on('order', (o) => o.total);
  // @ts-expect-error a task's arguments are unknown unless typed
  swarm.tasks.register('upper', (s) => s.toUpperCase());
  // @ts-expect-error data that may be undefined would broadcast: say which you mean
  await swarm.send('10.0.0.1', 'topic', Math.random() > 0.5 ? {} : undefined);
  // @ts-expect-error the broadcasting form takes an IP, not a node (0.5.1 rejected it)
  await swarm.send(nodes['10.0.0.1'], 'topic');
  console.log(notText, notObject, noHoles, notString);

  // The tracing channels, their contexts typed.
  dc.tracingChannel<string, swarm.SendChannelContext>('node-swarm-kb:send').subscribe({
    start: (ctx) => { ctx.traceparent = `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`; console.log(ctx.node, ctx.topic); },
    end: () => {},
    asyncStart: () => {},
    asyncEnd: (ctx) => console.log(ctx.result),
    error: (ctx) => console.log(ctx.error)
  });
  const handled = (ctx: swarm.HandleChannelContext): string | undefined => ctx.topic ?? ctx.task;
  const exec = (ctx: swarm.ExecChannelContext): number => ctx.args.length;
  console.log(handled, exec);
}

void main;
