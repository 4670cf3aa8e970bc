//! `SwarmNode`: one running engine, driven by the facade (`index.js`).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use swarm_core::{
    messaging::{Reply, Trace},
    swarm::{ExecError, Swarm, TaskArgs, TaskFailure, TaskValue},
    topology::Member,
};

use crate::{
    bare::{bare_function, key_function, Args, Returned},
    batch::{join_payload, Batch, Settlement},
    chain::HandBack,
    config::{NodeOptions, TaskOptionsJs},
    host::{error_code, send_error_code, Callback, Callbacks, EventArgs, JsHost, LocalArgs},
    mailbox::Mailbox,
    scope::Scope,
};

/// What a node knows of one member of the cluster.
#[napi(object)]
pub struct NodeInfo {
    pub ip: String,
    /// The pod's name, when known.
    pub name: Option<String>,
    /// The Kubernetes node the pod runs on.
    pub node_name: Option<String>,
    pub zone: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl From<&Member> for NodeInfo {
    fn from(m: &Member) -> Self {
        NodeInfo {
            ip: m.ip.to_string(),
            name: m.pod.as_deref().map(str::to_owned),
            node_name: m.node_name.as_deref().map(str::to_owned),
            zone: m.zone.as_deref().map(str::to_owned),
            ready: m.ready,
            serving: m.serving,
            terminating: m.terminating,
        }
    }
}

/// Wake-ups of the JavaScript thread and the letters they delivered.
#[napi(object)]
pub struct Crossings {
    pub wakes: f64,
    pub letters: f64,
}

/// The servers of a ring, for `ownerSlot`, and its checksum (16 hex digits), equal on
/// nodes with the same view.
#[napi(object)]
pub struct RingServers {
    pub generation: f64,
    pub servers: Vec<String>,
    pub checksum: String,
}

/// What a task is doing on this node.
#[napi(object)]
pub struct TaskStatsJs {
    /// Executions running now.
    pub running: u32,
    /// Executions queued behind the running one.
    pub queued: u32,
    /// Callers waiting for the running and queued executions.
    pub waiters: u32,
}

fn exec_settlement(result: std::result::Result<TaskValue, ExecError>) -> Settlement {
    match result {
        Ok(value) => Settlement::reply(Reply {
            status: 200,
            payload: value.payload,
        }),
        Err(ExecError::Failed(f)) => Settlement::error(
            error_code(&ExecError::Failed(f.clone())),
            u32::from(f.status),
            f.message,
        ),
        Err(e @ ExecError::Remote { status, .. }) => {
            Settlement::error(error_code(&e), status.map_or(0, u32::from), e.to_string())
        }
        Err(e) => Settlement::error(error_code(&e), 0, e.to_string()),
    }
}

/// One running node of the swarm.
#[napi]
pub struct SwarmNode {
    swarm: Swarm,
    host: Arc<JsHost>,
}

/// Starts a node: binds the messaging port and starts the topology. Resolves before the
/// first topology is known; await `ready()` for it. `deliver` gets the mailbox's
/// batches: the letters' numbers, `[tag, id, a, b, c, d, e]` each, then their strings
/// (see `mailbox.rs`).
#[napi(ts_return_type = "Promise<SwarmNode>")]
pub fn start_node<'env>(
    env: &'env Env,
    options: NodeOptions,
    #[napi(ts_arg_type = "(numbers: Float64Array, ...strings: string[]) => void")]
    deliver: Function<'env, Batch, ()>,
    on_event: Callback<EventArgs>,
    on_local: Callback<LocalArgs>,
) -> Result<PromiseRaw<'env, SwarmNode>> {
    let mut config = options.into_config()?;
    let mailbox = Mailbox::new(env, deliver)?;
    config.client.event_loop = mailbox.event_loop();
    let host = JsHost::new(Callbacks { on_event, on_local }, mailbox);
    env.spawn_future(async move {
        match Swarm::start(config, host.clone()).await {
            Ok(swarm) => Ok(SwarmNode { swarm, host }),
            Err(e) => {
                host.release();
                // The facade turns the prefix into the error's `code`.
                Err(Error::new(
                    Status::GenericFailure,
                    format!("{}: {e}", e.code()),
                ))
            }
        }
    })
}

#[napi]
impl SwarmNode {
    /// Resolves once the first topology is known.
    #[napi]
    pub async fn ready(&self) -> Result<()> {
        self.swarm
            .ready()
            .await
            .map_err(|e| Error::from_reason(e.to_string()))
    }

