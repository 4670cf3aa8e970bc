//! The body codec of the 0.5.1 wire protocol.
//!
//! A request body is JSON when its `Content-Type` is `application/json`, and raw text
//! otherwise; a reply is `204` for "nothing", raw text for a string, JSON for anything
//! else. Bodies stay bytes here: a request's JSON is validated once on the way in, and
//! decoded by whoever consumes it (JavaScript, or the `_task` router).

use std::io::Write as _;

use bytes::Bytes;
use hyper::header::HeaderValue;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The topic under which tasks travel between nodes.
pub const TASK_TOPIC: &str = "_task";

/// A message body or a reply body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// No body (`undefined` in JavaScript; `204` as a reply).
    Empty,
    /// A raw string, sent without `Content-Type: application/json`.
    Text(Bytes),
    /// A JSON document, already serialized (a reply's as its sender labelled it, see
    /// [`Payload::decode_reply`]).
    Json(Bytes),
}

impl Payload {
    /// The `Content-Type` this payload is sent with, if any.
    pub fn content_type(&self) -> Option<&'static str> {
        match self {
            Payload::Json(_) => Some("application/json"),
            Payload::Text(_) => Some("text/plain; charset=utf-8"),
            Payload::Empty => None,
        }
    }

    /// The body bytes (empty for [`Payload::Empty`]).
    pub fn body(&self) -> &[u8] {
        match self {
            Payload::Empty => &[],
            Payload::Text(b) | Payload::Json(b) => b,
        }
    }

    /// The body, taken: no copy (a clone of a body made from a string would allocate).
    pub fn into_body(self) -> Bytes {
        match self {
            Payload::Empty => Bytes::new(),
            Payload::Text(b) | Payload::Json(b) => b,
        }
    }

    /// Decodes a received body: JSON when the content type says so (validated here, so a
    /// malformed document is refused before any handler runs), raw text otherwise.
    pub fn decode(content_type: Option<&HeaderValue>, body: Bytes) -> Result<Payload, CodecError> {
        if is_json(content_type) {
            validate_json(&body)?;
            return Ok(Payload::Json(body));
        }
        std::str::from_utf8(&body).map_err(|_| CodecError::NotUtf8)?;
        Ok(Payload::Text(body))
    }

    /// Decodes a reply: `204` or an empty body without a JSON type is [`Payload::Empty`].
    /// A body labelled JSON is not validated here: its only reader, JavaScript, parses
    /// it anyway and takes one that does not parse as its text (as 0.5.1 did), so
    /// checking it first would parse every reply twice.
    pub fn decode_reply(status: u16, content_type: Option<&HeaderValue>, body: Bytes) -> Payload {
        if status == 204 {
            return Payload::Empty;
        }
        if is_json(content_type) {
            return Payload::Json(body);
        }
        Payload::Text(body)
    }
}

/// `value` as text, written in `room` without allocating; `None` when it does not fit.
pub fn display_in(value: impl std::fmt::Display, room: &mut [u8]) -> Option<&[u8]> {
    let len = {
        let mut cursor = std::io::Cursor::new(&mut *room);
        write!(cursor, "{value}").ok()?;
        usize::try_from(cursor.position()).ok()?
    };
    Some(&room[..len])
}

/// A number or an address as a header value, copied once from the stack: one made by
/// `HeaderValue::from(u64)` (hyper's `Content-Length`) or from a `String` takes two
/// allocations (a buffer, then the shared `Bytes` made of it), on every message.
pub fn header_value(value: impl std::fmt::Display) -> HeaderValue {
    display_in(value, &mut [0; 64])
        .and_then(|text| HeaderValue::from_bytes(text).ok())
        .expect("a number or an address is a short, valid header value")
}

/// True when a `Content-Type` header names JSON (parameters such as `charset` allowed).
pub fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn validate_json(body: &[u8]) -> Result<(), CodecError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| CodecError::BadJson(e.to_string()))
}

