//! The event loop of another thread ([`EventLoop`]), and the connections served on it:
//! a socket whose reads and writes are made by the thread that polls the connection,
//! with readiness from that thread's loop ([`Readiness`]). hyper serves HTTP/1.1 over
//! it as over a socket of the runtime, so the loop's thread parses a request, hands
//! it to its handler and writes the answer in the same turns, and no thread of the
//! runtime is woken for an exchange.

use std::{
    future::Future,
    io::{self, Write as _},
    net::Shutdown,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use hyper::rt::{Read, ReadBufCursor, Write};

use tracing::debug;

use super::{mux::Inflow, sys};
use crate::local::LoopThread;

/// What a connection waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Readable,
    Writable,
}

/// Tells when a socket can be read or written again, and wakes the task that waits.
///
/// A socket is taken to be ready until an operation finds it busy ([`Readiness::clear`]),
/// then not until the loop says it is: a task polled again meanwhile, for another
/// reason (a request to write, an answer its handler gave), makes no read that would
/// find nothing.
pub trait Readiness: Send {
    /// Ready while the socket may be read (or written): until [`Readiness::clear`] of
    /// `interest`, then once the loop says so again (a loop that cannot tell its older
    /// word from a newer one may say ready once more first). Until then the waker of
    /// `cx` is kept and woken then.
    fn poll_ready(&mut self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>>;

    /// The socket was found without data to read (or room to write): `poll_ready`
    /// waits for the loop from now on.
    fn clear(&mut self, interest: Interest);
}

/// A connection's task, made by the thread that polls it.
pub type LoopTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Makes a connection's task over its socket.
pub type Serve = Box<dyn FnOnce(LoopIo) -> LoopTask + Send>;

/// The event loop of another thread, which reads multiplexed connections where what
/// comes in is handled (the addon's JavaScript thread): a frame then wakes that thread alone,
/// not a thread of the runtime first.
pub trait EventLoop: LoopThread {
    /// Reads `inflow` on the loop's thread: [`Inflow::read`] each time its socket is
    /// readable, until that returns true, then [`super::mux::flush`], which writes the
    /// answers the reading gave at once (and any the thread gave meanwhile). Dropping it
    /// ends the reading.
    fn adopt(&self, inflow: Box<dyn Inflow>);

    /// Serves a connection on the loop's thread, from any thread: `serve` makes its task
    /// over `socket`, which is then polled, read and written there. This one runs it on
    /// the runtime.
    fn serve(&self, socket: Arc<std::net::TcpStream>, serve: Serve) {
        serve_here(self, socket, serve);
    }

    /// Called on the loop's thread: `socket`, read and written where it is polled, with
    /// the loop's readiness. This one has the runtime's reactor tell it.
    fn io_here(&self, socket: Arc<std::net::TcpStream>) -> io::Result<LoopIo> {
        LoopIo::on_runtime(socket)
    }

    /// Called on the loop's thread: polls `task` there from now on. This one runs it on
    /// the runtime.
    fn spawn_here(&self, task: LoopTask) {
        tokio::spawn(task);
    }
}

/// Called on `event_loop`'s thread: serves the connection over `socket` there, with the
/// loop's readiness ([`EventLoop::io_here`], [`EventLoop::spawn_here`]).
pub fn serve_here<L: EventLoop + ?Sized>(
    event_loop: &L,
    socket: Arc<std::net::TcpStream>,
    serve: Serve,
) {
    match event_loop.io_here(socket) {
        Ok(io) => event_loop.spawn_here(serve(io)),
        Err(e) => {
            debug!(target: "node_swarm_kb::messages", "a connection could not be served: {e}")
        }
    }
}

impl std::fmt::Debug for dyn EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventLoop")
    }
}

/// A non-blocking socket, read and written where it is polled.
pub struct LoopIo {
    /// Dropped before the socket: a loop stops watching it before it closes.
    readiness: Box<dyn Readiness>,
    socket: Arc<std::net::TcpStream>,
}

impl LoopIo {
    /// `socket`, whose readiness comes from `readiness`.
    pub fn new(socket: Arc<std::net::TcpStream>, readiness: Box<dyn Readiness>) -> LoopIo {
        LoopIo { readiness, socket }
    }

