//! What happens to the calls waiting on a peer that leaves the cluster. Leaving the
//! endpoints is not dying: a pod is removed from them while it is still alive (at once
//! with the core Endpoints API, once its object is gone with slices, or in an app that
//! never calls `close()`), and it would answer within milliseconds. So a peer that drops
//! out of the reachable set is asked first: a ping on its multiplexed connection, and
//! while it answers, its calls wait for their replies (probed again every departure
//! timeout, until none waits). A peer that does not answer within the departure timeout,
//! or whose connection has ended, is gone: its calls fail, as possibly delivered. One
//! that cannot be pinged (a 0.5.1 pod, over HTTP/1.1) has the departure timeout to
//! answer them. A peer that comes back meanwhile keeps its calls.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Inner;
use crate::messaging::Liveness;

/// Watches the reachable set for peers that leave, and fails their calls once each is
/// shown gone ([`depart`]).
pub(super) async fn watch(inner: Arc<Inner>) {
    let mut views = inner.topology.subscribe();
    // The views themselves are kept, not copies of their sets: a change to a topology of
    // thousands of endpoints costs no allocation here.
    let mut before = views.borrow_and_update().clone();
    // The departures under way, each cancelled when its peer comes back or it ends.
    let mut leaving: FxHashMap<Arc<str>, CancellationToken> = FxHashMap::default();
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            changed = views.changed() => if changed.is_err() { return },
        }
        let now = views.borrow_and_update().clone();
        for back in now.reachable.difference(&before.reachable) {
            if let Some(departure) = leaving.remove(back) {
                debug!(target: "node_swarm_kb::messages", "{back} is back: its calls go on");
                departure.cancel();
            }
        }
        leaving.retain(|_, departure| !departure.is_cancelled());
        // This node's own IPs have no calls waiting on them.
        let peers_gone = before
            .reachable
            .difference(&now.reachable)
            .filter(|ip| !inner.local_ips.contains(&***ip));
        for gone in peers_gone {
            let departure = CancellationToken::new();
            leaving.insert(gone.clone(), departure.clone());
            tokio::spawn(depart(inner.clone(), gone.clone(), departure));
        }
        before = now;
    }
}

/// Fails the calls waiting on `ip`, which left the reachable set, once it is shown gone;
/// nothing if `back` is cancelled first (it came back).
async fn depart(inner: Arc<Inner>, ip: Arc<str>, back: CancellationToken) {
    let client = &inner.client;
    let timeout = client.config().departure_timeout;
    let gone = async {
        loop {
            match client.probe(&ip, timeout).await {
                Liveness::Alive if client.has_calls(&ip) => {
                    debug!(target: "node_swarm_kb::messages", "{ip} left but answers: its calls wait");
                    tokio::time::sleep(timeout).await;
                }
                Liveness::Alive => return "it answers, and no call waits on it",
                Liveness::Silent => return "it does not answer: the calls waiting on it fail",
                Liveness::Unknown => {
                    tokio::time::sleep(timeout).await;
                    return "the calls it did not answer in time fail";
                }
            }
        }
    };
    let outcome = tokio::select! {
        () = back.cancelled() => return,
        () = inner.cancel.cancelled() => return,
        outcome = gone => outcome,
    };
    back.cancel();
    debug!(target: "node_swarm_kb::messages", "{ip} left: {outcome}");
    if let Some(token) = ip
        .parse()
        .ok()
        .and_then(|addr| inner.peers.lock().expect("not poisoned").remove(&addr))
    {
        token.cancel();
    }
    client.forget(&ip);
}
