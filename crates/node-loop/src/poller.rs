//! Sockets watched by the attached thread's loop, a `uv_poll_t` each, all in one
//! registry of the thread. A socket is watched one of two ways:
//! - for tasks ([`SocketReadiness`]): an event wakes the tasks waiting for it, which are
//!   polled at the turn's check;
//! - read at once ([`read`]): an event calls the reader in the poll callback itself, and
//!   what it posted is delivered before the callback returns.

use std::{
    cell::RefCell,
    collections::HashSet,
    ffi::c_int,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use crate::{
    executor, turn,
    uv::{self, Handle, RawHandle},
    Delivery,
};

/// What a task waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Readable,
    Writable,
}

impl Interest {
    fn event(self) -> c_int {
        match self {
            Interest::Readable => uv::READABLE,
            Interest::Writable => uv::WRITABLE,
        }
    }
}

/// What a socket's handle does with its events, in its `data` field.
enum Watcher {
    Wakers(Watch),
    Reader {
        /// Reads what the socket holds; true once the reading is over.
        read: Box<dyn FnMut() -> bool>,
        delivery: Arc<dyn Delivery>,
    },
}

/// The tasks a socket wakes.
struct Watch {
    readable: Option<Waker>,
    writable: Option<Waker>,
    /// What the handle watches.
    events: c_int,
    /// What the socket may be (`READABLE`, `WRITABLE`): until found busy, then from the
    /// loop's next event for it.
    ready: c_int,
}

thread_local! {
    /// The open poll handles of this thread, closed when it is detached.
    static OPEN: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
}

/// A handle on `fd` with `watcher`, not started; `None` when the thread is not attached
/// or the handle cannot be made.
///
/// # Safety
/// On the attached thread; `fd` stays open while the handle lives.
unsafe fn open(fd: c_int, watcher: Watcher) -> Option<Handle<uv::Poll>> {
    let event_loop = crate::event_loop()?;
    let data = Box::into_raw(Box::new(watcher));
    let Some(handle) = Handle::<uv::Poll>::alloc(data.cast()) else {
        // SAFETY: boxed above, and given to nothing.
        drop(unsafe { Box::from_raw(data) });
        return None;
    };
    // SAFETY: made above, on the loop's thread; `fd` outlives it (the contract).
    if unsafe { handle.init(event_loop, fd) } != 0 {
        // SAFETY: unknown to libuv (its init failed), and its data boxed above.
        unsafe {
            drop(Box::from_raw(data));
            handle.free();
        }
        return None;
    }
    // SAFETY: initialized above.
    unsafe { handle.unref() };
    OPEN.with_borrow_mut(|open| open.insert(handle.raw() as usize));
    Some(handle)
}

/// Closes `handle` unless the thread's detaching did; `on_closed` frees it.
///
/// # Safety
/// A handle that `open` made on this thread, not used after.
unsafe fn close(handle: Handle<uv::Poll>) {
    // Storage already torn down (the process exits): nothing is closed, libuv is done.
    let open = OPEN.try_with(|open| open.borrow_mut().remove(&(handle.raw() as usize)));
    if open.unwrap_or(false) {
        // SAFETY: open (it was in `OPEN`), on its loop's thread, closed once.
        unsafe { shut(handle) };
    }
}

/// # Safety
/// An open handle that `open` made on this thread, no longer in `OPEN`.
unsafe fn shut(handle: Handle<uv::Poll>) {
    // SAFETY: the caller's contract.
    unsafe {
        handle.stop();
        handle.close(on_closed);
    }
}

/// # Safety
/// Called by libuv alone, as the close callback of a handle that `open` made.
unsafe extern "C" fn on_closed(raw: *mut RawHandle) {
    // SAFETY: closed, so libuv is done with the handle: its `Watcher` (boxed by `open`)
    // and its memory go once, here.
    unsafe {
        let handle = Handle::<uv::Poll>::from_raw(raw);
        drop(Box::from_raw(handle.data::<Watcher>()));
        handle.free();
    }
}

/// Closes this thread's handles.
///
/// # Safety
/// On the attached thread, its tasks dropped: no [`SocketReadiness`] is used after.
pub(crate) unsafe fn detach() {
    for raw in OPEN.take() {
        // SAFETY: an open handle of this thread, taken out of `OPEN`: shut once.
        unsafe { shut(Handle::from_raw(raw as *mut RawHandle)) };
    }
}

/// Reads `fd` on the attached thread's loop: `read()` each time it is readable, until
/// that returns true or the loop reports an error; what it posts to `delivery` is
/// delivered in the same callback, and the turn then ends ([`crate::in_turn`]). The
/// reader is dropped when its reading ends, or when the thread is detached. False, and
/// the reader dropped, when it cannot be read here.
///
/// # Safety
/// On the attached thread; `fd` stays open while the reader lives (it may own it).
pub unsafe fn read(fd: c_int, read: Box<dyn FnMut() -> bool>, delivery: Arc<dyn Delivery>) -> bool {
    // SAFETY: the caller's contract.
    let Some(handle) = (unsafe { open(fd, Watcher::Reader { read, delivery }) }) else {
        return false;
    };
    // SAFETY: open, on its loop's thread.
    if unsafe { handle.start(uv::READABLE | uv::DISCONNECT, on_event) } != 0 {
        // SAFETY: open, made by `open` on this thread, not used after.
        unsafe { close(handle) };
        return false;
    }
    true
}

/// A socket's readiness from the attached thread's loop, for the tasks of its executor.
/// It lives on that thread, in a task there, and is dropped there (or with the tasks,
/// when the thread is detached).
pub struct SocketReadiness {
    handle: Handle<uv::Poll>,
}

