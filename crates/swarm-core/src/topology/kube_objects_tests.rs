//! Tests of `kube_objects.rs`: conversion, joining, and the watcher-event store.

use k8s_openapi::api::core::v1::EndpointSubset;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
use kube::api::ObjectMeta;

use super::*;

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn pod(name: &str) -> Option<ObjectReference> {
    Some(ObjectReference {
        kind: Some("Pod".into()),
        name: Some(name.into()),
        ..ObjectReference::default()
    })
}

fn endpoint(ip: &str, conditions: Option<EndpointConditions>) -> Endpoint {
    Endpoint {
        addresses: vec![ip.into()],
        conditions,
        ..Endpoint::default()
    }
}

fn conditions(
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
) -> Option<EndpointConditions> {
    Some(EndpointConditions {
        ready,
        serving,
        terminating,
    })
}

fn slice(name: &str, address_type: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: meta(name),
        address_type: address_type.into(),
        endpoints,
        ports: None,
    }
}

fn ips(members: &[Member]) -> Vec<(&str, bool)> {
    members.iter().map(|m| (&*m.ip, m.ready)).collect()
}

#[test]
fn slice_condition_defaults() {
    let s = slice(
        "web-abc",
        "IPv4",
        vec![
            endpoint("10.0.0.1", None),
            endpoint("10.0.0.2", conditions(None, None, None)),
            endpoint("10.0.0.3", conditions(Some(false), None, None)),
            endpoint("10.0.0.4", conditions(Some(false), Some(true), Some(true))),
        ],
    );
    let members = slice_members(&s, AddressFamily::IPv4);
    let flags: Vec<_> = members
        .iter()
        .map(|m| (m.ready, m.serving, m.terminating))
        .collect();
    assert_eq!(
        flags,
        [
            (true, true, false),
            (true, true, false),
            (false, false, false),
            (false, true, true)
        ]
    );
}

#[test]
fn slice_fields_and_first_address_only() {
    let mut e = endpoint("10.0.0.1", None);
    e.addresses.push("10.0.0.99".into());
    e.target_ref = pod("web-7d9f8b6c5-x2x9z");
    e.node_name = Some("node-a".into());
    e.zone = Some("eu-west-1a".into());
    let mut not_a_pod = endpoint("10.0.0.2", None);
    not_a_pod.target_ref = Some(ObjectReference {
        kind: Some("Node".into()),
        name: Some("node-b".into()),
        ..ObjectReference::default()
    });
    let members = slice_members(
        &slice("s", "IPv4", vec![e, endpoint("", None), not_a_pod]),
        AddressFamily::IPv4,
    );
    assert_eq!(members.len(), 3);
    assert_eq!(
        members[0],
        Member {
            pod: Some("web-7d9f8b6c5-x2x9z".into()),
            node_name: Some("node-a".into()),
            zone: Some("eu-west-1a".into()),
            ..Member::from_ip("10.0.0.1")
        }
    );
    assert_eq!(members[2].pod, None);
    let mut empty = endpoint("x", None);
    empty.addresses.clear();
    assert!(slice_members(&slice("s", "IPv4", vec![empty]), AddressFamily::IPv4).is_empty());
}

#[test]
fn only_the_local_family_counts() {
    let v4 = slice("web-v4", "IPv4", vec![endpoint("10.0.0.1", None)]);
    let v6 = slice("web-v6", "IPv6", vec![endpoint("fd00::1", None)]);
    let fqdn = slice("web-fqdn", "FQDN", vec![endpoint("web.example", None)]);
    assert_eq!(slice_members(&v4, AddressFamily::IPv4).len(), 1);
    assert!(slice_members(&v6, AddressFamily::IPv4).is_empty());
    assert!(slice_members(&fqdn, AddressFamily::IPv4).is_empty());
    assert_eq!(&*slice_members(&v6, AddressFamily::IPv6)[0].ip, "fd00::1");
    assert!(slice_members(&v4, AddressFamily::IPv6).is_empty());

    assert_eq!(AddressFamily::of_ips::<&str>(&[]), AddressFamily::IPv4);
    assert_eq!(
        AddressFamily::of_ips(&["10.0.0.1", "fd00::1"]),
        AddressFamily::IPv4
    );
    assert_eq!(AddressFamily::of_ips(&["fd00::1"]), AddressFamily::IPv6);
    assert_eq!(
        AddressFamily::of_ips(&["garbage", "fd00::1"]),
        AddressFamily::IPv6
    );
}

