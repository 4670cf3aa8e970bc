//! The master elected through a `coordination.k8s.io/v1` Lease (`masterElection:
//! 'lease'`), the way client-go's leader election does it:
//! - a candidate takes the lease when nobody holds it, or when its record has not
//!   changed for the lease's duration, judged by the local time at which this process
//!   last saw the record change, never by the times stored in it (other clocks wrote
//!   them);
//! - the holder renews it every retry period, and stops being master when no renewal
//!   succeeded within the renew deadline, before anyone may take it over;
//! - every write names the `resourceVersion` it read: a 409 means another candidate
//!   wrote first, and the lease is read again on the next round;
//! - the holder releases it when it closes (an empty holder), so a successor takes over
//!   at its next round instead of after the duration.
//!
//! This process's identity in the lease is its IP among the endpoints, the master every
//! pod reports. It takes the lease only while that endpoint is ready and not terminating,
//! and, once it holds it, renews it as long as it is listed: a terminating master keeps
//! its lease while its work drains, until `close()` releases it. The lease's transitions
//! are the master's epoch. Without the permission to read or write Leases, the topology
//! falls back to 0.5.1's rule (the smallest IP) with one warning.

use std::{collections::BTreeSet, time::Duration};

use futures_util::future::BoxFuture;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::api::{Api, PostParams};
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    kube::describe_request, Discovery, DiscoveryUpdate, KubeSettings, MasterRule, KUBERNETES_TARGET,
};

/// Rounds refused in a row before a pod that never used the lease falls back to the
/// smallest IP: a passing refusal (an authorization webhook restarting) is not taken for
/// a missing permission.
const FORBIDDEN_ROUNDS: u32 = 3;

/// The lease and its timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// The Lease's name (`<appName>-master` by default).
    pub name: String,
    /// How long a record that does not change keeps the lease held (15 s).
    pub duration: Duration,
    /// How long the holder stays master without a successful renewal (10 s).
    pub renew_deadline: Duration,
    /// How often the lease is read, and renewed by its holder (2 s).
    pub retry_period: Duration,
}

/// A discovery whose master is the holder of a Lease: it runs `inner` for the endpoints
/// and the election beside it, until cancelled, then releases the lease if it holds it.
pub struct LeaseElection {
    inner: Box<dyn Discovery>,
    settings: KubeSettings,
    lease: LeaseSettings,
    local_ips: BTreeSet<String>,
    released: oneshot::Sender<()>,
}

impl LeaseElection {
    /// The election, and what resolves once it has ended and let go of the lease.
    pub fn new(
        inner: Box<dyn Discovery>,
        settings: KubeSettings,
        lease: LeaseSettings,
        local_ips: &[String],
    ) -> (LeaseElection, oneshot::Receiver<()>) {
        let (released, ended) = oneshot::channel();
        let election = LeaseElection {
            inner,
            settings,
            lease,
            local_ips: local_ips.iter().cloned().collect(),
            released,
        };
        (election, ended)
    }
}

impl Discovery for LeaseElection {
    fn run(
        self: Box<Self>,
        out: mpsc::UnboundedSender<DiscoveryUpdate>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let LeaseElection {
                inner,
                settings,
                lease,
                local_ips,
                released,
            } = *self;
            // Nobody is master until the lease has been read.
            let _ = out.send(DiscoveryUpdate::Master(MasterRule::Lease {
                holder: None,
                epoch: 0,
            }));
            let (endpoints_tx, mut endpoints) = mpsc::unbounded_channel();
            tokio::spawn(inner.run(endpoints_tx, cancel.child_token()));
            let (identity_tx, identity) = watch::channel(None);
            // The endpoints go on to the topology as they come, whatever the election is
            // waiting for; they tell it who this process is.
            let forward = async {
                while let Some(update) = endpoints.recv().await {
                    if let DiscoveryUpdate::Endpoints(members) = &update {
                        identity_tx.send_replace(Identity::among(members, &local_ips));
                    }
                    if out.send(update).is_err() {
                        return;
                    }
                }
            };
            let elect = async {
                let Some(mut candidate) = Candidate::new(&settings, lease, local_ips.clone())
                else {
                    return cancel.cancelled().await;
                };
                loop {
                    let me = identity.borrow().clone();
                    let told = tokio::select! {
                        told = candidate.round(me.as_ref()) => told,
                        () = cancel.cancelled() => return candidate.release().await,
                    };
                    if let Some(rule) = told {
                        let fallback = rule == MasterRule::SmallestIp;
                        if out.send(DiscoveryUpdate::Master(rule)).is_err() || fallback {
                            return cancel.cancelled().await;
                        }
                    }
                    let next = tokio::time::sleep(candidate.lease.retry_period);
                    tokio::select! {
                        () = cancel.cancelled() => return candidate.release().await,
                        () = next => {}
                    }
                }
            };
            // Both end once cancelled (the inner discovery with its child token), the
            // election after it let go of the lease.
            tokio::join!(forward, elect);
            let _ = released.send(());
        })
    }
}

