//! The Kubernetes source: EndpointSlices of the Service, or the core `endpoints`
//! resource when slices may not be read (0.5.1's RBAC grants only `endpoints`).
//!
//! The source is chosen once by probing (a list with the selector, limit 1); then
//! kube-runtime's `watcher` lists and watches it, relisting on 410 and after errors
//! ([`Retry`]: every 0.5 to 1 s while the API is away). Each relist is swapped in whole
//! ([`Store`]), and every change is sent as the full set of endpoints. Errors are
//! logged and reported once per outage; the loop only ends when cancelled.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::{BuildHasher, RandomState};
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::discovery::Outage;
use super::kube_config::client;
use super::kube_objects::{endpoints_members, is_truncated, slice_members, AddressFamily, Store};
use super::{Discovery, DiscoveryUpdate, KubeSettings, Member, TopologyError, KUBERNETES_TARGET};
use crate::errors::with_causes;

const SLICES: &str = "endpointslices.discovery.k8s.io";
const ENDPOINTS: &str = "endpoints";

/// A [`Discovery`] that watches the Service's endpoints through the Kubernetes API.
#[derive(Clone, Debug)]
pub struct KubeDiscovery {
    settings: KubeSettings,
    family: AddressFamily,
}

impl KubeDiscovery {
    /// Watches with `settings`, keeping the EndpointSlices of the family of `local_ips`
    /// (IPv4 unless the first local IP is IPv6).
    pub fn new(settings: KubeSettings, local_ips: &[String]) -> Self {
        let family = AddressFamily::of_ips(local_ips);
        KubeDiscovery { settings, family }
    }
}

impl Discovery for KubeDiscovery {
    fn run(
        self: Box<Self>,
        out: UnboundedSender<DiscoveryUpdate>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = self.run_until_closed(&out) => {}
            }
        })
    }
}

/// Which resource the watch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Slices,
    Endpoints,
}

/// The answer to a probe list.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Available,
    /// 403 or 404: try the other resource.
    Denied(u16),
    Failed(String),
}

impl Probe {
    fn of<T>(result: kube::Result<T>) -> Probe {
        match result {
            Ok(_) => Probe::Available,
            // By code: `Status::is_forbidden` trusts only a known `reason` string, and a
            // proxy's plain-text 403 has none.
            Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404) => Probe::Denied(s.code),
            Err(e) => Probe::Failed(describe_request(&e)),
        }
    }
}

impl KubeDiscovery {
    /// Runs until `out` is closed; the caller races it against cancellation.
    async fn run_until_closed(&self, out: &UnboundedSender<DiscoveryUpdate>) {
        let client = match client(&self.settings) {
            Ok(client) => client,
            Err(error) => {
                warn!(target: KUBERNETES_TARGET, %error, "cannot watch the cluster");
                // A bad setting does not heal: report it and hold the empty topology.
                if out.send(DiscoveryUpdate::Error(error)).is_ok() {
                    out.closed().await;
                }
                return;
            }
        };
        let mut outage = Outage::default();
        let Some(source) = self.choose_source(&client, out, &mut outage).await else {
            return;
        };
        let _ = out.send(DiscoveryUpdate::Watching(match source {
            Source::Slices => SLICES,
            Source::Endpoints => ENDPOINTS,
        }));
        let namespace = &self.settings.namespace;
        match source {
            Source::Slices => {
                let family = self.family;
                let api = Api::<EndpointSlice>::namespaced(client, namespace);
                self.watch(api, SLICES, |s| slice_members(s, family), out, &mut outage)
                    .await
            }
            Source::Endpoints => {
                let api = Api::<Endpoints>::namespaced(client, namespace);
                let mut truncated = BTreeSet::new();
                let convert = |e: &Endpoints| {
                    let name = e.name_any();
                    if !is_truncated(e) {
                        truncated.remove(&name);
                    } else if truncated.insert(name.clone()) {
                        warn!(
                            target: KUBERNETES_TARGET,
                            endpoints = %name,
                            "the Endpoints object is truncated at 1000 addresses: some nodes \
                             are missing; grant get/list/watch on {SLICES} to see them all"
                        );
                    }
                    endpoints_members(e)
                };
                self.watch(api, ENDPOINTS, convert, out, &mut outage).await
            }
        }
    }

