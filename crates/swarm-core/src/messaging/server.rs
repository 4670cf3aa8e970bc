//! The messaging server: HTTP/1.1 as 0.5.1 speaks it, and on the same port HTTP/2
//! without TLS and the multiplexed transport of [`super::mux`], for peers that use them.
//!
//! Each request is decoded (size-limited, JSON validated), handed to a [`Dispatch`]
//! and answered from its [`Reply`], whatever the transport. Shutdown stops accepting,
//! lets in-flight requests finish, then releases the port.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream::FuturesUnordered, StreamExt};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{
    body::Incoming,
    header::{self, HeaderMap, HeaderValue},
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

use super::{
    auth::Auth,
    codec::Payload,
    mux::{self, Answer, Outbox, Read, Responder},
    path, Inbound, Reply,
};

/// A multiplexed connection without requests for this long is closed (with a go-away,
/// so the client loses nothing); the client opens a new one when it needs one.
const MUX_IDLE: Duration = Duration::from_secs(60);

/// What the server hands a decoded request to.
pub trait Dispatch: Send + Sync + 'static {
    /// Answers one message.
    fn dispatch(&self, message: Inbound) -> Answering;
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
}

/// Serves `listener` until `cancel` fires, then drains in-flight requests. Multiplexed
/// connections are read on `read_loop` when set, on the runtime otherwise.
pub async fn serve(
    listener: TcpListener,
    dispatch: Arc<dyn Dispatch>,
    limits: ServerLimits,
    cancel: CancellationToken,
    read_loop: Option<Arc<dyn mux::ReadLoop>>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let ctx = Arc::new(Context {
        dispatch,
        limits,
        in_flight,
    });
    let graceful = GracefulShutdown::new();
    let multiplexed = TaskTracker::new();
    // Cancelled when the drain timeout has passed: multiplexed connections still
    // draining are dropped.
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
        let (ctx, builder, watcher) = (ctx.clone(), builder.clone(), graceful.watcher());
        let (cancel, multiplexed, give_up) = (cancel.clone(), multiplexed.clone(), give_up.clone());
        let read_loop = read_loop.clone();
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
                // Dropped, connection and all, if it is still draining when shutdown
                // gives up.
                tokio::select! {
                    () = multiplexed.track_future(serve_mux(stream, peer, ctx, cancel, read_loop)) => {}
                    () = give_up.cancelled() => {}
                }
                return;
            }
            let service = service_fn(move |req| handle(req, peer, ctx.clone()));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                debug!(target: "node_swarm_kb::messages", "connection from {peer} ended: {e}");
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

