//! Engine tests. Handlers are remote-controlled: each execution announces itself on a
//! channel with a oneshot through which the test settles it, so tests await events
//! instead of sleeping. Under a paused clock, `idle()` lets every ready task run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::*;

pub(super) type Reply = oneshot::Sender<Result<u32, String>>;
pub(super) type Engine = Tasks<u32, u32, String>;

/// An engine with task `t` whose executions are settled by the test.
pub(super) fn engine(options: TaskOptions) -> (Engine, mpsc::UnboundedReceiver<(u32, Reply)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tasks = Engine::new();
    let handler: TaskHandler<u32, u32, String> = Arc::new(move |arg| {
        let tx = tx.clone();
        Box::pin(async move {
            let (reply, settled) = oneshot::channel();
            tx.send((arg, reply)).expect("test gone");
            settled
                .await
                .unwrap_or_else(|_| Err("reply dropped".into()))
        })
    });
    assert!(tasks.register("t", handler, options));
    (tasks, rx)
}

fn serialized(single_trigger: SingleTrigger, max_queue_length: usize) -> TaskOptions {
    TaskOptions {
        single_trigger,
        max_queue_length,
        ..TaskOptions::default()
    }
}

fn call(tasks: &Engine, arg: u32) -> JoinHandle<Result<u32, TaskError<String>>> {
    tokio::spawn(tasks.exec("t", "k", arg))
}

/// Lets every ready task run (the paused clock only advances when all are idle).
async fn idle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn next_run(rx: &mut mpsc::UnboundedReceiver<(u32, Reply)>) -> (u32, Reply) {
    rx.recv().await.expect("handler gone")
}

async fn result(
    handle: JoinHandle<Result<u32, TaskError<String>>>,
) -> Result<u32, TaskError<String>> {
    handle.await.expect("caller panicked")
}

#[tokio::test(start_paused = true)]
async fn serialized_runs_one_at_a_time_in_fifo_order() {
    let (tasks, mut runs) = engine(TaskOptions::default());
    let callers: Vec<_> = (1..=3).map(|i| call(&tasks, i)).collect();
    idle().await;
    let stats = tasks.stats("t").unwrap();
    assert_eq!((stats.running, stats.queued, stats.waiters), (1, 2, 3));
    for i in 1..=3 {
        let (arg, reply) = next_run(&mut runs).await;
        assert_eq!(arg, i);
        idle().await;
        assert!(runs.try_recv().is_err(), "a second execution started");
        reply.send(Ok(arg * 10)).unwrap();
    }
    for (i, caller) in (1..=3).zip(callers) {
        assert_eq!(result(caller).await, Ok(i * 10));
    }
    assert_eq!(tasks.stats("t").unwrap(), TaskStats::default());
}

