//! The answer to a multiplexed request, given once from any thread.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::{
    outbox::{Outbox, EAGER},
    reply_frame, Reply,
};

/// The answer to a multiplexed request: given once, by its [`Responder`] from any
/// thread, or by the server's task (the handler's future resolved, or timed out).
pub(crate) struct Answer {
    outbox: Arc<Outbox>,
    id: u32,
    answered: AtomicBool,
    /// The request's slot among those in flight, given back with the answer.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    /// Told of every answer given: the server waits on it while it drains.
    given: Arc<Notify>,
}

impl Answer {
    pub(crate) fn new(
        outbox: Arc<Outbox>,
        id: u32,
        slot: OwnedSemaphorePermit,
        given: Arc<Notify>,
    ) -> Arc<Answer> {
        Arc::new(Answer {
            outbox,
            id,
            answered: AtomicBool::new(false),
            slot: Mutex::new(Some(slot)),
            given,
        })
    }

    /// Queues `reply` as the answer, for the writer task or (`later`) for this thread's
    /// next [`flush`](super::flush); false when it was given already.
    pub(crate) fn give(&self, reply: &Reply, later: bool) -> bool {
        if self.answered.swap(true, Ordering::AcqRel) {
            return false;
        }
        let frame = reply_frame(self.id, reply);
        if later {
            self.outbox.push_later(frame, EAGER);
        } else {
            self.outbox.push(frame);
        }
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.given.notify_one();
        true
    }

    pub(crate) fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }
}

/// Answers a multiplexed request from any thread, without waking the server's task:
/// a dispatcher that takes it from the [`Inbound`](crate::messaging::Inbound) answers through it (see
/// [`Answering::Taken`](crate::messaging::Answering::Taken)). Unanswered within the handler timeout, the request is
/// answered `500 operation timed out`.
pub struct Responder(pub(crate) Arc<Answer>);

impl Responder {
    /// Answers with `reply`, written at this thread's next [`flush`](super::flush); false when the
    /// request was answered already (it timed out).
    pub fn reply_later(&self, reply: &Reply) -> bool {
        self.0.give(reply, true)
    }

    /// Answers with `reply`, written by the connection's writer task.
    pub fn reply(&self, reply: &Reply) -> bool {
        self.0.give(reply, false)
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Responder").field(&self.0.id).finish()
    }
}
