//! One running node: the messaging server and client, the topology, the ring and the
//! task engine, wired together.
//!
//! The embedding (the Node addon, or a test) supplies a [`Host`]: the user's message
//! and task handlers, and a sink for topology events. Everything else runs here.

use std::{
    collections::HashSet,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{net::TcpListener, runtime::Handle, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

mod departures;

use crate::{
    fast_hash::FastMap,
    local,
    messaging::{
        self, client::Unsent, loop_io::in_runtime, Answering, Client, ClientConfig, Dispatch,
        Inbound, Payload, Reply, SendError, ServerLimits, TaskRequest, TASK_TOPIC,
    },
    ring::HashRing,
    tasks::{TaskError, TaskOptions, TaskStats, Tasks},
    topology::{
        self, Discovery, KubeDiscovery, KubeSettings, StandaloneDiscovery, TopologyError,
        TopologyEvent, TopologyHandle, View,
    },
};

/// The status of a task refused by a closing node before it ran: the caller may take it
/// to the key's next owner (421 Misdirected Request: "not the server for this request").
const NOT_RUN: u16 = 421;

/// How long no request must have come in before `close()` releases the port.
const QUIET: Duration = Duration::from_millis(300);

/// A boxed future, as the [`Host`] returns them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the embedding provides.
pub trait Host: Send + Sync + 'static {
    /// Answers a message that is not a task: with a future, or, for a multiplexed
    /// request, through the responder it may take from the message.
    fn message(&self, message: Inbound) -> Answering;
    /// Runs the handler of task `name`.
    fn run_task(&self, name: &str, args: TaskArgs) -> BoxFuture<Result<TaskValue, TaskFailure>>;
    /// Receives topology events, in order.
    fn event(&self, event: TopologyEvent);
}

/// Something the host attaches to a task result and wants dropped only when every
/// caller that shares the result has been answered (the JavaScript host keeps the
/// handler's own value alive until then).
pub type Keep = Arc<dyn std::any::Any + Send + Sync>;

/// The arguments of a task call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskArgs {
    /// A JSON array, as tasks travel between nodes.
    Json(Bytes),
    /// Arguments the host keeps itself, under this id: a call made on this node, whose
    /// arguments never need to cross the network.
    Local(u32),
}

/// A task's result: the JSON payload remote callers get, and what the host keeps.
#[derive(Clone)]
pub struct TaskValue {
    /// The result, encoded.
    pub payload: Payload,
    /// See [`Keep`].
    pub keep: Option<Keep>,
}

impl TaskValue {
    /// A result without anything kept.
    pub fn new(payload: Payload) -> TaskValue {
        TaskValue {
            payload,
            keep: None,
        }
    }
}

/// A task handler's failure: what its caller is answered.
#[derive(Clone)]
pub struct TaskFailure {
    /// The status a remote caller gets (the error's `statusCode`, or 500).
    pub status: u16,
    /// The error message.
    pub message: String,
    /// See [`Keep`].
    pub keep: Option<Keep>,
}

impl TaskFailure {
    /// A failure without anything kept.
    pub fn new(status: u16, message: impl Into<String>) -> TaskFailure {
        TaskFailure {
            status,
            message: message.into(),
            keep: None,
        }
    }
}

impl PartialEq for TaskFailure {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status && self.message == other.message
    }
}

impl Eq for TaskFailure {}

impl std::fmt::Debug for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFailure")
            .field("status", &self.status)
            .field("message", &self.message)
            .finish()
    }
}

/// Why `exec` failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ExecError {
    #[error("No such task")]
    NoSuchTask,
    #[error("Max execution queue size reached for task {0}")]
    QueueFull(String),
    #[error("operation timed out")]
    TimedOut,
    #[error("{}", .0.message)]
    Failed(TaskFailure),
    #[error("Task {task} execution failed on remote node {ip}: {reason}")]
    Remote {
        task: String,
        ip: String,
        reason: String,
        status: Option<u16>,
    },
    #[error("swarm is closed")]
    Closed,
}

/// Where the members come from.
pub enum DiscoveryConfig {
    /// Only this process: `nodes` holds the local IPs.
    Standalone,
    /// The Endpoints or EndpointSlices of a Service, through the Kubernetes API.
    Kubernetes(KubeSettings),
    /// A discovery of the caller's choosing (a test's).
    Custom(Box<dyn Discovery>),
}

