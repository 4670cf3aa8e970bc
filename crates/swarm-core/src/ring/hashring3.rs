//! A port of the npm package `hashring@3.2.0` with its defaults (MD5, 40 virtual
//! nodes, 4 replicas, no weights, no default port): same points, same order, same owner.

use std::fmt::Write as _;

use md5::{Digest, Md5};

use super::distinct;

/// Virtual nodes per server before hashring's `Math.floor` distribution.
const VNODES: f64 = 40.0;
/// Points per virtual node: the four 32-bit words of one MD5 digest.
const REPLICAS: usize = 4;

/// A consistent-hash ring placing keys exactly as `hashring@3` does for the same list
/// of servers.
#[derive(Debug, Clone, Default)]
pub struct HashRing {
    servers: Vec<String>,
    /// The continuum: point values, sorted ascending (stable on ties).
    points: Points,
    /// `owners[i]` is the index in `servers` of the server owning the `i`th point.
    owners: Vec<u32>,
}

impl HashRing {
    /// Builds the ring over `servers` in the given order. A duplicate is dropped, the
    /// first occurrence kept (hashring itself would count it twice; our member set
    /// never has duplicates).
    pub fn new<I, S>(servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let servers = distinct(servers);
        let n = servers.len();
        let per_server = vnodes_for(n);

        let mut continuum: Vec<(u32, u32)> = Vec::with_capacity(n * per_server * REPLICAS);
        let mut label = String::new();
        for (index, server) in servers.iter().enumerate() {
            let index = u32::try_from(index).expect("fewer than 2^32 servers");
            for i in 0..per_server {
                label.clear();
                write!(label, "{server}-{i}").expect("writing to a String");
                let digest = Md5::digest(label.as_bytes());
                for word in digest.chunks_exact(4) {
                    let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    continuum.push((value, index));
                }
            }
        }
        // Stable, as JavaScript's sort is: equal points keep the servers' order.
        continuum.sort_by_key(|&(value, _)| value);
        let (points, owners): (Vec<u32>, Vec<u32>) = continuum.into_iter().unzip();
        let points = Points::new(points);

        HashRing {
            servers,
            points,
            owners,
        }
    }

    /// The server owning `key`, or `None` when the ring is empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index(key).map(|i| self.servers[i].as_str())
    }

    /// The position in [`HashRing::servers`] of the server owning `key`.
    pub fn index(&self, key: &str) -> Option<usize> {
        self.index_at(point(key))
    }

    /// The position of the server owning the key at `point` ([`point`]).
    pub(super) fn index_at(&self, point: u32) -> Option<usize> {
        if self.owners.is_empty() {
            return None;
        }
        let position = self.points.find(point);
        Some(self.owners[position] as usize)
    }

    /// The servers, in the order the ring was built from (duplicates dropped).
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Whether the ring has no server.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }
}

/// Virtual nodes per server for `n` servers of weight 1: hashring's
/// `Math.floor(percentage * vnodes * servers.length)` with `percentage = 1 / n`,
/// evaluated left to right in double precision, hence 39 for some `n` (7, 14, 28, ...).
fn vnodes_for(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let n = n as f64;
    let percentage = 1.0 / n;
    (percentage * VNODES * n).floor() as usize
}

