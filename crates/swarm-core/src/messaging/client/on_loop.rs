//! Sends made on the thread of the loop the connections are read on: HTTP/1.1 requests
//! written at once on connections of that thread's own (`http1.rs`), and the request's
//! bytes, as every HTTP/1.1 send of the client writes them.

use super::*;

impl Client {
    /// Sends `unsent` over HTTP/1.1 on a connection of the thread of `event_loop`, which
    /// is this one (`loop_http1.rs`): the request is written now, and `done` gets the
    /// outcome on this thread, as [`Client::send_until_gone`] would give it with the
    /// peer's departure token. Its tasks' timers are the client's runtime's.
    pub fn send_loop_http1(&self, event_loop: Arc<dyn EventLoop>, unsent: Unsent, done: Sent) {
        let peer = unsent.peer;
        let request = self.inner.http_request(&unsent);
        let settle = self.inner.settle_http1(peer, done);
        let gone = self.inner.departed(peer.ip());
        self.inner
            .send_http1(Home::Loop(event_loop), peer, request, settle, gone);
    }
}

impl Inner {
    /// The request as it goes on the wire: host, content type, length, what routed a task
    /// request and its trace, and the signature.
    pub(super) fn http_request(&self, unsent: &Unsent) -> Bytes {
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
        unsent.meta.write_headers(&mut request);
        if let Some(rings) = &self.config.rings {
            request.extend_from_slice(b"\r\n");
            request.extend_from_slice(RING.as_str().as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(rings.own().name().as_bytes());
        }
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
