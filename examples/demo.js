'use strict';

// `npm run demo`: the Kubernetes API stand-in and three real node processes on
// 127.0.0.x; shows the topology, the master, a broadcast, tasks landing on their
// owners, and a node leaving with its SIGTERM heads-up. Exits cleanly.
const { startStandin } = require('../__test__/kube-standin');
const { startCluster, eventually } = require('../__test__/helpers/cluster');

const IPS = ['127.0.0.31', '127.0.0.32', '127.0.0.33'];
const say = (...args) => console.log('›', ...args);

async function main () {
  const standin = await startStandin({ appName: 'web' });
  say(`Kubernetes API stand-in at ${standin.url}, pods ${IPS.join(', ')}`);
  const cluster = await startCluster(standin, IPS);
  try {
    const [first] = cluster.nodes;
    for (const node of cluster.nodes) {
      const view = await eventually(async () => {
        const v = await node.request('nodes');
        return v.nodes.length === IPS.length && v;
      }, 10000, 'the topology');
      say(`${node.ip} sees ${view.nodes.join(', ')}; master ${view.master}${view.amIMaster ? ' (me)' : ''}`);
    }
    const replies = await first.request('broadcast', { topic: 'whoami', data: {} });
    say(`broadcast from ${first.ip}: replies ${JSON.stringify(replies)} (itself answers undefined)`);
    const keys = ['customer-1', 'customer-2', 'customer-3', 'customer-4', 'customer-5'];
    const owners = await first.request('owners', { keys });
    const ran = await first.request('execMany', { name: 'where', keys });
    keys.forEach((key, i) => say(`task where(${key}): owner ${owners[i]}, ran on ${ran[i]}`));
    const leaving = cluster.nodes[2];
    standin.removePod(leaving.ip);
    await leaving.waitEvent(e => e.event === 'sigterm', 10000, 'the heads-up');
    say(`${leaving.ip} removed from the endpoints: it got its SIGTERM heads-up`);
    const removed = await first.waitEvent(e => e.event === 'nodeRemoved' && e.ip === leaving.ip, 10000, 'nodeRemoved');
    say(`${first.ip} saw nodeRemoved ${removed.ip}`);
  } finally {
    await cluster.stop();
    await standin.close();
  }
  say('done');
}

main().catch(error => {
  console.error(error);
  process.exit(1);
});
