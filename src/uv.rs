//! libuv, as the Node.js binary exports it (uv.h): the handles the addon puts on the
//! JavaScript thread's loop, allocated with the size libuv gives for their kind.

use std::{
    alloc::{alloc, dealloc, Layout},
    ffi::{c_int, c_void},
};

pub const ASYNC: c_int = 1;
pub const CHECK: c_int = 2;
pub const POLL: c_int = 8;
pub const READABLE: c_int = 1;
pub const WRITABLE: c_int = 2;
pub const DISCONNECT: c_int = 4;

pub type AsyncCallback = unsafe extern "C" fn(handle: *mut c_void);
pub type PollCallback = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
pub type CloseCallback = unsafe extern "C" fn(handle: *mut c_void);

extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    pub fn uv_async_init(
        event_loop: *mut napi::sys::uv_loop_s,
        handle: *mut c_void,
        cb: AsyncCallback,
    ) -> c_int;
    pub fn uv_async_send(handle: *mut c_void) -> c_int;
    pub fn uv_check_init(event_loop: *mut napi::sys::uv_loop_s, handle: *mut c_void) -> c_int;
    pub fn uv_check_start(handle: *mut c_void, cb: AsyncCallback) -> c_int;
    fn uv_poll_init(event_loop: *mut napi::sys::uv_loop_s, handle: *mut c_void, fd: c_int)
        -> c_int;
    pub fn uv_poll_start(handle: *mut c_void, events: c_int, cb: PollCallback) -> c_int;
    pub fn uv_poll_stop(handle: *mut c_void) -> c_int;
    pub fn uv_close(handle: *mut c_void, cb: CloseCallback);
    pub fn uv_unref(handle: *mut c_void);
}

fn layout(kind: c_int) -> Layout {
    // SAFETY: a pure function of libuv.
    let size = unsafe { uv_handle_size(kind) };
    Layout::from_size_align(size, 16).expect("a handle's size")
}

/// Memory for a handle of `kind`, its first field (`data`) set to `data`; null when
/// there is none.
pub fn alloc_handle(kind: c_int, data: *mut c_void) -> *mut c_void {
    // SAFETY: a layout of non-zero size; the first field of every handle is `data`.
    unsafe {
        let handle = alloc(layout(kind)).cast::<c_void>();
        if !handle.is_null() {
            handle.cast::<*mut c_void>().write(data);
        }
        handle
    }
}

/// The `data` field of a handle.
///
/// # Safety
/// `handle` is a handle made by [`alloc_handle`] and not yet freed.
pub unsafe fn data<T>(handle: *mut c_void) -> *mut T {
    // SAFETY: live memory of a handle (the caller's contract), whose first field
    // `alloc_handle` wrote and libuv never touches.
    unsafe { handle.cast::<*mut T>().read() }
}

/// The loop of `env`'s thread.
///
/// # Safety
/// On the JavaScript thread of `env`.
pub unsafe fn event_loop(env: napi::sys::napi_env) -> Option<*mut napi::sys::uv_loop_s> {
    let mut event_loop = std::ptr::null_mut();
    // SAFETY: on the JavaScript thread of `env` (the caller's contract); makes no value.
    (unsafe { napi::sys::napi_get_uv_event_loop(env, &mut event_loop) }
        == napi::sys::Status::napi_ok)
        .then_some(event_loop)
}

/// A `uv_poll_t` on `fd` in the loop of `env`'s thread, its `data` set to `data`, not
/// started yet; `None` when it cannot be made (`data` is then the caller's still).
///
/// # Safety
/// On the JavaScript thread of `env`; `fd` stays open while the handle lives.
pub unsafe fn init_poll(
    env: napi::sys::napi_env,
    fd: c_int,
    data: *mut c_void,
) -> Option<*mut c_void> {
    // SAFETY: on the JavaScript thread of `env` (the caller's contract).
    let event_loop = unsafe { event_loop(env) }?;
    let handle = alloc_handle(POLL, data);
    if handle.is_null() {
        return None;
    }
    // SAFETY: memory for a `uv_poll_t`, initialized on its loop's thread; `fd` stays open
    // while the handle lives (the caller's contract).
    if unsafe { uv_poll_init(event_loop, handle, fd) } != 0 {
        // SAFETY: made above for `POLL`; a failed init left it unknown to libuv.
        unsafe { free_handle(POLL, handle) };
        return None;
    }
    Some(handle)
}

/// Frees a handle of `kind` made by [`alloc_handle`]: unused, or closed.
///
/// # Safety
/// `handle` was made by [`alloc_handle`] for `kind`; libuv no longer knows it, and it is
/// not used again.
pub unsafe fn free_handle(kind: c_int, handle: *mut c_void) {
    // SAFETY: allocated by `alloc_handle` with this layout, and freed once (the caller's
    // contract).
    unsafe { dealloc(handle.cast(), layout(kind)) };
}
