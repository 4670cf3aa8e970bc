//! The multiplexed transport between pods of this version: any number of requests in
//! flight on one TCP connection, written and read in batches, where HTTP/1.1 needs one
//! connection per request in flight and a write and a read system call per message.
//!
//! Pods of 0.5.1 never see it. A server of ours advertises the transport with a header
//! on its HTTP replies ([`ADVERTISE`]); a client opens a multiplexed connection only to
//! a peer that did, and starts it with [`PREFACE`], whose first byte (NUL) starts no
//! HTTP request, so the server tells the two apart from one byte on the same port. The
//! server answers [`ACCEPTED`]; anything else and the client keeps HTTP/1.1 for it
//! (a connection reset before the answer is made again: the peer's kernel dropped it).
//! Either line may name the ring its pod places keys by before its `\r\n`
//! (` ring=xxh3`, [`greeting`]), as the [`RING`](super::RING) header does over HTTP/1.1.
//!
//! Frames, big-endian: `len: u32` (of what follows), `kind: u8`, `id: u32`, then
//! - request (1): `type: u8`, `path_len: u16`, the path as in an HTTP request line,
//!   `auth_len: u16`, the signature header values joined by spaces, the body. The path's
//!   query says what HTTP/1.1 headers say besides the topic and body (what routed a task
//!   request, the trace: [`Meta`](super::Meta)); every server of ours, of any level,
//!   leaves it out of the topic path (as an HTTP server leaves a query out of its
//!   path); it is not signed, as those headers are not;
//! - reply (2): `status: u16`, `type: u8`, the body;
//! - go-away (3): nothing. The server answers every request up to `id` and none after
//!   it, so the client sends those again on a new connection (HTTP/2's GOAWAY): a server
//!   shutting down, or closing an idle connection, never leaves a request in doubt;
//! - ping (4) and pong (5): nothing. The server answers a ping with a pong of its id as
//!   soon as it reads it, whatever its handlers are doing: proof that the peer is alive
//!   and reads the connection (a peer that left the cluster is probed so before its calls
//!   are failed). Sent only to a server that advertised [`LEVEL`] 2 or more: one of level
//!   1 ends a connection on a frame kind it does not know.
//!
//! `type` is 0 for no content type, 1 for JSON and 2 for text, as [`Payload`] sends them;
//! bodies are decoded and checked as HTTP ones are, so both transports answer alike.
//!
//! Here, the frames; `outbox.rs` writes them, `answer.rs` answers a request from any
//! thread, `conn.rs` is the client's connection, and `inflow.rs` takes frames off a
//! connection read on another thread's event loop
//! ([`EventLoop`](super::loop_io::EventLoop)). The server's side is in
//! `server/multiplexed.rs`.

use std::{io, net::SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hyper::header::{HeaderMap, HeaderValue};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::{auth, Auth, Payload, Reply};

mod answer;
mod conn;
mod handshake;
mod inflow;
mod outbox;

pub(crate) use answer::Answer;
pub use answer::Responder;
pub use conn::{Call, Conn, Done, Outcome};
pub use handshake::{greeted, greeting, read_greeting, Offer, ACCEPTED, ADVERTISE, LEVEL, PREFACE};
pub use inflow::Inflow;
pub(crate) use inflow::{read_frames, share, Flow, Framer, Step};
pub use outbox::{flush, Outbox, Sink, EAGER, HIGH_WATER};

/// The kinds of frames.
pub const REQUEST: u8 = 1;
pub const REPLY: u8 = 2;
pub const GO_AWAY: u8 = 3;
pub const PING: u8 = 4;
pub const PONG: u8 = 5;
/// `kind` and `id`.
const HEAD: usize = 5;
/// Frames are gathered into writes of about this size.
const BATCH: usize = 64 * 1024;

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

fn type_code(payload: &Payload) -> u8 {
    match payload {
        Payload::Empty => 0,
        Payload::Json(_) => 1,
        Payload::Text(_) => 2,
    }
}

/// The content type a `type` byte stands for, as an HTTP header would carry it.
pub fn content_type(code: u8) -> Option<&'static HeaderValue> {
    match code {
        1 => Some(&JSON),
        2 => Some(&TEXT),
        _ => None,
    }
}

fn frame(kind: u8, id: u32, rest: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(4 + HEAD + rest);
    buf.put_u32((HEAD + rest) as u32);
    buf.put_u8(kind);
    buf.put_u32(id);
    buf
}

/// A request frame; `auth` signs it as an HTTP `POST` to `path` at the address it names.
pub fn request_frame(
    id: u32,
    path: &str,
    payload: &Payload,
    auth: Option<(&Auth, SocketAddr)>,
) -> Bytes {
    let mut buf = encode_request(path, None, payload, auth);
    set_id(&mut buf, id);
    buf.freeze()
}