    /// Probes until one resource can be listed; `None` if `out` closed meanwhile.
    async fn choose_source(
        &self,
        client: &Client,
        out: &UnboundedSender<DiscoveryUpdate>,
        outage: &mut Outage,
    ) -> Option<Source> {
        let KubeSettings {
            namespace,
            selector,
            ..
        } = &self.settings;
        let params = ListParams::default().labels(selector).limit(1);
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), namespace);
        let endpoints = Api::<Endpoints>::namespaced(client.clone(), namespace);
        loop {
            let error = match Probe::of(slices.list(&params).await) {
                Probe::Available => {
                    info!(
                        target: KUBERNETES_TARGET,
                        "watching {SLICES} in namespace {namespace} with selector {selector}"
                    );
                    return Some(Source::Slices);
                }
                Probe::Failed(message) => TopologyError::Api {
                    resource: SLICES,
                    message,
                },
                Probe::Denied(code) => match Probe::of(endpoints.list(&params).await) {
                    Probe::Available => {
                        let why = if code == 404 {
                            "not served"
                        } else {
                            "forbidden"
                        };
                        // A degraded source: said without DEBUG, so the operator sees it.
                        warn!(
                            target: KUBERNETES_TARGET,
                            "{SLICES} are {why} ({code}): watching {ENDPOINTS} in namespace \
                             {namespace} with selector {selector} instead; grant get/list/watch \
                             on {SLICES} to use them (Endpoints are deprecated since Kubernetes \
                             1.33 and truncated at 1000 addresses)"
                        );
                        return Some(Source::Endpoints);
                    }
                    Probe::Denied(_) => TopologyError::Forbidden {
                        namespace: namespace.clone(),
                    },
                    Probe::Failed(message) => TopologyError::Api {
                        resource: ENDPOINTS,
                        message,
                    },
                },
            };
            if !report(out, outage, error) {
                return None;
            }
            tokio::time::sleep(Retry::delay()).await;
        }
    }

    /// Lists and watches `api` with the selector, sending every changed set to `out`.
    async fn watch<K>(
        &self,
        api: Api<K>,
        resource: &'static str,
        mut convert: impl FnMut(&K) -> Vec<Member>,
        out: &UnboundedSender<DiscoveryUpdate>,
        outage: &mut Outage,
    ) where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
        K: Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let config = watcher::Config::default().labels(&self.settings.selector);
        let params = ListParams::default()
            .labels(&self.settings.selector)
            .limit(1);
        let mut events = pin!(watcher::watcher(api.clone(), config).backoff(Retry));
        let mut store = Store::default();
        // A watch that starts again brings no event until something changes. While an
        // outage lasts, the API is asked beside the watch (a list of one object) whether
        // it is back; it is once that succeeds and the watch has not failed for longer
        // than its retries take.
        let mut probe: Option<BoxFuture<'static, bool>> = None;
        let (mut last_error, mut probed) = (Instant::now(), Instant::now());
        loop {
            let item = tokio::select! {
                item = events.next() => item,
                listed = async { probe.as_mut().expect("a probe under way").await }, if probe.is_some() => {
                    probe = None;
                    let quiet = last_error < probed && last_error.elapsed() >= QUIET;
                    if let Some(recovered) = (listed && quiet).then(|| outage.succeeded()).flatten() {
                        info!(target: KUBERNETES_TARGET, "{resource}: the API answers again");
                        if out.send(recovered).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                () = tokio::time::sleep(Retry::delay()), if outage.is_down() && probe.is_none() => {
                    let (api, params) = (api.clone(), params.clone());
                    probed = Instant::now();
                    probe = Some(Box::pin(async move { api.list(&params).await.is_ok() }));
                    continue;
                }
            };
            let Some(item) = item else { break };
            match item {
                Ok(event) => {
                    // `Init` comes before the list request: it proves nothing.
                    if !matches!(event, Event::Init) {
                        if let Some(recovered) = outage.succeeded() {
                            info!(target: KUBERNETES_TARGET, "{resource}: the watch is back");
                            if out.send(recovered).is_err() {
                                return;
                            }
                        }
                    }
                    if let Some(set) = store.handle(event, &mut convert) {
                        debug!(target: KUBERNETES_TARGET, endpoints = set.len(), "{resource} changed");
                        if out.send(DiscoveryUpdate::Endpoints(set)).is_err() {
                            return;
                        }
                    }
                }
                // 410 Gone is the protocol asking for a relist, not an outage.
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    debug!(target: KUBERNETES_TARGET, "{resource}: resourceVersion expired, relisting");
                }
                Err(error) => {
                    last_error = Instant::now();
                    let message = describe(&error);
                    if !report(out, outage, TopologyError::Api { resource, message }) {
                        return;
                    }
                }
            }
        }
        // The watcher never ends; if it did, wait for cancellation like an idle source.
        out.closed().await;
    }
}

/// When to try the API again after a failure: every 0.5 to 1 s, drawn at random, for
/// as long as it fails. A pod then sees the API back within a second of its return,
/// whatever the length of the outage (kube's default backoff doubles up to 30 s), and
/// the pods of a large cluster spread their retries over half a second instead of
/// hitting a recovering API server at the same instant.
#[derive(Clone, Copy, Debug)]
struct Retry;

/// How long a failing watch goes without an error, at most: its retries' longest delay,
/// and the time its request takes to fail.
const QUIET: Duration = Duration::from_millis(1500);

impl Retry {
    const MIN: Duration = Duration::from_millis(500);
    const SPREAD_MS: u64 = 500;

