//! The mailbox on the JavaScript thread's own loop (Unix, where the loop can watch a
//! raw socket): multiplexed connections are read there ([`EventLoop`]) and HTTP ones
//! served, by `node-loop` (`event_loop.rs`), and the messages and settled calls that
//! what came in posted are delivered at once, in the same turn, without a wake-up (the
//! mailbox is their [`Delivery`]).

use std::{
    cell::Cell,
    io,
    sync::{Arc, Weak},
    thread::{self, ThreadId},
};

use napi::{
    bindgen_prelude::{Function, JsValue},
    check_status, sys, Env, Result,
};
use swarm_core::local::{self, LoopThread, Work};
use swarm_core::messaging::{
    loop_io::{serve_here, EventLoop, LoopIo, LoopTask, Serve},
    mux::Inflow,
};
use tokio::runtime::Handle;

use node_loop::Delivery;

use super::Mailbox;
use crate::{batch::Batch, event_loop, scope::Scope};

/// Rounds per callback of the loop at most: calls into JavaScript
/// ([`Mailbox::deliver_rounds`]) and runs handed back to it (`chain.rs`). A serialized
/// task's queue drains in one callback, up to this length.
const ROUNDS: usize = 128;

thread_local! {
    /// The rounds spent in the loop's callback of that number (`node_loop::turn_number`).
    static SPENT: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

/// Counts a round in this callback of the loop; false when its [`ROUNDS`] are spent.
pub(super) fn spend_round() -> bool {
    let turn = node_loop::turn_number();
    let spent = match SPENT.get() {
        (at, spent) if at == turn => spent,
        _ => 0,
    };
    SPENT.set((turn, spent + 1));
    spent < ROUNDS
}

/// What a mailbox keeps for its JavaScript thread's loop.
pub(super) struct OnLoop {
    /// The delivery function, for deliveries on the JavaScript thread itself.
    direct: Direct,
    /// The mailbox, for the tasks and readers it starts on the JavaScript thread.
    mailbox: Weak<Mailbox>,
    /// The JavaScript thread is attached to its loop: connections may be read there.
    attached: bool,
}

impl OnLoop {
    /// Attaches the JavaScript thread of `env` to its loop, if it is not yet.
    pub(super) fn new(env: &Env, direct: Direct, mailbox: Weak<Mailbox>) -> OnLoop {
        OnLoop {
            direct,
            mailbox,
            attached: event_loop::attach(env),
        }
    }

    /// Whether connections may be read and served on the JavaScript thread's loop.
    pub(super) fn attached(&self) -> bool {
        self.attached
    }
}

/// The node's JavaScript thread: the task requests it reads are run and answered there,
/// and what it queues for writing goes out at the end of its loop's turn.
impl LoopThread for Mailbox {
    fn is_current(&self) -> bool {
        self.on_its_thread()
    }

    fn start_there(&self, work: Work, runtime: Handle) {
        self.take_on(Adopted::Start(work, runtime));
    }
}

impl EventLoop for Mailbox {
    fn adopt(&self, inflow: Box<dyn Inflow>) {
        self.take_on(Adopted::Read(inflow));
    }

    fn serve(&self, socket: Arc<std::net::TcpStream>, serve: Serve) {
        self.take_on(Adopted::Serve(socket, serve));
    }

    fn io_here(&self, socket: Arc<std::net::TcpStream>) -> io::Result<LoopIo> {
        if self.on_its_thread() {
            return event_loop::io(socket);
        }
        // Not this node's thread: the runtime watches it, and polls it (`spawn_here`).
        LoopIo::on_runtime(socket)
    }

    fn spawn_here(&self, task: LoopTask) {
        match self.on_loop.mailbox.upgrade() {
            Some(me) if self.on_its_thread() => {
                // Not attached any more (the environment ends): the task is dropped.
                node_loop::spawn(task, me);
            }
            // Not this node's thread: the runtime polls it.
            _ => drop(napi::bindgen_prelude::spawn(task)),
        }
    }
}

/// What the JavaScript thread takes on at its next delivery.
pub(super) enum Adopted {
    /// A multiplexed connection to read (`event_loop::read`).
    Read(Box<dyn Inflow>),
    /// An HTTP connection to serve, with tasks of the loop.
    Serve(Arc<std::net::TcpStream>, Serve),
    /// Work that the engine started elsewhere for this thread ([`LoopThread::start_there`]).
    Start(Work, Handle),
}

/// A weak reference to the function batches go to, with its environment: used on the
/// JavaScript thread alone. The thread-safe function holds the function while the
/// mailbox lives.
pub(super) struct Direct {
    env: sys::napi_env,
    deliver: sys::napi_ref,
    thread: ThreadId,
}

// SAFETY: the pointers are only used on `thread` (see `Delivery for Mailbox`, `Drop`).
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

impl Direct {
    /// A weak reference to `deliver`, made on the JavaScript thread of `env`.
    pub(super) fn new(env: &Env, deliver: &Function<'_, Batch, ()>) -> Result<Direct> {
        let mut reference = std::ptr::null_mut();
        // SAFETY: on the JavaScript thread, with a live function value.
        check_status!(unsafe {
            sys::napi_create_reference(env.raw(), deliver.raw(), 0, &mut reference)
        })?;
        Ok(Direct {
            env: env.raw(),
            deliver: reference,
            thread: thread::current().id(),
        })
    }

    /// Calls the delivery function with `batch`, as libuv's callbacks call JavaScript.
    ///
    /// # Safety
    /// In a callback of the loop of `scope`'s thread, outside JavaScript; `scope` is of
    /// the delivery function's environment.
    unsafe fn call(&self, scope: &Scope, batch: Batch) -> Result<()> {
        let env = scope.env();
        let mut deliver = std::ptr::null_mut();
        // SAFETY: in `scope`, of the reference's environment (the contract).
        check_status!(unsafe { sys::napi_get_reference_value(env, self.deliver, &mut deliver) })?;
        if deliver.is_null() {
            // Collected: the node is gone, and nobody waits for these letters.
            return Ok(());
        }
        let mut global = std::ptr::null_mut();
        // SAFETY: in `scope`.
        check_status!(unsafe { sys::napi_get_global(env, &mut global) })?;
        let argv = batch.into_args(scope)?;
        let mut result = std::ptr::null_mut();
        // SAFETY: in `scope`, outside JavaScript (the contract), with values made in it and
        // `argv.len()` of them at `argv`.
        let status = unsafe {
            sys::napi_make_callback(
                env,
                event_loop::async_context(scope),
                global,
                deliver,
                argv.len(),
                argv.as_ptr(),
                &mut result,
            )
        };
        if status == sys::Status::napi_pending_exception {
            // As a throwing callback of the loop: `uncaughtException`.
            let mut error = std::ptr::null_mut();
            // SAFETY: in `scope` (the error is a value), outside JavaScript (the contract).
            unsafe {
                sys::napi_get_and_clear_last_exception(env, &mut error);
                sys::napi_fatal_exception(env, error);
            }
            return Ok(());
        }
        check_status!(status)
    }
}

/// The mailbox is what the readers and tasks of its thread's loop deliver through: in a
/// callback of that loop, what they posted is delivered at once. Everything `deliver`
/// does runs in a handle scope of its own, which libuv's callbacks do not have; the
/// delivery function runs in a callback scope, so the promises it settles go on before
/// the loop does.
impl Delivery for Mailbox {
    /// Letters posted from now on wait for `deliver`. True when this holds them (no
    /// wake-up was on its way).
    fn hold(&self) -> bool {
        !std::mem::replace(
            &mut self.queue.lock().expect("not poisoned").scheduled,
            true,
        )
    }

    fn deliver(&self, held: bool) {
        let adopted = {
            let mut queue = self.queue.lock().expect("not poisoned");
            if queue.adopted.is_empty() && queue.letters.is_empty() {
                if held {
                    queue.scheduled = false;
                }
                return;
            }
            // Adopted during the hold, it found its wake-up taken: it starts here.
            std::mem::take(&mut queue.adopted)
        };
        // SAFETY: `node-loop` delivers in callbacks of the loop of the thread it was
        // handed this mailbox on, outside JavaScript (`Delivery`'s contract), and only the
        // node's own thread hands it (`event_loop::read`, `spawn_here`); the scope closes
        // before this returns.
        let Some(scope) = (unsafe { Scope::open(self.on_loop.direct.env) }) else {
            tracing::warn!(target: "node_swarm_kb::messages", "the JavaScript environment is ending: a delivery is dropped");
            return;
        };
        self.start(&scope, adopted);
        drop(scope);
        // SAFETY: as for the scope above.
        unsafe { self.deliver_rounds(held) };
    }
}

impl Mailbox {
    /// Calls JavaScript with what was posted, in rounds, then ends the hold when
    /// `ending`. What a round's JavaScript posts goes in the next round of the same
    /// callback rather than after a wake-up, a turn of the loop later: what a promise
    /// settled in a round's microtasks posted follows at once (a serialized task's next
    /// run, when its handler returned a plain value, comes back with the answer of the
    /// run before: `chain.rs`). After [`ROUNDS`] rounds in a callback of the loop (one
    /// round, at least, for each delivery; runs handed back count) what is left waits
    /// for a wake-up, so that JavaScript that keeps posting does not keep the loop from
    /// its I/O and timers. Each round has a handle
    /// scope of its own: a round's values are not kept through the next ones.
    ///
    /// # Safety
    /// In a callback of the loop of the node's thread, outside JavaScript.
    unsafe fn deliver_rounds(&self, ending: bool) {
        let mut first = true;
        loop {
            let (adopted, batch) = {
                let mut queue = self.queue.lock().expect("not poisoned");
                if queue.adopted.is_empty() && queue.letters.is_empty() {
                    break;
                }
                if !spend_round() && !first {
                    break;
                }
                (std::mem::take(&mut queue.adopted), queue.take(first))
            };
            first = false;
            // SAFETY: in a callback of the loop, outside JavaScript (the contract); the
            // scope closes at the end of the round.
            let Some(scope) = (unsafe { Scope::open(self.on_loop.direct.env) }) else {
                break;
            };
            self.start(&scope, adopted);
            let Some(batch) = batch else { continue };
            // SAFETY: as for the scope, which is of the delivery function's environment.
            if let Err(e) = unsafe { self.on_loop.direct.call(&scope, batch) } {
                tracing::warn!(target: "node_swarm_kb::messages", "delivering on the JavaScript thread failed: {e}");
                break;
            }
        }
        if ending && self.queue.lock().expect("not poisoned").end_hold() {
            self.wake_again();
        }
    }

    /// Whether this is the node's JavaScript thread.
    fn on_its_thread(&self) -> bool {
        thread::current().id() == self.on_loop.direct.thread
    }

    /// Hands something to the JavaScript thread, with a wake-up unless one is due.
    fn take_on(&self, adopted: Adopted) {
        let wake = {
            let mut queue = self.queue.lock().expect("not poisoned");
            queue.adopted.push(adopted);
            !std::mem::replace(&mut queue.scheduled, true)
        };
        if wake {
            self.wake_again();
        }
    }

    /// Starts what was adopted since the last delivery, in `scope`.
    pub(super) fn start_adopted(&self, scope: &Scope) {
        let adopted = std::mem::take(&mut self.queue.lock().expect("not poisoned").adopted);
        self.start(scope, adopted);
    }

    /// Starts reading, serving or running `adopted` on the JavaScript thread, in `scope`.
    fn start(&self, scope: &Scope, adopted: Vec<Adopted>) {
        for adopted in adopted {
            match adopted {
                Adopted::Read(inflow) => {
                    // Without the mailbox (the node is gone), dropping the inflow ends it.
                    if let Some(me) = self.on_loop.mailbox.upgrade() {
                        event_loop::read(scope, inflow, me);
                    }
                }
                Adopted::Serve(socket, serve) => serve_here(self, socket, serve),
                Adopted::Start(work, runtime) => local::start_here(work, runtime),
            }
        }
    }
}

/// What the JavaScript thread will not take on (it cannot be woken: its environment
/// ends): connections end, and work goes to the runtime, where its callers get their
/// answer (the node is closing) rather than none.
pub(super) fn not_taken(adopted: Vec<Adopted>) {
    for adopted in adopted {
        if let Adopted::Start(work, runtime) = adopted {
            drop(runtime.spawn(work));
        }
    }
}
