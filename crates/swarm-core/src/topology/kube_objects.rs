//! From Kubernetes objects to members: EndpointSlice and Endpoints conversion, and the
//! store that turns watcher events into full sets.
//!
//! Pure functions and state, no I/O: the watcher loop in `kube.rs` only feeds them.
//! Public so that property tests and the fuzz targets (`fuzz/`) can feed them too.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, ObjectReference};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

use super::Member;

/// The annotation the control plane sets on an Endpoints object cut at 1,000 addresses.
pub(crate) const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// The IP family of the process: a dual-stack Service has one EndpointSlice set per
/// family, and only the process's own family is used, so a pod is never two nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressFamily {
    /// `addressType: IPv4` (the default).
    #[default]
    IPv4,
    /// `addressType: IPv6`.
    IPv6,
}

impl AddressFamily {
    /// The family of the first local IP that parses; IPv4 when none does.
    pub fn of_ips<S: AsRef<str>>(ips: &[S]) -> Self {
        let first = ips
            .iter()
            .find_map(|ip| ip.as_ref().parse::<std::net::IpAddr>().ok());
        match first {
            Some(std::net::IpAddr::V6(_)) => AddressFamily::IPv6,
            _ => AddressFamily::IPv4,
        }
    }

    /// The EndpointSlice `addressType` value of this family.
    pub fn address_type(self) -> &'static str {
        match self {
            AddressFamily::IPv4 => "IPv4",
            AddressFamily::IPv6 => "IPv6",
        }
    }
}

fn pod_name(target: Option<&ObjectReference>) -> Option<Arc<str>> {
    let target = target?;
    match target.kind.as_deref() {
        None | Some("Pod") => target.name.as_deref().map(Arc::from),
        Some(_) => None,
    }
}

/// The members of one EndpointSlice, or none if it is of another family.
///
/// Conditions default as the API documents: absent `ready` is ready, absent `serving`
/// is `ready`'s value, absent `terminating` is false. Only an endpoint's first address
/// is used (the API calls them fungible).
pub fn slice_members(slice: &EndpointSlice, family: AddressFamily) -> Vec<Member> {
    if slice.address_type != family.address_type() {
        return Vec::new();
    }
    let mut members = Vec::with_capacity(slice.endpoints.len());
    for endpoint in &slice.endpoints {
        let Some(ip) = endpoint.addresses.first() else {
            continue;
        };
        let conditions = endpoint.conditions.as_ref();
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        members.push(Member {
            ip: ip.as_str().into(),
            pod: pod_name(endpoint.target_ref.as_ref()),
            node_name: endpoint.node_name.as_deref().map(Arc::from),
            zone: endpoint.zone.as_deref().map(Arc::from),
            ready,
            serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
            terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
        });
    }
    members
}

/// The members of one Endpoints object: `addresses` are ready, `notReadyAddresses` not.
pub fn endpoints_members(endpoints: &Endpoints) -> Vec<Member> {
    let convert = |address: &EndpointAddress, ready: bool| Member {
        ip: address.ip.as_str().into(),
        pod: pod_name(address.target_ref.as_ref()),
        node_name: address.node_name.as_deref().map(Arc::from),
        zone: None,
        ready,
        serving: ready,
        terminating: false,
    };
    let mut members = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        members.extend(subset.addresses.iter().flatten().map(|a| convert(a, true)));
        members.extend(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| convert(a, false)),
        );
    }
    members
}

/// Whether the control plane truncated this Endpoints object.
pub(crate) fn is_truncated(endpoints: &Endpoints) -> bool {
    let annotations = endpoints.metadata.annotations.as_ref();
    annotations
        .and_then(|a| a.get(OVER_CAPACITY))
        .map(String::as_str)
        == Some("truncated")
}

/// Joins the members of several objects into one set, one member per IP, in IP order.
/// A ready entry wins over a not-ready one (an endpoint moving between slices).
pub(crate) fn join<'a>(objects: impl IntoIterator<Item = &'a Vec<Member>>) -> Vec<Member> {
    let mut all: Vec<&Member> = objects.into_iter().flatten().collect();
    // Ready entries first among equal IPs, so deduplication keeps them.
    all.sort_unstable_by(|a, b| a.ip.cmp(&b.ip).then(b.ready.cmp(&a.ready)));
    all.dedup_by(|later, first| later.ip == first.ip);
    all.into_iter().cloned().collect()
}

/// Whether two member lists hold the same members, in any order.
fn same_members(a: &[Member], b: &[Member]) -> bool {
    a.len() == b.len() && by_ip(a) == by_ip(b)
}

fn by_ip(list: &[Member]) -> Vec<&Member> {
    let mut refs: Vec<&Member> = list.iter().collect();
    refs.sort_unstable_by(|x, y| x.ip.cmp(&y.ip));
    refs
}

/// The converted objects of one watch, by object name, and the relist buffer.
///
/// `Init` opens a fresh buffer, `InitApply` fills it, `InitDone` swaps it in at once;
/// `Apply`/`Delete` update the store. [`Store::handle`] returns the full joined set
/// whenever it may have changed, and `None` while a relist is being buffered or when
/// nothing changed: an object whose members are the same (in any order), or a relist
/// that found every object as it was. Deciding that per object keeps a change to one
/// slice from costing a comparison of the whole set.
#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<String, Vec<Member>>,
    buffer: Option<BTreeMap<String, Vec<Member>>>,
    listed: bool,
}

impl Store {
    /// Feeds one watcher event, converting objects with `convert`.
    pub fn handle<K: kube::ResourceExt>(
        &mut self,
        event: Event<K>,
        mut convert: impl FnMut(&K) -> Vec<Member>,
    ) -> Option<Vec<Member>> {
        match event {
            Event::Init => {
                self.buffer = Some(BTreeMap::new());
                return None;
            }
            Event::InitApply(object) => {
                let members = convert(&object);
                self.buffer
                    .get_or_insert_default()
                    .insert(object.name_any(), members);
                return None;
            }
            Event::InitDone => {
                let relisted = self.buffer.take().unwrap_or_default();
                let unchanged = self.listed && relisted == self.objects;
                self.objects = relisted;
                self.listed = true;
                if unchanged {
                    return None;
                }
            }
            Event::Apply(object) => {
                let members = convert(&object);
                let name = object.name_any();
                if self
                    .objects
                    .get(&name)
                    .is_some_and(|old| same_members(old, &members))
                {
                    return None;
                }
                self.objects.insert(name, members);
            }
            Event::Delete(object) => {
                let removed = self.objects.remove(&object.name_any());
                if removed.is_none_or(|members| members.is_empty()) {
                    return None;
                }
            }
        }
        Some(join(self.objects.values()))
    }
}

#[cfg(test)]
#[path = "kube_objects_tests.rs"]
mod tests;
