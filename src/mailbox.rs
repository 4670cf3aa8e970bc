//! Crossings into JavaScript, batched: messages to answer, task runs to start and calls
//! that settled are posted here from any thread, and one wake-up of the JavaScript
//! thread delivers everything posted since the last one, as one flat array. Under load
//! a wake-up carries many letters; idle, a letter costs one wake-up, as before.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Mutex,
};

use napi::{
    bindgen_prelude::{FnArgs, Function, Null, ToNapiValue},
    check_status, sys,
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Result, Status,
};
use swarm_core::messaging::Reply;

use crate::host::split_payload;

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

/// Letters waiting for the next wake-up, and whether one is already on its way.
#[derive(Default)]
struct Queue {
    letters: Vec<Letter>,
    scheduled: bool,
}

/// Letters posted and wake-ups made, for the benchmarks' "calls per wake-up".
#[derive(Default)]
struct Counters {
    wakes: AtomicU64,
    letters: AtomicU64,
}

/// What one wake-up delivers: the letters, turned into a JavaScript array on the
/// JavaScript thread.
pub struct Batch(Vec<Letter>);

type Wake = ThreadsafeFunction<(), (), FnArgs<(Batch,)>, Status, false, true>;

/// The mailbox of one node.
pub struct Mailbox {
    queue: Arc<Mutex<Queue>>,
    counters: Arc<Counters>,
    /// Weak: pending letters never keep the process alive on their own; the node's other
    /// callbacks do, until it is closed.
    wake: Wake,
    /// False once the node is closed: no new messages or runs, settled calls still come.
    accepting: AtomicBool,
}

impl Mailbox {
    /// A mailbox delivering to `deliver(batch)`.
    pub fn new(deliver: Function<'_, FnArgs<(Batch,)>, ()>) -> Result<Self> {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let counters = Arc::new(Counters::default());
        let (taken, counted) = (queue.clone(), counters.clone());
        let wake = deliver
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |_| {
                let letters = {
                    let mut queue = taken.lock().expect("not poisoned");
                    queue.scheduled = false;
                    std::mem::take(&mut queue.letters)
                };
                counted.wakes.fetch_add(1, Ordering::Relaxed);
                counted
                    .letters
                    .fetch_add(letters.len() as u64, Ordering::Relaxed);
                Ok(FnArgs::from((Batch(letters),)))
            })?;
        Ok(Mailbox {
            queue,
            counters,
            wake,
            accepting: AtomicBool::new(true),
        })
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
        !wake || self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
    }

    /// No new messages or runs from now on.
    pub fn close(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// `(wake-ups, letters delivered)` so far.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.counters.wakes.load(Ordering::Relaxed),
            self.counters.letters.load(Ordering::Relaxed),
        )
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
        let mut index = 0u32;
        let mut put = |value: sys::napi_value| {
            let status = sys::napi_set_element(env, array, index, value);
            index += 1;
            check_status!(status)
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
                    put(u32::to_napi_value(env, 1)?)?;
                    put(u32::to_napi_value(env, id)?)?;
                    put(String::to_napi_value(env, path)?)?;
                    put(u32::to_napi_value(env, kind)?)?;
                    put(Option::to_napi_value(env, body)?)?;
                    put(String::to_napi_value(env, from)?)?;
                    put(Null::to_napi_value(env, Null)?)?;
                }
                Letter::Run {
                    id,
                    name,
                    args,
                    call_id,
                } => {
                    put(u32::to_napi_value(env, 2)?)?;
                    put(u32::to_napi_value(env, id)?)?;
                    put(String::to_napi_value(env, name)?)?;
                    put(Option::to_napi_value(env, args)?)?;
                    put(u32::to_napi_value(env, call_id)?)?;
                    put(Null::to_napi_value(env, Null)?)?;
                    put(Null::to_napi_value(env, Null)?)?;
                }
                Letter::Settled { id, outcome } => {
                    put(u32::to_napi_value(env, 3)?)?;
                    put(u32::to_napi_value(env, id)?)?;
                    put(u32::to_napi_value(env, outcome.status)?)?;
                    put(u32::to_napi_value(env, outcome.kind)?)?;
                    put(Option::to_napi_value(env, outcome.body)?)?;
                    put(Option::to_napi_value(env, outcome.code)?)?;
                    put(Option::to_napi_value(env, outcome.message)?)?;
                }
            }
        }
        Ok(array)
    }
}
