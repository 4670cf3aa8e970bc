//! The client's pool of idle HTTP/1.1 connections.

use super::*;

/// Idle connections per peer, each with since when, in check-in order: a send takes the
/// most recently used, and one idle [`IDLE`] or more goes.
pub(super) struct Pool<T> {
    idle: Mutex<FxHashMap<SocketAddr, Vec<(T, Instant)>>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(FxHashMap::default()),
        }
    }
}

impl<T> Pool<T> {
    /// The most recently used connection to `peer` that `usable` takes, told how long it
    /// was idle; those passed over, and those idle too long, go to `discard`.
    pub(super) fn check_out(
        &self,
        peer: SocketAddr,
        usable: impl Fn(&T, Duration) -> bool,
        discard: impl Fn(T),
    ) -> Option<T> {
        let mut idle = self.idle.lock().expect("not poisoned");
        let list = idle.get_mut(&peer)?;
        while let Some((conn, since)) = list.pop() {
            let idle_for = since.elapsed();
            if idle_for < IDLE && usable(&conn, idle_for) {
                return Some(conn);
            }
            discard(conn);
        }
        idle.remove(&peer);
        None
    }

    /// Gives `conn` back; those idle too long meanwhile go to `discard`.
    pub(super) fn check_in(&self, peer: SocketAddr, conn: T, discard: impl Fn(T)) {
        let since = Instant::now();
        let mut idle = self.idle.lock().expect("not poisoned");
        let list = idle.entry(peer).or_default();
        // The list is in check-in order, so the connections idle too long are a prefix.
        let stale = list.partition_point(|(_, at)| since.duration_since(*at) >= IDLE);
        list.drain(..stale).for_each(|(conn, _)| discard(conn));
        list.push((conn, since));
    }
}
