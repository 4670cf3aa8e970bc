//! Engine tests with a home loop ([`super::Tasks::at_home`]): executions run on the
//! loop's thread, as its handlers answer there.

use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::runtime::Handle;

use super::tests::engine;
use super::TaskOptions;
use crate::local::{self, LoopThread, Work};

#[test]
fn on_a_loop_thread_executions_run_there_as_its_handlers_answer() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let handle = runtime.handle().clone();
    let on_loop = thread::spawn(move || {
        let _runtime = handle.enter();
        let (tasks, mut runs) = engine(TaskOptions::default());
        let tasks = tasks.at_home(Some(Arc::new(ThisThread(thread::current().id()))));
        let first = tasks.exec("t", "k", 1);
        let second = tasks.exec("t", "k", 2);
        let (arg, reply) = runs.try_recv().expect("started here, before exec returned");
        assert_eq!(arg, 1);
        assert!(runs.try_recv().is_err(), "one at a time");
        reply.send(Ok(10)).expect("sent");
        // The answer woke the execution on this thread: the next one started at once.
        let (arg, reply) = runs.try_recv().expect("the next one started within send()");
        assert_eq!(arg, 2);
        reply.send(Ok(20)).expect("sent");
        (first.now_or_never(), second.now_or_never())
    });
    let (first, second) = on_loop.join().expect("joined");
    assert_eq!(first, Some(Ok(10)));
    assert_eq!(second, Some(Ok(20)));
}

/// The thread that made it, as a loop's.
struct ThisThread(ThreadId);

impl LoopThread for ThisThread {
    fn is_current(&self) -> bool {
        self.0 == thread::current().id()
    }
}

#[test]
fn executions_called_for_elsewhere_are_started_on_the_home_thread() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (hand, handed) = mpsc::channel::<(Work, Handle)>();
    let (tasks, mut runs) = engine(TaskOptions::default());
    let home = thread::spawn(move || {
        let (work, runtime) = handed
            .recv_timeout(Duration::from_secs(10))
            .expect("handed over");
        local::start_here(work, runtime);
        let (arg, reply) = runs.try_recv().expect("started here, within start_here");
        reply.send(Ok(arg * 10)).expect("sent");
    });
    let tasks = tasks.at_home(Some(Arc::new(Handing {
        home: home.thread().id(),
        hand: Mutex::new(hand),
    })));
    let _runtime = runtime.enter();
    let called = tasks.exec("t", "k", 1);
    home.join().expect("no panic on the home thread");
    assert_eq!(runtime.block_on(called), Ok(10));
}

/// A loop thread that is handed its work through a channel.
struct Handing {
    home: ThreadId,
    hand: Mutex<mpsc::Sender<(Work, Handle)>>,
}

impl LoopThread for Handing {
    fn is_current(&self) -> bool {
        self.home == thread::current().id()
    }

    fn start_there(&self, work: Work, runtime: Handle) {
        let hand = self.hand.lock().expect("not poisoned");
        hand.send((work, runtime)).expect("the home thread waits");
    }
}
