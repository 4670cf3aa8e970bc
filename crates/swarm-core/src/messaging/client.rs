//! The messaging client: keep-alive HTTP/1.1 connections to every peer, pooled here
//! over hyper's connection API, and one multiplexed connection ([`super::mux`]) to each
//! peer that offered it; a connect timeout and a request timeout make every send settle.
//! Sends made on the thread of the loop connections are read on go over HTTP/1.1
//! connections of that thread's own instead of hyper's ([`Client::send_here`],
//! `loop_http1.rs`), pooled and settled alike.
//!
//! The pool is a list of idle connections per peer: a send takes the most recently used
//! one that is still open (or opens one), and gives it back once the reply is read. A
//! request that a connection hands back unsent (it was closing) goes on a new one; one
//! that may have been written is never sent again. The same holds on multiplexed
//! connections: only requests the peer says it never read (go-away) are sent again.
//!
//! A peer is reached over HTTP/1.1 until one of its replies offers the multiplexed
//! transport, so 0.5.1 pods only ever see HTTP/1.1.

use rustc_hash::FxHashMap;
use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Incoming,
    client::conn::http1::{self, SendRequest},
    header::{self, HeaderValue},
    Method, Request, Uri,
};
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioIo};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use super::{
    auth::{self, Auth},
    codec::{self, Payload},
    loop_http1,
    loop_io::in_runtime,
    mux::{self, Outcome},
    path, Reply,
};
use crate::{errors::with_causes, local};

/// How long a connection may stay idle in the pool: shorter than the servers' header
/// timeout (10 s by default), which also ends idle keep-alive connections, so a request
/// is never written on a connection the peer is closing, as it could not tell whether
/// it ran.
const IDLE: Duration = Duration::from_secs(4);

/// A connection of the loop's own idle for less than this is taken without asking the
/// kernel whether its peer has closed it (see `loop_http1::Conn::is_usable`).
const FRESH: Duration = Duration::from_millis(1);

/// How many times a request a peer did not read (it went away) is sent again.
const RESENDS: u32 = 3;

/// A peer that did not answer the multiplexed transport's preface within the connect
/// timeout is asked again after this many connect timeouts (30 s by default).
const PREFACE_RETRY: u32 = 10;

/// Settings of the client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The messaging port of the peers.
    pub port: u16,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How long a request may take, from sending to the end of the reply.
    pub request_timeout: Duration,
    /// How long sent data may stay unacknowledged before the connection is given up
    /// (TCP_USER_TIMEOUT, on Linux), and idle connections are probed: a peer behind a cut link is
    /// noticed in this time, while a live peer may take its time to answer.
    pub link_timeout: Duration,
    /// The source address of outgoing connections, so peers see this node's IP as `from`.
    pub local_address: Option<IpAddr>,
    /// Signs every request when set.
    pub auth: Option<Arc<Auth>>,
    /// Whether peers that offer the multiplexed transport are sent to over it.
    pub multiplex: bool,
    /// Where the replies of multiplexed connections are read; on the runtime when unset.
    pub read_loop: Option<Arc<dyn mux::ReadLoop>>,
    /// How long a peer that left the cluster has to show it is alive (answer a ping)
    /// before the calls waiting on it fail; one that cannot be pinged has this long to
    /// answer them.
    pub departure_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            port: 45892,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(310),
            link_timeout: Duration::from_secs(8),
            local_address: None,
            auth: None,
            multiplex: true,
            read_loop: None,
            departure_timeout: Duration::from_secs(1),
        }
    }
}

