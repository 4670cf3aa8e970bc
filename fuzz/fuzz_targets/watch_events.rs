//! The watch-event store on any sequence of watcher events (well-formed relists or not)
//! over any EndpointSlices or Endpoints: never a panic, and every set it yields holds one
//! member per IP, in IP order.
#![no_main]

use arbitrary::Arbitrary;
use k8s_openapi::api::core::v1::{self as core, EndpointAddress, EndpointSubset, ObjectReference};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointConditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use libfuzzer_sys::fuzz_target;
use swarm_core::topology::kube_objects::{endpoints_members, slice_members, Store};
use swarm_core::topology::{AddressFamily, Member};

#[derive(Arbitrary, Debug)]
enum Watch {
    Slices { ipv6: bool, events: Vec<Op<Slice>> },
    Endpoints(Vec<Op<Endpoints>>),
}

#[derive(Arbitrary, Debug)]
enum Op<T> {
    Init,
    InitApply(T),
    InitDone,
    Apply(T),
    Delete(T),
}

impl<T> Op<T> {
    fn event<K: From<T>>(self) -> Event<K> {
        match self {
            Op::Init => Event::Init,
            Op::InitApply(t) => Event::InitApply(t.into()),
            Op::InitDone => Event::InitDone,
            Op::Apply(t) => Event::Apply(t.into()),
            Op::Delete(t) => Event::Delete(t.into()),
        }
    }
}

/// An address: from small pools of IPv4 and IPv6 (so objects share them), or any string.
#[derive(Arbitrary, Debug)]
enum Address {
    V4(u8),
    V6(u8),
    Raw(String),
}

impl From<Address> for String {
    fn from(address: Address) -> String {
        match address {
            Address::V4(n) => format!("10.0.0.{}", n % 8),
            Address::V6(n) => format!("fd00::{:x}", n % 8),
            Address::Raw(s) => s,
        }
    }
}

/// A name from a small pool (so events hit the same objects), or none.
fn meta(name: Option<u8>) -> ObjectMeta {
    ObjectMeta {
        name: name.map(|n| format!("web-{}", n % 4)),
        ..ObjectMeta::default()
    }
}

#[derive(Arbitrary, Debug)]
struct Target {
    kind: Option<String>,
    name: Option<String>,
}

fn target_ref(target: Option<Target>) -> Option<ObjectReference> {
    target.map(|t| ObjectReference {
        kind: t.kind,
        name: t.name,
        ..ObjectReference::default()
    })
}

#[derive(Arbitrary, Debug)]
enum AddressType {
    IPv4,
    IPv6,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Slice {
    name: Option<u8>,
    address_type: AddressType,
    endpoints: Vec<SliceEndpoint>,
}

#[derive(Arbitrary, Debug)]
struct SliceEndpoint {
    addresses: Vec<Address>,
    /// `ready`, `serving`, `terminating`.
    conditions: Option<(Option<bool>, Option<bool>, Option<bool>)>,
    target: Option<Target>,
    node_name: Option<String>,
    zone: Option<String>,
}

impl From<Slice> for discovery::EndpointSlice {
    fn from(slice: Slice) -> Self {
        let address_type = match slice.address_type {
            AddressType::IPv4 => AddressFamily::IPv4.address_type().to_owned(),
            AddressType::IPv6 => AddressFamily::IPv6.address_type().to_owned(),
            AddressType::Other(other) => other,
        };
        let endpoint = |e: SliceEndpoint| discovery::Endpoint {
            addresses: e.addresses.into_iter().map(String::from).collect(),
            conditions: e
                .conditions
                .map(|(ready, serving, terminating)| EndpointConditions {
                    ready,
                    serving,
                    terminating,
                }),
            target_ref: target_ref(e.target),
            node_name: e.node_name,
            zone: e.zone,
            ..discovery::Endpoint::default()
        };
        discovery::EndpointSlice {
            metadata: meta(slice.name),
            address_type,
            endpoints: slice.endpoints.into_iter().map(endpoint).collect(),
            ports: None,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Endpoints {
    name: Option<u8>,
    subsets: Option<Vec<Subset>>,
}

#[derive(Arbitrary, Debug)]
struct Subset {
    addresses: Option<Vec<Host>>,
    not_ready_addresses: Option<Vec<Host>>,
}

#[derive(Arbitrary, Debug)]
struct Host {
    ip: Address,
    target: Option<Target>,
    node_name: Option<String>,
}

impl From<Endpoints> for core::Endpoints {
    fn from(endpoints: Endpoints) -> Self {
        let hosts = |list: Option<Vec<Host>>| {
            list.map(|hosts| {
                hosts
                    .into_iter()
                    .map(|h| EndpointAddress {
                        ip: h.ip.into(),
                        target_ref: target_ref(h.target),
                        node_name: h.node_name,
                        ..EndpointAddress::default()
                    })
                    .collect()
            })
        };
        let subset = |s: Subset| EndpointSubset {
            addresses: hosts(s.addresses),
            not_ready_addresses: hosts(s.not_ready_addresses),
            ports: None,
        };
        core::Endpoints {
            metadata: meta(endpoints.name),
            subsets: endpoints
                .subsets
                .map(|list| list.into_iter().map(subset).collect()),
        }
    }
}

fn feed<T, K: From<T> + ResourceExt>(ops: Vec<Op<T>>, convert: impl Fn(&K) -> Vec<Member>) {
    let mut store = Store::default();
    for op in ops {
        if let Some(set) = store.handle(op.event::<K>(), &convert) {
            assert!(set.windows(2).all(|w| w[0].ip < w[1].ip), "{set:?}");
        }
    }
}

fuzz_target!(|watch: Watch| match watch {
    Watch::Slices { ipv6, events } => {
        let family = if ipv6 {
            AddressFamily::IPv6
        } else {
            AddressFamily::IPv4
        };
        feed(events, |s: &discovery::EndpointSlice| {
            slice_members(s, family)
        });
    }
    Watch::Endpoints(events) => feed(events, endpoints_members),
});
