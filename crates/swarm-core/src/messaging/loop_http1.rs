//! HTTP/1.1 exchanges of a loop thread's own (the JavaScript thread's, in the addon): a
//! request is written by the thread that sends it, inside its call, and its reply read by
//! the connection's task on the same loop, on keep-alive connections the client pools.
//! hyper's client takes a task of its own and two channels per exchange besides its
//! connection's task; on the path of every message to a 0.5.1 pod that was a third of
//! the sender's CPU. Connections are made by the client's connector, with its options.

use std::{
    future::Future,
    io::{self, Write as _},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::{client::SendError, loop_io::LoopIo, mux, sys, Payload, Reply};

/// A reply read whole, and what it says of its connection and its peer.
pub(crate) struct Answered {
    pub reply: Reply,
    /// The peer offers the multiplexed transport.
    pub offers_mux: Option<mux::Offer>,
    /// The connection may carry another request.
    pub keep_alive: bool,
}

/// What a call's outcome is handed to, on the connection's task.
pub(crate) type Settle = Box<dyn FnOnce(Result<Answered, SendError>) + Send>;

/// Pools a connection whose reply left it open, before the reply is handed on.
pub(crate) type Idle = Box<dyn Fn(&Arc<Conn>) + Send + Sync>;

/// A keep-alive connection of a loop thread, one exchange at a time.
pub(crate) struct Conn {
    peer: SocketAddr,
    /// How long a call may wait for its reply.
    timeout: Duration,
    idle: Idle,
    /// Cancelled when the peer leaves the cluster: the connection ends.
    gone: CancellationToken,
    state: Mutex<State>,
}

struct State {
    /// The socket, until the connection ends (its task holds it too, to read it).
    socket: Option<Arc<std::net::TcpStream>>,
    call: Option<Call>,
    /// What the socket did not take of the request at once: the task writes it.
    unwritten: Bytes,
    /// It takes no more calls, and its task ends once none is left.
    closed: bool,
    /// The connection's task, while it waits.
    task: Option<Waker>,
}

struct Call {
    settle: Settle,
    deadline: Instant,
}

impl Conn {
    pub(crate) fn new(
        socket: Arc<std::net::TcpStream>,
        peer: SocketAddr,
        timeout: Duration,
        idle: Idle,
        gone: CancellationToken,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            peer,
            timeout,
            idle,
            gone,
            state: Mutex::new(State {
                socket: Some(socket),
                call: None,
                unwritten: Bytes::new(),
                closed: false,
                task: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while it may take a call: open, idle, its peer still in the cluster, and,
    /// when `ask` (it has been idle a while), its peer has not ended its side: a server
    /// that closed it (at its keep-alive timeout, or shutting down) would never read a
    /// request written now, and its task may not have seen the end yet. Asking the
    /// kernel takes a system call, which a connection reused at once does without, as
    /// hyper's pool does.
    pub(crate) fn is_usable(&self, ask: bool) -> bool {
        let state = self.lock();
        match &state.socket {
            Some(socket) if !state.closed && state.call.is_none() && !self.gone.is_cancelled() => {
                !ask || !sys::peer_closed(sys::raw(&**socket))
            }
            _ => false,
        }
    }

    /// Stops taking calls; the task ends, and the socket closes, once none is left.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        wake(&mut state);
    }

    /// Writes `request` (what the socket takes now; the task writes the rest), whose
    /// reply goes to `settle` within the connection's timeout. Both are handed back when
    /// no byte of it left: the connection was closed, and another may take it.
    pub(crate) fn call(&self, request: Bytes, settle: Settle) -> Result<(), (Bytes, Settle)> {
        let mut state = self.lock();
        let socket = match &state.socket {
            Some(socket) if !state.closed && state.call.is_none() => socket.clone(),
            _ => return Err((request, settle)),
        };
        let mut written = 0;
        let error = loop {
            match (&*socket).write(&request[written..]) {
                Ok(n) => {
                    written += n;
                    if written == request.len() {
                        break None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = error {
            state.closed = true;
            wake(&mut state);
            if written == 0 {
                return Err((request, settle));
            }
            drop(state);
            // Begun, so it may have been delivered: not sent again.
            settle(Err(failed(self.peer.ip().to_string(), &e)));
            return Ok(());
        }
        state.call = Some(Call {
            settle,
            deadline: Instant::now() + self.timeout,
        });
        state.unwritten = request.slice(written..);
        if !state.unwritten.is_empty() {
            wake(&mut state);
        }
        Ok(())
    }

    /// Ends the connection, settling its call (if any) with what `failure` makes of it.
    /// The socket closes as the task lets go of it, even while the pool keeps this.
    fn end(&self, failure: impl FnOnce(String) -> SendError) {
        let call = {
            let mut state = self.lock();
            state.closed = true;
            state.socket = None;
            state.call.take()
        };
        if let Some(call) = call {
            (call.settle)(Err(failure(self.peer.ip().to_string())));
        }
    }

    /// Reads the replies, writes what a request left over, and times out the call,
    /// until the connection ends, is closed while idle, or its peer leaves.
    pub(crate) async fn run(self: Arc<Self>, io: LoopIo) {
        let mut io = TokioIo::new(io);
        let mut replies = Replies::default();
        let mut room = vec![0u8; 16 * 1024];
        let mut gone = std::pin::pin!(self.gone.clone().cancelled_owned());
        let mut expiry: Option<Pin<Box<tokio::time::Sleep>>> = None;
        std::future::poll_fn(|cx| {
            if gone.as_mut().poll(cx).is_ready() {
                self.end(|ip| SendError::Left { ip });
                return Poll::Ready(());
            }
            if let Err(e) = self.write_rest(&mut io, cx) {
                self.end(|ip| failed(ip, &e));
                return Poll::Ready(());
            }
            loop {
                let mut buf = ReadBuf::new(&mut room);
                match Pin::new(&mut io).poll_read(cx, &mut buf) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => {
                        self.end(|ip| failed(ip, &e));
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                        // The end: a reply read up to it is whole; a call still
                        // waiting fails as the task ends.
                        if let Some(answered) = replies.end() {
                            self.settle(answered);
                        }
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(())) => {
                        replies.push(buf.filled());
                        match replies.next() {
                            Ok(Some(answered)) => {
                                if !self.settle(answered) {
                                    return Poll::Ready(());
                                }
                            }
                            Ok(None) => {}
                            Err(reason) => {
                                self.end(|ip| SendError::Failed { ip, reason });
                                return Poll::Ready(());
                            }
                        }
                    }
                }
            }
            let mut state = self.lock();
            let deadline = state.call.as_ref().map(|call| call.deadline);
            if deadline.is_none() && state.closed {
                return Poll::Ready(());
            }
            state.task = Some(cx.waker().clone());
            drop(state);
            // The call's deadline, if it has one: a timer made or moved only when it
            // differs, so an exchange that is answered in time costs at most one.
            if let Some(deadline) = deadline {
                let sleep = expiry
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                if sleep.deadline() != deadline.into() {
                    sleep.as_mut().reset(deadline.into());
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    let ms = self.timeout.as_millis();
                    self.end(|ip| SendError::Timeout { ip, ms });
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await;
        // However it ended: no call is left waiting, and the socket goes.
        self.end(closed_early);
    }

    /// Writes what the socket did not take of the request at once.
    fn write_rest(&self, io: &mut TokioIo<LoopIo>, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            let rest = self.lock().unwritten.clone();
            if rest.is_empty() {
                return Ok(());
            }
            match Pin::new(&mut *io).poll_write(cx, &rest) {
                Poll::Ready(Ok(n)) => self.lock().unwritten.advance(n),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// Hands a reply to the call waiting for it; false when the connection is over.
    fn settle(self: &Arc<Self>, answered: Answered) -> bool {
        let (call, keep) = {
            let mut state = self.lock();
            // A reply that came before all of its request was written (a refusal, say)
            // leaves the rest of that request behind: the connection is done with.
            if !answered.keep_alive || !state.unwritten.is_empty() {
                state.closed = true;
                state.unwritten = Bytes::new();
            }
            (state.call.take(), !state.closed)
        };
        match call {
            Some(call) => {
                if keep {
                    (self.idle)(self);
                }
                (call.settle)(Ok(answered));
            }
            // A reply nobody asked for: the peer does not speak HTTP/1.1 as it should.
            None => {
                self.close();
                return false;
            }
        }
        keep
    }
}

fn wake(state: &mut State) {
    if let Some(task) = state.task.take() {
        task.wake();
    }
}

fn failed(ip: String, e: &io::Error) -> SendError {
    SendError::Failed {
        ip,
        reason: e.to_string(),
    }
}

fn closed_early(ip: String) -> SendError {
    SendError::Failed {
        ip,
        reason: "connection closed before the reply".into(),
    }
}

/// The largest reply head taken (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a reply head may have.
const MAX_HEADERS: usize = 100;

/// Replies taken off a connection's bytes as they come.
#[derive(Default)]
struct Replies {
    buf: BytesMut,
    /// The reply whose head was read, and how its body goes on.
    body: Option<Body>,
}

struct Body {
    status: u16,
    content_type: Option<HeaderValue>,
    offers_mux: Option<mux::Offer>,
    keep_alive: bool,
    kind: BodyKind,
    read: BytesMut,
}

enum BodyKind {
    /// This many bytes are left.
    Length(usize),
    /// Chunks; `Some(n)`: inside a chunk of which `n` bytes (and its CRLF) are left.
    Chunked(Option<usize>),
    /// Up to the end of the connection.
    Close,
}

impl Replies {
    fn push(&mut self, read: &[u8]) {
        self.buf.extend_from_slice(read);
    }

    /// The next reply, once it is all there.
    fn next(&mut self) -> Result<Option<Answered>, String> {
        loop {
            if self.body.is_none() && !self.head()? {
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                // A 1xx head: the reply follows.
                continue;
            };
            let done = match &mut body.kind {
                BodyKind::Length(left) => {
                    let take = (*left).min(self.buf.len());
                    body.read.extend_from_slice(&self.buf.split_to(take));
                    *left -= take;
                    *left == 0
                }
                BodyKind::Chunked(chunk) => chunked(&mut self.buf, chunk, &mut body.read)?,
                BodyKind::Close => {
                    body.read.extend_from_slice(&self.buf.split());
                    false
                }
            };
            if !done {
                return Ok(None);
            }
            let body = self.body.take().expect("a body being read");
            return Ok(Some(body.answered()));
        }
    }

    /// The connection ended: a reply read up to its end is whole.
    fn end(&mut self) -> Option<Answered> {
        let mut body = self
            .body
            .take()
            .filter(|body| matches!(body.kind, BodyKind::Close))?;
        body.read.extend_from_slice(&self.buf.split());
        Some(body.answered())
    }

    /// Reads a head, if it is all there: true when one was taken (a 1xx one leaves no
    /// body to read).
    fn head(&mut self) -> Result<bool, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                return Err(format!("reply head larger than {MAX_HEAD} bytes"))
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(e) => return Err(format!("malformed reply: {e}")),
        };
        let status = response.code.unwrap_or_default();
        let version_1_0 = response.version == Some(0);
        let mut length = None;
        let mut chunked = false;
        let mut content_type = None;
        let mut offers_mux = None;
        let mut close = version_1_0;
        for header in response.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("malformed Content-Length in reply")?;
                if length.is_some_and(|known| known != value) {
                    return Err("conflicting Content-Length in reply".into());
                }
                length = Some(value);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = header
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = HeaderValue::from_bytes(header.value).ok();
            } else if name.eq_ignore_ascii_case(mux::ADVERTISE.as_str()) {
                offers_mux = Some(mux::Offer::of(header.value));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && version_1_0 {
                        close = false;
                    }
                }
            }
        }
        self.buf.advance(len);
        if (100..200).contains(&status) {
            return if status == 101 {
                Err("the peer switched protocols".into())
            } else {
                Ok(true)
            };
        }
        let kind = if status == 204 || status == 304 {
            BodyKind::Length(0)
        } else if chunked {
            BodyKind::Chunked(None)
        } else if let Some(length) = length {
            BodyKind::Length(length)
        } else {
            close = true;
            BodyKind::Close
        };
        self.body = Some(Body {
            status,
            content_type,
            offers_mux,
            keep_alive: !close,
            kind,
            read: BytesMut::new(),
        });
        Ok(true)
    }
}

impl Body {
    fn answered(self) -> Answered {
        let reply = Reply {
            status: self.status,
            payload: Payload::decode_reply(
                self.status,
                self.content_type.as_ref(),
                self.read.freeze(),
            ),
        };
        Answered {
            reply,
            offers_mux: self.offers_mux,
            keep_alive: self.keep_alive,
        }
    }
}

/// Takes the chunks in `buf` into `body`; true once the last chunk and the trailers are
/// read. `chunk` keeps where it is between reads.
fn chunked(
    buf: &mut BytesMut,
    chunk: &mut Option<usize>,
    body: &mut BytesMut,
) -> Result<bool, String> {
    loop {
        match chunk {
            Some(left) => {
                // The chunk's data, then its CRLF.
                if *left > 0 {
                    let take = (*left).min(buf.len());
                    body.extend_from_slice(&buf.split_to(take));
                    *left -= take;
                    if *left > 0 {
                        return Ok(false);
                    }
                }
                if buf.len() < 2 {
                    return Ok(false);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("malformed chunk in reply".into());
                }
                buf.advance(2);
                *chunk = None;
            }
            None => {
                let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                    return if buf.len() > MAX_HEAD {
                        Err("chunk size line too long in reply".into())
                    } else {
                        Ok(false)
                    };
                };
                let line = std::str::from_utf8(&buf[..end]).map_err(|_| "malformed chunk size")?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| format!("malformed chunk size in reply: {size:?}"))?;
                if size > 0 {
                    buf.advance(end + 2);
                    *chunk = Some(size);
                    continue;
                }
                // The last chunk: trailers up to an empty line.
                let Some(trailers) = find(&buf[end..], b"\r\n\r\n") else {
                    return Ok(false);
                };
                buf.advance(end + trailers + 4);
                return Ok(true);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replies in `bytes`, fed in pieces of `step` bytes, then the end of the
    /// connection.
    fn replies(bytes: &[u8], step: usize) -> Result<Vec<Answered>, String> {
        let mut replies = Replies::default();
        let mut answered = Vec::new();
        for piece in bytes.chunks(step) {
            replies.push(piece);
            while let Some(one) = replies.next()? {
                answered.push(one);
            }
        }
        answered.extend(replies.end());
        Ok(answered)
    }

    /// Every way of splitting `bytes` gives the same single reply.
    fn one(bytes: &[u8]) -> Answered {
        let whole = replies(bytes, bytes.len())
            .expect("a reply")
            .pop()
            .expect("one");
        for step in 1..bytes.len() {
            let answered = replies(bytes, step).expect("a reply");
            assert_eq!(answered.len(), 1, "in pieces of {step}");
            assert_eq!(answered[0].reply, whole.reply, "in pieces of {step}");
            assert_eq!(answered[0].keep_alive, whole.keep_alive);
            assert_eq!(answered[0].offers_mux, whole.offers_mux);
        }
        whole
    }

    #[test]
    fn a_reply_with_a_length_is_read_whole_however_it_comes_in() {
        let answered = one(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-swarm-kb-mux: 1\r\ncontent-length: 11\r\n\r\n{\"a\":[1,2]}");
        assert_eq!(answered.reply.status, 200);
        assert_eq!(
            answered.reply.payload,
            Payload::Json(Bytes::from_static(b"{\"a\":[1,2]}"))
        );
        assert!(answered.keep_alive);
        assert_eq!(answered.offers_mux, Some(mux::Offer { pings: false }));
    }

    #[test]
    fn a_chunked_reply_with_extensions_and_trailers_is_read_whole() {
        let answered = one(b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n4;x=y\r\nboom\r\n6\r\n, boom\r\n0\r\nx-trailer: 1\r\n\r\n");
        assert_eq!(answered.reply.status, 500);
        assert_eq!(answered.reply.payload.body(), b"boom, boom");
        assert!(answered.keep_alive);
        assert_eq!(answered.offers_mux, None);
    }

    #[test]
    fn interim_replies_are_skipped_and_bodiless_statuses_read_no_body() {
        let answered = one(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(answered.reply.status, 204);
        assert_eq!(answered.reply.payload, Payload::Empty);
        assert!(answered.keep_alive);
    }

    #[test]
    fn a_reply_without_a_length_lasts_until_the_connection_ends_and_closes_it() {
        let answered = one(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it");
        assert_eq!(answered.reply.payload.body(), b"all of it");
        assert!(!answered.keep_alive);
        let mut replies = Replies::default();
        replies.push(b"HTTP/1.1 200 OK\r\n\r\npart");
        assert!(
            replies.next().expect("no error").is_none(),
            "not before the end"
        );
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection_after_the_reply() {
        assert!(
            !one(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok").keep_alive
        );
        assert!(!one(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").keep_alive);
        assert!(
            one(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
                .keep_alive
        );
    }

    #[test]
    fn a_reply_cut_short_is_no_reply_and_a_malformed_one_an_error() {
        assert!(
            replies(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", 64)
                .expect("no error")
                .is_empty()
        );
        assert!(replies(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nab",
            64
        )
        .expect("no error")
        .is_empty());
        assert!(replies(b"SSH-2.0-OpenSSH\r\n\r\n", 64).is_err());
        assert!(replies(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", 64).is_err());
        assert!(replies(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            64
        )
        .is_err());
        assert!(replies(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            64
        )
        .is_err());
        assert!(replies(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 64).is_err());
    }

    #[test]
    fn an_idle_connection_whose_peer_closed_is_not_usable_when_asked() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = listener.local_addr().expect("addr");
        let socket = Arc::new(std::net::TcpStream::connect(peer).expect("connect"));
        let (accepted, _) = listener.accept().expect("accept");
        let conn = Conn::new(
            socket,
            peer,
            Duration::from_secs(1),
            Box::new(|_| {}),
            CancellationToken::new(),
        );
        assert!(conn.is_usable(true));
        drop(accepted);
        let deadline = Instant::now() + Duration::from_secs(10);
        while conn.is_usable(true) {
            assert!(Instant::now() < deadline, "the end never showed");
            std::thread::yield_now();
        }
        assert!(conn.is_usable(false), "not asked, it cannot tell");
        conn.close();
        assert!(!conn.is_usable(false));
    }

    #[test]
    fn a_head_past_the_limit_is_an_error() {
        let mut head = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        head.resize(MAX_HEAD + 10, b'a');
        assert!(replies(&head, 4096).is_err());
    }
}
