//! libuv, as the Node.js binary exports it (uv.h): the handles this crate puts on a
//! loop, typed by kind, in memory of the size libuv gives for their kind.
//!
//! The symbols are not linked here: a Node.js addon finds them in the process that loads
//! it (the `node` binary exports libuv), and this crate's tests define them (a stand-in).

use std::{
    alloc::{alloc, dealloc, Layout},
    ffi::{c_int, c_void},
    marker::PhantomData,
    ptr::NonNull,
};

/// libuv's `uv_loop_t`, only ever behind a pointer.
#[repr(C)]
pub struct RawLoop {
    _opaque: [u8; 0],
}

/// Any libuv handle (`uv_handle_t` and the kinds that begin with it), behind a pointer.
#[repr(C)]
pub struct RawHandle {
    _opaque: [u8; 0],
}

/// A poll handle's events: readable, writable, and the peer's end of the connection.
pub const READABLE: c_int = 1;
pub const WRITABLE: c_int = 2;
pub const DISCONNECT: c_int = 4;

/// The callback of an async, check or idle handle, and a close callback.
pub type Callback = unsafe extern "C" fn(handle: *mut RawHandle);
/// The callback of a poll handle: a status (negative: an error) and the events.
pub type PollCallback = unsafe extern "C" fn(handle: *mut RawHandle, status: c_int, events: c_int);

extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_async_init(event_loop: *mut RawLoop, handle: *mut RawHandle, cb: Callback) -> c_int;
    fn uv_async_send(handle: *mut RawHandle) -> c_int;
    fn uv_check_init(event_loop: *mut RawLoop, handle: *mut RawHandle) -> c_int;
    fn uv_check_start(handle: *mut RawHandle, cb: Callback) -> c_int;
    fn uv_idle_init(event_loop: *mut RawLoop, handle: *mut RawHandle) -> c_int;
    fn uv_idle_start(handle: *mut RawHandle, cb: Callback) -> c_int;
    fn uv_idle_stop(handle: *mut RawHandle) -> c_int;
    fn uv_poll_init(event_loop: *mut RawLoop, handle: *mut RawHandle, fd: c_int) -> c_int;
    fn uv_poll_start(handle: *mut RawHandle, events: c_int, cb: PollCallback) -> c_int;
    fn uv_poll_stop(handle: *mut RawHandle) -> c_int;
    fn uv_close(handle: *mut RawHandle, cb: Callback);
    fn uv_unref(handle: *mut RawHandle);
}

/// A kind of handle: its `uv_handle_type`.
pub trait Kind {
    const TYPE: c_int;
}

/// `uv_async_t`: wakes its loop from any thread.
pub enum Async {}
/// `uv_check_t`: runs once a turn, after the loop's wait for I/O.
pub enum Check {}
/// `uv_idle_t`: while started, the loop does not wait for I/O.
pub enum Idle {}
/// `uv_poll_t`: watches a socket.
pub enum Poll {}

impl Kind for Async {
    const TYPE: c_int = 1;
}
impl Kind for Check {
    const TYPE: c_int = 2;
}
impl Kind for Idle {
    const TYPE: c_int = 6;
}
impl Kind for Poll {
    const TYPE: c_int = 8;
}

/// A handle of kind `K`, made here: a pointer, copied freely; what may be done with it
/// depends on where it is in its life (made, initialized, closed), which the unsafe
/// methods' contracts name.
pub struct Handle<K: Kind> {
    raw: NonNull<RawHandle>,
    kind: PhantomData<K>,
}

impl<K: Kind> Clone for Handle<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Kind> Copy for Handle<K> {}

fn layout<K: Kind>() -> Layout {
    // SAFETY: a pure function of libuv.
    let size = unsafe { uv_handle_size(K::TYPE) };
    Layout::from_size_align(size, 16).expect("a handle's size")
}

