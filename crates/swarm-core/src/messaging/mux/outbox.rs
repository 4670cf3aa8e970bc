//! The sending side of a multiplexed connection: frames queued from any thread and
//! written in batches, by the thread that queued them or by the connection's writer.

use std::{
    cell::RefCell,
    collections::VecDeque,
    io::{self, IoSlice},
    sync::{Arc, Mutex, MutexGuard},
};

#[cfg(unix)]
use std::io::Write as _;

use bytes::Bytes;
use tokio::{net::tcp::OwnedWriteHalf, sync::Notify};

use super::REQUEST;
use crate::messaging::sys::{self, peer_closed};

/// Past this many bytes waiting to be written on a connection, the tasks that queue
/// frames wait for room (a peer that does not read holds back its own traffic, not this
/// process's memory).
pub const HIGH_WATER: usize = 1 << 20;
/// At most this many frames go into one system call.
const GATHER: usize = 64;
/// Frames queued for later on one connection are written as soon as a group of them
/// waits, not at the end of the turn: under load the peer starts on the first ones while
/// this thread still makes the rest, instead of both sides taking turns at whole
/// batches. A group is at least this many frames (see `eager_group`).
pub const EAGER: usize = 8;

/// How many requests queued for later make a group to write at once, with `in_flight`
/// calls on the connection: half of them, so the peer works on one half of the window
/// while this thread makes the other: with many calls in flight, larger groups sent more
/// per second than small ones, and with few, groups of [`EAGER`] sent more than groups
/// of half (interleaved two-node runs of `npm run bench`).
pub fn eager_group(in_flight: usize) -> usize {
    (in_flight / 2).max(EAGER)
}

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
    /// Frames queued by [`Outbox::push_later`] since the last attempt to write.
    unwritten: usize,
}

thread_local! {
    /// The outboxes that frames were queued on by [`Outbox::push_later`] on this thread.
    static LATER: RefCell<Vec<Arc<Outbox>>> = const { RefCell::new(Vec::new()) };
}

/// Writes what [`Outbox::push_later`] queued on this thread: a thread that queues many
/// frames (in one turn of its event loop) writes them in one system call per
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
    pub(super) fn for_requests() -> Outbox {
        Outbox {
            requests: true,
            ..Outbox::default()
        }
    }

    /// True when nothing may be written on `out` any more.
    fn stopped(&self, out: &Sink) -> bool {
        self.requests && peer_closed(out.raw())
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

    /// Queues a frame to be written when this thread calls [`flush`], or at once when it
    /// completes a group of `group` frames queued since the last write; false once the
    /// outbox is closed.
    pub fn push_later(self: &Arc<Self>, frame: Bytes, group: usize) -> bool {
        let Some(mut state) = self.queue(frame) else {
            return false;
        };
        if !std::mem::replace(&mut state.listed, true) {
            LATER.with(|later| later.borrow_mut().push(self.clone()));
        }
        // Each group once: while the socket takes nothing, not every frame tries again.
        state.unwritten += 1;
        if state.unwritten >= group {
            self.write_now(&mut state);
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
        state.unwritten = 0;
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
    /// A socket another loop reads ([`EventLoop`](crate::messaging::loop_io::EventLoop)): registered with the runtime for
    /// writability alone, so what comes in wakes no thread of the runtime.
    #[cfg(unix)]
    Shared(tokio::io::unix::AsyncFd<Arc<std::net::TcpStream>>),
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
            #[cfg(unix)]
            Sink::Shared(fd) => fd.get_ref().as_ref().write_vectored(slices),
        }
    }

    /// Waits until the socket may take more.
    async fn writable(&self) -> io::Result<()> {
        match self {
            Sink::Half(half) => half.writable().await,
            #[cfg(unix)]
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
            #[cfg(unix)]
            Sink::Shared(fd) => {
                let _ = fd.get_ref().shutdown(std::net::Shutdown::Write);
            }
        }
    }

    /// The raw socket.
    pub(crate) fn raw(&self) -> sys::RawSocket {
        match self {
            Sink::Half(half) => sys::raw(half.as_ref()),
            #[cfg(unix)]
            Sink::Shared(fd) => sys::raw(fd.get_ref().as_ref()),
        }
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
