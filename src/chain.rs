//! A serialized task's queue run back to back, in one call into JavaScript.
//!
//! A handler that returns a plain value answers through `taskDone` while its run's
//! delivery is still going on. Settling that run polls the task's execution at once, on
//! this thread (`swarm_core::local`), and when the key's queue holds a next call the
//! execution starts its run there and then. That run's letter would go through the
//! mailbox and come in the next round of the delivery: a call into JavaScript of its
//! own, with its scopes and its microtask checkpoint, for every run of the queue. When
//! JavaScript asks for it, `taskDone` catches the run instead and hands it back as its
//! result, and JavaScript runs it as soon as the run before has returned.
//!
//! What is handed back is made with as few Node-API calls as can be, since each run
//! pays for it: one string, and numbers written to a `Float64Array` that JavaScript
//! holds ([`HandBack`]). An array of the run's fields cost more than the round it saves.

use std::cell::RefCell;

use napi::{check_status, sys, Result};

use crate::{
    batch::{held_buffer, js_string, Run},
    mailbox,
    scope::Scope,
};

/// The chain open on this thread: the host it catches runs for (an address, only ever
/// compared), and the run caught.
type Open = Option<(usize, Option<Run>)>;

thread_local! {
    static OPEN: RefCell<Open> = const { RefCell::new(None) };
}

/// Calls `settle` with a chain open for `host`, and returns the first run it started for
/// `host` on this thread, if any: JavaScript must run it.
pub fn catching(host: usize, settle: impl FnOnce()) -> Option<Run> {
    /// Puts back the chain open before, even if `settle` unwinds.
    struct Restore(Open);
    impl Drop for Restore {
        fn drop(&mut self) {
            OPEN.set(self.0.take());
        }
    }
    let outer = Restore(OPEN.replace(Some((host, None))));
    settle();
    let caught = OPEN.take();
    drop(outer);
    caught.and_then(|(_, run)| run)
}

/// Hands `run` to the chain open for `host` on this thread, when there is one, it has
/// caught nothing yet and this callback of the loop has a round left; else gives it
/// back, to be posted.
pub fn offer(host: usize, run: Run) -> std::result::Result<(), Run> {
    OPEN.with_borrow_mut(|open| match open {
        Some((open_for, caught @ None)) if *open_for == host && mailbox::spend_round() => {
            *caught = Some(run);
            Ok(())
        }
        _ => Err(run),
    })
}

/// The numbers of the run that `taskDone` hands back, where JavaScript reads them (the
/// facade's `calls.chained`): `[run id, call id, length of the trace context]`. A
/// strong reference keeps the buffer, and so its memory, alive while this lives.
pub struct HandBack {
    env: sys::napi_env,
    buffer: sys::napi_ref,
    numbers: *mut f64,
}

/// Numbers in [`HandBack`]'s array.
const NUMBERS: usize = 3;

impl HandBack {
    /// A new one, and its `Float64Array`, made in `scope`.
    pub fn new(scope: &Scope) -> Result<(HandBack, sys::napi_value)> {
        let env = scope.env();
        let (numbers, buffer, reference) = held_buffer(scope, NUMBERS)?;
        let hand_back = HandBack {
            env,
            buffer: reference,
            numbers,
        };
        let mut array = std::ptr::null_mut();
        // SAFETY: in `scope`, with the buffer just made there.
        check_status!(unsafe {
            sys::napi_create_typedarray(
                env,
                sys::TypedarrayType::float64_array,
                NUMBERS,
                buffer,
                0,
                &mut array,
            )
        })?;
        Ok((hand_back, array))
    }

    /// Writes `run`'s numbers and makes its text: its trace context, as long as the
    /// numbers say, then its JSON arguments (none for a local call's run).
    pub fn give(&self, scope: &Scope, run: &Run) -> Result<sys::napi_value> {
        let args = run.args.as_deref().unwrap_or_default();
        let joined;
        let (text, traced) = match &run.trace {
            Some(trace) => {
                joined = format!("{trace}{args}");
                (joined.as_str(), trace.encode_utf16().count())
            }
            None => (args, 0),
        };
        let numbers = [f64::from(run.id), f64::from(run.call_id), traced as f64];
        // SAFETY: the buffer holds `NUMBERS` numbers and lives as long as `self`; only
        // this thread, the JavaScript one, touches it, and not while JavaScript reads it.
        unsafe { std::ptr::copy_nonoverlapping(numbers.as_ptr(), self.numbers, NUMBERS) };
        js_string(scope, text.as_bytes())
    }
}

impl Drop for HandBack {
    fn drop(&mut self) {
        // SAFETY: dropped with the `taskDone` function (by its finalizer, or where it
        // could not be made), on the environment's thread; the reference is not used
        // again.
        unsafe { sys::napi_delete_reference(self.env, self.buffer) };
    }
}
