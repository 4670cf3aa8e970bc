//! What a request between pods of ours says besides its topic and body: how a task
//! request was routed ([`Routed`]) and the trace it belongs to ([`Trace`]). Over
//! HTTP/1.1 these are headers; multiplexed, the query of the request frame's path:
//! `name=value` fields joined by `&`, named as the headers are, values percent-encoded.
//! Servers of every version of ours leave a query out of the topic path, and ignore
//! the fields they do not know.

use bytes::BytesMut;
use hyper::header::{HeaderMap, HeaderName};

use super::{
    path,
    routed::{self, Routed},
    trace::{self, Trace},
};

/// The header by which a pod of ours names the ring it places keys by
/// ([`RingKind::name`](crate::ring::RingKind::name)), on its HTTP/1.1 requests and
/// replies; the multiplexed handshake says it too ([`super::mux`]).
pub const RING: HeaderName = HeaderName::from_static("x-swarm-kb-ring");

/// A request's routing and trace, each when it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub routed: Option<Routed>,
    pub trace: Option<Trace>,
}

impl Meta {
    /// The `(name, value)` of each field it has.
    fn fields(&self) -> impl Iterator<Item = (&'static str, std::borrow::Cow<'_, str>)> {
        let routed = self
            .routed
            .as_ref()
            .map(|routed| (routed::NAME, routed.encode().into()));
        let parent = self
            .trace
            .as_ref()
            .map(|trace| (trace::PARENT, trace.parent().into()));
        let state = self
            .trace
            .as_ref()
            .and_then(Trace::state)
            .map(|state| (trace::STATE, state.into()));
        routed.into_iter().chain(parent).chain(state)
    }

    /// Its query, without the `?`; `None` when it says nothing.
    pub fn query(&self) -> Option<String> {
        let mut query = String::new();
        for (name, value) in self.fields() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(name);
            query.push('=');
            // Visible ASCII but what splits the query or starts an escape.
            path::escape_into(&mut query, &value, |b| {
                b.is_ascii_graphic() && !matches!(b, b'&' | b'%' | b'#')
            });
        }
        (!query.is_empty()).then_some(query)
    }

    /// What a query says; nothing for fields it does not know or cannot read.
    pub fn from_query(query: &str) -> Meta {
        let (mut routed, mut parent, mut state) = (None, None, None);
        for field in query.split('&') {
            let Some((name, value)) = field.split_once('=') else {
                continue;
            };
            let value = path::unescape(value);
            if name == routed::NAME {
                routed = Routed::parse(&value);
            } else if name == trace::PARENT {
                parent = Some(value);
            } else if name == trace::STATE {
                state = Some(value);
            }
        }
        Meta {
            routed,
            trace: parent.and_then(|parent| Trace::new(&parent, state.as_deref())),
        }
    }

    /// Writes its HTTP/1.1 headers, each as `\r\nname: value`.
    pub fn write_headers(&self, out: &mut BytesMut) {
        for (name, value) in self.fields() {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
        }
    }

    /// What a request's headers say.
    pub fn from_headers(headers: &HeaderMap) -> Meta {
        let routed = headers
            .get(routed::HEADER)
            .and_then(|routed| Routed::parse(routed.as_bytes()));
        let trace = headers.get(trace::PARENT).and_then(|parent| {
            let state = headers.get(trace::STATE).map(|state| state.as_bytes());
            Trace::new(parent.as_bytes(), state)
        });
        Meta { routed, trace }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ring::RingKind;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn trace(state: Option<&str>) -> Trace {
        Trace::new(PARENT.as_bytes(), state.map(str::as_bytes)).expect("valid")
    }

    proptest! {
        #[test]
        fn any_routing_and_trace_round_trip_through_the_query(
            key in ".*",
            ring in any::<u64>(),
            state in proptest::option::of("[ -~]{1,60}"),
        ) {
            let meta = Meta {
                routed: Some(Routed { key, ring, kind: Some(RingKind::Xxh3) }),
                trace: Some(trace(state.as_deref())),
            };
            let query = meta.query().expect("something to say");
            prop_assert!(query.is_ascii() && !query.contains(['#', ' ']));
            prop_assert_eq!(Meta::from_query(&query), meta);
        }
    }

    #[test]
    fn nothing_to_say_is_no_query_and_unknown_fields_are_ignored() {
        assert_eq!(Meta::default().query(), None);
        let meta = Meta {
            routed: None,
            trace: Some(trace(Some("a=1,b=2"))),
        };
        let query = format!("future=1&{}&broken", meta.query().expect("a trace"));
        assert_eq!(Meta::from_query(&query), meta);
        assert_eq!(Meta::from_query("traceparent=00-zz"), Meta::default());
    }

    #[test]
    fn the_headers_say_what_the_query_says() {
        let meta = Meta {
            routed: Some(Routed {
                key: "k".into(),
                ring: 255,
                kind: Some(RingKind::Hashring),
            }),
            trace: Some(trace(Some("rojo=1"))),
        };
        let mut written = BytesMut::new();
        meta.write_headers(&mut written);
        let mut headers = HeaderMap::new();
        for line in std::str::from_utf8(&written)
            .expect("ASCII")
            .split("\r\n")
            .skip(1)
        {
            let (name, value) = line.split_once(": ").expect("a header");
            headers.insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                value.parse().expect("a value"),
            );
        }
        assert_eq!(Meta::from_headers(&headers), meta);
    }
}
