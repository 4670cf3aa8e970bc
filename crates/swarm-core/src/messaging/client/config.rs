//! The client's settings, and why a send failed.

use super::*;
use crate::ring::PeerRings;

/// Settings of the client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The messaging port of the peers.
    pub port: u16,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How long a request may take, from sending to the end of the reply.
    pub request_timeout: Duration,
    /// How long sent data may stay unacknowledged before the connection is given up
    /// (TCP_USER_TIMEOUT, on Linux), and idle connections are probed: a peer behind a cut link is
    /// noticed in this time, while a live peer may take its time to answer.
    pub link_timeout: Duration,
    /// The source address of outgoing connections, so peers see this node's IP as `from`.
    pub local_address: Option<IpAddr>,
    /// Signs every request when set.
    pub auth: Option<Arc<Auth>>,
    /// Whether peers that offer the multiplexed transport are sent to over it.
    pub multiplex: bool,
    /// Where the replies of multiplexed connections are read; on the runtime when unset.
    pub event_loop: Option<Arc<dyn EventLoop>>,
    /// How long a peer that left the cluster has to show it is alive (answer a ping)
    /// before the calls waiting on it fail; one that cannot be pinged has this long to
    /// answer them.
    pub departure_timeout: Duration,
    /// The ring this node names to its peers (on each HTTP/1.1 request and in the
    /// multiplexed handshake), and where what they name in their replies is told.
    pub rings: Option<Arc<PeerRings>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            port: 45892,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(310),
            link_timeout: Duration::from_secs(8),
            local_address: None,
            auth: None,
            multiplex: true,
            event_loop: None,
            departure_timeout: Duration::from_secs(1),
            rings: None,
        }
    }
}

/// Why a send failed before a reply came back.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The node is not an IP address.
    #[error("Invalid node address {0}")]
    BadAddress(String),
    /// No connection could be made: the message was never delivered.
    #[error("Unable to reach {ip}: {reason}")]
    Unreachable { ip: String, reason: String },
    /// The reply did not come in time; the message may have been delivered.
    #[error("No reply from {ip} within {ms} ms")]
    Timeout { ip: String, ms: u128 },
    /// The exchange broke after it started; the message may have been delivered.
    #[error("Request to {ip} failed: {reason}")]
    Failed { ip: String, reason: String },
    /// The peer left the cluster while the call was waiting; it may have been delivered.
    #[error("Node {ip} left the cluster before answering; the message may have been delivered")]
    Left { ip: String },
}

/// What a probe of a peer found ([`Client::probe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It answered a ping: it is alive and reads its connection.
    Alive,
    /// It did not answer one in time, or its connection has ended.
    Silent,
    /// It cannot be asked: no multiplexed connection to it, or one to a peer that does
    /// not answer pings (a 0.5.1 pod, a pod of ours of the first level).
    Unknown,
}
