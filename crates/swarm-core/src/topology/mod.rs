//! Cluster membership: who is in the cluster, its change events, and the master.
//!
//! The layer is cut at the I/O edge. A [`Discovery`] (the Kubernetes watcher in
//! [`KubeDiscovery`], or [`StandaloneDiscovery`]) only produces *full* sets of endpoints;
//! [`start`] feeds each set into a [`MemberSet`], which swaps it in at once, diffs it
//! against the previous one and recomputes the master. So a relist after an outage is
//! one atomic update, and the membership logic is tested without a cluster
//! ([`ChannelDiscovery`]).
//!
//! Compared with 0.5.1 (docs/compat.md §2): a node is an endpoint with `ready == true`;
//! `NodeAdded`/`NodeRemoved` are never emitted for a local IP, a local IP that vanishes
//! gives [`TopologyEvent::LocalLeft`] (the facade's `process.emit('SIGTERM')`); the
//! master is the smallest node IP in string order, recomputed after every change, unless
//! a Lease elects it ([`LeaseElection`]).
//! EndpointSlices are preferred, with a fallback to the core `endpoints` resource that
//! 0.5.1's RBAC grants.

mod discovery;
mod kube;
mod kube_config;
pub mod kube_objects;
mod lease;
mod master;
mod member;
mod standalone;
mod token_file;
mod view;

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use self::discovery::{ChannelDiscovery, Discovery, DiscoveryUpdate};
pub use self::kube::KubeDiscovery;
pub use self::kube_config::{client, KubeSettings};
pub use self::kube_objects::AddressFamily;
pub use self::lease::{LeaseElection, LeaseSettings};
pub use self::master::MasterRule;
pub use self::member::Member;
pub use self::standalone::StandaloneDiscovery;
pub use self::view::{MemberSet, View};

/// The `tracing` target of the Kubernetes source.
pub const KUBERNETES_TARGET: &str = "node_swarm_kb::kubernetes";

/// A change of the topology, in the order [`MemberSet::apply`] documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyEvent {
    /// A remote IP became a node.
    NodeAdded(Member),
    /// A remote node is gone (vanished, or no longer ready).
    NodeRemoved(Member),
    /// A local IP that was a node is terminating or no longer listed: the pod is being
    /// taken out of the Service.
    LocalLeft(Member),
    /// A local IP that was a node is still listed and not terminating, and turned not
    /// ready (out of every ring meanwhile) or ready again (`ready` says which).
    ReadinessChanged(Member),
    /// The master ([`MasterRule`]) changed.
    MasterChanged {
        /// The master before this change.
        previous: Option<String>,
        /// The master now.
        current: Option<String>,
    },
    /// The source failed; once per outage, the last topology stays in force.
    Error(TopologyError),
    /// The source answers again after an [`Error`](TopologyEvent::Error).
    Recovered,
    /// The first full set of endpoints has been applied: sent once, after that set's
    /// own events, so `ready` always follows the initial `NodeAdded`s.
    Ready,
}

/// The errors of the topology layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The Kubernetes settings cannot make a client (URL, CA, token file).
    #[error("invalid Kubernetes settings: {0}")]
    Config(String),
    /// Neither EndpointSlices nor Endpoints may be listed.
    #[error(
        "cannot list endpointslices.discovery.k8s.io nor endpoints in namespace {namespace}: \
         grant get/list/watch on endpointslices.discovery.k8s.io (or on endpoints)"
    )]
    Forbidden {
        /// The watched namespace.
        namespace: String,
    },
    /// The API server failed or could not be reached.
    #[error("Kubernetes API error on {resource}: {message}")]
    Api {
        /// The resource being listed or watched.
        resource: &'static str,
        /// What failed.
        message: String,
    },
    /// The topology stopped (cancelled) before the first set of endpoints.
    #[error("the topology stopped before it was ready")]
    Stopped,
}

/// The caller's side of a running topology: the latest [`View`] and readiness.
#[derive(Clone, Debug)]
pub struct TopologyHandle {
    view: watch::Receiver<Arc<View>>,
    /// The Kubernetes resource watched, once known.
    source: Arc<OnceLock<&'static str>>,
}

impl TopologyHandle {
    /// The latest view. Published before the events of the same change are sent.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.borrow())
    }

    /// The resource of the Kubernetes API the source watches, once it chose one.
    pub fn source(&self) -> Option<&'static str> {
        self.source.get().copied()
    }

    /// A receiver of every new view, for whoever reacts to changes of the view itself.
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Whether the first full set of endpoints has been applied.
    pub fn is_ready(&self) -> bool {
        self.view.borrow().generation > 0
    }

    /// Resolves once the first full set of endpoints has been applied (at once if it
    /// has been). Waits as long as the source fails: bound it with a timeout if needed.
    /// Fails with [`TopologyError::Stopped`] if the topology stops first.
    pub async fn ready(&self) -> Result<(), TopologyError> {
        let mut view = self.view.clone();
        let ready = view.wait_for(|v| v.generation > 0).await;
        ready.map(drop).map_err(|_| TopologyError::Stopped)
    }
}

