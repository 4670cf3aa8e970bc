//! One running node: the messaging server and client, the topology, the ring and the
//! task engine, wired together.
//!
//! The embedding (the Node addon, or a test) supplies a [`Host`]: the user's message
//! and task handlers, and a sink for topology events. Everything else runs here.
//!
//! Here the wiring ([`Swarm::start`], [`Swarm::close`]) and the calls; `types.rs` the
//! types it is built from and answers with; `remote.rs` a task call to another node and
//! its retries; `router.rs` what comes in; `departures.rs` the calls waiting on a peer
//! that leaves.

use std::{
    collections::HashSet,
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock, RwLock,
    },
    time::Duration,
};

use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::{net::TcpListener, runtime::Handle, sync::Semaphore, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::info;

mod departures;
mod handoff;
mod peer_rings;
mod remote;
mod report;
mod rings;
mod router;
mod types;

use handoff::{Caller, Handoffs};
pub use remote::Retried;
use remote::{attempted, epoch_ms, Attempt, Chosen};
pub use report::{KubernetesStats, NodeCounts, RingStats, Stats, TaskReport, TopologyStats};
pub use rings::RingAt;
use router::Router;
pub use types::*;

use crate::{
    local::LoopThread,
    messaging::{self, Client, ClientConfig, Payload, Reply, SendError, TaskRequest, Trace},
    ring::{PeerRings, RingKind},
    stats::Counters,
    tasks::{TaskOptions, TaskStats, Tasks},
    topology::{
        self, Discovery, KubeDiscovery, LeaseElection, StandaloneDiscovery, TopologyError,
        TopologyHandle, View,
    },
};

/// The status of a task refused by a closing node before it ran: the caller may take it
/// to the key's next owner (421 Misdirected Request: "not the server for this request").
const NOT_RUN: u16 = 421;

/// How long no request must have come in before `close()` releases the port.
const QUIET: Duration = Duration::from_millis(300);

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
    ring: RwLock<Arc<RingAt>>,
    /// This node's kind of ring, fixed for its life, and what peers say of theirs.
    peer_rings: Arc<PeerRings>,
    handoffs: Mutex<Handoffs>,
    /// Woken when the calls held for a task key have all been admitted or refused.
    drained: tokio::sync::Notify,
    local_ips: HashSet<String>,
    local_addr: Option<SocketAddr>,
    /// Per peer, cancelled when the peer stops being reachable: what its calls wait on.
    peers: Mutex<FxHashMap<IpAddr, CancellationToken>>,
    /// When the last request came in, in ms since `started`: `close()` waits for quiet.
    started: std::time::Instant,
    last_request_ms: AtomicU64,
    cancel: CancellationToken,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The runtime the node runs on, for work started from other threads.
    runtime: Handle,
    counters: Arc<Counters>,
    /// The server's slots for requests in flight, and how many there are.
    serving: OnceLock<(Arc<Semaphore>, usize)>,
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
        let mut background = Vec::new();
        let discovery: Box<dyn Discovery> = match config.discovery {
            DiscoveryConfig::Standalone => {
                Box::new(StandaloneDiscovery::new(config.local_ips.clone()))
            }
            DiscoveryConfig::Kubernetes(settings) => {
                let endpoints = Box::new(KubeDiscovery::new(settings.clone(), &config.local_ips));
                match config.master_lease {
                    Some(lease) => {
                        let (election, released) =
                            LeaseElection::new(endpoints, settings, lease, &config.local_ips);
                        // `close()` waits for the lease's release.
                        background.push(tokio::spawn(async move {
                            let _ = released.await;
                        }));
                        Box::new(election)
                    }
                    None => endpoints,
                }
            }
            DiscoveryConfig::Custom(d) => d,
        };
        let (topology, mut events) =
            topology::start(discovery, config.local_ips.clone(), cancel.child_token());
        // Where the multiplexed connections are read, both ways.
        let event_loop = config.client.event_loop.clone();
        let peer_rings = peer_rings::reporting(config.ring, host.clone(), topology.clone());
        let inner = Arc::new(Inner {
            host,
            tasks: Tasks::new().at_home(event_loop.clone().map(|l| l as Arc<dyn LoopThread>)),
            client: Client::new(ClientConfig {
                rings: Some(peer_rings.clone()),
                ..config.client
            }),
            topology,
            ring: RwLock::new(Arc::new(RingAt::empty(config.ring))),
            peer_rings,
            handoffs: Mutex::default(),
            drained: tokio::sync::Notify::new(),
            local_ips: config.local_ips.into_iter().collect(),
            local_addr: listener.as_ref().map(|(_, addr)| *addr),
            peers: Mutex::new(FxHashMap::default()),
            started: std::time::Instant::now(),
            last_request_ms: AtomicU64::new(0),
            cancel: cancel.clone(),
            background: Mutex::new(background),
            runtime: Handle::current(),
            counters: Arc::default(),
            serving: OnceLock::new(),
        });
        let weak = Arc::downgrade(&inner);
        inner.client.count_in(inner.counters.transports());
        inner.client.watch_departures(Box::new(move |ip| {
            weak.upgrade()
                .map_or_else(CancellationToken::new, |inner| inner.departed(ip))
        }));
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
                event_loop,
            ))
        });
        let (pump_host, counters) = (inner.host.clone(), inner.counters.clone());
        let pump = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                counters.topology_event(&event);
                pump_host.event(event);
            }
        });
        let departures = tokio::spawn(departures::watch(inner.clone()));
        let marks = tokio::spawn(handoff::follow_views(inner.clone()));
        let asks = tokio::spawn(peer_rings::ask_peers(inner.clone()));
        inner
            .background
            .lock()
            .expect("not poisoned")
            .extend(server.into_iter().chain([pump, departures, marks, asks]));
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
    pub fn ring(&self) -> Arc<RingAt> {
        self.inner.ring()
    }

    /// Sends a message to the node at `ip`, itself included (through the network stack).
    pub async fn send(&self, ip: &str, path: &str, payload: Payload) -> Result<Reply, SendError> {
        self.inner.send(ip, path, payload).await
    }

    /// Sends a message as [`Swarm::send`] does, from any thread, the way its peer is
    /// reached now ([`messaging::Client::dispatch`]): over the peer's open multiplexed
    /// connection it takes no task, and the request is written when this thread calls
    /// [`messaging::mux::flush`]. It carries `trace`, the sender's span. `done` gets the
    /// result.
    pub fn send_later<F>(
        &self,
        ip: &str,
        path: &str,
        payload: Payload,
        trace: Option<Trace>,
        done: F,
    ) where
        F: FnOnce(Result<Reply, SendError>) + Send + 'static,
    {
        let flight = self.inner.counters.sending(payload.body().len());
        self.inner
            .client
            .dispatch(ip, path, payload, trace, move |result| {
                flight.settle(&result);
                done(result);
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

    /// Runs task `name` on the owner of `key`, with `args` (a JSON array), as part of
    /// `trace`. A local call is admitted to its queue now, in call order; the future
    /// only waits for it.
    pub fn exec(
        &self,
        name: &str,
        key: &str,
        args: Bytes,
        trace: Option<Trace>,
    ) -> BoxFuture<Result<TaskValue, ExecError>> {
        if !self.inner.tasks.is_registered(name) {
            return Box::pin(std::future::ready(Err(ExecError::NoSuchTask)));
        }
        let ring = self.ring();
        match ring.ring.get(key) {
            Some(ip) if !self.is_local(ip) => {
                let chosen = Chosen::on(&ring, ip);
                let (this, name, key) = (self.clone(), name.to_owned(), key.to_owned());
                let first = Attempt::none(trace);
                Box::pin(async move {
                    let (outcome, _) = this.exec_remote(&name, &key, chosen, args, first).await;
                    outcome
                })
            }
            _ => self
                .inner
                .exec_local(name, key, TaskArgs::Json(args, trace), Caller::Here),
        }
    }

    /// Runs task `name` on the owner of `key` as [`Swarm::exec`] does, from any thread.
    /// The first attempt is a send to the owner ([`messaging::Client::dispatch`]: over
    /// its open multiplexed connection it takes no task, and is written when this thread
    /// calls [`messaging::mux::flush`]); a call that did not run is retried on the
    /// runtime ([`Swarm::exec`]'s retries). `done` gets the outcome, and for a traced
    /// call the attempts that did not run.
    pub fn exec_later<F>(&self, name: &str, key: &str, args: Bytes, trace: Option<Trace>, done: F)
    where
        F: FnOnce(Result<TaskValue, ExecError>, Vec<Retried>) + Send + 'static,
    {
        let ring = self.ring();
        let owner = ring.ring.get(key).filter(|ip| !self.is_local(ip));
        let (Some(ip), true) = (owner, self.inner.tasks.is_registered(name)) else {
            let execution = self.exec(name, key, args, trace);
            self.inner
                .runtime
                .spawn(async move { done(execution.await, Vec::new()) });
            return;
        };
        let started = tokio::time::Instant::now();
        let start_ms = trace.as_ref().map(|_| epoch_ms());
        let body = Payload::Json(TaskRequest::encode(name, &args));
        let chosen = Chosen::on(&ring, ip);
        let flight = self.inner.counters.sending(body.body().len());
        let request = self
            .inner
            .task_request(&chosen, key, body)
            .map(|request| request.traced(trace.clone()));
        let (this, name, key) = (self.clone(), name.to_owned(), key.to_owned());
        let first_sent = move |sent| {
            flight.settle(&sent);
            let not_run = match attempted(&name, &chosen.ip, sent) {
                Ok(outcome) => return done(outcome, Vec::new()),
                Err(not_run) => not_run,
            };
            let retried = start_ms
                .map(|start_ms| Retried::now(&chosen.ip, start_ms, &not_run))
                .into_iter()
                .collect();
            let runtime = this.inner.runtime.clone();
            runtime.spawn(async move {
                let first = Attempt {
                    started,
                    not_run: Some(not_run),
                    trace,
                    retried,
                };
                let (outcome, retried) = this.exec_remote(&name, &key, chosen, args, first).await;
                done(outcome, retried)
            });
        };
        match request {
            Ok(request) => self.inner.client.dispatch_request(request, first_sent),
            Err(bad) => first_sent(Err(bad)),
        }
    }

    /// Runs task `name` for `key` on this node: for callers that already routed the call
    /// here. Admitted to its queue now, like [`Swarm::exec`], unless the key was just
    /// handed here or away (`handoff.rs`): [`ExecError::Moved`] then says to route it
    /// again.
    pub fn exec_here(
        &self,
        name: &str,
        key: &str,
        args: TaskArgs,
    ) -> impl Future<Output = Result<TaskValue, ExecError>> + Send + 'static {
        self.inner.exec_local(name, key, args, Caller::Here)
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
        let flight = self.counters.sending(payload.body().len());
        let sent = self.client.send(ip, path, payload).await;
        flight.settle(&sent);
        sent
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

    /// The kind of ring this node places keys by.
    fn ring_kind(&self) -> RingKind {
        self.peer_rings.own()
    }

    fn ring(&self) -> Arc<RingAt> {
        let view = self.topology.view();
        let cached = self.ring.read().expect("not poisoned").clone();
        if cached.generation == view.generation {
            return cached;
        }
        // Built under the lock, so that every view's ring follows the one before it
        // (the rings it keeps are what the hand-off asks) and none replaces a newer one.
        let mut ring = self.ring.write().expect("not poisoned");
        if ring.generation != u64::MAX && ring.generation >= view.generation {
            return ring.clone();
        }
        let fresh = Arc::new(ring.next(&view, |ip| self.local_ips.contains(ip)));
        *ring = fresh.clone();
        fresh
    }
}
