//! The state machine of one serialized task: the running execution's callers and the FIFO
//! queue of entries behind it.
//!
//! Pure state, no I/O and no awaiting: the engine holds it under a mutex for a few
//! instructions at a time (admit a call, settle an execution, take a snapshot), and does
//! the spawning and the delivering outside the lock.
//!
//! Invariant: an entry is queued only while an execution runs. [`Queue::settle`] promotes
//! the next entry to running in the same step that finishes the previous execution.

use std::collections::VecDeque;
use std::mem;

use tokio::sync::oneshot;

use super::{SingleTrigger, TaskError, TaskStats};

/// What a caller eventually receives.
pub(super) type Outcome<R, E> = Result<R, TaskError<E>>;

/// One caller waiting for an execution.
pub(super) type Waiter<R, E> = oneshot::Sender<Outcome<R, E>>;

/// Waiting callers of one execution.
pub(super) type Waiters<R, E> = Vec<Waiter<R, E>>;

/// An execution waiting for its turn: the key and arguments of the call that created it
/// and every caller that joined it.
pub(super) struct Entry<A, R, E> {
    key: Box<str>,
    args: A,
    waiters: Waiters<R, E>,
}

/// How a call was admitted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission<A> {
    /// Nothing was running: the call's execution is now the running one and the caller
    /// must start it with these arguments.
    Start(A),
    /// The call joined the running execution.
    JoinedRunning,
    /// The call joined the first queued entry.
    JoinedQueued,
    /// The call created an entry; the queue now holds this many.
    Queued(usize),
    /// The queue is full; nothing changed (the caller's waiter was dropped).
    Full,
}

/// The serialized execution state of one task.
pub(super) struct Queue<A, R, E> {
    /// The callers of the running execution; `None` when idle.
    running: Option<Waiters<R, E>>,
    /// The key of the call that created the running execution.
    running_key: Box<str>,
    entries: VecDeque<Entry<A, R, E>>,
}

impl<A, R, E> Queue<A, R, E> {
    pub(super) fn new() -> Self {
        Self {
            running: None,
            running_key: Box::default(),
            entries: VecDeque::new(),
        }
    }

    /// Admits a call for `key` with its arguments and its waiter, following `trigger`.
    pub(super) fn admit(
        &mut self,
        trigger: SingleTrigger,
        max_queue_length: usize,
        key: &str,
        args: A,
        waiter: Waiter<R, E>,
    ) -> Admission<A> {
        let Some(running) = self.running.as_mut() else {
            debug_assert!(self.entries.is_empty(), "entries queued while idle");
            self.running = Some(vec![waiter]);
            self.running_key = key.into();
            return Admission::Start(args);
        };
        match trigger {
            SingleTrigger::Join => {
                attach(running, waiter);
                return Admission::JoinedRunning;
            }
            SingleTrigger::Next => {
                if let Some(first) = self.entries.front_mut() {
                    attach(&mut first.waiters, waiter);
                    return Admission::JoinedQueued;
                }
            }
            SingleTrigger::Off => {}
        }
        if self.entries.len() >= max_queue_length {
            return Admission::Full;
        }
        self.entries.push_back(Entry {
            key: key.into(),
            args,
            waiters: vec![waiter],
        });
        Admission::Queued(self.entries.len())
    }

    /// Finishes the running execution: returns its callers, and the arguments of the next
    /// entry, which is now the running execution (its callers stay attached to it).
    pub(super) fn settle(&mut self) -> (Waiters<R, E>, Option<A>) {
        let done = self.running.take().unwrap_or_default();
        let next = self.entries.pop_front().map(|entry| {
            self.running = Some(entry.waiters);
            self.running_key = entry.key;
            entry.args
        });
        (done, next)
    }

    /// Whether an execution created by a call for `key` runs or waits.
    pub(super) fn holds(&self, key: &str) -> bool {
        (self.running.is_some() && *self.running_key == *key)
            || self.entries.iter().any(|entry| *entry.key == *key)
    }

    /// Empties the state when its execution is abandoned (shutdown): returns the running
    /// execution's callers, and the rest, to be dropped outside the lock (a dropped
    /// waiter tells its caller `Closed`).
    pub(super) fn abandon(&mut self) -> (Waiters<R, E>, Self) {
        let running = self.running.take().unwrap_or_default();
        (running, mem::replace(self, Self::new()))
    }

    pub(super) fn stats(&self) -> TaskStats {
        let open = |waiters: &Waiters<R, E>| waiters.iter().filter(|w| !w.is_closed()).count();
        TaskStats {
            running: usize::from(self.running.is_some()),
            queued: self.entries.len(),
            waiters: self.running.as_ref().map_or(0, open)
                + self.entries.iter().map(|e| open(&e.waiters)).sum::<usize>(),
        }
    }
}

/// Adds a waiter, dropping the callers that gave up now and then (at each power of two
/// from 16), so a hung execution joined by a stream of timing-out callers stays bounded.
fn attach<R, E>(waiters: &mut Waiters<R, E>, waiter: Waiter<R, E>) {
    if waiters.len() >= 16 && waiters.len().is_power_of_two() {
        waiters.retain(|w| !w.is_closed());
    }
    waiters.push(waiter);
}

