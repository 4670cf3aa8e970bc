//! The messaging server: HTTP/1.1 as 0.5.1 speaks it, and on the same port HTTP/2
//! without TLS and the multiplexed transport of [`super::mux`], for peers that use them.
//!
//! Each request is decoded (size-limited, JSON validated), handed to a [`Dispatch`]
//! and answered from its [`Reply`], whatever the transport. Shutdown stops accepting,
//! lets in-flight requests finish, then releases the port.

use std::{
    convert::Infallible, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
};
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

use super::{
    auth::Auth,
    loop_io::{in_runtime, EventLoop},
    mux, Inbound, Reply,
};
use crate::{
    ring::PeerRings,
    stats::{Direction, Open, Transport, Transports},
};

mod body;
mod decode;
mod multiplexed;

use body::respond;
use decode::{decode, decode_frame};
use multiplexed::serve_mux;

/// A multiplexed connection without requests for this long is closed (with a go-away,
/// so the client loses nothing); the client opens a new one when it needs one.
const MUX_IDLE: Duration = Duration::from_secs(60);

/// What the server hands a decoded request to.
pub trait Dispatch: Send + Sync + 'static {
    /// Answers one message.
    fn dispatch(&self, message: Inbound) -> Answering;

    /// A request was refused with `status` before it was dispatched (malformed, too
    /// large, unsigned, or no slot among those in flight).
    fn refused(&self, _status: u16) {}

    /// The server's slots for requests in flight, `max` of them: told once it serves.
    fn serving(&self, _in_flight: Arc<Semaphore>, _max: usize) {}

    /// Where the server counts the connections it accepts, if anywhere.
    fn transports(&self) -> Option<Arc<Transports>> {
        None
    }

    /// The ring this node names to its peers, and where what they name is told.
    fn rings(&self) -> Option<Arc<PeerRings>> {
        None
    }
}

/// How a dispatcher answers a message.
pub enum Answering {
    /// With the reply this future resolves to.
    Later(Pin<Box<dyn Future<Output = Reply> + Send>>),
    /// Through the message's [`mux::Responder`], which the dispatcher took; only for a
    /// message that came with one.
    Taken,
}

/// The answer to a request whose handler took longer than the handler timeout.
fn timed_out() -> Reply {
    Reply::error(500, "operation timed out")
}

/// Limits applied to every request.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Largest accepted body, in bytes; larger ones get `413`.
    pub max_body: usize,
    /// How long a handler may take before the request is answered `500 operation timed out`.
    pub handler_timeout: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// How long a client may take to send its request headers; a slower connection is
    /// closed (slowloris), so it cannot hold a slot for long.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; larger ones get 431.
    pub max_header_size: usize,
    /// When set, only signed requests are answered; others get 401.
    pub auth: Option<Arc<Auth>>,
    /// Open connections at most; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Requests being handled at most; past it, a request gets 503 at once.
    pub max_in_flight: usize,
    /// Whether the multiplexed transport is offered (to pods of this version) and served.
    pub multiplex: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body: 10 * 1024 * 1024,
            handler_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_header_size: 64 * 1024,
            auth: None,
            max_connections: 4096,
            max_in_flight: 1024,
            multiplex: true,
        }
    }
}

struct Context {
    dispatch: Arc<dyn Dispatch>,
    limits: ServerLimits,
    in_flight: Arc<Semaphore>,
    transports: Option<Arc<Transports>>,
    rings: Option<Arc<PeerRings>>,
}

impl Context {
    /// A connection accepted over `transport`, counted while the result is held.
    fn accepted(&self, transport: Transport) -> Option<Open> {
        let transports = self.transports.as_ref()?;
        Some(transports.opened(Direction::In, transport))
    }
}

