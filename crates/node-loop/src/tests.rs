//! The runtime on the stand-in loop (`standin.rs`), one loop per test thread.

use std::{
    cell::{Cell, RefCell},
    future::{poll_fn, Future},
    io::{Read, Write},
    os::{fd::AsRawFd, unix::net::UnixStream},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use crate::{
    attach, detach, end_turn_soon, in_turn, poller, read, spawn, standin::Loop, Delivery, Interest,
    SocketReadiness,
};

thread_local! {
    /// Turns ended on this thread, and whether each was inside `in_turn`.
    static ENDED: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
}

fn end_of_turn() {
    ENDED.with_borrow_mut(|ended| ended.push(in_turn()));
}

fn turns_ended() -> usize {
    ENDED.with_borrow(Vec::len)
}

/// A loop of the stand-in with this thread attached to it.
fn attached() -> Box<Loop> {
    let mut event_loop = Loop::new();
    // SAFETY: this thread's loop, which the test detaches before it drops it.
    assert!(unsafe { attach(event_loop.raw(), end_of_turn) });
    event_loop
}

/// Detaches this thread, and runs the turn that closes the handles.
fn finish(event_loop: &mut Loop) {
    // SAFETY: on the attached thread, outside its callbacks.
    unsafe { detach() };
    event_loop.run_once(0);
    assert_eq!(
        event_loop.open_handles(),
        0,
        "every handle closed and freed"
    );
}

/// What a delivery saw: `hold` calls as (began), `deliver` calls as (held, in a turn).
#[derive(Default)]
struct Recorder {
    holding: AtomicBool,
    posted: Mutex<Vec<&'static str>>,
    delivered: Mutex<Vec<Vec<&'static str>>>,
    deliveries: Mutex<Vec<(bool, bool)>>,
}

impl Recorder {
    fn post(&self, letter: &'static str) {
        self.posted.lock().unwrap().push(letter);
    }

    fn delivered(&self) -> Vec<Vec<&'static str>> {
        self.delivered.lock().unwrap().clone()
    }
}

impl Delivery for Recorder {
    fn hold(&self) -> bool {
        !self.holding.swap(true, Ordering::AcqRel)
    }

    fn deliver(&self, held: bool) {
        self.deliveries.lock().unwrap().push((held, in_turn()));
        let posted = std::mem::take(&mut *self.posted.lock().unwrap());
        if !posted.is_empty() {
            self.delivered.lock().unwrap().push(posted);
        }
        if held {
            self.holding.store(false, Ordering::Release);
        }
    }
}

/// Runs turns until `done`, for 10 s at most.
fn run_until(event_loop: &mut Loop, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not done within 10 s");
        event_loop.run_once(100);
    }
}

#[test]
fn tasks_woken_in_a_turn_are_polled_at_its_check_and_delivered_together() {
    let mut event_loop = attached();
    let recorder = Arc::new(Recorder::default());
    for letter in ["a", "b"] {
        let to = recorder.clone();
        let task = async move { to.post(letter) };
        assert!(spawn(Box::pin(task), recorder.clone()));
    }
    assert!(recorder.delivered().is_empty(), "not before the check");
    event_loop.run_once(0);
    assert_eq!(recorder.delivered(), vec![vec!["a", "b"]]);
    assert_eq!(
        *recorder.deliveries.lock().unwrap(),
        vec![(true, true)],
        "held once, delivered in the turn"
    );
    assert_eq!(
        ENDED.with_borrow(Clone::clone),
        vec![true],
        "the turn ended once, after them"
    );
    finish(&mut event_loop);
}

