//! A multiplexed connection read on a [`EventLoop`]: the loop's thread reads the
//! requests and starts them; the connection's task polls the handlers' futures, times
//! out what waits too long, and goes away.

use std::{
    io,
    sync::{Arc, Mutex},
};

use futures_util::StreamExt;
use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{give, start, Handler, Handling, MuxConn, Started, TakenRequests, MUX_IDLE};
use crate::messaging::{
    loop_io::EventLoop,
    mux::{self, Answer, Read},
    sys,
};

impl MuxConn {
    /// Reads and starts the requests on `event_loop`'s thread, which hands this task the
    /// handlers' futures; the requests whose responder was taken are answered there.
    pub(super) async fn serve_elsewhere(
        &self,
        socket: Arc<std::net::TcpStream>,
        sink: mux::Sink,
        event_loop: &dyn EventLoop,
        cancel: CancellationToken,
    ) -> io::Result<()> {
        let ctx = &self.ctx;
        let inbox = Arc::new(Inbox {
            state: Mutex::new(InState {
                last: 0,
                stopped: false,
                later: Vec::new(),
                taken: TakenRequests::default(),
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
                ends: self.ends,
                ctx: ctx.clone(),
                outbox: self.outbox.clone(),
                given: self.given.clone(),
            },
            done: false,
        };
        let max = ctx.limits.max_body + ctx.limits.max_header_size;
        event_loop.adopt(Box::new(requests(mux::Framer::new(max))));
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
                let taken = state.taken.expire(now);
                let idle = state.active + MUX_IDLE;
                if idle <= now && handling.is_empty() && taken.is_none() {
                    break true;
                }
                // The reader starts frames and takes requests without telling: looked
                // at again within the header timeout, and before a request taken from
                // now on can time out.
                let limits = &ctx.limits;
                let next = [now + limits.header_timeout, now + limits.handler_timeout]
                    .into_iter()
                    .chain(taken)
                    .chain(stalled)
                    .fold(idle, Instant::min);
                (std::mem::take(&mut state.later), state.paused.take(), next)
            };
            for (answer, handler) in later {
                self.handle(&handling, answer, handler);
            }
            if let Some(framer) = paused {
                // The client leaves too much unread: read again once it has read some,
                // or go away at shutdown, without waiting for a client that never reads.
                let room = tokio::select! {
                    () = self.outbox.room() => true,
                    _ = cancel.cancelled() => false,
                };
                if !room {
                    inbox.lock().paused = Some(framer);
                    break true;
                }
                event_loop.adopt(Box::new(requests(framer)));
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
        let (last, paused) = {
            let mut state = inbox.lock();
            state.stopped = true;
            for (answer, handler) in std::mem::take(&mut state.later) {
                self.handle(&handling, answer, handler);
            }
            (state.last, state.paused.take())
        };
        // A reading paused for room goes on, stopped: it reads past what comes until the
        // client closes, which ends the wait below.
        if let Some(framer) = paused {
            event_loop.adopt(Box::new(requests(framer)));
        }
        if going_away {
            self.outbox.push(mux::go_away_frame(last));
        }
        let answered = self.answer_all(handling, |now| inbox.lock().taken.expire(now));
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
    taken: TakenRequests,
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

/// The requests of a multiplexed connection, read on a [`EventLoop`].
struct Requests {
    inbox: Arc<Inbox>,
    socket: Arc<std::net::TcpStream>,
    framer: mux::Framer,
    conn: MuxConn,
    /// This reading is over (or paused): the task knows.
    done: bool,
}

impl mux::Inflow for Requests {
    fn fd(&self) -> sys::RawSocket {
        sys::raw(&*self.socket)
    }

    fn read(&mut self) -> bool {
        let Requests {
            inbox,
            socket,
            framer,
            conn,
            done,
        } = self;
        let step = mux::read_frames(socket, framer, |read| Ok(conn.take(inbox, read)));
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
        *done = over;
        over
    }
}

impl Drop for Requests {
    /// A loop that lets go of a reading it did not end (it stopped: its thread's
    /// environment ended) ends the connection, as its end would.
    fn drop(&mut self) {
        if !self.done {
            self.inbox.lock().ended = true;
            self.inbox.wake.notify_one();
        }
    }
}

impl MuxConn {
    /// Starts the request just read, on the reading loop's thread.
    fn take(&self, inbox: &Inbox, read: Read) -> mux::Flow {
        if let Read::Frame(mux::PING, id, _) = read {
            // Answered as it is read, even after the go-away: the peer is alive.
            self.outbox
                .push_later(mux::ping_frame(mux::PONG, id), mux::EAGER);
            return mux::Flow::Go;
        }
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
        match start(&self.ctx, rest, self.ends, self.answer(id)) {
            Started::Now(reply) => {
                self.outbox
                    .push_later(mux::reply_frame(id, &reply), mux::EAGER);
            }
            Started::Later(answer, handler) => {
                state.later.push((answer, handler));
                inbox.wake.notify_one();
            }
            Started::Taken(answer) => state
                .taken
                .push(now + self.ctx.limits.handler_timeout, answer),
        }
        if self.outbox.has_room() {
            mux::Flow::Go
        } else {
            mux::Flow::Pause
        }
    }
}
