//! The opt-in ring of pods of 1.x (`ring: 'xxh3'`): a Maglev lookup table (Eisenbud et
//! al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016, §3.4)
//! over xxh3.
//!
//! Every server fills the slots of a table of [`SLOTS`] entries in the order of its own
//! permutation, the servers taking turns, so each gets the same number of slots within
//! one; a key's owner is the server of slot `xxh3(key) % SLOTS`: one digest and one read.
//! When a server joins or leaves, the slots it gains or loses move, and a few others
//! move between the servers that stay (the excess the docs state: `docs/rings.md`).
//!
//! What decides a placement, so that every pod (and an independent implementation)
//! computes the same table from the same servers in the same order:
//! - `offset = xxh3_64_with_seed(server, 1) % SLOTS`, `skip = xxh3_64_with_seed(server,
//!   2) % (SLOTS - 1) + 1`; a server's `j`th preferred slot is `(offset + j * skip) %
//!   SLOTS` (every slot once, `SLOTS` being prime);
//! - in turns, each server in the given order takes its next preferred slot not yet
//!   taken, until every slot is;
//! - a key's slot is `xxh3_64(key's UTF-8 bytes) % SLOTS`.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The table's size: a prime, so every skip visits every slot; about 100 slots or more
/// per server up to 650 servers, which keeps the servers' shares within 1% of each other
/// and the keys moved beyond the minimum small (measured in `docs/rings.md`).
pub const SLOTS: usize = 65_537;
/// A slot not taken yet, while the table fills.
const FREE: u32 = u32::MAX;

/// A Maglev table placing keys on servers.
#[derive(Debug, Clone, Default)]
pub struct Maglev {
    servers: Vec<String>,
    /// `table[slot]`: the index in `servers` of the slot's server; empty without servers.
    table: Vec<u32>,
}

impl Maglev {
    /// Builds the table over `servers`, duplicates dropped, in their string order
    /// whatever order they come in: the order decides which server takes a contested
    /// slot, and every pod (or app) that builds the table of the same servers must get
    /// the same one.
    pub fn new<I, S>(servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut servers: Vec<String> = servers.into_iter().map(Into::into).collect();
        servers.sort_unstable();
        servers.dedup();
        let table = if servers.is_empty() {
            Vec::new()
        } else {
            fill(&servers)
        };
        Maglev { servers, table }
    }

    /// Where `key` falls: the digest its slot is taken from.
    pub fn point(key: &str) -> u64 {
        xxh3_64(key.as_bytes())
    }

    /// The position in [`Maglev::servers`] of the server owning the key at `point`.
    pub fn index_at(&self, point: u64) -> Option<usize> {
        let slot = (point % SLOTS as u64) as usize;
        self.table.get(slot).map(|&index| index as usize)
    }

    /// The servers, in string order (duplicates dropped).
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// How many slots each server holds, in the servers' order.
    pub fn shares(&self) -> Vec<usize> {
        let mut shares = vec![0; self.servers.len()];
        for &index in &self.table {
            shares[index as usize] += 1;
        }
        shares
    }
}

/// The table of `servers` (not empty): each takes, in turn, its next preferred free slot.
fn fill(servers: &[String]) -> Vec<u32> {
    let slots = SLOTS as u64;
    // Per server: its next preferred slot and the step to the one after it.
    let mut cursors: Vec<(usize, usize)> = servers
        .iter()
        .map(|server| {
            let offset = xxh3_64_with_seed(server.as_bytes(), 1) % slots;
            let skip = xxh3_64_with_seed(server.as_bytes(), 2) % (slots - 1) + 1;
            (offset as usize, skip as usize)
        })
        .collect();
    let mut table = vec![FREE; SLOTS];
    let mut taken = 0;
    loop {
        for (index, (next, skip)) in cursors.iter_mut().enumerate() {
            while table[*next] != FREE {
                *next = step(*next, *skip);
            }
            table[*next] = u32::try_from(index).expect("fewer than 2^32 servers");
            *next = step(*next, *skip);
            taken += 1;
            if taken == SLOTS {
                return table;
            }
        }
    }
}

/// The slot after `slot` in a permutation of step `skip` (both below [`SLOTS`]).
fn step(slot: usize, skip: usize) -> usize {
    let next = slot + skip;
    if next >= SLOTS {
        next - SLOTS
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.1.{}.{}", i / 250, i % 250 + 1))
            .collect()
    }

    #[test]
    fn every_server_holds_the_same_number_of_slots_within_one() {
        for n in [1, 2, 3, 7, 20, 100, 1000] {
            let shares = Maglev::new(servers(n)).shares();
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert_eq!(shares.iter().sum::<usize>(), SLOTS, "n = {n}");
            assert!(
                max.unwrap() - min.unwrap() <= 1,
                "n = {n}: {min:?}..{max:?}"
            );
        }
    }

    #[test]
    fn an_empty_table_owns_nothing_and_one_server_everything() {
        assert_eq!(Maglev::new(Vec::<String>::new()).index_at(42), None);
        let one = Maglev::new(["10.0.0.1"]);
        for key in ["", "a", "héllo", "🦀"] {
            assert_eq!(one.index_at(Maglev::point(key)), Some(0));
        }
    }

    /// Placements every pod and every version must keep: a change to the seeds, the
    /// table's size or the digest would split keys between versions.
    #[test]
    fn placements_stay_as_they_were() {
        // XXH3_64bits of no bytes, as the reference implementation gives it.
        assert_eq!(Maglev::point(""), 0x2D06_8005_38D3_94C2);
        let ring = Maglev::new(["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        let first: Vec<usize> = (0..24).map(|slot| ring.index_at(slot).unwrap()).collect();
        assert_eq!(
            first,
            [0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 0, 2, 2, 0, 2, 1, 2, 2, 0, 2, 2, 1, 1]
        );
        let owners: Vec<usize> = ["", "a", "customer-1", "héllo", "🦀"]
            .iter()
            .map(|key| ring.index_at(Maglev::point(key)).unwrap())
            .collect();
        assert_eq!(owners, [2, 0, 0, 0, 1]);
    }

    #[test]
    fn the_table_of_the_same_servers_is_the_same_in_any_order() {
        assert_eq!(Maglev::new(["b", "a", "b"]).servers(), ["a", "b"]);
        let ips = servers(20);
        let sorted = Maglev::new(ips.iter().cloned());
        let reversed = Maglev::new(ips.iter().rev().cloned());
        assert_eq!(sorted.table, reversed.table);
    }
}
