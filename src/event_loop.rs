//! The JavaScript thread's loop as the engine's event loop (Unix): the thread is
//! attached to it (`node-loop`) when its first node starts, each turn ends with the
//! engine's writes (`mux::flush`), and the environment's cleanup hook detaches it.
//!
//! Deliveries that start in a callback of the loop call JavaScript through
//! `napi_make_callback` with this thread's async context, so what JavaScript schedules
//! runs before the loop goes on. libuv's callbacks run with no handle scope open: see
//! `scope.rs` for where values may be made.

use std::{cell::Cell, ptr, sync::Arc, task::Context};

use napi::{sys, Env};
use node_loop::{Delivery, Interest as LoopInterest, SocketReadiness};
use swarm_core::messaging::{
    loop_io::{Interest, LoopIo, Readiness},
    mux::{self, Inflow},
};

use crate::scope::Scope;

thread_local! {
    /// The async context of this thread's deliveries, once made.
    static CONTEXT: Cell<sys::napi_async_context> = const { Cell::new(ptr::null_mut()) };
}

/// Attaches this thread to the loop of `env`, once: true when it is. The environment's
/// cleanup hook detaches it.
pub fn attach(env: &Env) -> bool {
    if node_loop::attached() {
        return true;
    }
    let mut event_loop = ptr::null_mut();
    // SAFETY: on the JavaScript thread of `env` (a call from it made `env`); no value is
    // made. The loop runs this thread's callbacks until the environment ends, and its
    // cleanup hook detaches the thread before the loop ends.
    unsafe {
        if sys::napi_get_uv_event_loop(env.raw(), &mut event_loop) != sys::Status::napi_ok
            || !node_loop::attach(event_loop.cast(), mux::flush)
        {
            return false;
        }
        sys::napi_add_env_cleanup_hook(env.raw(), Some(end), env.raw().cast());
    }
    true
}

/// `socket`, read and written on this thread, with readiness from its loop.
pub fn io(socket: Arc<std::net::TcpStream>) -> std::io::Result<LoopIo> {
    use std::os::fd::AsRawFd;
    // SAFETY: called on the node's thread (`Mailbox::io_here` checks it); the socket
    // outlives the readiness, which the `LoopIo` drops first.
    let readiness = unsafe { SocketReadiness::new(socket.as_raw_fd()) }
        .ok_or_else(|| std::io::Error::other("the loop cannot watch the socket"))?;
    Ok(LoopIo::new(socket, Box::new(LoopReadiness(readiness))))
}

/// A socket's readiness from this thread's loop, as the engine asks for it.
struct LoopReadiness(SocketReadiness);

fn interest(interest: Interest) -> LoopInterest {
    match interest {
        Interest::Readable => LoopInterest::Readable,
        Interest::Writable => LoopInterest::Writable,
    }
}

impl Readiness for LoopReadiness {
    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        wanted: Interest,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.0.poll_ready(cx, interest(wanted))
    }

    fn clear(&mut self, found_busy: Interest) {
        self.0.clear(interest(found_busy));
    }
}

/// Reads `inflow` on the loop of `scope`'s thread, delivering through `mailbox`; when
/// that cannot be, dropping it ends the reading (the connection fails).
pub fn read(scope: &Scope, mut inflow: Box<dyn Inflow>, mailbox: Arc<dyn Delivery>) {
    async_context(scope);
    let fd = inflow.fd();
    // SAFETY: on the JavaScript thread (a scope is open there), attached when its node
    // started; the inflow owns the socket, and the reader owns the inflow.
    unsafe { node_loop::read(fd, Box::new(move || inflow.read()), mailbox) };
}

/// The async context deliveries on this thread run in, made on first use (its resource
/// is an object: hence the scope).
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
    }
    CONTEXT.set(context);
    context
}

/// The environment ends: what its thread queued is written (a worker that ends right
/// after a send still sends it), its tasks and handles go, and its async context.
///
/// # Safety
/// Called by Node alone, once, as the cleanup hook that `attach` added, with its `env`,
/// on the JavaScript thread.
unsafe extern "C" fn end(env: *mut std::ffi::c_void) {
    // SAFETY: on the attached thread, outside the loop's callbacks (a cleanup hook).
    unsafe { node_loop::detach() };
    let context = CONTEXT.replace(ptr::null_mut());
    if context.is_null() {
        return;
    }
    // Destroying the context emits its async hook: in a scope of its own, as every
    // Node-API call of ours outside a call from JavaScript.
    // SAFETY: on the JavaScript thread of `env`, outside JavaScript (the contract); the
    // scope closes when this returns.
    let _scope = unsafe { Scope::open(env.cast()) };
    // SAFETY: the context `async_context` made in `env`; destroyed once, as the hook
    // runs once.
    unsafe { sys::napi_async_destroy(env.cast(), context) };
}
