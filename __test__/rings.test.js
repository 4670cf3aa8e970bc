'use strict';

// The opt-in ring (`ring: 'xxh3'`): how it spreads keys, the look-up API it shares with
// the default ring, and what a pod does when it meets a pod on another ring or a pod of
// 0.5.1 (an `error` event naming both, once per peer; routing by its own ring goes on).
const test = require('node:test');
const assert = require('node:assert');
const swarm = require('..');
const { startCluster, freePort, eventually } = require('./helpers/cluster');
const { startStandin } = require('./kube-standin');
const { startLegacyServer } = require('./helpers/legacy-peer');

const servers = count => Array.from({ length: count }, (_, i) => `10.${i >> 8}.${i & 255}.1`).sort();

test('the xxh3 ring gives the busiest of 100 pods at most 5% more keys than the average', () => {
  const ring = new swarm.HashRing(servers(100), { ring: 'xxh3' });
  assert.strictEqual(ring.ring, 'xxh3');
  const counts = new Map();
  const keys = 1e6;
  for (let i = 0; i < keys; i++) {
    const owner = ring.get(`customer-${i}`);
    counts.set(owner, (counts.get(owner) || 0) + 1);
  }
  assert.strictEqual(counts.size, 100);
  const busiest = Math.max(...counts.values());
  assert.ok(busiest <= 1.05 * keys / 100, `the busiest pod owns ${busiest} keys, ${(busiest * 100 / keys).toFixed(2)}%`);
});

test('both rings answer through the same API; a ring of another name is refused', () => {
  const ips = servers(7);
  for (const kind of ['hashring', 'xxh3']) {
    const ring = new swarm.HashRing(ips, { ring: kind });
    const keys = Array.from({ length: 500 }, (_, i) => `k${i}`);
    assert.deepStrictEqual(ring.getMany(keys), keys.map(key => ring.get(key)), kind);
    assert.ok(keys.every(key => ips.includes(ring.get(key))), kind);
    assert.strictEqual(new swarm.HashRing([], { ring: kind }).get('k'), null, kind);
  }
  assert.strictEqual(new swarm.HashRing(ips).ring, 'hashring', 'the default');
  const placed = ring => Array.from({ length: 200 }, (_, i) => ring.get(`k${i}`));
  assert.notDeepStrictEqual(placed(new swarm.HashRing(ips, { ring: 'xxh3' })), placed(new swarm.HashRing(ips)), 'two placements');
  for (const options of [{ ring: 'md5' }, 'xxh3', null]) {
    assert.throws(() => new swarm.HashRing(ips, options), { code: 'ERR_SWARM_INVALID_ARG' }, JSON.stringify(options));
  }
  const ring = new swarm.HashRing(ips, { ring: 'xxh3' });
  assert.throws(() => { 'use strict'; ring.ring = 'hashring'; }, TypeError, 'a ring keeps its kind');
  assert.throws(() => ring.getMany('k1'), { code: 'ERR_SWARM_INVALID_ARG' });
});

test('init() refuses a ring it does not know, before it starts anything', async () => {
  await assert.rejects(swarm.init({ standalone: true, ring: 'maglev' }), { code: 'ERR_SWARM_INVALID_ARG', message: /ring: expected 'hashring' or 'xxh3', got string "maglev"/ });
});

