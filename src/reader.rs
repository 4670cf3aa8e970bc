//! Multiplexed connections, read on the JavaScript thread: libuv's loop watches each
//! connection's socket (a `uv_poll_t`), so a request or a reply wakes that thread alone,
//! where a thread of the runtime would read it and then wake the JavaScript thread. The
//! messages and settled calls it posts are delivered in the same callback, and the
//! answers JavaScript gave meanwhile are written before the callback returns.
//!
//! The handles are unreferenced (they never keep the process alive) and closed when
//! their reading ends, or when the environment does. Their callbacks run with no handle
//! scope open: see `scope.rs` for where values may be made.

use std::{
    cell::{Cell, RefCell},
    collections::HashSet,
    ffi::{c_int, c_void},
    ptr,
    sync::Arc,
};

use napi::sys;
use swarm_core::messaging::mux::{self, Inflow};

use crate::{
    mailbox::Mailbox,
    scope::Scope,
    uv::{self, uv_close, uv_poll_start, uv_poll_stop, uv_unref},
};

/// What a handle reads for, in its `data` field (a handle's first).
struct Polled {
    inflow: Box<dyn Inflow>,
    mailbox: Arc<Mailbox>,
}

thread_local! {
    /// This thread's open handles, closed when its environment ends.
    static HANDLES: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    /// The async context of this thread's deliveries, once made; with the hook that
    /// closes the handles, registered with it.
    static CONTEXT: Cell<sys::napi_async_context> = const { Cell::new(ptr::null_mut()) };
    /// True while a reading callback runs on this thread.
    static READING: Cell<bool> = const { Cell::new(false) };
}

/// True inside a reading callback of this thread: what is queued for writing now goes
/// out before it returns, with no `flushWrites()` needed.
pub fn writes_at_end_of_callback() -> bool {
    READING.get()
}

/// Runs `deliver`, which delivers in a callback of this thread's loop and then writes
/// what was queued: answers given meanwhile need no `flushWrites()`.
pub fn delivering(deliver: impl FnOnce()) {
    let outer = READING.replace(true);
    deliver();
    READING.set(outer);
}

/// Reads `inflow` on the loop of `scope`'s thread; when that cannot be, dropping it ends
/// the reading (the connection fails).
pub fn start(scope: &Scope, inflow: Box<dyn Inflow>, mailbox: Arc<Mailbox>) {
    async_context(scope);
    // SAFETY: on the JavaScript thread (a scope is open there); the inflow's socket lives
    // as long as the handle's data does.
    unsafe {
        let fd = inflow.fd();
        let polled = Box::into_raw(Box::new(Polled { inflow, mailbox }));
        let Some(handle) = uv::init_poll(scope.env(), fd, polled.cast()) else {
            drop(Box::from_raw(polled));
            return;
        };
        HANDLES.with(|handles| handles.borrow_mut().insert(handle as usize));
        if uv_poll_start(handle, uv::READABLE | uv::DISCONNECT, on_readable) != 0 {
            return close(handle);
        }
        uv_unref(handle);
    }
}

/// The async context deliveries on this thread run in, made on first use (its resource
/// is an object: hence the scope); the hook that closes this thread's handles when its
/// environment ends is registered with it.
pub fn async_context(scope: &Scope) -> sys::napi_async_context {
    let made = CONTEXT.get();
    if !made.is_null() {
        return made;
    }
    let env = scope.env();
    let (mut resource, mut name, mut context) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    let label = "node-swarm-kb:multiplexed";
    // SAFETY: in `scope`, on its thread.
    unsafe {
        sys::napi_create_object(env, &mut resource);
        sys::napi_create_string_utf8(env, label.as_ptr().cast(), label.len() as isize, &mut name);
        if sys::napi_async_init(env, resource, name, &mut context) != sys::Status::napi_ok {
            return ptr::null_mut();
        }
        sys::napi_add_env_cleanup_hook(env, Some(end), env.cast());
    }
    CONTEXT.set(context);
    context
}

/// Reads what came in, delivers what it posted and writes the answers given; ends the
/// reading when it is over.
///
/// # Safety
/// Called by libuv alone, for a handle that `start` made.
unsafe extern "C" fn on_readable(handle: *mut c_void, status: c_int, _events: c_int) {
    // SAFETY: libuv calls no callback of a closed handle, so its `Polled` lives (until
    // `on_closed`).
    let polled = unsafe { &mut *uv::data::<Polled>(handle) };
    let held = polled.mailbox.hold();
    // A failed poll is over too: dropping the inflow fails the connection.
    let over = polled.inflow.read() || status < 0;
    delivering(|| {
        // SAFETY: in a callback of this thread's loop, outside JavaScript; the mailbox is
        // a node's of this thread (`start`'s one caller, `Mailbox::start`, passes itself,
        // with a scope of its environment).
        unsafe { polled.mailbox.deliver_held(held) };
        mux::flush();
    });
    if over {
        // SAFETY: open, on this thread, and not used after.
        unsafe { close(handle) };
    }
}

/// Closes `handle`, and forgets it.
///
/// # Safety
/// `handle` is an open handle that `start` made on this thread; it is not used after.
unsafe fn close(handle: *mut c_void) {
    HANDLES.with(|handles| handles.borrow_mut().remove(&(handle as usize)));
    // SAFETY: the caller's contract, and no longer in `HANDLES`: `end` will not shut it.
    unsafe { shut(handle) };
}

/// Stops and closes `handle`; `on_closed` frees it.
///
/// # Safety
/// `handle` is an open handle that `start` made on this thread, not in `HANDLES`; it is
/// not used after.
unsafe fn shut(handle: *mut c_void) {
    // SAFETY: an open poll handle of this thread's loop, closed once (the caller's
    // contract).
    unsafe {
        uv_poll_stop(handle);
        uv_close(handle, on_closed);
    }
}

/// # Safety
/// Called by libuv alone, as the close callback of a handle that `start` made.
unsafe extern "C" fn on_closed(handle: *mut c_void) {
    // SAFETY: closed, so libuv is done with the handle: its `Polled` (boxed by `start`)
    // and its memory (made for `POLL` by `init_poll`) go once, here.
    unsafe {
        drop(Box::from_raw(uv::data::<Polled>(handle)));
        uv::free_handle(uv::POLL, handle);
    }
}

/// The environment ends: what its thread queued is written (a worker that ends right
/// after a send still sends it), its handles close, and its async context goes.
///
/// # Safety
/// Called by Node alone, once, as the cleanup hook that `async_context` added, with its
/// `env`, on the JavaScript thread.
unsafe extern "C" fn end(env: *mut c_void) {
    mux::flush();
    for handle in HANDLES.with(|handles| std::mem::take(&mut *handles.borrow_mut())) {
        // SAFETY: an open handle of this thread's, taken out of `HANDLES`: shut once.
        unsafe { shut(handle as *mut c_void) };
    }
    // Destroying the context emits its async hook: in a scope of its own, as every
    // Node-API call of ours outside a call from JavaScript.
    // SAFETY: on the JavaScript thread of `env`, outside JavaScript (the contract); the
    // scope closes when this returns.
    let _scope = unsafe { Scope::open(env.cast()) };
    // SAFETY: the context that `async_context` made in `env` before it added this hook;
    // destroyed once, as the hook runs once.
    unsafe { sys::napi_async_destroy(env.cast(), CONTEXT.replace(ptr::null_mut())) };
}
