//! Bodies over HTTP: a request's, read whole within its limit, and a reply's response.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{
    body::Incoming,
    header::{self, HeaderValue},
    Response, StatusCode,
};

use super::{too_large, Reply};
use crate::{
    messaging::{mux, RING},
    ring::RingKind,
};

/// The whole body, at most `max` bytes, in one buffer sized from its declared length:
/// each piece is copied in and let go as it arrives, so the body is held once (hyper's
/// `collect` keeps every piece until it copies them all into one buffer), and the
/// buffer is the body's own, which the host can take over without copying.
pub(super) async fn read_body(
    incoming: Incoming,
    declared: Option<u64>,
    max: usize,
) -> Result<Bytes, Reply> {
    let mut limited = Limited::new(incoming, max);
    let mut body = Vec::with_capacity(declared.map_or(0, |len| len as usize).min(max));
    while let Some(frame) = limited.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    body.extend_from_slice(&data);
                }
            }
            Err(e) if e.is::<LengthLimitError>() => return Err(too_large(max)),
            Err(e) => {
                return Err(Reply::error(
                    400,
                    &format!("Unable to read request body: {e}"),
                ))
            }
        }
    }
    Ok(Bytes::from(body))
}

/// The HTTP response of `reply`; with `offer_mux`, it offers the multiplexed transport;
/// with `ring`, it names the ring this node places keys by.
pub(super) fn respond(
    reply: Reply,
    offer_mux: bool,
    ring: Option<RingKind>,
) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    // Static values: each copied would cost an allocation, on every message (the length
    // hyper writes as it encodes).
    if offer_mux {
        builder = builder.header(mux::ADVERTISE, mux::LEVEL);
    }
    if let Some(ring) = ring {
        builder = builder.header(RING, HeaderValue::from_static(ring.name()));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        builder = builder.header(header::ALLOW, HeaderValue::from_static("POST, PUT, GET"));
    }
    let body = if status == StatusCode::NO_CONTENT {
        Bytes::new()
    } else {
        if let Some(ct) = reply.payload.content_type() {
            builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        reply.payload.into_body()
    };
    builder
        .body(Full::new(body))
        .expect("status and headers are valid")
}
