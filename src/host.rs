//! The engine's host, backed by JavaScript: a message or a task run becomes a letter
//! with an id in the node's [`Mailbox`], and JavaScript answers through
//! `SwarmNode.reply` / `SwarmNode.taskDone` with that id. A reply never comes back as
//! a promise, so a handler that returns a plain value costs one synchronous call back,
//! and the wake-ups that deliver letters are shared by everything posted meanwhile.

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, RwLock, Weak,
    },
};

use bytes::Bytes;
use napi::{
    bindgen_prelude::{FnArgs, JsValuesTupleIntoVec},
    sys,
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Status,
};
use rustc_hash::FxHashMap;
use serde_json::json;
use swarm_core::{
    messaging::{mux::Responder, Answering, Inbound, Payload, Reply, SendError, Trace},
    ring::{RingKind, Said},
    swarm::{BoxFuture, ExecError, Host, Keep, TaskArgs, TaskFailure, TaskValue},
    topology::{Member, TopologyEvent},
};
use tokio::sync::oneshot;

use crate::{
    batch::{split_payload, Letter, Run, Settlement},
    chain::{self, HandBack},
    mailbox::Mailbox,
    scope::Scope,
};

/// A JavaScript callback called with a tuple of arguments and no return value.
pub type Callback<T> = ThreadsafeFunction<FnArgs<T>, (), FnArgs<T>, Status, false>;
/// `(callId, runId, status, kind, body, code, message)`: a local call settled (runId is
/// the run whose own value the facade kept, 0 if none); with callId 0, run `runId` is
/// done with and the facade may drop what it kept for it.
pub type LocalArgs = (
    u32,
    u32,
    u32,
    u32,
    Option<String>,
    Option<String>,
    Option<String>,
);
/// `(kind, dataJson)`.
pub type EventArgs = (String, String);

/// The JavaScript side of a node besides its mailbox: while held, they keep the
/// process alive.
pub struct Callbacks {
    pub on_event: Callback<EventArgs>,
    pub on_local: Callback<LocalArgs>,
}

/// Calls waiting for JavaScript to answer, by id.
struct Pending<T> {
    next: AtomicU32,
    waiting: Mutex<FxHashMap<u32, oneshot::Sender<T>>>,
}

impl<T> Pending<T> {
    fn new() -> Self {
        Pending {
            next: AtomicU32::new(1),
            waiting: Mutex::new(FxHashMap::default()),
        }
    }

    fn next_id(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn open(&self) -> (u32, oneshot::Receiver<T>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("not poisoned").insert(id, tx);
        (id, rx)
    }

    fn settle(&self, id: u32, value: T) -> bool {
        let sender = self.waiting.lock().expect("not poisoned").remove(&id);
        sender.is_some_and(|tx| tx.send(value).is_ok())
    }

    fn forget(&self, id: u32) {
        let waiting = self.waiting.lock().expect("not poisoned").remove(&id);
        // Dropped outside the lock: what it wakes may run at once (see swarm_core::local).
        drop(waiting);
    }
}

/// Ids of sends and remote task calls, unique in the process: the facade keeps one table
/// of pending calls across `close()` and a new `init()`, and a call of the closed node
/// may still settle after the new node has made its own.
static CALLS: AtomicU32 = AtomicU32::new(1);

/// The host: JavaScript callbacks until `release`, then refusals.
pub struct JsHost {
    me: Weak<JsHost>,
    callbacks: RwLock<Option<Callbacks>>,
    mailbox: Arc<Mailbox>,
    messages: Arc<Pending<Reply>>,
    /// Multiplexed requests JavaScript answers, by message id (from `messages`' ids).
    answers: Mutex<FxHashMap<u32, Responder>>,
    tasks: Arc<Pending<Result<Payload, TaskFailure>>>,
}

/// Kept with the result of a run started by a local call; when the last caller sharing
/// the run has been answered, tells the facade to drop the run's own value.
struct RunToken {
    id: u32,
    host: Weak<JsHost>,
}

impl Drop for RunToken {
    fn drop(&mut self) {
        if let Some(host) = self.host.upgrade() {
            host.call(|cb| &cb.on_local, (0, self.id, 0, 0, None, None, None));
        }
    }
}

/// The stable code of an execution error, as the facade documents it.
pub fn error_code(e: &ExecError) -> &'static str {
    match e {
        ExecError::NoSuchTask => "ERR_SWARM_NO_SUCH_TASK",
        ExecError::QueueFull(_) => "ERR_SWARM_QUEUE_FULL",
        // The owner's queue: the same failure, wherever the caller is.
        ExecError::Remote { .. } if e.queue_full() => "ERR_SWARM_QUEUE_FULL",
        ExecError::TimedOut => "ERR_SWARM_TIMEOUT",
        ExecError::Failed(_) => "ERR_SWARM_TASK_FAILED",
        ExecError::Remote { .. } => "ERR_SWARM_REMOTE_TASK",
        ExecError::Closed => "ERR_SWARM_CLOSED",
        ExecError::Moved(_) => "ERR_SWARM_MOVED",
    }
}