/// A future that waits until another thread calls `fire`.
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Signal {
    fn fire(&self) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            state.0 = true;
            state.1.take()
        };
        waker.into_iter().for_each(Waker::wake);
    }

    fn wait(self: &Arc<Self>) -> impl Future<Output = ()> {
        let me = self.clone();
        poll_fn(move |cx| {
            let mut state = me.state.lock().unwrap();
            if state.0 {
                return Poll::Ready(());
            }
            state.1 = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}

#[test]
fn a_task_woken_from_another_thread_wakes_the_waiting_loop() {
    let mut event_loop = attached();
    let (signal, done) = (Arc::new(Signal::default()), Rc::new(Cell::new(false)));
    let (waiting, finished) = (signal.wait(), done.clone());
    spawn(
        Box::pin(async move {
            waiting.await;
            finished.set(true)
        }),
        Arc::new(Recorder::default()),
    );
    event_loop.run_once(0);
    assert!(!done.get());
    let firing = std::thread::spawn(move || signal.fire());
    // The wait for I/O ends with the wake-up, not with its time.
    assert!(event_loop.run_once(60_000), "woken");
    firing.join().unwrap();
    run_until(&mut event_loop, || done.get());
    finish(&mut event_loop);
}

#[test]
fn a_socket_wakes_the_task_waiting_for_it() {
    let mut event_loop = attached();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let read_bytes = Rc::new(RefCell::new(Vec::new()));
    let got = read_bytes.clone();
    let task = async move {
        // SAFETY: on the attached thread; `ours` outlives the readiness (both in this task).
        let mut readiness = unsafe { SocketReadiness::new(ours.as_raw_fd()) }.expect("watched");
        let mut ours = &ours;
        while got.borrow().len() < 5 {
            poll_fn(|cx| readiness.poll_ready(cx, Interest::Readable))
                .await
                .unwrap();
            let mut buf = [0; 16];
            match ours.read(&mut buf) {
                Ok(n) => got.borrow_mut().extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    readiness.clear(Interest::Readable)
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    spawn(Box::pin(task), Arc::new(Recorder::default()));
    event_loop.run_once(0);
    assert_eq!(poller::open_handles(), 1, "watching");
    peer.write_all(b"he").unwrap();
    run_until(&mut event_loop, || read_bytes.borrow().len() == 2);
    peer.write_all(b"llo").unwrap();
    run_until(&mut event_loop, || read_bytes.borrow().len() == 5);
    assert_eq!(*read_bytes.borrow(), b"hello");
    assert_eq!(
        poller::open_handles(),
        0,
        "the task's end closed its handle"
    );
    finish(&mut event_loop);
}

/// Dropped: sets its flag.
struct Dropped(Rc<Cell<bool>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn a_reader_reads_in_its_callback_delivers_there_and_ends_with_its_connection() {
    let mut event_loop = attached();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let recorder = Arc::new(Recorder::default());
    let dropped = Rc::new(Cell::new(false));
    let (to, guard, fd) = (recorder.clone(), Dropped(dropped.clone()), ours.as_raw_fd());
    let reader = move || {
        let _ = &guard;
        let mut buf = [0; 16];
        match (&ours).read(&mut buf) {
            Ok(0) => true,
            Ok(_) => {
                to.post("read");
                false
            }
            Err(_) => false,
        }
    };
    // SAFETY: on the attached thread; the reader owns the socket.
    assert!(unsafe { read(fd, Box::new(reader), recorder.clone()) });
    peer.write_all(b"x").unwrap();
    run_until(&mut event_loop, || !recorder.delivered().is_empty());
    assert_eq!(recorder.delivered(), vec![vec!["read"]]);
    assert!(recorder
        .deliveries
        .lock()
        .unwrap()
        .iter()
        .all(|&(_, in_turn)| in_turn));
    assert!(turns_ended() >= 1);
    drop(peer);
    run_until(&mut event_loop, || dropped.get());
    assert_eq!(poller::open_handles(), 0);
    finish(&mut event_loop);
}

#[test]
fn detaching_drops_the_tasks_and_closes_every_handle() {
    let mut event_loop = attached();
    let (ours, _peer) = UnixStream::pair().unwrap();
    let (task_dropped, reader_dropped) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
    let guard = Dropped(task_dropped.clone());
    let fd = ours.as_raw_fd();
    let task = async move {
        let _guard = guard;
        wait_until_readable(ours).await;
    };
    spawn(Box::pin(task), Arc::new(Recorder::default()));
    let guard = Dropped(reader_dropped.clone());
    // SAFETY: on the attached thread; the socket stays open in the task until detach,
    // which drops the reader too.
    assert!(unsafe {
        read(
            fd,
            Box::new(move || {
                let _ = &guard;
                false
            }),
            Arc::new(Recorder::default()),
        )
    });
    event_loop.run_once(0);
    assert_eq!(poller::open_handles(), 2);
    let ended = turns_ended();
    // SAFETY: on the attached thread, outside its callbacks.
    unsafe { detach() };
    assert!(task_dropped.get(), "the task went");
    assert_eq!(turns_ended(), ended + 1, "what was queued is written first");
    event_loop.run_once(0);
    assert!(reader_dropped.get(), "the reader went with its handle");
    assert_eq!(
        event_loop.open_handles(),
        0,
        "every handle closed and freed"
    );
    assert!(
        !spawn(Box::pin(async {}), Arc::new(Recorder::default())),
        "nothing runs after"
    );
}

#[test]
fn a_task_that_panics_ends_alone() {
    let mut event_loop = attached();
    let done = Rc::new(Cell::new(false));
    let finished = done.clone();
    spawn(
        Box::pin(async { panic!("a task's bug") }),
        Arc::new(Recorder::default()),
    );
    spawn(
        Box::pin(async move { finished.set(true) }),
        Arc::new(Recorder::default()),
    );
    event_loop.run_once(0);
    assert!(done.get(), "the other task ran");
    finish(&mut event_loop);
}

#[test]
fn ending_the_turn_soon_keeps_the_loop_from_waiting_once() {
    let mut event_loop = attached();
    event_loop.run_once(0);
    let ended = turns_ended();
    end_turn_soon();
    end_turn_soon();
    event_loop.run_once(60_000);
    assert_eq!(event_loop.last_wait(), 0, "the loop did not wait for I/O");
    assert_eq!(turns_ended(), ended + 1);
    assert_eq!(event_loop.active_idles(), 0, "stopped by the check");
    end_turn_soon();
    assert_eq!(event_loop.active_idles(), 1, "and again when asked again");
    event_loop.run_once(60_000);
    assert_eq!(event_loop.last_wait(), 0);
    finish(&mut event_loop);
}

#[test]
fn a_thread_that_ends_without_detaching_drops_nothing_of_its_tasks() {
    // As the main thread when the process exits (`process.exit()`): its storage is torn
    // down with tasks that hold sockets, and no task's drop may reach storage gone.
    let ended = std::thread::spawn(|| {
        let mut event_loop = attached();
        let (ours, _peer) = UnixStream::pair().unwrap();
        let task = wait_until_readable(ours);
        spawn(Box::pin(task), Arc::new(Recorder::default()));
        event_loop.run_once(0);
        // The loop's memory stays: libuv's outlives the thread's storage too.
        std::mem::forget(event_loop);
    });
    assert!(ended.join().is_ok(), "the thread ended without a panic");
}

/// Waits, with a task's readiness, until `socket` is readable after being found busy.
async fn wait_until_readable(socket: UnixStream) {
    // SAFETY: on the attached thread; `socket` outlives the readiness (both here).
    let mut readiness = unsafe { SocketReadiness::new(socket.as_raw_fd()) }.expect("watched");
    poll_fn(|cx| readiness.poll_ready(cx, Interest::Readable))
        .await
        .unwrap();
    readiness.clear(Interest::Readable);
    poll_fn(|cx| readiness.poll_ready(cx, Interest::Readable))
        .await
        .unwrap();
}
