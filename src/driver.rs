//! hyper's HTTP connections and the sends over them, on the JavaScript thread: their
//! tasks (a server connection, a client connection, a send) are polled here, over
//! [`LoopIo`] sockets whose readiness comes from libuv's loop (a `uv_poll_t` each). The
//! tasks woken in a turn are polled once, at the turn's check (a `uv_check_t`), so
//! the requests and replies read on any number of connections are delivered to
//! JavaScript in one call, and the answers and requests it gives meanwhile are written
//! before the check returns.
//!
//! A task woken from another thread (a timer of the runtime, the shutdown), or from
//! JavaScript outside the check, has a `uv_async_t` wake the loop for the next check.
//! Every handle is unreferenced, and the tasks and handles go when the environment ends.
//!
//! libuv calls these callbacks with no handle scope open: a JavaScript value made here
//! outside one aborts the process. Whatever makes one takes a [`Scope`](crate::scope::Scope),
//! opened where the callback reaches it; `scope.rs` has the rule and what each callback
//! reaches.

use std::{
    cell::{Cell, RefCell},
    ffi::{c_int, c_void},
    panic::{self, AssertUnwindSafe},
    ptr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Wake, Waker},
};

use napi::{sys, Env};
use swarm_core::messaging::{
    loop_io::{Interest, LoopIo, LoopTask, Readiness},
    mux,
};

use crate::{mailbox::Mailbox, reader, uv};

/// The tasks of this thread, polled on its loop.
#[derive(Default)]
struct Tasks {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
}

struct Slot {
    task: LoopTask,
    /// Its waker, made once: a poll clones nothing.
    waker: Waker,
    /// What that waker queues it with.
    state: Arc<TaskWaker>,
    /// Where what the task posts is delivered from.
    mailbox: Arc<Mailbox>,
}

/// The tasks to poll, and the wake-up of the loop for them.
struct Ready {
    inner: Mutex<Queued>,
    /// The `uv_check_t` that polls them, once a turn.
    check: *mut c_void,
}

// SAFETY: `check` is only used on the loop's thread.
unsafe impl Send for Ready {}
// SAFETY: as for `Send`.
unsafe impl Sync for Ready {}

struct Queued {
    ids: Vec<usize>,
    /// A wake-up is on its way.
    kicked: bool,
    /// The `uv_async_t`, null once the environment ended.
    handle: usize,
}

struct TaskWaker {
    id: usize,
    ready: Arc<Ready>,
    /// It is among the tasks to poll.
    queued: AtomicBool,
}

thread_local! {
    static TASKS: RefCell<Tasks> = const { RefCell::new(Tasks { slots: Vec::new(), free: Vec::new() }) };
    /// This thread's ready tasks, once it has any.
    static READY: RefCell<Option<Arc<Ready>>> = const { RefCell::new(None) };
    /// The tasks being polled on this thread now: they need no wake-up.
    static RUNNING: Cell<*const Ready> = const { Cell::new(ptr::null()) };
    /// The room of the ready queue's other vector, between checks (see `take_into`).
    static SPARE: Cell<Vec<usize>> = const { Cell::new(Vec::new()) };
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.id);
        }
    }
}

impl Ready {
    fn push(&self, id: usize) {
        let mut queued = self.inner.lock().expect("not poisoned");
        queued.ids.push(id);
        if queued.kicked || queued.handle == 0 || ptr::eq(RUNNING.get(), self) {
            return;
        }
        queued.kicked = true;
        // SAFETY: the handle lives while it is set, and it is cleared under this lock.
        unsafe { uv::uv_async_send(queued.handle as *mut c_void) };
    }

    /// The tasks to poll now, swapped into `ids` (empty), whose room the queue keeps:
    /// the two vectors take turns, with no allocation once grown. A wake-up from now on
    /// is a new one.
    fn take_into(&self, ids: &mut Vec<usize>) {
        let mut queued = self.inner.lock().expect("not poisoned");
        queued.kicked = false;
        std::mem::swap(&mut queued.ids, ids);
    }
}

