//! The types a node is built from and answers with: the [`Host`] the embedding supplies,
//! task arguments, values and failures, the settings, and why a node could not start.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
};

use bytes::Bytes;

use crate::{
    messaging::{Answering, ClientConfig, Inbound, Payload, ServerLimits, Trace},
    ring::{RingKind, Said},
    tasks::{TaskError, TaskOptions},
    topology::{Discovery, KubeSettings, LeaseSettings, TopologyEvent},
};

/// A boxed future, as the [`Host`] returns them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the embedding provides.
pub trait Host: Send + Sync + 'static {
    /// Answers a message that is not a task: with a future, or, for a multiplexed
    /// request, through the responder it may take from the message.
    fn message(&self, message: Inbound) -> Answering;
    /// Runs the handler of task `name`.
    fn run_task(&self, name: &str, args: TaskArgs) -> BoxFuture<Result<TaskValue, TaskFailure>>;
    /// Receives topology events, in order.
    fn event(&self, event: TopologyEvent);
    /// The pod at `peer` places keys by another ring than this node's (`own`): it said
    /// `said`. Told once per peer and ring.
    fn rings_differ(&self, _peer: IpAddr, _said: &Said, _own: RingKind) {}
}

/// Something the host attaches to a task result and wants dropped only when every
/// caller that shares the result has been answered (the JavaScript host keeps the
/// handler's own value alive until then).
pub type Keep = Arc<dyn std::any::Any + Send + Sync>;

/// The arguments of a task call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskArgs {
    /// A JSON array, as tasks travel between nodes, and the trace context of the call.
    Json(Bytes, Option<Trace>),
    /// Arguments the host keeps itself, under this id: a call made on this node, whose
    /// arguments never need to cross the network.
    Local(u32),
}

/// A task's result: the JSON payload remote callers get, and what the host keeps.
#[derive(Clone)]
pub struct TaskValue {
    /// The result, encoded.
    pub payload: Payload,
    /// See [`Keep`].
    pub keep: Option<Keep>,
}

impl TaskValue {
    /// A result without anything kept.
    pub fn new(payload: Payload) -> TaskValue {
        TaskValue {
            payload,
            keep: None,
        }
    }
}

/// A task handler's failure: what its caller is answered.
#[derive(Clone)]
pub struct TaskFailure {
    /// The status a remote caller gets (the error's `statusCode`, or 500).
    pub status: u16,
    /// The error message.
    pub message: String,
    /// See [`Keep`].
    pub keep: Option<Keep>,
}

impl TaskFailure {
    /// A failure without anything kept.
    pub fn new(status: u16, message: impl Into<String>) -> TaskFailure {
        TaskFailure {
            status,
            message: message.into(),
            keep: None,
        }
    }
}

impl PartialEq for TaskFailure {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status && self.message == other.message
    }
}

impl Eq for TaskFailure {}

impl std::fmt::Debug for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFailure")
            .field("status", &self.status)
            .field("message", &self.message)
            .finish()
    }
}

/// Why `exec` failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ExecError {
    #[error("No such task")]
    NoSuchTask,
    #[error("Max execution queue size reached for task {0}")]
    QueueFull(String),
    #[error("operation timed out")]
    TimedOut,
    #[error("{}", .0.message)]
    Failed(TaskFailure),
    #[error("Task {task} execution failed on remote node {ip}: {reason}")]
    Remote {
        task: String,
        ip: String,
        reason: String,
        status: Option<u16>,
    },
    #[error("swarm is closed")]
    Closed,
    /// The key was handed to another node: not run here, to be routed again.
    #[error("{0}")]
    Moved(String),
}

impl From<TaskError<TaskFailure>> for ExecError {
    fn from(error: TaskError<TaskFailure>) -> Self {
        match error {
            TaskError::NoSuchTask(_) => ExecError::NoSuchTask,
            TaskError::QueueFull(name) => ExecError::QueueFull(name),
            TaskError::TimedOut => ExecError::TimedOut,
            TaskError::Failed(failure) => ExecError::Failed(failure),
            TaskError::Closed => ExecError::Closed,
            // Not `Closed`, which a peer's caller takes as "did not run" and sends again.
            TaskError::Abandoned => ExecError::Failed(TaskFailure::new(
                503,
                "swarm closed while the task ran (its grace was over): it may have run",
            )),
        }
    }
}

impl ExecError {
    /// The task's queue had no room: on this node, or on the owner, whose answer is all
    /// that says so (a 0.5.1 owner's too: the same text).
    pub fn queue_full(&self) -> bool {
        match self {
            ExecError::QueueFull(_) => true,
            ExecError::Remote { reason, .. } => {
                reason.starts_with("Max execution queue size reached for task")
            }
            _ => false,
        }
    }
}

/// Where the members come from.
pub enum DiscoveryConfig {
    /// Only this process: `nodes` holds the local IPs.
    Standalone,
    /// The Endpoints or EndpointSlices of a Service, through the Kubernetes API.
    Kubernetes(KubeSettings),
    /// A discovery of the caller's choosing (a test's).
    Custom(Box<dyn Discovery>),
}

/// Settings of a node.
pub struct SwarmConfig {
    /// This process's IPs; the first is the one it serves on when `bind` is unset.
    pub local_ips: Vec<String>,
    /// Where the members come from.
    pub discovery: DiscoveryConfig,
    /// The Lease that elects the master, with Kubernetes discovery; the smallest IP
    /// is master otherwise.
    pub master_lease: Option<LeaseSettings>,
    /// The address the server binds (all interfaces by default).
    pub bind: IpAddr,
    /// The messaging port (0.5.1: 45892); 0 picks a free one.
    pub port: u16,
    /// Whether the node serves messages at all: a standalone node that nobody else can
    /// reach need not (two of them on one machine would fight over the port).
    pub listen: bool,
    /// Limits of the server.
    pub limits: ServerLimits,
    /// Settings of the client (its `port` is the peers' port).
    pub client: ClientConfig,
    /// Tasks registered before the server takes its first request, so a peer never
    /// reaches this node before it knows its tasks.
    pub tasks: Vec<(String, TaskOptions)>,
    /// The ring that places task keys; every pod of the cluster must use the same.
    pub ring: RingKind,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("unable to listen on {addr}: {source}{}", bind_hint(source))]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// The stable code of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            StartError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
                "ERR_SWARM_ADDRESS_IN_USE"
            }
            StartError::Bind { .. } => "ERR_SWARM_LISTEN",
        }
    }
}

/// What to do about a failed bind.
fn bind_hint(source: &std::io::Error) -> &'static str {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process listens there: give this node another messages.port or messages.bind)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (no interface of this machine has that address: check messages.bind)"
        }
        _ => "",
    }
}

impl From<crate::tasks::TaskPanic> for TaskFailure {
    fn from(panic: crate::tasks::TaskPanic) -> Self {
        TaskFailure::new(500, panic.to_string())
    }
}
