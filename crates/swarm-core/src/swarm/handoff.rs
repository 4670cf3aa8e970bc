//! The hand-off of task keys between pods of 1.x (`docs/handoff.md`). When a key moves
//! from P to R, R holds the calls of a serialized task for it until P has let go of it:
//! R asks P to release the task key on its first call after the change, and starts the
//! held calls, in the order they came, once P answers, P is gone, or the task's timeout
//! has passed. P, asked, refuses new calls for the task key (remote ones with 421, so
//! their callers take them to R; its own wait for its view to catch up) and answers once
//! it neither runs nor queues an execution for it.
//!
//! Tasks that are not serialized are not handed off: they run concurrently by design.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::future::{BoxFuture, FutureExt};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use tokio::{sync::oneshot, time::Instant};
use tracing::debug;

use super::{
    rings::view_checksum, ExecError, Inner, RingAt, SendError, TaskArgs, TaskOptions, TaskValue,
};
use crate::{
    messaging::{Inbound, Payload, Reply},
    ring::KeyPoint,
    tasks::TaskNote,
};

/// The topic of a request to release a task key.
pub(super) const RELEASE_TOPIC: &str = "_release";

/// How long a pod that released a task key waits, for a call of its own, for its view
/// to show the key's new owner.
const VIEW_WAIT: Duration = Duration::from_secs(1);

type TaskKey = (String, String);

/// A call held until its task key is released: admits it (`true`) or refuses it as not
/// run, the key having been handed on meanwhile (`false`); dropped when its caller
/// stopped waiting.
type Held = Box<dyn FnOnce(bool) + Send>;

type Execution = BoxFuture<'static, Result<TaskValue, ExecError>>;

/// The refusal of a call for a task key handed to another pod: not run, to be routed
/// again.
fn moved(name: &str, key: &str) -> ExecError {
    ExecError::Moved(format!(
        "task {name} for key {key} was handed to another node"
    ))
}

fn ready(outcome: Result<TaskValue, ExecError>) -> Execution {
    Box::pin(std::future::ready(outcome))
}

/// What a pod keeps of hand-offs.
#[derive(Default)]
pub(super) struct Handoffs {
    /// The ring epoch `released` is for.
    epoch: u64,
    /// Task keys released to this pod since its ring last changed: keys by task, so
    /// that the check of every call allocates nothing.
    released: FxHashMap<String, FxHashSet<String>>,
    /// Task keys whose release this pod asked for, with the calls held meanwhile.
    asked: FxHashMap<TaskKey, Vec<Held>>,
    /// Task keys this pod released to another: the asker's ring checksum, and until when
    /// the mark holds at most (`None`: while the release is being answered).
    given: FxHashMap<TaskKey, (u64, Option<Instant>)>,
}

/// Where a call for a task key stands.
enum Gate {
    Open(TaskArgs),
    /// Released to another pod, whose view this pod's has not caught up with.
    Given(TaskArgs),
    /// Held until its release: what its execution will come through.
    Held(oneshot::Receiver<Execution>),
    Full,
}

/// Who made a call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// This pod's application: a call given away waits for the view to show the new
    /// owner, then goes there.
    Here,
    /// Another pod: a call given away is refused at once (421), and its caller routes
    /// it again.
    Peer,
}

#[derive(Deserialize)]
struct ReleaseRequest {
    task: String,
    key: String,
    ring: String,
    /// The kind of the asker's ring ([`crate::ring::RingKind::name`]).
    kind: String,
}

impl Inner {
    /// A call of task `name` whose caller's time ran out while it was held here.
    fn timed_out(&self, name: &str) -> Result<TaskValue, ExecError> {
        self.tasks.note(name, TaskNote::TimedOut);
        Err(ExecError::TimedOut)
    }

