//! The messaging client: keep-alive HTTP/1.1 connections to every peer, pooled here
//! over hyper's connection API, and one multiplexed connection ([`super::mux`]) to each
//! peer that offered it; a connect timeout and a request timeout make every send settle.
//! Sends made on the thread of the loop connections are read on go over HTTP/1.1
//! connections of that thread's own instead of hyper's ([`Client::send_loop_http1`],
//! `loop_http1.rs`), pooled and settled alike.
//!
//! The pool is a list of idle connections per peer: a send takes the most recently used
//! one that is still open (or opens one), and gives it back once the reply is read. A
//! request that a connection hands back unsent (it was closing) goes on a new one; one
//! that may have been written is never sent again. The same holds on multiplexed
//! connections: only requests the peer says it never read (go-away) are sent again.
//!
//! A peer is reached over HTTP/1.1 until one of its replies offers the multiplexed
//! transport, so 0.5.1 pods only ever see HTTP/1.1. Every send of the node goes through
//! [`Client::dispatch`], which chooses its path in one place (`dispatch.rs`).
//!

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use hyper::Uri;
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioIo};
use rustc_hash::FxHashMap;
use tokio::{net::TcpStream, runtime::Handle};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use super::{
    auth::{self, Auth},
    codec::{self, Payload},
    loop_http1,
    loop_io::{in_runtime, EventLoop, LoopIo},
    mux::{self, Outcome},
    path, Meta, Reply, Routed, Trace, RING,
};
use crate::errors::with_causes;
use crate::stats::{Direction, Transport, Transports};

mod config;
mod dispatch;
mod http1;
use http1::Home;
mod multiplexed;
use multiplexed::settled;
mod on_loop;
mod pool;

pub use config::{ClientConfig, Liveness, SendError};
use pool::Pool;

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

/// A pooled client for the messaging protocol.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Tells, for a peer's address, the token cancelled when it leaves the cluster.
pub type Departures = Box<dyn Fn(IpAddr) -> CancellationToken + Send + Sync>;

struct Inner {
    connector: HttpConnector,
    /// The idle HTTP/1.1 connections of the loop's thread (`http1.rs`).
    loop_idle: Pool<Arc<loop_http1::Conn>>,
    /// The idle HTTP/1.1 connections the runtime polls.
    runtime_idle: Pool<Arc<loop_http1::Conn>>,
    routes: Mutex<FxHashMap<SocketAddr, Route>>,
    config: ClientConfig,
    /// Where sends that take a task of their own run, off the loop's thread.
    runtime: Option<Handle>,
    /// Set once by the node ([`Client::watch_departures`]).
    departures: OnceLock<Departures>,
    /// Where connections and exchanges are counted, set once by the node
    /// ([`Client::count_in`]).
    transports: OnceLock<Arc<Transports>>,
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

/// What a send's outcome is handed to.
pub type Sent = Box<dyn FnOnce(Result<Reply, SendError>) + Send>;

/// A request ready to go: made by [`Client::unsent`], handed back by
/// [`Client::send_multiplexed`] when it did not send it, sent by [`Client::send_unsent`].
pub struct Unsent {
    peer: SocketAddr,
    /// The request's path, as it goes on the wire.
    encoded: String,
    payload: Payload,
    /// What routed a task request, and the trace it belongs to.
    meta: Meta,
}

impl Unsent {
    /// The request, saying which key and ring routed it (a task request).
    pub fn routed_by(mut self, routed: &Routed) -> Unsent {
        self.meta.routed = Some(routed.clone());
        self
    }

    /// The request, carrying the trace context of its sender's span, if any.
    pub fn traced(mut self, trace: Option<Trace>) -> Unsent {
        self.meta.trace = trace;
        self
    }

    /// The address of the node it is for.
    pub fn ip(&self) -> IpAddr {
        self.peer.ip()
    }
}

impl Client {
    /// Builds a client; connections are opened lazily and kept alive per peer. Sends that
    /// take a task of their own run on the runtime it is built in.
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
                loop_idle: Pool::default(),
                runtime_idle: Pool::default(),
                routes: Mutex::new(FxHashMap::default()),
                config,
                runtime: Handle::try_current().ok(),
                departures: OnceLock::new(),
                transports: OnceLock::new(),
            }),
        }
    }

    /// Sends `payload` to `path` on the node at `ip` and returns its reply, whatever
    /// the status; ends as [`Client::send_until_gone`] does when the peer leaves the
    /// cluster ([`Client::watch_departures`]).
    pub async fn send(
        &self,
        ip: &str,
        topic_path: &str,
        payload: Payload,
    ) -> Result<Reply, SendError> {
        self.send_request(self.unsent(ip, topic_path, payload)?)
            .await
    }

    /// Sends `unsent` as [`Client::send`] does.
    pub async fn send_request(&self, unsent: Unsent) -> Result<Reply, SendError> {
        let gone = self.inner.departed(unsent.peer.ip());
        self.inner.send_unsent(unsent, &gone).await
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

    /// Sends what [`Client::send_multiplexed`] handed back as [`Client::send_until_gone`]
    /// does.
    pub async fn send_unsent(
        &self,
        unsent: Unsent,
        gone: &CancellationToken,
    ) -> Result<Reply, SendError> {
        self.inner.send_unsent(unsent, gone).await
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
            meta: Meta::default(),
        })
    }

    /// The token cancelled when a peer leaves the cluster: `departures` tells it for
    /// each, from now on (none leaves before).
    pub fn watch_departures(&self, departures: Departures) {
        let _ = self.inner.departures.set(departures);
    }

    /// Counts the connections this client opens, and its exchanges, in `transports`,
    /// from now on.
    pub fn count_in(&self, transports: Arc<Transports>) {
        let _ = self.inner.transports.set(transports);
    }

    /// Whether this is the thread of the loop its connections are read on: work started
    /// here stays here.
    pub(crate) fn on_loop_thread(&self) -> bool {
        self.inner.loop_here().is_some()
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
    /// The token cancelled when the peer at `ip` leaves the cluster.
    fn departed(&self, ip: IpAddr) -> CancellationToken {
        self.departures
            .get()
            .map_or_else(CancellationToken::new, |departed| departed(ip))
    }

    /// The runtime of sends that take a task of their own.
    fn runtime(&self) -> Handle {
        self.runtime.clone().unwrap_or_else(Handle::current)
    }

    /// Sends `unsent` within the request timeout; see [`Client::send_unsent`].
    async fn send_unsent(
        self: &Arc<Self>,
        unsent: Unsent,
        gone: &CancellationToken,
    ) -> Result<Reply, SendError> {
        let (peer, timeout) = (unsent.peer, self.config.request_timeout);
        tokio::time::timeout(timeout, self.deliver(unsent, gone))
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Timeout {
                    ip: peer.ip().to_string(),
                    ms: timeout.as_millis(),
                })
            })
    }

    fn loop_here(&self) -> Option<&Arc<dyn EventLoop>> {
        self.config
            .event_loop
            .as_ref()
            .filter(|event_loop| event_loop.is_current())
    }

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, FxHashMap<SocketAddr, Route>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}