/// Settings of a node.
pub struct SwarmConfig {
    /// This process's IPs; the first is the one it serves on when `bind` is unset.
    pub local_ips: Vec<String>,
    /// Where the members come from.
    pub discovery: DiscoveryConfig,
    /// The address the server binds (all interfaces by default).
    pub bind: IpAddr,
    /// The messaging port (0.5.1: 45892); 0 picks a free one.
    pub port: u16,
    /// Whether the node serves messages at all: a standalone node that nobody else can
    /// reach need not (two of them on one machine would fight over the port).
    pub listen: bool,
    /// Limits of the server.
    pub limits: ServerLimits,
    /// Settings of the client (its `port` is the peers' port).
    pub client: ClientConfig,
    /// Tasks registered before the server takes its first request, so a peer never
    /// reaches this node before it knows its tasks.
    pub tasks: Vec<(String, TaskOptions)>,
}

/// A running node; cheap to clone.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

struct Inner {
    host: Arc<dyn Host>,
    tasks: Tasks<TaskArgs, TaskValue, TaskFailure>,
    client: Client,
    topology: TopologyHandle,
    ring: RwLock<Arc<(u64, HashRing)>>,
    local_ips: HashSet<String>,
    local_addr: Option<SocketAddr>,
    /// Per peer, cancelled when the peer stops being reachable: what its calls wait on.
    peers: Mutex<FastMap<IpAddr, CancellationToken>>,
    /// When the last request came in, in ms since `started`: `close()` waits for quiet.
    started: std::time::Instant,
    last_request_ms: AtomicU64,
    cancel: CancellationToken,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The runtime the node runs on, for work started from other threads.
    runtime: Handle,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("unable to listen on {addr}: {source}{}", bind_hint(source))]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl StartError {
    /// The stable code of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            StartError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
                "ERR_SWARM_ADDRESS_IN_USE"
            }
            StartError::Bind { .. } => "ERR_SWARM_LISTEN",
        }
    }
}

/// What to do about a failed bind.
fn bind_hint(source: &std::io::Error) -> &'static str {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process listens there: give this node another messages.port or messages.bind)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (no interface of this machine has that address: check messages.bind)"
        }
        _ => "",
    }
}

