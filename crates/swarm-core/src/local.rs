//! Work that stays on a loop thread outside the runtime: a thread that runs its own
//! event loop ([`LoopThread`]; the addon's JavaScript thread), calls
//! [`crate::messaging::mux::flush`] at the end of each of its callbacks, and is where the
//! handlers' answers come from. Work started there is done there: a task's execution
//! and the answer to a multiplexed task request are polled on that thread for as long as
//! that thread is what wakes them (a handler answering), with no thread of the runtime
//! woken in between. Whatever wakes them from another thread (a timer, a shutdown) moves
//! them to the runtime, where they finish.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Wake, Waker},
    thread::{self, ThreadId},
};

use tokio::runtime::Handle;

/// A thread that runs its own event loop, handed to the engine by whoever runs it.
pub trait LoopThread: Send + Sync {
    /// True on that thread.
    fn is_current(&self) -> bool;

    /// From another thread: has that thread [`start_here`] `work`, as soon as it can.
    /// This one spawns it on `runtime`.
    fn start_there(&self, work: Work, runtime: Handle) {
        drop(runtime.spawn(work));
    }
}

/// Work for a loop thread.
pub type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Polls `work` now, on this thread (inside `runtime`'s context, so it may start timers),
/// and again whenever this thread wakes it; woken from any other thread, it moves to
/// `runtime`.
pub fn start_here(work: impl Future<Output = ()> + Send + 'static, runtime: Handle) {
    let local = Arc::new(Local {
        home: thread::current().id(),
        runtime,
        slot: Mutex::new(WorkState {
            work: Some(Box::pin(work)),
            polling: false,
            woken: false,
            away: false,
        }),
    });
    local.poll_here();
}

struct Local {
    home: ThreadId,
    runtime: Handle,
    slot: Mutex<WorkState>,
}

struct WorkState {
    /// The work, while it is here and not being polled.
    work: Option<Work>,
    /// Being polled on the home thread.
    polling: bool,
    /// Woken on the home thread while being polled there: polled again at once.
    woken: bool,
    /// Woken from another thread: the work belongs to the runtime.
    away: bool,
}

impl Local {
    fn lock(&self) -> MutexGuard<'_, WorkState> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poll_here(self: &Arc<Self>) {
        let mut work = {
            let mut slot = self.lock();
            if slot.polling {
                slot.woken = true;
                return;
            }
            let Some(work) = slot.work.take() else {
                // Done, or moved to the runtime.
                return;
            };
            slot.polling = true;
            work
        };
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            let polled = {
                let _runtime = self.runtime.enter();
                work.as_mut().poll(&mut cx)
            };
            let mut slot = self.lock();
            if polled == Poll::Ready(()) {
                slot.polling = false;
                return;
            }
            if std::mem::take(&mut slot.woken) && !slot.away {
                continue;
            }
            slot.polling = false;
            if slot.away {
                drop(slot);
                drop(self.runtime.spawn(work));
            } else {
                slot.work = Some(work);
            }
            return;
        }
    }

    fn send_away(&self) {
        let work = {
            let mut slot = self.lock();
            slot.away = true;
            if slot.polling {
                // The home thread hands it over once its poll returns.
                return;
            }
            slot.work.take()
        };
        if let Some(work) = work {
            drop(self.runtime.spawn(work));
        }
    }
}

impl Wake for Local {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if thread::current().id() == self.home {
            self.poll_here();
        } else {
            self.send_away();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{future::Future, sync::mpsc, time::Duration};

    use tokio::sync::oneshot;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("runtime-worker")
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Starts `wait` here; then gives the name of the thread it finished on.
    fn started(
        wait: impl Future + Send + 'static,
        runtime: Handle,
    ) -> mpsc::Receiver<Option<String>> {
        let (done, finished) = mpsc::channel();
        start_here(
            async move {
                wait.await;
                let here = thread::current().name().map(str::to_owned);
                done.send(here).expect("sent");
            },
            runtime,
        );
        finished
    }

    fn finished_on(finished: &mpsc::Receiver<Option<String>>) -> Option<String> {
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("finished")
    }

    #[test]
    fn work_woken_by_its_own_thread_is_done_there_before_the_wake_returns() {
        let runtime = runtime();
        let handle = runtime.handle().clone();
        let home = thread::Builder::new().name("home".into()).spawn(move || {
            let (go, wait) = oneshot::channel::<()>();
            let finished = started(wait, handle);
            assert!(finished.try_recv().is_err(), "waits for its wake-up");
            go.send(()).expect("sent");
            finished.try_recv().expect("done within send()")
        });
        let on = home.expect("spawned").join().expect("joined");
        assert_eq!(on.as_deref(), Some("home"));
    }

    #[test]
    fn work_woken_from_another_thread_moves_to_the_runtime() {
        let runtime = runtime();
        let (go, wait) = oneshot::channel::<()>();
        let finished = started(wait, runtime.handle().clone());
        thread::spawn(move || go.send(()).expect("sent"))
            .join()
            .expect("joined");
        assert_eq!(finished_on(&finished).as_deref(), Some("runtime-worker"));
    }

    #[test]
    fn timers_started_here_fire_on_the_runtime() {
        let runtime = runtime();
        // Made at the first poll, inside the runtime's context.
        let sleep = async { tokio::time::sleep(Duration::from_millis(5)).await };
        let finished = started(sleep, runtime.handle().clone());
        assert_eq!(finished_on(&finished).as_deref(), Some("runtime-worker"));
    }
}
