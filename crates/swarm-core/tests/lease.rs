//! The master elected through a Lease, with the real kube client against the project's
//! Kubernetes API stand-in: taking and renewing it, a write of another candidate, an API
//! outage longer than the renew deadline, the release on close, and the fallback to the
//! smallest IP without the permission.

mod standin;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;
use standin::*;
use swarm_core::topology::{self, KubeDiscovery, LeaseElection, LeaseSettings, View};
use tokio::sync::oneshot;

const LEASE: &str = "web-master";

/// Times short enough for a test; the order is the production one's.
fn fast() -> LeaseSettings {
    LeaseSettings {
        name: LEASE.into(),
        duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(100),
    }
}

/// A process owning `ip` that runs for master, and what resolves once it let go of
/// the lease after its cancellation.
fn candidate(kube: &StandIn, ip: &str) -> (Running, oneshot::Receiver<()>) {
    let local = vec![ip.to_owned()];
    let endpoints = Box::new(KubeDiscovery::new(kube.settings(), &local));
    let (election, released) = LeaseElection::new(endpoints, kube.settings(), fast(), &local);
    (run_discovery(Box::new(election), &local), released)
}

/// Waits until `running`'s view names `master`.
async fn master_is(running: &Running, master: Option<&str>) -> View {
    let mut views = running.handle.subscribe();
    let seen = tokio::time::timeout(WAIT, async {
        let seen = views.wait_for(|v| v.master.as_deref() == master).await;
        seen.map(|view| View::clone(&view))
    })
    .await;
    let view = running.handle.view();
    let seen =
        seen.unwrap_or_else(|_| panic!("master {master:?} within {WAIT:?}; the view is {view:?}"));
    seen.expect("the topology runs")
}

fn leases(kube: &StandIn) -> Api<Lease> {
    Api::namespaced(
        topology::client(&kube.settings()).expect("a client"),
        "default",
    )
}

/// The lease as stored, once it exists.
async fn stored(kube: &StandIn) -> Lease {
    let api = leases(kube);
    eventually("the lease exists", || async {
        api.get_opt(LEASE).await.ok().flatten()
    })
    .await
}

/// Polls `check` every 20 ms until it gives a value, within [`WAIT`]: for state of the
/// API that no event tells.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

async fn two_pods(kube: &StandIn) {
    kube.post(
        "/pods",
        json!([
            pod("web-a", "10.0.0.1", true),
            pod("web-b", "10.0.0.2", true)
        ]),
    )
    .await;
}

#[tokio::test]
async fn one_candidate_takes_the_lease_every_pod_agrees_and_the_holder_renews_it() {
    let kube = StandIn::start();
    two_pods(&kube).await;
    let (a, _) = candidate(&kube, "10.0.0.1");
    let (b, _) = candidate(&kube, "10.0.0.2");
    // Not an endpoint: never a candidate, it only sees who is.
    let (c, _) = candidate(&kube, "10.0.0.9");

    let lease = stored(&kube).await;
    let master = holder(&lease).expect("a holder");
    assert!(
        ["10.0.0.1", "10.0.0.2"].contains(&master.as_str()),
        "{master}"
    );
    for running in [&a, &b, &c] {
        let view = master_is(running, Some(&master)).await;
        assert_eq!(view.master_epoch, Some(0), "nobody held it before");
    }

    let renewed = lease.spec.as_ref().and_then(|s| s.renew_time.clone());
    let api = leases(&kube);
    let later = eventually("a renewal", || async {
        let now = api.get(LEASE).await.ok()?;
        (now.spec.as_ref()?.renew_time != renewed).then_some(now)
    })
    .await;
    assert_eq!(
        holder(&later).as_deref(),
        Some(master.as_str()),
        "renewed by its holder"
    );
}