impl Swarm {
    /// Binds the server, starts the topology and returns at once; await
    /// [`Swarm::ready`] for the first topology.
    pub async fn start(config: SwarmConfig, host: Arc<dyn Host>) -> Result<Swarm, StartError> {
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = if config.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let local_addr = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            info!(target: "node_swarm_kb::messages", "Listening on {local_addr}");
            Some((listener, local_addr))
        } else {
            info!(target: "node_swarm_kb::messages", "Standalone: listening on nothing");
            None
        };
        let cancel = CancellationToken::new();
        let discovery: Box<dyn Discovery> = match config.discovery {
            DiscoveryConfig::Standalone => {
                Box::new(StandaloneDiscovery::new(config.local_ips.clone()))
            }
            DiscoveryConfig::Kubernetes(settings) => {
                Box::new(KubeDiscovery::new(settings, &config.local_ips))
            }
            DiscoveryConfig::Custom(d) => d,
        };
        let (topology, mut events) =
            topology::start(discovery, config.local_ips.clone(), cancel.child_token());
        // Where the multiplexed connections are read, both ways.
        let read_loop = config.client.read_loop.clone();
        let inner = Arc::new(Inner {
            host,
            tasks: Tasks::new(),
            client: Client::new(config.client),
            topology,
            ring: RwLock::new(Arc::new((u64::MAX, HashRing::new(Vec::<String>::new())))),
            local_ips: config.local_ips.into_iter().collect(),
            local_addr: listener.as_ref().map(|(_, addr)| *addr),
            peers: Mutex::new(FastMap::default()),
            started: std::time::Instant::now(),
            last_request_ms: AtomicU64::new(0),
            cancel: cancel.clone(),
            background: Mutex::new(Vec::new()),
            runtime: Handle::current(),
        });
        let swarm = Swarm {
            inner: inner.clone(),
        };
        for (name, options) in config.tasks {
            swarm.register_task(&name, options);
        }
        let server = listener.map(|(listener, _)| {
            tokio::spawn(messaging::serve(
                listener,
                Arc::new(Router(inner.clone())),
                config.limits,
                cancel.clone(),
                read_loop,
            ))
        });
        let pump_host = inner.host.clone();
        let pump = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                pump_host.event(event);
            }
        });
        let departures = tokio::spawn(departures::watch(inner.clone()));
        inner
            .background
            .lock()
            .expect("not poisoned")
            .extend(server.into_iter().chain([pump, departures]));
        Ok(swarm)
    }

    /// Resolves once the first topology is known; fails if the node closes first.
    pub async fn ready(&self) -> Result<(), TopologyError> {
        self.inner.topology.ready().await
    }

    /// The current topology.
    pub fn view(&self) -> Arc<View> {
        self.inner.topology.view()
    }

    /// The address the server listens on; `None` when it does not listen.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// True when `ip` is one of this process's IPs.
    pub fn is_local(&self, ip: &str) -> bool {
        self.inner.local_ips.contains(ip)
    }

    /// The current ring and the topology generation it was built for.
    pub fn ring(&self) -> Arc<(u64, HashRing)> {
        self.inner.ring()
    }

    /// Sends a message to the node at `ip`, itself included (through the network stack).
    pub async fn send(&self, ip: &str, path: &str, payload: Payload) -> Result<Reply, SendError> {
        self.inner.send(ip, path, payload).await
    }

    /// Sends a message as [`Swarm::send`] does, from any thread; over the peer's open
    /// multiplexed connection it takes no task: the request is written when this thread
    /// calls [`messaging::mux::flush`]. `done` gets the result on the node's runtime.
    pub fn send_later<F>(&self, ip: &str, path: &str, payload: Payload, done: F)
    where
        F: FnOnce(Result<Reply, SendError>) + Send + 'static,
    {
        let inner = self.inner.clone();
        self.inner
            .client
            .send_later(ip, path, payload, move |sent| match sent {
                Ok(result) => done(result),
                Err(unsent) => {
                    // Over HTTP/1.1 from the loop's thread: written now, on a connection
                    // of that thread's own.
                    let ip = unsent.ip();
                    let departed = || inner.departed(ip);
                    let sent =
                        inner
                            .client
                            .send_here(unsent, departed, &inner.runtime, Box::new(done));
                    let Err((unsent, done)) = sent else { return };
                    let runtime = inner.runtime.clone();
                    let read_loop = inner.client.loop_here();
                    let send = async move { done(inner.send_unsent(unsent).await) };
                    // From the loop's thread, over HTTP/1.1, it goes on there: its
                    // connection is that thread's too.
                    match read_loop {
                        Some(read_loop) => read_loop.spawn_here(in_runtime(runtime, send)),
                        None => drop(runtime.spawn(send)),
                    }
                }
            });
    }

    /// Registers task `name` with its options; false when the name is taken.
    pub fn register_task(&self, name: &str, options: TaskOptions) -> bool {
        let host = self.inner.host.clone();
        let task = name.to_owned();
        self.inner.tasks.register(
            name,
            Arc::new(move |args: TaskArgs| host.run_task(&task, args)),
            options,
        )
    }

    /// The state of task `name` on this node: running, queued and waiting calls.
    pub fn task_stats(&self, name: &str) -> Option<TaskStats> {
        self.inner.tasks.stats(name)
    }

    /// Runs task `name` on the owner of `key`, with `args` (a JSON array). A local call
    /// is admitted to its queue now, in call order; the future only waits for it.
    pub fn exec(
        &self,
        name: &str,
        key: &str,
        args: Bytes,
    ) -> BoxFuture<Result<TaskValue, ExecError>> {
        if !self.inner.tasks.is_registered(name) {
            return Box::pin(std::future::ready(Err(ExecError::NoSuchTask)));
        }
        let ring = self.ring();
        match ring.1.get(key) {
            Some(ip) if !self.is_local(ip) => {
                let chosen = (ring.0, ip.to_owned());
                let (this, name, key) = (self.clone(), name.to_owned(), key.to_owned());
                let first = Attempt::none();
                Box::pin(async move { this.exec_remote(&name, &key, chosen, args, first).await })
            }
            _ => Box::pin(self.inner.exec_local(name, TaskArgs::Json(args))),
        }
    }

    /// Runs task `name` on the owner of `key` as [`Swarm::exec`] does, from any thread:
    /// a call to an owner whose multiplexed connection is open takes no task, and is
    /// written when this thread calls [`messaging::mux::flush`]. `done` gets the outcome,
    /// on the node's runtime.
    pub fn exec_later<F>(&self, name: &str, key: &str, args: Bytes, done: F)
    where
        F: FnOnce(Result<TaskValue, ExecError>) + Send + 'static,
    {
        let ring = self.ring();
        let owner = ring.1.get(key).filter(|ip| !self.is_local(ip));
        let (Some(ip), true) = (owner, self.inner.tasks.is_registered(name)) else {
            let execution = self.exec(name, key, args);
            self.inner
                .runtime
                .spawn(async move { done(execution.await) });
            return;
        };
        let started = tokio::time::Instant::now();
        let body = Payload::Json(TaskRequest::encode(name, &args));
        let chosen = (ring.0, ip.to_owned());
        let (this, name, key) = (self.clone(), name.to_owned(), key.to_owned());
        self.inner
            .client
            .send_later(ip, TASK_TOPIC, body, move |sent| {
                let not_run = match sent.map(|sent| attempted(&name, &chosen.1, sent)) {
                    Ok(Ok(outcome)) => return done(outcome),
                    Ok(Err(error)) => Some(error),
                    // Sent the usual way.
                    Err(_) => None,
                };
                let runtime = this.inner.runtime.clone();
                runtime.spawn(async move {
                    let first = Attempt { started, not_run };
                    done(this.exec_remote(&name, &key, chosen, args, first).await)
                });
            });
    }

    /// Runs task `name` on this node, whoever owns its key: for callers that already
    /// routed the call here. Admitted to its queue now, like [`Swarm::exec`].
    pub fn exec_here(
        &self,
        name: &str,
        args: TaskArgs,
    ) -> impl Future<Output = Result<TaskValue, ExecError>> + Send + 'static {
        self.inner.exec_local(name, args)
    }

    /// Sends a task to its owner (chosen on the ring of topology `generation`). A call
    /// that provably did not run there (no connection could be made, or a closing node
    /// refused it) is tried again, within the task's timeout, on the key's owner of the
    /// moment: after a backoff, or as soon as the topology changes. A call that may have
    /// been delivered is never sent again: it fails, saying so.
    async fn exec_remote(
        &self,
        name: &str,
        key: &str,
        (mut generation, mut ip): (u64, String),
        args: Bytes,
        first: Attempt,
    ) -> Result<TaskValue, ExecError> {
        let timeout = self
            .inner
            .tasks
            .options(name)
            .map_or(Duration::from_secs(30), |o| o.timeout);
        let deadline = first.started + timeout;
        let body = Payload::Json(TaskRequest::encode(name, &args));
        let mut backoff = Duration::from_millis(25);
        let mut not_run = first.not_run;
        loop {
            let error = match not_run.take() {
                Some(error) => error,
                None => {
                    debug!(target: "node_swarm_kb::tasks", "Sending task {name} to {ip}");
                    let sent = self.inner.send(&ip, TASK_TOPIC, body.clone()).await;
                    match attempted(name, &ip, sent) {
                        Ok(outcome) => return outcome,
                        Err(error) => error,
                    }
                }
            };
            // Not run: ask the ring again when the topology moves past the one that chose
            // this owner, or after a backoff (a pod that is listed before it listens).
            debug!(target: "node_swarm_kb::tasks", "Task {name} not run ({error}): retrying in {backoff:?} or on a topology change");
            let mut views = self.inner.topology.subscribe();
            let wait = tokio::time::Instant::now() + backoff;
            let moved = views.wait_for(|v| v.generation > generation);
            let _ = tokio::time::timeout_at(wait.min(deadline), moved).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(ExecError::Remote {
                    task: name.to_owned(),
                    ip,
                    reason: format!("{error}; the task did not run"),
                    status: None,
                });
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
            let ring = self.ring();
            generation = ring.0;
            match ring.1.get(key) {
                Some(next) if !self.is_local(next) => ip = next.to_owned(),
                _ => return self.inner.exec_local(name, TaskArgs::Json(args)).await,
            }
        }
    }

    /// Stops the node: no new work, in-flight requests answered, queued tasks run
    /// within `grace`, then the port is released. Safe to call twice.
    pub async fn close(&self, grace: Duration) {
        // Tasks first: while queued work drains, the server still answers, telling late
        // callers the task did not run here (421) so they take it to the new owner. Then,
        // once peers have stopped sending (they drop this pod from their rings when it
        // starts terminating), the listener closes and in-flight requests finish: closing
        // a kept-alive connection a peer is writing on would lose that request.
        let deadline = tokio::time::Instant::now() + grace;
        self.inner.tasks.close(grace).await;
        self.inner.quiesce(deadline).await;
        self.inner.cancel.cancel();
        let handles: Vec<_> = self
            .inner
            .background
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        for handle in handles {
            let _ = handle.await;
        }
    }
}

