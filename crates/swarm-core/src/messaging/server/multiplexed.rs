//! The server's side of the multiplexed transport (see [`super::super::mux`]): one task
//! per connection, reading and answering its requests, on the runtime or, with a
//! [`EventLoop`], on that loop's thread (`on_loop.rs`).

use std::{collections::VecDeque, future::Future, io, pin::Pin, sync::Arc};

use bytes::Bytes;
use futures_util::{stream::FuturesUnordered, StreamExt};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::{Notify, OwnedSemaphorePermit},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{busy, decode_frame, timed_out, too_large, Answering, Context, Ends, MUX_IDLE};
use crate::messaging::{
    loop_io::EventLoop,
    mux::{self, Answer, Outbox, Read, Responder},
    Reply,
};

mod on_loop;

/// Serves one multiplexed connection (its first byte is waiting): requests are handled
/// concurrently and their replies written as they come, in batches. At shutdown, or
/// after [`MUX_IDLE`] without requests, it sends a go-away naming the last request it
/// read, answers those in flight and ends its sending side; the client sends any later
/// request again elsewhere. With a `event_loop`, the requests are read and started on
/// its thread (see `multiplexed/on_loop.rs`).
pub(super) async fn serve_mux(
    mut stream: TcpStream,
    ends: Ends,
    ctx: Arc<Context>,
    cancel: CancellationToken,
    event_loop: Option<Arc<dyn EventLoop>>,
) {
    let read = tokio::time::timeout(ctx.limits.header_timeout, mux::read_greeting(&mut stream));
    let Some(said) = read
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|line| mux::greeted(&line, mux::PREFACE))
    else {
        return;
    };
    // Named only to a client that named its own: one of level 2 or less reads the plain
    // answer's bytes exactly.
    let own = ctx
        .rings
        .as_ref()
        .filter(|_| said.is_some())
        .map(|rings| rings.own());
    if stream
        .write_all(&mux::greeting(mux::ACCEPTED, own))
        .await
        .is_err()
    {
        return;
    }
    let peer = ends.peer;
    if let (Some(rings), Some(said)) = (&ctx.rings, said) {
        rings.met(peer.ip().to_canonical(), said);
    }
    debug!(target: "node_swarm_kb::messages", "multiplexed connection from {peer}");
    let outbox = Arc::new(Outbox::default());
    let _stop = StopWriter(outbox.clone());
    let conn = MuxConn {
        ends,
        ctx,
        outbox,
        given: Arc::new(Notify::new()),
    };
    let written = match event_loop {
        None => conn.serve_here(stream, cancel).await,
        Some(event_loop) => match mux::share(stream) {
            Ok((socket, sink, _end)) => {
                conn.serve_elsewhere(socket, sink, &*event_loop, cancel)
                    .await
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = written {
        debug!(target: "node_swarm_kb::messages", "multiplexed connection from {peer} ended: {e}");
    }
}

/// A handler's future, answering a multiplexed request.
type Handler = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// The requests being handled by futures, polled by a connection's task: an answer
/// wakes it, not a task of its own.
type Handling = FuturesUnordered<Pin<Box<dyn Future<Output = (Arc<Answer>, Reply)> + Send>>>;

/// What answers the requests of one multiplexed connection.
struct MuxConn {
    ends: Ends,
    ctx: Arc<Context>,
    outbox: Arc<Outbox>,
    /// Told of every answer given.
    given: Arc<Notify>,
}

impl MuxConn {
    /// What answers request `id`, given its slot among those in flight.
    fn answer(&self, id: u32) -> impl FnOnce(OwnedSemaphorePermit) -> Arc<Answer> + '_ {
        move |slot| Answer::new(self.outbox.clone(), id, slot, self.given.clone())
    }

    /// Adds a handler's future to those polled, with the handler timeout.
    fn handle(&self, handling: &Handling, answer: Arc<Answer>, handler: Handler) {
        let timeout = self.ctx.limits.handler_timeout;
        handling.push(Box::pin(async move {
            let reply = tokio::time::timeout(timeout, handler)
                .await
                .unwrap_or_else(|_| timed_out());
            (answer, reply)
        }));
    }

    /// Reads and answers on this task.
    async fn serve_here(&self, stream: TcpStream, cancel: CancellationToken) -> io::Result<()> {
        let (read, write) = stream.into_split();
        let mut reader = BufReader::with_capacity(64 * 1024, read);
        let outbox = &self.outbox;
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.run(write).await }
        });
        // Queues a frame; the reading waits while the client leaves too much unread.
        let send = |frame| {
            outbox.push(frame);
            outbox.room()
        };
        let ctx = &self.ctx;
        let max = ctx.limits.max_body + ctx.limits.max_header_size;
        let timeout = ctx.limits.handler_timeout;
        let mut last = 0;
        let idle = tokio::time::sleep(MUX_IDLE);
        tokio::pin!(idle);
        // A reply waits for room in the writer's queue, and reading waits with it: a
        // client that does not read its replies is not read from either.
        let mut handling = Handling::new();
        let mut taken = TakenRequests::default();
        let expiry = tokio::time::sleep(timeout);
        tokio::pin!(expiry);
        let going_away = loop {
            // Waits between frames: what is read here is kept, so stopping loses nothing.
            let more = tokio::select! {
                Some((answer, reply)) = handling.next(), if !handling.is_empty() => {
                    give(&answer, &reply, outbox).await;
                    continue;
                }
                () = &mut expiry, if !taken.is_empty() => {
                    if let Some(deadline) = taken.expire(Instant::now()) {
                        expiry.as_mut().reset(deadline);
                    }
                    continue;
                }
                _ = cancel.cancelled() => break true,
                _ = &mut idle => {
                    if handling.is_empty() && taken.expire(Instant::now()).is_none() {
                        break true;
                    }
                    idle.as_mut().reset(Instant::now() + MUX_IDLE);
                    continue;
                }
                more = reader.fill_buf() => more.is_ok_and(|b| !b.is_empty()),
            };
            if !more {
                break false;
            }
            // A frame that has begun must come whole within the header timeout; the
            // requests in flight are answered meanwhile.
            let read =
                tokio::time::timeout(ctx.limits.header_timeout, mux::read_frame(&mut reader, max));
            tokio::pin!(read);
            let read = loop {
                tokio::select! {
                    read = &mut read => break read,
                    Some((answer, reply)) = handling.next(), if !handling.is_empty() => {
                        give(&answer, &reply, outbox).await;
                    }
                }
            };
            let (id, rest) = match read {
                Ok(Ok(Read::Frame(mux::PING, id, _))) => {
                    send(mux::ping_frame(mux::PONG, id)).await;
                    continue;
                }
                Ok(Ok(Read::Frame(mux::REQUEST, id, rest))) if id > last => (id, Some(rest)),
                Ok(Ok(Read::TooLarge(mux::REQUEST, id))) if id > last => (id, None),
                _ => break false,
            };
            last = id;
            let now = Instant::now();
            idle.as_mut().reset(now + MUX_IDLE);
            match start(ctx, rest, self.ends, self.answer(id)) {
                Started::Now(reply) => send(mux::reply_frame(id, &reply)).await,
                Started::Later(answer, handler) => self.handle(&handling, answer, handler),
                Started::Taken(answer) => {
                    taken.push(now + timeout, answer);
                    if let Some(deadline) = taken.expire(now) {
                        expiry.as_mut().reset(deadline);
                    }
                }
            }
        };
        if going_away {
            send(mux::go_away_frame(last)).await;
        }
        let answered = self.answer_all(handling, |now| taken.expire(now));
        // Reads on until the client closes (for the drain timeout at most), so closing
        // never resets the connection under replies it has not read yet; pings are still
        // answered while replies are due.
        let rest = async {
            let _ = tokio::time::timeout(ctx.limits.drain_timeout, async {
                loop {
                    match mux::read_frame(&mut reader, max).await {
                        Ok(Read::Frame(mux::PING, id, _)) => {
                            outbox.push(mux::ping_frame(mux::PONG, id));
                        }
                        Ok(Read::Frame(..) | Read::TooLarge(..)) => {}
                        Ok(Read::End) | Err(_) => break,
                    }
                }
            })
            .await;
        };
        let (written, (), ()) = tokio::join!(writer, answered, rest);
        written.unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// Answers the requests in flight: those of `handling`, and those taken, which
    /// `expire` times out (returning the next deadline, if any is left); then ends the
    /// writer once it has written the replies.
    async fn answer_all(
        &self,
        mut handling: Handling,
        mut expire: impl FnMut(Instant) -> Option<Instant>,
    ) {
        let handled = async {
            while let Some((answer, reply)) = handling.next().await {
                give(&answer, &reply, &self.outbox).await;
            }
        };
        let taken = async {
            loop {
                let answer_given = self.given.notified();
                let Some(deadline) = expire(Instant::now()) else {
                    break;
                };
                tokio::select! {
                    () = answer_given => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        };
        tokio::join!(handled, taken);
        self.outbox.close();
    }
}

/// Stops a connection's writer task when the connection's own task ends, or is dropped
/// (shutdown gave up on it), so the socket closes with it.
struct StopWriter(Arc<Outbox>);

impl Drop for StopWriter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a multiplexed request started.
enum Started {
    /// Answered at once (refused, malformed, too large).
    Now(Reply),
    /// Answered by the reply this future resolves to.
    Later(Arc<Answer>, Pin<Box<dyn Future<Output = Reply> + Send>>),
    /// Answered through its responder, which the dispatcher took.
    Taken(Arc<Answer>),
}

/// Starts answering request `rest` (`None`: it was too large) as [`answer`] does an HTTP
/// one; `answer` makes what answers it, given its slot among those in flight.
fn start(
    ctx: &Context,
    rest: Option<Bytes>,
    ends: Ends,
    answer: impl FnOnce(OwnedSemaphorePermit) -> Arc<Answer>,
) -> Started {
    let Some(rest) = rest else {
        return Started::Now(ctx.refuse(too_large(ctx.limits.max_body)));
    };
    let Ok(slot) = ctx.in_flight.clone().try_acquire_owned() else {
        return Started::Now(ctx.refuse(busy()));
    };
    let mut message = match decode_frame(rest, ends, ctx) {
        Ok(message) => message,
        Err(reply) => return Started::Now(ctx.refuse(reply)),
    };
    let answer = answer(slot);
    message.responder = Some(Responder(answer.clone()));
    match ctx.dispatch.dispatch(message) {
        Answering::Later(handler) => Started::Later(answer, handler),
        Answering::Taken => Started::Taken(answer),
    }
}

/// Gives the reply of a handler's future, unless its request was answered already;
/// then waits for room in the writer's queue.
async fn give(answer: &Arc<Answer>, reply: &Reply, outbox: &Outbox) {
    if answer.give(reply, false) {
        outbox.room().await;
    }
}

/// The requests whose dispatcher took their responder, by deadline (the handler timeout
/// is the same for all), for the server to time out those left unanswered. Answers come
/// from elsewhere and wake nothing here, so the answered are dropped as the queue grows:
/// from its head as it expires, and all at once whenever it has doubled since the last
/// time. It holds about twice the requests in flight (each holds a slot of
/// `max_in_flight` until answered), not every request answered since the queue was last
/// looked at: 100 bytes or so a request, for seconds, under a steady load.
#[derive(Default)]
struct TakenRequests {
    queue: VecDeque<(Instant, Arc<Answer>)>,
    /// The length at which the answered are dropped next.
    compact_at: usize,
}

/// The shortest queue of taken requests that is ever compacted.
const COMPACT_MIN: usize = 64;

impl TakenRequests {
    fn push(&mut self, deadline: Instant, answer: Arc<Answer>) {
        self.queue.push_back((deadline, answer));
        if self.queue.len() >= self.compact_at {
            self.queue.retain(|(_, answer)| !answer.is_answered());
            self.compact_at = (2 * self.queue.len()).max(COMPACT_MIN);
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Drops the answered requests at the head, answers those whose handler timed out
    /// by `now`, and returns the next deadline, if any request is left.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        while let Some((deadline, answer)) = self.queue.front() {
            if !answer.is_answered() && *deadline > now {
                return Some(*deadline);
            }
            answer.give(&timed_out(), false);
            self.queue.pop_front();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{Notify, Semaphore};

    use super::*;
    use crate::messaging::Payload;

    fn answer(id: u32) -> Arc<Answer> {
        let slot = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a slot");
        Answer::new(
            Arc::new(Outbox::default()),
            id,
            slot,
            Arc::new(Notify::new()),
        )
    }

    #[test]
    fn taken_requests_answered_behind_one_still_waiting_are_not_kept() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(300);
        let mut taken = TakenRequests::default();
        // The oldest waits for a slow handler; 100,000 later ones are answered at once.
        let slow = answer(1);
        taken.push(deadline, slow.clone());
        let mut longest = 0;
        for id in 2..100_002 {
            let fast = answer(id);
            taken.push(deadline, fast.clone());
            assert!(fast.give(&Reply::ok(Payload::Empty), false));
            longest = longest.max(taken.queue.len());
        }
        assert!(longest <= COMPACT_MIN, "the queue grew to {longest}");
        // The one still waiting is timed out at its deadline, and the rest dropped.
        assert_eq!(taken.expire(now), Some(deadline));
        assert!(!slow.is_answered());
        assert_eq!(taken.expire(deadline), None);
        assert!(slow.is_answered());
        assert!(taken.queue.is_empty());
    }

    #[test]
    fn taken_requests_waiting_are_all_kept_until_answered_or_timed_out() {
        let now = Instant::now();
        let mut taken = TakenRequests::default();
        let waiting: Vec<_> = (1..=1000).map(answer).collect();
        for (i, answer) in waiting.iter().enumerate() {
            taken.push(now + Duration::from_millis(i as u64 + 1), answer.clone());
        }
        assert_eq!(taken.queue.len(), 1000);
        assert_eq!(
            taken.expire(now + Duration::from_millis(500)),
            Some(now + Duration::from_millis(501))
        );
        assert_eq!(waiting.iter().filter(|a| a.is_answered()).count(), 500);
        assert_eq!(taken.queue.len(), 500);
    }
}
