//! The runtime of a thread's own libuv loop (a Node.js thread's, in the addon): tasks
//! polled by that loop and sockets watched by it, so that what the thread sends and
//! receives wakes no other thread.
//!
//! A thread is [`attach`]ed once to its loop, which then has three handles of this
//! crate, all unreferenced (they never keep the process alive):
//! - a `uv_check_t`: once a turn, after the loop's wait for I/O, it polls the tasks woken
//!   since ([`spawn`]) and ends the turn;
//! - a `uv_async_t`: wakes the loop for a task woken from another thread;
//! - a `uv_idle_t`, started by [`end_turn_soon`]: the loop does not wait for I/O before
//!   the check ends the turn.
//!
//! and a `uv_poll_t` per socket (`poller.rs`): for tasks ([`SocketReadiness`]), or read
//! in the callback itself ([`read`]).
//!
//! What tasks and readers post for the thread goes to a [`Delivery`] (the node's
//! mailbox): held while they run, delivered once they are done, in the same callback.
//! A turn ends with the hook given to [`attach`] (the engine's writes queued by the
//! thread go out): at the end of the check, and of each reading callback. [`in_turn`]
//! tells code running inside one of these that the turn's end is still to come.
//!
//! [`detach`] drops the tasks and closes every handle: an addon calls it from the
//! environment's cleanup hook, since a worker's loop may not end with open handles.

mod executor;
mod poller;
pub mod uv;

#[cfg(test)]
mod standin;
#[cfg(test)]
mod tests;

use std::cell::Cell;

pub use executor::{spawn, Task};
pub use poller::{read, Interest, SocketReadiness};
use uv::{Check, Handle, Idle, RawHandle, RawLoop};

/// Where tasks and readers post what the thread is to handle (a node's mailbox).
/// This crate calls it on the attached thread alone, in callbacks of its loop: never
/// from inside a call of the thread's own code (JavaScript, in the addon).
pub trait Delivery {
    /// What is posted from now on waits for [`Delivery::deliver`]; true when this call
    /// began the hold (none was on).
    fn hold(&self) -> bool;
    /// Delivers what was posted, and ends the hold that `hold` began when `held`.
    fn deliver(&self, held: bool);
}

/// This thread's loop and handles, once attached.
#[derive(Clone, Copy)]
struct Attached {
    event_loop: *mut RawLoop,
    check: Handle<Check>,
    idle: Handle<Idle>,
    end_of_turn: fn(),
}

thread_local! {
    static ATTACHED: Cell<Option<Attached>> = const { Cell::new(None) };
    /// A callback that ends its turn is running.
    static IN_TURN: Cell<bool> = const { Cell::new(false) };
    /// The idle handle is started.
    static IDLING: Cell<bool> = const { Cell::new(false) };
    /// Callbacks that end their turn run so far ([`turn_number`]).
    static TURNS: Cell<u64> = const { Cell::new(0) };
}

/// Attaches this thread to `event_loop`, where `end_of_turn` is called at the end of
/// each turn; true when it is attached (now, or already). False when the handles cannot
/// be made: then nothing here runs on this thread.
///
/// # Safety
/// `event_loop` is this thread's running libuv loop; [`detach`] is called before it ends.
pub unsafe fn attach(event_loop: *mut RawLoop, end_of_turn: fn()) -> bool {
    if ATTACHED.get().is_some() {
        return true;
    }
    let (Some(check), Some(idle)) = (
        Handle::<Check>::alloc(std::ptr::null_mut()),
        Handle::<Idle>::alloc(std::ptr::null_mut()),
    ) else {
        return false;
    };
    // SAFETY: made above, on the loop's thread (the contract). A handle whose init
    // failed is unknown to libuv and freed; one that libuv knows is closed.
    unsafe {
        if check.start(event_loop, on_check) != 0 {
            check.free();
            idle.free();
            return false;
        }
        check.unref();
        if idle.init(event_loop) != 0 {
            check.close(on_check_closed);
            idle.free();
            return false;
        }
        idle.unref();
        if !executor::attach(event_loop) {
            check.close(on_check_closed);
            idle.close(on_idle_closed);
            return false;
        }
    }
    ATTACHED.set(Some(Attached {
        event_loop,
        check,
        idle,
        end_of_turn,
    }));
    true
}

