//! What one wake-up of the JavaScript thread delivers: the letters of a [`Batch`] as the
//! arguments of one call, made in a handle scope (see `scope.rs`).

use std::{cell::Cell, net::IpAddr};

use bytes::Bytes;
use napi::{bindgen_prelude::JsValuesTupleIntoVec, check_status, sys, Result};
use swarm_core::messaging::{codec, Payload, Reply};
use swarm_core::swarm::Retried;

use crate::scope::Scope;

/// Numbers per letter in the delivered `Float64Array`: `[tag, id, a, b, c, d, e, f]`.
const STRIDE: usize = 8;

/// What one call into JavaScript delivers. Its arguments, made on the JavaScript thread:
/// first a `Float64Array` of [`STRIDE`] numbers per letter, then each letter's strings,
/// in order (a flag among its numbers says whether an optional one is there):
/// - message: `[1, id, kind, has body, has trace]`, then path, body, from, trace;
/// - run: `[2, id, call id, has arguments, has trace]`, then name, arguments, trace;
/// - settled: `[3, id, status, kind, has body, has code, has message, has retried]`,
///   then body, code, message, retried.
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
                    trace,
                } => {
                    let (kind, has_body) = (f64::from(*kind), flag(body));
                    numbers.extend([1.0, f64::from(*id), kind, has_body, flag(trace)]);
                    args.push(js_string(scope, path.as_bytes())?);
                    push_some(scope, &mut args, body)?;
                    // Written on the stack: a message's sender costs no allocation.
                    let mut room = [0; IP_TEXT];
                    let from = codec::display_in(from, &mut room).expect("an address fits");
                    args.push(js_string(scope, from)?);
                    push_some(scope, &mut args, trace)?;
                }
                Letter::Run(Run {
                    id,
                    name,
                    args: run_args,
                    call_id,
                    trace,
                }) => {
                    let (call_id, has_args) = (f64::from(*call_id), flag(run_args));
                    numbers.extend([2.0, f64::from(*id), call_id, has_args, flag(trace)]);
                    args.push(js_string(scope, name.as_bytes())?);
                    push_some(scope, &mut args, run_args)?;
                    push_some(scope, &mut args, trace)?;
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
                        flag(&outcome.retried),
                    ]);
                    push_some(scope, &mut args, &outcome.body)?;
                    push_some(scope, &mut args, &outcome.code)?;
                    push_some(scope, &mut args, &outcome.message)?;
                    push_some(scope, &mut args, &outcome.retried)?;
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
pub fn js_string(scope: &Scope, text: &[u8]) -> Result<sys::napi_value> {
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

/// The `ArrayBuffer` this thread's batches' numbers are written to, kept between calls:
/// a new one for each call cost an allocation, its registration and a sweep of V8's
/// young generation, per call (a serialized task's runs are one call each). Its
/// environment is alive while it is kept: the environment's cleanup hook lets it go.
struct Numbers {
    env: sys::napi_env,
    buffer: sys::napi_ref,
    data: *mut f64,
    capacity: usize,
}

thread_local! {
    static NUMBERS: Cell<Option<Numbers>> = const { Cell::new(None) };
}

/// Numbers room for this many letters at least, when a buffer is made.
const LETTERS_AT_LEAST: usize = 64;

impl Numbers {
    /// A new buffer, with room for `len` numbers at least, kept until its environment's
    /// cleanup hook or [`Numbers::release`].
    fn new(scope: &Scope, len: usize) -> Result<Numbers> {
        let env = scope.env();
        let capacity = len.max(LETTERS_AT_LEAST * STRIDE).next_power_of_two();
        let (data, _, reference) = held_buffer(scope, capacity)?;
        // SAFETY: in `scope`; the hook's argument is the buffer's reference, unique while
        // it lives.
        unsafe {
            if let Err(e) = check_status!(sys::napi_add_env_cleanup_hook(
                env,
                Some(forget_numbers),
                reference.cast()
            )) {
                sys::napi_delete_reference(env, reference);
                return Err(e);
            }
        }
        Ok(Numbers {
            env,
            buffer: reference,
            data,
            capacity,
        })
    }

    /// Lets the buffer go before its environment ends.
    fn release(self) {
        // SAFETY: on this thread, the environment's, which is alive (its cleanup hook
        // takes the buffer it kept); the reference is not used again.
        unsafe {
            sys::napi_remove_env_cleanup_hook(self.env, Some(forget_numbers), self.buffer.cast());
            sys::napi_delete_reference(self.env, self.buffer);
        }
    }
}

/// A new `ArrayBuffer` of `len` numbers, made in `scope`: where its numbers are, the
/// buffer, and a strong reference to it, which keeps it, and so that memory, alive
/// until it is deleted. The memory is aligned for any number (V8 allocates it as malloc
/// does).
pub fn held_buffer(
    scope: &Scope,
    len: usize,
) -> Result<(*mut f64, sys::napi_value, sys::napi_ref)> {
    let env = scope.env();
    let (mut data, mut buffer, mut reference) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    // SAFETY: in `scope`.
    unsafe {
        check_status!(sys::napi_create_arraybuffer(
            env,
            len * std::mem::size_of::<f64>(),
            &mut data,
            &mut buffer
        ))?;
        check_status!(sys::napi_create_reference(env, buffer, 1, &mut reference))?;
    }
    Ok((data.cast(), buffer, reference))
}

/// An environment ends: the buffer it kept for this thread goes with it.
///
/// # Safety
/// Called by Node alone, as the cleanup hook [`Numbers::new`] added, on the thread of
/// the environment, with the buffer's reference.
unsafe extern "C" fn forget_numbers(reference: *mut std::ffi::c_void) {
    match NUMBERS.take() {
        Some(kept) if kept.buffer.cast() == reference => {
            // SAFETY: a reference of the ending environment, not used again.
            unsafe { sys::napi_delete_reference(kept.env, kept.buffer) };
        }
        other => NUMBERS.set(other),
    }
}

/// A `Float64Array` holding `numbers`: a view of this thread's buffer, valid until the
/// next call's numbers are written there. Calls into JavaScript never nest (each starts
/// in a callback of the loop, and JavaScript does not run the loop itself), and the
/// facade reads the numbers before it returns (or copies them).
fn float64_array(scope: &Scope, numbers: &[f64]) -> Result<sys::napi_value> {
    let env = scope.env();
    let kept = match NUMBERS.take() {
        Some(kept) if kept.env == env && kept.capacity >= numbers.len() => kept,
        previous => {
            if let Some(previous) = previous {
                previous.release();
            }
            Numbers::new(scope, numbers.len())?
        }
    };
    let (mut buffer, mut array) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: in `scope`, of the environment the buffer was made in; `data` holds
    // `capacity` numbers at least, and nothing else writes there (this thread's alone).
    let made = unsafe {
        std::ptr::copy_nonoverlapping(numbers.as_ptr(), kept.data, numbers.len());
        check_status!(sys::napi_get_reference_value(env, kept.buffer, &mut buffer)).and_then(|()| {
            check_status!(sys::napi_create_typedarray(
                env,
                sys::TypedarrayType::float64_array,
                numbers.len(),
                buffer,
                0,
                &mut array
            ))
        })
    };
    NUMBERS.set(Some(kept));
    made.map(|()| array)
}

/// One thing for JavaScript to do.
pub enum Letter {
    /// Tag 1: answer message `id` through `reply`: `(path, kind, body, from)`, and the
    /// trace context it came with (`Trace::text`).
    Message {
        id: u32,
        path: String,
        kind: u32,
        body: Option<Bytes>,
        from: IpAddr,
        trace: Option<String>,
    },
    /// Tag 2: a task to run.
    Run(Run),
    /// Tag 3: call `id` (a send or a remote task call) settled.
    Settled { id: u32, outcome: Settlement },
}

/// Run task `name` as run `id` and answer through `taskDone`: JSON arguments from
/// another node, or those the facade keeps for local call `call_id` (else 0).
pub struct Run {
    pub id: u32,
    pub name: String,
    pub args: Option<String>,
    pub call_id: u32,
    /// The trace context of the call that started the run, from another node.
    pub trace: Option<String>,
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
    /// For a traced task call, its attempts that did not run, as JSON.
    pub retried: Option<String>,
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
            retried: None,
        }
    }

    pub fn error(code: &str, status: u32, message: String) -> Settlement {
        Settlement {
            status,
            kind: 0,
            body: None,
            code: Some(code.to_owned()),
            message: Some(message),
            retried: None,
        }
    }

    /// The settlement, with the attempts of a traced task call that did not run.
    pub fn retried(self, retried: &[Retried]) -> Settlement {
        let retried = (!retried.is_empty())
            .then(|| serde_json::to_string(retried).expect("plain data serializes"));
        Settlement { retried, ..self }
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
