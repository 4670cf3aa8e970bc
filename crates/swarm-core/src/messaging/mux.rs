//! The multiplexed transport between pods of this version: any number of requests in
//! flight on one TCP connection, written and read in batches, where HTTP/1.1 needs one
//! connection per request in flight and a write and a read system call per message.
//!
//! Pods of 0.5.1 never see it. A server of ours advertises the transport with a header
//! on its HTTP replies ([`ADVERTISE`]); a client opens a multiplexed connection only to
//! a peer that did, and starts it with [`PREFACE`], whose first byte (NUL) starts no
//! HTTP request, so the server tells the two apart from one byte on the same port. The
//! server answers [`ACCEPTED`]; anything else and the client keeps HTTP/1.1 for it.
//!
//! Frames, big-endian: `len: u32` (of what follows), `kind: u8`, `id: u32`, then
//! - request (1): `type: u8`, `path_len: u16`, the path as in an HTTP request line,
//!   `auth_len: u16`, the signature header values joined by spaces, the body;
//! - reply (2): `status: u16`, `type: u8`, the body;
//! - go-away (3): nothing. The server answers every request up to `id` and none after
//!   it, so the client sends those again on a new connection (HTTP/2's GOAWAY): a server
//!   shutting down, or closing an idle connection, never leaves a request in doubt.
//!
//! `type` is 0 for no content type, 1 for JSON and 2 for text, as [`Payload`] sends them;
//! bodies are decoded and checked as HTTP ones are, so both transports answer alike.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    future::Future,
    io::{self, IoSlice, Read as _, Write as _},
    net::Shutdown,
    os::fd::{AsRawFd, RawFd},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::{
    io::{
        unix::AsyncFd, AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader,
        Interest,
    },
    net::{tcp::OwnedWriteHalf, TcpStream},
    sync::{oneshot, Notify, OwnedSemaphorePermit},
};

use super::{auth, Auth, Payload, Reply};

/// The reply header by which a server of ours offers the transport.
pub const ADVERTISE: HeaderName = HeaderName::from_static("x-swarm-kb-mux");
/// The first bytes a client sends on a multiplexed connection.
pub const PREFACE: &[u8] = b"\0SWARM-KB MUX/1\r\n";
/// The server's answer to [`PREFACE`].
pub const ACCEPTED: &[u8] = b"\0SWARM-KB MUX/1 OK\r\n";

/// The kinds of frames.
pub const REQUEST: u8 = 1;
pub const REPLY: u8 = 2;
pub const GO_AWAY: u8 = 3;
/// `kind` and `id`.
const HEAD: usize = 5;
/// Frames are gathered into writes of about this size.
const BATCH: usize = 64 * 1024;

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

fn type_code(payload: &Payload) -> u8 {
    match payload {
        Payload::Empty => 0,
        Payload::Json(_) => 1,
        Payload::Text(_) => 2,
    }
}

/// The content type a `type` byte stands for, as an HTTP header would carry it.
pub fn content_type(code: u8) -> Option<&'static HeaderValue> {
    match code {
        1 => Some(&JSON),
        2 => Some(&TEXT),
        _ => None,
    }
}

fn frame(kind: u8, id: u32, rest: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(4 + HEAD + rest);
    buf.put_u32((HEAD + rest) as u32);
    buf.put_u8(kind);
    buf.put_u32(id);
    buf
}

/// A request frame; `auth` signs it as an HTTP `POST` to `path`.
pub fn request_frame(id: u32, path: &str, payload: &Payload, auth: Option<&Auth>) -> Bytes {
    let mut buf = encode_request(path, payload, auth);
    set_id(&mut buf, id);
    buf.freeze()
}

/// A request frame without its id: signing and copying the body need no lock.
fn encode_request(path: &str, payload: &Payload, auth: Option<&Auth>) -> BytesMut {
    let body = payload.bytes();
    let signature = auth
        .map(|auth| {
            let headers = auth.sign("POST", path, &body);
            let values: Vec<&str> = headers
                .iter()
                .map(|(_, v)| v.to_str().expect("ASCII"))
                .collect();
            values.join(" ")
        })
        .unwrap_or_default();
    let mut buf = frame(REQUEST, 0, 5 + path.len() + signature.len() + body.len());
    buf.put_u8(type_code(payload));
    buf.put_u16(path.len() as u16);
    buf.put_slice(path.as_bytes());
    buf.put_u16(signature.len() as u16);
    buf.put_slice(signature.as_bytes());
    buf.put_slice(&body);
    buf
}

/// Writes `id` into a frame (after `len` and `kind`).
fn set_id(frame: &mut BytesMut, id: u32) {
    frame[5..5 + 4].copy_from_slice(&id.to_be_bytes());
}

/// A reply frame, with the body an HTTP reply of `reply` would have.
pub fn reply_frame(id: u32, reply: &Reply) -> Bytes {
    let (code, body) = if reply.status == 204 {
        (0, Bytes::new())
    } else {
        (type_code(&reply.payload), reply.payload.bytes())
    };
    let mut buf = frame(REPLY, id, 3 + body.len());
    buf.put_u16(reply.status);
    buf.put_u8(code);
    buf.put_slice(&body);
    buf.freeze()
}

/// A go-away frame: requests after `last` will not be answered.
pub fn go_away_frame(last: u32) -> Bytes {
    frame(GO_AWAY, last, 0).freeze()
}

/// A request as a frame carries it.
#[derive(Debug)]
pub struct RequestFrame {
    pub content_type: Option<&'static HeaderValue>,
    pub path: String,
    /// The signature headers, when the request is signed.
    pub signature: HeaderMap,
    pub body: Bytes,
}

fn take_short(rest: &mut Bytes) -> Option<Bytes> {
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    rest.advance(2);
    (rest.len() >= len).then(|| rest.split_to(len))
}

