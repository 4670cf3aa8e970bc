//! Crossings into JavaScript, batched: messages to answer, task runs to start and calls
//! that settled are posted here from any thread, and one wake-up of the JavaScript
//! thread delivers everything posted since the last one in one call: the letters'
//! numbers in one `Float64Array`, their strings as the call's further arguments (see
//! [`Batch`]). Under load a wake-up carries many letters; idle, a letter costs one
//! wake-up, as before.
//!
//! The mailbox is also where multiplexed connections are read ([`ReadLoop`]): the
//! JavaScript thread's own loop watches their sockets (`reader.rs`), and the messages
//! and settled calls that what came in posted are delivered at once, in the same turn,
//! without a wake-up.

use std::{
    io,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock, Weak,
    },
    thread::{self, ThreadId},
};

use bytes::Bytes;
use napi::{
    bindgen_prelude::{Function, JsValue},
    check_status, sys,
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Env, Result, Status,
};
use swarm_core::messaging::{
    loop_io::{LoopIo, LoopTask, Serve},
    mux::{serve_here, Inflow, ReadLoop},
    Reply,
};

use crate::{batch::Batch, driver, host::split_payload, reader, scope::Scope};

/// Letters per call into JavaScript at most: their strings are the call's arguments,
/// and a call's arguments live on the stack.
const LETTERS_PER_CALL: usize = 1024;

/// One thing for JavaScript to do.
pub enum Letter {
    /// Tag 1: answer message `id` through `reply`: `(path, kind, body, from)`.
    Message {
        id: u32,
        path: String,
        kind: u32,
        body: Option<Bytes>,
        from: IpAddr,
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
    pub body: Option<Bytes>,
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
    /// The letters posted first, as many as one call takes, counted as one wake-up's;
    /// this ends the wake-up or hold it was taken for when `ending`. True when letters
    /// are left for another wake-up, which the caller makes ([`Mailbox::wake_again`]).
    fn take(&mut self, ending: bool) -> (Batch, bool) {
        let taken = if self.letters.len() > LETTERS_PER_CALL {
            let rest = self.letters.split_off(LETTERS_PER_CALL);
            std::mem::replace(&mut self.letters, rest)
        } else {
            // Room for as many as this wake-up took: the next ones are posted without
            // the vector growing step by step.
            let room = Vec::with_capacity(self.letters.len());
            std::mem::replace(&mut self.letters, room)
        };
        self.wakes += 1;
        self.delivered += taken.len() as u64;
        let left = ending && !self.letters.is_empty();
        if ending {
            self.scheduled = left;
        }
        (Batch(taken), left)
    }
}

impl ReadLoop for Mailbox {
    fn adopt(&self, inflow: Box<dyn Inflow>) {
        self.take_on(Adopted::Read(inflow));
    }

    fn serve(&self, socket: Arc<std::net::TcpStream>, serve: Serve) {
        self.take_on(Adopted::Serve(socket, serve));
    }

    fn io_here(&self, socket: Arc<std::net::TcpStream>) -> io::Result<LoopIo> {
        if self.on_its_thread() {
            return driver::io(Env::from_raw(self.direct.env), socket);
        }
        // Not this node's thread: the runtime watches it, and polls it (`spawn_here`).
        LoopIo::on_runtime(socket)
    }

