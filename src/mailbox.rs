//! Crossings into JavaScript, batched: messages to answer, task runs to start and calls
//! that settled are posted here from any thread, and one wake-up of the JavaScript
//! thread delivers everything posted since the last one, as one flat array. Under load
//! a wake-up carries many letters; idle, a letter costs one wake-up, as before.

use std::sync::{
    atomic::{AtomicBool, Ordering},
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

/// Letters waiting for the next wake-up, whether one is already on its way, and the
/// wake-ups made and letters delivered so far (the benchmarks' "calls per wake-up").
#[derive(Default)]
struct Queue {
    letters: Vec<Letter>,
    scheduled: bool,
    wakes: u64,
    delivered: u64,
}

/// What one wake-up delivers: the letters, turned into a JavaScript array on the
/// JavaScript thread.
pub struct Batch(Vec<Letter>);

type Wake = ThreadsafeFunction<(), (), FnArgs<(Batch,)>, Status, false, true>;

/// The mailbox of one node.
pub struct Mailbox {
    queue: Arc<Mutex<Queue>>,
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
        let taken = queue.clone();
        let wake = deliver
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |_| {
                let mut queue = taken.lock().expect("not poisoned");
                queue.scheduled = false;
                queue.wakes += 1;
                queue.delivered += queue.letters.len() as u64;
                Ok(FnArgs::from((Batch(std::mem::take(&mut queue.letters)),)))
            })?;
        Ok(Mailbox {
            queue,
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
