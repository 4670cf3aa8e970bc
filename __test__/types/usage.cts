// Compiled by `tsc -p __test__/types/tsconfig.nodenext.json`: a CommonJS module under
// `nodenext` requires the package by its name, which the `exports` map's `require`
// condition resolves to index.js and its typings, index.d.ts; destructured, as users write.
import swarm = require('node-swarm-kb');

const { init, send, tasks, close } = swarm;

async function main (): Promise<void> {
  tasks.register('double', (n: number) => n * 2);
  await init({ standalone: true, ip: '127.0.0.1' });
  const doubled: number = await tasks.exec<number>('double', 21);
  const reply: unknown = await send('127.0.0.1', 'ping', {});
  console.log(doubled, reply, swarm.amIMaster);
  await close();
  // @ts-expect-error a misspelled option
  await init({ standlone: true });
  // @ts-expect-error amIMaster is a getter, not a method
  swarm.amIMaster();
}

void main;