    /// `socket`, whose readiness the runtime's reactor tells (from within the runtime).
    pub fn on_runtime(socket: Arc<std::net::TcpStream>) -> io::Result<LoopIo> {
        let readiness = OnRuntime::new(&socket)?;
        Ok(LoopIo::new(socket, Box::new(readiness)))
    }

    /// Runs `op` once the socket is ready for `interest`, until `op` does not find it busy.
    fn poll_io<T>(
        &mut self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&std::net::TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            ready!(self.readiness.poll_ready(cx, interest))?;
            match op(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readiness.clear(interest),
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
        // SAFETY: `recv` writes at most `len` bytes and reports how many; only those
        // are marked filled.
        let unfilled = unsafe { buf.as_mut() };
        let read =
            ready!(this.poll_io(cx, Interest::Readable, |socket| sys::recv(socket, unfilled)))?;
        if read < unfilled.len() {
            // It took all the socket held: the next read waits for the loop.
            this.readiness.clear(Interest::Readable);
        }
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
struct OnRuntime {
    /// A second handle of the socket, registered with the reactor: only asked and told
    /// of readiness, never read or written. tokio's own socket type, since a raw
    /// socket's readiness ([`tokio::io::unix::AsyncFd`]) is told on Unix alone.
    registered: tokio::net::TcpStream,
    read: Side,
    write: Side,
}

/// What is known of one direction of a socket, beyond the reactor's word.
#[derive(Default)]
struct Side {
    /// Found busy since the reactor's readiness was last cleared.
    busy: bool,
    /// The reactor's readiness was cleared while the socket may still be ready: it is
    /// taken to be ready until it is found busy again.
    trusted: bool,
}

impl OnRuntime {
    /// Registers a handle of `socket` with the runtime of this thread.
    fn new(socket: &std::net::TcpStream) -> io::Result<OnRuntime> {
        Ok(OnRuntime {
            registered: tokio::net::TcpStream::from_std(socket.try_clone()?)?,
            read: Side::default(),
            write: Side::default(),
        })
    }
}

impl Readiness for OnRuntime {
    fn poll_ready(&mut self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        let (side, asked) = match interest {
            Interest::Readable => (&mut self.read, tokio::io::Interest::READABLE),
            Interest::Writable => (&mut self.write, tokio::io::Interest::WRITABLE),
        };
        if side.trusted {
            return Poll::Ready(Ok(()));
        }
        ready!(match interest {
            Interest::Readable => self.registered.poll_read_ready(cx),
            Interest::Writable => self.registered.poll_write_ready(cx),
        })?;
        if std::mem::take(&mut side.busy) {
            // The reactor may have said so before the socket was found busy: its word is
            // cleared, and the socket is tried until it is found busy again. An event
            // that came between that and this clear is not seen again, but its data is
            // by the tries; one try alone may leave data that no new event will tell of
            // (a reply larger than one read, all in). An operation that finds the socket
            // busy is what clears the word, and where the reactor must be asked again
            // after each event (Windows), asks it.
            let _ = self
                .registered
                .try_io(asked, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
            side.trusted = true;
        }
        Poll::Ready(Ok(()))
    }

    fn clear(&mut self, interest: Interest) {
        let side = match interest {
            Interest::Readable => &mut self.read,
            Interest::Writable => &mut self.write,
        };
        side.busy = true;
        side.trusted = false;
    }
}

/// `future`, as a task of a loop's thread polled inside `runtime`'s context, from
/// whichever thread polls it: its timers and spawns go to the runtime.
pub fn in_runtime(
    runtime: tokio::runtime::Handle,
    future: impl Future<Output = ()> + Send + 'static,
) -> LoopTask {
    // One allocation: the future is pinned inside the task's own box.
    Box::pin(async move {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            let _entered = runtime.enter();
            future.as_mut().poll(cx)
        })
        .await
    })
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        mem::MaybeUninit,
        net::{TcpListener, TcpStream},
        sync::Mutex,
        task::Waker,
    };

    use hyper::rt::ReadBuf;

    use super::*;

    /// What the test's loop says of the socket, and what the socket was found to be.
    #[derive(Default)]
    struct Said {
        readable: bool,
        /// Reads that found nothing or took all there was.
        cleared: usize,
    }

    /// A loop whose readiness the test gives by hand.
    struct ByHand(Arc<Mutex<Said>>);

    impl Readiness for ByHand {
        fn poll_ready(
            &mut self,
            _cx: &mut Context<'_>,
            interest: Interest,
        ) -> Poll<io::Result<()>> {
            let said = self.0.lock().unwrap();
            match interest {
                Interest::Readable if !said.readable => Poll::Pending,
                _ => Poll::Ready(Ok(())),
            }
        }

        fn clear(&mut self, interest: Interest) {
            let mut said = self.0.lock().unwrap();
            if interest == Interest::Readable {
                said.readable = false;
                said.cleared += 1;
            }
        }
    }

    fn read(io: &mut LoopIo) -> Poll<Vec<u8>> {
        let mut memory = [MaybeUninit::uninit(); 64];
        let mut buf = ReadBuf::uninit(&mut memory);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(io).poll_read(&mut cx, buf.unfilled()) {
            Poll::Ready(read) => {
                read.expect("a read");
                Poll::Ready(buf.filled().to_vec())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits until `socket` holds data to read, as a loop would before saying so.
    fn arrived(socket: &TcpStream) {
        let mut watched = libc::pollfd {
            fd: sys::raw(socket),
            events: libc::POLLIN,
            revents: 0,
        };
        assert_eq!(
            // SAFETY: one valid `pollfd`.
            unsafe { libc::poll(&mut watched, 1, 10_000) },
            1,
            "data arrives"
        );
    }

    #[test]
    fn a_connection_polled_before_its_loop_says_readable_makes_no_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = Arc::new(server);
        let said = Arc::new(Mutex::new(Said {
            readable: true,
            cleared: 0,
        }));
        let mut io = LoopIo::new(server.clone(), Box::new(ByHand(said.clone())));

        // Taken as readable at first: one read finds nothing, then it waits.
        assert_eq!(read(&mut io), Poll::Pending);
        assert_eq!(said.lock().unwrap().cleared, 1);
        // Polled again (its task woken for another reason): no read.
        client.write_all(b"hello").unwrap();
        arrived(&server);
        assert_eq!(read(&mut io), Poll::Pending);
        assert_eq!(said.lock().unwrap().cleared, 1);

        // The loop says readable: one read takes it all, and the next waits again
        // without a read that would find nothing.
        said.lock().unwrap().readable = true;
        assert_eq!(read(&mut io), Poll::Ready(b"hello".to_vec()));
        assert_eq!(read(&mut io), Poll::Pending);
        assert_eq!(said.lock().unwrap().cleared, 1 + 1);

        // A read that fills the buffer may have left more: the next reads at once.
        client.write_all(&[7; 100]).unwrap();
        arrived(&server);
        said.lock().unwrap().readable = true;
        assert_eq!(read(&mut io), Poll::Ready(vec![7; 64]));
        assert_eq!(read(&mut io), Poll::Ready(vec![7; 36]));
        assert_eq!(said.lock().unwrap().cleared, 1 + 1 + 1);
    }

    /// What one read of `io` gives, waiting for the runtime's reactor, within 10 s.
    async fn read_on_runtime(io: &mut LoopIo) -> Vec<u8> {
        let read = std::future::poll_fn(|cx| {
            let mut memory = [MaybeUninit::uninit(); 64];
            let mut buf = ReadBuf::uninit(&mut memory);
            ready!(Pin::new(&mut *io).poll_read(cx, buf.unfilled())).expect("a read");
            Poll::Ready(buf.filled().to_vec())
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("the reactor says the socket holds data")
    }

    #[tokio::test]
    async fn on_the_runtime_data_larger_than_one_read_is_read_whole_after_a_short_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut io = LoopIo::on_runtime(Arc::new(server)).expect("registered");
        // A short exchange first: the read takes all there was, the next finds nothing.
        client.write_all(b"hello").unwrap();
        assert_eq!(read_on_runtime(&mut io).await, b"hello");
        let mut cx = Context::from_waker(Waker::noop());
        let mut memory = [MaybeUninit::uninit(); 64];
        let mut buf = ReadBuf::uninit(&mut memory);
        assert!(Pin::new(&mut io)
            .poll_read(&mut cx, buf.unfilled())
            .is_pending());
        // Then more than one read's worth, all in before the reads: no event comes after
        // the first read, and the rest is read all the same.
        client.write_all(&[7; 1000]).unwrap();
        let mut got = Vec::new();
        while got.len() < 1000 {
            got.extend(read_on_runtime(&mut io).await);
        }
        assert_eq!(got, vec![7; 1000]);
    }
}