/// `socket`, read and written on this thread, with readiness from its loop.
pub fn io(env: Env, socket: Arc<std::net::TcpStream>) -> std::io::Result<LoopIo> {
    let readiness = UvReadiness::new(env, &socket)
        .ok_or_else(|| std::io::Error::other("the loop cannot watch the socket"))?;
    Ok(LoopIo::new(socket, Box::new(readiness)))
}

/// Polls `task` on this thread from the next check of its loop on; what it posts is
/// delivered from `mailbox`. Without a loop to poll it (the environment is ending), it
/// is dropped.
pub fn spawn(env: Env, task: LoopTask, mailbox: Arc<Mailbox>) {
    let Some(ready) = ready(env) else { return };
    let id = TASKS.with(|tasks| {
        let mut tasks = tasks.borrow_mut();
        let id = tasks.free.pop().unwrap_or(tasks.slots.len());
        let state = Arc::new(TaskWaker {
            id,
            ready: ready.clone(),
            queued: AtomicBool::new(true),
        });
        let slot = Slot {
            task,
            waker: Waker::from(state.clone()),
            state,
            mailbox,
        };
        match tasks.slots.get_mut(id) {
            Some(free) => *free = Some(slot),
            None => tasks.slots.push(Some(slot)),
        }
        id
    });
    ready.push(id);
}

/// This thread's ready tasks, made with its wake-up on first use.
fn ready(env: Env) -> Option<Arc<Ready>> {
    if let Some(ready) = READY.with_borrow(Clone::clone) {
        return Some(ready);
    }
    // SAFETY: on the JavaScript thread of `env`.
    unsafe {
        let event_loop = uv::event_loop(env.raw())?;
        let handle = uv::alloc_handle(uv::ASYNC, ptr::null_mut());
        let check = uv::alloc_handle(uv::CHECK, ptr::null_mut());
        if handle.is_null() || check.is_null() {
            free(uv::ASYNC, handle);
            free(uv::CHECK, check);
            return None;
        }
        if uv::uv_async_init(event_loop, handle, on_async) != 0 {
            free(uv::ASYNC, handle);
            free(uv::CHECK, check);
            return None;
        }
        uv::uv_unref(handle);
        uv::uv_check_init(event_loop, check);
        uv::uv_check_start(check, on_check);
        uv::uv_unref(check);
        let ready = Arc::new(Ready {
            inner: Mutex::new(Queued {
                ids: Vec::new(),
                kicked: false,
                handle: handle as usize,
            }),
            check,
        });
        READY.set(Some(ready.clone()));
        sys::napi_add_env_cleanup_hook(env.raw(), Some(end), ptr::null_mut());
        Some(ready)
    }
}

/// Frees a handle that never reached libuv, if made.
///
/// # Safety
/// `handle` is null, or made by `uv::alloc_handle` for `kind` and never given to libuv.
unsafe fn free(kind: c_int, handle: *mut c_void) {
    if !handle.is_null() {
        // SAFETY: made for `kind`, and unknown to libuv (the caller's contract).
        unsafe { uv::free_handle(kind, handle) };
    }
}

/// The loop woke for tasks woken elsewhere: they are polled at the check that follows.
///
/// # Safety
/// Called by libuv alone, for the `uv_async_t` of `ready`.
unsafe extern "C" fn on_async(_handle: *mut c_void) {}

/// Calls `wake` in a turn whose check is still to come: it needs no wake-up.
fn before_check(wake: impl FnOnce()) {
    let ready = READY.with_borrow(|ready| ready.as_ref().map(Arc::as_ptr));
    let outer = RUNNING.replace(ready.unwrap_or(ptr::null()));
    wake();
    RUNNING.set(outer);
}