    fn delay() -> Duration {
        // Keyed by the process's random hasher seed: pods draw apart.
        let random = RandomState::new().hash_one(Instant::now());
        Retry::MIN + Duration::from_millis(random % Retry::SPREAD_MS)
    }
}

impl Iterator for Retry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Retry::delay())
    }
}

impl Backoff for Retry {
    /// The delay never grows, so a success has nothing to reset.
    fn reset(&mut self) {}
}

/// An API status as its code, reason and message: kube's own text shows it twice, once
/// in its whole `Debug` form.
fn status(s: &kube::core::Status) -> String {
    format!("{} {} ({})", s.code, s.reason, s.message)
}

/// The text of a failed request to the API, with a hint where the cause is a setting.
pub(super) fn describe_request(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(s) => status(s),
        other => {
            let text = with_causes(other);
            if text.contains("InvalidContentType") {
                // What rustls says when the server answers TLS with plain HTTP.
                format!("{text} (is the API server plain HTTP? then set kubernetes.noSSL, or give an http:// url)")
            } else {
                text
            }
        }
    }
}

/// The text of a watcher error.
fn describe(error: &watcher::Error) -> String {
    let (what, cause) = match error {
        watcher::Error::InitialListFailed(e) => ("failed to list", e),
        watcher::Error::WatchStartFailed(e) => ("failed to start watching", e),
        watcher::Error::WatchFailed(e) => ("the watch failed", e),
        watcher::Error::WatchError(s) => {
            return format!(
                "error returned by the API server during watch: {}",
                status(s)
            )
        }
        other => return with_causes(other),
    };
    format!("{what}: {}", describe_request(cause))
}

/// Logs `error` and sends it if it starts an outage; `false` once `out` is closed.
fn report(
    out: &UnboundedSender<DiscoveryUpdate>,
    outage: &mut Outage,
    error: TopologyError,
) -> bool {
    let message = error.to_string();
    match outage.failed(error) {
        Some(update) => {
            warn!(target: KUBERNETES_TARGET, error = %message, "retrying every 0.5 to 1 s; until it answers, the topology stays as it is");
            out.send(update).is_ok()
        }
        None => {
            debug!(target: KUBERNETES_TARGET, error = %message, "still failing");
            !out.is_closed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Result<()> {
        Err(kube::Error::Api(
            Status::failure("no", "Reason").with_code(code).boxed(),
        ))
    }

    #[test]
    fn probe_classification() {
        assert_eq!(Probe::of(Ok(())), Probe::Available);
        assert_eq!(Probe::of(api_error(403)), Probe::Denied(403));
        assert_eq!(Probe::of(api_error(404)), Probe::Denied(404));
        assert!(matches!(Probe::of(api_error(500)), Probe::Failed(_)));
        assert!(matches!(Probe::of(api_error(401)), Probe::Failed(_)));
    }

    #[test]
    fn an_api_status_reads_as_code_reason_and_message() {
        let unavailable = || {
            kube::Error::Api(
                Status::failure(
                    "the server is unable to handle the request",
                    "ServiceUnavailable",
                )
                .with_code(503)
                .boxed(),
            )
        };
        assert_eq!(
            describe(&watcher::Error::WatchStartFailed(unavailable())),
            "failed to start watching: 503 ServiceUnavailable (the server is unable to handle the request)"
        );
        assert_eq!(
            describe(&watcher::Error::WatchError(
                Status::failure("gone", "Expired").with_code(410).boxed()
            )),
            "error returned by the API server during watch: 410 Expired (gone)"
        );
        let io = kube::Error::Service(Box::new(std::io::Error::other("connection refused")));
        let text = describe(&watcher::Error::InitialListFailed(io));
        assert!(
            text.starts_with("failed to list: ") && text.ends_with("connection refused"),
            "{text}"
        );
    }

    #[test]
    fn forbidden_names_the_missing_permission() {
        let error = TopologyError::Forbidden {
            namespace: "apps".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot list endpointslices.discovery.k8s.io nor endpoints in namespace apps: \
             grant get/list/watch on endpointslices.discovery.k8s.io (or on endpoints)"
        );
    }

    #[test]
    fn retries_come_every_half_second_to_second_drawn_apart() {
        let delays: Vec<Duration> = Retry.take(200).collect();
        assert!(
            delays
                .iter()
                .all(|d| (Retry::MIN..Retry::MIN * 2).contains(d)),
            "{delays:?}"
        );
        let distinct: BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "drawn at random: {distinct:?}");
    }

    #[tokio::test]
    async fn a_bad_setting_is_reported_once_and_holds() {
        let settings = KubeSettings {
            url: "not a url".into(),
            ..KubeSettings::default()
        };
        let discovery = Box::new(KubeDiscovery::new(settings, &[]));
        let (out, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(discovery.run(out, cancel.clone()));
        assert!(matches!(
            rx.recv().await,
            Some(DiscoveryUpdate::Error(TopologyError::Config(_)))
        ));
        assert!(!task.is_finished());
        cancel.cancel();
        task.await.unwrap();
    }
}