/// Starts the topology: runs `discovery` and applies its updates to a [`MemberSet`]
/// owned by `local_ips`, until `cancel` fires.
///
/// Returns the handle and the events. Each update's view is published before its events
/// are sent; `Error` and `Recovered` from the source are passed through. The event
/// receiver may be dropped if not needed. Must be called within a Tokio runtime.
pub fn start(
    discovery: Box<dyn Discovery>,
    local_ips: Vec<String>,
    cancel: CancellationToken,
) -> (TopologyHandle, mpsc::UnboundedReceiver<TopologyEvent>) {
    let (events, events_rx) = mpsc::unbounded_channel();
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let mut set = MemberSet::new(local_ips);
    let (view_tx, view_rx) = watch::channel(set.view());
    let source = Arc::new(OnceLock::new());
    let watching = source.clone();

    tokio::spawn(discovery.run(updates_tx, cancel.child_token()));
    tokio::spawn(async move {
        let mut ready = false;
        loop {
            let update = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                update = updates.recv() => match update {
                    Some(update) => update,
                    None => break,
                },
            };
            let batch = match update {
                DiscoveryUpdate::Endpoints(endpoints) => {
                    let mut batch = set.apply(endpoints);
                    view_tx.send_replace(set.view());
                    if !std::mem::replace(&mut ready, true) {
                        if !set.is_listed() {
                            // Said without DEBUG: a wrong selector leaves `nodes` empty and
                            // `amIMaster` false for ever, silently.
                            let ips: Vec<&str> =
                                set.local_ips().iter().map(String::as_str).collect();
                            warn!(
                                target: KUBERNETES_TARGET,
                                "none of this pod's IPs ({}) is among the endpoints watched yet; if it does not \
                                 join, check appName (or kubernetes.selector) and the namespace",
                                ips.join(", ")
                            );
                        }
                        batch.push(TopologyEvent::Ready);
                    }
                    batch
                }
                DiscoveryUpdate::Master(rule) => {
                    let batch = set.elect(rule);
                    view_tx.send_replace(set.view());
                    batch
                }
                DiscoveryUpdate::Error(error) => vec![TopologyEvent::Error(error)],
                DiscoveryUpdate::Recovered => vec![TopologyEvent::Recovered],
                DiscoveryUpdate::Watching(resource) => {
                    let _ = watching.set(resource);
                    Vec::new()
                }
            };
            for event in batch {
                // Nobody listening is fine: the view is still kept up to date.
                let _ = events.send(event);
            }
        }
    });
    let handle = TopologyHandle {
        view: view_rx,
        source,
    };
    (handle, events_rx)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ips(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<TopologyEvent>) -> TopologyEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event within 5 s")
            .expect("the topology is running")
    }

    #[tokio::test]
    async fn feeds_from_a_channel_discovery() {
        let (discovery, script) = ChannelDiscovery::new();
        let cancel = CancellationToken::new();
        let (handle, mut events) = start(Box::new(discovery), ips(&["10.0.0.9"]), cancel.clone());
        assert!(!handle.is_ready());
        assert_eq!(handle.view().generation, 0);

        let members = |list: &[&str]| list.iter().map(|ip| Member::from_ip(*ip)).collect();
        script
            .send(DiscoveryUpdate::Endpoints(members(&[
                "10.0.0.9",
                "10.0.0.10",
            ])))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), handle.ready())
            .await
            .expect("ready within 5 s")
            .unwrap();
        assert_eq!(
            next(&mut events).await,
            TopologyEvent::NodeAdded(Member::from_ip("10.0.0.10"))
        );
        assert_eq!(
            next(&mut events).await,
            TopologyEvent::MasterChanged {
                previous: None,
                current: Some("10.0.0.10".into())
            }
        );
        assert_eq!(
            next(&mut events).await,
            TopologyEvent::Ready,
            "ready follows the first set's events"
        );
        assert_eq!(handle.view().master.as_deref(), Some("10.0.0.10"));

        let outage = TopologyError::Api {
            resource: "endpointslices",
            message: "connection refused".into(),
        };
        script.send(DiscoveryUpdate::Error(outage.clone())).unwrap();
        assert_eq!(next(&mut events).await, TopologyEvent::Error(outage));
        assert_eq!(handle.view().nodes.len(), 2, "the last set stays in force");
        script.send(DiscoveryUpdate::Recovered).unwrap();
        script
            .send(DiscoveryUpdate::Endpoints(members(&["10.0.0.9"])))
            .unwrap();
        assert_eq!(next(&mut events).await, TopologyEvent::Recovered);
        assert_eq!(
            next(&mut events).await,
            TopologyEvent::NodeRemoved(Member::from_ip("10.0.0.10"))
        );
        let changed = next(&mut events).await;
        assert!(matches!(changed, TopologyEvent::MasterChanged { .. }));
        assert_eq!(handle.view().master.as_deref(), Some("10.0.0.9"));
        assert_eq!(handle.view().generation, 2);

        cancel.cancel();
        let end = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        assert_eq!(end.expect("the events end on cancellation"), None);
        assert_eq!(handle.view().generation, 2, "the last view stays readable");
    }

    #[tokio::test]
    async fn ready_fails_when_stopped_first() {
        let (discovery, _script) = ChannelDiscovery::new();
        let cancel = CancellationToken::new();
        let (handle, _events) = start(Box::new(discovery), vec![], cancel.clone());
        cancel.cancel();
        let ready = tokio::time::timeout(Duration::from_secs(5), handle.ready()).await;
        assert_eq!(ready.expect("settles"), Err(TopologyError::Stopped));
    }

    #[tokio::test]
    async fn standalone_holds_only_the_local_ips() {
        let local = ips(&["10.1.0.3", "10.1.0.2"]);
        let discovery = StandaloneDiscovery::new(local.clone());
        let (handle, mut events) = start(Box::new(discovery), local, CancellationToken::new());
        handle.ready().await.unwrap();
        let view = handle.view();
        assert_eq!(
            view.nodes.keys().map(|ip| &**ip).collect::<Vec<_>>(),
            ["10.1.0.2", "10.1.0.3"]
        );
        assert_eq!(view.master.as_deref(), Some("10.1.0.2"));
        // Local IPs are never announced; only the master is.
        assert!(matches!(
            next(&mut events).await,
            TopologyEvent::MasterChanged { .. }
        ));
    }
}
