//! Per-task execution: serialization, de-duplicated triggers, queue limits and timeouts.
//!
//! This is the part of `tasks.exec` that runs on the node owning a task (docs/compat.md §4);
//! routing a call to its owner is the swarm's job. The engine is generic over the
//! argument (`A`), result (`R`) and error (`E`) types, so the addon plugs JavaScript
//! handlers in and tests plug closures in.
//!
//! Per task name, following 0.5.1:
//! - `serialized: false`: every call is its own execution, run at once, concurrently.
//! - serialized: one execution at a time over a FIFO queue of entries; an entry holds the
//!   arguments of the call that created it and the callers waiting for it (`queue.rs` is
//!   that state machine). When the running execution settles,
//!   its callers get the outcome and the next entry starts.
//! - Creating an entry while `max_queue_length` entries wait fails at once with
//!   [`TaskError::QueueFull`]; the running execution is not counted, and a call that joins
//!   an execution never creates an entry.
//! - [`SingleTrigger::Join`]: a call joins the running execution, else `queue[0]`. The queue
//!   advances in the same critical section that settles an execution, so an entry only
//!   waits while another runs: in practice a `Join` call joins the running execution.
//! - [`SingleTrigger::Next`]: a call never joins the running execution; it joins `queue[0]`
//!   or creates it, so a burst during a run produces exactly one more run, after it.
//! - `timeout` runs per caller from the moment of its call: its future resolves
//!   [`TaskError::TimedOut`], while the handler is not cancelled and keeps its slot until it
//!   settles. It applies to non-serialized calls too.
//! - `close(grace)` lets what runs and waits finish, for at most `grace`; then the
//!   callers of executions that never started get [`TaskError::Closed`] (they did not
//!   run), and those of the executions running then [`TaskError::Abandoned`] (they may
//!   have run: a handler cannot be stopped).
//! - A handler that panics (when called or while polled) is a failure like any other; the
//!   panic becomes an `E` through the mapper given at construction ([`Tasks::new`] uses
//!   `E: From<TaskPanic>`, [`Tasks::with_panic_mapper`] takes any `fn(TaskPanic) -> E`).
//!
//! Executions are spawned, never driven by a caller: a caller may drop its future (timeout,
//! cancellation) and the execution still runs to completion and advances the queue. One
//! spawned Tokio task drives a whole busy period of a serialized task (it takes the next
//! entry itself), so an uncontended call costs one spawn; callers wait on a oneshot each,
//! and no lock is held across an await.
//!
//! Logs go to `tracing` at debug level, target `node_swarm_kb::tasks`.

mod engine;
mod execution;
#[cfg(test)]
mod home_tests;
mod queue;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use engine::Tasks;

/// The `tracing` target of this module's logs.
pub const LOG_TARGET: &str = "node_swarm_kb::tasks";

/// `singleTrigger` of 0.5.1: `false`, `true` or `'N'`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SingleTrigger {
    /// `false`: every call creates an entry of its own.
    #[default]
    Off,
    /// `true`: join the running execution, else the first queued entry.
    Join,
    /// `'N'`: never join the running execution; join the first queued entry, else create it.
    Next,
}

impl From<bool> for SingleTrigger {
    fn from(join: bool) -> Self {
        if join {
            Self::Join
        } else {
            Self::Off
        }
    }
}

/// The options of one registered task, with 0.5.1's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOptions {
    /// Per-caller deadline, from the moment of the call (default 30 s).
    pub timeout: Duration,
    /// One execution at a time, queued (default `true`).
    pub serialized: bool,
    /// How calls share executions (default [`SingleTrigger::Off`]).
    pub single_trigger: SingleTrigger,
    /// Queued entries allowed behind the running execution (default 20).
    pub max_queue_length: usize,
}

/// As a user writes them: `timeout 30000 ms, serialized, singleTrigger false, maxQueueLength 20`.
impl std::fmt::Display for TaskOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let single_trigger = match self.single_trigger {
            SingleTrigger::Off => "false",
            SingleTrigger::Join => "true",
            SingleTrigger::Next => "'N'",
        };
        write!(
            f,
            "timeout {} ms, {}, singleTrigger {single_trigger}, maxQueueLength {}",
            self.timeout.as_millis(),
            if self.serialized {
                "serialized"
            } else {
                "not serialized"
            },
            self.max_queue_length
        )
    }
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            serialized: true,
            single_trigger: SingleTrigger::Off,
            max_queue_length: 20,
        }
    }
}

/// What a handler returns: a boxed, sendable future.
pub type TaskFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// A task handler: called once per execution with the arguments of the entry.
pub type TaskHandler<A, R, E> = Arc<dyn Fn(A) -> TaskFuture<R, E> + Send + Sync>;

/// Why `exec` did not return the handler's result.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TaskError<E> {
    /// The task is not registered here (carries the name).
    #[error("No such task")]
    NoSuchTask(String),
    /// The queue already holds `max_queue_length` entries (carries the name).
    #[error("Max execution queue size reached for task {0}")]
    QueueFull(String),
    /// The caller's deadline passed; the execution itself goes on.
    #[error("operation timed out")]
    TimedOut,
    /// The handler failed (or panicked); its error, as is.
    #[error("{0}")]
    Failed(E),
    /// The engine is closing or closed: the call's execution did not start.
    #[error("Task engine is closed")]
    Closed,
    /// The engine closed while the call's execution ran, its grace over: the handler
    /// may have run to its end, or may still be running.
    #[error("the task engine closed while the task ran: it may have run")]
    Abandoned,
}

/// A handler panicked; turned into the handler error type `E` by the engine's mapper.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("Task {task} panicked: {message}")]
pub struct TaskPanic {
    /// The task's name.
    pub task: String,
    /// The panic message, when the payload was a string.
    pub message: String,
}

impl From<TaskPanic> for String {
    fn from(panic: TaskPanic) -> Self {
        panic.to_string()
    }
}

/// A snapshot of one task's state, for tests and debugging.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// Executions in flight: 0 or 1 when serialized, any number otherwise.
    pub running: usize,
    /// Entries waiting behind the running execution (always 0 when not serialized).
    pub queued: usize,
    /// Callers still waiting on the running and queued executions (callers that gave up
    /// are not counted). When not serialized, one per running execution.
    pub waiters: usize,
}

/// What happened to one task's calls on this node since it started (cumulative).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskCounts {
    /// Executions that ended, whatever their outcome.
    pub executed: u64,
    /// Executions whose handler failed (or panicked).
    pub failed: u64,
    /// Calls admitted (or held) here whose caller, here or on another node, stopped
    /// waiting at the task's timeout.
    pub timed_out: u64,
    /// Calls sent again to the key's owner after one that did not run (see
    /// [`crate::swarm`]).
    pub retried: u64,
    /// Calls this node did not run since the key belongs to another node now.
    pub moved: u64,
    /// Calls refused here since the queue was full (`max_queue_length`).
    pub queue_full: u64,
    /// How long the executions that ended took.
    pub durations: crate::stats::Durations,
}

/// What [`Tasks::note`] counts, besides what the engine sees itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskNote {
    Retried,
    Moved,
    /// A caller's time ran out before the engine admitted its call.
    TimedOut,
    /// A call held before the engine saw it was refused: the queue was full.
    QueueFull,
}