/// Serves one multiplexed connection (its first byte is waiting): requests are handled
/// concurrently and their replies written as they come, in batches. At shutdown, or
/// after [`MUX_IDLE`] without requests, it sends a go-away naming the last request it
/// read, answers those in flight and ends its sending side; the client sends any later
/// request again elsewhere. With a `read_loop`, the requests are read and started on
/// its thread (see [`serve_elsewhere`]).
async fn serve_mux(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    cancel: CancellationToken,
    read_loop: Option<Arc<dyn mux::ReadLoop>>,
) {
    let mut preface = [0u8; mux::PREFACE.len()];
    let greeted =
        tokio::time::timeout(ctx.limits.header_timeout, stream.read_exact(&mut preface)).await;
    if !matches!(greeted, Ok(Ok(_)))
        || preface != mux::PREFACE
        || stream.write_all(mux::ACCEPTED).await.is_err()
    {
        return;
    }
    debug!(target: "node_swarm_kb::messages", "multiplexed connection from {peer}");
    let outbox = Arc::new(Outbox::default());
    let _stop = StopWriter(outbox.clone());
    let conn = MuxConn {
        peer,
        ctx,
        outbox,
        given: Arc::new(Notify::new()),
    };
    let written = match read_loop {
        None => conn.serve_here(stream, cancel).await,
        Some(read_loop) => match mux::share(stream) {
            Ok((socket, sink)) => {
                let _end = mux::EndReading(socket.clone());
                conn.serve_elsewhere(socket, sink, &*read_loop, cancel)
                    .await
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = written {
        debug!(target: "node_swarm_kb::messages", "multiplexed connection from {peer} ended: {e}");
    }
}

/// A handler's future, answering a multiplexed request.
type Handler = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// The requests being handled by futures, polled by a connection's task: an answer
/// wakes it, not a task of its own.
type Handling = FuturesUnordered<Pin<Box<dyn Future<Output = (Arc<Answer>, Reply)> + Send>>>;

/// What answers the requests of one multiplexed connection.
struct MuxConn {
    peer: SocketAddr,
    ctx: Arc<Context>,
    outbox: Arc<Outbox>,
    /// Told of every answer given.
    given: Arc<Notify>,
}

impl MuxConn {
    /// What answers request `id`, given its slot among those in flight.
    fn answer(&self, id: u32) -> impl FnOnce(OwnedSemaphorePermit) -> Arc<Answer> + '_ {
        move |slot| Answer::new(self.outbox.clone(), id, slot, self.given.clone())
    }

    /// Adds a handler's future to those polled, with the handler timeout.
    fn handle(&self, handling: &Handling, answer: Arc<Answer>, handler: Handler) {
        let timeout = self.ctx.limits.handler_timeout;
        handling.push(Box::pin(async move {
            let reply = tokio::time::timeout(timeout, handler)
                .await
                .unwrap_or_else(|_| timed_out());
            (answer, reply)
        }));
    }

    /// Reads and answers on this task.
    async fn serve_here(&self, stream: TcpStream, cancel: CancellationToken) -> io::Result<()> {
        let (read, write) = stream.into_split();
        let mut reader = BufReader::with_capacity(64 * 1024, read);
        let outbox = &self.outbox;
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run(write).await }
        });
        // Queues a frame; the reading waits while the client leaves too much unread.
        let send = |frame| {
            outbox.push(frame);
            outbox.room()
        };
        let ctx = &self.ctx;
        let max = ctx.limits.max_body + ctx.limits.max_header_size;
        let timeout = ctx.limits.handler_timeout;
        let mut last = 0;
        let idle = tokio::time::sleep(MUX_IDLE);
        tokio::pin!(idle);
        // A reply waits for room in the writer's queue, and reading waits with it: a
        // client that does not read its replies is not read from either.
        let mut handling = Handling::new();
        // The requests whose dispatcher took their responder, by deadline (the handler
        // timeout is the same for all); their answers wake nothing here.
        let mut taken: VecDeque<(Instant, Arc<Answer>)> = VecDeque::new();
        let expiry = tokio::time::sleep(timeout);
        tokio::pin!(expiry);
        let going_away = loop {
            // Waits between frames: what is read here is kept, so stopping loses nothing.
            let more = tokio::select! {
                Some((answer, reply)) = handling.next(), if !handling.is_empty() => {
                    give(&answer, &reply, outbox).await;
                    continue;
                }
                () = &mut expiry, if !taken.is_empty() => {
                    if let Some(deadline) = expire(&mut taken, Instant::now()) {
                        expiry.as_mut().reset(deadline);
                    }
                    continue;
                }
                _ = cancel.cancelled() => break true,
                _ = &mut idle => {
                    if handling.is_empty() && expire(&mut taken, Instant::now()).is_none() {
                        break true;
                    }
                    idle.as_mut().reset(Instant::now() + MUX_IDLE);
                    continue;
                }
                more = reader.fill_buf() => more.is_ok_and(|b| !b.is_empty()),
            };
            if !more {
                break false;
            }
            // A frame that has begun must come whole within the header timeout; the
            // requests in flight are answered meanwhile.
            let read =
                tokio::time::timeout(ctx.limits.header_timeout, mux::read_frame(&mut reader, max));
            tokio::pin!(read);
            let read = loop {
                tokio::select! {
                    read = &mut read => break read,
                    Some((answer, reply)) = handling.next(), if !handling.is_empty() => {
                        give(&answer, &reply, outbox).await;
                    }
                }
            };
            let (id, rest) = match read {
                Ok(Ok(Read::Frame(mux::REQUEST, id, rest))) if id > last => (id, Some(rest)),
                Ok(Ok(Read::TooLarge(mux::REQUEST, id))) if id > last => (id, None),
                _ => break false,
            };
            last = id;
            let now = Instant::now();
            idle.as_mut().reset(now + MUX_IDLE);
            match start(ctx, rest, self.peer, self.answer(id)) {
                Started::Now(reply) => send(mux::reply_frame(id, &reply)).await,
                Started::Later(answer, handler) => self.handle(&handling, answer, handler),
                Started::Taken(answer) => {
                    taken.push_back((now + timeout, answer));
                    if let Some(deadline) = expire(&mut taken, now) {
                        expiry.as_mut().reset(deadline);
                    }
                }
            }
        };
        if going_away {
            send(mux::go_away_frame(last)).await;
        }
        let answered = self.answer_all(handling, |now| expire(&mut taken, now));
        // Reads on until the client closes (for the drain timeout at most), so closing
        // never resets the connection under replies it has not read yet.
        let rest = async {
            let _ = tokio::time::timeout(ctx.limits.drain_timeout, async {
                while let Ok(Read::Frame(..) | Read::TooLarge(..)) =
                    mux::read_frame(&mut reader, max).await
                {}
            })
            .await;
        };
        let (written, (), ()) = tokio::join!(writer, answered, rest);
        written.unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// Reads and starts the requests on `read_loop`'s thread, which hands this task the
    /// handlers' futures; the requests whose responder was taken are answered there.
    async fn serve_elsewhere(
        &self,
        socket: Arc<std::net::TcpStream>,
        sink: mux::Sink,
        read_loop: &dyn mux::ReadLoop,
        cancel: CancellationToken,
    ) -> io::Result<()> {
        let ctx = &self.ctx;
        let inbox = Arc::new(Inbox {
            state: Mutex::new(InState {
                last: 0,
                stopped: false,
                later: Vec::new(),
                taken: VecDeque::new(),
                active: Instant::now(),
                partial: None,
                paused: None,
                ended: false,
            }),
            wake: Notify::new(),
        });
        let requests = |framer| Requests {
            inbox: inbox.clone(),
            socket: socket.clone(),
            framer,
            conn: MuxConn {
                peer: self.peer,
                ctx: ctx.clone(),
                outbox: self.outbox.clone(),
                given: self.given.clone(),
            },
        };
        let max = ctx.limits.max_body + ctx.limits.max_header_size;
        read_loop.adopt(Box::new(requests(mux::Framer::new(max))));
        let writer = tokio::spawn({
            let outbox = self.outbox.clone();
            async move { outbox.run(sink).await }
        });
        let mut handling = Handling::new();
        let going_away = loop {
            let now = Instant::now();
            let (later, paused, next) = {
                let mut state = inbox.lock();
                if state.ended {
                    break false;
                }
                // A frame that has begun must come whole within the header timeout.
                let stalled = state.partial.map(|since| since + ctx.limits.header_timeout);
                if stalled.is_some_and(|at| at <= now) {
                    break false;
                }
                let taken = expire(&mut state.taken, now);
                let idle = state.active + MUX_IDLE;
                if idle <= now && handling.is_empty() && taken.is_none() {
                    break true;
                }
                // The reader starts frames and takes requests without telling: looked
                // at again within the header timeout, and before a request taken from
                // now on can time out.
                let limits = &ctx.limits;
                let next = [
                    idle,
                    now + limits.header_timeout,
                    now + limits.handler_timeout,
                ]
                .into_iter()
                .chain(taken)
                .chain(stalled)
                .min()
                .unwrap_or(idle);
                (std::mem::take(&mut state.later), state.paused.take(), next)
            };
            for (answer, handler) in later {
                self.handle(&handling, answer, handler);
            }
            if let Some(framer) = paused {
                // The client leaves too much unread: read again once it has read some.
                self.outbox.room().await;
                read_loop.adopt(Box::new(requests(framer)));
                continue;
            }
            tokio::select! {
                Some((answer, reply)) = handling.next(), if !handling.is_empty() => {
                    give(&answer, &reply, &self.outbox).await;
                }
                () = inbox.wake.notified() => {}
                _ = cancel.cancelled() => break true,
                () = tokio::time::sleep_until(next) => {}
            }
        };
        let last = {
            let mut state = inbox.lock();
            state.stopped = true;
            for (answer, handler) in std::mem::take(&mut state.later) {
                self.handle(&handling, answer, handler);
            }
            state.last
        };
        if going_away {
            self.outbox.push(mux::go_away_frame(last));
        }
        let answered = self.answer_all(handling, |now| expire(&mut inbox.lock().taken, now));
        // The reader reads past what comes until the client closes (for the drain
        // timeout at most), so closing never resets the connection under replies it
        // has not read yet.
        let rest = async {
            let _ = tokio::time::timeout(ctx.limits.drain_timeout, async {
                loop {
                    let woken = inbox.wake.notified();
                    if inbox.lock().ended {
                        break;
                    }
                    woken.await;
                }
            })
            .await;
        };
        let (written, (), ()) = tokio::join!(writer, answered, rest);
        written.unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// Answers the requests in flight: those of `handling`, and those taken, which
    /// `expire` times out (returning the next deadline, if any is left); then ends the
    /// writer once it has written the replies.
    async fn answer_all(
        &self,
        mut handling: Handling,
        mut expire: impl FnMut(Instant) -> Option<Instant>,
    ) {
        let handled = async {
            while let Some((answer, reply)) = handling.next().await {
                give(&answer, &reply, &self.outbox).await;
            }
        };
        let taken = async {
            loop {
                let answer_given = self.given.notified();
                let Some(deadline) = expire(Instant::now()) else {
                    break;
                };
                tokio::select! {
                    () = answer_given => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        };
        tokio::join!(handled, taken);
        self.outbox.close();
    }
}

/// What a connection read on another loop shares with its task.
struct Inbox {
    state: Mutex<InState>,
    /// Wakes the task: handlers' futures to poll, the reading paused or ended.
    wake: Notify,
}

struct InState {
    /// The last request read.
    last: u32,
    /// No request is started any more: a go-away names `last`, or the connection ends.
    stopped: bool,
    /// Handlers' futures, for the task to poll.
    later: Vec<(Arc<Answer>, Handler)>,
    /// The requests whose dispatcher took their responder, by deadline.
    taken: VecDeque<(Instant, Arc<Answer>)>,
    /// When the last request came in.
    active: Instant,
    /// Since when a frame has been coming in, if one is.
    partial: Option<Instant>,
    /// What the reading had read when it paused for room in the writer's queue.
    paused: Option<mux::Framer>,
    /// The reading is over: the client ended the connection, or broke the protocol.
    ended: bool,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, InState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The requests of a multiplexed connection, read on a [`mux::ReadLoop`].
struct Requests {
    inbox: Arc<Inbox>,
    socket: Arc<std::net::TcpStream>,
    framer: mux::Framer,
    conn: MuxConn,
}

impl mux::Inflow for Requests {
    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn read(&mut self) -> bool {
        let Requests {
            inbox,
            socket,
            framer,
            conn,
        } = self;
        let step = mux::read_frames(socket, framer, |read| Ok(conn.take(inbox, read)));
        // The answers given at once (refusals) go out now.
        mux::flush();
        let mut state = inbox.lock();
        state.partial = framer
            .partial()
            .then(|| state.partial.unwrap_or_else(Instant::now));
        let over = match step {
            mux::Step::Wait => return false,
            mux::Step::Paused => {
                state.paused = Some(std::mem::replace(framer, mux::Framer::new(0)));
                true
            }
            mux::Step::Over(_) => {
                state.ended = true;
                true
            }
        };
        drop(state);
        inbox.wake.notify_one();
        over
    }
}

impl MuxConn {
    /// Starts the request just read, on the reading loop's thread.
    fn take(&self, inbox: &Inbox, read: Read) -> mux::Flow {
        let mut state = inbox.lock();
        if state.stopped {
            // After the go-away: the client sends it again elsewhere.
            return mux::Flow::Go;
        }
        let (id, rest) = match read {
            Read::Frame(mux::REQUEST, id, rest) if id > state.last => (id, Some(rest)),
            Read::TooLarge(mux::REQUEST, id) if id > state.last => (id, None),
            _ => return mux::Flow::Over,
        };
        state.last = id;
        let now = Instant::now();
        state.active = now;
        // Started under the lock: once the task has stopped the reading, a request it
        // did not name in its go-away is never started.
        match start(&self.ctx, rest, self.peer, self.answer(id)) {
            Started::Now(reply) => {
                self.outbox.push_later(mux::reply_frame(id, &reply));
            }
            Started::Later(answer, handler) => {
                state.later.push((answer, handler));
                inbox.wake.notify_one();
            }
            Started::Taken(answer) => state
                .taken
                .push_back((now + self.ctx.limits.handler_timeout, answer)),
        }
        if self.outbox.has_room() {
            mux::Flow::Go
        } else {
            mux::Flow::Pause
        }
    }
}

/// Stops a connection's writer task when the connection's own task ends, or is dropped
/// (shutdown gave up on it), so the socket closes with it.
struct StopWriter(Arc<Outbox>);

impl Drop for StopWriter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a multiplexed request started.
enum Started {
    /// Answered at once (refused, malformed, too large).
    Now(Reply),
    /// Answered by the reply this future resolves to.
    Later(Arc<Answer>, Pin<Box<dyn Future<Output = Reply> + Send>>),
    /// Answered through its responder, which the dispatcher took.
    Taken(Arc<Answer>),
}

/// Starts answering request `rest` (`None`: it was too large) as [`answer`] does an HTTP
/// one; `answer` makes what answers it, given its slot among those in flight.
fn start(
    ctx: &Context,
    rest: Option<Bytes>,
    peer: SocketAddr,
    answer: impl FnOnce(OwnedSemaphorePermit) -> Arc<Answer>,
) -> Started {
    let Some(rest) = rest else {
        return Started::Now(too_large(ctx.limits.max_body));
    };
    let Ok(slot) = ctx.in_flight.clone().try_acquire_owned() else {
        return Started::Now(busy());
    };
    let mut message = match decode_frame(rest, peer, ctx) {
        Ok(message) => message,
        Err(reply) => return Started::Now(reply),
    };
    let answer = answer(slot);
    message.responder = Some(Responder(answer.clone()));
    match ctx.dispatch.dispatch(message) {
        Answering::Later(handler) => Started::Later(answer, handler),
        Answering::Taken => Started::Taken(answer),
    }
}

/// Gives the reply of a handler's future, unless its request was answered already;
/// then waits for room in the writer's queue.
async fn give(answer: &Arc<Answer>, reply: &Reply, outbox: &Outbox) {
    if answer.give(reply, false) {
        outbox.room().await;
    }
}

/// Drops the answered requests at the head of `taken`, answers those whose handler
/// timed out by `now`, and returns the next deadline, if any request is left.
fn expire(taken: &mut VecDeque<(Instant, Arc<Answer>)>, now: Instant) -> Option<Instant> {
    while let Some((deadline, answer)) = taken.front() {
        if !answer.is_answered() && *deadline > now {
            return Some(*deadline);
        }
        answer.give(&timed_out(), false);
        taken.pop_front();
    }
    None
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    ctx: Arc<Context>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = answer(&ctx, decode(req, peer, &ctx)).await;
    Ok(respond(reply, ctx.limits.multiplex))
}

/// The reply to a request: it gets a slot among those in flight (or `503`), then is
/// decoded and handed to the dispatcher, which has the handler timeout to answer.
async fn answer(ctx: &Context, decoded: impl Future<Output = Result<Inbound, Reply>>) -> Reply {
    let Ok(_slot) = ctx.in_flight.clone().try_acquire_owned() else {
        return busy();
    };
    match decoded.await {
        Ok(message) => match ctx.dispatch.dispatch(message) {
            Answering::Later(handler) => tokio::time::timeout(ctx.limits.handler_timeout, handler)
                .await
                .unwrap_or_else(|_| timed_out()),
            // An HTTP request has no responder to take.
            Answering::Taken => Reply::error(500, "the request's answer went astray"),
        },
        Err(reply) => reply,
    }
}

fn busy() -> Reply {
    Reply::error(503, "Too many requests in progress, retry later")
}

/// Decodes a multiplexed request as [`decode`] does an HTTP one.
fn decode_frame(rest: Bytes, peer: SocketAddr, ctx: &Context) -> Result<Inbound, Reply> {
    let request =
        mux::parse_request(rest).ok_or_else(|| Reply::error(400, "Malformed request frame"))?;
    if request.path.len() > ctx.limits.max_header_size {
        return Err(head_too_large(ctx.limits.max_header_size));
    }
    // The frame limit leaves room for a head; the body has its own.
    if request.body.len() > ctx.limits.max_body {
        return Err(too_large(ctx.limits.max_body));
    }
    // As of an HTTP request line, the path is what precedes a query.
    let path = request.path.split('?').next().unwrap_or_default();
    inbound(
        ctx,
        "POST",
        path,
        request.content_type,
        &request.signature,
        request.body,
        peer,
    )
}

async fn decode(req: Request<Incoming>, peer: SocketAddr, ctx: &Context) -> Result<Inbound, Reply> {
    let (parts, incoming) = req.into_parts();
    let has_body = match parts.method {
        Method::POST | Method::PUT => true,
        Method::GET => false,
        _ => {
            return Err(Reply::error(
                405,
                "Method not allowed: use POST, PUT or GET",
            ))
        }
    };
    // hyper's read buffer bounds the memory a head may take, but lets a head that
    // arrived in large reads through: the limit itself is checked here.
    let max_head = ctx.limits.max_header_size;
    let head = parts.uri.to_string().len()
        + parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head > max_head {
        return Err(head_too_large(max_head));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > ctx.limits.max_body as u64) {
        return Err(too_large(ctx.limits.max_body));
    }
    let body = if has_body {
        read_body(incoming, declared, ctx.limits.max_body).await?
    } else {
        Bytes::new()
    };
    inbound(
        ctx,
        parts.method.as_str(),
        parts.uri.path(),
        parts.headers.get(header::CONTENT_TYPE),
        &parts.headers,
        body,
        peer,
    )
}

/// A request whose body is read: its signature checked, its path and body decoded.
/// Multiplexed requests are signed as `POST`s, as HTTP ones are sent.
fn inbound(
    ctx: &Context,
    method: &str,
    raw_path: &str,
    content_type: Option<&HeaderValue>,
    headers: &HeaderMap,
    body: Bytes,
    peer: SocketAddr,
) -> Result<Inbound, Reply> {
    if let Some(auth) = &ctx.limits.auth {
        auth.verify(method, raw_path, headers, &body)
            .map_err(|e| Reply::error(401, &e.to_string()))?;
    }
    let path = path::decode(raw_path.trim_matches('/'));
    let payload =
        Payload::decode(content_type, body).map_err(|e| Reply::error(400, &e.to_string()))?;
    let from = peer.ip().to_canonical();
    debug!(target: "node_swarm_kb::messages", "New message {path} received from {from}");
    Ok(Inbound {
        path,
        payload,
        from,
        responder: None,
    })
}

/// The whole body, at most `max` bytes, in one buffer sized from its declared length:
/// each piece is copied in and let go as it arrives, so the body is held once (hyper's
/// `collect` keeps every piece until it copies them all into one buffer), and the
/// buffer is the body's own, which the host can take over without copying.
async fn read_body(incoming: Incoming, declared: Option<u64>, max: usize) -> Result<Bytes, Reply> {
    let mut limited = Limited::new(incoming, max);
    let mut body = Vec::with_capacity(declared.map_or(0, |len| len as usize).min(max));
    while let Some(frame) = limited.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    body.extend_from_slice(&data);
                }
            }
            Err(e) if e.is::<LengthLimitError>() => return Err(too_large(max)),
            Err(e) => {
                return Err(Reply::error(
                    400,
                    &format!("Unable to read request body: {e}"),
                ))
            }
        }
    }
    Ok(Bytes::from(body))
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

/// The HTTP response of `reply`; with `offer_mux`, it offers the multiplexed transport.
fn respond(reply: Reply, offer_mux: bool) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    if offer_mux {
        builder = builder.header(mux::ADVERTISE, "1");
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        builder = builder.header(header::ALLOW, "POST, PUT, GET");
    }
    let body = if status == StatusCode::NO_CONTENT {
        Bytes::new()
    } else {
        if let Some(ct) = reply.payload.content_type() {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        reply.payload.bytes()
    };
    builder
        .body(Full::new(body))
        .expect("status and headers are valid")
}