/// Once a turn: polls the ready tasks, delivers what they posted, and again while
/// JavaScript woke any; then writes the multiplexed answers it gave. The readings of a
/// turn, on any number of connections, are delivered in one call.
///
/// # Safety
/// Called by libuv alone, as the check of this thread's loop (`ready`).
unsafe extern "C" fn on_check(_handle: *mut c_void) {
    let Some(ready) = READY.with_borrow(Clone::clone) else {
        return;
    };
    let mut ids = SPARE.take();
    ready.take_into(&mut ids);
    if ids.is_empty() {
        SPARE.set(ids);
        return;
    }
    let outer = RUNNING.replace(Arc::as_ptr(&ready));
    reader::delivering(|| {
        let mut held: Vec<(Arc<Mailbox>, bool)> = Vec::new();
        while !ids.is_empty() {
            for id in ids.drain(..) {
                poll(id, &mut held);
            }
            for (mailbox, hold) in held.drain(..) {
                // SAFETY: in a callback of this thread's loop, outside JavaScript; this
                // thread's tasks post to its own nodes' mailboxes (`spawn`'s one caller,
                // `Mailbox::spawn_here`, checks the thread).
                unsafe { mailbox.deliver_held(hold) };
            }
            ready.take_into(&mut ids);
        }
        mux::flush();
    });
    SPARE.set(ids);
    RUNNING.set(outer);
}

/// Polls task `id`, if it is still there; its mailbox holds what it posts.
fn poll(id: usize, held: &mut Vec<(Arc<Mailbox>, bool)>) {
    let Some(mut slot) =
        TASKS.with_borrow_mut(|tasks| tasks.slots.get_mut(id).and_then(Option::take))
    else {
        return;
    };
    slot.state.queued.store(false, Ordering::Release);
    if !held
        .iter()
        .any(|(mailbox, _)| Arc::ptr_eq(mailbox, &slot.mailbox))
    {
        held.push((slot.mailbox.clone(), slot.mailbox.hold()));
    }
    // A task that panics ends, its connection with it, as a panicking task of the
    // runtime does; the panic does not cross into libuv.
    let polled = panic::catch_unwind(AssertUnwindSafe(|| {
        slot.task
            .as_mut()
            .poll(&mut Context::from_waker(&slot.waker))
    }));
    let done = !matches!(polled, Ok(Poll::Pending));
    TASKS.with_borrow_mut(|tasks| {
        if done {
            tasks.free.push(id);
        } else {
            tasks.slots[id] = Some(slot);
        }
    });
}

/// The environment ends: its tasks are dropped (closing their sockets' handles), and
/// its wake-up closes.
///
/// # Safety
/// Called by Node alone, once, as the cleanup hook that `ready` added, on the JavaScript
/// thread.
unsafe extern "C" fn end(_: *mut c_void) {
    drop(TASKS.take());
    if let Some(ready) = READY.take() {
        let handle = std::mem::take(&mut ready.inner.lock().expect("not poisoned").handle);
        // SAFETY: the open handles `ready` made on this thread's loop, closed once (`READY`
        // is taken); `Ready::push` sends no more wake-ups (the handle is cleared under its
        // lock).
        unsafe {
            uv::uv_close(handle as *mut c_void, on_async_closed);
            uv::uv_close(ready.check, on_check_closed);
        }
    }
}

/// # Safety
/// Called by libuv alone, as the close callback of the `uv_async_t` of `ready`.
unsafe extern "C" fn on_async_closed(handle: *mut c_void) {
    // SAFETY: made by `ready` for `ASYNC`, and closed: libuv is done with it.
    unsafe { uv::free_handle(uv::ASYNC, handle) };
}

/// # Safety
/// Called by libuv alone, as the close callback of the `uv_check_t` of `ready`.
unsafe extern "C" fn on_check_closed(handle: *mut c_void) {
    // SAFETY: made by `ready` for `CHECK`, and closed: libuv is done with it.
    unsafe { uv::free_handle(uv::CHECK, handle) };
}

/// A socket's readiness from a `uv_poll_t` of this thread's loop.
struct UvReadiness {
    handle: *mut c_void,
}

// SAFETY: made, used and dropped on the JavaScript thread alone (its task's).
unsafe impl Send for UvReadiness {}

/// What a socket's handle wakes, in its `data` field.
struct Watch {
    readable: Option<Waker>,
    writable: Option<Waker>,
    /// What the handle watches.
    events: c_int,
    /// What the socket may be (`READABLE`, `WRITABLE`): until found busy, then from the
    /// loop's next event for it.
    ready: c_int,
}

