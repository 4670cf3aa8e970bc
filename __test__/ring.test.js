'use strict';

// The differential test of the ring: our `HashRing` (the addon) against the npm package
// `hashring@3`, which 0.5.1 used and which is the oracle (COMPAT.md §5). For every
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

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
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

test('every key lands where hashring@3 puts it, for 1 to 64 servers', () => {
  for (const servers of SERVER_LISTS) {
    const n = servers.length;
    const oracle = new OracleRing(servers);
    const mine = new HashRing(servers);
    assert.deepEqual(mine.servers, servers);
    const got = ours(mine, KEYS);
    for (let i = 0; i < KEYS.length; i++) {
      const key = KEYS[i];
      const expected = oracle.get(key);
      if (got[i] !== expected) {
        assert.fail(`n = ${n}, key ${JSON.stringify(key)}: ours ${got[i]}, hashring@3 ${expected}`);
      }
    }
    // The `get` path as well as `getMany`.
    for (const key of KEYS.slice(0, 100)) assert.equal(mine.get(key), oracle.get(key), `n = ${n}, key ${JSON.stringify(key)}`);
  }
});

test('the server order only matters for tied points', () => {
  // The same server sets built in another order: any key placed differently must sit on
  // a point value shared by two servers (a tie). Both implementations are built in the
  // order given, and agree with each other in that order too.
  const shuffle = prng(0xa11ce);
  for (const servers of [SERVER_LISTS[6], SERVER_LISTS[27], SERVER_LISTS[55], SERVER_LISTS[63]]) {
    const other = [...servers];
    for (let i = other.length - 1; i > 0; i--) {
      const j = Math.floor(shuffle() * (i + 1));
      [other[i], other[j]] = [other[j], other[i]];
    }
    const sorted = new HashRing(servers);
    const shuffled = new HashRing(other);
    const oracle = new OracleRing(other);
    const keys = KEYS.slice(0, 20_000);
    const a = sorted.getMany(keys);
    const b = shuffled.getMany(keys);
    for (let i = 0; i < keys.length; i++) {
      assert.equal(b[i], oracle.get(keys[i]), `shuffled n = ${other.length}, key ${JSON.stringify(keys[i])}`);
      if (a[i] !== b[i]) {
        const pos = oracle.find(oracle.hashValue(keys[i]));
        const value = oracle.ring[pos].value;
        const owners = new Set(oracle.ring.filter((p) => p.value === value).map((p) => p.server));
        assert.ok(owners.size > 1, `n = ${other.length}, key ${JSON.stringify(keys[i])} moved without a tie`);
      }
    }
  }
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