/// Why a send failed before a reply came back.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The node is not an IP address.
    #[error("Invalid node address {0}")]
    BadAddress(String),
    /// No connection could be made: the message was never delivered.
    #[error("Unable to reach {ip}: {reason}")]
    Unreachable { ip: String, reason: String },
    /// The reply did not come in time; the message may have been delivered.
    #[error("No reply from {ip} within {ms} ms")]
    Timeout { ip: String, ms: u128 },
    /// The exchange broke after it started; the message may have been delivered.
    #[error("Request to {ip} failed: {reason}")]
    Failed { ip: String, reason: String },
    /// The peer left the cluster while the call was waiting; it may have been delivered.
    #[error("Node {ip} left the cluster before answering; the message may have been delivered")]
    Left { ip: String },
}

/// A pooled client for the messaging protocol.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpConnector,
    idle: Pool<SendRequest<Full<Bytes>>>,
    /// The idle HTTP/1.1 connections of the loop's thread (`loop_http1.rs`).
    own: Pool<Arc<loop_http1::Conn>>,
    routes: Mutex<FxHashMap<SocketAddr, Route>>,
    config: ClientConfig,
}

/// How a peer is sent to, once known; an unknown peer gets HTTP/1.1.
enum Route {
    /// HTTP/1.1: the peer refused the multiplexed transport, or did not answer it in
    /// time and is asked again from `retry` on.
    Http { retry: Option<Instant> },
    /// The peer offered the multiplexed transport; no connection is open yet.
    Offered(mux::Offer),
    /// The multiplexed connection to the peer (perhaps closed since: then a new one).
    Mux(Arc<mux::Conn>),
}

/// What a probe of a peer found ([`Client::probe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It answered a ping: it is alive and reads its connection.
    Alive,
    /// It did not answer one in time, or its connection has ended.
    Silent,
    /// It cannot be asked: no multiplexed connection to it, or one to a peer that does
    /// not answer pings (a 0.5.1 pod, a pod of ours of the first level).
    Unknown,
}

/// Idle connections per peer, each with since when, in check-in order: a send takes the
/// most recently used, and one idle [`IDLE`] or more goes.
struct Pool<T> {
    idle: Mutex<FxHashMap<SocketAddr, Vec<(T, Instant)>>>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            idle: Mutex::new(FxHashMap::default()),
        }
    }
}

impl<T> Pool<T> {
    /// The most recently used connection to `peer` that `usable` takes, told how long it
    /// was idle; those passed over, and those idle too long, go to `discard`.
    fn check_out(
        &self,
        peer: SocketAddr,
        usable: impl Fn(&T, Duration) -> bool,
        discard: impl Fn(T),
    ) -> Option<T> {
        let mut idle = self.idle.lock().expect("not poisoned");
        let list = idle.get_mut(&peer)?;
        while let Some((conn, since)) = list.pop() {
            let idle_for = since.elapsed();
            if idle_for < IDLE && usable(&conn, idle_for) {
                return Some(conn);
            }
            discard(conn);
        }
        idle.remove(&peer);
        None
    }

    /// Gives `conn` back; those idle too long meanwhile go to `discard`.
    fn check_in(&self, peer: SocketAddr, conn: T, discard: impl Fn(T)) {
        let since = Instant::now();
        let mut idle = self.idle.lock().expect("not poisoned");
        let list = idle.entry(peer).or_default();
        // The list is in check-in order, so the connections idle too long are a prefix.
        let stale = list.partition_point(|(_, at)| since.duration_since(*at) >= IDLE);
        list.drain(..stale).for_each(|(conn, _)| discard(conn));
        list.push((conn, since));
    }
}

/// What a send's outcome is handed to.
pub type Sent = Box<dyn FnOnce(Result<Reply, SendError>) + Send>;

/// A request ready to go: made by [`Client::unsent`], handed back by
/// [`Client::send_later`] when it did not send it, sent by [`Client::send_unsent`].
pub struct Unsent {
    peer: SocketAddr,
    /// The request's path, as it goes on the wire.
    encoded: String,
    payload: Payload,
}

impl Unsent {
    /// The address of the node it is for.
    pub fn ip(&self) -> IpAddr {
        self.peer.ip()
    }
}

