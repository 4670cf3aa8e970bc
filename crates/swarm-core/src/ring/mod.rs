//! The consistent-hash ring that places task keys on members.
//!
//! node-swarm-kb 0.5.1 placed keys with the npm package `hashring` 3.x, with its
//! defaults, over the members' IP strings. During a rolling upgrade pods of 0.5.1 and of
//! this version run side by side and must agree on the owner of every key, or a task
//! would run twice or nowhere; so [`HashRing`] reproduces `hashring@3` bit for bit
//! rather than merely "a ketama-like ring":
//!
//! - MD5 everywhere; `floor((1 / n) * 40 * n)` virtual nodes per server, evaluated in
//!   double precision left to right as JavaScript does (39 rather than 40 for n = 7, 14,
//!   28, 49 and 56 among n ≤ 64);
//! - 4 points per virtual node, the digest of `"<server>-<i>"` read as four
//!   little-endian 32-bit words;
//! - the points sorted stably by value (ties keep their insertion order, as the stable
//!   JavaScript `Array.prototype.sort` does);
//! - a key's point is the first little-endian word of the MD5 of its UTF-8 bytes, and its
//!   owner is the first point at or after it, wrapping to the start; the search is a
//!   literal port of hashring's own `find`, which is proven (and tested) to agree with a
//!   plain lower-bound search on every input.
//!
//! The servers' order matters only for points of equal value (ties), so every pod must
//! build its ring from the same order: node-swarm-kb passes the IPs in string-sorted
//! order. The npm package is the oracle: `__test__/ring.test.js` compares the two over
//! millions of keys.
//!
//! Deliberate difference: `hashring@3` memoizes answers in a cache kept in a plain
//! JavaScript object, so a key that names an `Object.prototype` property (`constructor`,
//! `toString`, `__proto__`, ...) gets a process-wide sticky answer (the first ring asked
//! wins, even for rings that do not contain that server). [`HashRing`] always computes
//! the placement; for every other key the two agree.
mod hashring3;

pub use hashring3::HashRing;
