//! The W3C trace context a request carries (`traceparent`, and `tracestate` when there
//! is one), so that the spans of the pod that handles it join the sender's trace. The
//! core only carries it, checked: the facade makes the spans (`docs/observability.md`).

/// The header of the trace's parent over HTTP/1.1, and its field in a multiplexed
/// request's query.
pub const PARENT: &str = "traceparent";
/// The header of the vendors' trace state, and its field.
pub const STATE: &str = "tracestate";

/// The longest `tracestate` carried: the length the recommendation asks every
/// platform to carry at least.
const MAX_STATE: usize = 512;
/// The longest `traceparent` of a later version carried.
const MAX_PARENT: usize = 256;

/// A trace context: a valid `traceparent` and the `tracestate` that came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    parent: Box<str>,
    state: Option<Box<str>>,
}

impl Trace {
    /// The trace context of these values; `None` when `parent` is not a `traceparent`.
    /// A `state` that is empty, longer than 512 bytes or not visible ASCII is left out
    /// (the recommendation lets a receiver drop what it cannot use).
    pub fn new(parent: &[u8], state: Option<&[u8]>) -> Option<Trace> {
        if !is_parent(parent) {
            return None;
        }
        let state = state.filter(|state| {
            !state.is_empty()
                && state.len() <= MAX_STATE
                && state.iter().all(|b| (b' '..=b'~').contains(b))
        });
        Some(Trace {
            parent: text(parent),
            state: state.map(text),
        })
    }

    /// The facade's form of it: the `traceparent`, then a line feed and the
    /// `tracestate` when there is one.
    pub fn from_text(text: &str) -> Option<Trace> {
        let (parent, state) = match text.split_once('\n') {
            Some((parent, state)) => (parent, Some(state.as_bytes())),
            None => (text, None),
        };
        Trace::new(parent.as_bytes(), state)
    }

    /// Its form for the facade ([`Trace::from_text`]).
    pub fn text(&self) -> String {
        match &self.state {
            Some(state) => format!("{}\n{state}", self.parent),
            None => self.parent.to_string(),
        }
    }

    /// The `traceparent`.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// The `tracestate`, when there is one.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
}

/// ASCII bytes, checked by the caller, as text.
fn text(bytes: &[u8]) -> Box<str> {
    String::from_utf8_lossy(bytes).into()
}

/// Whether `value` is a `traceparent`: `version-traceid-parentid-flags` in lowercase
/// hex, the ids not all zeros, version `ff` invalid; version `00` ends there, a later
/// version may add fields after another dash.
fn is_parent(value: &[u8]) -> bool {
    let hex = |part: &[u8]| part.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |part: &[u8]| part.iter().any(|b| *b != b'0');
    if value.len() < 55 || value.len() > MAX_PARENT {
        return false;
    }
    let (version, trace, span, flags) =
        (&value[..2], &value[3..35], &value[36..52], &value[53..55]);
    let dashes = [2, 35, 52].iter().all(|&at| value[at] == b'-');
    let rest = &value[55..];
    let rest_ok = if version == b"00" {
        rest.is_empty()
    } else {
        rest.is_empty() || (rest[0] == b'-' && rest.iter().all(|b| (b'!'..=b'~').contains(b)))
    };
    dashes
        && hex(version)
        && version != b"ff"
        && hex(trace)
        && nonzero(trace)
        && hex(span)
        && nonzero(span)
        && hex(flags)
        && rest_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_traceparent_and_its_state_round_trip_through_the_facades_form() {
        let trace = Trace::new(PARENT.as_bytes(), Some(b"rojo=00f067aa0ba902b7, congo=t61"))
            .expect("valid");
        assert_eq!(trace.parent(), PARENT);
        assert_eq!(trace.state(), Some("rojo=00f067aa0ba902b7, congo=t61"));
        assert_eq!(Trace::from_text(&trace.text()), Some(trace));
        let alone = Trace::from_text(PARENT).expect("valid");
        assert_eq!((alone.state(), alone.text()), (None, PARENT.to_owned()));
    }

    #[test]
    fn what_is_not_a_traceparent_is_refused() {
        for parent in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
        ] {
            assert_eq!(Trace::new(parent.as_bytes(), None), None, "{parent:?}");
        }
        let later = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future";
        assert!(
            Trace::new(later.as_bytes(), None).is_some(),
            "a later version's fields are kept"
        );
    }

    #[test]
    fn a_state_that_cannot_be_carried_is_left_out() {
        let long = vec![b'a'; MAX_STATE + 1];
        for state in [&b""[..], b"a=\x01", "é=1".as_bytes(), &long] {
            let trace = Trace::new(PARENT.as_bytes(), Some(state)).expect("the parent is valid");
            assert_eq!(trace.state(), None, "{state:?}");
        }
    }
}
