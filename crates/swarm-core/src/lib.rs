//! The engine of `node-swarm-kb`, without Node.
//!
//! - [`topology`]: who is in the cluster (Kubernetes EndpointSlices or Endpoints, or
//!   standalone), the member set, its change events and the master.
//! - [`ring`]: the consistent-hash ring that places task keys on members
//!   (`hashring@3`-compatible).
//! - [`messaging`]: the HTTP wire protocol of 0.5.1: server, pooled client, codec.
//! - [`tasks`]: per-task queues with serialization, de-duplicated triggers, queue limits
//!   and timeouts.
//! - [`stats`]: what a node counts.
//! - [`swarm`]: wires the parts into one running node.
mod errors;
pub mod local;
pub mod messaging;
pub mod ring;
pub mod stats;
pub mod swarm;
pub mod tasks;
pub mod topology;
