//! A client's multiplexed connection to one peer: calls by id, their outcomes, and the
//! reading of the replies, on the runtime or on a [`EventLoop`].

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;
use tokio::{
    io::{AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::oneshot,
};

use crate::messaging::loop_io::EventLoop;
use crate::stats::{Direction, Transport, Transports};

mod liveness;
mod replies;

use replies::Replies;

use super::{
    encode_request, greeted, greeting,
    inflow::{share, EndReading, Framer},
    outbox::{eager_group, Outbox, Sink},
    ping_frame, read_greeting, set_id, Auth, Offer, Payload, Reply, ACCEPTED, BATCH, PING, PREFACE,
};
use crate::ring::PeerRings;

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
    /// When it was put on the connection.
    started: Instant,
    /// When it times out; `None` for calls whose caller keeps its own time ([`Call`]).
    deadline: Option<Instant>,
}

struct State {
    /// False once the connection stops taking calls (go-away, failure, close).
    open: bool,
    /// True once the peer accepted the preface.
    accepted: bool,
    next_id: u32,
    waiting: FxHashMap<u32, Waiter>,
    /// The pings waiting for their pong, by id (ids of their own).
    pongs: FxHashMap<u32, oneshot::Sender<()>>,
    next_ping: u32,
}

/// A client's multiplexed connection to one peer.
pub struct Conn {
    state: Mutex<State>,
    outbox: Arc<Outbox>,
    /// How long a call made by [`Conn::call_later`] may wait for its reply.
    timeout: Duration,
    /// What the peer offered: pings ([`Conn::ping`]), a handshake that names rings.
    offer: Offer,
    /// Where the connection and its exchanges are counted, if anywhere.
    transports: Option<Arc<Transports>>,
    /// The ring named in the preface, to a peer that reads it, and where what the peer
    /// names is told.
    rings: Option<Arc<PeerRings>>,
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
    /// Calls made by [`Conn::call_later`] time out after `timeout`. With a `event_loop`,
    /// the replies are read on its thread. `offer`: what the peer offered. Counted in
    /// `transports`, with its exchanges, once the peer accepted it. The preface names
    /// the ring of `rings` when the peer offered to read it, and `rings` is told what
    /// the peer's answer names.
    pub fn open<F>(
        connect: F,
        handshake: Duration,
        timeout: Duration,
        event_loop: Option<Arc<dyn EventLoop>>,
        offer: Offer,
        transports: Option<Arc<Transports>>,
        rings: Option<Arc<PeerRings>>,
    ) -> Arc<Conn>
    where
        F: Future<Output = Result<TcpStream, String>> + Send + 'static,
    {
        let conn = Arc::new(Conn {
            state: Mutex::new(State {
                open: true,
                accepted: false,
                next_id: 1,
                waiting: FxHashMap::default(),
                pongs: FxHashMap::default(),
                next_ping: 1,
            }),
            outbox: Arc::new(Outbox::for_requests()),
            timeout,
            offer,
            transports,
            rings: rings.filter(|_| offer.rings),
        });
        tokio::spawn(conn.clone().drive(connect, handshake, event_loop));
        conn
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while the connection takes calls.
    pub fn is_open(&self) -> bool {
        self.lock().open
    }

    /// Puts a request on the connection (waiting while [`HIGH_WATER`](super::HIGH_WATER) bytes wait to be
    /// written), or `None` when it no longer takes calls.
    pub async fn call(
        self: &Arc<Self>,
        path: &str,
        query: Option<&str>,
        payload: &Payload,
        auth: Option<(&Auth, SocketAddr)>,
    ) -> Option<Call> {
        self.outbox.room().await;
        let (tx, outcome) = oneshot::channel();
        let done: Done = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        let frame = encode_request(path, query, payload, auth);
        let id = self
            .enqueue(frame, done, None, |frame, _| self.outbox.push(frame))
            .ok()?;
        Some(Call {
            conn: self.clone(),
            id,
            outcome,
        })
    }

    /// Puts a request (a frame of [`encode_request`]) on a connection the peer has
    /// accepted, to be written when this thread calls [`flush`](super::flush); `done` gets its
    /// outcome, on the connection's tasks, within the connection's timeout. Hands `done`
    /// back when the connection is not accepted yet or no longer takes calls.
    pub fn call_later(self: &Arc<Self>, frame: BytesMut, done: Done) -> Result<(), Done> {
        if !self.lock().accepted {
            return Err(done);
        }
        let deadline = Some(Instant::now() + self.timeout);
        self.enqueue(frame, done, deadline, |frame, in_flight| {
            self.outbox.push_later(frame, eager_group(in_flight))
        })
        .map(|_| ())
    }

    /// Gives the request an id and queues it with `push`, told how many calls are in
    /// flight on the connection with it; `done` back when the connection no longer
    /// takes calls.
    fn enqueue(
        &self,
        mut frame: BytesMut,
        done: Done,
        deadline: Option<Instant>,
        push: impl FnOnce(Bytes, usize) -> bool,
    ) -> Result<u32, Done> {
        let mut state = self.lock();
        if !state.open {
            return Err(done);
        }
        let id = state.next_id;
        // Queued under the lock, so ids go out in order and a go-away's `last` splits them.
        set_id(&mut frame, id);
        if !push(frame.freeze(), state.waiting.len() + 1) {
            // The writer has stopped: the connection is over.
            state.open = false;
            return Err(done);
        }
        // Ids only grow on a connection; the last one retires it.
        state.next_id = id.saturating_add(1);
        state.open = id < u32::MAX;
        // A call made by `call_later` started its timeout's length before its deadline.
        let started = deadline.map_or_else(Instant::now, |deadline| deadline - self.timeout);
        state.waiting.insert(
            id,
            Waiter {
                done,
                started,
                deadline,
            },
        );
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
            self.finish(waiter, outcome());
        }
    }