#[test]
fn slices_join_across_the_service_and_dedupe() {
    let a = slice_members(
        &slice(
            "web-a",
            "IPv4",
            vec![endpoint("10.0.0.9", None), endpoint("10.0.0.2", None)],
        ),
        AddressFamily::IPv4,
    );
    let b = slice_members(
        &slice(
            "web-b",
            "IPv4",
            vec![
                endpoint("10.0.0.10", None),
                endpoint("10.0.0.9", conditions(Some(false), None, None)),
            ],
        ),
        AddressFamily::IPv4,
    );
    let c = slice_members(
        &slice(
            "web-c",
            "IPv4",
            vec![endpoint("10.0.0.3", conditions(Some(false), None, None))],
        ),
        AddressFamily::IPv4,
    );
    let d = slice_members(
        &slice("web-d", "IPv4", vec![endpoint("10.0.0.3", None)]),
        AddressFamily::IPv4,
    );
    assert_eq!(
        ips(&join([&b, &a, &c, &d])),
        [
            ("10.0.0.10", true),
            ("10.0.0.2", true),
            ("10.0.0.3", true),
            ("10.0.0.9", true)
        ]
    );
}

#[test]
fn endpoints_conversion() {
    let address = |ip: &str, name: &str| EndpointAddress {
        ip: ip.into(),
        target_ref: pod(name),
        node_name: Some("node-a".into()),
        ..EndpointAddress::default()
    };
    let endpoints = Endpoints {
        metadata: meta("web"),
        subsets: Some(vec![
            EndpointSubset {
                addresses: Some(vec![address("10.0.0.1", "web-1")]),
                not_ready_addresses: Some(vec![address("10.0.0.2", "web-2")]),
                ports: None,
            },
            EndpointSubset {
                addresses: Some(vec![address("10.0.0.3", "web-3")]),
                not_ready_addresses: None,
                ports: None,
            },
        ]),
    };
    let members = endpoints_members(&endpoints);
    assert_eq!(
        ips(&members),
        [("10.0.0.1", true), ("10.0.0.2", false), ("10.0.0.3", true)]
    );
    assert_eq!(members[0].pod.as_deref(), Some("web-1"));
    assert_eq!(members[0].node_name.as_deref(), Some("node-a"));
    assert!(!members[1].serving && !members[1].terminating);
    assert!(endpoints_members(&Endpoints::default()).is_empty());

    assert!(!is_truncated(&endpoints));
    let mut truncated = endpoints.clone();
    truncated.metadata.annotations =
        Some([(OVER_CAPACITY.to_owned(), "truncated".to_owned())].into());
    assert!(is_truncated(&truncated));
}

fn s(name: &str, ips: &[&str]) -> EndpointSlice {
    slice(
        name,
        "IPv4",
        ips.iter().map(|ip| endpoint(ip, None)).collect(),
    )
}

fn feed(store: &mut Store, event: Event<EndpointSlice>) -> Option<Vec<String>> {
    let set = store.handle(event, |s| slice_members(s, AddressFamily::IPv4))?;
    Some(set.into_iter().map(|m| m.ip.to_string()).collect())
}

fn set(ips: &[&str]) -> Option<Vec<String>> {
    Some(ips.iter().map(|ip| ip.to_string()).collect())
}

#[test]
fn store_swaps_a_relist_in_at_once() {
    let mut store = Store::default();
    assert_eq!(feed(&mut store, Event::Init), None);
    assert_eq!(
        feed(&mut store, Event::InitApply(s("a", &["10.0.0.1"]))),
        None
    );
    assert_eq!(
        feed(&mut store, Event::InitApply(s("b", &["10.0.0.2"]))),
        None
    );
    assert_eq!(
        feed(&mut store, Event::InitDone),
        set(&["10.0.0.1", "10.0.0.2"])
    );

    assert_eq!(
        feed(&mut store, Event::Apply(s("b", &["10.0.0.2", "10.0.0.3"]))),
        set(&["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    );
    assert_eq!(
        feed(&mut store, Event::Delete(s("a", &[]))),
        set(&["10.0.0.2", "10.0.0.3"])
    );
    // A change that does not change the set is not reported.
    assert_eq!(
        feed(&mut store, Event::Apply(s("b", &["10.0.0.3", "10.0.0.2"]))),
        None
    );

    // A relist: the old set stays in force until InitDone, objects gone meanwhile vanish.
    assert_eq!(feed(&mut store, Event::Init), None);
    assert_eq!(
        feed(&mut store, Event::InitApply(s("c", &["10.0.0.4"]))),
        None
    );
    assert_eq!(store.objects.len(), 1, "the old set stays in force");
    assert_eq!(feed(&mut store, Event::InitDone), set(&["10.0.0.4"]));
}

#[test]
fn an_empty_first_list_is_still_a_set() {
    let mut store = Store::default();
    assert_eq!(feed(&mut store, Event::Init), None);
    assert_eq!(feed(&mut store, Event::InitDone), set(&[]));
    assert_eq!(feed(&mut store, Event::Init), None);
    assert_eq!(
        feed(&mut store, Event::InitDone),
        None,
        "an identical relist is silent"
    );
}