impl UvReadiness {
    fn new(env: Env, socket: &std::net::TcpStream) -> Option<UvReadiness> {
        use std::os::fd::AsRawFd;
        let watch = Box::into_raw(Box::new(Watch {
            readable: None,
            writable: None,
            events: 0,
            ready: uv::READABLE | uv::WRITABLE,
        }));
        // SAFETY: on the JavaScript thread of `env`; the socket outlives the handle.
        unsafe {
            let Some(handle) = uv::init_poll(env.raw(), socket.as_raw_fd(), watch.cast()) else {
                drop(Box::from_raw(watch));
                return None;
            };
            uv::uv_unref(handle);
            Some(UvReadiness { handle })
        }
    }
}

impl Readiness for UvReadiness {
    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        interest: Interest,
    ) -> Poll<std::io::Result<()>> {
        // SAFETY: the handle is this one's until it is dropped.
        unsafe {
            let watch = &mut *uv::data::<Watch>(self.handle);
            if watch.ready & event(interest) != 0 {
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
            if watch_again(self.handle, watch) != 0 {
                return Poll::Ready(Err(std::io::Error::other(
                    "the loop cannot watch the socket",
                )));
            }
        }
        Poll::Pending
    }

    fn clear(&mut self, interest: Interest) {
        // SAFETY: as in `poll_ready`.
        let watch = unsafe { &mut *uv::data::<Watch>(self.handle) };
        watch.ready &= !event(interest);
    }
}

/// The handle's event for `interest`.
fn event(interest: Interest) -> c_int {
    match interest {
        Interest::Readable => uv::READABLE,
        Interest::Writable => uv::WRITABLE,
    }
}

/// Watches for what the wakers in `watch` wait for, and for what it watched already:
/// an event nobody waits for any more stops its watching (at most one callback late),
/// so a connection that reads, waits, and reads again costs no `epoll_ctl` each time.
///
/// # Safety
/// `handle` is the open `uv_poll_t` of a `UvReadiness`, on its loop's thread, and `watch`
/// its `Watch`.
unsafe fn watch_again(handle: *mut c_void, watch: &mut Watch) -> c_int {
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
    // SAFETY: an open poll handle, on its loop's thread (the caller's contract).
    unsafe { uv::uv_poll_start(handle, events, on_ready) }
}

/// Wakes what waits for the socket's events, and stops watching those nobody waits for.
///
/// # Safety
/// Called by libuv alone, for the `uv_poll_t` of a `UvReadiness`.
unsafe extern "C" fn on_ready(handle: *mut c_void, status: c_int, events: c_int) {
    before_check(|| {
        // SAFETY: libuv calls no callback of a closed handle, so its `Watch` lives (until
        // `on_poll_closed`); no other reference to it is held while a callback runs.
        let watch = unsafe { &mut *uv::data::<Watch>(handle) };
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
            if watch.events == 0 {
                // SAFETY: the open handle of this callback, on its loop's thread.
                unsafe { uv::uv_poll_stop(handle) };
            } else {
                // SAFETY: as above.
                unsafe { uv::uv_poll_start(handle, watch.events, on_ready) };
            }
        }
        woken.into_iter().flatten().for_each(Waker::wake);
    });
}

impl Drop for UvReadiness {
    fn drop(&mut self) {
        // SAFETY: the handle is this one's; libuv frees it after its close.
        unsafe {
            uv::uv_poll_stop(self.handle);
            uv::uv_close(self.handle, on_poll_closed);
        }
    }
}

/// # Safety
/// Called by libuv alone, as the close callback of the `uv_poll_t` of a `UvReadiness`.
unsafe extern "C" fn on_poll_closed(handle: *mut c_void) {
    // SAFETY: closed, so libuv is done with the handle: its `Watch` (boxed by
    // `UvReadiness::new`) and its memory (made for `POLL` by `init_poll`) go once, here.
    unsafe {
        drop(Box::from_raw(uv::data::<Watch>(handle)));
        uv::free_handle(uv::POLL, handle);
    }
}
