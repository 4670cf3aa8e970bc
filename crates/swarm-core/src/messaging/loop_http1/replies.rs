//! Replies read off a connection's bytes as they come: heads with `httparse`, bodies
//! with a length, in chunks, or up to the end of the connection.

use bytes::{Buf, BytesMut};
use hyper::header::HeaderValue;

use super::Answered;
use crate::{
    messaging::{mux, Payload, Reply, RING},
    ring::Said,
};

/// The largest reply head taken (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a reply head may have.
const MAX_HEADERS: usize = 100;

/// Replies taken off a connection's bytes as they come.
#[derive(Default)]
pub(super) struct Replies {
    buf: BytesMut,
    /// The reply whose head was read, and how its body goes on.
    body: Option<Body>,
}

struct Body {
    status: u16,
    content_type: Option<HeaderValue>,
    offers_mux: Option<mux::Offer>,
    ring: Said,
    keep_alive: bool,
    kind: BodyKind,
    read: BytesMut,
}

enum BodyKind {
    /// This many bytes are left.
    Length(usize),
    /// Chunks; `Some(n)`: inside a chunk of which `n` bytes (and its CRLF) are left.
    Chunked(Option<usize>),
    /// Up to the end of the connection.
    Close,
}

impl Replies {
    pub(super) fn push(&mut self, read: &[u8]) {
        self.buf.extend_from_slice(read);
    }

    /// The next reply, once it is all there.
    pub(super) fn next(&mut self) -> Result<Option<Answered>, String> {
        loop {
            if self.body.is_none() && !self.head()? {
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                // A 1xx head: the reply follows.
                continue;
            };
            let done = match &mut body.kind {
                BodyKind::Length(left) => {
                    let take = (*left).min(self.buf.len());
                    body.read.extend_from_slice(&self.buf.split_to(take));
                    *left -= take;
                    *left == 0
                }
                BodyKind::Chunked(chunk) => chunked(&mut self.buf, chunk, &mut body.read)?,
                BodyKind::Close => {
                    body.read.extend_from_slice(&self.buf.split());
                    false
                }
            };
            if !done {
                return Ok(None);
            }
            let body = self.body.take().expect("a body being read");
            return Ok(Some(body.answered()));
        }
    }

    /// The connection ended: a reply read up to its end is whole.
    pub(super) fn end(&mut self) -> Option<Answered> {
        let mut body = self
            .body
            .take()
            .filter(|body| matches!(body.kind, BodyKind::Close))?;
        body.read.extend_from_slice(&self.buf.split());
        Some(body.answered())
    }

    /// Reads a head, if it is all there: true when one was taken (a 1xx one leaves no
    /// body to read).
    fn head(&mut self) -> Result<bool, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                return Err(format!("reply head larger than {MAX_HEAD} bytes"))
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(e) => return Err(format!("malformed reply: {e}")),
        };
        let status = response.code.unwrap_or_default();
        let version_1_0 = response.version == Some(0);
        let mut length = None;
        let mut chunked = false;
        let mut content_type = None;
        let mut offers_mux = None;
        let mut ring = Said::Nothing;
        let mut close = version_1_0;
        for header in response.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("malformed Content-Length in reply")?;
                if length.is_some_and(|known| known != value) {
                    return Err("conflicting Content-Length in reply".into());
                }
                length = Some(value);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = header
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = HeaderValue::from_bytes(header.value).ok();
            } else if name.eq_ignore_ascii_case(mux::ADVERTISE.as_str()) {
                offers_mux = Some(mux::Offer::of(header.value));
            } else if name.eq_ignore_ascii_case(RING.as_str()) {
                ring = Said::of(Some(header.value));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && version_1_0 {
                        close = false;
                    }
                }
            }
        }
        self.buf.advance(len);
        if (100..200).contains(&status) {
            return if status == 101 {
                Err("the peer switched protocols".into())
            } else {
                Ok(true)
            };
        }
        let kind = if status == 204 || status == 304 {
            BodyKind::Length(0)
        } else if chunked {
            BodyKind::Chunked(None)
        } else if let Some(length) = length {
            BodyKind::Length(length)
        } else {
            close = true;
            BodyKind::Close
        };
        self.body = Some(Body {
            status,
            content_type,
            offers_mux,
            ring,
            keep_alive: !close,
            kind,
            read: BytesMut::new(),
        });
        Ok(true)
    }
}

impl Body {
    fn answered(self) -> Answered {
        let reply = Reply {
            status: self.status,
            payload: Payload::decode_reply(
                self.status,
                self.content_type.as_ref(),
                self.read.freeze(),
            ),
        };
        Answered {
            reply,
            offers_mux: self.offers_mux,
            ring: self.ring,
            keep_alive: self.keep_alive,
        }
    }
}

