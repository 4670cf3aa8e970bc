//! Property tests of the decoders that face the network: whatever bytes arrive, they
//! decode or are refused with an error, never a panic, and what we encode decodes back;
//! and of the watch-event store: whatever events the API server sends, the member set
//! is the one the objects in force give.

use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::Bytes;
use hyper::header::HeaderValue;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints, ObjectReference};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use kube::api::ObjectMeta;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use proptest::prelude::*;
use swarm_core::messaging::{codec, path, Payload, TaskRequest};
use swarm_core::topology::kube_objects::{endpoints_members, slice_members, Store};
use swarm_core::topology::{AddressFamily, Member};

fn content_type() -> impl Strategy<Value = Option<HeaderValue>> {
    prop_oneof![
        Just(None),
        Just(Some(HeaderValue::from_static("application/json"))),
        Just(Some(HeaderValue::from_static(
            "application/json; charset=utf-8"
        ))),
        "[ -~]{0,40}".prop_map(|s| HeaderValue::from_str(&s).ok()),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_body_decodes_or_is_refused(body in prop::collection::vec(any::<u8>(), 0..256), ct in content_type()) {
        match Payload::decode(ct.as_ref(), Bytes::from(body)) {
            Ok(Payload::Json(json)) => prop_assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok()),
            Ok(Payload::Text(text)) => prop_assert!(std::str::from_utf8(&text).is_ok()),
            Ok(Payload::Empty) => prop_assert!(false, "decode never gives Empty"),
            Err(_) => {}
        }
    }

    #[test]
    fn any_task_body_parses_or_is_refused(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = TaskRequest::parse(&Payload::Json(Bytes::from(body)));
    }

    #[test]
    fn task_requests_round_trip(name in ".{1,24}", args in prop::collection::vec(json_value(), 0..5)) {
        let args = serde_json::to_vec(&args).unwrap();
        let parsed = TaskRequest::parse(&Payload::Json(TaskRequest::encode(&name, &args))).unwrap();
        prop_assert_eq!(parsed.task, name);
        let back: serde_json::Value = serde_json::from_slice(&parsed.args).unwrap();
        prop_assert_eq!(back, serde_json::from_slice::<serde_json::Value>(&args).unwrap());
    }

    #[test]
    fn topic_paths_round_trip(topic in ".{0,40}") {
        let encoded = path::encode(&topic);
        prop_assert!(encoded.is_ascii());
        prop_assert_eq!(path::decode(&encoded[1..]), topic);
    }

    #[test]
    fn any_request_path_splits(raw in ".{0,60}") {
        let topics = codec::topics(&path::decode(&raw));
        prop_assert!(!topics.is_empty());
    }
}

/// Valid IPv4 and IPv6 addresses from small pools (so slices share them), or any string.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..5).prop_map(|n| format!("10.0.0.{n}")),
        (0u8..5).prop_map(|n| format!("fd00::{n}")),
        ".{0,8}",
    ]
}

fn target_ref() -> impl Strategy<Value = Option<ObjectReference>> {
    let kind = prop::option::of(prop_oneof![Just("Pod".to_owned()), Just("Node".to_owned())]);
    prop::option::of(
        (kind, prop::option::of("web-[0-9]")).prop_map(|(kind, name)| ObjectReference {
            kind,
            name,
            ..ObjectReference::default()
        }),
    )
}

/// A name from a small pool, so that events hit the same objects; or none at all.
fn meta() -> impl Strategy<Value = ObjectMeta> {
    prop::option::of("web-[abc]").prop_map(|name| ObjectMeta {
        name,
        ..ObjectMeta::default()
    })
}

fn slice() -> impl Strategy<Value = EndpointSlice> {
    let flag = || prop::option::of(any::<bool>());
    let conditions = prop::option::of((flag(), flag(), flag()).prop_map(
        |(ready, serving, terminating)| EndpointConditions {
            ready,
            serving,
            terminating,
        },
    ));
    let endpoint = (
        prop::collection::vec(address(), 0..3),
        conditions,
        target_ref(),
        prop::option::of("node-[ab]"),
        prop::option::of("zone-[ab]"),
    )
        .prop_map(
            |(addresses, conditions, target_ref, node_name, zone)| Endpoint {
                addresses,
                conditions,
                target_ref,
                node_name,
                zone,
                ..Endpoint::default()
            },
        );
    let address_type = prop_oneof![
        Just("IPv4".to_owned()),
        Just("IPv6".to_owned()),
        Just("FQDN".to_owned()),
        "[A-Za-z0-9]{0,5}",
    ];
    (meta(), address_type, prop::collection::vec(endpoint, 0..4)).prop_map(
        |(metadata, address_type, endpoints)| EndpointSlice {
            metadata,
            address_type,
            endpoints,
            ports: None,
        },
    )
}

