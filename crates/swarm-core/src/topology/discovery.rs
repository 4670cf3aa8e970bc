//! The I/O edge of the topology: where the endpoints come from.
//!
//! A [`Discovery`] pushes full sets of endpoints into a channel; everything after that
//! (the member set, the diff, the master) is pure and tested without a cluster. The
//! real sources are [`KubeDiscovery`](super::KubeDiscovery) and
//! [`StandaloneDiscovery`](super::StandaloneDiscovery); [`ChannelDiscovery`] lets tests
//! and in-process clusters script the membership.

use futures_util::future::BoxFuture;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;

use super::{MasterRule, Member, TopologyError};

/// What a [`Discovery`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryUpdate {
    /// The full current set of endpoints, ready or not.
    Endpoints(Vec<Member>),
    /// The source failed; sent once per outage, the last set stays in force.
    Error(TopologyError),
    /// The source answers again after an [`Error`](DiscoveryUpdate::Error).
    Recovered,
    /// The master is chosen by this rule from now on (a Lease's election).
    Master(MasterRule),
    /// The source watches this resource of the Kubernetes API.
    Watching(&'static str),
}

/// A source of endpoints.
pub trait Discovery: Send + 'static {
    /// Runs until `cancel` fires, sending every change as a full set to `out`.
    ///
    /// Must not return before cancellation unless `out` is closed: the topology takes a
    /// finished discovery as the end of the topology.
    fn run(
        self: Box<Self>,
        out: UnboundedSender<DiscoveryUpdate>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// A discovery that forwards whatever is sent into its channel.
#[derive(Debug)]
pub struct ChannelDiscovery {
    updates: UnboundedReceiver<DiscoveryUpdate>,
}

impl ChannelDiscovery {
    /// The discovery, and the sender that scripts it.
    pub fn new() -> (Self, UnboundedSender<DiscoveryUpdate>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ChannelDiscovery { updates: rx }, tx)
    }
}

impl Discovery for ChannelDiscovery {
    fn run(
        mut self: Box<Self>,
        out: UnboundedSender<DiscoveryUpdate>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let update = tokio::select! {
                    _ = cancel.cancelled() => return,
                    update = self.updates.recv() => update,
                };
                let Some(update) = update else {
                    // The script is over: stay, like a real source, until cancelled.
                    return cancel.cancelled().await;
                };
                if out.send(update).is_err() {
                    return;
                }
            }
        })
    }
}

/// Turns a stream of failures and successes into one `Error` per outage and one
/// `Recovered` when it ends, so a retry loop does not flood its listeners.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    down: bool,
}

impl Outage {
    /// A failure: the update to send if this starts an outage.
    pub(crate) fn failed(&mut self, error: TopologyError) -> Option<DiscoveryUpdate> {
        (!std::mem::replace(&mut self.down, true)).then_some(DiscoveryUpdate::Error(error))
    }

    /// Whether an outage is on.
    pub(crate) fn is_down(&self) -> bool {
        self.down
    }

    /// A success: the update to send if this ends an outage.
    pub(crate) fn succeeded(&mut self) -> Option<DiscoveryUpdate> {
        std::mem::replace(&mut self.down, false).then_some(DiscoveryUpdate::Recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(n: u32) -> TopologyError {
        TopologyError::Api {
            resource: "endpointslices",
            message: format!("failure {n}"),
        }
    }

    #[test]
    fn one_error_per_outage_and_one_recovery() {
        let mut outage = Outage::default();
        assert_eq!(outage.succeeded(), None, "no recovery without an outage");
        assert_eq!(outage.failed(err(1)), Some(DiscoveryUpdate::Error(err(1))));
        assert_eq!(outage.failed(err(2)), None);
        assert_eq!(outage.failed(err(3)), None);
        assert_eq!(outage.succeeded(), Some(DiscoveryUpdate::Recovered));
        assert_eq!(outage.succeeded(), None);
        assert_eq!(outage.failed(err(4)), Some(DiscoveryUpdate::Error(err(4))));
    }

    #[tokio::test]
    async fn channel_discovery_forwards_until_cancelled() {
        let (discovery, script) = ChannelDiscovery::new();
        let (out, mut received) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Box::new(discovery).run(out, cancel.clone()));
        script.send(DiscoveryUpdate::Recovered).unwrap();
        assert_eq!(received.recv().await, Some(DiscoveryUpdate::Recovered));
        drop(script);
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "a finished script is not the end");
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(received.recv().await, None);
    }
}