/// Parses the rest of a request frame; `None` when it is malformed.
pub fn parse_request(mut rest: Bytes) -> Option<RequestFrame> {
    let code = *rest.first()?;
    rest.advance(1);
    let path = String::from_utf8(take_short(&mut rest)?.to_vec()).ok()?;
    let signed = take_short(&mut rest)?;
    let mut signature = HeaderMap::new();
    if !signed.is_empty() {
        let text = std::str::from_utf8(&signed).ok()?;
        let mut values = text.split(' ');
        for name in [auth::TIMESTAMP, auth::NONCE, auth::SIGNATURE] {
            signature.insert(name, HeaderValue::from_str(values.next()?).ok()?);
        }
    }
    Some(RequestFrame {
        content_type: content_type(code),
        path,
        signature,
        body: rest,
    })
}

/// Parses the rest of a reply frame; `None` when it is malformed.
pub fn parse_reply(mut rest: Bytes) -> Option<Reply> {
    let status = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    let code = *rest.get(2)?;
    rest.advance(3);
    Some(Reply {
        status,
        payload: Payload::decode_reply(status, content_type(code), rest),
    })
}

/// What [`read_frame`] read.
#[derive(Debug)]
pub enum Read {
    /// A frame: its kind, its id and what follows them.
    Frame(u8, u32, Bytes),
    /// A frame longer than allowed, skipped: its kind and id.
    TooLarge(u8, u32),
    /// The connection ended between frames.
    End,
}

/// Reads the next frame; one longer than `max` bytes is read past, not kept.
pub async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> io::Result<Read> {
    if reader.fill_buf().await?.is_empty() {
        return Ok(Read::End);
    }
    let len = reader.read_u32().await? as usize;
    if len < HEAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too short",
        ));
    }
    let kind = reader.read_u8().await?;
    let id = reader.read_u32().await?;
    let rest = (len - HEAD) as u64;
    if len > max {
        let skipped =
            tokio::io::copy(&mut (&mut *reader).take(rest), &mut tokio::io::sink()).await?;
        if skipped < rest {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(Read::TooLarge(kind, id));
    }
    // Grown as the bytes arrive, not sized from the declared length: a peer that
    // announces a large frame and sends little gets little memory.
    let mut buf = Vec::with_capacity((len - HEAD).min(BATCH));
    if (&mut *reader).take(rest).read_to_end(&mut buf).await? < len - HEAD {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Read::Frame(kind, id, Bytes::from(buf)))
}

/// Past this many bytes waiting to be written on a connection, the tasks that queue
/// frames wait for room (a peer that does not read holds back its own traffic, not this
/// process's memory).
pub const HIGH_WATER: usize = 1 << 20;
/// At most this many frames go into one system call.
const GATHER: usize = 64;

/// Frames not yet wholly handed to the kernel, and their bytes; the first may be partly
/// written. A peer handles a request only once it has read the whole frame, so a frame
/// still here was never handled.
#[derive(Default)]
struct Frames {
    list: VecDeque<Bytes>,
    /// How much of the first frame is written.
    front_written: usize,
    bytes: usize,
}

impl Frames {
    fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.list.push_back(frame);
    }

    /// Writes what the socket takes now, without waiting.
    fn try_write(&mut self, out: &Sink) -> io::Result<()> {
        while !self.list.is_empty() {
            // On the stack: this runs for every write.
            let mut slices = [IoSlice::new(&[]); GATHER];
            let mut count = 0;
            for (slice, frame) in slices.iter_mut().zip(&self.list) {
                let skip = if count == 0 { self.front_written } else { 0 };
                *slice = IoSlice::new(&frame[skip..]);
                count += 1;
            }
            let mut written = out.try_write_vectored(&slices[..count])?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.bytes -= written;
            while written > 0 {
                let left = self.list[0].len() - self.front_written;
                if left <= written {
                    written -= left;
                    self.list.pop_front();
                    self.front_written = 0;
                } else {
                    self.front_written += written;
                    written = 0;
                }
            }
        }
        Ok(())
    }

    /// The ids of the requests among the frames.
    fn requests(&self) -> Vec<u32> {
        self.list
            .iter()
            .filter(|frame| frame.get(4) == Some(&REQUEST))
            .filter_map(|frame| Some(u32::from_be_bytes(frame.get(5..9)?.try_into().ok()?)))
            .collect()
    }
}

#[derive(Default)]
struct OutState {
    /// The socket, once connected, until the writer ends.
    out: Option<Arc<Sink>>,
    queued: Frames,
    /// In this thread's list of outboxes to [`flush`].
    listed: bool,
    /// No frames are taken any more; the writer ends once the queue is written.
    closed: bool,
    /// Nothing more is written: the connection is over.
    aborted: bool,
}

thread_local! {
    /// The outboxes that frames were queued on by [`Outbox::push_later`] on this thread.
    static LATER: RefCell<Vec<Arc<Outbox>>> = const { RefCell::new(Vec::new()) };
}

/// Writes what [`Outbox::push_later`] queued on this thread: a thread that queues many
/// frames (JavaScript, in one turn of its loop) writes them in one system call per
/// connection, and no other thread is woken for it.
pub fn flush() {
    for outbox in LATER.with(|later| std::mem::take(&mut *later.borrow_mut())) {
        let mut state = outbox.lock();
        state.listed = false;
        outbox.write_now(&mut state);
    }
}

/// The sending side of a multiplexed connection. Frames are written under its lock,
/// without waiting: by the thread that queues them ([`Outbox::push_later`], then
/// [`flush`]), or by the connection's writer task ([`Outbox::run`]) for frames queued
/// by tasks of the runtime (gathered into one write) and for what the socket did not
/// take at once. A frame leaves the queue only once the kernel has all of it, so when
/// the connection breaks, the requests still queued are known never to have been read.
#[derive(Default)]
pub struct Outbox {
    /// Carries requests: nothing is written once the peer has ended its side (see
    /// [`peer_closed`]).
    requests: bool,
    state: Mutex<OutState>,
    /// Wakes the writer: there are frames to write, or the outbox closed.
    wake: Notify,
    /// Wakes those waiting for room.
    room: Notify,
}

