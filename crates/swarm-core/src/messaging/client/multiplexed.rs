//! Sends over the multiplexed transport: the connection to a peer that offered it,
//! opened on demand, and what a call's outcome on it means for its sender (a request
//! the peer never read goes again, a peer that refused the transport gets HTTP/1.1).

use super::*;

fn resending(peer: SocketAddr) {
    debug!(target: "node_swarm_kb::messages", "{peer} never read a request (it went away, or the connection ended first): sending it again");
}

/// What a call's outcome on a multiplexed connection means for its sender; `None` when
/// it is to be sent again.
pub(super) fn settled(
    peer: SocketAddr,
    outcome: Outcome,
    timeout: Duration,
) -> Option<Result<Reply, SendError>> {
    let ip = || peer.ip().to_string();
    Some(match outcome {
        Outcome::Reply(reply) => Ok(reply),
        Outcome::Resend => {
            resending(peer);
            return None;
        }
        Outcome::NotOurs | Outcome::NoAnswer => return None,
        Outcome::Unreachable(reason) => Err(SendError::Unreachable { ip: ip(), reason }),
        Outcome::Failed(reason) => Err(SendError::Failed { ip: ip(), reason }),
        Outcome::TimedOut => Err(SendError::Timeout {
            ip: ip(),
            ms: timeout.as_millis(),
        }),
        Outcome::Left => Err(SendError::Left { ip: ip() }),
    })
}

impl Inner {
    /// Sends over the peer's multiplexed connection if it has one, HTTP/1.1 otherwise.
    pub(super) async fn deliver(
        self: &Arc<Self>,
        unsent: Unsent,
        gone: &CancellationToken,
    ) -> Result<Reply, SendError> {
        let peer = unsent.peer;
        let mut resent = 0;
        loop {
            // A request the peer's connection never took (a new one still being made, or
            // one it ended before reading) is not sent again once the peer is gone: it
            // was never delivered. On a connection it accepted, forgetting the peer
            // settles each call as what it is.
            if gone.is_cancelled() {
                return Err(never_reached(peer));
            }
            let Some(conn) = self.multiplexed(peer) else {
                // The connection ends the call when `gone` is cancelled, saying whether
                // it took the request.
                return self.over_http(&unsent, gone).await;
            };
            // `None`: it closed meanwhile; a new one is opened.
            let Some(call) = conn
                .call(
                    &unsent.encoded,
                    unsent.meta.query().as_deref(),
                    &unsent.payload,
                    self.config.auth.as_deref().map(|a| (a, peer)),
                )
                .await
            else {
                continue;
            };
            let outcome = call.outcome();
            tokio::pin!(outcome);
            let outcome = tokio::select! {
                outcome = &mut outcome => outcome,
                // Gone while its connection drains, say (the one `forget` ends is the
                // newest): ended here, each call settles as what it is.
                () = gone.cancelled() => {
                    conn.abandon();
                    outcome.await
                }
            };
            match outcome {
                // Never read by the peer: sent again, on a new connection, a few times.
                Outcome::Resend if resent < RESENDS => {
                    resending(peer);
                    resent += 1;
                }
                Outcome::Resend => {
                    return Err(SendError::Unreachable {
                        ip: peer.ip().to_string(),
                        reason: format!("closed {RESENDS} connections before reading the request"),
                    })
                }
                Outcome::NotOurs => {
                    debug!(target: "node_swarm_kb::messages", "{peer} refused the multiplexed transport: HTTP/1.1 to it");
                    self.lock_routes().insert(peer, Route::Http { retry: None });
                }
                Outcome::NoAnswer => {
                    // A pod of ours too busy to answer in time is asked again later.
                    let retry = Instant::now() + self.config.connect_timeout * PREFACE_RETRY;
                    debug!(target: "node_swarm_kb::messages", "{peer} did not answer the multiplexed transport's preface in time: HTTP/1.1 to it for now");
                    self.lock_routes()
                        .insert(peer, Route::Http { retry: Some(retry) });
                }
                outcome => {
                    if let Some(result) = settled(peer, outcome, self.config.request_timeout) {
                        return result;
                    }
                }
            }
        }
    }

    /// The open multiplexed connection to `peer`, opened now if it offered the transport.
    pub(super) fn multiplexed(&self, peer: SocketAddr) -> Option<Arc<mux::Conn>> {
        if !self.config.multiplex {
            return None;
        }
        let mut routes = self.lock_routes();
        match routes.get(&peer) {
            route if over_http(route) => None,
            Some(Route::Mux(conn)) if conn.is_open() => Some(conn.clone()),
            route => {
                let offer = match route {
                    Some(Route::Offered(offer)) => *offer,
                    Some(Route::Mux(conn)) => conn.offer(),
                    _ => mux::Offer::default(),
                };
                let dial = self.dial(peer);
                let conn = mux::Conn::open(
                    async move { dial.await.map(TokioIo::into_inner) },
                    self.config.connect_timeout,
                    self.config.request_timeout,
                    self.config.event_loop.clone(),
                    offer,
                    self.transports.get().cloned(),
                    self.config.rings.clone(),
                );
                routes.insert(peer, Route::Mux(conn.clone()));
                Some(conn)
            }
        }
    }

    /// Notes that `peer` offers the multiplexed transport, unless it is in use already.
    pub(super) fn offered(&self, peer: SocketAddr, offer: mux::Offer) {
        let mut routes = self.lock_routes();
        // A peer that refused the transport keeps HTTP/1.1 until it leaves the cluster.
        if routes.get(&peer).is_none() {
            debug!(target: "node_swarm_kb::messages", "{peer} offers the multiplexed transport");
            routes.insert(peer, Route::Offered(offer));
        }
    }
}