/// The stable code of a send's failure.
pub fn send_error_code(e: &SendError) -> &'static str {
    match e {
        SendError::Timeout { .. } => "ERR_SWARM_TIMEOUT",
        _ => "ERR_SWARM_SEND",
    }
}

/// Removes a call from its pending table when its caller stops waiting (a timeout).
struct Forget<T>(Arc<Pending<T>>, u32);

impl<T> Drop for Forget<T> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

impl JsHost {
    pub fn new(callbacks: Callbacks, mailbox: Arc<Mailbox>) -> Arc<Self> {
        Arc::new_cyclic(|me| JsHost {
            me: me.clone(),
            callbacks: RwLock::new(Some(callbacks)),
            mailbox,
            messages: Arc::new(Pending::new()),
            answers: Mutex::new(FxHashMap::default()),
            tasks: Arc::new(Pending::new()),
        })
    }

    /// Answers local call `call_id` with its outcome. What the run kept is released only
    /// after this answer, in the same ordered queue of calls into JavaScript.
    pub fn settle_local(&self, call_id: u32, outcome: Result<TaskValue, ExecError>) {
        let run = |keep: &Option<Keep>| {
            keep.as_ref()
                .and_then(|k| k.downcast_ref::<RunToken>())
                .map_or(0, |t| t.id)
        };
        let args = match &outcome {
            Ok(value) => {
                let (kind, body) = split_payload(value.payload.clone());
                (
                    call_id,
                    run(&value.keep),
                    200,
                    kind,
                    body.map(utf8),
                    None,
                    None,
                )
            }
            Err(e @ ExecError::Failed(f)) => {
                let code = Some(error_code(e).to_owned());
                let status = u32::from(f.status);
                (
                    call_id,
                    run(&f.keep),
                    status,
                    0,
                    None,
                    code,
                    Some(f.message.clone()),
                )
            }
            Err(e) => {
                let code = Some(error_code(e).to_owned());
                (call_id, 0, 0, 0, None, code, Some(e.to_string()))
            }
        };
        self.call(|cb| &cb.on_local, args);
        drop(outcome);
    }

    /// Drops the JavaScript callbacks, so they no longer keep the process alive; from
    /// now on messages and runs are refused, while calls still settle.
    pub fn release(&self) {
        self.mailbox.close();
        self.callbacks.write().expect("not poisoned").take();
    }

    /// A new call (a send or a remote task call): its id, under which its outcome will
    /// be delivered to JavaScript, and what delivers it, from any thread.
    pub fn new_call(&self) -> (u32, impl FnOnce(Settlement) + Send + 'static) {
        // Never 0, which has no negative (see `node.rs`'s `call_id`).
        let id = match CALLS.fetch_add(1, Ordering::Relaxed) {
            0 => CALLS.fetch_add(1, Ordering::Relaxed),
            id => id,
        };
        let host = self
            .me
            .upgrade()
            .expect("a node's host lives as long as it");
        (id, move |outcome| host.mailbox.post_settled(id, outcome))
    }