/// Takes the chunks in `buf` into `body`; true once the last chunk and the trailers are
/// read. `chunk` keeps where it is between reads.
fn chunked(
    buf: &mut BytesMut,
    chunk: &mut Option<usize>,
    body: &mut BytesMut,
) -> Result<bool, String> {
    loop {
        match chunk {
            Some(left) => {
                // The chunk's data, then its CRLF.
                if *left > 0 {
                    let take = (*left).min(buf.len());
                    body.extend_from_slice(&buf.split_to(take));
                    *left -= take;
                    if *left > 0 {
                        return Ok(false);
                    }
                }
                if buf.len() < 2 {
                    return Ok(false);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("malformed chunk in reply".into());
                }
                buf.advance(2);
                *chunk = None;
            }
            None => {
                let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                    return if buf.len() > MAX_HEAD {
                        Err("chunk size line too long in reply".into())
                    } else {
                        Ok(false)
                    };
                };
                let line = std::str::from_utf8(&buf[..end]).map_err(|_| "malformed chunk size")?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| format!("malformed chunk size in reply: {size:?}"))?;
                if size > 0 {
                    buf.advance(end + 2);
                    *chunk = Some(size);
                    continue;
                }
                // The last chunk: trailers up to an empty line.
                let Some(trailers) = find(&buf[end..], b"\r\n\r\n") else {
                    return Ok(false);
                };
                buf.advance(end + trailers + 4);
                return Ok(true);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// The replies in `bytes`, fed in pieces of `step` bytes, then the end of the
    /// connection.
    fn replies(bytes: &[u8], step: usize) -> Result<Vec<Answered>, String> {
        let mut replies = Replies::default();
        let mut answered = Vec::new();
        for piece in bytes.chunks(step) {
            replies.push(piece);
            while let Some(one) = replies.next()? {
                answered.push(one);
            }
        }
        answered.extend(replies.end());
        Ok(answered)
    }

    /// Every way of splitting `bytes` gives the same single reply.
    fn one(bytes: &[u8]) -> Answered {
        let whole = replies(bytes, bytes.len())
            .expect("a reply")
            .pop()
            .expect("one");
        for step in 1..bytes.len() {
            let answered = replies(bytes, step).expect("a reply");
            assert_eq!(answered.len(), 1, "in pieces of {step}");
            assert_eq!(answered[0].reply, whole.reply, "in pieces of {step}");
            assert_eq!(answered[0].keep_alive, whole.keep_alive);
            assert_eq!(answered[0].offers_mux, whole.offers_mux);
        }
        whole
    }

    #[test]
    fn a_reply_with_a_length_is_read_whole_however_it_comes_in() {
        let answered = one(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-swarm-kb-mux: 1\r\ncontent-length: 11\r\n\r\n{\"a\":[1,2]}");
        assert_eq!(answered.reply.status, 200);
        assert_eq!(
            answered.reply.payload,
            Payload::Json(Bytes::from_static(b"{\"a\":[1,2]}"))
        );
        assert!(answered.keep_alive);
        assert_eq!(answered.offers_mux, Some(mux::Offer::default()));
    }

    #[test]
    fn a_chunked_reply_with_extensions_and_trailers_is_read_whole() {
        let answered = one(b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n4;x=y\r\nboom\r\n6\r\n, boom\r\n0\r\nx-trailer: 1\r\n\r\n");
        assert_eq!(answered.reply.status, 500);
        assert_eq!(answered.reply.payload.body(), b"boom, boom");
        assert!(answered.keep_alive);
        assert_eq!(answered.offers_mux, None);
    }

    #[test]
    fn interim_replies_are_skipped_and_bodiless_statuses_read_no_body() {
        let answered = one(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(answered.reply.status, 204);
        assert_eq!(answered.reply.payload, Payload::Empty);
        assert!(answered.keep_alive);
    }

    #[test]
    fn a_reply_without_a_length_lasts_until_the_connection_ends_and_closes_it() {
        let answered = one(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it");
        assert_eq!(answered.reply.payload.body(), b"all of it");
        assert!(!answered.keep_alive);
        let mut replies = Replies::default();
        replies.push(b"HTTP/1.1 200 OK\r\n\r\npart");
        assert!(
            replies.next().expect("no error").is_none(),
            "not before the end"
        );
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection_after_the_reply() {
        assert!(
            !one(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok").keep_alive
        );
        assert!(!one(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").keep_alive);
        assert!(
            one(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
                .keep_alive
        );
    }

    #[test]
    fn a_reply_cut_short_is_no_reply_and_a_malformed_one_an_error() {
        assert!(
            replies(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", 64)
                .expect("no error")
                .is_empty()
        );
        assert!(replies(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nab",
            64
        )
        .expect("no error")
        .is_empty());
        assert!(replies(b"SSH-2.0-OpenSSH\r\n\r\n", 64).is_err());
        assert!(replies(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", 64).is_err());
        assert!(replies(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            64
        )
        .is_err());
        assert!(replies(
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            64
        )
        .is_err());
        assert!(replies(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 64).is_err());
    }

    #[test]
    fn a_head_past_the_limit_is_an_error() {
        let mut head = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        head.resize(MAX_HEAD + 10, b'a');
        assert!(replies(&head, 4096).is_err());
    }
}
