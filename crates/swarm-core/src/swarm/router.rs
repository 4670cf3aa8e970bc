//! Routes inbound messages: `_task` requests to the task engine, answered as 0.5.1 answers
//! them, the rest to the host.

use std::sync::{atomic::Ordering, Arc};

use super::{ExecError, Inner, TaskArgs, NOT_RUN};
use crate::{
    local,
    messaging::{Answering, Dispatch, Inbound, Reply, TaskRequest, TASK_TOPIC},
};

impl Inner {
    pub(super) async fn answer_task(&self, message: Inbound) -> Reply {
        let request = match TaskRequest::parse(&message.payload) {
            Ok(request) => request,
            Err(e) => return Reply::error(400, &e.to_string()),
        };
        match self
            .exec_local(&request.task, TaskArgs::Json(request.args))
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
            Err(e) => Reply::error(500, &e.to_string()),
        }
    }
}

/// Routes inbound messages: `_task` to the task engine, the rest to the host.
pub(super) struct Router(pub(super) Arc<Inner>);

impl Dispatch for Router {
    fn dispatch(&self, mut message: Inbound) -> Answering {
        self.0
            .last_request_ms
            .store(self.0.elapsed_ms(), Ordering::Relaxed);
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
}