    /// `(wake-ups, letters delivered)` so far.
    pub fn crossings(&self) -> (u64, u64) {
        self.mailbox.counters()
    }

    /// Answers message `id`; a multiplexed request's answer is written with this turn's
    /// other writes (`mux::flush`, at the end of the turn).
    pub fn reply(&self, id: u32, reply: Reply) -> bool {
        let responder = self.answers.lock().expect("not poisoned").remove(&id);
        match responder {
            Some(responder) => responder.reply_later(&reply),
            None => self.messages.settle(id, reply),
        }
    }

    /// Posts message `id` for JavaScript to answer; false once the node is closed.
    fn post_message(&self, id: u32, message: Inbound) -> bool {
        let (kind, body) = split_payload(message.payload);
        self.mailbox.post_work(Letter::Message {
            id,
            path: message.path,
            kind,
            body,
            from: message.from,
            trace: message.meta.trace.as_ref().map(Trace::text),
        })
    }

    pub fn task_done(&self, id: u32, outcome: Result<Payload, TaskFailure>) -> bool {
        self.tasks.settle(id, outcome)
    }

    /// Answers run `id`, and returns the run this answer started on this thread (the
    /// next of a serialized queue), which the caller must have JavaScript run.
    pub fn task_done_chained(&self, id: u32, outcome: Result<Payload, TaskFailure>) -> Option<Run> {
        chain::catching(self.chain_key(), || {
            self.task_done(id, outcome);
        })
    }

    /// `run`, caught by [`JsHost::task_done_chained`] for a run of task `name`, as
    /// JavaScript takes it back (`hand_back`'s text). A run of another task (what
    /// settling the run woke first), or one whose text could not be made, is posted as
    /// any other.
    pub fn hand_back(
        &self,
        run: Run,
        name: &str,
        hand_back: &HandBack,
        scope: &Scope,
    ) -> Option<sys::napi_value> {
        if run.name == name {
            match hand_back.give(scope, &run) {
                Ok(text) => return Some(text),
                Err(e) => {
                    tracing::warn!(target: "node_swarm_kb::tasks", "handing back run {} failed ({e}): posted instead", run.id);
                }
            }
        }
        let id = run.id;
        if !self.mailbox.post_work(Letter::Run(run)) {
            self.task_done(id, Err(closing()));
        }
        None
    }

    /// Who this host is to the chains of its thread.
    fn chain_key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    fn call<T: 'static + Send>(
        &self,
        pick: impl FnOnce(&Callbacks) -> &Callback<T>,
        args: T,
    ) -> bool
    where
        FnArgs<T>: JsValuesTupleIntoVec,
    {
        let guard = self.callbacks.read().expect("not poisoned");
        guard.as_ref().is_some_and(|cb| {
            pick(cb).call(FnArgs::from(args), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
        })
    }
}

/// The failure of a run that JavaScript will not start: the node is closed.
fn closing() -> TaskFailure {
    TaskFailure::new(503, "swarm is closing")
}

