// Compiled by `tsc --noEmit` in `npm test`: the typings accept 0.5.1-style code and
// refuse misuse (the @ts-expect-error lines fail the build if they type-check).
import swarm = require('../..');

async function main (): Promise<void> {
  const nodes: swarm.Nodes = await swarm.init({
    appName: 'web',
    kubernetes: { url: 'http://127.0.0.1:1', namespace: 'default', token: 't', initTimeout: 30000 },
    messages: { port: 45892, bind: '127.0.0.1' },
    tasks: { timeout: 1000 },
    onNodeAdded: (node) => console.log(node.ip)
  });
  console.log(Object.keys(nodes).length, swarm.amIMaster, swarm.master, swarm.isReady);
  swarm.on('masterChanged', (master, previous) => console.log(master, previous));
  swarm.on('error', (error) => console.log(error.code, error.statusCode));
  swarm.on('readinessChanged', (node) => console.log(node.ip, node.ready));
  swarm.messages.on(['a', 'b'], (message, topics, from) => ({ message, topics, from }));
  const replies: any[] = await swarm.broadcast('a', { x: 1 });
  console.log(replies.length);
  await swarm.send('10.0.0.1', 'a/b', 'text').timeout(1000);
  swarm.tasks.register('sync', (id: string) => id, { singleTrigger: 'N', maxQueueLength: 5 });
  swarm.tasks.register({ other: { handler: () => 1, serialized: false }, plain: () => 2 });
  const owner: string | null = swarm.tasks.owner('customer-1');
  const result = await swarm.tasks.exec('sync', 'customer-1').spread === undefined;
  console.log(owner, result, new swarm.HashRing(['10.0.0.1']).get('k'));
  await swarm.close();

  // @ts-expect-error amIMaster is a getter, not a method
  swarm.amIMaster();
  // @ts-expect-error unknown event
  swarm.on('nodeAdd', () => undefined);
  // @ts-expect-error initTimeout is in milliseconds
  swarm.init({ kubernetes: { initTimeout: '30s' } });
  // @ts-expect-error singleTrigger is boolean or 'N'
  swarm.tasks.register('bad', () => 1, { singleTrigger: 'yes' });
}

void main;