impl Client {
    /// Builds a client; connections are opened lazily and kept alive per peer.
    pub fn new(config: ClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_local_address(config.local_address);
        // Linux's own; elsewhere the keepalive probes below find a cut link once the
        // connection has gone quiet.
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
        connector.set_tcp_user_timeout(Some(config.link_timeout));
        connector.set_keepalive(Some(config.link_timeout / 2));
        connector.set_keepalive_interval(Some(Duration::from_secs(1)));
        connector.set_keepalive_retries(Some(3));
        Client {
            inner: Arc::new(Inner {
                connector,
                idle: Pool::default(),
                own: Pool::default(),
                routes: Mutex::new(FxHashMap::default()),
                config,
            }),
        }
    }

    /// Sends `payload` to `path` on the node at `ip` and returns its reply, whatever
    /// the status.
    pub async fn send(
        &self,
        ip: &str,
        topic_path: &str,
        payload: Payload,
    ) -> Result<Reply, SendError> {
        self.send_until_gone(ip, topic_path, payload, &CancellationToken::new())
            .await
    }

    /// Sends as [`Client::send`] does, until `gone` is cancelled (the node left the
    /// cluster; [`Client::forget`] is called then too). The call then ends: as
    /// [`SendError::Left`] when the request may have reached the node, as
    /// [`SendError::Unreachable`] when no connection the node accepted carried it.
    pub async fn send_until_gone(
        &self,
        ip: &str,
        topic_path: &str,
        payload: Payload,
        gone: &CancellationToken,
    ) -> Result<Reply, SendError> {
        self.send_unsent(self.unsent(ip, topic_path, payload)?, gone)
            .await
    }