/// The text of a body (invalid UTF-8 replaced); the bytes are moved, not copied, when
/// nothing else shares them.
fn utf8(bytes: Bytes) -> String {
    String::from_utf8(Vec::from(bytes))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Host for JsHost {
    fn message(&self, mut message: Inbound) -> Answering {
        let closing = || Reply::error(503, "swarm is closing");
        if let Some(responder) = message.responder.take() {
            // Answered by `reply` on the JavaScript thread, which writes it itself.
            let id = self.messages.next_id();
            self.answers
                .lock()
                .expect("not poisoned")
                .insert(id, responder);
            if !self.post_message(id, message) {
                if let Some(responder) = self.answers.lock().expect("not poisoned").remove(&id) {
                    responder.reply(&closing());
                }
            }
            return Answering::Taken;
        }
        let (id, rx) = self.messages.open();
        if !self.post_message(id, message) {
            self.messages.forget(id);
            return Answering::Later(Box::pin(async move { closing() }));
        }
        let forget = Forget(self.messages.clone(), id);
        Answering::Later(Box::pin(async move {
            let _forget = forget;
            rx.await.unwrap_or_else(|_| closing())
        }))
    }

    fn run_task(&self, name: &str, args: TaskArgs) -> BoxFuture<Result<TaskValue, TaskFailure>> {
        let (id, rx) = self.tasks.open();
        let (json, call_id, trace) = match args {
            TaskArgs::Json(json, trace) => (Some(utf8(json)), 0, trace.as_ref().map(Trace::text)),
            TaskArgs::Local(call_id) => (None, call_id, None),
        };
        let run = Run {
            id,
            name: name.to_owned(),
            args: json,
            call_id,
            trace,
        };
        // The next run of a serialized queue, started by the answer of the run before:
        // handed back with that answer (`chain.rs`) rather than posted.
        let started = self.mailbox.accepts()
            && match chain::offer(self.chain_key(), run) {
                Ok(()) => true,
                Err(run) => self.mailbox.post_work(Letter::Run(run)),
            };
        if !started {
            self.tasks.forget(id);
            return Box::pin(async move { Err(closing()) });
        }
        // A run started by a local call: the facade keeps the handler's own value for
        // the local callers until every caller sharing the run has its answer.
        let keep = (call_id != 0).then(|| {
            Arc::new(RunToken {
                id,
                host: self.me.clone(),
            }) as Keep
        });
        let forget = Forget(self.tasks.clone(), id);
        Box::pin(async move {
            let _forget = forget;
            match rx.await {
                Ok(Ok(payload)) => Ok(TaskValue { payload, keep }),
                Ok(Err(failure)) => Err(TaskFailure { keep, ..failure }),
                Err(_) => Err(closing()),
            }
        })
    }

    fn event(&self, event: TopologyEvent) {
        let (kind, data) = event_to_js(&event);
        self.call(|cb| &cb.on_event, (kind.to_owned(), data));
    }

    fn rings_differ(&self, peer: IpAddr, said: &Said, own: RingKind) {
        let data = json!({ "ip": peer.to_string(), "ring": said.ring(), "named": said.named(), "own": own.name() });
        self.call(
            |cb| &cb.on_event,
            ("ringMismatch".to_owned(), data.to_string()),
        );
    }
}

/// The event name and its JSON data, as the facade's `onEvent` receives them.
fn event_to_js(event: &TopologyEvent) -> (&'static str, String) {
    let member = |m: &Member| {
        json!({
            "ip": &*m.ip, "name": m.pod.as_deref(), "nodeName": m.node_name.as_deref(), "zone": m.zone.as_deref(),
            "ready": m.ready, "serving": m.serving, "terminating": m.terminating,
        })
    };
    let (kind, data) = match event {
        TopologyEvent::NodeAdded(m) => ("nodeAdded", member(m)),
        TopologyEvent::NodeRemoved(m) => ("nodeRemoved", member(m)),
        TopologyEvent::LocalLeft(m) => ("localLeft", member(m)),
        TopologyEvent::ReadinessChanged(m) => ("readinessChanged", member(m)),
        TopologyEvent::MasterChanged { previous, current } => (
            "masterChanged",
            json!({ "previous": previous, "current": current }),
        ),
        TopologyEvent::Error(e) => ("error", json!({ "message": e.to_string() })),
        TopologyEvent::Recovered => ("recovered", json!({})),
        TopologyEvent::Ready => ("ready", json!({})),
    };
    (kind, data.to_string())
}
