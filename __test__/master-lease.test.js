'use strict';

// The master elected through a Kubernetes Lease (masterElection: 'lease'), in a cluster
// of real processes against the Kubernetes API stand-in: one master that every node
// names, with one epoch; when it closes, it releases the lease and the next master has
// the next epoch.
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { startStandin } = require('./kube-standin');
const { startCluster, eventually } = require('./helpers/cluster');

const IPS = ['127.0.0.61', '127.0.0.62', '127.0.0.63'];
// Times short enough for a test, in the production order.
const INIT = { masterElection: 'lease', lease: { duration: 3000, renewDeadline: 2000, retryPeriod: 100 } };
let standin;
let cluster;

before(async () => {
  standin = await startStandin({ appName: 'web' });
  cluster = await startCluster(standin, IPS, { env: { FIXTURE_INIT: JSON.stringify(INIT) } });
});

after(async () => {
  if (cluster) await cluster.stop();
  if (standin) await standin.close();
});

// The views of `nodes` once they all name one master (other than `not`) with one epoch.
function agreed (nodes, not) {
  return eventually(async () => {
    const views = await Promise.all(nodes.map(n => n.request('nodes')));
    const { master, masterEpoch } = views[0];
    return master && master !== not && views.every(v => v.master === master && v.masterEpoch === masterEpoch) && views;
  }, 10000, 'one master named by every node');
}

const holder = () => standin.leases().map(lease => lease.spec.holderIdentity);

test('every node names the holder of the lease as master, with one epoch', async () => {
  const views = await agreed(cluster.nodes);
  assert.deepStrictEqual(holder(), [views[0].master], 'the lease web-master names it');
  assert.strictEqual(views.filter(v => v.amIMaster).length, 1);
  assert.strictEqual(views[0].masterEpoch, 0);
});

test('the master closes: it releases the lease, and the next master has the next epoch', async () => {
  const views = await agreed(cluster.nodes);
  const master = cluster.nodes.find(n => n.ip === views[0].master);
  const others = cluster.nodes.filter(n => n !== master);
  const told = others.map(n => n.waitEvent(e => e.event === 'masterChanged' && e.master && e.master !== master.ip, 10000, 'masterChanged'));
  assert.strictEqual(await master.request('close'), 'closed');
  const [released] = standin.leases();
  assert.ok(released.spec.holderIdentity !== master.ip, `released on close: ${JSON.stringify(released.spec)}`);

  const next = await agreed(others, master.ip);
  assert.notStrictEqual(next[0].master, master.ip);
  assert.strictEqual(next[0].masterEpoch, views[0].masterEpoch + 1);
  assert.deepStrictEqual(holder(), [next[0].master]);
  for (const event of await Promise.all(told)) assert.strictEqual(event.master, next[0].master);
});
