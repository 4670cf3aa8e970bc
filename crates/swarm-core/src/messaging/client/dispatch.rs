//! The path of a send, chosen in one place (`Inner::path`) when it is made, by
//! [`Client::dispatch`], through which every send of the node goes:
//!
//! | the peer | the send | path |
//! |---|---|---|
//! | its multiplexed connection is open | from any thread | a frame queued on it, written at the end of the turn on the loop's thread (at once elsewhere); no task ([`Client::send_multiplexed`]) |
//! | reached over HTTP/1.1 | on the loop's thread | written now on a keep-alive connection of that thread's own, whose task reads the reply ([`Client::send_loop_http1`], `loop_http1.rs`) |
//! | anything else: not known yet, its multiplexed connection being opened, HTTP/1.1 off the loop's thread; and a request a connection handed back unread | from any thread | a task of its own, on the loop's thread when sent from there, else on the runtime: it connects, opens the multiplexed connection when the peer offered it, and sends over it or over HTTP/1.1 on a connection of that thread's or the runtime's ([`Client::send_unsent`]) |

use super::*;

/// How a send goes, chosen when it is made (see the module's table).
enum Path {
    Multiplexed(Arc<mux::Conn>),
    LoopHttp1(Arc<dyn EventLoop>),
    General,
}

impl Client {
    /// Sends `payload` to `topic_path` on the node at `ip`, from any thread, the way
    /// that peer is reached now (see the module's table); `done` gets the reply or the
    /// failure, on whichever thread settles it. A request the peer never read is sent
    /// again, on a new connection; the call ends when the peer leaves the cluster, as
    /// [`Client::send_until_gone`] does. It carries `trace`, the sender's span.
    pub fn dispatch<F>(
        &self,
        ip: &str,
        topic_path: &str,
        payload: Payload,
        trace: Option<Trace>,
        done: F,
    ) where
        F: FnOnce(Result<Reply, SendError>) + Send + 'static,
    {
        match self.unsent(ip, topic_path, payload) {
            Ok(unsent) => self.dispatch_request(unsent.traced(trace), done),
            Err(bad) => done(Err(bad)),
        }
    }

    /// Sends `unsent` as [`Client::dispatch`] does.
    pub fn dispatch_request<F>(&self, unsent: Unsent, done: F)
    where
        F: FnOnce(Result<Reply, SendError>) + Send + 'static,
    {
        match self.inner.path(unsent.peer) {
            Path::Multiplexed(conn) => {
                let inner = self.inner.clone();
                self.call_multiplexed(conn, unsent, move |sent| match sent {
                    Ok(result) => done(result),
                    Err(unsent) => inner.send_general(unsent, Box::new(done)),
                });
            }
            // Boxed only off the multiplexed path: there the one box is its settling.
            Path::LoopHttp1(event_loop) => self.send_loop_http1(event_loop, unsent, Box::new(done)),
            Path::General => self.inner.send_general(unsent, Box::new(done)),
        }
    }

    /// Sends `payload` over the multiplexed connection to the node at `ip` without a
    /// task of its own, when that connection is open (the multiplexed row of the
    /// module's table): the request is written when this thread calls [`mux::flush`],
    /// and `done` gets the reply or the failure on the connection's tasks. `done` gets
    /// the request back, perhaps at once, when it is to go another way
    /// ([`Client::send_unsent`]): there is no such connection, or the peer went away
    /// before reading it.
    pub fn send_multiplexed<F>(&self, ip: &str, topic_path: &str, payload: Payload, done: F)
    where
        F: FnOnce(Result<Result<Reply, SendError>, Unsent>) + Send + 'static,
    {
        let unsent = match self.unsent(ip, topic_path, payload) {
            Ok(unsent) => unsent,
            Err(bad) => return done(Ok(Err(bad))),
        };
        match self.inner.path(unsent.peer) {
            Path::Multiplexed(conn) => self.call_multiplexed(conn, unsent, done),
            _ => done(Err(unsent)),
        }
    }

    /// Sends `unsent` over `conn`, an open multiplexed connection to its peer, as
    /// [`Client::send_multiplexed`] does.
    fn call_multiplexed<F>(&self, conn: Arc<mux::Conn>, unsent: Unsent, done: F)
    where
        F: FnOnce(Result<Result<Reply, SendError>, Unsent>) + Send + 'static,
    {
        let peer = unsent.peer;
        let timeout = self.inner.config.request_timeout;
        let auth = self.inner.config.auth.as_deref();
        let frame = mux::encode_request(
            &unsent.encoded,
            unsent.meta.query().as_deref(),
            &unsent.payload,
            auth.map(|a| (a, peer)),
        );
        // The request itself is kept, not a copy, in case it is to be sent again.
        let settle: mux::Done =
            Box::new(move |outcome| done(settled(peer, outcome, timeout).ok_or(unsent)));
        if let Err(settle) = conn.call_later(frame, settle) {
            settle(Outcome::Resend);
        }
    }
}

impl Inner {
    /// How a send to `peer` goes now (see the module's table).
    fn path(&self, peer: SocketAddr) -> Path {
        let routes = self.lock_routes();
        let route = routes.get(&peer);
        match route {
            Some(Route::Mux(conn)) if conn.is_open() => Path::Multiplexed(conn.clone()),
            route if !self.config.multiplex || over_http(route) => match self.loop_here() {
                Some(event_loop) => Path::LoopHttp1(event_loop.clone()),
                None => Path::General,
            },
            _ => Path::General,
        }
    }

    /// Sends `unsent` with a task of its own: on the loop's thread when this is it (its
    /// HTTP/1.1 connections are that thread's), else on the runtime.
    fn send_general(self: &Arc<Self>, unsent: Unsent, done: Sent) {
        let inner = self.clone();
        let send = async move {
            let gone = inner.departed(unsent.peer.ip());
            done(inner.send_unsent(unsent, &gone).await);
        };
        match self.loop_here() {
            Some(event_loop) => event_loop.spawn_here(in_runtime(self.runtime(), send)),
            None => drop(self.runtime().spawn(send)),
        }
    }
}
