//! The messaging client: one pooled keep-alive HTTP/1.1 client for every peer, with a
//! connect timeout and a request timeout so that every send settles.

use std::{net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HttpClient},
    rt::TokioExecutor,
};

use super::{auth::Auth, codec::Payload, path, Reply};
use crate::errors::with_causes;

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
    /// (TCP_USER_TIMEOUT), and idle connections are probed: a peer behind a cut link is
    /// noticed in this time, while a live peer may take its time to answer.
    pub link_timeout: Duration,
    /// The source address of outgoing connections, so peers see this node's IP as `from`.
    pub local_address: Option<IpAddr>,
    /// Signs every request when set.
    pub auth: Option<Arc<Auth>>,
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

/// A pooled client for the messaging protocol.
#[derive(Clone)]
pub struct Client {
    http: HttpClient<HttpConnector, Full<Bytes>>,
    config: ClientConfig,
}

impl Client {
    /// Builds a client; connections are opened lazily and kept alive per peer.
    pub fn new(config: ClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_local_address(config.local_address);
        connector.set_tcp_user_timeout(Some(config.link_timeout));
        connector.set_keepalive(Some(config.link_timeout / 2));
        connector.set_keepalive_interval(Some(Duration::from_secs(1)));
        connector.set_keepalive_retries(Some(3));
        let http = HttpClient::builder(TokioExecutor::new())
            // Shorter than the servers' header timeout (10 s by default), which also ends
            // idle keep-alive connections: a request must never be written on a
            // connection the peer is closing, as it could not tell whether it ran.
            .pool_idle_timeout(Duration::from_secs(4))
            .build(connector);
        Client { http, config }
    }

    /// Sends `payload` to `path` on the node at `ip` and returns its reply, whatever
    /// the status.
    pub async fn send(
        &self,
        ip: &str,
        topic_path: &str,
        payload: Payload,
    ) -> Result<Reply, SendError> {
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| SendError::BadAddress(ip.to_owned()))?;
        let authority = match addr {
            IpAddr::V4(v4) => format!("{v4}:{}", self.config.port),
            IpAddr::V6(v6) => format!("[{v6}]:{}", self.config.port),
        };
        let encoded = path::encode(topic_path);
        let uri = format!("http://{authority}{encoded}");
        let mut builder = Request::builder().method(Method::POST).uri(uri);
        if let Some(ct) = payload.content_type() {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let body = payload.bytes();
        if let Some(auth) = &self.config.auth {
            for (name, value) in auth.sign("POST", &encoded, &body) {
                builder = builder.header(name, value);
            }
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| SendError::BadAddress(format!("{ip}: {e}")))?;
        let timeout = self.config.request_timeout;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    SendError::Unreachable {
                        ip: ip.to_owned(),
                        reason: with_causes(&e),
                    }
                } else {
                    SendError::Failed {
                        ip: ip.to_owned(),
                        reason: with_causes(&e),
                    }
                }
            })?;
            let status = response.status().as_u16();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| SendError::Failed {
                    ip: ip.to_owned(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok(Reply {
                status,
                payload: Payload::decode_reply(status, content_type.as_ref(), body),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Timeout {
                    ip: ip.to_owned(),
                    ms: timeout.as_millis(),
                })
            })
    }
}