    /// Sends what [`Client::send_later`] handed back as [`Client::send_until_gone`] does.
    pub async fn send_unsent(
        &self,
        unsent: Unsent,
        gone: &CancellationToken,
    ) -> Result<Reply, SendError> {
        let (peer, timeout) = (unsent.peer, self.inner.config.request_timeout);
        tokio::time::timeout(timeout, self.inner.deliver(unsent, gone))
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Timeout {
                    ip: peer.ip().to_string(),
                    ms: timeout.as_millis(),
                })
            })
    }

    /// The request that sends `payload` to `topic_path` on the node at `ip`.
    pub fn unsent(
        &self,
        ip: &str,
        topic_path: &str,
        payload: Payload,
    ) -> Result<Unsent, SendError> {
        let peer = self
            .peer(ip)
            .ok_or_else(|| SendError::BadAddress(ip.to_owned()))?;
        Ok(Unsent {
            peer,
            encoded: path::encode(topic_path),
            payload,
        })
    }

    /// Sends `payload` over the multiplexed connection to the node at `ip` without a
    /// task of its own, from any thread, when that connection is open and accepted (one
    /// is opened by [`Client::send`] only): the request is written when this thread
    /// calls [`mux::flush`], and `done` gets the reply or the failure on the
    /// connection's tasks. `done` gets the request back, perhaps at once, when it is to
    /// go through [`Client::send_unsent`] instead: there is no such connection, or the
    /// peer went away before reading it.
    pub fn send_later<F>(&self, ip: &str, topic_path: &str, payload: Payload, done: F)
    where
        F: FnOnce(Result<Result<Reply, SendError>, Unsent>) + Send + 'static,
    {
        let unsent = match self.unsent(ip, topic_path, payload) {
            Ok(unsent) => unsent,
            Err(bad) => return done(Ok(Err(bad))),
        };
        let peer = unsent.peer;
        let Some(conn) = self.inner.open_connection(peer) else {
            return done(Err(unsent));
        };
        let timeout = self.inner.config.request_timeout;
        let auth = self.inner.config.auth.as_deref();
        let frame = mux::encode_request(&unsent.encoded, &unsent.payload, auth.map(|a| (a, peer)));
        // The request itself is kept, not a copy, in case it is to be sent again.
        let settle: mux::Done =
            Box::new(move |outcome| done(settled(peer, outcome, timeout).ok_or(unsent)));
        if let Err(settle) = conn.call_later(frame, settle) {
            settle(Outcome::Resend);
        }
    }

    /// Sends `unsent` over HTTP/1.1 on a connection of this thread's own (`loop_http1.rs`),
    /// when this is the thread of the loop connections are read on and the peer is sent
    /// to over HTTP/1.1: the request is written now, and `done` gets the outcome on this
    /// thread, as [`Client::send_until_gone`] would give it with the token `departed`
    /// makes (asked only when a connection is to be made: each watches its own). Both
    /// are handed back otherwise. Tasks and timers go to `runtime`.
    pub fn send_here(
        &self,
        unsent: Unsent,
        departed: impl FnOnce() -> CancellationToken,
        runtime: &tokio::runtime::Handle,
        done: Sent,
    ) -> Result<(), (Unsent, Sent)> {
        let peer = unsent.peer;
        let read_loop = match self.inner.loop_here() {
            Some(read_loop) if self.inner.http_route(peer) => read_loop,
            _ => return Err((unsent, done)),
        };
        let mut request = self.inner.http_request(&unsent);
        let mut settle = self.settle(peer, done);
        while let Some(conn) = self.inner.own.check_out(
            peer,
            |conn, idle| conn.is_usable(idle >= FRESH),
            |conn| conn.close(),
        ) {
            match conn.call(request, settle) {
                Ok(()) => return Ok(()),
                Err(back) => (request, settle) = back,
            }
        }
        let gone = departed();
        if gone.is_cancelled() {
            settle(Err(never_reached(peer)));
            return Ok(());
        }
        let read_loop = read_loop.clone();
        let dial = self.inner.dial(peer);
        let weak = Arc::downgrade(&self.inner);
        let timeout = self.inner.config.request_timeout;
        read_loop
            .clone()
            .spawn_here(in_runtime(runtime.clone(), async move {
                let unreachable = |reason: String| SendError::Unreachable {
                    ip: peer.ip().to_string(),
                    reason,
                };
                let connected = tokio::select! {
                    connected = dial => connected,
                    () = gone.cancelled() => return settle(Err(never_reached(peer))),
                };
                let socket = match connected
                    .and_then(|io| io.into_inner().into_std().map_err(|e| e.to_string()))
                {
                    Ok(socket) => Arc::new(socket),
                    Err(reason) => return settle(Err(unreachable(reason))),
                };
                let io = match read_loop.io_here(socket.clone()) {
                    Ok(io) => io,
                    Err(e) => return settle(Err(unreachable(e.to_string()))),
                };
                let idle: loop_http1::Idle = Box::new(move |conn| {
                    if let Some(inner) = weak.upgrade() {
                        inner
                            .own
                            .check_in(peer, conn.clone(), |stale| stale.close());
                    }
                });
                let conn = loop_http1::Conn::new(socket, peer, timeout, idle, gone);
                if let Err((_, settle)) = conn.call(request, settle) {
                    return settle(Err(unreachable(
                        "the connection ended before the request was written".into(),
                    )));
                }
                conn.run(io).await;
            }));
        Ok(())
    }

    /// Hands an HTTP/1.1 exchange's reply to `done`, noting the peer's offer of the
    /// multiplexed transport.
    fn settle(&self, peer: SocketAddr, done: Sent) -> loop_http1::Settle {
        let weak = Arc::downgrade(&self.inner);
        Box::new(move |answered| {
            done(answered.map(|answered| {
                if let Some(offer) = answered.offers_mux {
                    if let Some(inner) = weak.upgrade().filter(|inner| inner.config.multiplex) {
                        inner.offered(peer, offer);
                    }
                }
                answered.reply
            }))
        })
    }

    /// The loop its connections are read on, when this thread is that loop's: work
    /// started here over HTTP/1.1 stays here.
    pub(crate) fn loop_here(&self) -> Option<Arc<dyn mux::ReadLoop>> {
        self.inner.loop_here().cloned()
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Whether calls wait on the multiplexed connection to the peer at `ip`.
    pub fn has_calls(&self, ip: &str) -> bool {
        self.peer(ip)
            .and_then(|peer| match self.inner.lock_routes().get(&peer) {
                Some(Route::Mux(conn)) => Some(conn.has_calls()),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// Asks the peer at `ip` whether it is alive, with a ping on its multiplexed
    /// connection, within `within`.
    pub async fn probe(&self, ip: &str, within: Duration) -> Liveness {
        let conn = self
            .peer(ip)
            .and_then(|peer| match self.inner.lock_routes().get(&peer) {
                Some(Route::Mux(conn)) if conn.answers_pings() => Some(conn.clone()),
                _ => None,
            });
        match conn {
            Some(conn) if conn.ping(within).await => Liveness::Alive,
            Some(_) => Liveness::Silent,
            None => Liveness::Unknown,
        }
    }

    /// Forgets what is known of the peer at `ip` (it left the cluster): the calls on its
    /// multiplexed connection fail as [`SendError::Left`], and the connection ends.
    pub fn forget(&self, ip: &str) {
        let Some(peer) = self.peer(ip) else { return };
        if let Some(Route::Mux(conn)) = self.inner.lock_routes().remove(&peer) {
            conn.abandon();
        }
    }

    /// The messaging address of the node at `ip`.
    fn peer(&self, ip: &str) -> Option<SocketAddr> {
        let addr: IpAddr = ip.parse().ok()?;
        Some(SocketAddr::new(addr, self.inner.config.port))
    }
}

/// True when a peer with `route` (none yet: unknown) is sent to over HTTP/1.1 now.
fn over_http(route: Option<&Route>) -> bool {
    match route {
        None | Some(Route::Http { retry: None }) => true,
        Some(Route::Http { retry: Some(at) }) => Instant::now() < *at,
        Some(Route::Offered(_) | Route::Mux(_)) => false,
    }
}

/// A call that no connection the peer accepted ever carried, ended by its departure.
fn never_reached(peer: SocketAddr) -> SendError {
    SendError::Unreachable {
        ip: peer.ip().to_string(),
        reason: "it left the cluster before a connection took the request".into(),
    }
}

fn resending(peer: SocketAddr) {
    debug!(target: "node_swarm_kb::messages", "{peer} never read a request (it went away, or the connection ended first): sending it again");
}

/// What a call's outcome on a multiplexed connection means for its sender; `None` when
/// it is to be sent again.
fn settled(
    peer: SocketAddr,
    outcome: Outcome,
    timeout: Duration,
) -> Option<Result<Reply, SendError>> {
    let ip = || peer.ip().to_string();
    Some(match outcome {
        Outcome::Reply(reply) => Ok(reply),
        Outcome::Resend => {
            resending(peer);
            return None;
        }
        Outcome::NotOurs | Outcome::NoAnswer => return None,
        Outcome::Unreachable(reason) => Err(SendError::Unreachable { ip: ip(), reason }),
        Outcome::Failed(reason) => Err(SendError::Failed { ip: ip(), reason }),
        Outcome::TimedOut => Err(SendError::Timeout {
            ip: ip(),
            ms: timeout.as_millis(),
        }),
        Outcome::Left => Err(SendError::Left { ip: ip() }),
    })
}

/// A reply's body, whole: one that came in one piece is that piece, not a copy, and
/// takes no allocation (`collect` would make a list of its pieces).
async fn whole_body(mut body: Incoming) -> Result<Bytes, hyper::Error> {
    let mut whole = Bytes::new();
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if whole.is_empty() && joined.is_empty() {
            whole = data;
        } else {
            joined.extend_from_slice(&std::mem::take(&mut whole));
            joined.extend_from_slice(&data);
        }
    }
    Ok(if joined.is_empty() {
        whole
    } else {
        joined.freeze()
    })
}

impl Drop for Inner {
    fn drop(&mut self) {
        let routes = self.routes.get_mut().unwrap_or_else(|e| e.into_inner());
        for route in routes.values() {
            if let Route::Mux(conn) = route {
                conn.close();
            }
        }
    }
}

impl Inner {
    /// Sends over the peer's multiplexed connection if it has one, HTTP/1.1 otherwise.
    async fn deliver(
        &self,
        Unsent {
            peer,
            encoded,
            payload,
        }: Unsent,
        gone: &CancellationToken,
    ) -> Result<Reply, SendError> {
        let mut resent = 0;
        loop {
            // A request the peer's connection never took (a new one still being made, or
            // one it ended before reading) is not sent again once the peer is gone: it
            // was never delivered. On a connection it accepted, forgetting the peer
            // settles each call as what it is.
            if gone.is_cancelled() {
                return Err(never_reached(peer));
            }
            let Some(conn) = self.multiplexed(peer) else {
                let reached = AtomicBool::new(false);
                // Boxed: the HTTP exchange is large, and kept out of the multiplexed
                // path's future, which is moved on every spawn.
                let exchange = Box::pin(self.over_http(peer, encoded, payload, &reached));
                return tokio::select! {
                    sent = exchange => sent,
                    () = gone.cancelled() => Err(if reached.load(Ordering::Acquire) {
                        SendError::Left { ip: peer.ip().to_string() }
                    } else {
                        never_reached(peer)
                    }),
                };
            };
            // `None`: it closed meanwhile; a new one is opened.
            let Some(call) = conn
                .call(
                    &encoded,
                    &payload,
                    self.config.auth.as_deref().map(|a| (a, peer)),
                )
                .await
            else {
                continue;
            };
            let outcome = call.outcome();
            tokio::pin!(outcome);
            let outcome = tokio::select! {
                outcome = &mut outcome => outcome,
                // Gone while its connection drains, say (the one `forget` ends is the
                // newest): ended here, each call settles as what it is.
                () = gone.cancelled() => {
                    conn.abandon();
                    outcome.await
                }
            };
            match outcome {
                // Never read by the peer: sent again, on a new connection, a few times.
                Outcome::Resend if resent < RESENDS => {
                    resending(peer);
                    resent += 1;
                }
                Outcome::Resend => {
                    return Err(SendError::Unreachable {
                        ip: peer.ip().to_string(),
                        reason: format!("closed {RESENDS} connections before reading the request"),
                    })
                }
                Outcome::NotOurs => {
                    debug!(target: "node_swarm_kb::messages", "{peer} refused the multiplexed transport: HTTP/1.1 to it");
                    self.lock_routes().insert(peer, Route::Http { retry: None });
                }
                Outcome::NoAnswer => {
                    // A pod of ours too busy to answer in time is asked again later.
                    let retry = Instant::now() + self.config.connect_timeout * PREFACE_RETRY;
                    debug!(target: "node_swarm_kb::messages", "{peer} did not answer the multiplexed transport's preface in time: HTTP/1.1 to it for now");
                    self.lock_routes()
                        .insert(peer, Route::Http { retry: Some(retry) });
                }
                outcome => {
                    if let Some(result) = settled(peer, outcome, self.config.request_timeout) {
                        return result;
                    }
                }
            }
        }
    }

    fn loop_here(&self) -> Option<&Arc<dyn mux::ReadLoop>> {
        self.config
            .read_loop
            .as_ref()
            .filter(|_| local::on_loop_thread())
    }

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, FxHashMap<SocketAddr, Route>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open multiplexed connection to `peer`, opened now if it offered the transport.
    fn multiplexed(&self, peer: SocketAddr) -> Option<Arc<mux::Conn>> {
        if !self.config.multiplex {
            return None;
        }
        let mut routes = self.lock_routes();
        match routes.get(&peer) {
            route if over_http(route) => None,
            Some(Route::Mux(conn)) if conn.is_open() => Some(conn.clone()),
            route => {
                let pings = match route {
                    Some(Route::Offered(offer)) => offer.pings,
                    Some(Route::Mux(conn)) => conn.answers_pings(),
                    _ => false,
                };
                let dial = self.dial(peer);
                let conn = mux::Conn::open(
                    async move { dial.await.map(TokioIo::into_inner) },
                    self.config.connect_timeout,
                    self.config.request_timeout,
                    self.config.read_loop.clone(),
                    pings,
                );
                routes.insert(peer, Route::Mux(conn.clone()));
                Some(conn)
            }
        }
    }

    /// True when `peer` is sent to over HTTP/1.1: no multiplexed connection to it is
    /// open or to be opened (see [`Inner::multiplexed`]).
    fn http_route(&self, peer: SocketAddr) -> bool {
        !self.config.multiplex || over_http(self.lock_routes().get(&peer))
    }

    /// The request as it goes on the wire, with the headers [`Inner::over_http`] gives
    /// hyper's: host, content type, length and the signature.
    fn http_request(&self, unsent: &Unsent) -> Bytes {
        let body = unsent.payload.body();
        let mut request = BytesMut::with_capacity(256 + body.len());
        let mut room = [0u8; 64];
        request.extend_from_slice(b"POST ");
        request.extend_from_slice(unsent.encoded.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        request.extend_from_slice(codec::display_in(unsent.peer, &mut room).unwrap_or_default());
        if let Some(ct) = unsent.payload.content_type() {
            request.extend_from_slice(b"\r\ncontent-type: ");
            request.extend_from_slice(ct.as_bytes());
        }
        request.extend_from_slice(b"\r\ncontent-length: ");
        request.extend_from_slice(codec::display_in(body.len(), &mut room).unwrap_or_default());
        if let Some(auth) = &self.config.auth {
            let signed = auth::Signed {
                method: "POST",
                path: &unsent.encoded,
                to: unsent.peer,
                content_type: unsent.payload.content_type().unwrap_or_default(),
                body,
            };
            for (name, value) in auth.sign(&signed) {
                request.extend_from_slice(b"\r\n");
                request.extend_from_slice(name.as_str().as_bytes());
                request.extend_from_slice(b": ");
                request.extend_from_slice(value.as_bytes());
            }
        }
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        request.freeze()
    }

    /// The open multiplexed connection to `peer`, if there is one.
    fn open_connection(&self, peer: SocketAddr) -> Option<Arc<mux::Conn>> {
        match self.lock_routes().get(&peer)? {
            Route::Mux(conn) if conn.is_open() => Some(conn.clone()),
            _ => None,
        }
    }

    /// Notes that `peer` offers the multiplexed transport, unless it is in use already.
    fn offered(&self, peer: SocketAddr, offer: mux::Offer) {
        let mut routes = self.lock_routes();
        // A peer that refused the transport keeps HTTP/1.1 until it leaves the cluster.
        if routes.get(&peer).is_none() {
            debug!(target: "node_swarm_kb::messages", "{peer} offers the multiplexed transport");
            routes.insert(peer, Route::Offered(offer));
        }
    }

    /// A new TCP connection to `peer`, with the client's socket options.
    fn dial(
        &self,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Result<TokioIo<TcpStream>, String>> + Send + 'static
    {
        let uri = Uri::builder()
            .scheme("http")
            .authority(peer.to_string())
            .path_and_query("/")
            .build();
        let connector = self.connector.clone();
        async move {
            let uri = uri.map_err(|e| with_causes(&e))?;
            connector.oneshot(uri).await.map_err(|e| with_causes(&e))
        }
    }

    /// One exchange over HTTP/1.1.
    async fn over_http(
        &self,
        peer: SocketAddr,
        encoded: String,
        payload: Payload,
        reached: &AtomicBool,
    ) -> Result<Reply, SendError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .header(header::HOST, codec::header_value(peer));
        let content_type = payload.content_type();
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let body = payload.into_body();
        // Set here, hyper's own would cost an allocation more.
        builder = builder.header(header::CONTENT_LENGTH, codec::header_value(body.len()));
        if let Some(auth) = &self.config.auth {
            let signed = auth::Signed {
                method: "POST",
                path: &encoded,
                to: peer,
                content_type: content_type.unwrap_or_default(),
                body: &body,
            };
            for (name, value) in auth.sign(&signed) {
                builder = builder.header(name, value);
            }
        }
        // The path taken, not copied.
        let request = builder
            .uri(encoded)
            .body(Full::new(body))
            .map_err(|e| SendError::BadAddress(format!("{}: {e}", peer.ip())))?;
        self.exchange(peer, request, reached).await
    }

    /// One request and its whole reply, on a pooled connection or a new one; `reached`
    /// is set once the request is handed to a connection (it may then reach the peer).
    async fn exchange(
        &self,
        peer: SocketAddr,
        mut request: Request<Full<Bytes>>,
        reached: &AtomicBool,
    ) -> Result<Reply, SendError> {
        let failed = |e: &dyn std::error::Error| SendError::Failed {
            ip: peer.ip().to_string(),
            reason: with_causes(e),
        };
        let (sender, response) = loop {
            let (mut sender, reused) = self.connection(peer).await?;
            reached.store(true, Ordering::Release);
            match sender.try_send_request(request).await {
                Ok(response) => break (sender, response),
                Err(mut e) => match e.take_message() {
                    // Handed back unsent by a connection that was closing: a new one.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(failed(e.error())),
                },
            }
        };
        if let Some(level) = response.headers().get(mux::ADVERTISE) {
            if self.config.multiplex {
                self.offered(peer, mux::Offer::of(level.as_bytes()));
            }
        }
        let status = response.status().as_u16();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = whole_body(response.into_body())
            .await
            .map_err(|e| failed(&e))?;
        // Ready again once hyper has seen the end of this exchange: that may take a turn
        // of its connection task, so the pool waits for readiness when it hands it out.
        if !sender.is_closed() {
            self.idle.check_in(peer, sender, drop);
        }
        Ok(Reply {
            status,
            payload: Payload::decode_reply(status, content_type.as_ref(), body),
        })
    }

    /// A connection ready for a request, and whether it was reused from the pool.
    async fn connection(
        &self,
        peer: SocketAddr,
    ) -> Result<(SendRequest<Full<Bytes>>, bool), SendError> {
        while let Some(mut sender) =
            self.idle
                .check_out(peer, |sender, _| !sender.is_closed(), drop)
        {
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        let unreachable = |reason: String| SendError::Unreachable {
            ip: peer.ip().to_string(),
            reason,
        };
        let io = self.dial(peer).await.map_err(unreachable)?;
        let handshake_failed = |e: hyper::Error| unreachable(with_causes(&e));
        // Made on the loop's thread, the connection is read and written there too.
        if let Some(read_loop) = self.loop_here() {
            let socket = io
                .into_inner()
                .into_std()
                .map_err(|e| unreachable(e.to_string()))?;
            let io = read_loop
                .io_here(Arc::new(socket))
                .map_err(|e| unreachable(e.to_string()))?;
            let (sender, connection) = http1::handshake(io).await.map_err(handshake_failed)?;
            let runtime = tokio::runtime::Handle::current();
            read_loop.spawn_here(in_runtime(runtime, async move {
                let _ = connection.await;
            }));
            return Ok((sender, false));
        }
        let (sender, connection) = http1::handshake(io).await.map_err(handshake_failed)?;
        tokio::spawn(connection);
        Ok((sender, false))
    }
}
