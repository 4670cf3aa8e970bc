//! What one wake-up of the JavaScript thread delivers: the letters of a [`Batch`] as the
//! arguments of one call, made in a handle scope (see `scope.rs`).

use std::net::IpAddr;

use bytes::Bytes;
use napi::{bindgen_prelude::JsValuesTupleIntoVec, check_status, sys, Result};
use swarm_core::messaging::{codec, Payload, Reply};

use crate::scope::Scope;

/// Numbers per letter in the delivered `Float64Array`: `[tag, id, a, b, c, d, e]`.
const STRIDE: usize = 7;

/// What one call into JavaScript delivers. Its arguments, made on the JavaScript thread:
/// first a `Float64Array` of [`STRIDE`] numbers per letter, then each letter's strings,
/// in order (a flag among its numbers says whether an optional one is there):
/// - message: `[1, id, kind, has body]`, then path, body, from;
/// - run: `[2, id, call id, has arguments]`, then name, arguments;
/// - settled: `[3, id, status, kind, has body, has code, has message]`, then body,
///   code, message.
///
/// Numbers and strings go as arguments rather than elements of an array: an element
/// costs a Node-API call and a property store each, several per letter.
pub struct Batch(pub Vec<Letter>);

impl Batch {
    /// The call's arguments, made in `scope`.
    pub fn into_args(self, scope: &Scope) -> Result<Vec<sys::napi_value>> {
        let mut numbers = Vec::with_capacity(self.0.len() * STRIDE);
        let mut args = vec![std::ptr::null_mut()];
        fn flag<T>(text: &Option<T>) -> f64 {
            f64::from(u8::from(text.is_some()))
        }
        for letter in &self.0 {
            let start = numbers.len();
            match letter {
                Letter::Message {
                    id,
                    path,
                    kind,
                    body,
                    from,
                } => {
                    numbers.extend([1.0, f64::from(*id), f64::from(*kind), flag(body)]);
                    args.push(js_string(scope, path.as_bytes())?);
                    push_some(scope, &mut args, body)?;
                    // Written on the stack: a message's sender costs no allocation.
                    let mut room = [0; IP_TEXT];
                    let from = codec::display_in(from, &mut room).expect("an address fits");
                    args.push(js_string(scope, from)?);
                }
                Letter::Run {
                    id,
                    name,
                    args: run_args,
                    call_id,
                } => {
                    numbers.extend([2.0, f64::from(*id), f64::from(*call_id), flag(run_args)]);
                    args.push(js_string(scope, name.as_bytes())?);
                    push_some(scope, &mut args, run_args)?;
                }
                Letter::Settled { id, outcome } => {
                    numbers.extend([
                        3.0,
                        f64::from(*id),
                        f64::from(outcome.status),
                        f64::from(outcome.kind),
                        flag(&outcome.body),
                        flag(&outcome.code),
                        flag(&outcome.message),
                    ]);
                    push_some(scope, &mut args, &outcome.body)?;
                    push_some(scope, &mut args, &outcome.code)?;
                    push_some(scope, &mut args, &outcome.message)?;
                }
            }
            numbers.resize(start + STRIDE, 0.0);
        }
        args[0] = float64_array(scope, &numbers)?;
        Ok(args)
    }
}

impl JsValuesTupleIntoVec for Batch {
    fn into_vec(self, env: sys::napi_env) -> Result<Vec<sys::napi_value>> {
        // SAFETY: napi-rs converts a thread-safe call's arguments on the JavaScript
        // thread, in the call's handle scope.
        self.into_args(&unsafe { Scope::entered(env) })
    }
}

/// Room for an IP address as text (an IPv6 one with an embedded IPv4 one is the longest).
const IP_TEXT: usize = 45;

