//! What a node counts, for [`crate::swarm::Swarm::stats`]: counters cumulative since the
//! node started, written where things happen as relaxed atomics (no lock and no
//! allocation on a message's path), and read at any time. Nothing is counted per peer,
//! key or topic, whose number has no bound; task names are registered, so bounded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::messaging::{Reply, SendError};
use crate::topology::TopologyEvent;

mod transports;

pub use transports::{Connections, Direction, Open, Transport, Transports};

/// How a request this node sent ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A reply with a success status.
    Ok,
    /// A reply with an error status: the peer refused it, or its handler failed.
    Refused,
    /// No reply within the request timeout; it may have been delivered.
    TimedOut,
    /// No connection could take it: it was never delivered.
    Unreachable,
    /// The exchange broke after it started; it may have been delivered.
    Failed,
    /// The peer left the cluster before answering.
    Left,
    /// Its caller stopped waiting before any outcome (a timeout of its own).
    Abandoned,
}

impl Sent {
    const ALL: [Sent; 7] = [
        Sent::Ok,
        Sent::Refused,
        Sent::TimedOut,
        Sent::Unreachable,
        Sent::Failed,
        Sent::Left,
        Sent::Abandoned,
    ];

    /// The outcome's name in [`MessageStats::sent`] and in metrics' labels.
    pub fn name(self) -> &'static str {
        match self {
            Sent::Ok => "ok",
            Sent::Refused => "refused",
            Sent::TimedOut => "timeout",
            Sent::Unreachable => "unreachable",
            Sent::Failed => "failed",
            Sent::Left => "left",
            Sent::Abandoned => "abandoned",
        }
    }

    /// The outcome of a send's result.
    pub fn of(result: &Result<Reply, SendError>) -> Sent {
        match result {
            Ok(reply) if reply.is_success() => Sent::Ok,
            Ok(_) => Sent::Refused,
            Err(SendError::Timeout { .. }) => Sent::TimedOut,
            Err(SendError::Unreachable { .. } | SendError::BadAddress(_)) => Sent::Unreachable,
            Err(SendError::Failed { .. }) => Sent::Failed,
            Err(SendError::Left { .. }) => Sent::Left,
        }
    }
}

/// The statuses the server refuses requests with before dispatching them, in the order
/// of [`MessageStats::refused`]; others are counted as `other`.
const REFUSALS: [u16; 6] = [400, 401, 405, 413, 431, 503];

