'use strict';

// The differential test of the ring: our `HashRing` (the addon) against the npm package
// `hashring@3`, which 0.5.1 used and which is the oracle (docs/compat.md §5). For every
// server count n = 1..64, 100,000 keys must land on the same server.
//
// Server order: both implementations place keys identically for the same server list;
// the order only decides between points of equal value (ties). Nodes pass the servers
// in string-sorted order (`Array.prototype.sort()` / Rust's `str` order, identical for
// ASCII IPs), so the rings are built here in that order.
//
// Keys for which 0.5.1 gave a *sticky* answer are not tested: hashring@3 caches answers
// in a plain object, so keys naming `Object.prototype` members (`constructor`,
// `toString`, `__proto__`, ...) get the first answer computed in the process, whatever
// the ring. We compute those placements like any other key.
//
// The 64 rings are checked in worker threads (this same file, run as a worker), split
// over the cores: the debug build of the addon hashes ~3x slower than a release one.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const os = require('node:os');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const OracleRing = require('hashring');
const { HashRing } = require('../binding.js');

const KEYS_PER_RING = 100_000;
const CHUNK = 10_000;
const MAX_SERVERS = 64;

// A small deterministic PRNG (mulberry32), so failures reproduce.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STICKY = new Set(Object.getOwnPropertyNames(Object.prototype));

// `count` distinct IPs `10.a.b.c`, scattered (not sequential), string-sorted.
function ips(count, rnd) {
  const set = new Set();
  while (set.size < count) {
    const octet = () => Math.floor(rnd() * 256);
    set.add(`10.${octet()}.${octet()}.${octet()}`);
  }
  return [...set].sort();
}

function unicodeString(rnd) {
  // BMP letters of several scripts, combining marks, astral (emoji, CJK ext B), and
  // the odd lone surrogate (both sides encode it as U+FFFD).
  const ranges = [
    [0x20, 0x7e], [0xc0, 0x24f], [0x391, 0x3c9], [0x410, 0x44f], [0x5d0, 0x5ea], [0x600, 0x6ff],
    [0x300, 0x36f], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x20000, 0x2a6df],
  ];
  const len = 1 + Math.floor(rnd() * 12);
  let s = '';
  for (let i = 0; i < len; i++) {
    if (rnd() < 0.01) {
      s += String.fromCharCode(0xd800 + Math.floor(rnd() * 0x800));
      continue;
    }
    const [lo, hi] = ranges[Math.floor(rnd() * ranges.length)];
    s += String.fromCodePoint(lo + Math.floor(rnd() * (hi - lo + 1)));
  }
  return s;
}

function makeKeys(count, rnd) {
  const keys = [''];
  const hex = (n) => {
    let s = '';
    for (let i = 0; i < n; i++) s += Math.floor(rnd() * 16).toString(16);
    return s;
  };
  while (keys.length < count) {
    let key;
    switch (keys.length % 6) {
      case 0: key = String(keys.length); break; // small sequential numbers
      case 1: key = String(Math.floor(rnd() * Number.MAX_SAFE_INTEGER) * (rnd() < 0.1 ? -1 : 1)); break;
      case 2: key = `cust-${String(Math.floor(rnd() * 1e8)).padStart(8, '0')}`; break;
      case 3: key = rnd() < 0.5 ? `customer:${Math.floor(rnd() * 1e6)}` : `order/${2000 + Math.floor(rnd() * 30)}/${hex(6)}`; break;
      case 4: key = `${hex(8)}-${hex(4)}-4${hex(3)}-${'89ab'[Math.floor(rnd() * 4)]}${hex(3)}-${hex(12)}`; break;
      default: key = unicodeString(rnd);
    }
    if (!STICKY.has(key)) keys.push(key);
  }
  return keys;
}

function ours(ring, keys) {
  const out = [];
  for (let i = 0; i < keys.length; i += CHUNK) {
    const part = ring.getMany(keys.slice(i, i + CHUNK));
    for (const owner of part) out.push(owner);
  }
  return out;
}

const rnd = prng(0x5eed);
const KEYS = makeKeys(KEYS_PER_RING, rnd);
const SERVER_LISTS = Array.from({ length: MAX_SERVERS }, (_, i) => ips(i + 1, rnd));