#[tokio::test]
async fn the_holder_releases_it_on_close_and_the_next_takes_it_with_a_new_epoch() {
    let kube = StandIn::start();
    two_pods(&kube).await;
    let (a, a_released) = candidate(&kube, "10.0.0.1");
    let (b, b_released) = candidate(&kube, "10.0.0.2");
    let master = holder(&stored(&kube).await).expect("a holder");
    let (holding, released, other, other_ip) = if master == "10.0.0.1" {
        (a, a_released, b, "10.0.0.2")
    } else {
        (b, b_released, a, "10.0.0.1")
    };
    master_is(&other, Some(&master)).await;

    holding.cancel.cancel();
    tokio::time::timeout(WAIT, released)
        .await
        .expect("released within the wait")
        .expect("released");
    let after = holder(&stored(&kube).await);
    assert_ne!(
        after.as_deref(),
        Some(master.as_str()),
        "let go, not left to expire"
    );
    let view = master_is(&other, Some(other_ip)).await;
    assert_eq!(view.master_epoch, Some(1));
    assert_eq!(holder(&stored(&kube).await).as_deref(), Some(other_ip));
}

#[tokio::test]
async fn an_api_outage_past_the_renew_deadline_ends_the_mastership_until_it_is_renewed() {
    let kube = StandIn::start();
    two_pods(&kube).await;
    let (a, _) = candidate(&kube, "10.0.0.1");
    master_is(&a, Some("10.0.0.1")).await;

    kube.post("/outage", json!({ "on": true })).await;
    master_is(&a, None).await;
    kube.post("/outage", json!({ "on": false })).await;
    let view = master_is(&a, Some("10.0.0.1")).await;
    assert_eq!(
        view.master_epoch,
        Some(0),
        "the record still named it: renewed, not taken over"
    );
}

#[tokio::test]
async fn a_record_another_candidate_wrote_holds_until_it_expires_by_the_local_clock() {
    let kube = StandIn::start();
    two_pods(&kube).await;
    let (a, _) = candidate(&kube, "10.0.0.1");
    master_is(&a, Some("10.0.0.1")).await;

    // Another candidate takes it over, with a renew time far in the future: only the
    // local time since the record last changed counts.
    let api = leases(&kube);
    eventually("a write of another candidate", || async {
        let mut lease = api.get(LEASE).await.ok()?;
        let spec = lease.spec.as_mut()?;
        spec.holder_identity = Some("10.0.0.7".into());
        spec.lease_transitions = Some(1);
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            "2999-01-01T00:00:00Z".parse().ok()?,
        ));
        api.replace(LEASE, &PostParams::default(), &lease)
            .await
            .ok()
    })
    .await;
    let view = master_is(&a, Some("10.0.0.7")).await;
    assert_eq!(view.master_epoch, Some(1));

    // Nobody renews it: once it has not changed for its duration, `a` takes it back.
    let view = master_is(&a, Some("10.0.0.1")).await;
    assert_eq!(view.master_epoch, Some(2));
}

#[tokio::test]
async fn without_the_permission_the_master_is_the_smallest_ip() {
    let kube = StandIn::start();
    kube.post("/forbid", json!({ "resource": "leases", "on": true }))
        .await;
    two_pods(&kube).await;
    let (a, _) = candidate(&kube, "10.0.0.1");
    let (b, _) = candidate(&kube, "10.0.0.2");
    for running in [&a, &b] {
        let view = master_is(running, Some("10.0.0.1")).await;
        assert_eq!(view.master_epoch, None);
    }
    // Three refusals in a row each, before the fallback; none after it.
    let stats = kube.control("GET", "/stats", json!(null)).await;
    assert_eq!(stats["get"]["leases"], 6, "three tries each: {stats}");
}

#[tokio::test]
async fn a_refusal_after_the_lease_was_used_is_an_outage_not_a_fallback() {
    let kube = StandIn::start();
    two_pods(&kube).await;
    // The larger IP holds it: a pod falling back alone would name the smaller one.
    let (b, _) = candidate(&kube, "10.0.0.2");
    master_is(&b, Some("10.0.0.2")).await;
    let (a, _) = candidate(&kube, "10.0.0.1");
    master_is(&a, Some("10.0.0.2")).await;

    kube.post("/forbid", json!({ "resource": "leases", "on": true }))
        .await;
    let refused = kube.control("GET", "/stats", json!(null)).await["get"]["leases"]
        .as_u64()
        .expect("a count");
    master_is(&b, None).await;
    // Well past the rounds after which a pod that never used the lease falls back.
    eventually("more refused rounds", || async {
        let stats = kube.control("GET", "/stats", json!(null)).await;
        (stats["get"]["leases"].as_u64()? >= refused + 12).then_some(())
    })
    .await;
    assert_ne!(
        a.handle.view().master.as_deref(),
        Some("10.0.0.1"),
        "no second master"
    );
}
