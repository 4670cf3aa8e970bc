//! A fast hasher for maps whose keys this process chooses or trusts: the ids it gives
//! calls and messages, and the addresses of the cluster's members. The standard
//! SipHash resists keys chosen to collide, which these are not, and showed in profiles
//! of the JavaScript thread under load (a look-up or two per message).

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The Fx hash as rustc-hash 2 does it: per word, add and multiply; the result rotated
/// so that its low bits, which pick a map's bucket, come from the product's middle,
/// where every input bit counts (a plain product's low bits ignore the input's high
/// bits: addresses that differ in their last byte would share buckets).
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        hash::{BuildHasher, Hash},
        net::SocketAddr,
    };

    use super::*;

    fn hash<T: Hash>(value: &T) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(value)
    }

    #[test]
    fn consecutive_ids_and_addresses_spread_over_a_table() {
        // A map's bucket comes from the hash's top bits (hashbrown's control bytes) and
        // its low bits: both must differ across the keys it will really hold.
        let ids: std::collections::HashSet<u64> =
            (0..10_000u32).map(|id| hash(&id) >> 57).collect();
        assert_eq!(ids.len(), 128, "the top 7 bits take every value");
        let low: std::collections::HashSet<u64> =
            (0..10_000u32).map(|id| hash(&id) & 1023).collect();
        assert!(
            low.len() > 900,
            "the low bits spread ids over 1,024 buckets: {}",
            low.len()
        );
        let peers: std::collections::HashSet<u64> = (1..=250u8)
            .map(|last| {
                hash(
                    &format!("10.0.0.{last}:45892")
                        .parse::<SocketAddr>()
                        .unwrap(),
                ) & 255
            })
            .collect();
        assert!(
            peers.len() > 140,
            "addresses spread over 256 buckets: {}",
            peers.len()
        );
    }

    #[test]
    fn a_fast_map_finds_what_it_holds() {
        let mut map = FastMap::default();
        for id in 0..1000u32 {
            map.insert(id, id * 2);
        }
        assert!((0..1000u32).all(|id| map.get(&id) == Some(&(id * 2))));
        assert_eq!(map.get(&1000), None);
    }
}
