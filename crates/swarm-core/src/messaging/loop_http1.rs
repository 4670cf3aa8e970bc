//! The client's HTTP/1.1 connections: a request is written by the thread that sends it,
//! inside its call, and its reply read by the connection's task, polled by a loop
//! thread's own loop (see [`super::loop_io::EventLoop`]) or by the runtime, on keep-alive
//! connections the client pools.
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

use bytes::{Buf, Bytes};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::{client::SendError, loop_io::LoopIo, mux, sys, Reply};
use crate::ring::Said;

mod replies;
use replies::Replies;

/// A reply read whole, and what it says of its connection and its peer.
pub(crate) struct Answered {
    pub reply: Reply,
    /// The peer offers the multiplexed transport.
    pub offers_mux: Option<mux::Offer>,
    /// What the peer said of its ring ([`RING`](super::RING)).
    pub ring: Said,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