/// This process as the endpoints list it.
#[derive(Clone)]
struct Identity {
    ip: String,
    /// Ready and not terminating: it may take the lease.
    may_take: bool,
}

impl Identity {
    /// The endpoint of one of `local_ips` among `members`, one that may take the lease
    /// first.
    fn among(members: &[super::Member], local_ips: &BTreeSet<String>) -> Option<Identity> {
        members
            .iter()
            .filter(|m| local_ips.contains(&*m.ip))
            .max_by_key(|m| m.ready && !m.terminating)
            .map(|m| Identity {
                ip: m.ip.to_string(),
                may_take: m.ready && !m.terminating,
            })
    }
}

/// This process's side of the election.
struct Candidate {
    api: Api<Lease>,
    lease: LeaseSettings,
    local_ips: BTreeSet<String>,
    /// The record as last read or written, and the local time it was first seen so.
    observed: Option<(Lease, Instant)>,
    /// When this process last acquired or renewed the lease it holds.
    renewed: Option<Instant>,
    /// What was last told to the topology.
    told: Option<MasterRule>,
    /// Rounds refused in a row (403).
    forbidden: u32,
}

impl Candidate {
    /// `None` when no client can be made (the discovery reports that itself).
    fn new(
        settings: &KubeSettings,
        lease: LeaseSettings,
        local_ips: BTreeSet<String>,
    ) -> Option<Candidate> {
        let client = super::client(settings).ok()?;
        Some(Candidate {
            api: Api::namespaced(client, &settings.namespace),
            lease,
            local_ips,
            observed: None,
            renewed: None,
            told: None,
            forbidden: 0,
        })
    }