// hashring@3's `get(key)` is `ring[find(hashValue(key))].server` behind an LRU cache
// that only alters the answer for the sticky keys excluded above. A key's hash does not
// depend on the ring, so it is computed once per key (hashring's own `hashValue`), and
// each ring's answer is hashring's own `find` over its own continuum; `get` itself is
// called on a rotating sample of every ring as well. This keeps the file fast.
const HASHES = (() => {
  const any = new OracleRing([]);
  return Uint32Array.from(KEYS, (key) => any.hashValue(key));
})();

function oracleOwners(oracle) {
  const owners = new Array(KEYS.length);
  for (let i = 0; i < KEYS.length; i++) owners[i] = oracle.ring[oracle.find(HASHES[i])].server;
  return owners;
}

// Whether `pos` is the first of points of equal value held by different servers: keys
// placed there change owner with the servers' order.
function onTie(oracle, pos) {
  const ring = oracle.ring;
  return pos + 1 < ring.length && ring[pos + 1].value === ring[pos].value && ring[pos + 1].server !== ring[pos].server;
}

// Checks the rings `SERVER_LISTS[i]` for `i` in `indices`: the first mismatch (or
// null), and how many keys sat on tied points.
function checkRings(indices) {
  let tied = 0;
  for (const index of indices) {
    const servers = SERVER_LISTS[index];
    const n = servers.length;
    const oracle = new OracleRing(servers);
    const mine = new HashRing(servers);
    if (JSON.stringify(mine.servers) !== JSON.stringify(servers)) return { mismatch: `n = ${n}: servers ${mine.servers}`, tied };
    const expected = oracleOwners(oracle);
    const got = ours(mine, KEYS);
    for (let i = 0; i < KEYS.length; i++) {
      if (got[i] !== expected[i]) {
        return { mismatch: `n = ${n}, key ${JSON.stringify(KEYS[i])}: ours ${got[i]}, hashring@3 ${expected[i]}`, tied };
      }
    }
    // hashring's `get` itself, and our `get`, on a different slice of keys per ring.
    for (let i = (n - 1) * 1000; i < n * 1000; i++) {
      const key = KEYS[i];
      const theirs = oracle.get(key);
      if (theirs !== expected[i]) return { mismatch: `n = ${n}, key ${JSON.stringify(key)}: hashring@3 get ${theirs}, find ${expected[i]}`, tied };
      if (i % 10 === 0 && mine.get(key) !== expected[i]) {
        return { mismatch: `n = ${n}, key ${JSON.stringify(key)}: our get ${mine.get(key)}, hashring@3 ${expected[i]}`, tied };
      }
    }
    for (let i = 0; i < KEYS.length; i++) if (onTie(oracle, oracle.find(HASHES[i]))) tied++;
  }
  return { mismatch: null, tied };
}

