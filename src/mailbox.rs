//! Crossings into JavaScript, batched: messages to answer, task runs to start and calls
//! that settled are posted here from any thread, and one wake-up of the JavaScript
//! thread delivers everything posted since the last one in one call: the letters'
//! numbers in one `Float64Array`, their strings as the call's further arguments (see
//! [`Batch`]). Under load a wake-up carries many letters; idle, a letter costs one
//! wake-up, as before.
//!
//! On Unix the mailbox is also where multiplexed connections are read, on the
//! JavaScript thread's own loop, and what came in is delivered at once, without a
//! wake-up (`mailbox/on_loop.rs`).

#[cfg(unix)]
mod on_loop;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex, OnceLock,
};

use napi::{
    bindgen_prelude::Function,
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Env, Result, Status,
};
use swarm_core::messaging::loop_io::EventLoop;

use crate::batch::{Batch, Letter, Settlement};

/// Counts a run handed back to JavaScript (`chain.rs`) as a round of this callback of the
/// loop; false when the callback's rounds are spent, and the run waits for the next one.
pub fn spend_round() -> bool {
    #[cfg(unix)]
    return on_loop::spend_round();
    #[cfg(not(unix))]
    true
}

/// Letters per call into JavaScript at most: their strings are the call's arguments,
/// and a call's arguments live on the stack.
const LETTERS_PER_CALL: usize = 1024;

/// Room for letters the queue keeps at least, once it delivered some.
const ROOM_AT_LEAST: usize = 16;

/// Letters waiting for the next wake-up, whether one is already on its way, and the
/// wake-ups made and letters delivered so far (the benchmarks' "calls per wake-up").
#[derive(Default)]
struct Queue {
    letters: Vec<Letter>,
    /// What the JavaScript thread takes on at its next delivery, besides letters: under
    /// the same lock, so a hold never ends with any of it left unseen.
    #[cfg(unix)]
    adopted: Vec<on_loop::Adopted>,
    scheduled: bool,
    wakes: u64,
    delivered: u64,
}

impl Queue {
    /// The letters posted first, as many as one call takes; `None` when there are none.
    /// The first batch of a wake-up or hold counts it (`first`), its further rounds do not.
    fn take(&mut self, first: bool) -> Option<Batch> {
        if self.letters.is_empty() {
            return None;
        }
        let taken = if self.letters.len() > LETTERS_PER_CALL {
            let rest = self.letters.split_off(LETTERS_PER_CALL);
            std::mem::replace(&mut self.letters, rest)
        } else {
            // Room for as many as this call took: the next ones are posted without the
            // vector growing step by step (nor shrinking to one letter's room in a
            // serialized queue's rounds).
            let room = Vec::with_capacity(self.letters.len().max(ROOM_AT_LEAST));
            std::mem::replace(&mut self.letters, room)
        };
        self.wakes += u64::from(first);
        self.delivered += taken.len() as u64;
        Some(Batch(taken))
    }

    /// Ends the wake-up or hold that letters were taken for. True when letters (or
    /// adopted work) are left: then it goes on, for another wake-up, which the caller
    /// makes ([`Mailbox::wake_again`]).
    fn end_hold(&mut self) -> bool {
        #[cfg(unix)]
        let adopted = !self.adopted.is_empty();
        #[cfg(not(unix))]
        let adopted = false;
        self.scheduled = adopted || !self.letters.is_empty();
        self.scheduled
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
    /// The connections read and served on the JavaScript thread's loop, and the
    /// deliveries made there at once.
    #[cfg(unix)]
    on_loop: on_loop::OnLoop,
}

impl Mailbox {
    /// A mailbox delivering to `deliver(batch)`.
    pub fn new(env: &Env, deliver: Function<'_, Batch, ()>) -> Result<Arc<Self>> {
        #[cfg(unix)]
        let direct = on_loop::Direct::new(env, &deliver)?;
        #[cfg(not(unix))]
        let _ = env;
        let mailbox = Arc::new_cyclic(|_me| Mailbox {
            queue: Arc::new(Mutex::new(Queue::default())),
            wake: OnceLock::new(),
            accepting: AtomicBool::new(true),
            #[cfg(unix)]
            on_loop: on_loop::OnLoop::new(env, direct, _me.clone()),
        });
        let (taken, me) = (mailbox.queue.clone(), Arc::downgrade(&mailbox));
        // Node calls a thread-safe function again in the same callback of the loop when
        // it was called meanwhile, a bounded number of times: letters posted during a
        // wake-up's call (a serialized task's next run) are delivered by the next one.
        let wake = deliver
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |#[cfg_attr(not(unix), allow(unused_variables))] ctx| {
                // Without the mailbox (the node is gone), what it adopted went with it.
                #[cfg(unix)]
                if let Some(mailbox) = me.upgrade() {
                    // SAFETY: a thread-safe function's call, on the JavaScript thread.
                    let scope = unsafe { crate::scope::Scope::entered(ctx.env.raw()) };
                    mailbox.start_adopted(&scope);
                }
                let mut queue = taken.lock().expect("not poisoned");
                let batch = queue.take(true).unwrap_or(Batch(Vec::new()));
                if queue.end_hold() {
                    drop(queue);
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
        self.accepts() && self.post(letter)
    }

    /// Whether messages and runs are still taken (the node is not closed).
    pub fn accepts(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Posts a settled call; delivered even while the node closes.
    pub fn post_settled(&self, id: u32, outcome: Settlement) {
        self.post(Letter::Settled { id, outcome });
    }

    fn post(&self, letter: Letter) -> bool {
        let wake = {
            let mut queue = self.queue.lock().expect("not poisoned");
            queue.letters.push(letter);
            !std::mem::replace(&mut queue.scheduled, true)
        };
        if wake && !self.wake() {
            self.not_woken();
            return false;
        }
        true
    }

    /// Makes the wake-up that [`Queue::end_hold`] left letters for.
    fn wake_again(&self) {
        if !self.wake() {
            self.not_woken();
        }
    }

    /// A wake-up could not be made (the environment ends): the next post tries again,
    /// and work waiting for the JavaScript thread goes elsewhere.
    fn not_woken(&self) {
        let mut queue = self.queue.lock().expect("not poisoned");
        queue.scheduled = false;
        #[cfg(unix)]
        {
            let adopted = std::mem::take(&mut queue.adopted);
            drop(queue);
            on_loop::not_taken(adopted);
        }
    }

    fn wake(&self) -> bool {
        self.wake.get().is_some_and(|wake| {
            wake.call((), ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
        })
    }

    /// What reads multiplexed connections on the JavaScript thread's loop: the mailbox
    /// itself, where that loop can watch their sockets (Unix); elsewhere the runtime
    /// reads them.
    pub fn event_loop(self: &Arc<Self>) -> Option<Arc<dyn EventLoop>> {
        #[cfg(unix)]
        return self
            .on_loop
            .attached()
            .then(|| self.clone() as Arc<dyn EventLoop>);
        #[cfg(not(unix))]
        None
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
