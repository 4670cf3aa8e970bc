//! How a task request between pods of 1.x was routed: its key and the checksum of the
//! caller's ring, so that the pod receiving it can check that it owns the key by its
//! own view before running it (`docs/handoff.md`). 0.5.1 pods neither send nor read it.
//!
//! On the wire it is one text, `<checksum: 16 hex digits><ring's kind><key as a path>`,
//! the kind as `init({ ring })` names it, the key percent-encoded as a topic path is
//! (`/` first): the value of the [`HEADER`] over HTTP/1.1, a field of the request
//! frame's query when multiplexed ([`super::meta`]).

use hyper::header::HeaderName;

use super::path;
use crate::ring::RingKind;

/// The name of the request header that carries it over HTTP/1.1, and of its field in
/// a multiplexed request's query.
pub const NAME: &str = "x-swarm-kb-routed";
/// The request header that carries it over HTTP/1.1.
pub const HEADER: HeaderName = HeaderName::from_static(NAME);

/// The checksum's digits.
const DIGITS: usize = 16;

/// The key a task call was routed by, and the checksum and kind of the ring that
/// placed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub key: String,
    pub ring: u64,
    /// `None` for a kind this version does not know.
    pub kind: Option<RingKind>,
}

impl Routed {
    /// Its text on the wire: visible ASCII, as a header value must be.
    pub fn encode(&self) -> String {
        let kind = self.kind.map_or("", RingKind::name);
        format!("{:016x}{kind}{}", self.ring, path::encode(&self.key))
    }

    /// Parses [`Routed::encode`]'s text; `None` for anything else.
    pub fn parse(text: &[u8]) -> Option<Routed> {
        let text = std::str::from_utf8(text).ok()?;
        let (digits, rest) = (text.get(..DIGITS)?, text.get(DIGITS..)?);
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (kind, key) = rest.split_at(rest.find('/')?);
        Some(Routed {
            ring: u64::from_str_radix(digits, 16).ok()?,
            kind: kind.parse().ok(),
            key: path::decode(&key[1..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_key_and_checksum_round_trip_as_a_header_value(
            key in ".*",
            ring in any::<u64>(),
            kind in prop::sample::select(vec![Some(RingKind::Hashring), Some(RingKind::Xxh3), None]),
        ) {
            let routed = Routed { key, ring, kind };
            let text = routed.encode();
            prop_assert!(hyper::header::HeaderValue::from_str(&text).is_ok());
            prop_assert_eq!(Routed::parse(text.as_bytes()), Some(routed));
        }
    }

    #[test]
    fn other_texts_are_refused() {
        for text in [
            &b""[..],
            b"00000000000000ff",
            b"0000000000000zff/k",
            b"00ff/k",
            b"\xff",
        ] {
            assert_eq!(Routed::parse(text), None, "{text:?}");
        }
        assert_eq!(
            Routed::parse(b"00000000000000ff/"),
            Some(Routed {
                key: String::new(),
                ring: 255,
                kind: None
            })
        );
        assert_eq!(
            Routed::parse(b"00000000000000ffxxh3/k%2F"),
            Some(Routed {
                key: "k/".into(),
                ring: 255,
                kind: Some(RingKind::Xxh3)
            })
        );
        assert_eq!(
            Routed::parse(b"00000000000000ffmaglev-2/k").map(|r| r.kind),
            Some(None),
            "a kind this version does not know"
        );
    }
}
