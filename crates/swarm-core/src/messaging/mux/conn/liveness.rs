//! Whether the peer of a connection is alive: pings and their pongs (transport level 2),
//! and whether calls still wait on it.

use std::time::Duration;

use tokio::sync::oneshot;

use super::{ping_frame, Conn, Offer, PING};

impl Conn {
    /// Whether calls wait for their reply on the connection.
    pub fn has_calls(&self) -> bool {
        !self.lock().waiting.is_empty()
    }

    /// Whether the peer answers pings.
    pub fn answers_pings(&self) -> bool {
        self.offer.pings
    }

    /// What the peer offered, for the next connection to it.
    pub fn offer(&self) -> Offer {
        self.offer
    }

    /// Asks the peer whether it is alive: true once its pong comes back within `within`;
    /// false when none does, the connection has ended, or the peer does not answer pings
    /// (see [`Conn::answers_pings`]).
    pub async fn ping(&self, within: Duration) -> bool {
        if !self.offer.pings {
            return false;
        }
        let (tx, pong) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            let id = state.next_ping;
            state.next_ping = id.wrapping_add(1);
            state.pongs.insert(id, tx);
            id
        };
        let alive = self.outbox.push(ping_frame(PING, id))
            && tokio::time::timeout(within, pong)
                .await
                .is_ok_and(|pong| pong.is_ok());
        self.lock().pongs.remove(&id);
        alive
    }
}
