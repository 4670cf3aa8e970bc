//! Running executions: the state shared by the engine and its spawned executions, one
//! call of a handler (panics caught), and the spawned futures that drive a serialized
//! task's busy period or a non-serialized call.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::queue::{deliver, Outcome, Queue, Waiter};
use super::{TaskError, TaskHandler, TaskOptions, TaskPanic, LOG_TARGET};
use crate::local::LoopThread;
use crate::stats::Histogram;

/// What the engine handle and its executions share.
pub(super) struct Shared<A, R, E> {
    pub(super) registry: RwLock<Registry<A, R, E>>,
    pub(super) on_panic: fn(TaskPanic) -> E,
    pub(super) runtime: Option<Handle>,
    /// Executions started on this loop's thread run there ([`crate::local`]).
    pub(super) home: Option<Arc<dyn LoopThread>>,
    /// Set by `close`: `exec` answers `Closed`.
    pub(super) closed: AtomicBool,
    /// Spawned executions not yet finished (a serialized busy period counts once).
    pub(super) active: AtomicUsize,
    /// Woken when `active` drops to 0 after `closed` is set.
    pub(super) idle: Notify,
    /// Cancelled when `close`'s grace runs out: executions are dropped.
    pub(super) shutdown: CancellationToken,
}

pub(super) type Registry<A, R, E> = HashMap<String, Arc<Task<A, R, E>>>;

/// One registered task.
pub(super) struct Task<A, R, E> {
    pub(super) name: String,
    pub(super) handler: TaskHandler<A, R, E>,
    pub(super) options: TaskOptions,
    pub(super) queue: Mutex<Queue<A, R, E>>,
    /// Woken when a serialized execution ends, for whoever waits for a key's executions
    /// to end ([`super::Tasks::until_idle`]).
    pub(super) settled: Notify,
    /// Executions in flight of a non-serialized task.
    pub(super) concurrent: AtomicUsize,
    pub(super) counts: Counts,
}

/// [`super::TaskCounts`], as they are counted.
#[derive(Default)]
pub(super) struct Counts {
    /// Executions that ended well, and those that failed: read apart, `executed` would
    /// not always be at least `failed`.
    succeeded: AtomicU64,
    failed: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) moved: AtomicU64,
    pub(super) queue_full: AtomicU64,
    durations: Histogram,
}

impl Counts {
    pub(super) fn read(&self) -> super::TaskCounts {
        let read = |counter: &AtomicU64| counter.load(Relaxed);
        let failed = read(&self.failed);
        super::TaskCounts {
            executed: read(&self.succeeded) + failed,
            failed,
            timed_out: read(&self.timed_out),
            retried: read(&self.retried),
            moved: read(&self.moved),
            queue_full: read(&self.queue_full),
            durations: self.durations.read(),
        }
    }
}

/// No code panics while holding one of our locks, but a poisoned lock must not take the
/// engine down either.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<A, R, E> Shared<A, R, E> {
    /// Resolves once no execution is active.
    pub(super) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl<A, R: Clone, E: Clone> Task<A, R, E> {
    /// Calls the handler once and awaits it, turning a panic into a failure.
    async fn run(&self, args: A, on_panic: fn(TaskPanic) -> E) -> Outcome<R, E> {
        let started = Instant::now();
        debug!(target: LOG_TARGET, "Executing task {}", self.name);
        let result = match panic::catch_unwind(AssertUnwindSafe(|| (self.handler)(args))) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(payload) => Err(payload),
        };
        let took = started.elapsed();
        let ms = took.as_millis();
        self.counts.durations.record(took);
        let outcome = match result {
            Ok(Ok(_)) => &self.counts.succeeded,
            _ => &self.counts.failed,
        };
        outcome.fetch_add(1, Relaxed);
        match result {
            Ok(Ok(value)) => {
                debug!(target: LOG_TARGET, "Task {} succeeded in {ms} ms", self.name);
                Ok(value)
            }
            Ok(Err(error)) => {
                debug!(target: LOG_TARGET, "Task {} failed in {ms} ms", self.name);
                Err(TaskError::Failed(error))
            }
            Err(payload) => {
                let message = match payload.downcast::<String>() {
                    Ok(message) => *message,
                    Err(payload) => match payload.downcast::<&'static str>() {
                        Ok(message) => (*message).to_owned(),
                        Err(_) => "unknown panic payload".to_owned(),
                    },
                };
                let panic = TaskPanic {
                    task: self.name.clone(),
                    message,
                };
                warn!(target: LOG_TARGET, "{panic} (after {ms} ms)");
                Err(TaskError::Failed(on_panic(panic)))
            }
        }
    }
}

