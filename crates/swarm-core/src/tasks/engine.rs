//! The engine handle: the registry of tasks, admission of calls, spawning, shutdown.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::execution::{drive, lock, run_alone, Counts, Execution, Shared, Task};
use super::queue::{Admission, Outcome, Queue};
use super::{
    TaskCounts, TaskError, TaskHandler, TaskNote, TaskOptions, TaskPanic, TaskStats, LOG_TARGET,
};
use crate::local::{self, LoopThread};

/// The task engine of one node: a cheap, cloneable handle (`Arc` inside), `Send + Sync`.
///
/// `exec` spawns executions on the Tokio runtime it is called from or, when called
/// outside one, on the runtime that was current when the engine was created; it panics
/// if there is neither. With a home loop ([`Tasks::at_home`]) it starts them on that
/// loop's thread instead: at once when called there, else through
/// [`LoopThread::start_there`].
pub struct Tasks<A, R, E> {
    shared: Arc<Shared<A, R, E>>,
}

/// A call's admission: where its outcome will come from, its deadline (`None`: a
/// timeout too large to represent, so none), and its task.
type Admitted<A, R, E> = Result<
    (
        oneshot::Receiver<Outcome<R, E>>,
        Option<Instant>,
        Arc<Task<A, R, E>>,
    ),
    TaskError<E>,
>;

impl<A, R, E> Tasks<A, R, E>
where
    A: Send + 'static,
    R: Clone + Send + 'static,
    E: Clone + Send + From<TaskPanic> + 'static,
{
    /// An engine whose handler panics become `E::from(TaskPanic)`.
    pub fn new() -> Self {
        Self::with_panic_mapper(E::from)
    }
}

impl<A, R, E> Default for Tasks<A, R, E>
where
    A: Send + 'static,
    R: Clone + Send + 'static,
    E: Clone + Send + From<TaskPanic> + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<A, R, E> Tasks<A, R, E>
