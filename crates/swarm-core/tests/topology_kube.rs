//! The topology with the real kube client against the project's Kubernetes API
//! stand-in (`__test__/kube-standin/cli.js`, run with Node).

mod standin;

use std::time::Duration;

use serde_json::{json, Value};
use standin::*;
use swarm_core::topology::{TopologyError, TopologyEvent};

#[tokio::test]
async fn first_set_then_add_remove_and_ready_changes() {
    let kube = StandIn::start();
    kube.post("/dual-stack", json!({ "on": true })).await;
    kube.post(
        "/pods",
        json!([
            pod("web-a", "10.0.0.9", true),
            pod("web-b", "10.0.0.2", true),
            pod("web-c", "10.0.0.3", false)
        ]),
    )
    .await;
    let mut t = run(kube.settings(), &["10.0.0.2"]);
    t.ready().await;
    assert_eq!(
        t.nodes(),
        ["10.0.0.2", "10.0.0.9"],
        "IPv4 only, not-ready excluded"
    );
    let first = t.next().await;
    let TopologyEvent::NodeAdded(member) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(&*member.ip, "10.0.0.9");
    assert_eq!(member.pod.as_deref(), Some("web-a"));
    assert_eq!(member.node_name.as_deref(), Some("node-1"));
    assert_eq!(member.zone.as_deref(), Some("zone-a"));
    assert!(member.ready && member.serving && !member.terminating);
    t.expect(&["master none>10.0.0.2"]).await;

    // String order: "10.0.0.10" < "10.0.0.2".
    kube.post("/pods/add", pod("web-d", "10.0.0.10", true))
        .await;
    t.expect(&["+10.0.0.10", "master 10.0.0.2>10.0.0.10"]).await;
    kube.post(
        "/pods/update",
        json!({ "name": "web-c", "patch": { "ready": true } }),
    )
    .await;
    t.expect(&["+10.0.0.3"]).await;
    kube.post(
        "/pods/update",
        json!({ "name": "web-a", "patch": { "ready": false } }),
    )
    .await;
    t.expect(&["-10.0.0.9"]).await;
    // A field change is no event, but shows in the view.
    kube.post(
        "/pods/update",
        json!({ "name": "web-c", "patch": { "zone": "zone-b" } }),
    )
    .await;
    kube.post("/pods/remove", json!({ "ip": "10.0.0.10" }))
        .await;
    t.expect(&["-10.0.0.10", "master 10.0.0.10>10.0.0.2"]).await;
    assert_eq!(
        t.handle.view().nodes["10.0.0.3"].zone.as_deref(),
        Some("zone-b")
    );
    kube.post("/pods/remove", json!({ "name": "web-b" })).await;
    t.expect(&["left 10.0.0.2", "master 10.0.0.2>10.0.0.3"])
        .await;
    assert_eq!(t.nodes(), ["10.0.0.3"]);
}

#[tokio::test]
async fn falls_back_to_endpoints_when_slices_are_forbidden() {
    let kube = StandIn::start();
    kube.post(
        "/forbid",
        json!({ "resource": "endpointslices", "on": true }),
    )
    .await;
    kube.post(
        "/pods",
        json!([
            pod("web-a", "10.0.0.1", true),
            pod("web-b", "10.0.0.2", false)
        ]),
    )
    .await;
    let mut t = run(kube.settings(), &["10.0.0.5"]);
    t.ready().await;
    assert_eq!(t.nodes(), ["10.0.0.1"]);
    t.expect(&["+10.0.0.1", "master none>10.0.0.1"]).await;
    kube.post(
        "/pods/update",
        json!({ "name": "web-b", "patch": { "ready": true } }),
    )
    .await;
    t.expect(&["+10.0.0.2"]).await;
    let stats = kube.control("GET", "/stats", Value::Null).await;
    assert_eq!(stats["watch"]["endpointslices"], 0, "{stats}");
    assert_eq!(stats["openWatches"]["endpoints"], 1, "{stats}");
}