/// A request frame without its id: signing and copying the body need no lock. `query`
/// is the query of its path ([`Meta::query`](super::Meta::query)).
pub fn encode_request(
    path: &str,
    query: Option<&str>,
    payload: &Payload,
    auth: Option<(&Auth, SocketAddr)>,
) -> BytesMut {
    let body = payload.body();
    let signature = auth
        .map(|(auth, to)| {
            let headers = auth.sign(&auth::Signed {
                method: "POST",
                path,
                to,
                content_type: payload.content_type().unwrap_or_default(),
                body,
            });
            let values: Vec<&str> = headers
                .iter()
                .map(|(_, v)| v.to_str().expect("ASCII"))
                .collect();
            values.join(" ")
        })
        .unwrap_or_default();
    let path_len = path.len() + query.map_or(0, |query| 1 + query.len());
    let mut buf = frame(REQUEST, 0, 5 + path_len + signature.len() + body.len());
    buf.put_u8(type_code(payload));
    buf.put_u16(path_len as u16);
    buf.put_slice(path.as_bytes());
    if let Some(query) = query {
        buf.put_u8(b'?');
        buf.put_slice(query.as_bytes());
    }
    buf.put_u16(signature.len() as u16);
    buf.put_slice(signature.as_bytes());
    buf.put_slice(body);
    buf
}

/// Writes `id` into a frame (after `len` and `kind`).
fn set_id(frame: &mut BytesMut, id: u32) {
    frame[5..5 + 4].copy_from_slice(&id.to_be_bytes());
}

/// A reply frame, with the body an HTTP reply of `reply` would have.
pub fn reply_frame(id: u32, reply: &Reply) -> Bytes {
    let (code, body) = if reply.status == 204 {
        (0, &[][..])
    } else {
        (type_code(&reply.payload), reply.payload.body())
    };
    let mut buf = frame(REPLY, id, 3 + body.len());
    buf.put_u16(reply.status);
    buf.put_u8(code);
    buf.put_slice(body);
    buf.freeze()
}

/// A go-away frame: requests after `last` will not be answered.
pub fn go_away_frame(last: u32) -> Bytes {
    frame(GO_AWAY, last, 0).freeze()
}

/// A ping (`kind` [`PING`]) or its answer ([`PONG`]).
pub fn ping_frame(kind: u8, id: u32) -> Bytes {
    frame(kind, id, 0).freeze()
}

/// A request as a frame carries it.
#[derive(Debug)]
pub struct RequestFrame {
    pub content_type: Option<&'static HeaderValue>,
    /// The path's bytes in the frame (UTF-8, checked when parsed): see [`Self::path`].
    path: Bytes,
    /// The signature headers, when the request is signed.
    pub signature: HeaderMap,
    pub body: Bytes,
}

impl RequestFrame {
    /// The request's path, as it came.
    pub fn path(&self) -> &str {
        std::str::from_utf8(&self.path).expect("checked when parsed")
    }
}

fn take_short(rest: &mut Bytes) -> Option<Bytes> {
    let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    rest.advance(2);
    (rest.len() >= len).then(|| rest.split_to(len))
}

/// Parses the rest of a request frame; `None` when it is malformed.
pub fn parse_request(mut rest: Bytes) -> Option<RequestFrame> {
    let code = *rest.first()?;
    rest.advance(1);
    // Not copied: only its decoded form is kept.
    let path = take_short(&mut rest)?;
    std::str::from_utf8(&path).ok()?;
    let signed = take_short(&mut rest)?;
    let mut signature = HeaderMap::new();
    if !signed.is_empty() {
        let text = std::str::from_utf8(&signed).ok()?;
        let mut values = text.split(' ');
        for name in [auth::TIMESTAMP, auth::NONCE, auth::SIGNATURE] {
            signature.insert(name, HeaderValue::from_str(values.next()?).ok()?);
        }
    }
    Some(RequestFrame {
        content_type: content_type(code),
        path,
        signature,
        body: rest,
    })
}

/// Parses the rest of a reply frame; `None` when it is malformed.
pub fn parse_reply(mut rest: Bytes) -> Option<Reply> {
    let status = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    let code = *rest.get(2)?;
    rest.advance(3);
    Some(Reply {
        status,
        payload: Payload::decode_reply(status, content_type(code), rest),
    })
}

/// What [`read_frame`] read.
#[derive(Debug)]
pub enum Read {
    /// A frame: its kind, its id and what follows them.
    Frame(u8, u32, Bytes),
    /// A frame longer than allowed, skipped: its kind and id.
    TooLarge(u8, u32),
    /// The connection ended between frames.
    End,
}