where
    A: Send + 'static,
    R: Clone + Send + 'static,
    E: Clone + Send + 'static,
{
    /// An engine whose handler panics become `on_panic(TaskPanic)`, for error types that
    /// cannot implement `From<TaskPanic>`.
    pub fn with_panic_mapper(on_panic: fn(TaskPanic) -> E) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry: RwLock::default(),
                on_panic,
                runtime: Handle::try_current().ok(),
                home: None,
                closed: AtomicBool::new(false),
                active: AtomicUsize::new(0),
                idle: Notify::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// This engine, with the executions started on `home`'s thread run there (see
    /// [`crate::local`]).
    pub fn at_home(mut self, home: Option<Arc<dyn LoopThread>>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("a new engine, not shared yet")
            .home = home;
        self
    }

    /// Registers a task; `false` when the name is taken (the first registration stays).
    pub fn register(
        &self,
        name: &str,
        handler: TaskHandler<A, R, E>,
        options: TaskOptions,
    ) -> bool {
        let mut registry = self
            .shared
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = registry.get(name) {
            // The facade registers every task again once the node runs (for those made
            // meanwhile): the same options are no news.
            if known.options != options {
                debug!(target: LOG_TARGET, "Task {name} is already registered with other options: {}; {} ignored", known.options, options);
            }
            return false;
        }
        debug!(target: LOG_TARGET, "Registering task {name}: {options}");
        let task = Task {
            name: name.to_owned(),
            handler,
            options,
            queue: Mutex::new(Queue::new()),
            settled: Notify::new(),
            concurrent: AtomicUsize::new(0),
            counts: Counts::default(),
        };
        registry.insert(name.to_owned(), Arc::new(task));
        true
    }

    pub fn is_registered(&self, name: &str) -> bool {
        self.task(name).is_some()
    }

    pub fn options(&self, name: &str) -> Option<TaskOptions> {
        self.task(name).map(|task| task.options.clone())
    }

    /// A snapshot of the task's state; `None` when not registered.
    pub fn stats(&self, name: &str) -> Option<TaskStats> {
        let task = self.task(name)?;
        if task.options.serialized {
            return Some(lock(&task.queue).stats());
        }
        let running = task.concurrent.load(SeqCst);
        Some(TaskStats {
            running,
            queued: 0,
            waiters: running,
        })
    }

    /// What happened to task `name`'s calls so far; `None` when not registered.
    pub fn counts(&self, name: &str) -> Option<TaskCounts> {
        self.task(name).map(|task| task.counts.read())
    }

    /// The names of the registered tasks.
    pub fn names(&self) -> Vec<String> {
        let registry = self
            .shared
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        registry.keys().cloned().collect()
    }

    /// Counts what became of a call of task `name` outside the engine.
    pub fn note(&self, name: &str, note: TaskNote) {
        if let Some(task) = self.task(name) {
            let counter = match note {
                TaskNote::Retried => &task.counts.retried,
                TaskNote::Moved => &task.counts.moved,
                TaskNote::TimedOut => &task.counts.timed_out,
                TaskNote::QueueFull => &task.counts.queue_full,
            };
            counter.fetch_add(1, Relaxed);
        }
    }

    /// `true` once `close` has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(SeqCst)
    }

    /// Runs the task `name` for the routing `key` with `args` as its options say, and
    /// resolves with the outcome of the execution this call created or joined.
    ///
    /// The call is admitted (and its execution started or queued) now, not when the
    /// future is first polled; dropping the future gives up waiting, nothing else.
    pub fn exec(
        &self,
        name: &str,
        key: &str,
        args: A,
    ) -> impl Future<Output = Outcome<R, E>> + Send + 'static {
        let admitted = self.admit(name, key, args);
        async move {
            let (rx, deadline, task) = admitted?;
            let received = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, rx).await.map_err(|_| {
                    // The execution goes on, and its end is logged: this says why its
                    // caller has no outcome.
                    debug!(target: LOG_TARGET, "Task {} timed out for its caller", task.name);
                    task.counts.timed_out.fetch_add(1, Relaxed);
                    TaskError::TimedOut
                })?,
                None => rx.await,
            };
            // A waiter dropped without an answer: its execution never started (shutdown).
            received.unwrap_or(Err(TaskError::Closed))
        }
    }

    /// Resolves once no execution of serialized task `name` created by a call for `key`
    /// runs or waits (at once for a task that is not serialized, or not registered).
    pub fn until_idle(&self, name: &str, key: &str) -> impl Future<Output = ()> + Send + 'static {
        let task = self.task(name).filter(|task| task.options.serialized);
        let key = key.to_owned();
        async move {
            let Some(task) = task else { return };
            loop {
                let settled = task.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                if !lock(&task.queue).holds(&key) {
                    return;
                }
                settled.await;
            }
        }
    }

    /// Stops accepting calls (`exec` answers `Closed`), then waits until every running and
    /// queued execution has finished, for at most `grace`; past it, the remaining
    /// executions are dropped: the callers of those that never started get `Closed`, those
    /// of the running ones `Abandoned`. Safe to call twice.
    pub async fn close(&self, grace: Duration) {
        let shared = &self.shared;
        if !shared.closed.swap(true, SeqCst) {
            debug!(target: LOG_TARGET, "Closing tasks ({} executions active)", shared.active.load(SeqCst));
        }
        if tokio::time::timeout(grace, shared.idle()).await.is_err() {
            debug!(
                target: LOG_TARGET,
                "Grace period over, dropping {} executions",
                shared.active.load(SeqCst)
            );
            shared.shutdown.cancel();
            shared.idle().await;
        }
        debug!(target: LOG_TARGET, "Tasks closed");
    }

    fn task(&self, name: &str) -> Option<Arc<Task<A, R, E>>> {
        let registry = self
            .shared
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        registry.get(name).cloned()
    }

    fn admit(&self, name: &str, key: &str, args: A) -> Admitted<A, R, E> {
        let called = Instant::now();
        if self.is_closed() {
            return Err(TaskError::Closed);
        }
        let task = self
            .task(name)
            .ok_or_else(|| TaskError::NoSuchTask(name.to_owned()))?;
        let deadline = called.checked_add(task.options.timeout);
        let (tx, rx) = oneshot::channel();
        if !task.options.serialized {
            self.start(task.clone(), |execution| run_alone(execution, args, tx));
            return Ok((rx, deadline, task));
        }
        let options = &task.options;
        let admission = lock(&task.queue).admit(
            options.single_trigger,
            options.max_queue_length,
            key,
            args,
            tx,
        );
        match admission {
            Admission::Start(args) => {
                self.start(task.clone(), |execution| drive(execution, args));
            }
            Admission::JoinedRunning => {
                debug!(target: LOG_TARGET, "Task {name} joins the running execution");
            }
            Admission::JoinedQueued => {
                debug!(target: LOG_TARGET, "Task {name} joins the queued execution");
            }
            Admission::Queued(queue) => {
                debug!(target: LOG_TARGET, "Queuing task {name} (queue={queue})");
            }
            Admission::Full => {
                debug!(target: LOG_TARGET, "Queue of task {name} is full");
                task.counts.queue_full.fetch_add(1, Relaxed);
                return Err(TaskError::QueueFull(name.to_owned()));
            }
        }
        Ok((rx, deadline, task))
    }

    /// Spawns an execution, unless `close` came in between: then the execution is dropped
    /// unstarted and its callers get `Closed`.
    fn start<F, Fut>(&self, task: Arc<Task<A, R, E>>, execute: F)
    where
        F: FnOnce(Execution<A, R, E>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let execution = Execution::begin(self.shared.clone(), task);
        // `begin` counted the execution before this check, and `close` sets `closed`
        // before it looks at the count: one of the two sees the other.
        if self.is_closed() {
            return;
        }
        let future = execute(execution);
        let runtime = Handle::try_current()
            .ok()
            .or_else(|| self.shared.runtime.clone())
            .expect("Tasks::exec called outside a Tokio runtime");
        match &self.shared.home {
            Some(home) if home.is_current() => local::start_here(future, runtime),
            // Its handler answers on the home thread, which then drives it on at once,
            // in the same turn (a serialized task's next run follows there): started on
            // the runtime, each run would wake a thread of the runtime, then the home.
            Some(home) => home.start_there(Box::pin(future), runtime),
            None => drop(runtime.spawn(future)),
        }
    }
}

impl<A, R, E> Clone for Tasks<A, R, E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<A, R, E> fmt::Debug for Tasks<A, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self
            .shared
            .registry
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Tasks")
            .field("tasks", &registry.keys().collect::<Vec<_>>())
            .field("active", &self.shared.active.load(SeqCst))
            .field("closed", &self.shared.closed.load(SeqCst))
            .finish()
    }
}