fn endpoints() -> impl Strategy<Value = Endpoints> {
    let address = || {
        (address(), target_ref(), prop::option::of("node-[ab]")).prop_map(
            |(ip, target_ref, node_name)| EndpointAddress {
                ip,
                target_ref,
                node_name,
                ..EndpointAddress::default()
            },
        )
    };
    let addresses = || prop::option::of(prop::collection::vec(address(), 0..3));
    let subset =
        (addresses(), addresses()).prop_map(|(addresses, not_ready_addresses)| EndpointSubset {
            addresses,
            not_ready_addresses,
            ports: None,
        });
    (
        meta(),
        prop::option::of(prop::collection::vec(subset, 0..3)),
    )
        .prop_map(|(metadata, subsets)| Endpoints { metadata, subsets })
}

/// Any sequence of watcher events, well-formed relists or not.
fn events<K: Clone + Debug>(object: BoxedStrategy<K>) -> impl Strategy<Value = Vec<Event<K>>> {
    let event = prop_oneof![
        1 => Just(Event::Init),
        3 => object.clone().prop_map(Event::InitApply),
        1 => Just(Event::InitDone),
        3 => object.clone().prop_map(Event::Apply),
        2 => object.prop_map(Event::Delete),
    ];
    prop::collection::vec(event, 0..32)
}

/// The model of one object: its (IP, ready) entries, as the API documents them.
type Entries<K> = fn(&K, AddressFamily) -> Vec<(String, bool)>;

/// An EndpointSlice of the process's family: each endpoint's first address, ready unless
/// its `ready` condition says false.
fn slice_entries(slice: &EndpointSlice, family: AddressFamily) -> Vec<(String, bool)> {
    if slice.address_type != family.address_type() {
        return Vec::new();
    }
    let entry = |e: &Endpoint| {
        let ready = e.conditions.as_ref().and_then(|c| c.ready) != Some(false);
        Some((e.addresses.first()?.clone(), ready))
    };
    slice.endpoints.iter().filter_map(entry).collect()
}

/// An Endpoints object: `addresses` are ready, `notReadyAddresses` are not.
fn endpoints_entries(endpoints: &Endpoints, _: AddressFamily) -> Vec<(String, bool)> {
    let mut entries = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        for (list, ready) in [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ] {
            entries.extend(list.iter().flatten().map(|a| (a.ip.clone(), ready)));
        }
    }
    entries
}

/// Feeds `events` to a store and checks after each one that the set its consumer holds
/// (the last one yielded; empty before any) is the model's: one member per IP in IP order,
/// ready when any entry of the objects in force is, each member one that an object in
/// force gives. The objects in force: a relist (`Init` .. `InitDone`) replaces them with
/// those listed since the last `Init`; `Apply` and `Delete` change them.
fn check_store<K: ResourceExt + Clone>(
    events: Vec<Event<K>>,
    family: AddressFamily,
    convert: impl Fn(&K, AddressFamily) -> Vec<Member>,
    entries: Entries<K>,
) -> Result<(), TestCaseError> {
    let mut store = Store::default();
    let mut held: Vec<Member> = Vec::new();
    let mut in_force: BTreeMap<String, K> = BTreeMap::new();
    let mut listing: Option<BTreeMap<String, K>> = None;
    for event in events {
        match &event {
            Event::Init => listing = Some(BTreeMap::new()),
            Event::InitApply(o) => {
                listing
                    .get_or_insert_default()
                    .insert(o.name_any(), o.clone());
            }
            Event::InitDone => in_force = listing.take().unwrap_or_default(),
            Event::Apply(o) => {
                in_force.insert(o.name_any(), o.clone());
            }
            Event::Delete(o) => {
                in_force.remove(&o.name_any());
            }
        }
        if let Some(set) = store.handle(event, |o| convert(o, family)) {
            held = set;
        }

        prop_assert!(held.windows(2).all(|w| w[0].ip < w[1].ip), "{held:?}");
        let mut expected: BTreeMap<String, bool> = BTreeMap::new();
        for (ip, ready) in in_force.values().flat_map(|o| entries(o, family)) {
            *expected.entry(ip).or_default() |= ready;
        }
        let got: BTreeMap<String, bool> =
            held.iter().map(|m| (m.ip.to_string(), m.ready)).collect();
        prop_assert_eq!(got, expected);
        let given: Vec<Member> = in_force.values().flat_map(|o| convert(o, family)).collect();
        for member in &held {
            prop_assert!(given.contains(member), "{member:?} is stale");
        }
    }
    Ok(())
}

fn family() -> impl Strategy<Value = AddressFamily> {
    prop_oneof![Just(AddressFamily::IPv4), Just(AddressFamily::IPv6)]
}

proptest! {
    // A fixed seed: every run checks the same cases (the `watch_events` fuzz target
    // explores beyond them).
    #![proptest_config(ProptestConfig {
        rng_seed: prop::test_runner::RngSeed::Fixed(5),
        ..ProptestConfig::default()
    })]

    #[test]
    fn slice_events_give_the_model_set(events in events(slice().boxed()), family in family()) {
        check_store(events, family, slice_members, slice_entries)?;
    }

    #[test]
    fn endpoints_events_give_the_model_set(events in events(endpoints().boxed()), family in family()) {
        check_store(events, family, |e, _| endpoints_members(e), endpoints_entries)?;
    }
}