    fn spawn_here(&self, task: LoopTask) {
        match self.me.upgrade() {
            Some(me) if self.on_its_thread() => {
                driver::spawn(Env::from_raw(self.direct.env), task, me)
            }
            // Not this node's thread: the runtime polls it.
            _ => drop(napi::bindgen_prelude::spawn(task)),
        }
    }
}

/// A connection the JavaScript thread takes on at its next delivery.
enum Adopted {
    /// A multiplexed connection to read (`reader.rs`).
    Read(Box<dyn Inflow>),
    /// An HTTP connection to serve (`driver.rs`).
    Serve(Arc<std::net::TcpStream>, Serve),
}

impl Direct {
    /// Calls the delivery function with `batch`, as libuv's callbacks call JavaScript.
    ///
    /// # Safety
    /// In a callback of the loop of `scope`'s thread, outside JavaScript.
    unsafe fn call(&self, scope: &Scope, batch: Batch) -> Result<()> {
        let env = scope.env();
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
        let argv = batch.into_args(scope)?;
        let mut result = std::ptr::null_mut();
        let status = sys::napi_make_callback(
            env,
            reader::async_context(scope),
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

type Wake = ThreadsafeFunction<(), (), Batch, Status, false, true>;

/// The mailbox of one node.
pub struct Mailbox {
    queue: Arc<Mutex<Queue>>,
    /// Weak: pending letters never keep the process alive on their own; the node's other
    /// callbacks do, until it is closed. Set once, right after the mailbox is made.
    wake: OnceLock<Wake>,
    /// False once the node is closed: no new messages or runs, settled calls still come.
    accepting: AtomicBool,
    /// Connections the JavaScript thread is to read, from its next delivery.
    adopted: Mutex<Vec<Adopted>>,
    /// The delivery function, for deliveries on the JavaScript thread itself.
    direct: Direct,
    /// Itself, for the tasks it starts on the JavaScript thread.
    me: Weak<Mailbox>,
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
    pub fn new(env: &Env, deliver: Function<'_, Batch, ()>) -> Result<Arc<Self>> {
        let mut reference = std::ptr::null_mut();
        // SAFETY: on the JavaScript thread, with a live function value.
        check_status!(unsafe {
            sys::napi_create_reference(env.raw(), deliver.raw(), 0, &mut reference)
        })?;
        let mailbox = Arc::new_cyclic(|me| Mailbox {
            me: me.clone(),
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
                    // SAFETY: a thread-safe function's call, on the JavaScript thread.
                    let scope = unsafe { Scope::entered(ctx.env.raw()) };
                    mailbox.start(&scope, mailbox.take_adopted());
                }
                let (batch, left) = taken.lock().expect("not poisoned").take(true);
                if left {
                    match me.upgrade() {
                        Some(mailbox) => mailbox.wake_again(),
                        None => taken.lock().expect("not poisoned").scheduled = false,
                    }
                }
                Ok(batch)
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

    /// Makes the wake-up that [`Queue::take`] left letters for.
    fn wake_again(&self) {
        if !self.wake() {
            self.queue.lock().expect("not poisoned").scheduled = false;
        }
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

    /// In a callback of the JavaScript thread's loop: delivers what was posted, at once,
    /// and ends the hold `held` (see [`Mailbox::hold`]). Everything it does runs in a
    /// handle scope of its own, which libuv's callbacks do not have; the delivery
    /// function runs in a callback scope, so the promises it settles go on before the
    /// loop does.
    ///
    /// # Safety
    /// In a callback of the loop of the node's JavaScript thread, outside JavaScript.
    pub unsafe fn deliver_held(self: &Arc<Self>, held: bool) {
        // A connection adopted during the hold found its wake-up taken: it starts here.
        let adopted = self.take_adopted();
        let taken = {
            let mut queue = self.queue.lock().expect("not poisoned");
            if queue.letters.is_empty() {
                if held {
                    queue.scheduled = false;
                }
                None
            } else {
                Some(queue.take(held))
            }
        };
        if adopted.is_empty() && taken.is_none() {
            return;
        }
        if let Some((_, true)) = taken {
            self.wake_again();
        }
        let Some(scope) = Scope::open(self.direct.env) else {
            tracing::warn!(target: "node_swarm_kb::messages", "the JavaScript environment is ending: a delivery is dropped");
            return;
        };
        self.start(&scope, adopted);
        let Some((batch, _)) = taken else { return };
        if let Err(e) = self.direct.call(&scope, batch) {
            tracing::warn!(target: "node_swarm_kb::messages", "delivering on the JavaScript thread failed: {e}");
        }
    }

    /// Whether this is the node's JavaScript thread.
    fn on_its_thread(&self) -> bool {
        thread::current().id() == self.direct.thread
    }

    /// Hands a connection to the JavaScript thread, with a wake-up unless one is due.
    fn take_on(&self, adopted: Adopted) {
        self.adopted.lock().expect("not poisoned").push(adopted);
        let wake = self.hold();
        if wake {
            self.wake();
        }
    }

    /// The connections adopted since the last delivery.
    fn take_adopted(&self) -> Vec<Adopted> {
        std::mem::take(&mut *self.adopted.lock().expect("not poisoned"))
    }

    /// Starts reading or serving `adopted` on the JavaScript thread, in `scope`.
    fn start(self: &Arc<Self>, scope: &Scope, adopted: Vec<Adopted>) {
        for adopted in adopted {
            match adopted {
                Adopted::Read(inflow) => reader::start(scope, inflow, self.clone()),
                Adopted::Serve(socket, serve) => serve_here(&**self, socket, serve),
            }
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