/// Sends `outcome` to every caller still waiting, cloning for all but the last.
pub(super) fn deliver<R: Clone, E: Clone>(waiters: Waiters<R, E>, outcome: Outcome<R, E>) {
    let mut open = waiters.into_iter().filter(|w| !w.is_closed()).peekable();
    while let Some(waiter) = open.next() {
        if open.peek().is_none() {
            let _ = waiter.send(outcome);
            return;
        }
        let _ = waiter.send(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Q = Queue<u32, u32, String>;
    type Rx = oneshot::Receiver<Outcome<u32, String>>;

    fn admit(q: &mut Q, trigger: SingleTrigger, max: usize, args: u32) -> (Admission<u32>, Rx) {
        let (tx, rx) = oneshot::channel();
        (q.admit(trigger, max, &format!("k{args}"), args, tx), rx)
    }

    #[test]
    fn off_starts_then_queues_fifo_until_full() {
        let mut q = Q::new();
        assert_eq!(
            admit(&mut q, SingleTrigger::Off, 2, 1).0,
            Admission::Start(1)
        );
        assert_eq!(
            admit(&mut q, SingleTrigger::Off, 2, 2).0,
            Admission::Queued(1)
        );
        assert_eq!(
            admit(&mut q, SingleTrigger::Off, 2, 3).0,
            Admission::Queued(2)
        );
        let (full, mut rx) = admit(&mut q, SingleTrigger::Off, 2, 4);
        assert_eq!(full, Admission::Full);
        assert!(rx.try_recv().is_err(), "the refused waiter is dropped");
        let s = q.stats();
        assert_eq!((s.running, s.queued), (1, 2));
        assert_eq!(q.settle().1, Some(2));
        assert_eq!(q.settle().1, Some(3));
        assert_eq!(q.settle().1, None);
        assert_eq!(q.stats(), TaskStats::default());
    }

    #[test]
    fn join_joins_running_and_never_counts() {
        let mut q = Q::new();
        let (start, first) = admit(&mut q, SingleTrigger::Join, 0, 1);
        assert_eq!(start, Admission::Start(1));
        let mut rxs: Vec<Rx> = vec![first];
        for i in 2..40 {
            let (admission, rx) = admit(&mut q, SingleTrigger::Join, 0, i);
            assert_eq!(admission, Admission::JoinedRunning);
            rxs.push(rx);
        }
        assert_eq!(q.stats().waiters, 39);
        let (waiters, next) = q.settle();
        assert_eq!(next, None);
        deliver(waiters, Ok(7));
        assert!(rxs.iter_mut().all(|rx| rx.try_recv() == Ok(Ok(7))));
    }

    #[test]
    fn next_joins_first_entry() {
        let mut q = Q::new();
        let (start, _a) = admit(&mut q, SingleTrigger::Next, 1, 1);
        assert_eq!(start, Admission::Start(1));
        let (queued, _b) = admit(&mut q, SingleTrigger::Next, 1, 2);
        assert_eq!(queued, Admission::Queued(1));
        let (joined, _c) = admit(&mut q, SingleTrigger::Next, 1, 3);
        assert_eq!(joined, Admission::JoinedQueued);
        assert_eq!(q.stats().waiters, 3);
        let (done, next) = q.settle();
        assert_eq!((done.len(), next), (1, Some(2)));
        assert_eq!(q.stats().waiters, 2, "the entry's callers moved to running");
        // With max 0, Next cannot create an entry behind a run.
        let mut q = Q::new();
        let _run = admit(&mut q, SingleTrigger::Next, 0, 1);
        assert_eq!(admit(&mut q, SingleTrigger::Next, 0, 2).0, Admission::Full);
    }

    #[test]
    fn attach_prunes_callers_that_gave_up() {
        let mut q = Q::new();
        let _run = admit(&mut q, SingleTrigger::Join, 0, 0);
        for i in 0..1000 {
            drop(admit(&mut q, SingleTrigger::Join, 0, i).1);
        }
        assert_eq!(q.stats().waiters, 1);
        let (waiters, _) = q.settle();
        assert!(waiters.len() < 40, "{} waiters kept", waiters.len());
    }

    #[test]
    fn it_holds_a_key_while_an_execution_of_its_calls_runs_or_waits() {
        let mut q = Q::new();
        assert!(!q.holds("k1"));
        let _run = admit(&mut q, SingleTrigger::Off, 5, 1);
        let _queued = admit(&mut q, SingleTrigger::Off, 5, 2);
        assert!(q.holds("k1") && q.holds("k2") && !q.holds("k3"));
        // A call that joins another's execution creates none of its own.
        let mut joined = Q::new();
        let _run = admit(&mut joined, SingleTrigger::Join, 5, 1);
        let _join = admit(&mut joined, SingleTrigger::Join, 5, 2);
        assert!(joined.holds("k1") && !joined.holds("k2"));

        q.settle();
        assert!(!q.holds("k1") && q.holds("k2"));
        q.settle();
        assert!(!q.holds("k2"));
    }

    #[test]
    fn abandon_hands_over_the_running_callers_and_closes_the_others() {
        let mut q = Q::new();
        let (_, mut a) = admit(&mut q, SingleTrigger::Off, 5, 1);
        let (_, mut b) = admit(&mut q, SingleTrigger::Off, 5, 2);
        let (running, rest) = q.abandon();
        drop(rest);
        assert!(b.try_recv().is_err(), "the queued caller is closed");
        assert_eq!(running.len(), 1);
        deliver(running, Err(TaskError::Abandoned));
        assert_eq!(a.try_recv(), Ok(Err(TaskError::Abandoned)));
        assert_eq!(q.stats(), TaskStats::default());
    }
}