if (!isMainThread) {
  parentPort.postMessage(checkRings(workerData.indices));
} else {
  test('every key lands where hashring@3 puts it, for 1 to 64 servers', async () => {
    const workers = Math.max(2, Math.min(4, os.availableParallelism()));
    const parts = Array.from({ length: workers }, (_, w) => SERVER_LISTS.map((_, i) => i).filter((i) => i % workers === w));
    const results = await Promise.all(parts.map((indices) => new Promise((resolve, reject) => {
      const worker = new Worker(__filename, { workerData: { indices } });
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`ring worker exited with ${code}`)));
    })));
    for (const { mismatch } of results) if (mismatch) assert.fail(mismatch);
    // MD5 points of different servers do collide in this corpus (n = 20 and n = 48), and
    // the keys on those arcs check the stable sort and the servers' order.
    assert.ok(results.reduce((sum, r) => sum + r.tied, 0) > 0, 'the corpus puts keys on tied points');
  });

  test("the facade's look-up function agrees with hashring@3, keys of any length included", () => {
    // swarm.HashRing.get reads keys through a bare napi function with a stack buffer:
    // keys longer than the buffer, or whose UTF-8 crosses its end, take the other path.
    const { HashRing: FacadeRing } = require('..');
    const servers = SERVER_LISTS[6];
    const ring = new FacadeRing(servers);
    const oracle = new OracleRing(servers);
    const long = [250, 251, 252, 255, 256, 300, 4096].flatMap((n) => ['k'.repeat(n), 'é'.repeat(n >> 1) + 'x', `${'a'.repeat(n - 2)}\u{1F600}`]);
    const keys = [...KEYS.slice(0, 20_000), ...long];
    for (const key of keys) {
      const expected = oracle.ring[oracle.find(oracle.hashValue(key))].server;
      assert.equal(ring.get(key), expected, `key of ${key.length} chars: ${JSON.stringify(key.slice(0, 20))}`);
    }
    assert.equal(ring.get(12345), oracle.ring[oracle.find(oracle.hashValue('12345'))].server, 'a number is looked up as its string');
    assert.throws(() => ring._index(42), TypeError);
    assert.equal(new FacadeRing([]).get('any'), null);
  });

  test('the server order only matters for tied points', () => {
    // The same server sets built in other orders (reversed, shuffled): a key placed
    // differently must sit on a point value shared by two servers (a tie), and in every
    // order we agree with hashring@3 built in that same order.
    const shuffle = prng(0xa11ce);
    let moved = 0;
    for (const servers of [SERVER_LISTS[19], SERVER_LISTS[47], SERVER_LISTS[63]]) {
      const shuffled = [...servers];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = Math.floor(shuffle() * (i + 1));
        [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
      }
      const sortedOwners = ours(new HashRing(servers), KEYS);
      for (const other of [[...servers].reverse(), shuffled]) {
        const oracle = new OracleRing(other);
        const expected = oracleOwners(oracle);
        const got = ours(new HashRing(other), KEYS);
        for (let i = 0; i < KEYS.length; i++) {
          if (got[i] !== expected[i]) {
            assert.fail(`reordered n = ${other.length}, key ${JSON.stringify(KEYS[i])}: ours ${got[i]}, hashring@3 ${expected[i]}`);
          }
          if (got[i] !== sortedOwners[i]) {
            moved++;
            assert.ok(onTie(oracle, oracle.find(HASHES[i])), `n = ${other.length}, key ${JSON.stringify(KEYS[i])} moved without a tie`);
          }
        }
      }
    }
    // Reversing n = 20 swaps the two servers of its tie: its keys move.
    assert.ok(moved > 0);
  });

  test("hashring@3's find is a lower bound with wrap-around, ties included", () => {
    // The oracle's own `find` (with its odd bounds) on every sorted ring of length 1..8
    // over values with ties and both ends of the u32 range, probed everywhere that
    // matters: it always returns the first point >= the hash, or 0 when none is.
    const find = OracleRing.prototype.find;
    const alphabet = [0, 1, 2, 3, 0xfffffffe, 0xffffffff];
    const probes = [0, 1, 2, 3, 4, 5, 0x80000000, 0xfffffffd, 0xfffffffe, 0xffffffff];
    let checked = 0;
    const walk = (prefix, from, len) => {
      if (prefix.length === len) {
        const ring = prefix.map((value) => ({ value, server: 's' }));
        for (const h of probes) {
          let lb = prefix.findIndex((v) => v >= h);
          if (lb === -1) lb = 0;
          assert.equal(find.call({ ring, size: ring.length }, h), lb, `points ${prefix}, hash ${h}`);
          checked++;
        }
        return;
      }
      for (let i = from; i < alphabet.length; i++) walk([...prefix, alphabet[i]], i, len);
    };
    for (let len = 1; len <= 8; len++) walk([], 0, len);
    assert.ok(checked > 30_000);
    // And on the real continuum, at every point and its neighbours.
    const oracle = new OracleRing(SERVER_LISTS[63]);
    const values = oracle.ring.map((p) => p.value);
    for (const v of values) {
      for (const h of [v - 1, v, v + 1].map((x) => x >>> 0)) {
        let lb = values.findIndex((p) => p >= h);
        if (lb === -1) lb = 0;
        assert.equal(oracle.find(h), lb);
      }
    }
  });

  test('an empty ring owns nothing; one server owns everything', () => {
    const empty = new HashRing([]);
    assert.deepEqual(empty.servers, []);
    assert.equal(empty.get('x'), null);
    assert.equal(new OracleRing([]).get('x'), undefined);
    const one = new HashRing(['10.1.2.3']);
    assert.deepEqual(one.getMany(['', 'a', crypto.randomUUID()]), ['10.1.2.3', '10.1.2.3', '10.1.2.3']);
  });
}
