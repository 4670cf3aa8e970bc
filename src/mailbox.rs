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
    bindgen_prelude::{Function, JsValue, JsValuesTupleIntoVec},
    check_status, sys,
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Env, Result, Status,
};
use swarm_core::messaging::{
    codec,
    loop_io::{LoopIo, LoopTask, Serve},
    mux::{serve_here, Inflow, ReadLoop},
    Reply,
};

use crate::{driver, host::split_payload, reader};

/// Numbers per letter in the delivered `Float64Array`: `[tag, id, a, b, c, d, e]`.
const STRIDE: usize = 7;

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

/// What one call into JavaScript delivers. Its arguments, made on the JavaScript thread:
/// first a `Float64Array` of [`STRIDE`] numbers per letter, then each letter's strings,
/// in order (a flag among its numbers says whether an optional one is there):
/// - message: `[1, id, kind, has body]`, then path, body, from;
/// - run: `[2, id, call id, has arguments]`, then name, arguments;
/// - settled: `[3, id, status, kind, has body, has code, has message]`, then body,
///   code, message.
///
/// Numbers and strings go as arguments rather than elements of an array: an element
/// costs a Node-API call and a property store each, several per letter.
pub struct Batch(Vec<Letter>);

impl Batch {
    /// The call's arguments.
    ///
    /// # Safety
    /// On the JavaScript thread, in a handle scope.
    unsafe fn into_args(self, env: sys::napi_env) -> Result<Vec<sys::napi_value>> {
        let mut numbers = Vec::with_capacity(self.0.len() * STRIDE);
        let mut args = vec![std::ptr::null_mut()];
        fn flag<T>(text: &Option<T>) -> f64 {
            f64::from(u8::from(text.is_some()))
        }
        for letter in &self.0 {
            let start = numbers.len();
            match letter {
                Letter::Message {
                    id,
                    path,
                    kind,
                    body,
                    from,
                } => {
                    numbers.extend([1.0, f64::from(*id), f64::from(*kind), flag(body)]);
                    args.push(js_string(env, path.as_bytes())?);
                    push_some(env, &mut args, body)?;
                    // Written on the stack: a message's sender costs no allocation.
                    let mut room = [0; IP_TEXT];
                    let from = codec::display_in(from, &mut room).expect("an address fits");
                    args.push(js_string(env, from)?);
                }
                Letter::Run {
                    id,
                    name,
                    args: run_args,
                    call_id,
                } => {
                    numbers.extend([2.0, f64::from(*id), f64::from(*call_id), flag(run_args)]);
                    args.push(js_string(env, name.as_bytes())?);
                    push_some(env, &mut args, run_args)?;
                }
                Letter::Settled { id, outcome } => {
                    numbers.extend([
                        3.0,
                        f64::from(*id),
                        f64::from(outcome.status),
                        f64::from(outcome.kind),
                        flag(&outcome.body),
                        flag(&outcome.code),
                        flag(&outcome.message),
                    ]);
                    push_some(env, &mut args, &outcome.body)?;
                    push_some(env, &mut args, &outcome.code)?;
                    push_some(env, &mut args, &outcome.message)?;
                }
            }
            numbers.resize(start + STRIDE, 0.0);
        }
        args[0] = float64_array(env, &numbers)?;
        Ok(args)
    }
}

impl JsValuesTupleIntoVec for Batch {
    fn into_vec(self, env: sys::napi_env) -> Result<Vec<sys::napi_value>> {
        // SAFETY: napi-rs converts a thread-safe call's arguments on the JavaScript
        // thread, in the call's handle scope.
        unsafe { self.into_args(env) }
    }
}

/// A JavaScript string of the UTF-8 `text` (V8 replaces what is not valid UTF-8):
/// copied as Latin-1 when it is ASCII, which skips decoding it.
/// Room for an IP address as text (an IPv6 one with an embedded IPv4 one is the longest).
const IP_TEXT: usize = 45;

unsafe fn js_string(env: sys::napi_env, text: &[u8]) -> Result<sys::napi_value> {
    let mut value = std::ptr::null_mut();
    let (bytes, len) = (text.as_ptr().cast(), text.len() as isize);
    check_status!(if text.is_ascii() {
        sys::napi_create_string_latin1(env, bytes, len, &mut value)
    } else {
        sys::napi_create_string_utf8(env, bytes, len, &mut value)
    })?;
    Ok(value)
}

unsafe fn push_some(
    env: sys::napi_env,
    args: &mut Vec<sys::napi_value>,
    text: &Option<impl AsRef<[u8]>>,
) -> Result<()> {
    if let Some(text) = text {
        args.push(js_string(env, text.as_ref())?);
    }
    Ok(())
}

/// A `Float64Array` holding `numbers`.
unsafe fn float64_array(env: sys::napi_env, numbers: &[f64]) -> Result<sys::napi_value> {
    let mut data = std::ptr::null_mut();
    let mut buffer = std::ptr::null_mut();
    check_status!(sys::napi_create_arraybuffer(
        env,
        std::mem::size_of_val(numbers),
        &mut data,
        &mut buffer
    ))?;
    if !numbers.is_empty() {
        // SAFETY: the new buffer holds exactly `numbers`' bytes; f64 has no alignment
        // need beyond the buffer's allocation.
        std::ptr::copy_nonoverlapping(numbers.as_ptr(), data.cast::<f64>(), numbers.len());
    }
    let mut array = std::ptr::null_mut();
    check_status!(sys::napi_create_typedarray(
        env,
        sys::TypedarrayType::float64_array,
        numbers.len(),
        buffer,
        0,
        &mut array
    ))?;
    Ok(array)
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
        let argv = batch.into_args(env)?;
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
                    mailbox.start_adopted(ctx.env);
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

    /// On the JavaScript thread, in a callback of its loop: delivers what was posted, at
    /// once, and ends the hold `held` (see [`Mailbox::hold`]). The delivery function
    /// runs in a callback scope, so the promises it settles go on before the loop does.
    pub fn deliver_held(self: &Arc<Self>, held: bool) {
        // A connection adopted during the hold found its wake-up taken: it starts here.
        self.start_adopted(Env::from_raw(self.direct.env));
        let (batch, left) = {
            let mut queue = self.queue.lock().expect("not poisoned");
            if queue.letters.is_empty() {
                if held {
                    queue.scheduled = false;
                }
                return;
            }
            queue.take(held)
        };
        if left {
            self.wake_again();
        }
        // SAFETY: called on the JavaScript thread (the loop's callbacks run there).
        if let Err(e) = unsafe { self.direct.call(batch) } {
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

    /// Starts reading or serving, on this thread, the connections adopted since the last
    /// delivery.
    fn start_adopted(self: &Arc<Self>, env: Env) {
        for adopted in std::mem::take(&mut *self.adopted.lock().expect("not poisoned")) {
            match adopted {
                Adopted::Read(inflow) => reader::start(env, inflow, self.clone()),
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
