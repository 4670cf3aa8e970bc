//! Pods tell each other which ring places their keys: every HTTP/1.1 request and reply
//! of ours names it, and so does the multiplexed handshake (`messaging`). A node on a
//! ring other than the default one also asks each peer as it joins (`_ring`), so that
//! pods that never exchange a message still find out; a peer on another ring, or a pod
//! that names none (0.5.1, 1.0.0), is reported to the host once (`ring::PeerRings`).

use std::{collections::HashSet, net::IpAddr, sync::Arc, time::Duration};

use tracing::debug;

use super::{Host, Inner};
use crate::{
    messaging::Payload,
    ring::{PeerRings, RingKind, Said},
    topology::TopologyHandle,
};

/// The topic of a request that asks a peer its ring; answered by the engine with it.
pub(super) const RING_TOPIC: &str = "_ring";
/// How many times a peer is asked, at most, and how long after a failed ask.
const ASKS: u32 = 3;
const ASK_AGAIN: Duration = Duration::from_secs(1);

/// This node's ring, reporting peers on another to `host`. Silence is a pod of 0.5.1
/// only from a pod in the `topology`: any other server a node sends to names no ring.
pub(super) fn reporting(
    own: RingKind,
    host: Arc<dyn Host>,
    topology: TopologyHandle,
) -> Arc<PeerRings> {
    Arc::new(PeerRings::new(
        own,
        Box::new(move |peer: IpAddr, said: &Said| {
            if !said.named() && !topology.view().nodes.contains_key(&*peer.to_string()) {
                return false;
            }
            let named = if said.named() {
                ""
            } else {
                " (it names none: 0.5.1 or 1.0.0)"
            };
            debug!(target: "node_swarm_kb::tasks", "Pod {peer} places keys by ring {}{named}, this pod by {own}: they disagree on the owners of keys", said.ring());
            host.rings_differ(peer, said, own);
            true
        }),
    ))
}

/// On a ring other than the default, asks each peer that joins for its ring, until the
/// node closes: what the peer answers (its reply's header, or none from a pod of 0.5.1)
/// is what tells. A peer that does not answer is asked again a few times; one that
/// leaves and comes back is asked again.
pub(super) async fn ask_peers(inner: Arc<Inner>) {
    if inner.ring_kind() == RingKind::default() {
        return;
    }
    let mut views = inner.topology.subscribe();
    let mut asked: HashSet<Arc<str>> = HashSet::new();
    loop {
        let joined: Vec<Arc<str>> = {
            let view = views.borrow_and_update();
            asked.retain(|ip| view.nodes.contains_key(ip));
            view.nodes
                .keys()
                .filter(|ip| !inner.local_ips.contains(&***ip) && asked.insert((*ip).clone()))
                .cloned()
                .collect()
        };
        for ip in joined {
            tokio::spawn(ask(inner.clone(), ip));
        }
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            changed = views.changed() => if changed.is_err() { return },
        }
    }
}

/// Asks the peer at `ip` for its ring until it answers, [`ASKS`] times at most, or the
/// node closes.
async fn ask(inner: Arc<Inner>, ip: Arc<str>) {
    for _ in 0..ASKS {
        let asked = inner.client.send(&ip, RING_TOPIC, Payload::Empty);
        let answered = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            sent = asked => sent.is_ok(),
        };
        if answered {
            return;
        }
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            () = tokio::time::sleep(ASK_AGAIN) => {}
        }
    }
}