impl Outbox {
    /// The outbox of a client's connection, whose frames are requests.
    fn for_requests() -> Outbox {
        Outbox {
            requests: true,
            ..Outbox::default()
        }
    }

    /// True when nothing may be written on `out` any more.
    fn stopped(&self, out: &Sink) -> bool {
        self.requests && peer_closed(out)
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame, and holds the lock for what follows; `None` once it is closed.
    fn queue(&self, frame: Bytes) -> Option<MutexGuard<'_, OutState>> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.queued.push(frame);
        Some(state)
    }

    /// Queues a frame for the writer task; false once the outbox is closed.
    pub fn push(&self, frame: Bytes) -> bool {
        let queued = self.queue(frame).is_some();
        if queued {
            self.wake.notify_one();
        }
        queued
    }

    /// Queues a frame to be written when this thread calls [`flush`]; false once the
    /// outbox is closed.
    pub fn push_later(self: &Arc<Self>, frame: Bytes) -> bool {
        let Some(mut state) = self.queue(frame) else {
            return false;
        };
        if !std::mem::replace(&mut state.listed, true) {
            LATER.with(|later| later.borrow_mut().push(self.clone()));
        }
        true
    }

    /// Waits until fewer than [`HIGH_WATER`] bytes wait to be written.
    pub async fn room(&self) {
        loop {
            let room = self.room.notified();
            if self.has_room() {
                return;
            }
            room.await;
        }
    }

    pub(crate) fn has_room(&self) -> bool {
        let state = self.lock();
        state.queued.bytes < HIGH_WATER || state.closed
    }

    /// Takes no more frames; the writer ends once those queued are written.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Writes nothing more, and returns the ids of the requests never wholly written.
    pub fn abort(&self) -> Vec<u32> {
        let mut state = self.lock();
        state.closed = true;
        state.aborted = true;
        let unsent = state.queued.requests();
        state.queued = Frames::default();
        drop(state);
        self.wake.notify_one();
        self.room.notify_waiters();
        unsent
    }

    /// Writes what the socket takes now; what is left, the writer writes.
    fn write_now(&self, state: &mut OutState) {
        if state.aborted || state.queued.list.is_empty() {
            return;
        }
        let written = match &state.out {
            Some(out) if !self.stopped(out) => state.queued.try_write(out),
            _ => Err(io::ErrorKind::NotConnected.into()),
        };
        if written.is_err() {
            self.wake.notify_one();
        }
        self.room.notify_waiters();
    }

    /// Writes the frames queued on the outbox to `out`, gathered into as few system
    /// calls as the socket allows, until it is closed and they are written or it is
    /// aborted; then ends the stream's sending side. The frames left unwritten after a
    /// failure stay queued, for [`Outbox::abort`] to name.
    pub async fn run(&self, out: impl Into<Sink>) -> io::Result<()> {
        let out = Arc::new(out.into());
        self.lock().out = Some(out.clone());
        let written = self.write_all(&out).await;
        let mut state = self.lock();
        state.closed = true;
        state.out = None;
        drop(state);
        self.room.notify_waiters();
        out.finish();
        written
    }

    async fn write_all(&self, out: &Sink) -> io::Result<()> {
        loop {
            let wake = self.wake.notified();
            let written = {
                let mut state = self.lock();
                let empty = state.queued.list.is_empty();
                // The peer ended its side: what is queued was never read, and the
                // reader, about to see the end, names it (see `Conn::retire`).
                if state.aborted || empty && state.closed || !empty && self.stopped(out) {
                    return Ok(());
                }
                let written = (!empty).then(|| state.queued.try_write(out));
                self.room.notify_waiters();
                written
            };
            match written {
                None => wake.await,
                Some(Ok(())) => {}
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => tokio::select! {
                    writable = out.writable() => writable?,
                    () = wake => {}
                },
                Some(Err(e)) => return Err(e),
            }
        }
    }
}

/// The socket an [`Outbox`] writes to.
pub enum Sink {
    /// The sending half of a stream the runtime reads.
    Half(OwnedWriteHalf),
    /// A socket another loop reads ([`ReadLoop`]): registered with the runtime for
    /// writability alone, so what comes in wakes no thread of the runtime.
    Shared(AsyncFd<Arc<std::net::TcpStream>>),
}

impl From<OwnedWriteHalf> for Sink {
    fn from(half: OwnedWriteHalf) -> Sink {
        Sink::Half(half)
    }
}

impl Sink {
    fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sink::Half(half) => half.try_write_vectored(slices),
            Sink::Shared(fd) => fd.get_ref().as_ref().write_vectored(slices),
        }
    }

    /// Waits until the socket may take more.
    async fn writable(&self) -> io::Result<()> {
        match self {
            Sink::Half(half) => half.writable().await,
            Sink::Shared(fd) => {
                // Cleared before the next attempt, so a later edge is never lost.
                fd.writable().await?.clear_ready();
                Ok(())
            }
        }
    }

    /// Ends the sending side, once the last frame is written.
    fn finish(&self) {
        match self {
            // Ended when the last reference to it is dropped.
            Sink::Half(_) => {}
            Sink::Shared(fd) => {
                let _ = fd.get_ref().shutdown(Shutdown::Write);
            }
        }
    }
}

impl AsRawFd for Sink {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Sink::Half(half) => half.as_ref().as_raw_fd(),
            Sink::Shared(fd) => fd.as_raw_fd(),
        }
    }
}

