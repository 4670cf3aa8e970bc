//! A request read off either transport, checked (its size, its signature) and decoded
//! into an [`Inbound`]: an HTTP/1.1 request's headers and a multiplexed frame's query say
//! the same things.

use bytes::Bytes;
use hyper::{
    body::Incoming,
    header::{self, HeaderMap, HeaderValue},
    Method, Request,
};
use tracing::debug;

use super::{body::read_body, head_too_large, too_large, Context, Ends};
use crate::{
    messaging::{auth, mux, path, Inbound, Meta, Payload, Reply, RING},
    ring::Said,
};

/// Decodes a multiplexed request as [`decode`] does an HTTP one.
pub(super) fn decode_frame(rest: Bytes, ends: Ends, ctx: &Context) -> Result<Inbound, Reply> {
    let mut request =
        mux::parse_request(rest).ok_or_else(|| Reply::error(400, "Malformed request frame"))?;
    if request.path().len() > ctx.limits.max_header_size {
        return Err(head_too_large(ctx.limits.max_header_size));
    }
    // The frame limit leaves room for a head; the body has its own.
    let body = std::mem::take(&mut request.body);
    if body.len() > ctx.limits.max_body {
        return Err(too_large(ctx.limits.max_body));
    }
    // As of an HTTP request line, the path is what precedes a query, which says what
    // headers say over HTTP/1.1.
    let (path, query) = request
        .path()
        .split_once('?')
        .unwrap_or((request.path(), ""));
    let mut inbound = inbound(
        ctx,
        "POST",
        path,
        request.content_type,
        &request.signature,
        body,
        ends,
    )?;
    inbound.meta = Meta::from_query(query);
    received(&inbound);
    Ok(inbound)
}

pub(super) async fn decode(
    req: Request<Incoming>,
    ends: Ends,
    ctx: &Context,
) -> Result<Inbound, Reply> {
    let (parts, incoming) = req.into_parts();
    let has_body = match parts.method {
        Method::POST | Method::PUT => true,
        Method::GET => false,
        _ => {
            return Err(Reply::error(
                405,
                "Method not allowed: use POST, PUT or GET",
            ))
        }
    };
    // hyper's read buffer bounds the memory a head may take, but lets a head that
    // arrived in large reads through: the limit itself is checked here.
    let max_head = ctx.limits.max_header_size;
    let head = parts.uri.to_string().len()
        + parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head > max_head {
        return Err(head_too_large(max_head));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > ctx.limits.max_body as u64) {
        return Err(too_large(ctx.limits.max_body));
    }
    let body = if has_body {
        read_body(incoming, declared, ctx.limits.max_body).await?
    } else {
        Bytes::new()
    };
    let mut inbound = inbound(
        ctx,
        parts.method.as_str(),
        parts.uri.path(),
        parts.headers.get(header::CONTENT_TYPE),
        &parts.headers,
        body,
        ends,
    )?;
    inbound.meta = Meta::from_headers(&parts.headers);
    // A request that names no ring may come from anything (a probe, curl): only the
    // client, which knows its peers, takes silence for 0.5.1.
    if let (Some(rings), Some(said)) = (&ctx.rings, parts.headers.get(RING)) {
        rings.met(inbound.from, Said::of(Some(said.as_bytes())));
    }
    received(&inbound);
    Ok(inbound)
}

/// A request whose body is read: its signature checked, its path and body decoded.
/// Multiplexed requests are signed as `POST`s, as HTTP ones are sent.
fn inbound(
    ctx: &Context,
    method: &str,
    raw_path: &str,
    content_type: Option<&HeaderValue>,
    headers: &HeaderMap,
    body: Bytes,
    ends: Ends,
) -> Result<Inbound, Reply> {
    if let Some(auth) = &ctx.limits.auth {
        let request = auth::Signed {
            method,
            path: raw_path,
            to: ends.local,
            content_type: content_type
                .and_then(|ct| ct.to_str().ok())
                .unwrap_or_default(),
            body: &body,
        };
        auth.verify(&request, headers)
            .map_err(|e| Reply::error(401, &e.to_string()))?;
    }
    let peer = ends.peer;
    let path = path::decode(raw_path.trim_matches('/'));
    let payload =
        Payload::decode(content_type, body).map_err(|e| Reply::error(400, &e.to_string()))?;
    let from = peer.ip().to_canonical();
    Ok(Inbound {
        path,
        payload,
        from,
        responder: None,
        meta: Meta::default(),
    })
}

/// Logs a request read in full, with the trace it belongs to, so that a log and a trace
/// can be matched.
fn received(inbound: &Inbound) {
    let (path, from) = (&inbound.path, inbound.from);
    match &inbound.meta.trace {
        Some(trace) => {
            let parent = trace.parent();
            debug!(target: "node_swarm_kb::messages", "New message {path} received from {from}, traceparent {parent}");
        }
        None => {
            debug!(target: "node_swarm_kb::messages", "New message {path} received from {from}")
        }
    }
}
