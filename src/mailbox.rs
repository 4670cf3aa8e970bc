//! Crossings into JavaScript, batched: messages to answer, task runs to start and calls
//! that settled are posted here from any thread, and one wake-up of the JavaScript
//! thread delivers everything posted since the last one, as one flat array. Under load
//! a wake-up carries many letters; idle, a letter costs one wake-up, as before.
//!
//! The mailbox is also where multiplexed connections are read ([`ReadLoop`]): the
//! JavaScript thread's own loop watches their sockets (`reader.rs`), and the messages
//! and settled calls that what came in posted are delivered at once, in the same turn,
//! without a wake-up.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock,
    },
    thread::{self, ThreadId},
};

use napi::{
    bindgen_prelude::{FnArgs, Function, JsValue, Null, ToNapiValue},
    check_status, sys,
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Env, Result, Status,
};
use swarm_core::messaging::{
    mux::{Inflow, ReadLoop},
    Reply,
};

use crate::{host::split_payload, reader};

/// Slots per letter in the delivered array: `[tag, id, a, b, c, d, e]`.
pub const STRIDE: usize = 7;

/// One thing for JavaScript to do.
pub enum Letter {
    /// Tag 1: answer message `id` through `reply`: `(path, kind, body, from)`.
    Message {
        id: u32,
        path: String,
        kind: u32,
        body: Option<String>,
        from: String,
    },
    /// Tag 2: run task `name` as run `id` and answer through `taskDone`: JSON arguments
    /// from another node, or those the facade keeps for local call `call_id` (else 0).
    Run {
        id: u32,
        name: String,
        args: Option<String>,
        call_id: u32,
    },
    /// Tag 3: call `id` (a send or a remote task call) settled.
    Settled { id: u32, outcome: Outcome },
}

/// The settled result of a send or a task execution, errors included, so the facade
/// builds the exact error objects of 0.5.1.
pub struct Outcome {
    /// The HTTP status of the reply (0 when none came back).
    pub status: u32,
    /// 0 nothing, 1 text, 2 JSON.
    pub kind: u32,
    pub body: Option<String>,
    /// A stable error code when the call failed.
    pub code: Option<String>,
    /// The error message when the call failed.
    pub message: Option<String>,
}

impl Outcome {
    pub fn reply(reply: Reply) -> Outcome {
        let status = u32::from(reply.status);
        let (kind, body) = split_payload(reply.payload);
        Outcome {
            status,
            kind,
            body,
            code: None,
            message: None,
        }
    }

    pub fn error(code: &str, status: u32, message: String) -> Outcome {
        Outcome {
            status,
            kind: 0,
            body: None,
            code: Some(code.to_owned()),
            message: Some(message),
        }
    }
}

/// Letters waiting for the next wake-up, whether one is already on its way, and the
/// wake-ups made and letters delivered so far (the benchmarks' "calls per wake-up").
#[derive(Default)]
struct Queue {
    letters: Vec<Letter>,
    scheduled: bool,
    wakes: u64,
    delivered: u64,
}

impl Queue {
    /// The letters posted so far, counted as one wake-up's.
    fn take(&mut self) -> Batch {
        self.wakes += 1;
        self.delivered += self.letters.len() as u64;
        Batch(std::mem::take(&mut self.letters))
    }
}

/// What one wake-up delivers: the letters, turned into a JavaScript array on the
/// JavaScript thread.
pub struct Batch(Vec<Letter>);

impl ReadLoop for Mailbox {
    fn adopt(&self, inflow: Box<dyn Inflow>) {
        self.adopted.lock().expect("not poisoned").push(inflow);
        let wake = self.hold();
        if wake {
            self.wake();
        }
    }
}

impl Direct {
    /// Calls the delivery function with `batch`, as libuv's callbacks call JavaScript.
    ///
    /// # Safety
    /// On the JavaScript thread, outside JavaScript (in a callback of its loop).
    unsafe fn call(&self, batch: Batch) -> Result<()> {
        let env = self.env;
        let mut scope = std::ptr::null_mut();
        check_status!(sys::napi_open_handle_scope(env, &mut scope))?;
        let called = self.call_in_scope(batch);
        sys::napi_close_handle_scope(env, scope);
        called
    }

