'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { Pending } = require('../lib/pending');

// A seeded generator, so that a failure can be replayed.
function random (seed) {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 4294967296;
  };
}

// Adds and takes as `ids` hands out ids, checking every answer against a Map; bursts
// grow the table and quiet spells shrink it.
function againstMap (ids, seed) {
  const next = random(seed);
  const table = new Pending();
  const model = new Map();
  for (let step = 0; step < 100000; step++) {
    const r = next();
    const burst = step % 25000 < 2000;
    if (r < (burst ? 0.9 : 0.45)) {
      const id = ids(next);
      const entry = { id, step };
      table.set(entry);
      model.set(id, entry);
    } else if (model.size) {
      const keys = [...model.keys()];
      // Mostly the oldest (replies come back in order), sometimes any, sometimes one
      // that is not there.
      const pick = r < 0.95 ? keys[0] : r < 0.99 ? keys[Math.floor(next() * keys.length)] : ids(next);
      assert.strictEqual(table.get(pick), model.get(pick), `get ${pick} at step ${step}`);
      assert.strictEqual(table.take(pick), model.get(pick), `take ${pick} at step ${step}`);
      model.delete(pick);
      assert.strictEqual(table.take(pick), undefined, `${pick} is taken once`);
    }
    assert.strictEqual(table.size, model.size);
  }
  for (const [key, entry] of model) assert.strictEqual(table.take(key), entry, `${key} at the end`);
  assert.strictEqual(table.size, 0);
}

test('pending entries are found, replaced, taken once and counted, as a Map would', () => {
  // As the native side hands them out: increasing, wrapping below 2^32, never 0.
  let id = 4294967295 - 30000;
  againstMap(() => (id = id >= 4294967295 ? 1 : id + 1), 7);
  // Anywhere in [0, 2^32), and bunched on the same slots (the table's size is a power of
  // two), so that runs of collisions form and are shifted back on removal.
  againstMap(next => Math.floor(next() * 4294967296), 11);
  againstMap(next => 4294967296 - 1 - Math.floor(next() * 64) * 1024 - Math.floor(next() * 3), 13);
});
