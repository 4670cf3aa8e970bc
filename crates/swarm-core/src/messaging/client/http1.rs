//! Sends over HTTP/1.1 on connections of the client's own (`loop_http1.rs`): the request
//! is written by the sending thread inside its call, and the reply read by the
//! connection's task. A connection's home is the loop's thread, when it was made there
//! (that loop polls it), or else the runtime; each home has its pool, per peer.

use super::*;

/// Where an HTTP/1.1 connection is polled.
pub(super) enum Home {
    Loop(Arc<dyn EventLoop>),
    Runtime,
}

impl Inner {
    /// A new TCP connection to `peer`, with the client's socket options.
    pub(super) fn dial(
        &self,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Result<TokioIo<TcpStream>, String>> + Send + 'static
    {
        let uri = Uri::builder()
            .scheme("http")
            .authority(peer.to_string())
            .path_and_query("/")
            .build();
        let connector = self.connector.clone();
        async move {
            let uri = uri.map_err(|e| with_causes(&e))?;
            connector.oneshot(uri).await.map_err(|e| with_causes(&e))
        }
    }

    /// The home of a connection made on this thread now.
    pub(super) fn home_here(&self) -> Home {
        match self.loop_here() {
            Some(event_loop) => Home::Loop(event_loop.clone()),
            None => Home::Runtime,
        }
    }

    fn pool(&self, home: &Home) -> &Pool<Arc<loop_http1::Conn>> {
        match home {
            Home::Loop(_) => &self.loop_idle,
            Home::Runtime => &self.runtime_idle,
        }
    }

    /// Sends `request` to `peer` on a pooled connection of `home`, or a new one that
    /// `gone` ends (the peer left the cluster); `settle` gets the outcome on the
    /// connection's task, or at once.
    pub(super) fn send_http1(
        self: &Arc<Self>,
        home: Home,
        peer: SocketAddr,
        mut request: Bytes,
        mut settle: loop_http1::Settle,
        gone: CancellationToken,
    ) {
        while let Some(conn) = self.pool(&home).check_out(
            peer,
            |conn, idle| conn.is_usable(idle >= FRESH),
            |conn| conn.close(),
        ) {
            match conn.call(request, settle) {
                Ok(()) => return,
                Err(back) => (request, settle) = back,
            }
        }
        if gone.is_cancelled() {
            return settle(Err(never_reached(peer)));
        }
        let (dial, weak) = (self.dial(peer), Arc::downgrade(self));
        let timeout = self.config.request_timeout;
        let counted = self.transports.get().cloned();
        let event_loop = match &home {
            Home::Loop(event_loop) => Some(event_loop.clone()),
            Home::Runtime => None,
        };
        let watched = event_loop.clone();
        let connect = async move {
            let unreachable = |reason: String| SendError::Unreachable {
                ip: peer.ip().to_string(),
                reason,
            };
            let connected = tokio::select! {
                connected = dial => connected,
                () = gone.cancelled() => return settle(Err(never_reached(peer))),
            };
            let socket = match connected
                .and_then(|io| io.into_inner().into_std().map_err(|e| e.to_string()))
            {
                Ok(socket) => Arc::new(socket),
                Err(reason) => return settle(Err(unreachable(reason))),
            };
            let io = match &watched {
                Some(event_loop) => event_loop.io_here(socket.clone()),
                None => LoopIo::on_runtime(socket.clone()),
            };
            let io = match io {
                Ok(io) => io,
                Err(e) => return settle(Err(unreachable(e.to_string()))),
            };
            let idle: loop_http1::Idle = Box::new(move |conn| {
                if let Some(inner) = weak.upgrade() {
                    inner
                        .pool(&home)
                        .check_in(peer, conn.clone(), |stale| stale.close());
                }
            });
            let conn = loop_http1::Conn::new(socket, peer, timeout, idle, gone);
            if let Err((_, settle)) = conn.call(request, settle) {
                return settle(Err(unreachable(
                    "the connection ended before the request was written".into(),
                )));
            }
            let _open =
                counted.map(|transports| transports.opened(Direction::Out, Transport::Http1));
            conn.run(io).await;
        };
        match event_loop {
            Some(event_loop) => event_loop.spawn_here(in_runtime(self.runtime(), connect)),
            None => drop(self.runtime().spawn(connect)),
        }
    }

    /// One exchange over HTTP/1.1, from a task: on a connection of this thread's loop
    /// when this is its thread, else of the runtime.
    pub(super) async fn over_http(
        self: &Arc<Self>,
        unsent: &Unsent,
        gone: &CancellationToken,
    ) -> Result<Reply, SendError> {
        let (tell, outcome) = tokio::sync::oneshot::channel();
        let settle = self.settle_http1(
            unsent.peer,
            Box::new(move |sent| {
                let _ = tell.send(sent);
            }),
        );
        let request = self.http_request(unsent);
        self.send_http1(self.home_here(), unsent.peer, request, settle, gone.clone());
        outcome.await.unwrap_or_else(|_| {
            Err(SendError::Failed {
                ip: unsent.peer.ip().to_string(),
                reason: "the connection ended before the reply".into(),
            })
        })
    }

    /// Hands an HTTP/1.1 exchange's reply to `done`, noting the peer's offer of the
    /// multiplexed transport and what it said of its ring, and counting the exchange,
    /// made now.
    pub(super) fn settle_http1(
        self: &Arc<Self>,
        peer: SocketAddr,
        done: Sent,
    ) -> loop_http1::Settle {
        let weak = Arc::downgrade(self);
        let (counted, started) = (self.transports.get().cloned(), Instant::now());
        let rings = self.config.rings.clone();
        Box::new(move |answered| {
            if let Some(transports) = counted {
                transports.exchanged(Transport::Http1, started.elapsed());
            }
            done(answered.map(|answered| {
                if let Some(rings) = rings {
                    rings.met(peer.ip().to_canonical(), answered.ring);
                }
                if let Some(offer) = answered.offers_mux {
                    if let Some(inner) = weak.upgrade().filter(|inner| inner.config.multiplex) {
                        inner.offered(peer, offer);
                    }
                }
                answered.reply
            }))
        })
    }
}
