//! Multiplexed connections read on the event loop of another thread
//! ([`EventLoop`](crate::messaging::loop_io::EventLoop)):
//! frames taken off the bytes as they come in, without waiting.

use std::{
    io::{self, Read as _},
    net::Shutdown,
    sync::Arc,
};

use bytes::{Buf, BytesMut};
use tokio::net::TcpStream;

use super::{outbox::Sink, Read, HEAD};
use crate::messaging::sys;

/// The reading side of a connection, handed to an
/// [`EventLoop`](crate::messaging::loop_io::EventLoop).
pub trait Inflow: Send {
    /// The socket, to wait on.
    fn fd(&self) -> sys::RawSocket;
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
        // A read that does not fill the chunk took all there was: the loop calls again
        // when more comes, so no read is spent to hear "nothing more" (as libuv does).
        let drained = match socket.read(&mut chunk) {
            Ok(0) if framer.partial() => {
                return Step::Over(Err(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Step::Over(Ok(())),
            Ok(n) => {
                framer.feed(&chunk[..n]);
                n < chunk.len()
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Step::Over(Err(e)),
        };
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
        if drained {
            break;
        }
    }
    Step::Wait
}

/// `stream`, to be read on another loop: the socket, the sink that writes to it (the
/// runtime only waits for it to be writable), and the guard that ends it when the
/// connection's task ends or is dropped.
#[cfg(unix)]
pub(crate) fn share(stream: TcpStream) -> io::Result<(Arc<std::net::TcpStream>, Sink, EndReading)> {
    use tokio::io::{unix::AsyncFd, Interest};
    let socket = Arc::new(stream.into_std()?);
    // SAFETY: the descriptor stays open, the same socket, while the `Arc` held by the
    // `AsyncFd` lives.
    let registered = unsafe { AsyncFd::register_with_interest(socket.clone(), Interest::WRITABLE) };
    let end = EndReading(socket.clone());
    Ok((socket, Sink::Shared(registered?), end))
}

#[cfg(not(unix))]
pub(crate) fn share(_: TcpStream) -> io::Result<(Arc<std::net::TcpStream>, Sink, EndReading)> {
    Err(sys::no_event_loop())
}

/// Ends a socket another loop reads, both ways, when the connection's task ends or is
/// dropped: the loop then sees the end and lets go of it.
pub(crate) struct EndReading(Arc<std::net::TcpStream>);

impl Drop for EndReading {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}
