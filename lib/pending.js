'use strict';

// Entries waiting under a numeric id (calls in flight, kept task values), in an
// open-addressing table of plain arrays, not a `Map`. A `Map` with a steady stream of
// additions and deletions rebuilds its table every few dozen changes, and V8 links each
// old table to the one that replaced it. Once a table has been promoted to the old
// generation, the dead old one keeps its young successor, and what that holds, alive
// through every scavenge until a full collection, and so on down the chain: in a busy
// sender, megabytes survived each scavenge, scavenges grew an order of magnitude longer
// and throughput fell for as long as the node ran. A replaced array here is only
// garbage. Linear probing from `id` modulo the size, in Robin Hood order, so that the
// consecutive ids the native side hands out each sit in their own slot: a set and a take
// cost a fraction of a `Map`'s.
class Pending {
  constructor () {
    this._slots = new Array(64).fill(undefined);
    this._mask = 63;
    this.size = 0;
  }

  // Keeps `entry` under its `id`, an integer in [0, 2^32), in place of any entry there.
  set (entry) {
    if ((this.size + 1) * 2 > this._slots.length) this._resize(this._slots.length * 2);
    if (this._place(entry)) this.size++;
  }

  get (id) {
    const i = this._find(id);
    return i < 0 ? undefined : this._slots[i];
  }

  // The entry under `id`, removed; undefined if there is none.
  take (id) {
    let i = this._find(id);
    if (i < 0) return undefined;
    const slots = this._slots;
    const mask = this._mask;
    const entry = slots[i];
    // Backward-shift deletion: the entries after it that are not in their home slot move
    // back by one, up to an empty slot or an entry at home.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const next = slots[j];
      if (next === undefined || ((j - next.id) & mask) === 0) break;
      slots[i] = next;
      i = j;
    }
    slots[i] = undefined;
    this.size--;
    if (slots.length > 64 && this.size * 8 < slots.length) this._resize(slots.length / 2);
    return entry;
  }

  _find (id) {
    const slots = this._slots;
    const mask = this._mask;
    for (let i = id & mask, distance = 0; ; i = (i + 1) & mask, distance++) {
      const entry = slots[i];
      // Robin Hood order: past an entry nearer its home than this, `id` is not there.
      if (entry === undefined || ((i - entry.id) & mask) < distance) return -1;
      if (entry.id === id) return i;
    }
  }

  // Robin Hood insertion: an entry takes the slot of one nearer its own home, which
  // moves on; so the entries of a run are in order of their distance from home, and one
  // with the same id would be met before that. False when it replaced one.
  _place (entry) {
    const slots = this._slots;
    const mask = this._mask;
    for (let i = entry.id & mask, distance = 0; ; i = (i + 1) & mask, distance++) {
      const there = slots[i];
      if (there === undefined || there.id === entry.id) {
        slots[i] = entry;
        return there === undefined;
      }
      const theirs = (i - there.id) & mask;
      if (theirs < distance) {
        slots[i] = entry;
        entry = there;
        distance = theirs;
      }
    }
  }

  // Twice as large when half full, half as large when an eighth full (64 at least).
  _resize (length) {
    const old = this._slots;
    this._slots = new Array(length).fill(undefined);
    this._mask = this._slots.length - 1;
    for (const entry of old) if (entry !== undefined) this._place(entry);
  }
}

module.exports = { Pending };