// SAFETY: made, used and dropped on the attached thread alone (see the type's doc); a
// task is `Send` for the runtimes it could be given to, never moved off this thread.
unsafe impl Send for SocketReadiness {}

impl SocketReadiness {
    /// Watches `fd`; `None` when the thread is not attached or the loop cannot watch it.
    ///
    /// # Safety
    /// On the attached thread; `fd` stays open while this lives.
    pub unsafe fn new(fd: c_int) -> Option<SocketReadiness> {
        let watch = Watch {
            readable: None,
            writable: None,
            events: 0,
            ready: uv::READABLE | uv::WRITABLE,
        };
        // SAFETY: the caller's contract.
        let handle = unsafe { open(fd, Watcher::Wakers(watch)) }?;
        Some(SocketReadiness { handle })
    }

    fn watch(&mut self) -> &mut Watch {
        // SAFETY: the handle is this one's and open until it drops, and its data a
        // `Watcher::Wakers` (`new`); no other reference to it lives outside a callback.
        match unsafe { &mut *self.handle.data::<Watcher>() } {
            Watcher::Wakers(watch) => watch,
            Watcher::Reader { .. } => unreachable!("made by `SocketReadiness::new`"),
        }
    }

    /// Ready when the socket may be ready for `interest`; otherwise `cx` is woken when
    /// the loop says it is.
    pub fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        interest: Interest,
    ) -> Poll<std::io::Result<()>> {
        let handle = self.handle;
        let watch = self.watch();
        if watch.ready & interest.event() != 0 {
            return Poll::Ready(Ok(()));
        }
        let slot = match interest {
            Interest::Readable => &mut watch.readable,
            Interest::Writable => &mut watch.writable,
        };
        match slot {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        // SAFETY: the open handle of `watch`, on its loop's thread.
        if unsafe { watch_again(handle, watch) } != 0 {
            return Poll::Ready(Err(std::io::Error::other(
                "the loop cannot watch the socket",
            )));
        }
        Poll::Pending
    }

    /// The socket was found busy for `interest`: wait for the loop's word.
    pub fn clear(&mut self, interest: Interest) {
        self.watch().ready &= !interest.event();
    }
}

impl Drop for SocketReadiness {
    fn drop(&mut self) {
        // SAFETY: made by `open` on this thread (where it is dropped), not used after.
        unsafe { close(self.handle) };
    }
}

/// Watches for what the wakers in `watch` wait for, and for what it watched already:
/// an event nobody waits for any more stops its watching (at most one callback late),
/// so a connection that reads, waits, and reads again costs no `epoll_ctl` each time.
///
/// # Safety
/// `handle` is the open handle of `watch`, on its loop's thread.
unsafe fn watch_again(handle: Handle<uv::Poll>, watch: &mut Watch) -> c_int {
    let mut events = watch.events;
    if watch.readable.is_some() {
        events |= uv::READABLE | uv::DISCONNECT;
    }
    if watch.writable.is_some() {
        events |= uv::WRITABLE;
    }
    if events == watch.events {
        return 0;
    }
    watch.events = events;
    // SAFETY: the caller's contract.
    unsafe { handle.start(events, on_event) }
}

/// Every event of every socket: wakes the tasks waiting for it, or reads it.
///
/// # Safety
/// Called by libuv alone, for a handle that `open` made.
unsafe extern "C" fn on_event(raw: *mut RawHandle, status: c_int, events: c_int) {
    // SAFETY: made by `open`.
    let handle = unsafe { Handle::<uv::Poll>::from_raw(raw) };
    // SAFETY: libuv calls no callback of a closed handle, so its `Watcher` lives (until
    // `on_closed`); no other reference to it is held while a callback runs.
    match unsafe { &mut *handle.data::<Watcher>() } {
        Watcher::Wakers(watch) => executor::before_check(|| woken(handle, watch, status, events)),
        Watcher::Reader { read, delivery } => {
            let held = delivery.hold();
            // A failed poll is over too: dropping the reader ends its connection.
            let over = read() || status < 0;
            turn(|| delivery.deliver(held));
            if over {
                // SAFETY: made by `open` on this thread; not used after.
                unsafe { close(handle) };
            }
        }
    }
}

/// Wakes what waits for the socket's events, and stops watching those nobody waits for.
fn woken(handle: Handle<uv::Poll>, watch: &mut Watch, status: c_int, events: c_int) {
    let failed = status < 0;
    // Woken once the watch is settled; no allocation, this runs for every event.
    let mut woken = [None, None];
    let mut unwanted = 0;
    if failed || events & (uv::READABLE | uv::DISCONNECT) != 0 {
        watch.ready |= uv::READABLE;
        woken[0] = watch.readable.take();
        if woken[0].is_none() {
            unwanted |= uv::READABLE | uv::DISCONNECT;
        }
    }
    if failed || events & uv::WRITABLE != 0 {
        watch.ready |= uv::WRITABLE;
        woken[1] = watch.writable.take();
        if woken[1].is_none() {
            unwanted |= uv::WRITABLE;
        }
    }
    if unwanted != 0 {
        watch.events &= !unwanted;
        // SAFETY: the open handle of this callback, on its loop's thread.
        unsafe {
            if watch.events == 0 {
                handle.stop();
            } else {
                handle.start(watch.events, on_event);
            }
        }
    }
    woken.into_iter().flatten().for_each(Waker::wake);
}

/// How many poll handles this thread has open, for the tests.
#[cfg(test)]
pub(crate) fn open_handles() -> usize {
    OPEN.with_borrow(HashSet::len)
}