impl<K: Kind> Handle<K> {
    /// Memory for a handle of this kind, its first field (`data`) set to `data`; `None`
    /// when there is none.
    #[expect(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "`data` is stored in the handle, never dereferenced here"
    )]
    pub fn alloc(data: *mut c_void) -> Option<Handle<K>> {
        // SAFETY: a layout of non-zero size.
        let raw = NonNull::new(unsafe { alloc(layout::<K>()) }.cast::<RawHandle>())?;
        // SAFETY: fresh memory of a handle, whose first field is `data`.
        unsafe { raw.cast::<*mut c_void>().write(data) };
        Some(Handle {
            raw,
            kind: PhantomData,
        })
    }

    /// The handle a callback of libuv was given.
    ///
    /// # Safety
    /// `raw` is a handle of this kind made by [`Handle::alloc`].
    pub unsafe fn from_raw(raw: *mut RawHandle) -> Handle<K> {
        Handle {
            // SAFETY: made by `alloc`, so not null (the caller's contract).
            raw: unsafe { NonNull::new_unchecked(raw) },
            kind: PhantomData,
        }
    }

    pub fn raw(self) -> *mut RawHandle {
        self.raw.as_ptr()
    }

    /// The `data` field.
    ///
    /// # Safety
    /// The handle is not freed yet.
    pub unsafe fn data<T>(self) -> *mut T {
        // SAFETY: live memory of a handle (the caller's contract), whose first field
        // `alloc` wrote and libuv never touches.
        unsafe { self.raw.cast::<*mut T>().read() }
    }

    /// Frees the handle: never initialized, or closed.
    ///
    /// # Safety
    /// libuv does not know the handle (never initialized, or its close callback runs),
    /// and it is not used again.
    pub unsafe fn free(self) {
        // SAFETY: allocated by `alloc` with this layout, and freed once (the contract).
        unsafe { dealloc(self.raw.as_ptr().cast(), layout::<K>()) };
    }

    /// Closes the handle; `on_closed` runs on a later turn, and may free it.
    ///
    /// # Safety
    /// An initialized handle, not closed yet, on its loop's thread.
    pub unsafe fn close(self, on_closed: Callback) {
        // SAFETY: the caller's contract.
        unsafe { uv_close(self.raw(), on_closed) }
    }

    /// The handle no longer keeps its loop alive.
    ///
    /// # Safety
    /// An initialized handle, not closed, on its loop's thread.
    pub unsafe fn unref(self) {
        // SAFETY: the caller's contract.
        unsafe { uv_unref(self.raw()) }
    }
}

impl Handle<Async> {
    /// # Safety
    /// A handle made by `alloc` and not initialized, on the thread of `event_loop`.
    pub unsafe fn init(self, event_loop: *mut RawLoop, cb: Callback) -> c_int {
        // SAFETY: the caller's contract.
        unsafe { uv_async_init(event_loop, self.raw(), cb) }
    }

    /// Wakes the loop, from any thread; wake-ups made before its callback runs are one.
    ///
    /// # Safety
    /// An initialized handle, not closed.
    pub unsafe fn send(self) -> c_int {
        // SAFETY: the caller's contract; the one function of libuv safe on any thread.
        unsafe { uv_async_send(self.raw()) }
    }
}

impl Handle<Check> {
    /// Initializes the handle and starts it.
    ///
    /// # Safety
    /// A handle made by `alloc` and not initialized, on the thread of `event_loop`.
    pub unsafe fn start(self, event_loop: *mut RawLoop, cb: Callback) -> c_int {
        // SAFETY: the caller's contract.
        match unsafe { uv_check_init(event_loop, self.raw()) } {
            // SAFETY: initialized now.
            0 => unsafe { uv_check_start(self.raw(), cb) },
            error => error,
        }
    }
}

impl Handle<Idle> {
    /// # Safety
    /// A handle made by `alloc` and not initialized, on the thread of `event_loop`.
    pub unsafe fn init(self, event_loop: *mut RawLoop) -> c_int {
        // SAFETY: the caller's contract.
        unsafe { uv_idle_init(event_loop, self.raw()) }
    }

    /// # Safety
    /// An initialized handle, not closed, on its loop's thread.
    pub unsafe fn start(self, cb: Callback) -> c_int {
        // SAFETY: the caller's contract.
        unsafe { uv_idle_start(self.raw(), cb) }
    }

    /// # Safety
    /// As for [`Handle::<Idle>::start`].
    pub unsafe fn stop(self) -> c_int {
        // SAFETY: the caller's contract.
        unsafe { uv_idle_stop(self.raw()) }
    }
}

impl Handle<Poll> {
    /// # Safety
    /// A handle made by `alloc` and not initialized, on the thread of `event_loop`;
    /// `fd` stays open while the handle lives.
    pub unsafe fn init(self, event_loop: *mut RawLoop, fd: c_int) -> c_int {
        // SAFETY: the caller's contract.
        unsafe { uv_poll_init(event_loop, self.raw(), fd) }
    }

    /// Watches for `events` (replacing what it watched), calling `cb`.
    ///
    /// # Safety
    /// An initialized handle, not closed, on its loop's thread.
    pub unsafe fn start(self, events: c_int, cb: PollCallback) -> c_int {
        // SAFETY: the caller's contract.
        unsafe { uv_poll_start(self.raw(), events, cb) }
    }

    /// # Safety
    /// As for [`Handle::<Poll>::start`].
    pub unsafe fn stop(self) -> c_int {
        // SAFETY: the caller's contract.
        unsafe { uv_poll_stop(self.raw()) }
    }
}
