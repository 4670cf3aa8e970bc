//! A task call to the key's owner on another node, and what happens when it did not run
//! there: it is tried again on the key's owner of the moment, within the task's timeout.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tracing::debug;

use super::{handoff::Caller, ExecError, Inner, RingAt, Swarm, TaskArgs, TaskValue, NOT_RUN};
use crate::messaging::{
    client::Unsent, Payload, Reply, Routed, SendError, TaskRequest, Trace, TASK_TOPIC,
};
use crate::tasks::TaskNote;

/// The owner a task call is sent to, and the ring that chose it.
pub(super) struct Chosen {
    pub(super) ip: String,
    generation: u64,
    checksum: u64,
}

impl Chosen {
    pub(super) fn on(ring: &RingAt, ip: &str) -> Chosen {
        Chosen {
            ip: ip.to_owned(),
            generation: ring.generation,
            checksum: ring.checksum,
        }
    }
}

impl Inner {
    /// The request that runs a task (`body`) on `chosen`, saying which key and ring
    /// routed it there, for the receiver to check that it owns the key.
    pub(super) fn task_request(
        &self,
        chosen: &Chosen,
        key: &str,
        body: Payload,
    ) -> Result<Unsent, SendError> {
        let routed = Routed {
            key: key.to_owned(),
            ring: chosen.checksum,
            kind: Some(self.ring_kind()),
        };
        Ok(self
            .client
            .unsent(&chosen.ip, TASK_TOPIC, body)?
            .routed_by(&routed))
    }
}

impl Swarm {
    /// Sends a task to its owner (`chosen` on the ring of a topology generation). A call
    /// that provably did not run there (no connection could be made, or a closing node
    /// refused it) is tried again, within the task's timeout, on the key's owner of the
    /// moment: after a backoff, or as soon as the topology changes. A call that may have
    /// been delivered is never sent again: it fails, saying so. A traced call also tells
    /// the attempts that did not run, for its caller's span.
    pub(super) async fn exec_remote(
        &self,
        name: &str,
        key: &str,
        chosen: Chosen,
        args: Bytes,
        mut first: Attempt,
    ) -> (Result<TaskValue, ExecError>, Vec<Retried>) {
        let mut retried = std::mem::take(&mut first.retried);
        let outcome = self
            .attempts(name, key, chosen, args, first, &mut retried)
            .await;
        (outcome, retried)
    }

    /// [`Swarm::exec_remote`]'s attempts, each that did not run noted in `retried` when
    /// the call is traced.
    async fn attempts(
        &self,
        name: &str,
        key: &str,
        mut chosen: Chosen,
        args: Bytes,
        first: Attempt,
        retried: &mut Vec<Retried>,
    ) -> Result<TaskValue, ExecError> {
        let timeout = self
            .inner
            .tasks
            .options(name)
            .map_or(Duration::from_secs(30), |o| o.timeout);
        let deadline = first.started + timeout;
        let trace = first.trace;
        let body = Payload::Json(TaskRequest::encode(name, &args));
        let mut backoff = Duration::from_millis(25);
        let mut not_run = first.not_run;
        loop {
            let error = match not_run.take() {
                Some(error) => error,
                None => {
                    let ip = &chosen.ip;
                    let begun = trace.as_ref().map(|_| epoch_ms());
                    debug!(target: "node_swarm_kb::tasks", "Sending task {name} to {ip}");
                    let flight = self.inner.counters.sending(body.body().len());
                    let request = self.inner.task_request(&chosen, key, body.clone());
                    let sent = match request {
                        Ok(request) => {
                            let request = request.traced(trace.clone());
                            self.inner.client.send_request(request).await
                        }
                        Err(bad) => Err(bad),
                    };
                    flight.settle(&sent);
                    match attempted(name, ip, sent) {
                        Ok(outcome) => return outcome,
                        Err(error) => {
                            if let Some(start_ms) = begun {
                                retried.push(Retried::now(ip, start_ms, &error));
                            }
                            error
                        }
                    }
                }
            };
            // Not run: ask the ring again when the topology moves past the one that chose
            // this owner, or after a backoff (a pod that is listed before it listens).
            debug!(target: "node_swarm_kb::tasks", "Task {name} not run ({error}): retrying in {backoff:?} or on a topology change");
            let mut views = self.inner.topology.subscribe();
            let wait = tokio::time::Instant::now() + backoff;
            let moved = views.wait_for(|v| v.generation > chosen.generation);
            let _ = tokio::time::timeout_at(wait.min(deadline), moved).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(ExecError::Remote {
                    task: name.to_owned(),
                    ip: chosen.ip,
                    reason: format!("{error}; the task did not run"),
                    status: None,
                });
            }
            self.inner.tasks.note(name, TaskNote::Retried);
            backoff = (backoff * 2).min(Duration::from_secs(1));
            let ring = self.ring();
            match ring.ring.get(key) {
                Some(next) if !self.is_local(next) => chosen = Chosen::on(&ring, next),
                _ => {
                    let here = TaskArgs::Json(args.clone(), trace.clone());
                    match self.inner.exec_local(name, key, here, Caller::Here).await {
                        // Handed away meanwhile: routed again, as a call that did not run.
                        Err(ExecError::Moved(moved)) => not_run = Some(moved),
                        outcome => return outcome,
                    }
                }
            }
        }
    }
}

