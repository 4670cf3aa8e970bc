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

pub use hashring3::{HashRing, KeyPoint};

/// A digest of `ring`'s placement, equal on pods that built it from the same servers in
/// the same order (xxh3: fast, not meant to resist chosen inputs, which it need not).
pub fn checksum(ring: &HashRing) -> u64 {
    checksum_of(ring.servers().iter().map(String::as_str))
}

/// [`checksum`] of the ring of `servers` (distinct, in order), without building it.
pub fn checksum_of<'a>(servers: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut digest = xxhash_rust::xxh3::Xxh3::new();
    digest.update(b"hashring@3");
    for server in servers {
        digest.update(b"\n");
        digest.update(server.as_bytes());
    }
    digest.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_checksum_is_equal_for_the_same_servers_and_differs_otherwise() {
        let ring = |servers: &[&str]| checksum(&HashRing::new(servers.iter().copied()));
        assert_eq!(
            ring(&["10.0.0.1", "10.0.0.2"]),
            ring(&["10.0.0.1", "10.0.0.2"])
        );
        for other in [
            &["10.0.0.1"][..],
            &["10.0.0.1", "10.0.0.3"],
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            &["10.0.0.110.0.0.2"],
            &[],
        ] {
            assert_ne!(ring(&["10.0.0.1", "10.0.0.2"]), ring(other), "{other:?}");
            assert_eq!(
                checksum_of(other.iter().copied()),
                ring(other),
                "unbuilt: {other:?}"
            );
        }
    }
}