/// How a remote task call began: when, and why it did not run if it was sent already.
struct Attempt {
    started: tokio::time::Instant,
    not_run: Option<String>,
}

impl Attempt {
    fn none() -> Attempt {
        Attempt {
            started: tokio::time::Instant::now(),
            not_run: None,
        }
    }
}

/// What sending task `name` to `ip` came to: its outcome, or why it did not run there
/// (no connection could be made, or a closing node refused it: it may be sent again).
fn attempted(
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
        Err(e) => Ok(Err(remote(e.to_string(), None))),
    }
}

impl Inner {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Waits until no request has come in for [`QUIET`], or until `deadline`.
    async fn quiesce(&self, deadline: tokio::time::Instant) {
        loop {
            let idle = self
                .elapsed_ms()
                .saturating_sub(self.last_request_ms.load(Ordering::Relaxed));
            let left = QUIET.saturating_sub(Duration::from_millis(idle));
            if left.is_zero() || tokio::time::Instant::now() + left > deadline {
                return;
            }
            tokio::time::sleep(left).await;
        }
    }

    /// Sends through the client; ends at once if the peer leaves meanwhile (not run, when
    /// no connection it accepted took the request).
    async fn send(&self, ip: &str, path: &str, payload: Payload) -> Result<Reply, SendError> {
        self.send_unsent(self.client.unsent(ip, path, payload)?)
            .await
    }