#[tokio::test]
async fn both_forbidden_is_one_error_and_keeps_retrying() {
    let kube = StandIn::start();
    kube.post(
        "/forbid",
        json!({ "resource": "endpointslices", "on": true }),
    )
    .await;
    kube.post("/forbid", json!({ "resource": "endpoints", "on": true }))
        .await;
    kube.post("/pods", json!([pod("web-a", "10.0.0.1", true)]))
        .await;
    let mut t = run(kube.settings(), &["10.0.0.1"]);
    let event = t.next().await;
    let expected = TopologyError::Forbidden {
        namespace: "default".into(),
    };
    assert_eq!(event, TopologyEvent::Error(expected));
    assert!(!t.handle.is_ready(), "never assumes standalone");
    kube.post(
        "/forbid",
        json!({ "resource": "endpointslices", "on": false }),
    )
    .await;
    t.ready().await;
    t.expect(&["recovered", "master none>10.0.0.1"]).await;
}

#[tokio::test]
async fn an_ended_watch_loses_no_later_change() {
    let kube = StandIn::start();
    kube.post("/pods", json!([pod("web-a", "10.0.0.1", true)]))
        .await;
    let mut t = run(kube.settings(), &["10.0.0.1"]);
    t.ready().await;
    t.expect(&["master none>10.0.0.1"]).await;
    for (i, ip) in ["10.0.0.2", "10.0.0.3", "10.0.0.4"].iter().enumerate() {
        kube.post("/end-watches", Value::Null).await;
        kube.post("/pods/add", pod(&format!("web-{i}"), ip, true))
            .await;
        t.expect(&[&format!("+{ip}")]).await;
    }
    kube.post("/end-watches", Value::Null).await;
    kube.post("/pods/remove", json!({ "ip": "10.0.0.3" })).await;
    t.expect(&["-10.0.0.3"]).await;
}

/// Pods 10.0.0.1 (local) and 10.0.0.2, watched until the first set is in.
async fn two_pods_watched(kube: &StandIn) -> Running {
    kube.post(
        "/pods",
        json!([
            pod("web-a", "10.0.0.1", true),
            pod("web-b", "10.0.0.2", true)
        ]),
    )
    .await;
    let mut t = run(kube.settings(), &["10.0.0.1"]);
    t.ready().await;
    t.expect(&["+10.0.0.2", "master none>10.0.0.1"]).await;
    t
}

#[tokio::test]
async fn compaction_410_relists_and_converges() {
    let kube = StandIn::start();
    let mut t = two_pods_watched(&kube).await;
    let lists_before =
        kube.control("GET", "/stats", Value::Null).await["list"]["endpointslices"].clone();

    // Changes the watch cannot see, then history gone: resuming gets 410 Expired.
    kube.post(
        "/forbid",
        json!({ "resource": "endpointslices", "on": true }),
    )
    .await;
    let error = t.next().await;
    assert!(
        matches!(error, TopologyEvent::Error(TopologyError::Api { .. })),
        "{error:?}"
    );
    kube.post(
        "/pods",
        json!([
            pod("web-a", "10.0.0.1", true),
            pod("web-c", "10.0.0.3", true)
        ]),
    )
    .await;
    kube.post("/compact", Value::Null).await;
    kube.post(
        "/forbid",
        json!({ "resource": "endpointslices", "on": false }),
    )
    .await;
    t.expect(&["recovered", "-10.0.0.2", "+10.0.0.3"]).await;
    assert_eq!(t.nodes(), ["10.0.0.1", "10.0.0.3"]);
    let stats = kube.control("GET", "/stats", Value::Null).await;
    let lists = stats["list"]["endpointslices"].as_u64().unwrap();
    assert!(
        lists > lists_before.as_u64().unwrap(),
        "a relist happened: {stats}"
    );
}

#[tokio::test]
async fn an_outage_is_one_error_keeps_the_topology_and_recovers() {
    let kube = StandIn::start();
    let mut t = two_pods_watched(&kube).await;
    let before = t.handle.view();

    kube.post("/outage", json!({ "on": true })).await;
    let error = t.next().await;
    assert!(
        matches!(error, TopologyEvent::Error(TopologyError::Api { .. })),
        "{error:?}"
    );
    // Hold the outage across several retries (kube retries 503s, then the watcher
    // backs off): they must not add errors. This is the fault's length, not a wait.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(t.handle.view(), before, "the last topology stays in force");
    assert!(t.events.try_recv().is_err(), "one error per outage");

    kube.post("/outage", json!({ "on": false })).await;
    kube.post("/pods/add", pod("web-c", "10.0.0.3", true)).await;
    t.expect(&["recovered", "+10.0.0.3"]).await;
    assert_eq!(t.nodes(), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
}
