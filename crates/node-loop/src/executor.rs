//! The executor: tasks polled on the attached thread, at its loop's check. A task woken
//! in a turn is polled once, at that turn's check, so what the tasks of a turn post is
//! delivered in one go (their [`Delivery`], held while they run). A task woken from
//! another thread, or after the check, has the loop's `uv_async_t` wake it for the next
//! check.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    mem::ManuallyDrop,
    panic::{self, AssertUnwindSafe},
    pin::Pin,
    ptr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Wake, Waker},
};

use crate::{
    uv::{Async, Handle, RawHandle, RawLoop},
    Delivery,
};

/// A task of the loop.
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The tasks of this thread.
#[derive(Default)]
struct Tasks {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
}

struct Slot {
    task: Task,
    /// Its waker, made once: a poll clones nothing.
    waker: Waker,
    /// What that waker queues it with.
    state: Arc<TaskWaker>,
    /// Where what the task posts is delivered from.
    delivery: Arc<dyn Delivery>,
}

/// The tasks to poll, and the wake-up of the loop for them.
struct Ready {
    inner: Mutex<Queued>,
}

struct Queued {
    ids: Vec<usize>,
    /// A wake-up is on its way.
    kicked: bool,
    /// The `uv_async_t`; `None` once the thread is detached.
    wakeup: Option<Handle<Async>>,
}

// SAFETY: the handle is only sent through (`uv_async_send`, safe from any thread) while
// it is set, and it is cleared, under the lock, before it closes.
unsafe impl Send for Queued {}

struct TaskWaker {
    id: usize,
    ready: Arc<Ready>,
    /// It is among the tasks to poll.
    queued: AtomicBool,
}

thread_local! {
    /// Never dropped with the thread's storage: a process that exits without detaching
    /// (`process.exit()`) tears it down with the rest of the thread's, and a task's drop
    /// may reach storage already gone. `detach` drops them.
    static TASKS: RefCell<ManuallyDrop<Tasks>> = const {
        RefCell::new(ManuallyDrop::new(Tasks { slots: Vec::new(), free: Vec::new() }))
    };
    /// This thread's ready tasks, while it is attached.
    static READY: RefCell<Option<Arc<Ready>>> = const { RefCell::new(None) };
    /// The tasks being polled on this thread now, or whose check is still to come in
    /// this turn: they need no wake-up.
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
        if queued.kicked || ptr::eq(RUNNING.get(), self) {
            return;
        }
        if let Some(wakeup) = queued.wakeup {
            queued.kicked = true;
            // SAFETY: the handle is open while it is set, and it is cleared under this lock.
            unsafe { wakeup.send() };
        }
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

/// Makes this thread's wake-up on `event_loop`; false when it cannot be made.
///
/// # Safety
/// On the thread of `event_loop`, not attached.
pub(crate) unsafe fn attach(event_loop: *mut RawLoop) -> bool {
    let Some(wakeup) = Handle::<Async>::alloc(ptr::null_mut()) else {
        return false;
    };
    // SAFETY: made above, on the loop's thread (the contract).
    if unsafe { wakeup.init(event_loop, on_async) } != 0 {
        // SAFETY: unknown to libuv: its init failed.
        unsafe { wakeup.free() };
        return false;
    }
    // SAFETY: initialized above.
    unsafe { wakeup.unref() };
    let ready = Ready {
        inner: Mutex::new(Queued {
            ids: Vec::new(),
            kicked: false,
            wakeup: Some(wakeup),
        }),
    };
    READY.set(Some(Arc::new(ready)));
    true
}

/// Drops this thread's tasks, and closes its wake-up.
///
/// # Safety
/// On the attached thread, outside the loop's callbacks of this crate.
pub(crate) unsafe fn detach() {
    drop(ManuallyDrop::into_inner(TASKS.take()));
    if let Some(ready) = READY.take() {
        let wakeup = ready.inner.lock().expect("not poisoned").wakeup.take();
        if let Some(wakeup) = wakeup {
            // SAFETY: the open handle `attach` made, closed once (`READY` is taken);
            // `Ready::push` sends no more wake-ups (cleared under its lock).
            unsafe { wakeup.close(on_async_closed) };
        }
    }
}

/// Polls `task` on this thread from the next check of its loop on; what it posts is
/// delivered from `delivery`. False, and the task dropped, when the thread is not
/// attached (or no longer).
pub fn spawn(task: Task, delivery: Arc<dyn Delivery>) -> bool {
    let Some(ready) = READY.with_borrow(Clone::clone) else {
        return false;
    };
    let id = TASKS.with_borrow_mut(|tasks| {
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
            delivery,
        };
        match tasks.slots.get_mut(id) {
            Some(free) => *free = Some(slot),
            None => tasks.slots.push(Some(slot)),
        }
        id
    });
    ready.push(id);
    true
}

