//! Sends made on the thread of the loop the connections are read on: HTTP/1.1 requests
//! written at once on connections of that thread's own (`loop_http1.rs`), pooled and
//! settled as hyper's are.

use super::*;

impl Client {
    /// Sends `unsent` over HTTP/1.1 on a connection of the thread of `event_loop`, which
    /// is this one (`loop_http1.rs`): the request is written now, and `done` gets the
    /// outcome on this thread, as [`Client::send_until_gone`] would give it with the
    /// peer's departure token (asked only when a connection is to be made: each watches
    /// its own). Its tasks' timers are the client's runtime's.
    pub fn send_loop_http1(&self, event_loop: Arc<dyn EventLoop>, unsent: Unsent, done: Sent) {
        let peer = unsent.peer;
        let mut request = self.inner.http_request(&unsent);
        let mut settle = self.settle(peer, done);
        while let Some(conn) = self.inner.loop_idle.check_out(
            peer,
            |conn, idle| conn.is_usable(idle >= FRESH),
            |conn| conn.close(),
        ) {
            match conn.call(request, settle) {
                Ok(()) => return,
                Err(back) => (request, settle) = back,
            }
        }
        let gone = self.inner.departed(peer.ip());
        if gone.is_cancelled() {
            return settle(Err(never_reached(peer)));
        }
        let runtime = self.inner.runtime();
        let dial = self.inner.dial(peer);
        let weak = Arc::downgrade(&self.inner);
        let timeout = self.inner.config.request_timeout;
        event_loop
            .clone()
            .spawn_here(in_runtime(runtime, async move {
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
                let io = match event_loop.io_here(socket.clone()) {
                    Ok(io) => io,
                    Err(e) => return settle(Err(unreachable(e.to_string()))),
                };
                let idle: loop_http1::Idle = Box::new(move |conn| {
                    if let Some(inner) = weak.upgrade() {
                        inner
                            .loop_idle
                            .check_in(peer, conn.clone(), |stale| stale.close());
                    }
                });
                let conn = loop_http1::Conn::new(socket, peer, timeout, idle, gone);
                if let Err((_, settle)) = conn.call(request, settle) {
                    return settle(Err(unreachable(
                        "the connection ended before the request was written".into(),
                    )));
                }
                conn.run(io).await;
            }));
    }

    /// Hands an HTTP/1.1 exchange's reply to `done`, noting the peer's offer of the
    /// multiplexed transport.
    fn settle(&self, peer: SocketAddr, done: Sent) -> loop_http1::Settle {
        let weak = Arc::downgrade(&self.inner);
        Box::new(move |answered| {
            done(answered.map(|answered| {
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

impl Inner {
    /// The request as it goes on the wire, with the headers [`Inner::over_http`] gives
    /// hyper's: host, content type, length and the signature.
    fn http_request(&self, unsent: &Unsent) -> Bytes {
        let body = unsent.payload.body();
        let mut request = BytesMut::with_capacity(256 + body.len());
        let mut room = [0u8; 64];
        request.extend_from_slice(b"POST ");
        request.extend_from_slice(unsent.encoded.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        request.extend_from_slice(codec::display_in(unsent.peer, &mut room).unwrap_or_default());
        if let Some(ct) = unsent.payload.content_type() {
            request.extend_from_slice(b"\r\ncontent-type: ");
            request.extend_from_slice(ct.as_bytes());
        }
        request.extend_from_slice(b"\r\ncontent-length: ");
        request.extend_from_slice(codec::display_in(body.len(), &mut room).unwrap_or_default());
        if let Some(auth) = &self.config.auth {
            let signed = auth::Signed {
                method: "POST",
                path: &unsent.encoded,
                to: unsent.peer,
                content_type: unsent.payload.content_type().unwrap_or_default(),
                body,
            };
            for (name, value) in auth.sign(&signed) {
                request.extend_from_slice(b"\r\n");
                request.extend_from_slice(name.as_str().as_bytes());
                request.extend_from_slice(b": ");
                request.extend_from_slice(value.as_bytes());
            }
        }
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        request.freeze()
    }
}