/// Where a key falls on a ring: the first little-endian word of the MD5 of its bytes.
pub(super) fn point(key: &str) -> u32 {
    let digest = Md5::digest(key.as_bytes());
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Bits of a point's value that index [`Points::starts`].
const INDEX_BITS: u32 = 12;

/// The sorted points, with where each range of values sharing their top
/// [`INDEX_BITS`] bits begins: a look-up searches the few points of its key's range
/// (about 4 on a ring of 100 servers) instead of the whole continuum.
#[derive(Debug, Clone, Default)]
struct Points {
    values: Vec<u32>,
    /// `starts[b]`: the index of the first point whose top bits are `b` or more;
    /// `starts[1 << INDEX_BITS]` is the number of points.
    starts: Vec<u32>,
}

impl Points {
    fn new(values: Vec<u32>) -> Points {
        let ranges = 1u32 << INDEX_BITS;
        let starts = (0..=ranges)
            .map(|range| {
                if range < ranges {
                    values.partition_point(|&p| p < range << (32 - INDEX_BITS))
                } else {
                    values.len()
                }
            })
            .map(|at| u32::try_from(at).expect("fewer than 2^32 points"))
            .collect();
        Points { values, starts }
    }

    /// hashring's `find`: the index of the first point `>= hash`, or 0 when there is
    /// none (the wrap-around). Its binary search, with mixed bounds (`high = size`, then
    /// `high = mid - 1`) and `prev = 0` at `mid == 0`, computes exactly that lower bound,
    /// ties and wrap included. The points must not be empty.
    fn find(&self, hash: u32) -> usize {
        let range = (hash >> (32 - INDEX_BITS)) as usize;
        let from = self.starts[range] as usize;
        let to = self.starts[range + 1] as usize;
        let at = from + self.values[from..to].partition_point(|&p| p < hash);
        if at == self.values.len() {
            0
        } else {
            at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain lower bound with wrap-around hashring's `find` is compared with.
    fn lower_bound(points: &[u32], hash: u32) -> usize {
        let l = points.partition_point(|&p| p < hash);
        if l == points.len() {
            0
        } else {
            l
        }
    }

    #[test]
    fn vnodes_match_javascript() {
        // `Math.floor((1 / n) * 40 * n)` in node for n = 1..=64.
        for n in 1..=64 {
            let expected = if [7, 14, 28, 49, 56].contains(&n) {
                39
            } else {
                40
            };
            assert_eq!(vnodes_for(n), expected, "n = {n}");
        }
        assert_eq!(vnodes_for(0), 0);
    }

    #[test]
    fn ring_sizes_follow_vnodes() {
        for n in 1..=64 {
            let ring = HashRing::new((0..n).map(|i| format!("10.{}.{}.{}", i % 3, i * 7 % 256, i)));
            assert_eq!(ring.len(), n);
            assert_eq!(ring.points.values.len(), n * vnodes_for(n) * REPLICAS);
            assert!(ring.points.values.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn empty_ring() {
        let ring = HashRing::new(Vec::<String>::new());
        assert!(ring.is_empty());
        assert_eq!(ring.len(), 0);
        assert!(ring.servers().is_empty());
        assert_eq!(ring.get(""), None);
        assert_eq!(ring.get("key"), None);
    }

    #[test]
    fn single_server_owns_everything() {
        let ring = HashRing::new(["10.0.0.1"]);
        assert!(!ring.is_empty());
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.points.values.len(), 160);
        for key in ["", "a", "42", "héllo", "🦀", "cust-000123"] {
            assert_eq!(ring.get(key), Some("10.0.0.1"));
        }
    }

    #[test]
    fn duplicates_keep_the_first() {
        let ring = HashRing::new(["b", "a", "b", "c", "a"]);
        assert_eq!(ring.servers(), ["b", "a", "c"]);
        assert_eq!(ring.points.values.len(), 3 * 40 * REPLICAS);
    }

    #[test]
    fn continuum_matches_hashring() {
        // `new HashRing(['10.0.0.1', '10.0.0.2', '10.0.0.3']).ring` in node.
        let ring = HashRing::new(["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(ring.points.values.len(), GOLDEN_CONTINUUM_LEN);
        assert_eq!(
            &ring.points.values[..GOLDEN_CONTINUUM_HEAD.len()],
            GOLDEN_CONTINUUM_HEAD
        );
        assert_eq!(
            &ring.points.values[ring.points.values.len() - GOLDEN_CONTINUUM_TAIL.len()..],
            GOLDEN_CONTINUUM_TAIL
        );
        assert_eq!(point(""), GOLDEN_EMPTY_KEY_POINT);
    }

    #[test]
    fn golden_vectors_from_hashring() {
        for (servers, vectors) in GOLDEN {
            let ring = HashRing::new(servers.iter().copied());
            for &(key, owner) in *vectors {
                assert_eq!(
                    ring.get(key),
                    Some(owner),
                    "servers {servers:?}, key {key:?}"
                );
            }
        }
    }

    #[test]
    fn find_is_a_lower_bound_with_wrap_exhaustively() {
        // Every sorted ring of length 1..=8 over the values {0, 1, 2, 3, u32::MAX - 1,
        // u32::MAX} (ties included), probed with every value of the alphabet and its
        // neighbours: the indexed search and the plain lower bound agree.
        let alphabet = [0u32, 1, 2, 3, u32::MAX - 1, u32::MAX];
        let probes: Vec<u32> = {
            let mut p: Vec<u32> = alphabet
                .iter()
                .flat_map(|&v| [v.wrapping_sub(1), v, v.wrapping_add(1)])
                .collect();
            p.extend([4, 5, 1 << 31, u32::MAX - 2]);
            p.sort_unstable();
            p.dedup();
            p
        };
        let mut checked = 0u64;
        for len in 1..=8 {
            // Multisets of `len` values, as non-decreasing index sequences.
            let mut idx = vec![0usize; len];
            loop {
                let points: Vec<u32> = idx.iter().map(|&i| alphabet[i]).collect();
                let indexed = Points::new(points.clone());
                for &h in &probes {
                    assert_eq!(
                        indexed.find(h),
                        lower_bound(&points, h),
                        "points {points:?}, hash {h}"
                    );
                    checked += 1;
                }
                // Next non-decreasing sequence.
                let mut k = len;
                while k > 0 && idx[k - 1] == alphabet.len() - 1 {
                    k -= 1;
                }
                if k == 0 {
                    break;
                }
                idx[k - 1] += 1;
                let v = idx[k - 1];
                for slot in &mut idx[k..] {
                    *slot = v;
                }
            }
        }
        assert!(checked > 30_000);
    }

    #[test]
    fn find_is_a_lower_bound_on_random_rings() {
        // Larger rings with many ties (values drawn from a small range) and real-sized
        // rings, probed at every point, its neighbours and random values.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2_000 {
            let len = (next() % 300 + 1) as usize;
            let range = if round % 2 == 0 {
                50
            } else {
                u64::from(u32::MAX) + 1
            };
            let mut points: Vec<u32> = (0..len).map(|_| (next() % range) as u32).collect();
            points.sort_unstable();
            let mut probes: Vec<u32> = points
                .iter()
                .flat_map(|&p| [p.wrapping_sub(1), p, p.wrapping_add(1)])
                .collect();
            probes.extend((0..50).map(|_| (next() % range) as u32));
            probes.extend([0, u32::MAX]);
            let indexed = Points::new(points.clone());
            for h in probes {
                assert_eq!(
                    indexed.find(h),
                    lower_bound(&points, h),
                    "points {points:?}, hash {h}"
                );
            }
        }
        let ring = HashRing::new((0..64).map(|i| format!("10.{}.{}.{}", i * 37 % 256, i, 255 - i)));
        for &p in &ring.points.values {
            for h in [p.wrapping_sub(1), p, p.wrapping_add(1)] {
                assert_eq!(ring.points.find(h), lower_bound(&ring.points.values, h));
            }
        }
    }

    // Generated from `hashring@3.2.0` in node (a throwaway script, not kept).
    /// A server list and `(key, owner)` pairs for it.
    type Golden = (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    );

    const GOLDEN: &[Golden] = &[
        (
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            &[
                ("", "10.0.0.2"),
                ("0", "10.0.0.1"),
                ("1", "10.0.0.1"),
                ("42", "10.0.0.1"),
                ("12345678", "10.0.0.3"),
                ("cust-000001", "10.0.0.1"),
                ("customer:98765", "10.0.0.3"),
                ("order/2024/0007", "10.0.0.1"),
                ("3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f", "10.0.0.2"),
                ("héllo wörld", "10.0.0.2"),
                ("日本語のキー", "10.0.0.3"),
                ("🦀🚀", "10.0.0.2"),
                ("kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", "10.0.0.1"),
            ],
        ),
        (
            &["10.1.2.3", "10.1.2.30", "10.4.0.7", "10.9.200.1", "172.16.0.5", "192.168.1.10", "10.0.0.255"],
            &[
                ("", "10.4.0.7"),
                ("0", "10.4.0.7"),
                ("1", "10.1.2.3"),
                ("42", "172.16.0.5"),
                ("12345678", "10.0.0.255"),
                ("cust-000001", "10.4.0.7"),
                ("customer:98765", "172.16.0.5"),
                ("order/2024/0007", "10.1.2.30"),
                ("3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f", "10.9.200.1"),
                ("héllo wörld", "10.9.200.1"),
                ("日本語のキー", "10.0.0.255"),
                ("🦀🚀", "10.1.2.3"),
                ("kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", "10.4.0.7"),
            ],
        ),
        (
            &["10.0.0.1", "10.37.11.2", "10.74.22.3", "10.111.33.4", "10.148.44.5", "10.185.55.6", "10.222.66.7", "10.3.77.8", "10.40.88.9", "10.77.99.10", "10.114.110.11", "10.151.121.12", "10.188.132.13", "10.225.143.14"],
            &[
                ("", "10.222.66.7"),
                ("0", "10.77.99.10"),
                ("1", "10.111.33.4"),
                ("42", "10.188.132.13"),
                ("12345678", "10.188.132.13"),
                ("cust-000001", "10.114.110.11"),
                ("customer:98765", "10.114.110.11"),
                ("order/2024/0007", "10.40.88.9"),
                ("3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f", "10.40.88.9"),
                ("héllo wörld", "10.74.22.3"),
                ("日本語のキー", "10.151.121.12"),
                ("🦀🚀", "10.225.143.14"),
                ("kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", "10.0.0.1"),
            ],
        ),
        (
            &["10.0.0.200", "10.1.13.199", "10.2.26.198", "10.3.39.197", "10.4.52.196", "10.0.65.195", "10.1.78.194", "10.2.91.193", "10.3.104.192", "10.4.117.191", "10.0.130.190", "10.1.143.189", "10.2.156.188", "10.3.169.187", "10.4.182.186", "10.0.195.185", "10.1.208.184", "10.2.221.183", "10.3.234.182", "10.4.247.181", "10.0.4.180", "10.1.17.179", "10.2.30.178", "10.3.43.177", "10.4.56.176", "10.0.69.175", "10.1.82.174", "10.2.95.173", "10.3.108.172", "10.4.121.171", "10.0.134.170", "10.1.147.169", "10.2.160.168", "10.3.173.167", "10.4.186.166", "10.0.199.165", "10.1.212.164", "10.2.225.163", "10.3.238.162", "10.4.251.161", "10.0.8.160", "10.1.21.159", "10.2.34.158", "10.3.47.157", "10.4.60.156", "10.0.73.155", "10.1.86.154", "10.2.99.153", "10.3.112.152", "10.4.125.151", "10.0.138.150", "10.1.151.149", "10.2.164.148", "10.3.177.147", "10.4.190.146", "10.0.203.145"],
            &[
                ("", "10.4.125.151"),
                ("0", "10.2.156.188"),
                ("1", "10.1.82.174"),
                ("42", "10.1.86.154"),
                ("12345678", "10.1.13.199"),
                ("cust-000001", "10.1.151.149"),
                ("customer:98765", "10.4.125.151"),
                ("order/2024/0007", "10.0.8.160"),
                ("3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f", "10.2.34.158"),
                ("héllo wörld", "10.1.208.184"),
                ("日本語のキー", "10.3.238.162"),
                ("🦀🚀", "10.2.156.188"),
                ("kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", "10.4.251.161"),
            ],
        ),
    ];
    const GOLDEN_CONTINUUM_LEN: usize = 480;
    const GOLDEN_CONTINUUM_HEAD: &[u32] = &[
        4635516, 11062586, 18272749, 22843144, 36885389, 38689815, 40161113, 57399812,
    ];
    const GOLDEN_CONTINUUM_TAIL: &[u32] = &[
        4249791325, 4252785036, 4259560247, 4262511627, 4265826230, 4279332826, 4284154628,
        4288155631,
    ];
    const GOLDEN_EMPTY_KEY_POINT: u32 = 3649838548;
}