/// The loop woke for tasks woken elsewhere: they are polled at the check that follows.
///
/// # Safety
/// Called by libuv alone, for the wake-up made by `attach`.
unsafe extern "C" fn on_async(_handle: *mut RawHandle) {}

/// # Safety
/// Called by libuv alone, as the close callback of the wake-up made by `attach`.
unsafe extern "C" fn on_async_closed(handle: *mut RawHandle) {
    // SAFETY: made by `attach` for `Async`, and closed: libuv is done with it.
    unsafe { Handle::<Async>::from_raw(handle).free() };
}

/// Calls `wake` in a turn whose check is still to come: it needs no wake-up.
pub(crate) fn before_check(wake: impl FnOnce()) {
    let ready = READY.with_borrow(|ready| ready.as_ref().map(Arc::as_ptr));
    let outer = RUNNING.replace(ready.unwrap_or(ptr::null()));
    wake();
    RUNNING.set(outer);
}

/// At the check: polls the ready tasks and delivers what they posted, again while the
/// deliveries woke any.
pub(crate) fn poll_ready() {
    let Some(ready) = READY.with_borrow(Clone::clone) else {
        return;
    };
    let mut ids = SPARE.take();
    ready.take_into(&mut ids);
    let outer = RUNNING.replace(Arc::as_ptr(&ready));
    let mut held: Vec<(Arc<dyn Delivery>, bool)> = Vec::new();
    while !ids.is_empty() {
        for id in ids.drain(..) {
            poll(id, &mut held);
        }
        for (delivery, hold) in held.drain(..) {
            delivery.deliver(hold);
        }
        ready.take_into(&mut ids);
    }
    SPARE.set(ids);
    RUNNING.set(outer);
}

/// Polls task `id`, if it is still there; its delivery holds what it posts.
fn poll(id: usize, held: &mut Vec<(Arc<dyn Delivery>, bool)>) {
    let Some(mut slot) =
        TASKS.with_borrow_mut(|tasks| tasks.slots.get_mut(id).and_then(Option::take))
    else {
        return;
    };
    slot.state.queued.store(false, Ordering::Release);
    let same = |(delivery, _): &(Arc<dyn Delivery>, bool)| {
        ptr::addr_eq(Arc::as_ptr(delivery), Arc::as_ptr(&slot.delivery))
    };
    if !held.iter().any(same) {
        held.push((slot.delivery.clone(), slot.delivery.hold()));
    }
    // A task that panics ends, as a panicking task of a runtime does; the panic does not
    // cross into libuv.
    let polled = panic::catch_unwind(AssertUnwindSafe(|| {
        slot.task
            .as_mut()
            .poll(&mut Context::from_waker(&slot.waker))
    }));
    if matches!(polled, Ok(Poll::Pending)) {
        TASKS.with_borrow_mut(|tasks| tasks.slots[id] = Some(slot));
    } else {
        // Dropped outside the borrow: what the task owned may reach the executor.
        drop(slot);
        TASKS.with_borrow_mut(|tasks| tasks.free.push(id));
    }
}
