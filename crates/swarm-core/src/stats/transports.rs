//! What the messaging layer counts by transport: the connections open each way, and
//! how long the exchanges over each took. The client and the server hold the same
//! [`Transports`] as the node's [`super::Counters`], which reads it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Durations, Histogram};

/// How requests travel between two pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The multiplexed transport, between pods of this version.
    Multiplexed,
    /// HTTP/1.1, 0.5.1's.
    Http1,
}

impl Transport {
    const ALL: [Transport; 2] = [Transport::Multiplexed, Transport::Http1];

    /// Its name in [`MessageStats`](super::MessageStats) and in metrics' labels.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Multiplexed => "multiplexed",
            Transport::Http1 => "http1",
        }
    }
}

/// Which way a connection goes: accepted by this pod's server, or opened by its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// Connections and exchanges by transport.
#[derive(Default)]
pub struct Transports {
    /// Open connections, by [`Direction`] then [`Transport`].
    open: [[AtomicU64; 2]; 2],
    /// Exchanges this pod's client made, by [`Transport`]: from the request made to its
    /// outcome.
    durations: [Histogram; 2],
}

/// A connection open: counted until dropped.
#[must_use = "a connection is counted while this is held"]
pub struct Open {
    transports: Arc<Transports>,
    direction: Direction,
    transport: Transport,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.transports.open[self.direction as usize][self.transport as usize]
            .fetch_sub(1, Relaxed);
    }
}

impl Transports {
    /// A connection opened, counted for as long as the result is held.
    pub fn opened(self: &Arc<Self>, direction: Direction, transport: Transport) -> Open {
        self.open[direction as usize][transport as usize].fetch_add(1, Relaxed);
        Open {
            transports: self.clone(),
            direction,
            transport,
        }
    }

    /// An exchange over `transport` ended, `took` after its request was made.
    pub fn exchanged(&self, transport: Transport, took: Duration) {
        self.durations[transport as usize].record(took);
    }

    /// The connections open now, each way by transport.
    pub fn connections(&self) -> Connections {
        let by_transport = |direction: Direction| {
            Transport::ALL
                .iter()
                .map(|&t| {
                    (
                        t.name(),
                        self.open[direction as usize][t as usize].load(Relaxed),
                    )
                })
                .collect()
        };
        Connections {
            r#in: by_transport(Direction::In),
            out: by_transport(Direction::Out),
        }
    }

    /// The exchanges' durations, by transport.
    pub fn durations(&self) -> BTreeMap<&'static str, Durations> {
        Transport::ALL
            .iter()
            .map(|&t| (t.name(), self.durations[t as usize].read()))
            .collect()
    }
}

/// Connections open now: accepted (`in`) and opened (`out`), by transport.
#[derive(Clone, Debug, Serialize)]
pub struct Connections {
    pub r#in: BTreeMap<&'static str, u64>,
    pub out: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_while_held_and_exchanges_by_transport() {
        let transports = Arc::new(Transports::default());
        let first = transports.opened(Direction::Out, Transport::Multiplexed);
        let second = transports.opened(Direction::Out, Transport::Multiplexed);
        let accepted = transports.opened(Direction::In, Transport::Http1);
        let open = transports.connections();
        assert_eq!(open.out["multiplexed"], 2);
        assert_eq!(
            (
                open.out["http1"],
                open.r#in["http1"],
                open.r#in["multiplexed"]
            ),
            (0, 1, 0)
        );
        drop((first, accepted));
        let open = transports.connections();
        assert_eq!((open.out["multiplexed"], open.r#in["http1"]), (1, 0));
        drop(second);

        transports.exchanged(Transport::Http1, Duration::from_micros(300));
        let durations = transports.durations();
        assert_eq!(
            (durations["http1"].count, durations["multiplexed"].count),
            (1, 0)
        );
        assert_eq!(durations["http1"].counts[0], 1, "under 0.5 ms");
    }
}