    /// The current nodes, in IP string order.
    #[napi]
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.swarm
            .view()
            .nodes
            .values()
            .map(NodeInfo::from)
            .collect()
    }

    /// Increases with every topology change: the facade caches `nodes` by it.
    #[napi]
    pub fn generation(&self) -> f64 {
        self.swarm.view().generation as f64
    }

    /// The master's IP.
    #[napi]
    pub fn master(&self) -> Option<String> {
        self.swarm.view().master.clone()
    }

    /// The master's epoch when a Lease elects it (the lease's transitions); `null`
    /// under 0.5.1's rule.
    #[napi]
    pub fn master_epoch(&self) -> Option<f64> {
        self.swarm.view().master_epoch.map(|epoch| epoch as f64)
    }

    /// The port the server listens on; `null` when it does not listen.
    #[napi]
    pub fn port(&self) -> Option<u32> {
        self.swarm.local_addr().map(|addr| u32::from(addr.port()))
    }

    /// A function `(key) => number`: the owner of `key` as one number, `generation *
    /// 65536 + index` into the servers of `ringServers()` for that generation, or -1 on
    /// an empty ring, so a look-up crosses the boundary without a string coming back.
    #[napi(ts_return_type = "(key: string) => number")]
    pub fn owner_slot<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let swarm = self.swarm.clone();
        key_function(env, "ownerSlot", move |key| {
            let ring = swarm.ring();
            match ring.ring.index(key) {
                Some(index) if index < 65536 => ring.generation as f64 * 65536.0 + index as f64,
                _ => -1.0,
            }
        })
    }

    /// The servers of the current ring, and the generation it was built for.
    #[napi]
    pub fn ring_servers(&self) -> RingServers {
        let ring = self.swarm.ring();
        RingServers {
            generation: ring.generation as f64,
            servers: ring.ring.servers().to_vec(),
            checksum: format!("{:016x}", ring.checksum),
        }
    }

    /// The calls made for every message, as bare functions (see `bare.rs`). What they
    /// queue for writing on multiplexed connections goes out in the same turn of the
    /// loop, with the turn's other writes (one system call per connection):
    /// - `send(ip, path, kind, body, trace?)`: sends a message to `ip`, as part of
    ///   `trace` (a `traceparent`, then a line feed and the `tracestate` if any);
    ///   returns the id of the call, whose reply or failure comes back through the
    ///   mailbox.
    /// - `reply(id, status, kind, body)`: answers message `id`.
    /// - `execTask(name, key, args, trace?)`: runs task `name` on the owner of `key`;
    ///   `args` is a JSON array, `trace` as for `send`. Returns the id of the call, whose outcome comes back through the
    ///   mailbox. A local call joins its queue before this returns, so calls queue in
    ///   the order JavaScript makes them.
    /// - `taskDone(id, status, kind, body, chain?)`: settles task run `id`: `status` 0 is
    ///   success with the payload, anything else a failure with that status and `body`
    ///   as the message. With `chain`, the task's name, returns the next run of the
    ///   task's queue that this answer started, for JavaScript to run now: its text (its
    ///   trace context, then its JSON arguments), its numbers in `chained`
    ///   (`[runId, callId, length of the trace context]`; see `chain.rs`).
    #[napi(
        ts_return_type = "{ send(ip: string, path: string, kind: number, body: string | null, trace?: string): number; reply(id: number, status: number, kind: number, body: string | null): void; execTask(name: string, key: string, args: string, trace?: string): number; taskDone(id: number, status: number, kind: number, body: string | null, chain?: string): string | undefined; chained: Float64Array }"
    )]
    pub fn call_functions<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let mut calls = Object::new(env)?;
        let (swarm, host) = (self.swarm.clone(), self.host.clone());
        add_function(env, &mut calls, "send", move |args| {
            let payload = join_payload(args.u32(2)?, args.optional_string(3)?);
            let trace = traced(args.optional_string(4)?);
            let id = args.with_texts(0, 1, |ip, path| {
                let (id, settle) = host.new_call();
                swarm.send_later(ip, path, payload, trace, |result| {
                    settle(match result {
                        Ok(reply) => Settlement::reply(reply),
                        Err(e) => Settlement::error(send_error_code(&e), 0, e.to_string()),
                    })
                });
                id
            })?;
            Ok(call_id(id))
        })?;
        let host = self.host.clone();
        add_function(env, &mut calls, "reply", move |args| {
            let status = u16::try_from(args.u32(1)?).unwrap_or(500);
            let payload = join_payload(args.u32(2)?, args.optional_string(3)?);
            host.reply(args.u32(0)?, Reply { status, payload });
            written_this_turn();
            Ok(Returned::Undefined)
        })?;
        let (swarm, host) = (self.swarm.clone(), self.host.clone());
        add_function(env, &mut calls, "execTask", move |args| {
            let json = Bytes::from(args.string(2)?);
            let trace = traced(args.optional_string(3)?);
            let id = args.with_texts(0, 1, |name, key| {
                let (id, settle) = host.new_call();
                swarm.exec_later(name, key, json, trace, |result, retried| {
                    settle(exec_settlement(result).retried(&retried))
                });
                id
            })?;
            Ok(call_id(id))
        })?;
        let host = self.host.clone();
        // SAFETY: `call_functions` is called from JavaScript, on its thread.
        let (hand_back, chained) = HandBack::new(&unsafe { Scope::entered(env.raw()) })?;
        // SAFETY: a value made in this call's scope.
        calls.set_named_property("chained", unsafe {
            Unknown::from_napi_value(env.raw(), chained)
        }?)?;
        add_function(env, &mut calls, "taskDone", move |args| {
            let (status, body) = (args.u32(1)?, args.optional_string(3)?);
            let outcome = if status == 0 {
                Ok(join_payload(args.u32(2)?, body))
            } else {
                Err(TaskFailure::new(
                    u16::try_from(status).unwrap_or(500),
                    body.unwrap_or_default(),
                ))
            };
            let id = args.u32(0)?;
            // The task's name when JavaScript runs the next run of the task's queue that
            // this answer starts, handed back (`chain.rs`).
            if args.kind(4)? != sys::ValueType::napi_string {
                host.task_done(id, outcome);
                written_this_turn();
                return Ok(Returned::Undefined);
            }
            // The name is read before the run is answered: a run caught then is always
            // handed back or posted.
            let text = args.with_text(4, |name| {
                let next = host.task_done_chained(id, outcome);
                written_this_turn();
                next.and_then(|run| host.hand_back(run, name, &hand_back, &args.scope()))
            })?;
            Ok(text.map_or(Returned::Undefined, Returned::Value))
        })?;
        Ok(calls)
    }

    /// `{ wakes, letters }`: wake-ups of the JavaScript thread so far, and the letters
    /// they delivered (the calls per wake-up, under load, is their ratio).
    #[napi]
    pub fn crossings(&self) -> Crossings {
        let (wakes, letters) = self.host.crossings();
        Crossings {
            wakes: wakes as f64,
            letters: letters as f64,
        }
    }

    /// Registers a task; false when the name is taken.
    #[napi]
    pub fn register_task(&self, name: String, options: TaskOptionsJs) -> Result<bool> {
        Ok(self.swarm.register_task(&name, options.into_options()?))
    }

    /// This node's state and counters, as JSON (`swarm.stats()` adds what the facade
    /// knows).
    #[napi]
    pub fn stats_json(&self) -> String {
        serde_json::to_string(&self.swarm.stats()).expect("plain data serializes")
    }

    /// What task `name` is doing on this node, or null when it is not registered.
    #[napi]
    pub fn task_stats(&self, name: String) -> Option<TaskStatsJs> {
        self.swarm.task_stats(&name).map(|s| TaskStatsJs {
            running: s.running as u32,
            queued: s.queued as u32,
            waiters: s.waiters as u32,
        })
    }

    /// Runs task `name` for `key` here, for a local call whose arguments the facade keeps
    /// under `callId`; admitted to its queue before this returns (unless the key is
    /// being handed over), answered through `onLocal`; `ERR_SWARM_MOVED` says to route
    /// it again.
    #[napi]
    pub fn exec_local(&self, name: String, key: String, call_id: u32) {
        let execution = self.swarm.exec_here(&name, &key, TaskArgs::Local(call_id));
        let host = self.host.clone();
        napi::bindgen_prelude::spawn(async move { host.settle_local(call_id, execution.await) });
    }

    /// Stops the node and lets the process exit: no new work, in-flight requests
    /// answered, queued tasks given `graceMs` to finish. Safe to call twice.
    #[napi]
    pub async fn close(&self, grace_ms: f64) {
        self.swarm
            .close(Duration::from_millis(grace_ms.max(0.0) as u64))
            .await;
        self.host.release();
    }
}

/// Sets `calls[name]` to a bare function computing `body`.
fn add_function(
    env: &Env,
    calls: &mut Object,
    name: &str,
    body: impl Fn(&Args) -> Result<Returned> + 'static,
) -> Result<()> {
    calls.set_named_property(name, bare_function(env, name, body)?)
}

/// Has what a per-message call queued for writing go out in this turn of the loop: at
/// the end of the callback it runs in when that writes at its end (a reading callback,
/// the check), else at the end of the turn (`node-loop`); where the loop is not ours
/// (Windows, or a thread the loop could not be attached to), at once.
fn written_this_turn() {
    #[cfg(unix)]
    if node_loop::end_turn_soon() {
        return;
    }
    swarm_core::messaging::mux::flush();
}

/// The trace context of the facade's form (`Trace::from_text`); none when it is not one.
fn traced(text: Option<String>) -> Option<Trace> {
    text.as_deref().and_then(Trace::from_text)
}

/// The id of a call `send` or `execTask` made, its request written in this turn.
fn call_id(id: u32) -> Returned {
    written_this_turn();
    Returned::Number(f64::from(id))
}