    /// Runs task `name` for `key` on this pod, once no other pod may run it for that key
    /// (see the module's doc): admitted now when nothing stands in the way, as
    /// [`super::Tasks::exec`] admits.
    pub(super) fn exec_local(
        self: &Arc<Self>,
        name: &str,
        key: &str,
        args: TaskArgs,
        caller: Caller,
    ) -> Execution {
        let options = match self.tasks.options(name) {
            Some(options) if options.serialized => options,
            _ => return self.admit(name, key, args),
        };
        match self.gate(name, key, args, &options) {
            Gate::Open(args) => self.admit(name, key, args),
            Gate::Full => {
                debug!(target: "node_swarm_kb::tasks", "Queue of task {name} is full (calls held for the key's hand-off)");
                self.tasks.note(name, TaskNote::QueueFull);
                ready(Err(ExecError::QueueFull(name.to_owned())))
            }
            Gate::Held(execution) => {
                let (this, name) = (self.clone(), name.to_owned());
                Box::pin(async move {
                    let held = async { execution.await.map_err(|_| ExecError::Closed)?.await };
                    tokio::time::timeout(options.timeout, held)
                        .await
                        .unwrap_or_else(|_| this.timed_out(&name))
                })
            }
            Gate::Given(_) if caller == Caller::Peer => ready(Err(moved(name, key))),
            Gate::Given(args) => {
                let (this, name, key) = (self.clone(), name.to_owned(), key.to_owned());
                let deadline = Instant::now().checked_add(options.timeout);
                Box::pin(async move {
                    this.until_caught_up().await;
                    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        return this.timed_out(&name);
                    }
                    if !this.owns(&this.ring(), this.ring_kind().point(&key)) {
                        debug!(target: "node_swarm_kb::tasks", "Task {name} for key {key}: released here, to be routed again");
                        return Err(moved(&name, &key));
                    }
                    this.exec_local(&name, &key, args, Caller::Here).await
                })
            }
        }
    }

    /// Where a call for `(name, key)` stands.
    fn gate(
        self: &Arc<Self>,
        name: &str,
        key: &str,
        args: TaskArgs,
        options: &TaskOptions,
    ) -> Gate {
        let ring = self.ring();
        let point = self.ring_kind().point(key);
        let owns = self.owns(&ring, point);
        let mut handoffs = self.handoffs.lock().expect("not poisoned");
        if !handoffs.given.is_empty() && handoffs.is_given(name, key, owns, ring.checksum) {
            return Gate::Given(args);
        }
        if !owns {
            return Gate::Open(args);
        }
        if handoffs.epoch != ring.epoch {
            handoffs.epoch = ring.epoch;
            handoffs.released.clear();
        }
        if handoffs.is_released(name, key) {
            return Gate::Open(args);
        }
        let task_key = (name.to_owned(), key.to_owned());
        if let Some(waiting) = handoffs.asked.get(&task_key) {
            if waiting.len() >= options.max_queue_length {
                return Gate::Full;
            }
        } else {
            let owners =
                ring.earlier_owners(point, options.timeout, |ip| !self.local_ips.contains(ip));
            if owners.is_empty() {
                return Gate::Open(args);
            }
            let asking = self
                .clone()
                .ask(owners, task_key.clone(), ring, options.timeout);
            drop(self.runtime.spawn(asking));
        }
        let (tell, execution) = oneshot::channel();
        let (this, admitted) = (self.clone(), task_key.clone());
        let held: Held = Box::new(move |admit| {
            if tell.is_closed() {
                return;
            }
            let execution = if admit {
                this.admit(&admitted.0, &admitted.1, args)
            } else {
                ready(Err(moved(&admitted.0, &admitted.1)))
            };
            let _ = tell.send(execution);
        });
        handoffs.asked.entry(task_key).or_default().push(held);
        Gate::Held(execution)
    }

    /// Whether `ring` names this pod the owner of the key at `point`.
    pub(super) fn owns(&self, ring: &RingAt, point: KeyPoint) -> bool {
        ring.ring
            .owner_at(point)
            .is_some_and(|ip| self.local_ips.contains(ip))
    }

    /// Admits a call to its task's queue now.
    fn admit(&self, name: &str, key: &str, args: TaskArgs) -> Execution {
        let admitted = self.tasks.exec(name, key, args);
        Box::pin(admitted.map(|outcome| outcome.map_err(ExecError::from)))
    }

    /// Asks `owners`, who owned the key on the rings before, to release the task key,
    /// then starts the calls held for it: once each has answered, is gone, or let the
    /// task's timeout pass.
    async fn ask(
        self: Arc<Self>,
        owners: Vec<String>,
        (name, key): TaskKey,
        ring: Arc<RingAt>,
        timeout: Duration,
    ) {
        let body = serde_json::json!({
            "task": name,
            "key": key,
            "ring": format!("{:016x}", ring.checksum),
            "kind": self.ring_kind().name(),
        })
        .to_string();
        let deadline = Instant::now().checked_add(timeout);
        let this = &self;
        let asked = owners.iter().map(|owner| {
            let (name, key, body) = (&name, &key, &body);
            async move { this.until_released(owner, name, key, body, deadline).await }
        });
        let released = futures_util::future::join_all(asked)
            .await
            .into_iter()
            .all(|released| released);
        let task_key = (name, key);
        // Admitted outside the lock (an admission may run the task at once), in the order
        // they came; calls that come meanwhile join the list, so none overtakes them.
        // Each is checked again: the key may have been handed on meanwhile.
        loop {
            let current = self.ring();
            let (held, admit) = {
                let mut handoffs = self.handoffs.lock().expect("not poisoned");
                let held = handoffs
                    .asked
                    .get_mut(&task_key)
                    .map(std::mem::take)
                    .unwrap_or_default();
                if held.is_empty() {
                    handoffs.asked.remove(&task_key);
                    if released && handoffs.epoch == ring.epoch {
                        handoffs.release(task_key);
                    }
                    self.drained.notify_waiters();
                    return;
                }
                let owns = self.owns(&current, self.ring_kind().point(&task_key.1));
                let given = handoffs.given.contains_key(&task_key);
                (held, released && owns && !given)
            };
            if !admit {
                debug!(target: "node_swarm_kb::tasks", "Task {} for key {}: {} held calls not run here", task_key.0, task_key.1, held.len());
            }
            for held in held {
                held(admit);
            }
        }
    }

    /// Asks `owner` to release `(name, key)` until it says so, is gone, or `deadline`
    /// passes (false then: calls held meanwhile time out, not run).
    async fn until_released(
        &self,
        owner: &str,
        name: &str,
        key: &str,
        body: &str,
        deadline: Option<Instant>,
    ) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            debug!(target: "node_swarm_kb::tasks", "Asking {owner} to release task {name} for key {key}");
            let asked = self.send(owner, RELEASE_TOPIC, Payload::Json(body.to_owned().into()));
            let answer = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, asked).await.ok(),
                None => Some(asked.await),
            };
            let released = match &answer {
                // Released; or a pod that does not know `_release` (0.5.1), which is
                // never asked anything else.
                Some(Ok(reply)) => matches!(reply.status, 200 | 204),
                // Nothing listens there, or it left the cluster and did not answer a
                // probe: it runs nothing.
                Some(Err(SendError::Unreachable { .. } | SendError::Left { .. })) => true,
                _ => false,
            };
            let said = match &answer {
                Some(Ok(reply)) => format!("answered {}", reply.status),
                Some(Err(error)) => error.to_string(),
                None => "no answer within the task's timeout".to_owned(),
            };
            debug!(target: "node_swarm_kb::tasks", "Task {name} for key {key} from {owner}: {said}");
            if released {
                return true;
            }
            if answer.is_none()
                || deadline.is_some_and(|deadline| Instant::now() + backoff >= deadline)
            {
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Waits for this pod's view to change, at most [`VIEW_WAIT`].
    fn until_caught_up(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut views = self.topology.subscribe();
        let generation = views.borrow().generation;
        async move {
            let changed = views.wait_for(|view| view.generation > generation);
            let _ = tokio::time::timeout(VIEW_WAIT, changed).await;
        }
    }

    /// Answers another pod's request to release a task key: refuses new calls for it
    /// from now on, and answers once none runs or waits here, held ones included (they
    /// are refused as not run once this pod's own hand-off of the key ends). An asker
    /// on another kind of ring gets its answer without the refusals: its views never
    /// match this pod's, so the mark would last the task's timeout, and no guarantee
    /// holds between two rings anyway.
    pub(super) async fn answer_release(&self, message: Inbound) -> Reply {
        let body = message.payload.body();
        let Ok(request) = serde_json::from_slice::<ReleaseRequest>(body) else {
            return Reply::error(400, "a release names a task, a key and a ring");
        };
        let Some(options) = self.tasks.options(&request.task) else {
            return Reply::ok(Payload::Text("released".into()));
        };
        let ring = u64::from_str_radix(&request.ring, 16).unwrap_or_default();
        let task_key = (request.task, request.key);
        if request.kind == self.ring_kind().name() {
            let mut handoffs = self.handoffs.lock().expect("not poisoned");
            // Read under the lock: a view that comes after this ends the mark
            // ([`follow_views`]), one that came before is the one compared.
            let current = view_checksum(self.ring_kind(), &self.topology.view());
            handoffs.give(task_key.clone(), ring, current);
        }
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let holding = self
                .handoffs
                .lock()
                .expect("not poisoned")
                .asked
                .contains_key(&task_key);
            if !holding {
                break;
            }
            drained.await;
        }
        self.tasks.until_idle(&task_key.0, &task_key.1).await;
        let until = Instant::now().checked_add(options.timeout);
        if let Some(mark) = self
            .handoffs
            .lock()
            .expect("not poisoned")
            .given
            .get_mut(&task_key)
        {
            mark.1 = until.or(mark.1);
        }
        debug!(target: "node_swarm_kb::tasks", "Released task {} for key {} to {}", task_key.0, task_key.1, message.from);
        Reply::ok(Payload::Text("released".into()))
    }
}

