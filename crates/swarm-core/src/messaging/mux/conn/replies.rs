//! The reading side of a client's multiplexed connection: replies handed to their
//! calls, on the runtime or on an [`EventLoop`](crate::messaging::loop_io::EventLoop),
//! and calls that time out.

use std::{io, sync::Arc, time::Instant};

use bytes::Bytes;
use tokio::{io::AsyncBufRead, sync::oneshot};

use super::{Conn, Outcome, Waiter};
use crate::messaging::{
    mux::{
        inflow::{read_frames, Flow, Framer, Inflow, Step},
        parse_reply, read_frame, Read, GO_AWAY, PONG, REPLY,
    },
    sys,
};

impl Conn {
    /// Times out the calls made by [`Conn::call_later`], for as long as it is polled.
    /// Their deadlines grow with their ids, so it wakes once per timeout when idle, and
    /// once more per call that times out.
    pub(super) async fn expire_calls(&self) -> std::convert::Infallible {
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
    pub(super) async fn read_replies<R: AsyncBufRead + Unpin>(
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
            PONG => {
                if let Some(pong) = self.lock().pongs.remove(&id) {
                    let _ = pong.send(());
                }
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
                    self.finish(waiter, Outcome::Resend);
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

/// The replies of a client's connection, read on a [`EventLoop`].
pub(super) struct Replies {
    pub(super) conn: Arc<Conn>,
    pub(super) socket: Arc<std::net::TcpStream>,
    pub(super) framer: Framer,
    /// Told how the reading ended, when it does (or when this is dropped).
    pub(super) ended: Option<oneshot::Sender<io::Result<()>>>,
}

impl Inflow for Replies {
    fn fd(&self) -> sys::RawSocket {
        sys::raw(&*self.socket)
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
