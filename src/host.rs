//! The engine's host, backed by JavaScript: a message or a task run becomes one call of
//! a JavaScript function with a call id, and JavaScript answers through
//! `SwarmNode.reply` / `SwarmNode.taskDone` with that id. A reply never comes back as
//! a promise, so a handler that returns a plain value costs one crossing each way.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, RwLock,
    },
};

use bytes::Bytes;
use napi::{
    bindgen_prelude::{FnArgs, JsValuesTupleIntoVec},
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Status,
};
use swarm_core::{
    messaging::{Inbound, Payload, Reply},
    swarm::{BoxFuture, Host, TaskFailure},
    topology::TopologyEvent,
};
use tokio::sync::oneshot;

/// A JavaScript callback called with a tuple of arguments and no return value.
pub type Callback<T> = ThreadsafeFunction<FnArgs<T>, (), FnArgs<T>, Status, false>;
/// `(id, path, kind, body, from)`.
pub type MessageArgs = (u32, String, u32, Option<String>, String);
/// `(id, name, argsJson)`.
pub type TaskArgs = (u32, String, String);
/// `(kind, dataJson)`.
pub type EventArgs = (String, String);

/// The JavaScript side of a node.
pub struct Callbacks {
    pub on_message: Callback<MessageArgs>,
    pub on_task: Callback<TaskArgs>,
    pub on_event: Callback<EventArgs>,
}

/// Calls waiting for JavaScript to answer, by id.
struct Pending<T> {
    next: AtomicU32,
    waiting: Mutex<HashMap<u32, oneshot::Sender<T>>>,
}

impl<T> Pending<T> {
    fn new() -> Self {
        Pending {
            next: AtomicU32::new(1),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self) -> (u32, oneshot::Receiver<T>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("not poisoned").insert(id, tx);
        (id, rx)
    }

    fn settle(&self, id: u32, value: T) -> bool {
        let sender = self.waiting.lock().expect("not poisoned").remove(&id);
        sender.is_some_and(|tx| tx.send(value).is_ok())
    }

    fn forget(&self, id: u32) {
        self.waiting.lock().expect("not poisoned").remove(&id);
    }
}

/// The host: JavaScript callbacks until `release`, then refusals.
pub struct JsHost {
    callbacks: RwLock<Option<Callbacks>>,
    messages: Arc<Pending<Reply>>,
    tasks: Arc<Pending<Result<Payload, TaskFailure>>>,
}

/// Removes a call from its pending table when its caller stops waiting (a timeout).
struct Forget<T>(Arc<Pending<T>>, u32);

impl<T> Drop for Forget<T> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

impl JsHost {
    pub fn new(callbacks: Callbacks) -> Self {
        JsHost {
            callbacks: RwLock::new(Some(callbacks)),
            messages: Arc::new(Pending::new()),
            tasks: Arc::new(Pending::new()),
        }
    }

    /// Drops the JavaScript callbacks, so they no longer keep the process alive.
    pub fn release(&self) {
        self.callbacks.write().expect("not poisoned").take();
    }

    pub fn reply(&self, id: u32, reply: Reply) -> bool {
        self.messages.settle(id, reply)
    }

    pub fn task_done(&self, id: u32, outcome: Result<Payload, TaskFailure>) -> bool {
        self.tasks.settle(id, outcome)
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

/// The kind number of a payload on the boundary: 0 none, 1 text, 2 JSON.
pub fn split_payload(payload: Payload) -> (u32, Option<String>) {
    match payload {
        Payload::Empty => (0, None),
        Payload::Text(b) => (1, Some(utf8(b))),
        Payload::Json(b) => (2, Some(utf8(b))),
    }
}

/// Builds a payload from its kind number and body.
pub fn join_payload(kind: u32, body: Option<String>) -> Payload {
    match (kind, body) {
        (1, Some(b)) => Payload::Text(Bytes::from(b)),
        (2, Some(b)) => Payload::Json(Bytes::from(b)),
        _ => Payload::Empty,
    }
}

fn utf8(bytes: Bytes) -> String {
    String::from_utf8(bytes.to_vec())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Host for JsHost {
    fn message(&self, message: Inbound) -> BoxFuture<Reply> {
        let (id, rx) = self.messages.open();
        let (kind, body) = split_payload(message.payload);
        let args = (id, message.path, kind, body, message.from.to_string());
        if !self.call(|cb| &cb.on_message, args) {
            self.messages.forget(id);
            return Box::pin(async { Reply::error(503, "swarm is closing") });
        }
        let forget = Forget(self.messages.clone(), id);
        Box::pin(async move {
            let _forget = forget;
            rx.await
                .unwrap_or_else(|_| Reply::error(503, "swarm is closing"))
        })
    }

    fn run_task(&self, name: &str, args: Bytes) -> BoxFuture<Result<Payload, TaskFailure>> {
        let (id, rx) = self.tasks.open();
        let closing = || TaskFailure {
            status: 503,
            message: "swarm is closing".into(),
        };
        if !self.call(|cb| &cb.on_task, (id, name.to_owned(), utf8(args))) {
            self.tasks.forget(id);
            return Box::pin(async move { Err(closing()) });
        }
        let forget = Forget(self.tasks.clone(), id);
        Box::pin(async move {
            let _forget = forget;
            rx.await.unwrap_or_else(|_| Err(closing()))
        })
    }

    fn event(&self, event: TopologyEvent) {
        let (kind, data) = crate::node::event_to_js(&event);
        self.call(|cb| &cb.on_event, (kind.to_owned(), data));
    }
}
