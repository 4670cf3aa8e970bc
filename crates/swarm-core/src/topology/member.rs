//! One endpoint of the watched Service, as the topology sees it.

use std::sync::Arc;

/// One endpoint of the cluster: an IP and what is known of the pod behind it.
///
/// Only members with `ready == true` are nodes (0.5.1 keeps `subsets[].addresses[]`
/// and ignores `notReadyAddresses[]`); the other fields are informative. Its texts are
/// shared, so the member sets rebuilt on every change of a topology of thousands of
/// endpoints copy no strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The endpoint's IP: the node's identity in the cluster.
    pub ip: Arc<str>,
    /// The pod name, from the endpoint's `targetRef` when it points at a pod.
    pub pod: Option<Arc<str>>,
    /// The Kubernetes node the pod runs on.
    pub node_name: Option<Arc<str>>,
    /// The zone of that node (EndpointSlices only).
    pub zone: Option<Arc<str>>,
    /// Ready to receive traffic: the member is a node.
    pub ready: bool,
    /// Able to serve, even while terminating (EndpointSlice `serving`).
    pub serving: bool,
    /// The pod is shutting down.
    pub terminating: bool,
}

impl Member {
    /// A ready, serving member known only by its IP (standalone mode, tests).
    pub fn from_ip(ip: impl Into<Arc<str>>) -> Self {
        Member {
            ip: ip.into(),
            pod: None,
            node_name: None,
            zone: None,
            ready: true,
            serving: true,
            terminating: false,
        }
    }
}