    unsafe fn call_in_scope(&self, batch: Batch) -> Result<()> {
        let env = self.env;
        let mut deliver = std::ptr::null_mut();
        check_status!(sys::napi_get_reference_value(
            env,
            self.deliver,
            &mut deliver
        ))?;
        if deliver.is_null() {
            // Collected: the node is gone, and nobody waits for these letters.
            return Ok(());
        }
        let mut global = std::ptr::null_mut();
        check_status!(sys::napi_get_global(env, &mut global))?;
        let argv = [Batch::to_napi_value(env, batch)?];
        let mut result = std::ptr::null_mut();
        let status = sys::napi_make_callback(
            env,
            reader::async_context(env),
            global,
            deliver,
            argv.len(),
            argv.as_ptr(),
            &mut result,
        );
        if status == sys::Status::napi_pending_exception {
            // As a throwing callback of the loop: `uncaughtException`.
            let mut error = std::ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut error);
            sys::napi_fatal_exception(env, error);
            return Ok(());
        }
        check_status!(status)
    }
}

type Wake = ThreadsafeFunction<(), (), FnArgs<(Batch,)>, Status, false, true>;

/// The mailbox of one node.
pub struct Mailbox {
    queue: Arc<Mutex<Queue>>,
    /// Weak: pending letters never keep the process alive on their own; the node's other
    /// callbacks do, until it is closed. Set once, right after the mailbox is made.
    wake: OnceLock<Wake>,
    /// False once the node is closed: no new messages or runs, settled calls still come.
    accepting: AtomicBool,
    /// Connections the JavaScript thread is to read, from its next delivery.
    adopted: Mutex<Vec<Box<dyn Inflow>>>,
    /// The delivery function, for deliveries on the JavaScript thread itself.
    direct: Direct,
}

/// A weak reference to the function batches go to, with its environment: used on the
/// JavaScript thread alone. The thread-safe function holds the function while the
/// mailbox lives.
struct Direct {
    env: sys::napi_env,
    deliver: sys::napi_ref,
    thread: ThreadId,
}

// SAFETY: the pointers are only used on `thread` (see `Mailbox::deliver_held`, `Drop`).
unsafe impl Send for Direct {}
// SAFETY: as for `Send`.
unsafe impl Sync for Direct {}

impl Drop for Direct {
    fn drop(&mut self) {
        // Elsewhere the reference is left to the environment, which frees it when it ends.
        if thread::current().id() == self.thread {
            // SAFETY: on the environment's thread; the reference is not used again.
            unsafe { sys::napi_delete_reference(self.env, self.deliver) };
        }
    }
}