/// The topics of a request path, as 0.5.1 splits them: leading and trailing slashes
/// dropped, the rest split on `/`; a query string is not part of the topics.
pub fn topics(path: &str) -> Vec<String> {
    let path = path.split('?').next().unwrap_or_default();
    path.trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// A `_task` request body: `{ "task": name, "args": [...] }`.
#[derive(Debug)]
pub struct TaskRequest {
    /// The task name.
    pub task: String,
    /// The arguments, as a JSON array (`[]` when absent).
    pub args: Bytes,
}

#[derive(Deserialize)]
struct TaskBody<'a> {
    task: Option<String>,
    #[serde(borrow)]
    args: Option<&'a RawValue>,
}

impl TaskRequest {
    /// Parses a `_task` body; a missing or non-string `task` is refused with 0.5.1's
    /// message, and `args` must be an array when present.
    pub fn parse(payload: &Payload) -> Result<TaskRequest, CodecError> {
        let Payload::Json(body) = payload else {
            return Err(CodecError::MissingTask);
        };
        let parsed: TaskBody<'_> =
            serde_json::from_slice(body).map_err(|_| CodecError::MissingTask)?;
        let task = parsed
            .task
            .filter(|t| !t.is_empty())
            .ok_or(CodecError::MissingTask)?;
        let args = match parsed.args.map(RawValue::get) {
            None | Some("null") => Bytes::from_static(b"[]"),
            Some(raw) if raw.trim_start().starts_with('[') => {
                Bytes::copy_from_slice(raw.as_bytes())
            }
            Some(_) => return Err(CodecError::ArgsNotArray),
        };
        Ok(TaskRequest { task, args })
    }

    /// The key 0.5.1 routes the call by: `String(args[0])` when `args[0]` is truthy, the
    /// task name otherwise, with JavaScript's `String` of the decoded value (a string
    /// as it is, a number as JSON writes it, an array's elements joined by commas, an
    /// object `[object Object]`).
    pub fn routing_key(&self) -> String {
        let first = serde_json::from_slice::<Vec<serde_json::Value>>(&self.args)
            .ok()
            .and_then(|args| args.into_iter().next());
        match first {
            Some(first) if truthy(&first) => js_string(&first),
            _ => self.task.clone(),
        }
    }

    /// Encodes a `_task` body from a name and a JSON array of arguments.
    pub fn encode(task: &str, args: &[u8]) -> Bytes {
        let name = serde_json::to_string(task).expect("a string always serializes");
        let mut out = Vec::with_capacity(name.len() + args.len() + 20);
        out.extend_from_slice(b"{\"task\":");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b",\"args\":");
        out.extend_from_slice(args);
        out.push(b'}');
        Bytes::from(out)
    }
}

