//! The xxh3 ring (`ring: 'xxh3'`) against a model written from the Maglev paper's
//! pseudo-code (Eisenbud et al., NSDI 2016, Pseudocode 1), and how many keys move when
//! a server joins or leaves.

use proptest::prelude::*;
use swarm_core::ring::{Maglev, Ring, RingKind, SLOTS};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The paper's population, literally: every server's whole permutation first, then the
/// turns, each server taking the first entry of its permutation not yet taken. The
/// servers take their turns in string order (docs/rings.md).
fn model_table(servers: &[String]) -> Vec<usize> {
    let m = SLOTS as u64;
    let permutation: Vec<Vec<usize>> = servers
        .iter()
        .map(|name| {
            let offset = xxh3_64_with_seed(name.as_bytes(), 1) % m;
            let skip = xxh3_64_with_seed(name.as_bytes(), 2) % (m - 1) + 1;
            (0..m).map(|j| ((offset + j * skip) % m) as usize).collect()
        })
        .collect();
    let mut next = vec![0; servers.len()];
    let mut entry: Vec<Option<usize>> = vec![None; SLOTS];
    let mut n = 0;
    loop {
        for i in 0..servers.len() {
            let mut c = permutation[i][next[i]];
            while entry[c].is_some() {
                next[i] += 1;
                c = permutation[i][next[i]];
            }
            entry[c] = Some(i);
            next[i] += 1;
            n += 1;
            if n == SLOTS {
                return entry.into_iter().map(|e| e.expect("filled")).collect();
            }
        }
    }
}

fn servers(n: usize, salt: u32) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.{}", salt % 256, i / 250, i % 250 + 1))
        .collect()
}

#[test]
fn the_ring_places_keys_as_the_papers_model_does() {
    for (n, salt) in [(1, 0), (2, 1), (3, 2), (7, 3), (20, 4), (64, 5)] {
        let mut servers = servers(n, salt);
        let ring = Ring::new(RingKind::Xxh3, servers.iter().cloned());
        servers.sort();
        let table = model_table(&servers);
        for i in 0..20_000 {
            let key = format!("customer-{salt}-{i}");
            let model = &servers[table[(xxh3_64(key.as_bytes()) % SLOTS as u64) as usize]];
            assert_eq!(ring.get(&key), Some(model.as_str()), "n = {n}, key {key}");
        }
    }
}

/// The share of the table's slots that change hands between two servers that are on
/// both tables: what moves beyond the minimum when a server joins or leaves.
fn excess(before: &Maglev, after: &Maglev) -> f64 {
    let owner = |table: &'_ Maglev, slot: usize| -> String {
        table.servers()[table.index_at(slot as u64).expect("a server")].clone()
    };
    let on_both = |server: &str| {
        [before, after]
            .iter()
            .all(|table| table.servers().iter().any(|s| s == server))
    };
    let moved = (0..SLOTS)
        .filter(|&slot| {
            let (was, is) = (owner(before, slot), owner(after, slot));
            was != is && on_both(&was) && on_both(&is)
        })
        .count();
    moved as f64 / SLOTS as f64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A server that joins takes slots, one that leaves gives its own up, and at most 5%
    /// of the table moves between the servers on both tables: the worst of about 40,000
    /// cases measured was 3.3%, the mean 0.05-0.5% (docs/rings.md). A join is a leave
    /// read backwards: the same slots move.
    #[test]
    fn a_join_or_a_leave_moves_little_beyond_the_servers_own_share(
        n in 2usize..120,
        salt in 0u32..1000,
        at in any::<prop::sample::Index>(),
    ) {
        let with = servers(n, salt);
        let mut without = with.clone();
        without.remove(at.index(n));
        let moved = excess(&Maglev::new(with), &Maglev::new(without));
        prop_assert!(moved <= 0.05, "n = {}: {:.4} of the slots moved between the others", n, moved);
    }
}