    /// One round: reads the lease, takes or renews it when `identity` may, and returns
    /// the master rule when it changed.
    async fn round(&mut self, identity: Option<&Identity>) -> Option<MasterRule> {
        // A holder's round ends by its renew deadline, whatever its requests wait for.
        // (Past it, this pod is no longer master: the round takes as long as it takes.)
        let deadline = self
            .renewed
            .map(|renewed| renewed + self.lease.renew_deadline)
            .filter(|deadline| *deadline > Instant::now());
        let attempt = self.try_acquire_or_renew(identity);
        let attempted = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or(Err(kube::Error::Service(
                    "the renew deadline passed".into(),
                ))),
            None => attempt.await,
        };
        let rule = match attempted {
            Ok(rule) => {
                self.forbidden = 0;
                rule
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                self.forbidden += 1;
                // Never used: the permission is missing, on every pod alike (they share a
                // Role). Once used, a refusal is an outage like any other: falling back
                // alone would make a second master.
                let never_used = self.observed.is_none() && self.renewed.is_none();
                if never_used && self.forbidden >= FORBIDDEN_ROUNDS {
                    warn!(
                        target: KUBERNETES_TARGET,
                        "cannot use the Lease {} for the master ({}): grant get, create and update on \
                         leases.coordination.k8s.io; the master is the smallest IP instead",
                        self.lease.name,
                        status.message
                    );
                    return Some(MasterRule::SmallestIp);
                }
                debug!(target: KUBERNETES_TARGET, "Lease {}: refused ({})", self.lease.name, status.message);
                self.last_told()
            }
            Err(error) => {
                debug!(target: KUBERNETES_TARGET, "Lease {}: {}", self.lease.name, describe_request(&error));
                self.last_told()
            }
        };
        let rule = self.fenced(rule);
        (self.told.as_ref() != Some(&rule)).then(|| {
            self.told = Some(rule.clone());
            rule
        })
    }

    /// What was last told, kept while the lease cannot be read or written.
    fn last_told(&self) -> MasterRule {
        self.told.clone().unwrap_or(MasterRule::Lease {
            holder: None,
            epoch: 0,
        })
    }

    /// `rule`, without this process as master unless it renewed the lease within the
    /// renew deadline: a holder that cannot renew stops being master before anyone may
    /// take the lease over.
    fn fenced(&self, rule: MasterRule) -> MasterRule {
        match rule {
            MasterRule::Lease {
                holder: Some(holder),
                epoch,
            } if self.local_ips.contains(&holder)
                && self
                    .renewed
                    .is_none_or(|renewed| renewed.elapsed() >= self.lease.renew_deadline) =>
            {
                MasterRule::Lease {
                    holder: None,
                    epoch,
                }
            }
            rule => rule,
        }
    }

    async fn try_acquire_or_renew(
        &mut self,
        identity: Option<&Identity>,
    ) -> kube::Result<MasterRule> {
        let now = Instant::now();
        let may_take = identity.filter(|me| me.may_take).map(|me| me.ip.as_str());
        let Some(current) = self.api.get_opt(&self.lease.name).await? else {
            let Some(me) = may_take else {
                return Ok(holder_of(None));
            };
            let created = self
                .api
                .create(&PostParams::default(), &self.record(None, me))
                .await;
            return self.written(created, now);
        };
        if self.observed.as_ref().map(|(lease, _)| lease) != Some(&current) {
            // Seen now, after the read: a record read slowly may have been written late
            // in it, and must not look older than it is.
            self.observed = Some((current.clone(), Instant::now()));
        }
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let expired = self.observed.as_ref().is_some_and(|(_, seen)| {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.lease.duration, Duration::from_secs);
            seen.elapsed() >= duration
        });
        let mine = identity.filter(|me| holder.as_deref() == Some(me.ip.as_str()));
        let me = match (mine, may_take) {
            (Some(me), _) => me.ip.as_str(),
            (None, Some(me)) if holder.is_none() || expired => me,
            _ => {
                self.renewed = None;
                return Ok(holder_of(Some(&current)));
            }
        };
        let replaced = self
            .api
            .replace(
                &self.lease.name,
                &PostParams::default(),
                &self.record(Some(&current), me),
            )
            .await;
        self.written(replaced, now)
    }

    /// The outcome of a write: this process holds the lease, or another wrote first (409).
    fn written(&mut self, written: kube::Result<Lease>, at: Instant) -> kube::Result<MasterRule> {
        match written {
            Ok(lease) => {
                self.renewed = Some(at);
                self.observed = Some((lease.clone(), at));
                Ok(holder_of(Some(&lease)))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                debug!(target: KUBERNETES_TARGET, "Lease {}: another candidate wrote first", self.lease.name);
                Ok(self.last_told())
            }
            Err(error) => Err(error),
        }
    }

    /// The record that makes `me` the holder, renewed now, over `current`.
    fn record(&self, current: Option<&Lease>, me: &str) -> Lease {
        let now = MicroTime(Timestamp::now());
        let old = current.and_then(|l| l.spec.clone()).unwrap_or_default();
        let taken_over = old.holder_identity.as_deref() != Some(me);
        let transitions = old.lease_transitions.unwrap_or(0);
        Lease {
            metadata: ObjectMeta {
                name: Some(self.lease.name.clone()),
                resource_version: current.and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(me.to_owned()),
                lease_duration_seconds: Some(seconds(self.lease.duration)),
                acquire_time: if taken_over {
                    Some(now.clone())
                } else {
                    old.acquire_time
                },
                renew_time: Some(now),
                lease_transitions: Some(match (taken_over, current) {
                    (true, Some(_)) => transitions + 1,
                    _ => transitions,
                }),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Gives the lease up if this process holds it: an empty holder, so that the next
    /// candidate takes it at its next round.
    async fn release(self) {
        // Read again, whether or not this pod knows it holds the lease: a round cut short
        // by the cancellation may have written a record whose answer never came back.
        let current = match self.api.get_opt(&self.lease.name).await {
            Ok(Some(current)) => current,
            Ok(None) => return,
            Err(error) => {
                return debug!(target: KUBERNETES_TARGET, "Lease {} not released: {}", self.lease.name, describe_request(&error));
            }
        };
        let Some(me) = holder_of(Some(&current))
            .holder()
            .filter(|holder| self.local_ips.contains(*holder))
            .map(str::to_owned)
        else {
            return;
        };
        let mut released = self.record(Some(&current), &me);
        if let Some(spec) = released.spec.as_mut() {
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
        }
        match self
            .api
            .replace(&self.lease.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => debug!(target: KUBERNETES_TARGET, "Lease {} released", self.lease.name),
            Err(error) => {
                debug!(target: KUBERNETES_TARGET, "Lease {} not released: {}", self.lease.name, describe_request(&error))
            }
        }
    }
}

/// The master rule a lease record names.
fn holder_of(lease: Option<&Lease>) -> MasterRule {
    let spec = lease.and_then(|l| l.spec.as_ref());
    MasterRule::Lease {
        holder: spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        epoch: spec
            .and_then(|s| s.lease_transitions)
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(0),
    }
}

/// Whole seconds, rounded up: candidates then wait at least the duration asked for.
fn seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
}
