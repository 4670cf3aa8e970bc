//! The rings peers say they place keys by, and the report of a peer whose ring is not
//! this node's: two kinds of rings in one cluster disagree on the owners of keys, so a
//! task could run on two pods at once or a key's calls lose their order. Each peer is
//! reported once per ring it says it uses; the node keeps routing by its own ring.

use std::{net::IpAddr, sync::Mutex};

use rustc_hash::FxHashSet;

use super::RingKind;

/// What a peer said of its ring.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Said {
    /// Nothing: a pod of 0.5.1 or 1.0.0, which place keys as `hashring@3` does.
    Nothing,
    /// A kind of ring this version knows.
    Kind(RingKind),
    /// A name this version does not know, as said (visible ASCII, cut short).
    Unknown(Box<str>),
}

/// The longest unknown name kept.
const NAME_MAX: usize = 32;

impl Said {
    /// What a peer said with `name` (a header's value), or without one.
    pub fn of(name: Option<&[u8]>) -> Said {
        let Some(name) = name else {
            return Said::Nothing;
        };
        let name = name.trim_ascii();
        match std::str::from_utf8(name).ok().and_then(|n| n.parse().ok()) {
            Some(kind) => Said::Kind(kind),
            None => Said::Unknown(
                name.iter()
                    .take(NAME_MAX)
                    .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                    .collect(),
            ),
        }
    }

    /// Whether a peer that said this places keys as a node on `own` does.
    fn agrees_with(&self, own: RingKind) -> bool {
        match self {
            Said::Nothing => own == RingKind::Hashring,
            Said::Kind(kind) => *kind == own,
            Said::Unknown(_) => false,
        }
    }

    /// The name of the peer's ring: `hashring` for a peer that names none.
    pub fn ring(&self) -> &str {
        match self {
            Said::Nothing => RingKind::Hashring.name(),
            Said::Kind(kind) => kind.name(),
            Said::Unknown(name) => name,
        }
    }

    /// Whether the peer named its ring (pods of 0.5.1 and 1.0.0 do not).
    pub fn named(&self) -> bool {
        !matches!(self, Said::Nothing)
    }
}

/// Who is told of a peer on another ring; it answers whether it took it (one it does not
/// take, such as a server that is not a pod, may be told again later).
pub type Tell = Box<dyn Fn(IpAddr, &Said) -> bool + Send + Sync>;

/// How many peers and rings are remembered as told at most: past it, no more is told
/// (requests name rings unchecked, and a flood of sources must not grow the set).
const TOLD_MAX: usize = 4096;

/// This node's ring, and the peers already reported.
pub struct PeerRings {
    own: RingKind,
    told: Mutex<FxHashSet<(IpAddr, Said)>>,
    tell: Tell,
}

impl std::fmt::Debug for PeerRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerRings")
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}

impl PeerRings {
    pub fn new(own: RingKind, tell: Tell) -> PeerRings {
        PeerRings {
            own,
            told: Mutex::default(),
            tell,
        }
    }

    /// The ring this node places keys by, which it tells its peers.
    pub fn own(&self) -> RingKind {
        self.own
    }

    /// `peer` said `said` of its ring: told, when it differs and was not told before.
    pub fn met(&self, peer: IpAddr, said: Said) {
        if said.agrees_with(self.own) {
            return;
        }
        let told_of = (peer, said);
        let first = {
            let mut told = self.told.lock().expect("not poisoned");
            // Looked up first: a peer told of already costs no copy of what it said.
            !told.contains(&told_of) && told.len() < TOLD_MAX && told.insert(told_of.clone())
        };
        if first && !(self.tell)(peer, &told_of.1) {
            self.told.lock().expect("not poisoned").remove(&told_of);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    type Told = Arc<Mutex<Vec<(IpAddr, Said)>>>;

    fn told(own: RingKind) -> (PeerRings, Told) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        // Takes what it is told but of 10.0.0.9, which it does not know yet.
        let tell: Tell = Box::new(move |peer: IpAddr, said: &Said| {
            let known = peer != IpAddr::from([10, 0, 0, 9]);
            if known {
                sink.lock().unwrap().push((peer, said.clone()));
            }
            known
        });
        (PeerRings::new(own, tell), log)
    }

    #[test]
    fn a_peer_on_another_ring_is_told_once_per_ring_it_says() {
        let (rings, log) = told(RingKind::Xxh3);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        rings.met(a, Said::of(Some(b"xxh3")));
        rings.met(a, Said::of(Some(b"hashring")));
        rings.met(a, Said::of(Some(b"hashring")));
        rings.met(b, Said::of(None));
        rings.met(b, Said::of(None));
        rings.met(b, Said::of(Some(b"maglev-2")));
        rings.met(IpAddr::from([10, 0, 0, 9]), Said::of(None));
        assert_eq!(
            rings.told.lock().unwrap().len(),
            3,
            "not taken, so not kept"
        );
        assert_eq!(
            *log.lock().unwrap(),
            [
                (a, Said::Kind(RingKind::Hashring)),
                (b, Said::Nothing),
                (b, Said::Unknown("maglev-2".into()))
            ]
        );
    }

    #[test]
    fn a_pod_of_0_5_1_agrees_with_the_default_ring() {
        let (rings, log) = told(RingKind::Hashring);
        let peer = "10.0.0.1".parse().unwrap();
        rings.met(peer, Said::of(None));
        rings.met(peer, Said::of(Some(b"hashring")));
        assert!(log.lock().unwrap().is_empty());
        rings.met(peer, Said::of(Some(b"xxh3")));
        assert_eq!(*log.lock().unwrap(), [(peer, Said::Kind(RingKind::Xxh3))]);
    }
}
