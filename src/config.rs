//! The options the facade passes to `SwarmNode.start`, converted to the engine's
//! settings. The facade has already applied 0.5.1's option and environment defaults.

use std::{net::IpAddr, sync::Arc, time::Duration};

use napi_derive::napi;
use swarm_core::{
    messaging::{Auth, ClientConfig, ServerLimits},
    swarm::{DiscoveryConfig, SwarmConfig},
    tasks::{SingleTrigger, TaskOptions},
    topology::{KubeSettings, LeaseSettings},
};

/// Settings of one node, as resolved by the facade.
#[napi(object)]
pub struct NodeOptions {
    /// This process's IPs (option `ip`, `POD_IP`, or the interfaces).
    pub local_ips: Vec<String>,
    /// Address the messaging server binds; all interfaces when absent.
    pub bind: Option<String>,
    /// The messaging port (45892).
    pub port: u32,
    /// Whether to serve messages (a standalone node given no port or address does not).
    pub listen: bool,
    /// Kubernetes settings; standalone when absent.
    pub kubernetes: Option<KubeOptions>,
    /// Largest accepted message body, in bytes.
    pub max_body_size: f64,
    /// How long a message handler may run, in ms.
    pub handler_timeout: f64,
    /// How long connecting to a peer may take, in ms.
    pub connect_timeout: f64,
    /// How long a request to a peer may take, in ms.
    pub request_timeout: f64,
    /// How long sent data may stay unacknowledged by a peer, in ms (a cut link).
    pub link_timeout: f64,
    /// How long a peer that left the cluster has to show it is alive, in ms.
    pub departure_timeout: f64,
    /// How long a client may take to send its request headers, in ms.
    pub header_timeout: f64,
    /// Largest request head, in bytes.
    pub max_header_size: f64,
    /// The shared secret that signs pod traffic; unsigned (0.5.1's protocol) when absent.
    pub secret: Option<String>,
    /// With a secret: refuse unsigned requests (false only while rolling the secret out).
    pub require_signatures: bool,
    /// Open connections at most.
    pub max_connections: u32,
    /// Requests handled at once at most; more get 503.
    pub max_in_flight: u32,
    /// Offer, serve and use the multiplexed transport between pods of this version.
    pub multiplex: bool,
    /// The tasks registered so far, known before the first request is taken.
    pub tasks: Vec<TaskSpec>,
    /// The ring that places task keys: `hashring` (0.5.1's) or `xxh3`.
    pub ring: String,
}

/// A task registration.
#[napi(object)]
pub struct TaskSpec {
    pub name: String,
    pub options: TaskOptionsJs,
}

/// How to reach the Kubernetes API.
#[napi(object)]
pub struct KubeOptions {
    /// `http(s)://host:port`.
    pub url: String,
    pub namespace: String,
    /// A label selector, such as `app=web`.
    pub selector: String,
    pub token: Option<String>,
    /// A token file, re-read when it rotates.
    pub token_file: Option<String>,
    /// The CA bundle (PEM) that signs the API server's certificate.
    pub ca: Option<String>,
    /// Skip TLS verification (logged as a warning).
    pub insecure: bool,
    /// The Lease that elects the master (`masterElection: 'lease'`).
    pub lease: Option<LeaseOptions>,
}

/// The Lease of the master's election, its times in ms.
#[napi(object)]
pub struct LeaseOptions {
    pub name: String,
    pub duration: f64,
    pub renew_deadline: f64,
    pub retry_period: f64,
}

/// Options of one task, as resolved by the facade.
#[napi(object)]
pub struct TaskOptionsJs {
    pub timeout: f64,
    pub serialized: bool,
    /// `false`, `true` or `'N'`, as 0.5.1 spells it: "off", "join" or "next".
    pub single_trigger: String,
    pub max_queue_length: u32,
}

/// How far a signed request's timestamp may be from the receiver's clock.
const SIGNATURE_WINDOW: Duration = Duration::from_secs(30);

fn millis(ms: f64) -> Duration {
    Duration::from_millis(ms.max(0.0) as u64)
}

impl NodeOptions {
    pub fn into_config(self) -> napi::Result<SwarmConfig> {
        let bind: IpAddr = match self.bind.as_deref() {
            None | Some("") => IpAddr::from([0, 0, 0, 0]),
            Some(addr) => addr.parse().map_err(|_| {
                napi::Error::from_reason(format!("Invalid messages.bind address {addr}"))
            })?,
        };
        let ring = self
            .ring
            .parse()
            .map_err(|()| napi::Error::from_reason(format!("Invalid ring {}", self.ring)))?;
        let port = u16::try_from(self.port).map_err(|_| {
            napi::Error::from_reason(format!("Invalid messages.port {}", self.port))
        })?;
        let master_lease = self
            .kubernetes
            .as_ref()
            .and_then(|k| k.lease.as_ref())
            .map(|lease| LeaseSettings {
                name: lease.name.clone(),
                duration: millis(lease.duration),
                renew_deadline: millis(lease.renew_deadline),
                retry_period: millis(lease.retry_period),
            });
        let discovery = match self.kubernetes {
            None => DiscoveryConfig::Standalone,
            Some(k) => DiscoveryConfig::Kubernetes(KubeSettings {
                url: k.url,
                namespace: k.namespace,
                selector: k.selector,
                token: k.token,
                token_file: k.token_file.map(Into::into),
                ca_pem: k.ca.map(String::into_bytes),
                accept_invalid_certs: k.insecure,
            }),
        };
        let auth = self.secret.filter(|s| !s.is_empty()).map(|s| {
            Arc::new(Auth::new(
                s.as_bytes(),
                SIGNATURE_WINDOW,
                self.require_signatures,
            ))
        });
        let tasks = self
            .tasks
            .into_iter()
            .map(|t| Ok((t.name, t.options.into_options()?)))
            .collect::<napi::Result<_>>()?;
        Ok(SwarmConfig {
            tasks,
            ring,
            local_ips: self.local_ips,
            discovery,
            master_lease,
            bind,
            port,
            listen: self.listen,
            limits: ServerLimits {
                max_body: self.max_body_size.max(0.0) as usize,
                handler_timeout: millis(self.handler_timeout),
                header_timeout: millis(self.header_timeout),
                max_header_size: self.max_header_size.max(0.0) as usize,
                auth: auth.clone(),
                max_connections: self.max_connections as usize,
                max_in_flight: self.max_in_flight as usize,
                multiplex: self.multiplex,
                ..ServerLimits::default()
            },
            client: ClientConfig {
                port,
                connect_timeout: millis(self.connect_timeout),
                request_timeout: millis(self.request_timeout),
                link_timeout: millis(self.link_timeout).max(Duration::from_secs(1)),
                local_address: (!bind.is_unspecified()).then_some(bind),
                auth,
                multiplex: self.multiplex,
                event_loop: None,
                departure_timeout: millis(self.departure_timeout),
                // The node's own, told what its peers say (`Swarm::start`).
                rings: None,
            },
        })
    }
}

impl TaskOptionsJs {
    pub fn into_options(self) -> napi::Result<TaskOptions> {
        let single_trigger = match self.single_trigger.as_str() {
            "off" => SingleTrigger::Off,
            "join" => SingleTrigger::Join,
            "next" => SingleTrigger::Next,
            other => {
                return Err(napi::Error::from_reason(format!(
                    "Invalid singleTrigger {other}"
                )))
            }
        };
        Ok(TaskOptions {
            timeout: millis(self.timeout),
            serialized: self.serialized,
            single_trigger,
            max_queue_length: self.max_queue_length as usize,
        })
    }
}
