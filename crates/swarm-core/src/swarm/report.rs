//! A node's state and counters in one snapshot ([`Swarm::stats`]), as the addon hands it
//! to JavaScript (JSON, in the names of the facade's `swarm.stats()`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Swarm;
use crate::stats::{Durations, MessageStats};
use crate::tasks::{TaskCounts, TaskStats};

/// What [`Swarm::stats`] returns.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub topology: TopologyStats,
    pub messages: MessageStats,
    /// By task name, the tasks registered here.
    pub tasks: BTreeMap<String, TaskReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TopologyStats {
    /// Counts the views this node applied.
    pub generation: u64,
    pub ring: RingStats,
    pub nodes: NodeCounts,
    /// Topology events emitted so far, by event name.
    pub changes: BTreeMap<&'static str, u64>,
    pub kubernetes: KubernetesStats,
}

#[derive(Clone, Debug, Serialize)]
pub struct RingStats {
    /// Which ring it is: `hashring` or `xxh3`.
    pub kind: &'static str,
    /// The ring's digest (of its kind and servers), 16 hexadecimal digits: equal on pods
    /// with the same view and the same kind of ring.
    pub checksum: String,
    /// Counts the changes of the ring's servers.
    pub epoch: u64,
}

/// The endpoints of the current view that can answer: ready (the nodes), and draining
/// (serving while not ready, as a terminating pod does).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct NodeCounts {
    pub ready: usize,
    pub draining: usize,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct KubernetesStats {
    /// The resource watched, once chosen (`None` standalone).
    pub resource: Option<&'static str>,
    /// `failing` from an error of the source until it answers again, else `ok`.
    pub state: &'static str,
    /// Errors of the source (the Kubernetes API, or its settings), each outage once.
    pub errors: u64,
}

/// One task's state and counts ([`TaskStats`], [`TaskCounts`]).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReport {
    pub running: usize,
    pub queued: usize,
    pub waiters: usize,
    pub executed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub retried: u64,
    pub moved: u64,
    pub queue_full: u64,
    pub durations: Durations,
}

impl TaskReport {
    fn of(stats: TaskStats, counts: TaskCounts) -> TaskReport {
        TaskReport {
            running: stats.running,
            queued: stats.queued,
            waiters: stats.waiters,
            executed: counts.executed,
            failed: counts.failed,
            timed_out: counts.timed_out,
            retried: counts.retried,
            moved: counts.moved,
            queue_full: counts.queue_full,
            durations: counts.durations,
        }
    }
}

impl Swarm {
    /// This node's state and counters, now.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let view = inner.topology.view();
        let ring = inner.ring();
        let in_flight_in = inner.serving.get().map_or(0, |(slots, max)| {
            max.saturating_sub(slots.available_permits())
        });
        let (errors, failing) = inner.counters.source_errors();
        let tasks = inner.tasks.names().into_iter().filter_map(|name| {
            let stats = inner.tasks.stats(&name)?;
            let counts = inner.tasks.counts(&name)?;
            Some((name, TaskReport::of(stats, counts)))
        });
        Stats {
            topology: TopologyStats {
                generation: view.generation,
                ring: RingStats {
                    kind: ring.ring.kind().name(),
                    checksum: format!("{:016x}", ring.checksum),
                    epoch: ring.epoch,
                },
                nodes: NodeCounts {
                    ready: view.nodes.len(),
                    draining: view.reachable.len().saturating_sub(view.nodes.len()),
                },
                changes: inner.counters.changes(),
                kubernetes: KubernetesStats {
                    resource: inner.topology.source(),
                    state: if failing { "failing" } else { "ok" },
                    errors,
                },
            },
            messages: inner.counters.messages(in_flight_in),
            tasks: tasks.collect(),
        }
    }
}
