//! A stand-in for libuv in the tests: the functions this crate calls, over poll(2), with
//! libuv's rules where this crate relies on them: a turn runs the idle callbacks, waits
//! for I/O (not at all while an idle handle is started), calls the poll callbacks, the
//! async callbacks whose handle was sent to, the check callbacks, then the close
//! callbacks; async sends coalesce and wake a waiting loop from any thread; a closed
//! handle's callbacks never run again.

use std::{
    ffi::{c_int, c_void},
    io::{Read, Write},
    os::{fd::AsRawFd, unix::net::UnixStream},
    ptr,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::uv::{self, Callback, Kind, PollCallback, RawHandle, RawLoop};

/// Every handle, whatever its kind; `data` first, as in libuv.
#[repr(C)]
struct Handle {
    data: *mut c_void,
    kind: c_int,
    event_loop: *mut Loop,
    fd: c_int,
    events: c_int,
    active: bool,
    closing: bool,
    cb: Option<Callback>,
    poll_cb: Option<PollCallback>,
    close_cb: Option<Callback>,
    sent: AtomicBool,
}

/// A loop: its handles in the order they were made, and a pipe that wakes its wait.
pub struct Loop {
    handles: Vec<*mut Handle>,
    closing: Vec<*mut Handle>,
    /// How long the last turn could wait for I/O, in ms (-1: for ever).
    last_wait: c_int,
    wake_read: UnixStream,
    wake_write: UnixStream,
}

impl Loop {
    pub fn new() -> Box<Loop> {
        let (wake_read, wake_write) = UnixStream::pair().expect("a pipe");
        wake_read.set_nonblocking(true).expect("non-blocking");
        wake_write.set_nonblocking(true).expect("non-blocking");
        Box::new(Loop {
            handles: Vec::new(),
            closing: Vec::new(),
            last_wait: -1,
            wake_read,
            wake_write,
        })
    }

    pub fn raw(&mut self) -> *mut RawLoop {
        ptr::from_mut(self).cast()
    }

    /// Handles made on this loop and not closed yet.
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// How long the last turn could wait for I/O, in ms (-1: for ever).
    pub fn last_wait(&self) -> c_int {
        self.last_wait
    }

    /// Idle handles started.
    pub fn active_idles(&self) -> usize {
        self.of_kind(uv::Idle::TYPE).len()
    }

    fn of_kind(&self, kind: c_int) -> Vec<*mut Handle> {
        self.handles
            .iter()
            .copied()
            // SAFETY: the loop's handles, alive until their close callback.
            .filter(|&h| unsafe { (*h).kind == kind && (*h).active && !(*h).closing })
            .collect()
    }

    /// One turn; waits for I/O at most `timeout_ms` (-1: for ever). True when the wait
    /// ended with an event (I/O or a wake-up) rather than its timeout.
    pub fn run_once(&mut self, timeout_ms: c_int) -> bool {
        for handle in self.of_kind(uv::Idle::TYPE) {
            // SAFETY: an active handle of this loop, with its callback.
            unsafe { call(handle) };
        }
        let timeout = if self.of_kind(uv::Idle::TYPE).is_empty() {
            timeout_ms
        } else {
            0
        };
        self.last_wait = timeout;
        let polled = self.of_kind(uv::Poll::TYPE);
        let mut fds = vec![libc::pollfd {
            fd: self.wake_read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for &handle in &polled {
            // SAFETY: a handle of this loop.
            let (fd, events) = unsafe { ((*handle).fd, (*handle).events) };
            let mut interest = 0;
            if events & uv::READABLE != 0 {
                interest |= libc::POLLIN;
            }
            if events & uv::WRITABLE != 0 {
                interest |= libc::POLLOUT;
            }
            if events & uv::DISCONNECT != 0 {
                interest |= libc::POLLRDHUP;
            }
            fds.push(libc::pollfd {
                fd,
                events: interest,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of its length.
        let events = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        while self.wake_read.read(&mut [0; 64]).is_ok() {}
        for (&handle, fd) in polled.iter().zip(&fds[1..]) {
            // SAFETY: a handle of this loop, alive until its close callback (which runs
            // below, after every other callback of the turn).
            unsafe {
                if !(*handle).active || (*handle).closing || fd.revents == 0 {
                    continue;
                }
                let mut events = 0;
                if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    events |= uv::READABLE;
                }
                if fd.revents & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0 {
                    events |= uv::WRITABLE;
                }
                if fd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0 {
                    events |= uv::DISCONNECT;
                }
                let events = events & ((*handle).events | uv::DISCONNECT);
                if let Some(cb) = (*handle).poll_cb {
                    cb(handle.cast(), 0, events);
                }
            }
        }
        for handle in self.of_kind(uv::Async::TYPE) {
            // SAFETY: an active handle of this loop.
            if unsafe { (*handle).sent.swap(false, Ordering::AcqRel) } {
                // SAFETY: as above.
                unsafe { call(handle) };
            }
        }
        for handle in self.of_kind(uv::Check::TYPE) {
            // SAFETY: an active handle of this loop, with its callback.
            unsafe { call(handle) };
        }
        for handle in std::mem::take(&mut self.closing) {
            self.handles.retain(|&h| h != handle);
            // SAFETY: a closed handle of this loop: its close callback runs once, last.
            unsafe {
                if let Some(cb) = (*handle).close_cb {
                    cb(handle.cast());
                }
            }
        }
        events > 0
    }
}

/// # Safety
/// An active handle with its callback, on its loop's thread.
unsafe fn call(handle: *mut Handle) {
    // SAFETY: the caller's contract.
    unsafe {
        if !(*handle).closing {
            if let Some(cb) = (*handle).cb {
                cb(handle.cast());
            }
        }
    }
}

/// # Safety
/// Memory for a handle (of `uv_handle_size`), on the thread of `event_loop`.
unsafe fn init(event_loop: *mut RawLoop, handle: *mut RawHandle, kind: c_int, fd: c_int) -> c_int {
    let event_loop = event_loop.cast::<Loop>();
    let handle = handle.cast::<Handle>();
    // SAFETY: the caller's contract; `data`, written by the caller, is kept.
    unsafe {
        let data = (*handle).data;
        handle.write(Handle {
            data,
            kind,
            event_loop,
            fd,
            events: 0,
            active: false,
            closing: false,
            cb: None,
            poll_cb: None,
            close_cb: None,
            sent: AtomicBool::new(false),
        });
        (*event_loop).handles.push(handle);
    }
    0
}

#[no_mangle]
extern "C" fn uv_handle_size(_kind: c_int) -> usize {
    std::mem::size_of::<Handle>()
}

#[no_mangle]
unsafe extern "C" fn uv_async_init(
    event_loop: *mut RawLoop,
    handle: *mut RawHandle,
    cb: Callback,
) -> c_int {
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe {
        init(event_loop, handle, uv::Async::TYPE, -1);
        let handle = handle.cast::<Handle>();
        (*handle).cb = Some(cb);
        (*handle).active = true;
    }
    0
}

#[no_mangle]
unsafe extern "C" fn uv_async_send(handle: *mut RawHandle) -> c_int {
    let handle = handle.cast::<Handle>();
    // SAFETY: an initialized handle; only its atomic and its loop's pipe are touched,
    // which any thread may.
    unsafe {
        (*handle).sent.store(true, Ordering::Release);
        let _ = (&(*(*handle).event_loop).wake_write).write(&[1]);
    }
    0
}

#[no_mangle]
unsafe extern "C" fn uv_check_init(event_loop: *mut RawLoop, handle: *mut RawHandle) -> c_int {
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe { init(event_loop, handle, uv::Check::TYPE, -1) }
}

#[no_mangle]
unsafe extern "C" fn uv_idle_init(event_loop: *mut RawLoop, handle: *mut RawHandle) -> c_int {
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe { init(event_loop, handle, uv::Idle::TYPE, -1) }
}

#[no_mangle]
unsafe extern "C" fn uv_poll_init(
    event_loop: *mut RawLoop,
    handle: *mut RawHandle,
    fd: c_int,
) -> c_int {
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe { init(event_loop, handle, uv::Poll::TYPE, fd) }
}

/// Starts a check or idle handle.
///
/// # Safety
/// An initialized handle, not closed.
unsafe fn start(handle: *mut RawHandle, cb: Callback) -> c_int {
    let handle = handle.cast::<Handle>();
    // SAFETY: the caller's contract.
    unsafe {
        (*handle).cb = Some(cb);
        (*handle).active = true;
    }
    0
}

#[no_mangle]
unsafe extern "C" fn uv_check_start(handle: *mut RawHandle, cb: Callback) -> c_int {
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe { start(handle, cb) }
}

#[no_mangle]
unsafe extern "C" fn uv_idle_start(handle: *mut RawHandle, cb: Callback) -> c_int {
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe { start(handle, cb) }
}

#[no_mangle]
unsafe extern "C" fn uv_idle_stop(handle: *mut RawHandle) -> c_int {
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe { (*handle.cast::<Handle>()).active = false };
    0
}

#[no_mangle]
unsafe extern "C" fn uv_poll_start(
    handle: *mut RawHandle,
    events: c_int,
    cb: PollCallback,
) -> c_int {
    let handle = handle.cast::<Handle>();
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe {
        (*handle).events = events;
        (*handle).poll_cb = Some(cb);
        (*handle).active = true;
    }
    0
}

#[no_mangle]
unsafe extern "C" fn uv_poll_stop(handle: *mut RawHandle) -> c_int {
    // SAFETY: libuv's contract, which the crate keeps.
    unsafe { (*handle.cast::<Handle>()).active = false };
    0
}

#[no_mangle]
unsafe extern "C" fn uv_close(handle: *mut RawHandle, cb: Callback) {
    let handle = handle.cast::<Handle>();
    // SAFETY: libuv's contract, which the crate keeps: an initialized handle, closed once.
    unsafe {
        assert!(!(*handle).closing, "a handle closed twice");
        (*handle).closing = true;
        (*handle).active = false;
        (*handle).close_cb = Some(cb);
        (*(*handle).event_loop).closing.push(handle);
    }
}

#[no_mangle]
extern "C" fn uv_unref(_handle: *mut RawHandle) {}