#[tokio::test(start_paused = true)]
async fn until_idle_waits_for_the_executions_of_one_key_only() {
    let (tasks, mut runs) = engine(TaskOptions::default());
    let keyed = |key: &str, arg| tokio::spawn(tasks.exec("t", key, arg));
    let callers = [keyed("a", 1), keyed("b", 2), keyed("a", 3)];
    idle().await;
    assert!(
        tasks.until_idle("t", "c").now_or_never().is_some(),
        "nothing of c"
    );
    let b_idle = tokio::spawn(tasks.until_idle("t", "b"));
    let a_idle = tokio::spawn(tasks.until_idle("t", "a"));
    for i in 1..=3 {
        let (arg, reply) = next_run(&mut runs).await;
        assert_eq!(arg, i);
        idle().await;
        assert_eq!(
            b_idle.is_finished(),
            i > 2,
            "b waits until its run ended ({i})"
        );
        assert!(!a_idle.is_finished(), "a still runs or waits ({i})");
        reply.send(Ok(arg)).unwrap();
    }
    b_idle.await.unwrap();
    a_idle.await.unwrap();
    for caller in callers {
        assert!(result(caller).await.is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn non_serialized_runs_concurrently() {
    let options = TaskOptions {
        serialized: false,
        ..TaskOptions::default()
    };
    let (tasks, mut runs) = engine(options);
    let callers: Vec<_> = (1..=3).map(|i| call(&tasks, i)).collect();
    let mut replies = Vec::new();
    for _ in 1..=3 {
        replies.push(next_run(&mut runs).await);
    }
    assert_eq!(tasks.stats("t").unwrap().running, 3);
    for (arg, reply) in replies.into_iter().rev() {
        reply.send(Ok(arg + 100)).unwrap();
    }
    for (i, caller) in (1..=3).zip(callers) {
        assert_eq!(result(caller).await, Ok(i + 100));
    }
    assert_eq!(tasks.stats("t").unwrap().running, 0);
}

#[tokio::test(start_paused = true)]
async fn queue_full_exactly_at_max_queue_length() {
    let (tasks, mut runs) = engine(serialized(SingleTrigger::Off, 2));
    let running = call(&tasks, 1);
    let queued: Vec<_> = (2..=3).map(|i| call(&tasks, i)).collect();
    let refused = tasks
        .exec("t", "k", 4)
        .now_or_never()
        .expect("refused at once");
    assert_eq!(refused, Err(TaskError::QueueFull("t".into())));
    assert_eq!(
        refused.unwrap_err().to_string(),
        "Max execution queue size reached for task t"
    );
    // Once the running execution settles, an entry frees up.
    let (_, reply) = next_run(&mut runs).await;
    reply.send(Ok(1)).unwrap();
    assert_eq!(result(running).await, Ok(1));
    let fourth = call(&tasks, 4);
    for i in 2..=4 {
        let (arg, reply) = next_run(&mut runs).await;
        assert_eq!(arg, i);
        reply.send(Ok(arg)).unwrap();
    }
    for (i, caller) in (2..=4).zip(queued.into_iter().chain([fourth])) {
        assert_eq!(result(caller).await, Ok(i));
    }
}

#[tokio::test(start_paused = true)]
async fn join_joins_the_running_execution_and_never_counts() {
    let (tasks, mut runs) = engine(serialized(SingleTrigger::Join, 0));
    let callers: Vec<_> = (1..=5).map(|i| call(&tasks, i)).collect();
    let (arg, reply) = next_run(&mut runs).await;
    assert_eq!(arg, 1);
    let stats = tasks.stats("t").unwrap();
    assert_eq!((stats.running, stats.queued, stats.waiters), (1, 0, 5));
    reply.send(Ok(42)).unwrap();
    for caller in callers {
        assert_eq!(result(caller).await, Ok(42));
    }
    idle().await;
    assert!(runs.try_recv().is_err(), "joined calls must not run again");
    // After it settled, a call starts a fresh execution.
    let later = call(&tasks, 6);
    let (arg, reply) = next_run(&mut runs).await;
    assert_eq!(arg, 6);
    reply.send(Ok(6)).unwrap();
    assert_eq!(result(later).await, Ok(6));
}

#[tokio::test(start_paused = true)]
async fn next_burst_during_a_run_makes_exactly_one_more_run() {
    let (tasks, mut runs) = engine(serialized(SingleTrigger::Next, 1));
    let first = call(&tasks, 0);
    let (arg, first_reply) = next_run(&mut runs).await;
    assert_eq!(arg, 0);
    let burst: Vec<_> = (1..=10).map(|i| call(&tasks, i)).collect();
    idle().await;
    let stats = tasks.stats("t").unwrap();
    assert_eq!((stats.running, stats.queued, stats.waiters), (1, 1, 11));
    first_reply.send(Ok(100)).unwrap();
    assert_eq!(
        result(first).await,
        Ok(100),
        "the first call is not joined by the burst"
    );
    let (arg, reply) = next_run(&mut runs).await;
    assert_eq!(
        arg, 1,
        "the entry runs with the args of the call that created it"
    );
    reply.send(Ok(200)).unwrap();
    for caller in burst {
        assert_eq!(result(caller).await, Ok(200));
    }
    idle().await;
    assert!(runs.try_recv().is_err(), "exactly one more run");
}

#[tokio::test(start_paused = true)]
async fn timeout_rejects_the_caller_but_the_handler_keeps_its_slot() {
    let options = TaskOptions {
        timeout: Duration::from_secs(5),
        ..TaskOptions::default()
    };
    let (tasks, mut runs) = engine(options);
    let started = tokio::time::Instant::now();
    let first = call(&tasks, 1);
    let (_, first_reply) = next_run(&mut runs).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = call(&tasks, 2);
    assert_eq!(result(first).await, Err(TaskError::TimedOut));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(
        TaskError::<String>::TimedOut.to_string(),
        "operation timed out"
    );
    // The timed-out handler still holds the slot.
    idle().await;
    assert!(
        runs.try_recv().is_err(),
        "the queue advanced before the handler settled"
    );
    assert_eq!(tasks.stats("t").unwrap().running, 1);
    first_reply.send(Ok(1)).unwrap();
    let (arg, reply) = next_run(&mut runs).await;
    assert_eq!(arg, 2);
    reply.send(Ok(2)).unwrap();
    assert_eq!(
        result(second).await,
        Ok(2),
        "the second caller's deadline runs from its call"
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_applies_to_non_serialized_calls() {
    let options = TaskOptions {
        timeout: Duration::from_secs(1),
        serialized: false,
        ..TaskOptions::default()
    };
    let (tasks, mut runs) = engine(options);
    let caller = call(&tasks, 1);
    let (_, reply) = next_run(&mut runs).await;
    assert_eq!(result(caller).await, Err(TaskError::TimedOut));
    assert_eq!(
        tasks.stats("t").unwrap().running,
        1,
        "the handler is not cancelled"
    );
    drop(reply);
    idle().await;
    assert_eq!(tasks.stats("t").unwrap().running, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failure_reaches_every_joined_caller() {
    let (tasks, mut runs) = engine(serialized(SingleTrigger::Join, 20));
    let callers: Vec<_> = (1..=4).map(|i| call(&tasks, i)).collect();
    let (_, reply) = next_run(&mut runs).await;
    reply.send(Err("boom".into())).unwrap();
    for caller in callers {
        let error = result(caller).await.unwrap_err();
        assert_eq!(error, TaskError::Failed("boom".into()));
        assert_eq!(error.to_string(), "boom");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_a_failure_and_the_queue_goes_on() {
    let tasks = Engine::new();
    let handler: TaskHandler<u32, u32, String> = Arc::new(|arg| match arg {
        0 => panic!("panic while called"),
        1 => Box::pin(async { panic!("panic while polled") }),
        _ => Box::pin(async move { Ok(arg) }),
    });
    tasks.register("t", handler, TaskOptions::default());
    let callers: Vec<_> = (0..=2).map(|i| call(&tasks, i)).collect();
    let outcomes: Vec<_> = futures_util::future::join_all(callers).await;
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        outcomes,
        [
            Err(TaskError::Failed(
                "Task t panicked: panic while called".into()
            )),
            Err(TaskError::Failed(
                "Task t panicked: panic while polled".into()
            )),
            Ok(2),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_mapper_serves_error_types_without_from() {
    #[derive(Clone, Debug, PartialEq)]
    struct Failure(String);
    let tasks = Tasks::<(), (), Failure>::with_panic_mapper(|p| Failure(p.message));
    let handler: TaskHandler<(), (), Failure> = Arc::new(|()| Box::pin(async { panic!("{}", 7) }));
    tasks.register("p", handler, TaskOptions::default());
    let outcome = tasks.exec("p", "k", ()).await;
    assert_eq!(outcome, Err(TaskError::Failed(Failure("7".into()))));
}

#[tokio::test(start_paused = true)]
async fn a_caller_dropping_its_future_does_not_stall_the_queue() {
    let (tasks, mut runs) = engine(TaskOptions::default());
    drop(tasks.exec("t", "k", 1)); // never polled
    let aborted = call(&tasks, 2);
    let kept = call(&tasks, 3);
    let (arg, reply) = next_run(&mut runs).await;
    assert_eq!(arg, 1, "the execution runs without its caller");
    aborted.abort();
    idle().await;
    assert_eq!(
        tasks.stats("t").unwrap().waiters,
        1,
        "callers that gave up are not counted"
    );
    reply.send(Ok(1)).unwrap();
    let (arg, reply) = next_run(&mut runs).await;
    assert_eq!(arg, 2);
    reply.send(Ok(2)).unwrap();
    let (arg, reply) = next_run(&mut runs).await;
    assert_eq!(arg, 3);
    reply.send(Ok(3)).unwrap();
    assert_eq!(result(kept).await, Ok(3));
}

#[tokio::test(start_paused = true)]
async fn registry() {
    let (tasks, _runs) = engine(serialized(SingleTrigger::Next, 3));
    let other: TaskHandler<u32, u32, String> = Arc::new(|_| Box::pin(async { Ok(0) }));
    assert!(
        !tasks.register("t", other, TaskOptions::default()),
        "duplicate"
    );
    assert_eq!(
        tasks.options("t").unwrap().single_trigger,
        SingleTrigger::Next
    );
    assert!(tasks.is_registered("t") && !tasks.is_registered("u"));
    assert_eq!(tasks.options("u"), None);
    assert_eq!(tasks.stats("u"), None);
    let missing = tasks.exec("u", "k", 1).await.unwrap_err();
    assert_eq!(missing, TaskError::NoSuchTask("u".into()));
    assert_eq!(missing.to_string(), "No such task");
    let options = TaskOptions::default();
    assert_eq!(options.timeout, Duration::from_secs(30));
    assert!(options.serialized && options.max_queue_length == 20);
    assert_eq!(SingleTrigger::from(true), SingleTrigger::Join);
}

#[tokio::test(start_paused = true)]
async fn close_drains_running_and_queued_executions() {
    let (tasks, mut runs) = engine(TaskOptions::default());
    let callers: Vec<_> = (1..=2).map(|i| call(&tasks, i)).collect();
    let (_, reply) = next_run(&mut runs).await;
    let closing = tokio::spawn({
        let tasks = tasks.clone();
        async move { tasks.close(Duration::from_secs(10)).await }
    });
    idle().await;
    assert!(tasks.is_closed());
    assert_eq!(tasks.exec("t", "k", 3).await, Err(TaskError::Closed));
    reply.send(Ok(1)).unwrap();
    let (arg, reply) = next_run(&mut runs).await;
    assert_eq!(arg, 2, "queued executions still run");
    assert!(!closing.is_finished());
    reply.send(Ok(2)).unwrap();
    closing.await.unwrap();
    for (i, caller) in (1..=2).zip(callers) {
        assert_eq!(result(caller).await, Ok(i));
    }
    tasks.close(Duration::ZERO).await; // twice is fine
}

#[tokio::test(start_paused = true)]
async fn close_drops_what_is_left_after_the_grace_period() {
    let options = TaskOptions {
        timeout: Duration::from_secs(60),
        ..TaskOptions::default()
    };
    let (tasks, mut runs) = engine(options);
    let callers: Vec<_> = (1..=2).map(|i| call(&tasks, i)).collect();
    let (_, _hung) = next_run(&mut runs).await;
    let started = tokio::time::Instant::now();
    tasks.close(Duration::from_secs(3)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    // The running call may have run; the queued one did not: a caller elsewhere may
    // send only that one again.
    let outcomes = futures_util::future::join_all(callers.into_iter().map(result)).await;
    assert_eq!(
        outcomes,
        [Err(TaskError::Abandoned), Err(TaskError::Closed)]
    );
    assert_eq!(tasks.stats("t").unwrap(), TaskStats::default());
}

#[tokio::test(start_paused = true)]
async fn close_tells_the_callers_of_running_calls_that_they_may_have_run() {
    let options = TaskOptions {
        serialized: false,
        timeout: Duration::from_secs(60),
        ..TaskOptions::default()
    };
    let (tasks, mut runs) = engine(options);
    let callers: Vec<_> = (1..=2).map(|i| call(&tasks, i)).collect();
    let _hung = [next_run(&mut runs).await, next_run(&mut runs).await];
    tasks.close(Duration::from_secs(1)).await;
    let outcomes = futures_util::future::join_all(callers.into_iter().map(result)).await;
    assert_eq!(
        outcomes,
        [Err(TaskError::Abandoned), Err(TaskError::Abandoned)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serialized_under_contention_never_overlaps() {
    let tasks = Engine::new();
    let busy = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let handler: TaskHandler<u32, u32, String> = {
        let (busy, runs) = (busy.clone(), runs.clone());
        Arc::new(move |arg| {
            let (busy, runs) = (busy.clone(), runs.clone());
            Box::pin(async move {
                assert!(!busy.swap(true, SeqCst), "overlapping executions");
                tokio::task::yield_now().await;
                runs.fetch_add(1, SeqCst);
                busy.store(false, SeqCst);
                Ok(arg)
            })
        })
    };
    let options = serialized(SingleTrigger::Off, usize::MAX);
    tasks.register("t", handler, options);
    let callers: Vec<_> = (0..2000)
        .map(|i| {
            let tasks = tasks.clone();
            tokio::spawn(async move { tasks.exec("t", "k", i).await })
        })
        .collect();
    for (i, caller) in (0..).zip(callers) {
        assert_eq!(caller.await.unwrap(), Ok(i));
    }
    assert_eq!(runs.load(SeqCst), 2000);
    assert_eq!(tasks.stats("t").unwrap(), TaskStats::default());
}