/// Ends the turn (writes what is queued), drops this thread's tasks and closes its
/// handles; nothing runs here any more. Does nothing on a thread not attached.
///
/// # Safety
/// On the attached thread, outside the loop's callbacks of this crate, before the loop
/// ends.
pub unsafe fn detach() {
    let Some(attached) = ATTACHED.take() else {
        return;
    };
    (attached.end_of_turn)();
    // SAFETY: on the attached thread (the contract): the tasks go first, closing their
    // sockets' handles, then the readers'; the check and the idle handle close once
    // (`ATTACHED` is taken).
    unsafe {
        executor::detach();
        poller::detach();
        attached.check.close(on_check_closed);
        attached.idle.close(on_idle_closed);
    }
    IDLING.set(false);
}

/// True while this thread is attached.
pub fn attached() -> bool {
    ATTACHED.get().is_some()
}

/// This thread's loop, while it is attached.
fn event_loop() -> Option<*mut RawLoop> {
    ATTACHED.get().map(|attached| attached.event_loop)
}

/// True inside a callback that ends its turn ([`read`]'s, the check's): what is queued
/// for writing now goes out before it returns.
pub fn in_turn() -> bool {
    IN_TURN.get()
}

/// The number of the callback that ends its turn running now (or of the last one): a
/// new number for each, so that what deliveries do in one callback can be bounded.
pub fn turn_number() -> u64 {
    TURNS.get()
}

/// Has the turn end before the loop waits for I/O again, so that what was queued for
/// writing goes out now rather than once something else wakes the loop: inside a
/// callback that ends its turn, that callback's end does; elsewhere the loop's check,
/// which this keeps the loop from waiting before. False on a thread not attached, where
/// nothing ends the turn.
pub fn end_turn_soon() -> bool {
    if IN_TURN.get() || IDLING.get() {
        return true;
    }
    let Some(attached) = ATTACHED.get() else {
        return false;
    };
    // SAFETY: an initialized handle of this thread's loop, not closed (attached).
    if unsafe { attached.idle.start(on_idle) } == 0 {
        IDLING.set(true);
        return true;
    }
    false
}

/// Runs `deliver` as a callback that ends its turn.
fn turn(deliver: impl FnOnce()) {
    TURNS.set(TURNS.get().wrapping_add(1));
    let outer = IN_TURN.replace(true);
    deliver();
    if let Some(attached) = ATTACHED.get() {
        (attached.end_of_turn)();
    }
    IN_TURN.set(outer);
}

/// Once a turn: polls the tasks woken since, delivers what they posted, and ends the
/// turn.
///
/// # Safety
/// Called by libuv alone, for the check handle of `attach`.
unsafe extern "C" fn on_check(_handle: *mut RawHandle) {
    if IDLING.replace(false) {
        if let Some(attached) = ATTACHED.get() {
            // SAFETY: the open idle handle of this thread's loop.
            unsafe { attached.idle.stop() };
        }
    }
    turn(executor::poll_ready);
}

/// The idle handle only keeps the loop from waiting: the check that follows does the work.
///
/// # Safety
/// Called by libuv alone.
unsafe extern "C" fn on_idle(_handle: *mut RawHandle) {}

/// # Safety
/// Called by libuv alone, as the close callback of the check handle of `attach`.
unsafe extern "C" fn on_check_closed(handle: *mut RawHandle) {
    // SAFETY: made by `attach` for `Check`, and closed: libuv is done with it.
    unsafe { Handle::<Check>::from_raw(handle).free() };
}

/// # Safety
/// Called by libuv alone, as the close callback of the idle handle of `attach`.
unsafe extern "C" fn on_idle_closed(handle: *mut RawHandle) {
    // SAFETY: made by `attach` for `Idle`, and closed: libuv is done with it.
    unsafe { Handle::<Idle>::from_raw(handle).free() };
}