/// One spawned execution (for a serialized task: one busy period). Counts itself as
/// active while alive; dropped unfinished (shutdown, or a runtime going away), it clears
/// the task's queue so no caller waits on an execution that will never come.
pub(super) struct Execution<A, R, E> {
    shared: Arc<Shared<A, R, E>>,
    task: Arc<Task<A, R, E>>,
    finished: bool,
    /// A run of its handler started and has not ended: dropped now, its callers are told
    /// it may have run.
    running: bool,
}

impl<A, R, E> Execution<A, R, E> {
    pub(super) fn begin(shared: Arc<Shared<A, R, E>>, task: Arc<Task<A, R, E>>) -> Self {
        shared.active.fetch_add(1, SeqCst);
        if !task.options.serialized {
            task.concurrent.fetch_add(1, SeqCst);
        }
        Self {
            shared,
            task,
            finished: false,
            running: false,
        }
    }
}

impl<A, R, E> Drop for Execution<A, R, E> {
    fn drop(&mut self) {
        if !self.task.options.serialized {
            self.task.concurrent.fetch_sub(1, SeqCst);
        } else if !self.finished {
            let (running, rest) = lock(&self.task.queue).abandon();
            debug!(target: LOG_TARGET, "Execution of task {} abandoned", self.task.name);
            if self.running {
                for waiter in running {
                    let _ = waiter.send(Err(TaskError::Abandoned));
                }
            }
            drop(rest);
            self.task.settled.notify_waiters();
        }
        if self.shared.active.fetch_sub(1, SeqCst) == 1 && self.shared.closed.load(SeqCst) {
            self.shared.idle.notify_waiters();
        }
    }
}

/// Runs a serialized task's executions until its queue is empty.
pub(super) async fn drive<A, R: Clone, E: Clone>(mut execution: Execution<A, R, E>, mut args: A) {
    let shutdown = execution.shared.shutdown.clone();
    let on_panic = execution.shared.on_panic;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        execution.running = true;
        let outcome = tokio::select! {
            biased;
            outcome = execution.task.run(args, on_panic) => outcome,
            () = shutdown.cancelled() => return,
        };
        execution.running = false;
        let (waiters, next) = lock(&execution.task.queue).settle();
        // Once idle, the queue may at once belong to a new execution: hands off.
        execution.finished = next.is_none();
        execution.task.settled.notify_waiters();
        deliver(waiters, outcome);
        match next {
            Some(next) => args = next,
            None => return,
        }
        // Let others run between back-to-back executions.
        tokio::task::yield_now().await;
    }
}

/// Runs one execution of a non-serialized task for its single caller.
pub(super) async fn run_alone<A, R: Clone, E: Clone>(
    execution: Execution<A, R, E>,
    args: A,
    waiter: Waiter<R, E>,
) {
    let shutdown = execution.shared.shutdown.clone();
    // Polled first after the grace ran out: it never started, and its caller hears so.
    if shutdown.is_cancelled() {
        return;
    }
    let outcome = tokio::select! {
        biased;
        outcome = execution.task.run(args, execution.shared.on_panic) => outcome,
        () = shutdown.cancelled() => Err(TaskError::Abandoned),
    };
    let _ = waiter.send(outcome);
}
