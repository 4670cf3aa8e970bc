//! Sends over HTTP/1.1 through hyper's client connections, pooled per peer.

use super::*;

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

    /// One exchange over HTTP/1.1.
    pub(super) async fn over_http(
        &self,
        peer: SocketAddr,
        encoded: String,
        payload: Payload,
        reached: &AtomicBool,
    ) -> Result<Reply, SendError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .header(header::HOST, codec::header_value(peer));
        let content_type = payload.content_type();
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let body = payload.into_body();
        // Set here, hyper's own would cost an allocation more.
        builder = builder.header(header::CONTENT_LENGTH, codec::header_value(body.len()));
        if let Some(auth) = &self.config.auth {
            let signed = auth::Signed {
                method: "POST",
                path: &encoded,
                to: peer,
                content_type: content_type.unwrap_or_default(),
                body: &body,
            };
            for (name, value) in auth.sign(&signed) {
                builder = builder.header(name, value);
            }
        }
        // The path taken, not copied.
        let request = builder
            .uri(encoded)
            .body(Full::new(body))
            .map_err(|e| SendError::BadAddress(format!("{}: {e}", peer.ip())))?;
        self.exchange(peer, request, reached).await
    }

    /// One request and its whole reply, on a pooled connection or a new one; `reached`
    /// is set once the request is handed to a connection (it may then reach the peer).
    async fn exchange(
        &self,
        peer: SocketAddr,
        mut request: Request<Full<Bytes>>,
        reached: &AtomicBool,
    ) -> Result<Reply, SendError> {
        let failed = |e: &dyn std::error::Error| SendError::Failed {
            ip: peer.ip().to_string(),
            reason: with_causes(e),
        };
        let (sender, response) = loop {
            let (mut sender, reused) = self.connection(peer).await?;
            reached.store(true, Ordering::Release);
            match sender.try_send_request(request).await {
                Ok(response) => break (sender, response),
                Err(mut e) => match e.take_message() {
                    // Handed back unsent by a connection that was closing: a new one.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(failed(e.error())),
                },
            }
        };
        if let Some(level) = response.headers().get(mux::ADVERTISE) {
            if self.config.multiplex {
                self.offered(peer, mux::Offer::of(level.as_bytes()));
            }
        }
        let status = response.status().as_u16();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = whole_body(response.into_body())
            .await
            .map_err(|e| failed(&e))?;
        // Ready again once hyper has seen the end of this exchange: that may take a turn
        // of its connection task, so the pool waits for readiness when it hands it out.
        if !sender.is_closed() {
            self.hyper_idle.check_in(peer, sender, drop);
        }
        Ok(Reply {
            status,
            payload: Payload::decode_reply(status, content_type.as_ref(), body),
        })
    }

    /// A connection ready for a request, and whether it was reused from the pool.
    async fn connection(
        &self,
        peer: SocketAddr,
    ) -> Result<(SendRequest<Full<Bytes>>, bool), SendError> {
        while let Some(mut sender) =
            self.hyper_idle
                .check_out(peer, |sender, _| !sender.is_closed(), drop)
        {
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        let unreachable = |reason: String| SendError::Unreachable {
            ip: peer.ip().to_string(),
            reason,
        };
        let io = self.dial(peer).await.map_err(unreachable)?;
        let handshake_failed = |e: hyper::Error| unreachable(with_causes(&e));
        // Made on the loop's thread, the connection is read and written there too.
        if let Some(event_loop) = self.loop_here() {
            let socket = io
                .into_inner()
                .into_std()
                .map_err(|e| unreachable(e.to_string()))?;
            let io = event_loop
                .io_here(Arc::new(socket))
                .map_err(|e| unreachable(e.to_string()))?;
            let (sender, connection) = http1::handshake(io).await.map_err(handshake_failed)?;
            let runtime = tokio::runtime::Handle::current();
            event_loop.spawn_here(in_runtime(runtime, async move {
                let _ = connection.await;
            }));
            return Ok((sender, false));
        }
        let (sender, connection) = http1::handshake(io).await.map_err(handshake_failed)?;
        tokio::spawn(connection);
        Ok((sender, false))
    }
}

/// A reply's body, whole: one that came in one piece is that piece, not a copy, and
/// takes no allocation (`collect` would make a list of its pieces).
async fn whole_body(mut body: Incoming) -> Result<Bytes, hyper::Error> {
    let mut whole = Bytes::new();
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if whole.is_empty() && joined.is_empty() {
            whole = data;
        } else {
            joined.extend_from_slice(&std::mem::take(&mut whole));
            joined.extend_from_slice(&data);
        }
    }
    Ok(if joined.is_empty() {
        whole
    } else {
        joined.freeze()
    })
}