    /// Sends as [`Inner::send`] does a request made already.
    async fn send_unsent(&self, unsent: Unsent) -> Result<Reply, SendError> {
        let departed = self.departed(unsent.ip());
        self.client.send_unsent(unsent, &departed).await
    }

    /// Cancelled when the peer at `ip` leaves the cluster.
    fn departed(&self, ip: IpAddr) -> CancellationToken {
        self.peers
            .lock()
            .expect("not poisoned")
            .entry(ip)
            .or_default()
            .clone()
    }

    fn ring(&self) -> Arc<(u64, HashRing)> {
        let view = self.topology.view();
        let cached = self.ring.read().expect("not poisoned").clone();
        if cached.0 == view.generation {
            return cached;
        }
        let fresh = Arc::new((
            view.generation,
            HashRing::new(view.nodes.keys().map(|ip| ip.to_string())),
        ));
        *self.ring.write().expect("not poisoned") = fresh.clone();
        fresh
    }

    fn exec_local(
        &self,
        name: &str,
        args: TaskArgs,
    ) -> impl Future<Output = Result<TaskValue, ExecError>> + Send + 'static {
        let admitted = self.tasks.exec(name, args);
        async move {
            admitted.await.map_err(|e| match e {
                TaskError::NoSuchTask(_) => ExecError::NoSuchTask,
                TaskError::QueueFull(name) => ExecError::QueueFull(name),
                TaskError::TimedOut => ExecError::TimedOut,
                TaskError::Failed(f) => ExecError::Failed(f),
                TaskError::Closed => ExecError::Closed,
            })
        }
    }

    async fn answer_task(&self, message: Inbound) -> Reply {
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
struct Router(Arc<Inner>);

impl Dispatch for Router {
    fn dispatch(&self, mut message: Inbound) -> Answering {
        self.0
            .last_request_ms
            .store(self.0.elapsed_ms(), Ordering::Relaxed);
        if message.path != TASK_TOPIC {
            return self.0.host.message(message);
        }
        let inner = self.0.clone();
        // Read on a loop thread, the request is answered there, as the handler answers.
        if let Some(responder) = local::on_loop_thread()
            .then(|| message.responder.take())
            .flatten()
        {
            let runtime = inner.runtime.clone();
            local::start_here(
                async move {
                    responder.reply_here(&inner.answer_task(message).await);
                },
                runtime,
            );
            return Answering::Taken;
        }
        Answering::Later(Box::pin(async move { inner.answer_task(message).await }))
    }
}

impl From<crate::tasks::TaskPanic> for TaskFailure {
    fn from(panic: crate::tasks::TaskPanic) -> Self {
        TaskFailure::new(500, panic.to_string())
    }
}
