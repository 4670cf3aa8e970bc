// Compiled by `tsc -p __test__/types/tsconfig.nodenext.json` in `npm test`: an ES module
// under `nodenext` imports the package by its name, which the `exports` map's `import`
// condition resolves to index.mjs and its typings, index.d.mts. Each @ts-expect-error
// line fails the build if it type-checks.
import swarm, {
  init, close, stats, send, broadcast, isMe, on, once, off, emit, messages, tasks, metrics, options, HashRing,
  type Nodes, type SwarmNode, type InitOptions, type SwarmError, type HashRing as Ring, type RingKind
} from 'node-swarm-kb';
// @ts-expect-error the getters are no named exports (they would never change): read swarm.nodes
import { nodes as snapshot } from 'node-swarm-kb';
import { createRequire } from 'node:module';

interface Order { id: string; total: number }

// require() of the same package from ESM is the same singleton, typed by index.d.ts.
const viaRequire: typeof swarm = createRequire(import.meta.url)('node-swarm-kb');

const settings: InitOptions = { standalone: true, ip: '127.0.0.1', messages: { port: 45893 } };
on('error', (error: SwarmError) => console.log(error.code));
once('ready', (ready: Nodes) => console.log(Object.keys(ready)));
const listener = (node: SwarmNode): void => console.log(node.ip, isMe(node));
on('nodeAdded', listener);
off('nodeAdded', listener);
emit('masterChanged', ['127.0.0.1', null]);
tasks.register('double', (n: number) => n * 2);
tasks.register({ triple: { handler: (n: number) => n * 3, serialized: false } }, { timeout: 500 });
messages.on<Order>('order', (order, topics, from) => ({ id: order.id, topics, from }));
const nodes: Nodes = await init(settings);
const doubled: number = await tasks.exec<number>('double', 21);
const reply: Order = await messages.send<Order>('127.0.0.1', 'order', { id: 'o1', total: 2 });
const raw: string | undefined = await send('127.0.0.1', 'order', 'o1');
const replies: Array<number | undefined> = await broadcast<number>('count', {});
const quirk: Array<string | undefined> = await send('127.0.0.1', 'order');
const ring: Ring = new HashRing(['10.0.0.1']);
const kind: RingKind = new HashRing(['10.0.0.1'], { ring: 'xxh3' }).ring;
console.log(nodes, doubled, reply, raw, replies, quirk, ring.get('k'), kind, options.standalone, viaRequire);
console.log(swarm.nodes, swarm.master, swarm.amIMaster, swarm.isReady, snapshot, stats()?.messages.received, metrics.text());
await close();

// @ts-expect-error amIMaster is a getter of the default export, not a method
swarm.amIMaster();
// @ts-expect-error a misspelled option
await init({ standlone: true });
// @ts-expect-error an unknown event listener (onNodeAdded)
await init({ onNodeAdd: () => undefined });
// @ts-expect-error a send<number> result is a number
const notText: string = await send<number>('127.0.0.1', 'count', {});
// @ts-expect-error a message is unknown unless typed
messages.on('order', (order) => order.id);
// @ts-expect-error a tasks.exec<number> result is a number
const notString: string = await tasks.exec<number>('double', 1);
console.log(notText, notString);