/// Serves `listener` until `cancel` fires, then drains in-flight requests. Multiplexed
/// connections are read on `event_loop` when set, on the runtime otherwise.
pub async fn serve(
    listener: TcpListener,
    dispatch: Arc<dyn Dispatch>,
    limits: ServerLimits,
    cancel: CancellationToken,
    event_loop: Option<Arc<dyn EventLoop>>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    dispatch.serving(in_flight.clone(), limits.max_in_flight.max(1));
    let ctx = Arc::new(Context {
        transports: dispatch.transports(),
        rings: dispatch.rings(),
        dispatch,
        limits,
        in_flight,
    });
    let graceful = GracefulShutdown::new();
    let multiplexed = TaskTracker::new();
    // Cancelled when the drain timeout has passed: connections still draining are
    // dropped.
    let give_up = CancellationToken::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.header_timeout)
        // hyper's floor for its read buffer is 8 KiB.
        .max_buf_size(ctx.limits.max_header_size.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(ctx.limits.max_header_size).unwrap_or(u32::MAX));
    loop {
        let connection = tokio::select! {
            _ = cancel.cancelled() => break,
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(target: "node_swarm_kb::messages", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let ends = Ends::of(&stream, peer);
        let (ctx, builder, watcher) = (ctx.clone(), builder.clone(), graceful.watcher());
        let (cancel, multiplexed, give_up) = (cancel.clone(), multiplexed.clone(), give_up.clone());
        let event_loop = event_loop.clone();
        tokio::spawn(async move {
            let _connection = connection;
            // A client that connects and stays silent holds a slot too: it gets the
            // header timeout to send its first byte, as a slow one gets for its headers.
            let mut first = [0u8; 1];
            let waited =
                tokio::time::timeout(ctx.limits.header_timeout, stream.peek(&mut first)).await;
            if !matches!(waited, Ok(Ok(n)) if n > 0) {
                return;
            }
            if first[0] == mux::PREFACE[0] && ctx.limits.multiplex {
                let _open = ctx.accepted(Transport::Multiplexed);
                // Dropped, connection and all, if it is still draining when shutdown
                // gives up.
                tokio::select! {
                    () = multiplexed.track_future(serve_mux(stream, ends, ctx, cancel, event_loop)) => {}
                    () = give_up.cancelled() => {}
                }
                return;
            }
            let conn = HttpConn {
                _open: ctx.accepted(Transport::Http1),
                ends,
                ctx,
                builder,
                watcher,
                give_up,
                _connection,
            };
            match event_loop {
                None => conn.serve(TokioIo::new(stream)).await,
                Some(event_loop) => match stream.into_std() {
                    Ok(socket) => {
                        let runtime = tokio::runtime::Handle::current();
                        event_loop.serve(
                            Arc::new(socket),
                            Box::new(move |io| in_runtime(runtime, conn.serve(io))),
                        )
                    }
                    Err(e) => {
                        debug!(target: "node_swarm_kb::messages", "connection from {peer} ended: {e}")
                    }
                },
            }
        });
    }
    drop(listener);
    multiplexed.close();
    let drained = async { tokio::join!(graceful.shutdown(), multiplexed.wait()) };
    if tokio::time::timeout(ctx.limits.drain_timeout, drained)
        .await
        .is_err()
    {
        warn!(target: "node_swarm_kb::messages", "in-flight requests still running at shutdown");
        give_up.cancel();
        multiplexed.wait().await;
    }
}

/// The two ends of a connection: the sender's address, and this node's as the sender
/// addressed it, what a signature names.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ends {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

impl Ends {
    fn of(stream: &tokio::net::TcpStream, peer: SocketAddr) -> Ends {
        let canonical = |addr: SocketAddr| SocketAddr::new(addr.ip().to_canonical(), addr.port());
        Ends {
            peer,
            local: stream.local_addr().map(canonical).unwrap_or(peer),
        }
    }
}

/// An HTTP connection (HTTP/1.1, or HTTP/2 without TLS) and what serving it needs.
struct HttpConn {
    ends: Ends,
    ctx: Arc<Context>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    give_up: CancellationToken,
    /// Its slot among the open connections.
    _connection: OwnedSemaphorePermit,
    /// Counted among the open connections while served.
    _open: Option<Open>,
}

impl HttpConn {
    /// Serves the connection over `io` until it ends, drains at shutdown or is cut.
    async fn serve<I>(self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (ends, ctx) = (self.ends, self.ctx);
        let peer = ends.peer;
        let dispatch = ctx.dispatch.clone();
        let service = service_fn(move |req| handle(req, ends, ctx.clone()));
        let conn = self.builder.serve_connection(io, service).into_owned();
        // Dropped, connection and all, when shutdown gives up on it: its client sees
        // the connection end instead of waiting for the handler's timeout on a server
        // that is gone.
        tokio::select! {
            served = self.watcher.watch(conn) => if let Err(e) = served {
                // A head past hyper's read buffer gets its 431 from hyper itself.
                if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse_too_large) {
                    dispatch.refused(431);
                }
                debug!(target: "node_swarm_kb::messages", "connection from {peer} ended: {e}");
            },
            () = self.give_up.cancelled() => {
                debug!(target: "node_swarm_kb::messages", "connection from {peer} cut: still busy after the drain timeout");
            }
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    ends: Ends,
    ctx: Arc<Context>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = answer(&ctx, decode(req, ends, &ctx)).await;
    let ring = ctx.rings.as_ref().map(|rings| rings.own());
    Ok(respond(reply, ctx.limits.multiplex, ring))
}

/// The reply to a request: it gets a slot among those in flight (or `503`), then is
/// decoded and handed to the dispatcher, which has the handler timeout to answer.
async fn answer(ctx: &Context, decoded: impl Future<Output = Result<Inbound, Reply>>) -> Reply {
    let Ok(_slot) = ctx.in_flight.clone().try_acquire_owned() else {
        return ctx.refuse(busy());
    };
    match decoded.await {
        Ok(message) => match ctx.dispatch.dispatch(message) {
            Answering::Later(handler) => tokio::time::timeout(ctx.limits.handler_timeout, handler)
                .await
                .unwrap_or_else(|_| timed_out()),
            // An HTTP request has no responder to take.
            Answering::Taken => Reply::error(500, "the request's answer went astray"),
        },
        Err(reply) => ctx.refuse(reply),
    }
}

impl Context {
    /// Answers with `reply` a request refused before it was dispatched, counted.
    fn refuse(&self, reply: Reply) -> Reply {
        self.dispatch.refused(reply.status);
        reply
    }
}

fn busy() -> Reply {
    Reply::error(503, "Too many requests in progress, retry later")
}

fn head_too_large(max: usize) -> Reply {
    Reply::error(
        431,
        &format!("Request header fields larger than {max} bytes"),
    )
}

fn too_large(max: usize) -> Reply {
    Reply::error(413, &format!("Request body larger than {max} bytes"))
}
