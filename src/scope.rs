//! Handle scopes: where this addon may make JavaScript values.
//!
//! Node-API makes every value (`napi_value`) in V8's current handle scope, and aborts
//! the whole process when there is none ("Cannot create a handle without a
//! HandleScope"). Node opens one around a call from JavaScript into the addon and
//! around a thread-safe function's call; it opens none around a callback of libuv (a
//! `uv_check_t`, `uv_poll_t` or `uv_async_t` of ours), which is where most of this
//! addon's deliveries start.
//!
//! The rule, which the types hold for us:
//! - a function that makes or reads values takes a [`Scope`], the proof that one is open;
//! - a callback of libuv or a cleanup hook that may reach such a function opens one at
//!   its entry ([`Scope::open`]); one that reaches none opens none;
//! - inside a call from JavaScript or of a thread-safe function, [`Scope::entered`]
//!   names the scope Node opened;
//! - JavaScript is only ever called through `napi_make_callback` with the thread's async
//!   context (`event_loop::async_context`), so what it schedules runs before the loop
//!   goes on.
//!
//! Node-API calls that make no value need no scope: the loop (`napi_get_uv_event_loop`),
//! cleanup hooks, references and thread-safe functions.
//!
//! What each entry of ours from outside JavaScript reaches (check it again when one
//! changes, or a new one comes). `node-loop`'s callbacks call no Node-API themselves;
//! they reach ours through the mailbox, the loop's [`node_loop::Delivery`]:
//! - the check (`uv_check_t`) polls the loop's tasks, which reach no Node-API, and
//!   delivers through `Delivery for Mailbox`, which opens a scope for the connections it
//!   starts (`event_loop::read` may make the async context, an object) and for the batch
//!   it calls JavaScript with;
//! - a reading poll callback (`uv_poll_t`) delivers in the same way;
//! - the other poll callbacks and the `uv_async_t`'s wake tasks; the idle handle's does
//!   nothing;
//! - the close callbacks, and `node_loop::detach` from the cleanup hook
//!   (`event_loop::end`), drop what the handles held: the last mailbox to go deletes a
//!   reference and releases a thread-safe function, which make no value; the hook then
//!   destroys the async context in a scope of its own;
//! - the mailbox's thread-safe function: inside Node's scope ([`Scope::entered`]),
//!   where it starts what was adopted (connections, work for the thread) and makes the
//!   batch's arguments.

use std::ptr;

use napi::sys;

/// An open handle scope on the JavaScript thread of `env`: values made with it live
/// until it ends. Neither `Send` nor `Sync` (it holds raw pointers): it stays on the
/// thread that opened it.
pub struct Scope {
    env: sys::napi_env,
    /// The scope this one opened, closed when it drops; null for one Node opened.
    opened: sys::napi_handle_scope,
}

impl Scope {
    /// Opens a scope, for a callback of libuv or a cleanup hook; `None` when Node-API
    /// refuses (the environment is gone), and then nothing may be made.
    ///
    /// # Safety
    /// On the JavaScript thread of `env`, outside JavaScript; the scope ends before the
    /// callback that opened it returns (scopes nest: the last opened closes first).
    #[cfg(unix)]
    pub unsafe fn open(env: sys::napi_env) -> Option<Scope> {
        let mut opened = ptr::null_mut();
        // SAFETY: on the JavaScript thread of `env`, outside JavaScript (the caller's
        // contract).
        (unsafe { sys::napi_open_handle_scope(env, &mut opened) } == sys::Status::napi_ok)
            .then_some(Scope { env, opened })
    }

    /// The scope Node opened around the call that runs now.
    ///
    /// # Safety
    /// Inside a call from JavaScript, or a thread-safe function's call, on the JavaScript
    /// thread of `env`; the value does not outlive that call.
    pub unsafe fn entered(env: sys::napi_env) -> Scope {
        Scope {
            env,
            opened: ptr::null_mut(),
        }
    }

    pub fn env(&self) -> sys::napi_env {
        self.env
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !self.opened.is_null() {
            // SAFETY: opened by `open` on this thread, and the innermost one still open.
            unsafe { sys::napi_close_handle_scope(self.env, self.opened) };
        }
    }
}