/// Whether JavaScript takes a decoded JSON value as true.
fn truthy(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// JavaScript's `String` of a decoded JSON value.
fn js_string(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Null => String::new(),
                item => js_string(item),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

/// Why a body could not be decoded; each is answered with `400`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("Unable to decode request body: {0}")]
    BadJson(String),
    #[error("Unable to decode request body: not UTF-8")]
    NotUtf8,
    #[error("Missing task property")]
    MissingTask,
    #[error("Task args must be an array")]
    ArgsNotArray,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_routing_key_is_the_one_0_5_1_computes() {
        let key = |args: &str| {
            let request = super::TaskRequest {
                task: "t".into(),
                args: bytes::Bytes::copy_from_slice(args.as_bytes()),
            };
            request.routing_key()
        };
        for (args, expected) in [
            (r#"["customer-1", 2]"#, "customer-1"),
            ("[42]", "42"),
            ("[1.5]", "1.5"),
            ("[true]", "true"),
            (r#"[[1, null, "a"]]"#, "1,,a"),
            (r#"[{"id": 1}]"#, "[object Object]"),
            ("[]", "t"),
            ("[null]", "t"),
            ("[false]", "t"),
            ("[0]", "t"),
            (r#"[""]"#, "t"),
        ] {
            assert_eq!(key(args), expected, "{args}");
        }
    }

    use super::*;

    fn json() -> HeaderValue {
        HeaderValue::from_static("application/json")
    }

    #[test]
    fn values_are_written_on_the_stack_as_display_writes_them_or_not_at_all() {
        let peer: std::net::SocketAddr = "[2001:db8::1]:45892".parse().expect("an address");
        assert_eq!(
            display_in(peer, &mut [0; 64]),
            Some(&b"[2001:db8::1]:45892"[..])
        );
        assert_eq!(
            display_in(123_456, &mut [0; 3]),
            None,
            "too long for the room"
        );
        assert_eq!(header_value(u64::MAX), u64::MAX.to_string().as_str());
    }

    #[test]
    fn json_content_type_with_parameters_is_json() {
        assert!(is_json(Some(&HeaderValue::from_static(
            "application/json; charset=utf-8"
        ))));
        assert!(!is_json(Some(&HeaderValue::from_static("text/plain"))));
        assert!(!is_json(None));
    }

    #[test]
    fn malformed_json_is_refused_and_text_is_kept_raw() {
        let bad = Payload::decode(Some(&json()), Bytes::from_static(b"{nope"));
        assert!(matches!(bad, Err(CodecError::BadJson(_))));
        let text = Payload::decode(None, Bytes::from_static(b"{nope")).unwrap();
        assert_eq!(text, Payload::Text(Bytes::from_static(b"{nope")));
    }

    #[test]
    fn scalar_json_bodies_arrive_intact() {
        for body in ["0", "false", "null", "true", "\"s\""] {
            let p = Payload::decode(Some(&json()), Bytes::from(body)).unwrap();
            assert_eq!(p, Payload::Json(Bytes::from(body)));
        }
    }

    #[test]
    fn topics_split_like_0_5_1() {
        assert_eq!(topics("/a/b/c/"), ["a", "b", "c"]);
        assert_eq!(topics("/_task"), ["_task"]);
        assert_eq!(topics("/a?x=1"), ["a"]);
        assert_eq!(topics("/"), [""]);
    }

    #[test]
    fn task_bodies_round_trip_and_refuse_garbage() {
        let body = TaskRequest::encode("sync \"x\"", b"[1,{\"a\":2}]");
        let parsed = TaskRequest::parse(&Payload::Json(body)).unwrap();
        assert_eq!(parsed.task, "sync \"x\"");
        assert_eq!(&parsed.args[..], b"[1,{\"a\":2}]");
        let no_args = TaskRequest::parse(&Payload::Json(Bytes::from(r#"{"task":"t"}"#))).unwrap();
        assert_eq!(&no_args.args[..], b"[]");
        for bad in [r#"{}"#, r#"{"task":3}"#, r#"[1]"#, r#"{"task":""}"#] {
            let err = TaskRequest::parse(&Payload::Json(Bytes::from(bad))).unwrap_err();
            assert_eq!(err, CodecError::MissingTask, "{bad}");
        }
        let err = TaskRequest::parse(&Payload::Json(Bytes::from(r#"{"task":"t","args":5}"#)))
            .unwrap_err();
        assert_eq!(err, CodecError::ArgsNotArray);
        assert_eq!(
            TaskRequest::parse(&Payload::Text(Bytes::from("x"))).unwrap_err(),
            CodecError::MissingTask
        );
    }

    #[test]
    fn replies_decode_by_status_and_type() {
        assert_eq!(
            Payload::decode_reply(204, None, Bytes::new()),
            Payload::Empty
        );
        assert_eq!(
            Payload::decode_reply(200, Some(&json()), Bytes::from("[1]")),
            Payload::Json(Bytes::from("[1]"))
        );
        assert_eq!(
            Payload::decode_reply(200, None, Bytes::from("[1]")),
            Payload::Text(Bytes::from("[1]"))
        );
    }
}