    /// Settles call `id` with `outcome`, if it still waits.
    fn settle(&self, id: u32, outcome: Outcome) {
        let waiter = self.lock().waiting.remove(&id);
        if let Some(waiter) = waiter {
            self.finish(waiter, outcome);
        }
    }

    /// Hands `outcome` to the call, counting the exchange when it ended here (a call
    /// to be sent again goes on elsewhere).
    fn finish(&self, waiter: Waiter, outcome: Outcome) {
        let ended = !matches!(
            outcome,
            Outcome::Resend | Outcome::NotOurs | Outcome::NoAnswer
        );
        if let Some(transports) = self.transports.as_ref().filter(|_| ended) {
            transports.exchanged(Transport::Multiplexed, waiter.started.elapsed());
        }
        (waiter.done)(outcome);
    }

    async fn drive(
        self: Arc<Self>,
        connect: impl Future<Output = Result<TcpStream, String>>,
        handshake: Duration,
        event_loop: Option<Arc<dyn EventLoop>>,
    ) {
        let mut stream = match connect.await {
            Ok(stream) => stream,
            Err(reason) => return self.settle_all(|| Outcome::Unreachable(reason.clone())),
        };
        let preface = greeting(PREFACE, self.rings.as_ref().map(|rings| rings.own()));
        let accepted = tokio::time::timeout(handshake, async {
            stream.write_all(&preface).await?;
            read_greeting(&mut stream).await
        })
        .await;
        let accepted = accepted.map(|read| read.map(|line| greeted(&line, ACCEPTED)));
        // Nothing but the preface was written: no call reached the peer.
        match accepted {
            Ok(Ok(Some(said))) => {
                if let (Some(rings), Some(said), Ok(peer)) = (&self.rings, said, stream.peer_addr())
                {
                    rings.met(peer.ip().to_canonical(), said);
                }
            }
            // Its kernel reset the connection (a pod dying does): no answer, so no
            // refusal either. The calls go again, on a new connection.
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.outbox.close();
                return self.settle_all(|| Outcome::Resend);
            }
            Ok(_) => {
                self.outbox.close();
                return self.settle_all(|| Outcome::NotOurs);
            }
            Err(_) => {
                self.outbox.close();
                return self.settle_all(|| Outcome::NoAnswer);
            }
        }
        let (read, sink, _end): (Reading, Sink, _) = match event_loop {
            None => {
                let (read, write) = stream.into_split();
                let read = self
                    .clone()
                    .read_replies(BufReader::with_capacity(BATCH, read));
                (Box::pin(read), write.into(), None)
            }
            Some(event_loop) => match self.clone().hand_over(stream, &*event_loop) {
                Ok(handed) => handed,
                Err(e) => return self.settle_all(|| Outcome::Failed(e.to_string())),
            },
        };
        // Later calls are taken once what reads their replies is in place.
        self.lock().accepted = true;
        let _open = self
            .transports
            .as_ref()
            .map(|transports| transports.opened(Direction::Out, Transport::Multiplexed));
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

    /// Hands the reading of `stream` to `event_loop`; the reading future resolves when it
    /// ends, and the guard ends the socket when dropped with the connection's task.
    fn hand_over(
        self: Arc<Self>,
        stream: TcpStream,
        event_loop: &dyn EventLoop,
    ) -> io::Result<(Reading, Sink, Option<EndReading>)> {
        let (socket, sink, end) = share(stream)?;
        let (tell, ended) = oneshot::channel();
        event_loop.adopt(Box::new(Replies {
            conn: self,
            socket,
            framer: Framer::new(usize::MAX),
            ended: Some(tell),
        }));
        let read = async {
            ended.await.unwrap_or_else(|_| {
                Err(io::Error::other("the loop reading the connection stopped"))
            })
        };
        Ok((Box::pin(read), sink, Some(end)))
    }
}
