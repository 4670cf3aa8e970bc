//! The ring a node routes by, rebuilt when its view changes, and the rings it had
//! before: whoever they named a key's owner may still run the key's tasks, which the
//! hand-off of task keys asks (`handoff.rs`).

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    ring::{self, KeyPoint, Ring, RingKind},
    topology::View,
};

/// How long a ring that was replaced is kept, at most: past the timeouts of tasks.
const KEPT: Duration = Duration::from_secs(600);
/// How many replaced rings are kept, at most.
const KEPT_RINGS: usize = 8;

/// The checksum of the ring of `kind` over `view` ([`ring::checksum_of`]), without
/// building it.
pub(super) fn view_checksum(kind: RingKind, view: &View) -> u64 {
    ring::checksum_of(kind, view.nodes.keys().map(|ip| &**ip))
}

/// The ring of one topology generation: what placed a key, and when.
pub struct RingAt {
    pub generation: u64,
    pub ring: Arc<Ring>,
    /// [`ring::checksum`] of `ring`: equal on pods with the same view.
    pub checksum: u64,
    /// Counts the changes of `ring` (a new generation may keep the same servers).
    pub epoch: u64,
    /// The rings before this one, the latest first, with when each was replaced;
    /// before any, the ring without this node.
    earlier: Vec<(Arc<Ring>, Instant)>,
}

impl RingAt {
    /// The ring of `kind` before any view.
    pub(super) fn empty(kind: RingKind) -> RingAt {
        let ring = Ring::new(kind, Vec::<String>::new());
        RingAt {
            generation: u64::MAX,
            checksum: ring::checksum(&ring),
            ring: Arc::new(ring),
            epoch: 0,
            earlier: Vec::new(),
        }
    }

    /// The ring of `view`, following this one, for a node that owns `local` IPs.
    pub(super) fn next(&self, view: &View, local: impl Fn(&str) -> bool) -> RingAt {
        let kind = self.ring.kind();
        let checksum = view_checksum(kind, view);
        if checksum == self.checksum {
            return RingAt {
                generation: view.generation,
                ring: self.ring.clone(),
                checksum,
                epoch: self.epoch,
                earlier: self.earlier.clone(),
            };
        }
        let ring = Ring::new(kind, view.nodes.keys().map(|ip| ip.to_string()));
        let now = Instant::now();
        let replaced = if self.ring.is_empty() {
            let others = view.nodes.keys().filter(|ip| !local(ip));
            Arc::new(Ring::new(kind, others.map(|ip| ip.to_string())))
        } else {
            self.ring.clone()
        };
        let kept = self
            .earlier
            .iter()
            .filter(|(_, replaced)| now.duration_since(*replaced) < KEPT)
            .take(KEPT_RINGS - 1)
            .cloned();
        RingAt {
            generation: view.generation,
            ring: Arc::new(ring),
            checksum,
            epoch: self.epoch + 1,
            earlier: std::iter::once((replaced, now)).chain(kept).collect(),
        }
    }

    /// The owners of the key at `point` on the rings replaced less than `within` ago
    /// that `keep` accepts, each once.
    pub(super) fn earlier_owners(
        &self,
        point: KeyPoint,
        within: Duration,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut owners: Vec<String> = Vec::new();
        for (ring, replaced) in &self.earlier {
            if replaced.elapsed() >= within {
                break;
            }
            if let Some(owner) = ring.owner_at(point).filter(|owner| keep(owner)) {
                if !owners.iter().any(|known| known == owner) {
                    owners.push(owner.to_owned());
                }
            }
        }
        owners
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::topology::Member;

    fn view(generation: u64, ips: &[&str]) -> View {
        View {
            nodes: ips
                .iter()
                .map(|ip| (Arc::from(*ip), Member::from_ip(*ip)))
                .collect::<BTreeMap<_, _>>(),
            generation,
            ..View::default()
        }
    }

    /// A key that `owner` owns among `ips`.
    fn key_of(kind: RingKind, owner: &str, ips: &[&str]) -> KeyPoint {
        let ring = Ring::new(kind, ips.iter().copied());
        (0..)
            .map(|i| kind.point(&format!("k{i}")))
            .find(|point| ring.owner_at(*point) == Some(owner))
            .expect("a key")
    }

    #[tokio::test(start_paused = true)]
    async fn earlier_owners_are_those_of_every_ring_replaced_within_the_window() {
        for kind in [RingKind::Hashring, RingKind::Xxh3] {
            earlier_owners_of(kind).await;
        }
    }

    async fn earlier_owners_of(kind: RingKind) {
        let me = |ip: &str| ip == "10.0.0.9";
        let others = |ip: &str| !me(ip);
        let window = Duration::from_secs(30);
        let first = RingAt::empty(kind).next(&view(1, &["10.0.0.1", "10.0.0.9"]), me);
        let point = key_of(kind, "10.0.0.9", &["10.0.0.1", "10.0.0.9"]);
        assert_eq!(
            first.earlier_owners(point, window, others),
            ["10.0.0.1"],
            "before any ring: the ring without this node"
        );

        // A new generation with the same servers changes nothing.
        let same = first.next(&view(2, &["10.0.0.1", "10.0.0.9"]), me);
        assert_eq!((same.epoch, same.generation), (first.epoch, 2));
        assert_eq!(same.earlier_owners(point, window, others), ["10.0.0.1"]);

        // Owned by 2 while this node was out, then by this node again: 2 and 1 may both
        // still run it.
        let out = same.next(&view(3, &["10.0.0.2"]), me);
        let back = out.next(&view(4, &["10.0.0.2", "10.0.0.9"]), me);
        assert_eq!(back.epoch, first.epoch + 2);
        let point = key_of(kind, "10.0.0.9", &["10.0.0.2", "10.0.0.9"]);
        let owners = back.earlier_owners(point, window, others);
        assert_eq!(
            owners.first().map(String::as_str),
            Some("10.0.0.2"),
            "the latest first"
        );
        assert!(owners.contains(&"10.0.0.1".to_owned()), "{owners:?}");

        // Rings replaced longer ago than the window are not asked.
        tokio::time::advance(window).await;
        assert!(back.earlier_owners(point, window, others).is_empty());
    }
}