/// The upper bounds of [`Histogram`]'s buckets, in seconds: Prometheus' defaults, with
/// the sub-millisecond ones a message between pods takes.
pub const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Durations counted by bucket, as a Prometheus histogram keeps them.
#[derive(Default)]
pub struct Histogram {
    /// By bucket of [`BOUNDS`], then past the last bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BOUNDS.partition_point(|&bound| bound < seconds);
        self.buckets[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// The counts at or under each bound (cumulative), their number and their sum.
    pub fn read(&self) -> Durations {
        let mut below = 0;
        let mut cumulative = Vec::with_capacity(BOUNDS.len());
        for bucket in &self.buckets[..BOUNDS.len()] {
            below += bucket.load(Relaxed);
            cumulative.push(below);
        }
        Durations {
            le: BOUNDS.to_vec(),
            counts: cumulative,
            count: below + self.buckets[BOUNDS.len()].load(Relaxed),
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's figures: `counts[i]` took at most `le[i]` seconds; `count` in all,
/// `sum` seconds in all.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Durations {
    pub le: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// The counters of one node.
#[derive(Default)]
pub struct Counters {
    sent: AtomicU64,
    /// Connections and exchanges by transport, counted by the client and the server.
    transports: Arc<Transports>,
    settled: [AtomicU64; Sent::ALL.len()],
    bytes_sent: AtomicU64,
    received: AtomicU64,
    bytes_received: AtomicU64,
    refused: [AtomicU64; REFUSALS.len() + 1],
    topology_changes: [AtomicU64; Change::ALL.len()],
    kubernetes_errors: AtomicU64,
    /// The source failed and has not recovered yet.
    failing: AtomicBool,
}

/// A request on its way: settle it with its outcome. Dropped unsettled (its caller
/// stopped waiting), it counts as [`Sent::Abandoned`].
#[must_use = "a request in flight is settled with its outcome"]
pub struct InFlight {
    counters: Arc<Counters>,
    outcome: Sent,
}

impl InFlight {
    pub fn settle(mut self, result: &Result<Reply, SendError>) {
        self.outcome = Sent::of(result);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.settled[self.outcome as usize].fetch_add(1, Relaxed);
    }
}

impl Counters {
    /// A request of `bytes` bytes of body is sent.
    pub fn sending(self: &Arc<Self>, bytes: usize) -> InFlight {
        self.sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
        InFlight {
            counters: self.clone(),
            outcome: Sent::Abandoned,
        }
    }

    /// What the client and the server count connections and exchanges in.
    pub fn transports(&self) -> Arc<Transports> {
        self.transports.clone()
    }

    /// A request of `bytes` bytes of body came in, for a handler (or the task engine).
    pub fn received(&self, bytes: usize) {
        self.received.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Relaxed);
    }

    /// A request was refused with `status` before it was dispatched.
    pub fn refused(&self, status: u16) {
        let slot = REFUSALS
            .iter()
            .position(|&s| s == status)
            .unwrap_or(REFUSALS.len());
        self.refused[slot].fetch_add(1, Relaxed);
    }

    /// A topology event was emitted.
    pub fn topology_event(&self, event: &TopologyEvent) {
        if let Some(change) = Change::of(event) {
            self.topology_changes[change as usize].fetch_add(1, Relaxed);
        }
        match event {
            TopologyEvent::Error(_) => {
                self.kubernetes_errors.fetch_add(1, Relaxed);
                self.failing.store(true, Relaxed);
            }
            TopologyEvent::Recovered => self.failing.store(false, Relaxed),
            _ => {}
        }
    }

    /// The message counters, read now; `in_flight_in` from the server.
    pub fn messages(&self, in_flight_in: usize) -> MessageStats {
        let read = |counter: &AtomicU64| counter.load(Relaxed);
        let sent = read(&self.sent);
        let settled: BTreeMap<&'static str, u64> = Sent::ALL
            .iter()
            .map(|&outcome| (outcome.name(), read(&self.settled[outcome as usize])))
            .collect();
        let done: u64 = settled.values().sum();
        let refused = REFUSALS
            .iter()
            .map(|status| status.to_string())
            .chain(["other".to_owned()])
            .zip(self.refused.iter().map(read))
            .collect();
        MessageStats {
            sent: settled,
            in_flight: InFlightStats {
                out: sent.saturating_sub(done),
                r#in: in_flight_in as u64,
            },
            received: read(&self.received),
            bytes: Bytes {
                sent: read(&self.bytes_sent),
                received: read(&self.bytes_received),
            },
            refused,
            connections: self.transports.connections(),
            durations: self.transports.durations(),
        }
    }

    /// The topology's changes by kind.
    pub fn changes(&self) -> BTreeMap<&'static str, u64> {
        Change::ALL
            .iter()
            .map(|&change| {
                let count = self.topology_changes[change as usize].load(Relaxed);
                (change.name(), count)
            })
            .collect()
    }

    /// The source's errors so far (an outage counts once), and whether it fails now.
    pub fn source_errors(&self) -> (u64, bool) {
        (
            self.kubernetes_errors.load(Relaxed),
            self.failing.load(Relaxed),
        )
    }
}

/// A kind of topology change.
#[derive(Clone, Copy)]
enum Change {
    Added,
    Removed,
    Left,
    Readiness,
    Master,
}

impl Change {
    const ALL: [Change; 5] = [
        Change::Added,
        Change::Removed,
        Change::Left,
        Change::Readiness,
        Change::Master,
    ];

    fn of(event: &TopologyEvent) -> Option<Change> {
        Some(match event {
            TopologyEvent::NodeAdded(_) => Change::Added,
            TopologyEvent::NodeRemoved(_) => Change::Removed,
            TopologyEvent::LocalLeft(_) => Change::Left,
            TopologyEvent::ReadinessChanged(_) => Change::Readiness,
            TopologyEvent::MasterChanged { .. } => Change::Master,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Change::Added => "nodeAdded",
            Change::Removed => "nodeRemoved",
            Change::Left => "localLeft",
            Change::Readiness => "readinessChanged",
            Change::Master => "masterChanged",
        }
    }
}

/// Requests between this node and its peers, whatever their topic: messages, task
/// calls and the hand-off's.
#[derive(Clone, Debug, Serialize)]
pub struct MessageStats {
    /// Requests this node sent that settled, by outcome ([`Sent::name`]).
    pub sent: BTreeMap<&'static str, u64>,
    /// Requests received (their handlers called, or their tasks admitted).
    pub received: u64,
    #[serde(rename = "inFlight")]
    pub in_flight: InFlightStats,
    /// Bytes of the requests' bodies, each way.
    pub bytes: Bytes,
    /// Requests the server refused before dispatching them, by status.
    pub refused: BTreeMap<String, u64>,
    /// Connections open now, each way, by transport ([`Transport::name`]).
    pub connections: Connections,
    /// How long the exchanges of this node's client took, from the request made to its
    /// outcome, by transport.
    pub durations: BTreeMap<&'static str, Durations>,
}

/// Requests under way: sent and not settled, received and not answered.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct InFlightStats {
    pub out: u64,
    pub r#in: u64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Bytes {
    pub sent: u64,
    pub received: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::Payload;

    #[test]
    fn requests_in_flight_are_those_not_settled_and_outcomes_are_counted_apart() {
        let counters = Arc::new(Counters::default());
        let first = counters.sending(10);
        let second = counters.sending(5);
        let third = counters.sending(1);
        first.settle(&Ok(Reply::ok(Payload::Empty)));
        second.settle(&Err(SendError::Timeout {
            ip: "10.0.0.1".into(),
            ms: 1,
        }));
        let stats = counters.messages(2);
        assert_eq!((stats.in_flight.out, stats.in_flight.r#in), (1, 2));
        assert_eq!((stats.sent["ok"], stats.sent["timeout"]), (1, 1));
        assert_eq!(stats.sent.values().sum::<u64>(), 2);
        assert_eq!(stats.bytes.sent, 16);
        drop(third);
        let stats = counters.messages(0);
        assert_eq!((stats.in_flight.out, stats.sent["abandoned"]), (0, 1));
    }

    #[test]
    fn refusals_are_counted_by_status_and_the_unexpected_as_other() {
        let counters = Counters::default();
        for status in [421, 421, 503, 418] {
            counters.refused(status);
        }
        let refused = counters.messages(0).refused;
        assert_eq!(refused["503"], 1);
        assert_eq!(refused["other"], 3);
        assert_eq!(refused.values().sum::<u64>(), 4, "{refused:?}");
    }
}
