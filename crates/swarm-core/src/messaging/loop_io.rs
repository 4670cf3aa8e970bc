//! Connections served on the event loop of another thread ([`super::mux::ReadLoop`]):
//! a socket whose reads and writes are made by the thread that polls the connection,
//! with readiness from that thread's loop ([`Readiness`]). hyper serves HTTP/1.1 over
//! it as over a socket of the runtime, so the JavaScript thread parses a request, hands
//! it to its handler and writes the answer in the same turns, and no thread of the
//! runtime is woken for an exchange.

use std::{
    future::Future,
    io::{self, Write as _},
    net::Shutdown,
    os::fd::AsRawFd,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::io::unix::AsyncFd;

/// What a connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Readable,
    Writable,
}

/// Tells when a socket can be read or written again, and wakes the task that waits.
pub trait Readiness: Send {
    /// Ready once the socket may be read (or written) again; until then the waker of
    /// `cx` is kept and woken then. A level: it asks the loop afresh each time.
    fn poll_ready(&mut self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>>;
}

/// A connection's task, made by the thread that polls it.
pub type LoopTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Makes a connection's task over its socket.
pub type Serve = Box<dyn FnOnce(LoopIo) -> LoopTask + Send>;

/// A non-blocking socket, read and written where it is polled.
pub struct LoopIo {
    /// Dropped before the socket: a loop stops watching it before it closes.
    readiness: Box<dyn Readiness>,
    socket: Arc<std::net::TcpStream>,
    /// The last read took all the socket held: the next waits for readiness first,
    /// instead of a read that finds nothing.
    drained: bool,
}

impl LoopIo {
    /// `socket`, whose readiness comes from `readiness`.
    pub fn new(socket: Arc<std::net::TcpStream>, readiness: Box<dyn Readiness>) -> LoopIo {
        LoopIo {
            readiness,
            socket,
            drained: false,
        }
    }

    /// `socket`, whose readiness the runtime's reactor tells (from within the runtime).
    pub fn on_runtime(socket: Arc<std::net::TcpStream>) -> io::Result<LoopIo> {
        let readiness = OnRuntime::new(socket.clone())?;
        Ok(LoopIo::new(socket, Box::new(readiness)))
    }

    /// Runs `op` until it does not find the socket busy, waiting for `interest` then.
    fn poll_io<T>(
        &mut self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&std::net::TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match op(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.readiness.poll_ready(cx, interest))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return Poll::Ready(done),
            }
        }
    }
}

impl Read for LoopIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.drained) {
            ready!(this.readiness.poll_ready(cx, Interest::Readable))?;
        }
        // SAFETY: `recv` writes at most `len` bytes and reports how many; only those
        // are marked filled.
        let unfilled = unsafe { buf.as_mut() };
        let read = ready!(this.poll_io(cx, Interest::Readable, |socket| {
            let n = unsafe {
                libc::recv(
                    socket.as_raw_fd(),
                    unfilled.as_mut_ptr().cast(),
                    unfilled.len(),
                    0,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        }))?;
        this.drained = read < unfilled.len();
        // SAFETY: `recv` initialized the first `read` bytes.
        unsafe { buf.advance(read) };
        Poll::Ready(Ok(()))
    }
}

impl Write for LoopIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, Interest::Writable, |mut socket| socket.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, Interest::Writable, |mut socket| {
                socket.write_vectored(bufs)
            })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.socket.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        })
    }
}

/// Readiness from the runtime's reactor: what a loop that cannot watch sockets uses.
struct OnRuntime(AsyncFd<Arc<std::net::TcpStream>>);

impl OnRuntime {
    /// Registers `socket` with the runtime of this thread.
    fn new(socket: Arc<std::net::TcpStream>) -> io::Result<OnRuntime> {
        let interest = tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE;
        // SAFETY: the descriptor stays open, the same socket, while the `Arc` held by
        // the `AsyncFd` lives.
        Ok(OnRuntime(unsafe {
            AsyncFd::register_with_interest(socket, interest)
        }?))
    }
}

impl Readiness for OnRuntime {
    fn poll_ready(&mut self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        let mut guard = match interest {
            Interest::Readable => ready!(self.0.poll_read_ready(cx))?,
            Interest::Writable => ready!(self.0.poll_write_ready(cx))?,
        };
        // The caller found it busy: wait for the next edge.
        guard.clear_ready();
        Poll::Ready(Ok(()))
    }
}

/// A future polled inside the runtime's context, from whichever thread polls it: its
/// timers and spawns go to the runtime.
struct InRuntime<F> {
    runtime: tokio::runtime::Handle,
    future: F,
}

/// `future`, as a task of a loop's thread polled in `runtime`'s context.
pub fn in_runtime(
    runtime: tokio::runtime::Handle,
    future: impl Future<Output = ()> + Send + 'static,
) -> LoopTask {
    Box::pin(InRuntime {
        runtime,
        future: Box::pin(future),
    })
}

impl<F: Future + Unpin> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.runtime.enter();
        Pin::new(&mut this.future).poll(cx)
    }
}