/// How a remote task call began: when, why it did not run if it was sent already, and
/// the trace it belongs to, with the attempts that did not run so far.
pub(super) struct Attempt {
    pub(super) started: tokio::time::Instant,
    pub(super) not_run: Option<String>,
    pub(super) trace: Option<Trace>,
    pub(super) retried: Vec<Retried>,
}

impl Attempt {
    pub(super) fn none(trace: Option<Trace>) -> Attempt {
        Attempt {
            started: tokio::time::Instant::now(),
            not_run: None,
            trace,
            retried: Vec::new(),
        }
    }
}

/// An attempt of a traced task call that did not run: on which node, when (ms since the
/// Unix epoch, as JavaScript's clock counts) and why. The caller's span shows each as a
/// child.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retried {
    pub ip: String,
    pub start_ms: f64,
    pub end_ms: f64,
    pub reason: String,
}

impl Retried {
    /// An attempt on `ip` begun at `start_ms` that did not run, ending now.
    pub(super) fn now(ip: &str, start_ms: f64, reason: &str) -> Retried {
        Retried {
            ip: ip.to_owned(),
            start_ms,
            end_ms: epoch_ms(),
            reason: reason.to_owned(),
        }
    }
}

/// Now, in ms since the Unix epoch.
pub(super) fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1000.0)
}

/// What sending task `name` to `ip` came to: its outcome, or why it did not run there
/// (no connection could be made, or a closing node refused it: it may be sent again).
pub(super) fn attempted(
    name: &str,
    ip: &str,
    sent: Result<Reply, SendError>,
) -> Result<Result<TaskValue, ExecError>, String> {
    let remote = |reason: String, status: Option<u16>| ExecError::Remote {
        task: name.to_owned(),
        ip: ip.to_owned(),
        reason,
        status,
    };
    let text = |reply: &Reply| String::from_utf8_lossy(reply.payload.body()).into_owned();
    match sent {
        Ok(reply) if reply.is_success() => Ok(Ok(TaskValue::new(reply.payload))),
        Ok(reply) if reply.status == NOT_RUN => Err(text(&reply)),
        Ok(reply) => Ok(Err(remote(text(&reply), Some(reply.status)))),
        Err(e @ SendError::Unreachable { .. }) => Err(e.to_string()),
        // It says so itself.
        Err(e @ (SendError::Left { .. } | SendError::BadAddress(_))) => {
            Ok(Err(remote(e.to_string(), None)))
        }
        // The request was written, and no answer came back.
        Err(e) => Ok(Err(remote(format!("{e}; the task may have run"), None))),
    }
}