test('pods on two rings and a pod of 0.5.1: each mismatch is reported once on both sides, and each pod routes by its own ring', async () => {
  const [hashring, xxh3, legacy, outsider] = ['127.0.0.101', '127.0.0.102', '127.0.0.103', '127.0.0.104'];
  const standin = await startStandin({ appName: 'web' });
  const port = await freePort();
  standin.addPod({ name: 'web-legacy', ip: legacy });
  const old = await startLegacyServer({ host: legacy, port, handlers: {} });
  // An HTTP server that is no pod: it names no ring, and that says nothing of rings.
  const other = await startLegacyServer({ host: outsider, port, handlers: { hello: [() => 'hi'] } });
  const cluster = await startCluster(standin, [hashring, xxh3], {
    port,
    env: ip => ({ FIXTURE_INIT: JSON.stringify(ip === xxh3 ? { ring: 'xxh3' } : {}) })
  });
  try {
    const [a, b] = cluster.nodes;
    const mismatches = node => node.events.filter(e => e.event === 'error' && e.code === 'ERR_SWARM_RING_MISMATCH');
    // The pod on xxh3 asks each peer as it sees it: both learn without a message of theirs.
    await eventually(() => mismatches(b).length === 2 && mismatches(a).length === 1, 10000, 'the mismatches reported');
    assert.deepStrictEqual(mismatches(b).map(e => e.peer).sort(), [hashring, legacy]);
    const silent = mismatches(b).find(e => e.peer === legacy);
    assert.strictEqual(silent.peerRing, 'hashring');
    assert.match(silent.message, /Pod 127\.0\.0\.103 names no ring: a pod of 0\.5\.1 or 1\.0\.0, which places task keys by ring hashring, while this pod places them by xxh3;.*Upgrade that pod/);
    assert.deepStrictEqual(mismatches(a).map(e => e.peer), [xxh3]);
    assert.match(mismatches(a)[0].message, /Pod 127\.0\.0\.102 places task keys by ring xxh3, this pod by hashring:.*Run every pod on the same ring/);
    assert.deepStrictEqual([mismatches(a)[0].peerRing, mismatches(a)[0].ring], ['xxh3', 'hashring']);

    const [statsA, statsB] = await Promise.all([a.request('swarmStats'), b.request('swarmStats')]);
    assert.deepStrictEqual([statsA.topology.ring.kind, statsB.topology.ring.kind], ['hashring', 'xxh3']);
    assert.notStrictEqual(statsA.topology.ring.checksum, statsB.topology.ring.checksum, 'one view, two kinds');

    // Each routes by its own ring, and the other runs what it was sent (no refusal as moved).
    const keys = Array.from({ length: 300 }, (_, i) => `customer-${i}`);
    const all = [hashring, xxh3, legacy].sort();
    for (const [node, kind] of [[a, 'hashring'], [b, 'xxh3']]) {
      const ring = new swarm.HashRing(all, { ring: kind });
      assert.deepStrictEqual(await node.request('owners', { keys }), keys.map(key => ring.get(key)), kind);
    }
    const theirs = new swarm.HashRing(all, { ring: 'xxh3' });
    const mine = new swarm.HashRing(all);
    const key = keys.find(k => mine.get(k) === xxh3 && theirs.get(k) === hashring);
    const back = keys.find(k => theirs.get(k) === hashring && mine.get(k) === xxh3 && k !== key) || key;
    assert.strictEqual(await a.request('exec', { name: 'where', args: [key] }), xxh3, 'run where the hashring pod sent it');
    assert.strictEqual(await b.request('exec', { name: 'where', args: [back] }), hashring, 'run where the xxh3 pod sent it');
    // Keys each pod owns by its own ring, serialized: the xxh3 pod asks the pods that owned
    // them before it joined (by its rings) to release them; the hashring pod answers
    // without holding the keys back from itself (no view of its ever matches the asker's).
    const both = keys.filter(k => theirs.get(k) === xxh3 && mine.get(k) === hashring).slice(0, 5);
    assert.ok(both.length > 0);
    for (const k of both) {
      assert.strictEqual(await b.request('exec', { name: 'whereInOrder', args: [k] }), xxh3);
      assert.strictEqual(await a.request('exec', { name: 'whereInOrder', args: [k] }, 5000), hashring);
    }
    assert.strictEqual(await b.request('send', { to: outsider, topic: 'hello', data: {} }), 'hi');
    await Promise.all([a.request('owners', { keys: [key] }), b.request('owners', { keys: [key] })]);
    assert.strictEqual(mismatches(b).length, 2, 'once per peer');
    assert.strictEqual(mismatches(a).length, 1, 'once per peer');
  } finally {
    await cluster.stop();
    await new Promise(resolve => old.close(resolve));
    await new Promise(resolve => other.close(resolve));
    await standin.close();
  }
});