/// Reads the next frame; one longer than `max` bytes is read past, not kept.
pub async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> io::Result<Read> {
    if reader.fill_buf().await?.is_empty() {
        return Ok(Read::End);
    }
    let len = reader.read_u32().await? as usize;
    if len < HEAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too short",
        ));
    }
    let kind = reader.read_u8().await?;
    let id = reader.read_u32().await?;
    let rest = (len - HEAD) as u64;
    if len > max {
        let skipped =
            tokio::io::copy(&mut (&mut *reader).take(rest), &mut tokio::io::sink()).await?;
        if skipped < rest {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(Read::TooLarge(kind, id));
    }
    // Grown as the bytes arrive, not sized from the declared length: a peer that
    // announces a large frame and sends little gets little memory.
    let mut buf = Vec::with_capacity((len - HEAD).min(BATCH));
    if (&mut *reader).take(rest).read_to_end(&mut buf).await? < len - HEAD {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Read::Frame(kind, id, Bytes::from(buf)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::BufReader;

    use super::*;

    async fn read(bytes: &[u8], max: usize) -> io::Result<Read> {
        read_frame(&mut BufReader::new(bytes), max).await
    }

    #[tokio::test]
    async fn a_request_frame_carries_path_type_signature_and_body() {
        let auth = Auth::new(b"secret", Duration::from_secs(30), true);
        for payload in [
            Payload::Json(Bytes::from_static(b"{\"a\":1}")),
            Payload::Text(Bytes::from_static(b"hello")),
            Payload::Empty,
        ] {
            let to: SocketAddr = "10.0.0.1:45892".parse().expect("an address");
            let frame = request_frame(7, "/a/b%20c", &payload, Some((&auth, to)));
            let Ok(Read::Frame(REQUEST, 7, rest)) = read(&frame, usize::MAX).await else {
                panic!("not a request frame")
            };
            let request = parse_request(rest).expect("well formed");
            assert_eq!(
                request.content_type.map(|v| v.to_str().expect("ASCII")),
                payload.content_type()
            );
            assert_eq!(request.body, payload.body());
            let signed = auth::Signed {
                method: "POST",
                path: "/a/b%20c",
                to,
                content_type: request
                    .content_type
                    .map_or("", |v| v.to_str().expect("ASCII")),
                body: &request.body,
            };
            auth.verify(&signed, &request.signature)
                .expect("signed as an HTTP POST of the path, with its type");
        }
        let unsigned = request_frame(1, "/x", &Payload::Empty, None);
        let Ok(Read::Frame(_, _, rest)) = read(&unsigned, usize::MAX).await else {
            panic!("not a frame")
        };
        assert!(parse_request(rest)
            .expect("well formed")
            .signature
            .is_empty());
    }

    #[tokio::test]
    async fn a_reply_frame_decodes_as_an_http_reply_would() {
        let cases = [
            Reply::ok(Payload::Json(Bytes::from_static(b"[1,2]"))),
            Reply::ok(Payload::Text(Bytes::from_static(b"plain"))),
            Reply::ok(Payload::Empty),
            Reply::error(409, "refused"),
        ];
        for reply in cases {
            let frame = reply_frame(3, &reply);
            let Ok(Read::Frame(REPLY, 3, rest)) = read(&frame, usize::MAX).await else {
                panic!("not a reply frame")
            };
            assert_eq!(parse_reply(rest), Some(reply));
        }
        let Ok(Read::Frame(GO_AWAY, 9, rest)) = read(&go_away_frame(9), usize::MAX).await else {
            panic!("not a go-away frame")
        };
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn truncated_oversized_and_malformed_frames_are_told_apart() {
        let frame = request_frame(
            5,
            "/big",
            &Payload::Text(Bytes::from(vec![b'x'; 100])),
            None,
        );
        let mut two = frame.to_vec();
        two.extend_from_slice(&go_away_frame(6));
        let mut reader = BufReader::new(&two[..]);
        assert!(matches!(
            read_frame(&mut reader, 50).await,
            Ok(Read::TooLarge(REQUEST, 5))
        ));
        assert!(
            matches!(
                read_frame(&mut reader, 50).await,
                Ok(Read::Frame(GO_AWAY, 6, _))
            ),
            "the frame after a skipped one is read whole"
        );
        assert!(matches!(read_frame(&mut reader, 50).await, Ok(Read::End)));
        assert!(
            read(&frame[..frame.len() - 1], usize::MAX).await.is_err(),
            "truncated"
        );
        assert!(
            read(&[0, 0, 0, 2, 1, 0], usize::MAX).await.is_err(),
            "shorter than a head"
        );
        for rest in [&b""[..], b"\x01\x00\x09/x", b"\x01\x00\x02/x\x00\x03a b"] {
            assert!(
                parse_request(Bytes::copy_from_slice(rest)).is_none(),
                "{rest:?}"
            );
        }
        assert!(parse_reply(Bytes::from_static(b"\x00")).is_none());
    }
}