impl Mailbox {
    /// A mailbox delivering to `deliver(batch)`.
    pub fn new(env: &Env, deliver: Function<'_, FnArgs<(Batch,)>, ()>) -> Result<Arc<Self>> {
        let mut reference = std::ptr::null_mut();
        // SAFETY: on the JavaScript thread, with a live function value.
        check_status!(unsafe {
            sys::napi_create_reference(env.raw(), deliver.raw(), 0, &mut reference)
        })?;
        let mailbox = Arc::new(Mailbox {
            queue: Arc::new(Mutex::new(Queue::default())),
            wake: OnceLock::new(),
            accepting: AtomicBool::new(true),
            adopted: Mutex::new(Vec::new()),
            direct: Direct {
                env: env.raw(),
                deliver: reference,
                thread: thread::current().id(),
            },
        });
        let (taken, me) = (mailbox.queue.clone(), Arc::downgrade(&mailbox));
        let wake = deliver
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |ctx| {
                // Without the mailbox (the node is gone), what it adopted went with it.
                if let Some(mailbox) = me.upgrade() {
                    mailbox.start_adopted(ctx.env);
                }
                let mut queue = taken.lock().expect("not poisoned");
                queue.scheduled = false;
                Ok(FnArgs::from((queue.take(),)))
            })?;
        let _ = mailbox.wake.set(wake);
        Ok(mailbox)
    }

    /// Posts a message or a run; false once the node is closed.
    pub fn post_work(&self, letter: Letter) -> bool {
        self.accepting.load(Ordering::Acquire) && self.post(letter)
    }

    /// Posts a settled call; delivered even while the node closes.
    pub fn post_settled(&self, id: u32, outcome: Outcome) {
        self.post(Letter::Settled { id, outcome });
    }

    fn post(&self, letter: Letter) -> bool {
        let wake = {
            let mut queue = self.queue.lock().expect("not poisoned");
            queue.letters.push(letter);
            !std::mem::replace(&mut queue.scheduled, true)
        };
        !wake || self.wake()
    }

    fn wake(&self) -> bool {
        self.wake.get().is_some_and(|wake| {
            wake.call((), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
        })
    }

    /// Letters posted from now on wait for [`Mailbox::deliver_held`]: for a callback of
    /// the JavaScript thread's loop. True when this holds them (no wake-up was on its way).
    pub fn hold(&self) -> bool {
        !std::mem::replace(
            &mut self.queue.lock().expect("not poisoned").scheduled,
            true,
        )
    }

    /// On the JavaScript thread, in a callback of its loop: delivers what was posted, at
    /// once, and ends the hold `held` (see [`Mailbox::hold`]). The delivery function
    /// runs in a callback scope, so the promises it settles go on before the loop does.
    pub fn deliver_held(self: &Arc<Self>, held: bool) {
        // A connection adopted during the hold found its wake-up taken: it starts here.
        self.start_adopted(Env::from_raw(self.direct.env));
        let batch = {
            let mut queue = self.queue.lock().expect("not poisoned");
            if held {
                queue.scheduled = false;
            }
            if queue.letters.is_empty() {
                return;
            }
            queue.take()
        };
        // SAFETY: called on the JavaScript thread (the loop's callbacks run there).
        if let Err(e) = unsafe { self.direct.call(batch) } {
            tracing::warn!(target: "node_swarm_kb::messages", "delivering on the JavaScript thread failed: {e}");
        }
    }

    /// Starts reading, on this thread, the connections adopted since the last delivery.
    fn start_adopted(self: &Arc<Self>, env: Env) {
        for inflow in std::mem::take(&mut *self.adopted.lock().expect("not poisoned")) {
            reader::start(env, inflow, self.clone());
        }
    }

    /// No new messages or runs from now on.
    pub fn close(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// `(wake-ups, letters delivered)` so far.
    pub fn counters(&self) -> (u64, u64) {
        let queue = self.queue.lock().expect("not poisoned");
        (queue.wakes, queue.delivered)
    }
}

/// The array a batch becomes, filled slot after slot.
struct Slots {
    env: sys::napi_env,
    array: sys::napi_value,
    next: u32,
}

impl Slots {
    unsafe fn put<T: ToNapiValue>(&mut self, value: T) -> Result<()> {
        let value = T::to_napi_value(self.env, value)?;
        check_status!(sys::napi_set_element(
            self.env, self.array, self.next, value
        ))?;
        self.next += 1;
        Ok(())
    }
}

impl ToNapiValue for Batch {
    unsafe fn to_napi_value(env: sys::napi_env, batch: Self) -> Result<sys::napi_value> {
        let mut array = std::ptr::null_mut();
        check_status!(sys::napi_create_array_with_length(
            env,
            batch.0.len() * STRIDE,
            &mut array
        ))?;
        let mut s = Slots {
            env,
            array,
            next: 0,
        };
        for letter in batch.0 {
            match letter {
                Letter::Message {
                    id,
                    path,
                    kind,
                    body,
                    from,
                } => {
                    s.put(1u32)?;
                    s.put(id)?;
                    s.put(path)?;
                    s.put(kind)?;
                    s.put(body)?;
                    s.put(from)?;
                    s.put(Null)?;
                }
                Letter::Run {
                    id,
                    name,
                    args,
                    call_id,
                } => {
                    s.put(2u32)?;
                    s.put(id)?;
                    s.put(name)?;
                    s.put(args)?;
                    s.put(call_id)?;
                    s.put(Null)?;
                    s.put(Null)?;
                }
                Letter::Settled { id, outcome } => {
                    s.put(3u32)?;
                    s.put(id)?;
                    s.put(outcome.status)?;
                    s.put(outcome.kind)?;
                    s.put(outcome.body)?;
                    s.put(outcome.code)?;
                    s.put(outcome.message)?;
                }
            }
        }
        Ok(array)
    }
}
