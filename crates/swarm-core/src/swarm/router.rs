//! Routes inbound messages: `_task` requests to the task engine, answered as 0.5.1 answers
//! them, the rest to the host. A task request that says which key routed it runs only on
//! that key's owner (`docs/handoff.md`).

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::sync::Semaphore;

use super::{
    handoff::{Caller, RELEASE_TOPIC},
    peer_rings::RING_TOPIC,
    ExecError, Inner, TaskArgs, NOT_RUN,
};
use crate::{
    local,
    messaging::{Answering, Dispatch, Inbound, Payload, Reply, Routed, TaskRequest, TASK_TOPIC},
    ring::PeerRings,
    stats::Transports,
    tasks::TaskNote,
};

/// How long a node whose view differs from its caller's waits for its own view to change
/// before it refuses a key it does not own: pods see a change tens of milliseconds apart.
const VIEW_WAIT: Duration = Duration::from_secs(1);

impl Inner {
    pub(super) async fn answer_task(self: &Arc<Self>, message: Inbound) -> Reply {
        let request = match TaskRequest::parse(&message.payload) {
            Ok(request) => request,
            Err(e) => {
                self.counters.refused(400);
                return Reply::error(400, &e.to_string());
            }
        };
        self.counters.received(message.payload.body().len());
        // A 0.5.1 caller names no key: it is the one 0.5.1 routed by. A caller on
        // another kind of ring placed the key by a ring this node cannot check: it runs,
        // as a 0.5.1 caller's request does (the meeting of the two rings is reported).
        let key = match &message.meta.routed {
            Some(routed) if routed.kind == Some(self.ring_kind()) => {
                if let Err(moved) = self.owner_check(&request.task, routed).await {
                    return self.moved(&request.task, &moved);
                }
                routed.key.clone()
            }
            Some(routed) => routed.key.clone(),
            None => request.routing_key(),
        };
        let args = TaskArgs::Json(request.args, message.meta.trace);
        match self
            .exec_local(&request.task, &key, args, Caller::Peer)
            .await
        {
            Ok(value) => Reply::ok(value.payload),
            Err(ExecError::NoSuchTask) => {
                Reply::error(500, &format!("No such task {}", request.task))
            }
            Err(ExecError::Failed(f)) => Reply::error(f.status, &f.message),
            Err(ExecError::Closed) => {
                Reply::error(NOT_RUN, "swarm is closing: the task did not run")
            }
            Err(ExecError::Moved(moved)) => self.moved(&request.task, &moved),
            Err(e) => Reply::error(500, &e.to_string()),
        }
    }

    /// The refusal of a call of `task` whose key is not this node's: it did not run.
    fn moved(&self, task: &str, why: &str) -> Reply {
        self.tasks.note(task, TaskNote::Moved);
        Reply::error(NOT_RUN, why)
    }

    /// Whether this node owns `routed.key` by its own view, which is what lets it run a
    /// call of `task`. A view other than the caller's (another ring checksum) may be
    /// about to change: the change is waited for, up to [`VIEW_WAIT`] and never past the
    /// task's timeout, before it refuses, saying why.
    async fn owner_check(&self, task: &str, routed: &Routed) -> Result<(), String> {
        let timeout = self.tasks.options(task).map_or(VIEW_WAIT, |o| o.timeout);
        let deadline = tokio::time::Instant::now() + VIEW_WAIT.min(timeout);
        let mut views = self.topology.subscribe();
        loop {
            let ring = self.ring();
            let owner = ring.ring.get(&routed.key);
            if owner.is_some_and(|ip| self.local_ips.contains(ip)) {
                return Ok(());
            }
            let changed = views.wait_for(|view| view.generation > ring.generation);
            if ring.checksum == routed.ring
                || !matches!(tokio::time::timeout_at(deadline, changed).await, Ok(Ok(_)))
            {
                let key = &routed.key;
                return Err(match owner {
                    Some(owner) => format!("key {key} moved: its owner is {owner}"),
                    None => format!("key {key} has no owner in this node's view"),
                });
            }
        }
    }
}

/// Routes inbound messages: `_task` to the task engine, the rest to the host.
pub(super) struct Router(pub(super) Arc<Inner>);

impl Dispatch for Router {
    fn dispatch(&self, mut message: Inbound) -> Answering {
        // A peer asking which ring this node uses: not the app's traffic, not counted.
        if message.path == RING_TOPIC {
            let ring = Reply::ok(Payload::Text(self.0.ring_kind().name().into()));
            return Answering::Later(Box::pin(std::future::ready(ring)));
        }
        self.0
            .last_request_ms
            .store(self.0.elapsed_ms(), Ordering::Relaxed);
        // A task request is counted once its body is read as one (`answer_task`).
        if message.path != TASK_TOPIC {
            self.0.counters.received(message.payload.body().len());
        }
        if message.path == RELEASE_TOPIC {
            let inner = self.0.clone();
            return Answering::Later(Box::pin(async move { inner.answer_release(message).await }));
        }
        if message.path != TASK_TOPIC {
            return self.0.host.message(message);
        }
        let inner = self.0.clone();
        // Read on the loop's thread, the request is answered there, as the handler answers.
        if let Some(responder) = inner
            .client
            .on_loop_thread()
            .then(|| message.responder.take())
            .flatten()
        {
            let runtime = inner.runtime.clone();
            local::start_here(
                async move {
                    let answer = inner.answer_task(message).await;
                    // Written at the end of the loop's turn, unless a timer or a shutdown
                    // moved the work to the runtime.
                    if inner.client.on_loop_thread() {
                        responder.reply_later(&answer);
                    } else {
                        responder.reply(&answer);
                    }
                },
                runtime,
            );
            return Answering::Taken;
        }
        Answering::Later(Box::pin(async move { inner.answer_task(message).await }))
    }

    fn refused(&self, status: u16) {
        self.0.counters.refused(status);
    }

    fn serving(&self, in_flight: Arc<Semaphore>, max: usize) {
        let _ = self.0.serving.set((in_flight, max));
    }

    fn transports(&self) -> Option<Arc<Transports>> {
        Some(self.0.counters.transports())
    }

    fn rings(&self) -> Option<Arc<PeerRings>> {
        Some(self.0.peer_rings.clone())
    }
}
