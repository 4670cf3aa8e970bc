//! The consistent-hash rings that place task keys on members: [`HashRing`], the default,
//! and the opt-in [`Maglev`] table of `ring: 'xxh3'` (`docs/rings.md`); [`Ring`] is
//! either, and [`PeerRings`] what peers say of theirs.
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
mod maglev;
mod peers;

use std::{collections::HashSet, fmt, str::FromStr};

pub use hashring3::HashRing;
pub use maglev::{Maglev, SLOTS};
pub use peers::{PeerRings, Said, Tell};

/// Which ring places keys: every pod of a cluster must use the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// `hashring@3`'s ring ([`HashRing`]): what 0.5.1 pods place keys by.
    #[default]
    Hashring,
    /// A Maglev table over xxh3 ([`Maglev`]): an even spread and a faster look-up, for
    /// clusters whose pods all have it (not 0.5.1 or 1.0.0).
    Xxh3,
}

impl RingKind {
    /// Its name, as `init({ ring })` and the wire say it.
    pub fn name(self) -> &'static str {
        match self {
            RingKind::Hashring => "hashring",
            RingKind::Xxh3 => "xxh3",
        }
    }

    /// Where `key` falls on rings of this kind.
    pub fn point(self, key: &str) -> KeyPoint {
        let value = match self {
            RingKind::Hashring => u64::from(hashring3::point(key)),
            RingKind::Xxh3 => Maglev::point(key),
        };
        KeyPoint { kind: self, value }
    }
}

impl FromStr for RingKind {
    type Err = ();

    fn from_str(name: &str) -> Result<Self, ()> {
        match name {
            "hashring" => Ok(RingKind::Hashring),
            "xxh3" => Ok(RingKind::Xxh3),
            _ => Err(()),
        }
    }
}

impl fmt::Display for RingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a key falls on the rings of one kind: a key hashed once, looked up on several.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPoint {
    kind: RingKind,
    value: u64,
}

/// A ring of either kind.
#[derive(Debug, Clone)]
pub enum Ring {
    Hashring(HashRing),
    Xxh3(Maglev),
}

impl Ring {
    /// The ring of `kind` over `servers` (duplicates dropped, the first kept): in the
    /// order given for `hashring@3`'s, whose ties it decides (every pod builds from the
    /// IPs sorted as strings), in string order whatever the order given for xxh3's.
    pub fn new<I, S>(kind: RingKind, servers: I) -> Ring
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match kind {
            RingKind::Hashring => Ring::Hashring(HashRing::new(servers)),
            RingKind::Xxh3 => Ring::Xxh3(Maglev::new(servers)),
        }
    }

    pub fn kind(&self) -> RingKind {
        match self {
            Ring::Hashring(_) => RingKind::Hashring,
            Ring::Xxh3(_) => RingKind::Xxh3,
        }
    }

    /// The server owning `key`, or `None` when the ring is empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.owner_at(self.kind().point(key))
    }

    /// The server owning the key at `point`, a point of this ring's kind.
    pub fn owner_at(&self, point: KeyPoint) -> Option<&str> {
        self.index_at(point).map(|i| self.servers()[i].as_str())
    }

    /// The position in [`Ring::servers`] of the server owning `key`: lets a caller
    /// that keeps its own copy of the servers avoid a string per look-up.
    pub fn index(&self, key: &str) -> Option<usize> {
        self.index_at(self.kind().point(key))
    }

    fn index_at(&self, point: KeyPoint) -> Option<usize> {
        debug_assert_eq!(point.kind, self.kind(), "a point of another kind of ring");
        match self {
            // A hashring point is the 32-bit word it was made from.
            Ring::Hashring(ring) => ring.index_at(point.value as u32),
            Ring::Xxh3(ring) => ring.index_at(point.value),
        }
    }

    /// The servers, in the order the ring was built from (duplicates dropped).
    pub fn servers(&self) -> &[String] {
        match self {
            Ring::Hashring(ring) => ring.servers(),
            Ring::Xxh3(ring) => ring.servers(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.servers().is_empty()
    }
}

/// `servers` without duplicates, the first of each kept, in order.
fn distinct<I, S>(servers: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut seen = HashSet::new();
    servers
        .into_iter()
        .map(Into::into)
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

/// A digest of `ring`'s placement, equal on pods that built it of the same kind from the
/// same servers in the same order (xxh3: fast, not meant to resist chosen inputs, which
/// it need not).
pub fn checksum(ring: &Ring) -> u64 {
    checksum_of(ring.kind(), ring.servers().iter().map(String::as_str))
}

/// [`checksum`] of the ring of `kind` over `servers` (distinct, in order), without
/// building it.
pub fn checksum_of<'a>(kind: RingKind, servers: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut digest = xxhash_rust::xxh3::Xxh3::new();
    digest.update(match kind {
        RingKind::Hashring => b"hashring@3".as_slice(),
        RingKind::Xxh3 => b"maglev-xxh3/65537",
    });
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
        let ring =
            |servers: &[&str]| checksum(&Ring::new(RingKind::Hashring, servers.iter().copied()));
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
                checksum_of(RingKind::Hashring, other.iter().copied()),
                ring(other),
                "unbuilt: {other:?}"
            );
        }
        assert_ne!(
            checksum(&Ring::new(RingKind::Xxh3, ["10.0.0.1", "10.0.0.2"])),
            ring(&["10.0.0.1", "10.0.0.2"]),
            "the same servers on a ring of another kind"
        );
    }
}