/// True once the peer has ended its side of the connection, or reset it: a server of
/// ours does so only after a go-away or when it died, so a request written now would
/// never be read. Seen in the kernel's TCP state, which knows of a FIN the reader may
/// not have read yet (replies can be waiting before it).
#[cfg(target_os = "linux")]
fn peer_closed(out: &Sink) -> bool {
    // The states of <netinet/tcp.h> once a FIN or a reset came in.
    const CLOSE: u8 = 7;
    const CLOSE_WAIT: u8 = 8;
    const LAST_ACK: u8 = 9;
    // `struct tcp_info` starts with the state; the kernel copies no more than asked.
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` is valid for `len` bytes, and the descriptor is open while `out`
    // lives.
    let got = unsafe {
        libc::getsockopt(
            out.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    got == 0 && len >= 1 && matches!(info[0], CLOSE | CLOSE_WAIT | LAST_ACK)
}

#[cfg(not(target_os = "linux"))]
fn peer_closed(_: &Sink) -> bool {
    false
}

/// The answer to a multiplexed request: given once, by its [`Responder`] from any
/// thread, or by the server's task (the handler's future resolved, or timed out).
pub(crate) struct Answer {
    outbox: Arc<Outbox>,
    id: u32,
    answered: AtomicBool,
    /// The request's slot among those in flight, given back with the answer.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    /// Told of every answer given: the server waits on it while it drains.
    given: Arc<Notify>,
}

impl Answer {
    pub(crate) fn new(
        outbox: Arc<Outbox>,
        id: u32,
        slot: OwnedSemaphorePermit,
        given: Arc<Notify>,
    ) -> Arc<Answer> {
        Arc::new(Answer {
            outbox,
            id,
            answered: AtomicBool::new(false),
            slot: Mutex::new(Some(slot)),
            given,
        })
    }

    /// Queues `reply` as the answer, for the writer task or (`later`) for this thread's
    /// next [`flush`]; false when it was given already.
    pub(crate) fn give(&self, reply: &Reply, later: bool) -> bool {
        if self.answered.swap(true, Ordering::AcqRel) {
            return false;
        }
        let frame = reply_frame(self.id, reply);
        if later {
            self.outbox.push_later(frame);
        } else {
            self.outbox.push(frame);
        }
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.given.notify_one();
        true
    }

    pub(crate) fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }
}

/// Answers a multiplexed request from any thread, without waking the server's task:
/// a dispatcher that takes it from the [`super::Inbound`] answers through it (see
/// [`super::Answering::Taken`]). Unanswered within the handler timeout, the request is
/// answered `500 operation timed out`.
pub struct Responder(pub(crate) Arc<Answer>);

impl Responder {
    /// Answers with `reply`, written at this thread's next [`flush`]; false when the
    /// request was answered already (it timed out).
    pub fn reply_later(&self, reply: &Reply) -> bool {
        self.0.give(reply, true)
    }

    /// Answers with `reply`, written by the connection's writer task.
    pub fn reply(&self, reply: &Reply) -> bool {
        self.0.give(reply, false)
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Responder").field(&self.0.id).finish()
    }
}

/// How a call on a client connection ended.
#[derive(Debug)]
pub enum Outcome {
    /// The peer's reply.
    Reply(Reply),
    /// Never handled by the peer (refused or told to go away): send it again.
    Resend,
    /// The peer does not speak this transport: send it over HTTP/1.1.
    NotOurs,
    /// The peer did not answer the preface in time: send it over HTTP/1.1, for now.
    NoAnswer,
    /// No connection could be made: never delivered.
    Unreachable(String),
    /// The connection broke while the call was on it: it may have been delivered.
    Failed(String),
    /// No reply within the connection's request timeout: it may have been delivered.
    TimedOut,
    /// The peer left the cluster (see [`Conn::abandon`]): it may have been delivered.
    Left,
}

/// How the reading of a connection's replies ends.
type Reading = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// What a call's outcome is handed to, on the connection's tasks.
pub type Done = Box<dyn FnOnce(Outcome) + Send>;

/// A call waiting for its reply.
struct Waiter {
    done: Done,
    /// When it times out; `None` for calls whose caller keeps its own time ([`Call`]).
    deadline: Option<Instant>,
}

struct State {
    /// False once the connection stops taking calls (go-away, failure, close).
    open: bool,
    /// True once the peer accepted the preface.
    accepted: bool,
    next_id: u32,
    waiting: HashMap<u32, Waiter>,
}

/// A client's multiplexed connection to one peer.
pub struct Conn {
    state: Mutex<State>,
    outbox: Arc<Outbox>,
    /// How long a call made by [`Conn::call_later`] may wait for its reply.
    timeout: Duration,
}

/// A call in flight on a [`Conn`]; dropping it (timeout, peer gone) forgets it.
pub struct Call {
    conn: Arc<Conn>,
    id: u32,
    outcome: oneshot::Receiver<Outcome>,
}

impl Call {
    /// Waits for the outcome.
    pub async fn outcome(mut self) -> Outcome {
        (&mut self.outcome)
            .await
            .unwrap_or_else(|_| Outcome::Failed("connection closed".into()))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let mut state = self.conn.lock();
        if state.waiting.remove(&self.id).is_some() {
            self.conn.end_if_done(&state);
        }
    }
}

impl Conn {
    /// A connection over what `connect` yields, driven by tasks of its own; calls may
    /// be made at once and are written once the peer has accepted the preface.
    /// A peer that does not answer the preface within `handshake` gets HTTP/1.1.
    /// Calls made by [`Conn::call_later`] time out after `timeout`. With a `read_loop`,
    /// the replies are read on its thread.
    pub fn open<F>(
        connect: F,
        handshake: Duration,
        timeout: Duration,
        read_loop: Option<Arc<dyn ReadLoop>>,
    ) -> Arc<Conn>
    where
        F: Future<Output = Result<TcpStream, String>> + Send + 'static,
    {
        let conn = Arc::new(Conn {
            state: Mutex::new(State {
                open: true,
                accepted: false,
                next_id: 1,
                waiting: HashMap::new(),
            }),
            outbox: Arc::new(Outbox::for_requests()),
            timeout,
        });
        tokio::spawn(conn.clone().drive(connect, handshake, read_loop));
        conn
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while the connection takes calls.
    pub fn is_open(&self) -> bool {
        self.lock().open
    }

    /// Puts a request on the connection (waiting while [`HIGH_WATER`] bytes wait to be
    /// written), or `None` when it no longer takes calls.
    pub async fn call(
        self: &Arc<Self>,
        path: &str,
        payload: &Payload,
        auth: Option<&Auth>,
    ) -> Option<Call> {
        self.outbox.room().await;
        let (tx, outcome) = oneshot::channel();
        let done: Done = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        let id = self
            .enqueue(path, payload, auth, done, None, |frame| {
                self.outbox.push(frame)
            })
            .ok()?;
        Some(Call {
            conn: self.clone(),
            id,
            outcome,
        })
    }

    /// Puts a request on a connection the peer has accepted, to be written when this
    /// thread calls [`flush`]; `done` gets its outcome, on the connection's tasks, within
    /// the connection's timeout. Hands `done` back when the connection is not
    /// accepted yet or no longer takes calls.
    pub fn call_later(
        self: &Arc<Self>,
        path: &str,
        payload: &Payload,
        auth: Option<&Auth>,
        done: Done,
    ) -> Result<(), Done> {
        if !self.lock().accepted {
            return Err(done);
        }
        let deadline = Some(Instant::now() + self.timeout);
        self.enqueue(path, payload, auth, done, deadline, |frame| {
            self.outbox.push_later(frame)
        })
        .map(|_| ())
    }

    /// Gives the request an id and queues it with `push`; `done` back when the
    /// connection no longer takes calls.
    fn enqueue(
        &self,
        path: &str,
        payload: &Payload,
        auth: Option<&Auth>,
        done: Done,
        deadline: Option<Instant>,
        push: impl FnOnce(Bytes) -> bool,
    ) -> Result<u32, Done> {
        let mut frame = encode_request(path, payload, auth);
        let mut state = self.lock();
        if !state.open {
            return Err(done);
        }
        let id = state.next_id;
        // Queued under the lock, so ids go out in order and a go-away's `last` splits them.
        set_id(&mut frame, id);
        if !push(frame.freeze()) {
            // The writer has stopped: the connection is over.
            state.open = false;
            return Err(done);
        }
        // Ids only grow on a connection; the last one retires it.
        state.next_id = id.saturating_add(1);
        state.open = id < u32::MAX;
        state.waiting.insert(id, Waiter { done, deadline });
        Ok(id)
    }

    /// Stops taking calls; the connection ends once the calls on it are answered.
    pub fn close(&self) {
        let mut state = self.lock();
        state.open = false;
        self.end_if_done(&state);
    }

    /// Stops taking calls, settles those waiting as [`Outcome::Left`] (those never
    /// written as [`Outcome::Resend`]) and ends the connection: its peer left the cluster.
    pub fn abandon(&self) {
        self.retire();
        self.settle_all(|| Outcome::Left);
    }

    /// Stops taking calls and writing: the requests the kernel never had all of are
    /// sent again, elsewhere.
    fn retire(&self) {
        self.lock().open = false;
        for id in self.outbox.abort() {
            self.settle(id, Outcome::Resend);
        }
    }

    /// Ends the sending side (the peer then closes) once a connection that takes no
    /// more calls has none left.
    fn end_if_done(&self, state: &State) {
        if !state.open && state.waiting.is_empty() {
            self.outbox.close();
        }
    }

    /// Settles every waiting call with `outcome`, and stops taking calls.
    fn settle_all(&self, outcome: impl Fn() -> Outcome) {
        let waiting: Vec<Waiter> = {
            let mut state = self.lock();
            state.open = false;
            state.waiting.drain().map(|(_, waiter)| waiter).collect()
        };
        for waiter in waiting {
            (waiter.done)(outcome());
        }
    }

    /// Settles call `id` with `outcome`, if it still waits.
    fn settle(&self, id: u32, outcome: Outcome) {
        let waiter = self.lock().waiting.remove(&id);
        if let Some(waiter) = waiter {
            (waiter.done)(outcome);
        }
    }

    async fn drive(
        self: Arc<Self>,
        connect: impl Future<Output = Result<TcpStream, String>>,
        handshake: Duration,
        read_loop: Option<Arc<dyn ReadLoop>>,
    ) {
        let mut stream = match connect.await {
            Ok(stream) => stream,
            Err(reason) => return self.settle_all(|| Outcome::Unreachable(reason.clone())),
        };
        let mut answer = [0u8; ACCEPTED.len()];
        let accepted = tokio::time::timeout(handshake, async {
            stream.write_all(PREFACE).await?;
            stream.read_exact(&mut answer).await
        })
        .await;
        // Nothing but the preface was written: no call reached the peer.
        match accepted {
            Ok(Ok(_)) if answer == ACCEPTED => {}
            Ok(_) => {
                self.outbox.close();
                return self.settle_all(|| Outcome::NotOurs);
            }
            Err(_) => {
                self.outbox.close();
                return self.settle_all(|| Outcome::NoAnswer);
            }
        }
        let (read, sink, _end): (Reading, Sink, _) = match read_loop {
            None => {
                let (read, write) = stream.into_split();
                let read = self
                    .clone()
                    .read_replies(BufReader::with_capacity(BATCH, read));
                (Box::pin(read), write.into(), None)
            }
            Some(read_loop) => match self.clone().hand_over(stream, &*read_loop) {
                Ok(handed) => handed,
                Err(e) => return self.settle_all(|| Outcome::Failed(e.to_string())),
            },
        };
        // Later calls are taken once what reads their replies is in place.
        self.lock().accepted = true;
        let reading = async {
            let read = read.await;
            // Whatever ended the reading ends the writing too, and settles the calls
            // left at once, whatever the writer is waiting for.
            self.retire();
            if let Err(e) = &read {
                self.settle_all(|| Outcome::Failed(e.to_string()));
            }
            read
        };
        let writing = async {
            let written = self.outbox.run(sink).await;
            if let Err(e) = &written {
                self.retire();
                self.settle_all(|| Outcome::Failed(e.to_string()));
            }
            written
        };
        let ended = async { tokio::join!(reading, writing) };
        let (read, written) = tokio::select! {
            ended = ended => ended,
            never = self.expire_calls() => match never {},
        };
        let reason = match (read, written) {
            (Err(e), _) | (Ok(()), Err(e)) => e.to_string(),
            (Ok(()), Ok(())) => "connection closed".into(),
        };
        self.settle_all(|| Outcome::Failed(reason.clone()));
    }

    /// Hands the reading of `stream` to `read_loop`; the reading future resolves when it
    /// ends, and the guard ends the socket when dropped with the connection's task.
    fn hand_over(
        self: Arc<Self>,
        stream: TcpStream,
        read_loop: &dyn ReadLoop,
    ) -> io::Result<(Reading, Sink, Option<EndReading>)> {
        let (socket, sink) = share(stream)?;
        let (tell, ended) = oneshot::channel();
        read_loop.adopt(Box::new(Replies {
            conn: self,
            socket: socket.clone(),
            framer: Framer::new(usize::MAX),
            ended: Some(tell),
        }));
        let read = async {
            ended.await.unwrap_or_else(|_| {
                Err(io::Error::other("the loop reading the connection stopped"))
            })
        };
        Ok((Box::pin(read), sink, Some(EndReading(socket))))
    }

    /// Times out the calls made by [`Conn::call_later`], for as long as it is polled.
    /// Their deadlines grow with their ids, so it wakes once per timeout when idle, and
    /// once more per call that times out.
    async fn expire_calls(&self) -> std::convert::Infallible {
        let mut next = Instant::now() + self.timeout;
        loop {
            tokio::time::sleep_until(next.into()).await;
            let now = Instant::now();
            let expired: Vec<u32> = {
                let state = self.lock();
                next = now + self.timeout;
                let mut expired = Vec::new();
                for (&id, waiter) in &state.waiting {
                    match waiter.deadline {
                        Some(deadline) if deadline <= now => expired.push(id),
                        Some(deadline) => next = next.min(deadline),
                        None => {}
                    }
                }
                expired
            };
            for id in expired {
                self.settle(id, Outcome::TimedOut);
            }
            let state = self.lock();
            self.end_if_done(&state);
        }
    }

    /// Hands each reply to its call, until the connection ends or, after a go-away or
    /// [`Conn::close`], the last call on it is answered.
    async fn read_replies<R: AsyncBufRead + Unpin>(
        self: Arc<Self>,
        mut reader: R,
    ) -> io::Result<()> {
        loop {
            match read_frame(&mut reader, usize::MAX).await? {
                Read::Frame(kind, id, rest) => {
                    if self.on_frame(kind, id, rest)? {
                        return Ok(());
                    }
                }
                // A clean end with calls waiting is a failure, reported by `drive`.
                Read::TooLarge(..) | Read::End => return Ok(()),
            }
        }
    }

    /// Handles a frame from the peer; true once the reading is over: after a go-away or
    /// [`Conn::close`], the last call on the connection is answered.
    fn on_frame(&self, kind: u8, id: u32, rest: Bytes) -> io::Result<bool> {
        match kind {
            REPLY => {
                let reply = parse_reply(rest).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "malformed reply frame")
                })?;
                self.settle(id, Outcome::Reply(reply));
            }
            GO_AWAY => {
                let unanswered: Vec<Waiter> = {
                    let mut state = self.lock();
                    state.open = false;
                    let later: Vec<u32> = state
                        .waiting
                        .keys()
                        .copied()
                        .filter(|&waiting| waiting > id)
                        .collect();
                    later
                        .iter()
                        .filter_map(|id| state.waiting.remove(id))
                        .collect()
                };
                for waiter in unanswered {
                    (waiter.done)(Outcome::Resend);
                }
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected frame kind {kind}"),
                ))
            }
        }
        let state = self.lock();
        Ok(!state.open && state.waiting.is_empty())
    }
}

/// The event loop of another thread, which reads multiplexed connections where what
/// comes in is handled (the JavaScript thread's): a frame then wakes that thread alone,
/// not a thread of the runtime first.
pub trait ReadLoop: Send + Sync {
    /// Reads `inflow` on the loop's thread: [`Inflow::read`] each time its socket is
    /// readable, until that returns true. Dropping it ends the reading.
    fn adopt(&self, inflow: Box<dyn Inflow>);
}

impl std::fmt::Debug for dyn ReadLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadLoop")
    }
}

/// The reading side of a connection, handed to a [`ReadLoop`].
pub trait Inflow: Send {
    /// The socket, to wait on.
    fn fd(&self) -> RawFd;
    /// Reads what the socket holds, without waiting, and handles each whole frame;
    /// true once this loop's reading is over.
    fn read(&mut self) -> bool;
}

/// At most this many reads per [`Inflow::read`], so one busy connection does not hold
/// the loop.
const READS: usize = 16;

/// Frames taken off the bytes of a connection as they come in, without waiting. A
/// frame longer than `max` is read past, not kept, as [`read_frame`] does.
pub(crate) struct Framer {
    /// What was read and not taken yet: the start of a frame.
    buf: BytesMut,
    max: usize,
    /// What is left to read past of a frame too large.
    skip: usize,
}

/// What a frame handler tells [`read_frames`].
pub(crate) enum Flow {
    /// Go on reading.
    Go,
    /// The reading is over.
    Over,
    /// Stop reading for now: nothing more is read until the reading is adopted again.
    Pause,
}

/// How [`read_frames`] stopped.
pub(crate) enum Step {
    /// The socket holds nothing more for now.
    Wait,
    /// The reading is over: the connection ended cleanly, failed, or a handler said so.
    Over(io::Result<()>),
    /// A handler paused the reading.
    Paused,
}

impl Framer {
    pub(crate) fn new(max: usize) -> Framer {
        Framer {
            buf: BytesMut::new(),
            max,
            skip: 0,
        }
    }

    /// True while a frame has begun and is not whole.
    pub(crate) fn partial(&self) -> bool {
        !self.buf.is_empty() || self.skip > 0
    }

    fn feed(&mut self, bytes: &[u8]) {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        self.buf.extend_from_slice(&bytes[skipped..]);
    }

    /// The next frame, once it is whole; of one too large, its kind and id.
    fn next(&mut self) -> io::Result<Option<Read>> {
        let Some(len) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
        if len < HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame too short",
            ));
        }
        let whole = if len > self.max { HEAD } else { len };
        if self.buf.len() < 4 + whole {
            return Ok(None);
        }
        self.buf.advance(4);
        let kind = self.buf.get_u8();
        let id = self.buf.get_u32();
        let rest = len - HEAD;
        if len > self.max {
            let here = rest.min(self.buf.len());
            self.buf.advance(here);
            self.skip = rest - here;
            return Ok(Some(Read::TooLarge(kind, id)));
        }
        Ok(Some(Read::Frame(
            kind,
            id,
            self.buf.split_to(rest).freeze(),
        )))
    }
}

/// Reads what `socket` holds into `framer`, without waiting, and hands each frame to
/// `handle`, at most [`READS`] reads at a time.
pub(crate) fn read_frames(
    mut socket: &std::net::TcpStream,
    framer: &mut Framer,
    mut handle: impl FnMut(Read) -> io::Result<Flow>,
) -> Step {
    let mut chunk = [0u8; 16 * 1024];
    for _ in 0..READS {
        match socket.read(&mut chunk) {
            Ok(0) if framer.partial() => {
                return Step::Over(Err(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Step::Over(Ok(())),
            Ok(n) => framer.feed(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Step::Over(Err(e)),
        }
        loop {
            let flow = match framer.next() {
                Ok(Some(read)) => handle(read),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            match flow {
                Ok(Flow::Go) => {}
                Ok(Flow::Over) => return Step::Over(Ok(())),
                Ok(Flow::Pause) => return Step::Paused,
                Err(e) => return Step::Over(Err(e)),
            }
        }
    }
    Step::Wait
}

/// The replies of a client's connection, read on a [`ReadLoop`].
struct Replies {
    conn: Arc<Conn>,
    socket: Arc<std::net::TcpStream>,
    framer: Framer,
    /// Told how the reading ended, when it does (or when this is dropped).
    ended: Option<oneshot::Sender<io::Result<()>>>,
}

impl Inflow for Replies {
    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn read(&mut self) -> bool {
        let conn = &self.conn;
        let step = read_frames(&self.socket, &mut self.framer, |read| match read {
            Read::Frame(kind, id, rest) => Ok(if conn.on_frame(kind, id, rest)? {
                Flow::Over
            } else {
                Flow::Go
            }),
            // Never: no reply is too large for a client.
            Read::TooLarge(..) | Read::End => Ok(Flow::Over),
        });
        let Step::Over(ended) = step else {
            return false;
        };
        if let Some(tell) = self.ended.take() {
            let _ = tell.send(ended);
        }
        true
    }
}

/// `stream`, to be read on another loop: the socket, and the sink that writes to it
/// (the runtime only waits for it to be writable).
pub(crate) fn share(stream: TcpStream) -> io::Result<(Arc<std::net::TcpStream>, Sink)> {
    let socket = Arc::new(stream.into_std()?);
    // SAFETY: the descriptor stays open, the same socket, while the `Arc` held by the
    // `AsyncFd` lives.
    let registered = unsafe { AsyncFd::register_with_interest(socket.clone(), Interest::WRITABLE) };
    Ok((socket.clone(), Sink::Shared(registered?)))
}

/// Ends a socket another loop reads, both ways, when the connection's task ends or is
/// dropped: the loop then sees the end and lets go of it.
pub(crate) struct EndReading(pub(crate) Arc<std::net::TcpStream>);

impl Drop for EndReading {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    async fn read(bytes: &[u8], max: usize) -> io::Result<Read> {
        read_frame(&mut BufReader::new(bytes), max).await
    }

    #[tokio::test]
    async fn a_request_frame_carries_path_type_signature_and_body() {
        let auth = Auth::new(b"secret", Duration::from_secs(30), true);
        for payload in [
            Payload::Json(Bytes::from_static(b"{\"a\":1}")),
            Payload::Text(Bytes::from_static(b"hello")),
            Payload::Empty,
        ] {
            let frame = request_frame(7, "/a/b%20c", &payload, Some(&auth));
            let Ok(Read::Frame(REQUEST, 7, rest)) = read(&frame, usize::MAX).await else {
                panic!("not a request frame")
            };
            let request = parse_request(rest).expect("well formed");
            assert_eq!(
                request.content_type.map(|v| v.to_str().expect("ASCII")),
                payload.content_type()
            );
            assert_eq!(request.body, payload.bytes());
            auth.verify("POST", "/a/b%20c", &request.signature, &request.body)
                .expect("signed as an HTTP POST of the path");
        }
        let unsigned = request_frame(1, "/x", &Payload::Empty, None);
        let Ok(Read::Frame(_, _, rest)) = read(&unsigned, usize::MAX).await else {
            panic!("not a frame")
        };
        assert!(parse_request(rest)
            .expect("well formed")
            .signature
            .is_empty());
    }

    #[tokio::test]
    async fn a_reply_frame_decodes_as_an_http_reply_would() {
        let cases = [
            Reply::ok(Payload::Json(Bytes::from_static(b"[1,2]"))),
            Reply::ok(Payload::Text(Bytes::from_static(b"plain"))),
            Reply::ok(Payload::Empty),
            Reply::error(409, "refused"),
        ];
        for reply in cases {
            let frame = reply_frame(3, &reply);
            let Ok(Read::Frame(REPLY, 3, rest)) = read(&frame, usize::MAX).await else {
                panic!("not a reply frame")
            };
            assert_eq!(parse_reply(rest), Some(reply));
        }
        let Ok(Read::Frame(GO_AWAY, 9, rest)) = read(&go_away_frame(9), usize::MAX).await else {
            panic!("not a go-away frame")
        };
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn truncated_oversized_and_malformed_frames_are_told_apart() {
        let frame = request_frame(
            5,
            "/big",
            &Payload::Text(Bytes::from(vec![b'x'; 100])),
            None,
        );
        let mut two = frame.to_vec();
        two.extend_from_slice(&go_away_frame(6));
        let mut reader = BufReader::new(&two[..]);
        assert!(matches!(
            read_frame(&mut reader, 50).await,
            Ok(Read::TooLarge(REQUEST, 5))
        ));
        assert!(
            matches!(
                read_frame(&mut reader, 50).await,
                Ok(Read::Frame(GO_AWAY, 6, _))
            ),
            "the frame after a skipped one is read whole"
        );
        assert!(matches!(read_frame(&mut reader, 50).await, Ok(Read::End)));
        assert!(
            read(&frame[..frame.len() - 1], usize::MAX).await.is_err(),
            "truncated"
        );
        assert!(
            read(&[0, 0, 0, 2, 1, 0], usize::MAX).await.is_err(),
            "shorter than a head"
        );
        for rest in [&b""[..], b"\x01\x00\x09/x", b"\x01\x00\x02/x\x00\x03a b"] {
            assert!(
                parse_request(Bytes::copy_from_slice(rest)).is_none(),
                "{rest:?}"
            );
        }
        assert!(parse_reply(Bytes::from_static(b"\x00")).is_none());
    }

    /// A connected pair: the outbox's writing half, and the peer's end as a blocking
    /// socket, read from without giving the runtime a turn.
    async fn pair() -> (Sink, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let ours = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (peer, _) = listener.accept().expect("accept");
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        (ours.into_split().1.into(), peer)
    }

    /// Starts the writer and waits until it holds the socket.
    async fn writing(outbox: &Arc<Outbox>, out: Sink) -> tokio::task::JoinHandle<io::Result<()>> {
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run(out).await }
        });
        while outbox.lock().out.is_none() {
            tokio::task::yield_now().await;
        }
        writer
    }

    fn read_exactly(peer: &mut std::net::TcpStream, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        std::io::Read::read_exact(peer, &mut bytes).expect("the bytes");
        bytes
    }

    #[tokio::test]
    async fn frames_queued_for_later_are_written_by_the_thread_that_flushes() {
        let (out, mut peer) = pair().await;
        let outbox = Arc::new(Outbox::default());
        let _writer = writing(&outbox, out).await;
        let frames: Vec<Bytes> = (1..=3).map(go_away_frame).collect();
        for frame in &frames {
            assert!(outbox.push_later(frame.clone()));
        }
        flush();
        // The runtime gets no turn before the bytes are read: the writer task had no
        // part in writing them.
        assert_eq!(read_exactly(&mut peer, 27), frames.concat());
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_at_once_the_writer_writes_in_order() {
        let (out, mut peer) = pair().await;
        let outbox = Arc::new(Outbox::default());
        let writer = writing(&outbox, out).await;
        // Far more than the socket buffers take.
        let big = Bytes::from(
            (0..32u32 << 20)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        assert!(outbox.push_later(big.clone()));
        flush();
        assert!(
            outbox.lock().queued.bytes > 0,
            "the socket took part of it; the rest is the writer's"
        );
        assert!(outbox.push(go_away_frame(7)), "queued behind the rest");
        outbox.close();
        assert!(!outbox.push(go_away_frame(8)), "closed");
        let reading = std::thread::spawn(move || {
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut peer, &mut all).expect("to the end");
            all
        });
        writer.await.expect("joined").expect("written");
        let all = reading.join().expect("joined");
        assert_eq!(all.len(), big.len() + 9);
        assert!(all[..big.len()] == big[..], "the big frame whole, first");
        assert_eq!(&all[big.len()..], &go_away_frame(7)[..], "then the next");
    }

    #[tokio::test]
    async fn producers_wait_for_room_until_the_writer_catches_up() {
        let (out, mut peer) = pair().await;
        let outbox = Arc::new(Outbox::default());
        assert!(outbox.push(Bytes::from(vec![1u8; HIGH_WATER])));
        let room = outbox.room();
        tokio::pin!(room);
        assert!(
            room.as_mut().now_or_never().is_none(),
            "no room before it is written"
        );
        let _writer = writing(&outbox, out).await;
        let reading = std::thread::spawn(move || read_exactly(&mut peer, HIGH_WATER));
        within_test(room).await;
        assert_eq!(reading.join().expect("joined"), vec![1u8; HIGH_WATER]);
    }

    #[tokio::test]
    async fn requests_are_not_written_once_the_peer_has_ended_its_side() {
        let (out, peer) = pair().await;
        peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
        // The FIN reaches the kernel at once on loopback; the reader has not run.
        within_test(async {
            while !peer_closed(&out) {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let outbox = Arc::new(Outbox::for_requests());
        let _writer = writing(&outbox, out).await;
        assert!(outbox.push_later(request_frame(4, "/x", &Payload::Empty, None)));
        flush();
        assert_eq!(outbox.abort(), vec![4], "never written: known unsent");
    }

    async fn within_test<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .expect("in time")
    }
}