/// A JavaScript string of the UTF-8 `text` (V8 replaces what is not valid UTF-8):
/// copied as Latin-1 when it is ASCII, which skips decoding it.
fn js_string(scope: &Scope, text: &[u8]) -> Result<sys::napi_value> {
    let mut value = std::ptr::null_mut();
    let (env, bytes, len) = (scope.env(), text.as_ptr().cast(), text.len() as isize);
    // SAFETY: in `scope`, with `len` bytes at `bytes`.
    check_status!(unsafe {
        if text.is_ascii() {
            sys::napi_create_string_latin1(env, bytes, len, &mut value)
        } else {
            sys::napi_create_string_utf8(env, bytes, len, &mut value)
        }
    })?;
    Ok(value)
}

fn push_some(
    scope: &Scope,
    args: &mut Vec<sys::napi_value>,
    text: &Option<impl AsRef<[u8]>>,
) -> Result<()> {
    if let Some(text) = text {
        args.push(js_string(scope, text.as_ref())?);
    }
    Ok(())
}

/// A `Float64Array` holding `numbers`.
fn float64_array(scope: &Scope, numbers: &[f64]) -> Result<sys::napi_value> {
    let env = scope.env();
    let (mut data, mut buffer, mut array) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    let bytes = std::mem::size_of_val(numbers);
    // SAFETY: in `scope`; the new buffer holds exactly `numbers`' bytes, and f64 has no
    // alignment need beyond the buffer's allocation.
    unsafe {
        check_status!(sys::napi_create_arraybuffer(
            env,
            bytes,
            &mut data,
            &mut buffer
        ))?;
        if !numbers.is_empty() {
            std::ptr::copy_nonoverlapping(numbers.as_ptr(), data.cast::<f64>(), numbers.len());
        }
        check_status!(sys::napi_create_typedarray(
            env,
            sys::TypedarrayType::float64_array,
            numbers.len(),
            buffer,
            0,
            &mut array
        ))?;
    }
    Ok(array)
}

/// One thing for JavaScript to do.
pub enum Letter {
    /// Tag 1: answer message `id` through `reply`: `(path, kind, body, from)`.
    Message {
        id: u32,
        path: String,
        kind: u32,
        body: Option<Bytes>,
        from: IpAddr,
    },
    /// Tag 2: run task `name` as run `id` and answer through `taskDone`: JSON arguments
    /// from another node, or those the facade keeps for local call `call_id` (else 0).
    Run {
        id: u32,
        name: String,
        args: Option<String>,
        call_id: u32,
    },
    /// Tag 3: call `id` (a send or a remote task call) settled.
    Settled { id: u32, outcome: Settlement },
}

/// The settled result of a send or a task execution, errors included, so the facade
/// builds the exact error objects of 0.5.1.
pub struct Settlement {
    /// The HTTP status of the reply (0 when none came back).
    pub status: u32,
    /// 0 nothing, 1 text, 2 JSON.
    pub kind: u32,
    pub body: Option<Bytes>,
    /// A stable error code when the call failed.
    pub code: Option<String>,
    /// The error message when the call failed.
    pub message: Option<String>,
}

impl Settlement {
    pub fn reply(reply: Reply) -> Settlement {
        let status = u32::from(reply.status);
        let (kind, body) = split_payload(reply.payload);
        Settlement {
            status,
            kind,
            body,
            code: None,
            message: None,
        }
    }

    pub fn error(code: &str, status: u32, message: String) -> Settlement {
        Settlement {
            status,
            kind: 0,
            body: None,
            code: Some(code.to_owned()),
            message: Some(message),
        }
    }
}

/// The kind number of a payload on the boundary (0 none, 1 text, 2 JSON) and its body,
/// as received: JavaScript strings are made from the bytes themselves (see
/// `mailbox.rs`), with no copy or check on the way.
pub fn split_payload(payload: Payload) -> (u32, Option<Bytes>) {
    match payload {
        Payload::Empty => (0, None),
        Payload::Text(b) => (1, Some(b)),
        Payload::Json(b) => (2, Some(b)),
    }
}

/// Builds a payload from its kind number and body.
pub fn join_payload(kind: u32, body: Option<String>) -> Payload {
    match (kind, body) {
        (1, Some(b)) => Payload::Text(Bytes::from(b)),
        (2, Some(b)) => Payload::Json(Bytes::from(b)),
        _ => Payload::Empty,
    }
}