impl Handoffs {
    fn is_released(&self, name: &str, key: &str) -> bool {
        self.released
            .get(name)
            .is_some_and(|keys| keys.contains(key))
    }

    fn release(&mut self, (name, key): TaskKey) {
        self.released.entry(name).or_default().insert(key);
    }

    /// Marks `task_key` released to a pod whose ring has `checksum`, until its release
    /// has been answered; marks that have run out go. No mark when this pod's ring,
    /// `current`, is the asker's already: its view names the asker the owner.
    fn give(&mut self, task_key: TaskKey, checksum: u64, current: u64) {
        let now = Instant::now();
        self.given
            .retain(|_, (_, until)| until.is_none_or(|until| now < until));
        if checksum != current {
            self.given.insert(task_key, (checksum, None));
        }
    }

    /// Ends the marks of keys released to pods whose ring is `checksum`, that of this
    /// pod's new view: its view has caught up with theirs. Kept, such a mark would hold
    /// back this pod's calls of a key that comes back to it later (its asker leaves)
    /// until the mark runs out, as if the asker still owned it.
    fn caught_up(&mut self, checksum: u64) {
        if !self.given.is_empty() {
            self.given.retain(|_, (asker, _)| *asker != checksum);
        }
    }

    /// Whether `(name, key)` was released to another pod and still is: while this pod's
    /// view still names it the owner, has not caught up with the asker's, and the
    /// task's timeout since has not passed.
    fn is_given(&mut self, name: &str, key: &str, owns: bool, checksum: u64) -> bool {
        let task_key = (name.to_owned(), key.to_owned());
        let Some(&(asker, until)) = self.given.get(&task_key) else {
            return false;
        };
        if owns && asker != checksum && until.is_none_or(|until| Instant::now() < until) {
            return true;
        }
        self.given.remove(&task_key);
        false
    }
}

/// Ends release marks as this pod's view catches up with their askers', each view as it
/// comes: not only when a call of the key comes (`Handoffs::is_given`), which may be
/// after the view moved on again. Views that follow each other faster than this task
/// wakes are seen as the last one.
pub(super) async fn follow_views(inner: Arc<Inner>) {
    let mut views = inner.topology.subscribe();
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            changed = views.changed() => if changed.is_err() { return },
        }
        let checksum = view_checksum(inner.ring_kind(), &views.borrow_and_update());
        inner
            .handoffs
            .lock()
            .expect("not poisoned")
            .caught_up(checksum);
    }
}

#[cfg(test)]
#[path = "handoff_tests.rs"]
mod tests;
