//! The member set: the current nodes, the master, and the diff that turns a new set of
//! endpoints into change events.
//!
//! Every update is a *full* set of endpoints, swapped in at once and diffed against the
//! previous one; a relist after a watch outage is therefore just another update, and
//! nothing depends on having seen every intermediate watch event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{MasterRule, Member, TopologyEvent};

/// An immutable snapshot of the topology, cheap to clone behind an [`Arc`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The nodes (endpoints with `ready == true`), by IP in string order.
    pub nodes: BTreeMap<Arc<str>, Member>,
    /// The master by the set's [`MasterRule`]: by default the smallest node IP in string
    /// order (`"10.0.0.10" < "10.0.0.9"`), if any node.
    pub master: Option<String>,
    /// The master's epoch when a Lease elects it (the lease's transitions).
    pub master_epoch: Option<u64>,
    /// How many full sets of endpoints have been applied; `0` before the first one.
    pub generation: u64,
    /// The IPs that can still answer: nodes, and endpoints that are not ready but still
    /// serving (a terminating pod draining its work). A peer that drops out of this set
    /// is gone, and calls waiting on it can be failed at once.
    pub reachable: BTreeSet<Arc<str>>,
}

impl View {
    /// Whether `ip` is a node of this view.
    pub fn is_node(&self, ip: &str) -> bool {
        self.nodes.contains_key(ip)
    }
}

/// The current nodes, the local IPs, and the master; see [`MemberSet::apply`].
#[derive(Clone, Debug, Default)]
pub struct MemberSet {
    local_ips: BTreeSet<String>,
    current: Arc<View>,
    /// The local IPs that became nodes and have not left since (a readiness blip does
    /// not make them leave), with what was last known of them.
    joined: BTreeMap<Arc<str>, Member>,
    /// A local IP was among the last endpoints, in any state.
    listed: bool,
    rule: MasterRule,
}

impl MemberSet {
    /// An empty set (generation 0) for a process that owns `local_ips`.
    pub fn new(local_ips: impl IntoIterator<Item = String>) -> Self {
        MemberSet {
            local_ips: local_ips.into_iter().collect(),
            current: Arc::default(),
            joined: BTreeMap::new(),
            listed: false,
            rule: MasterRule::default(),
        }
    }

    /// The latest snapshot.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.current)
    }

    /// The IPs of this process.
    pub fn local_ips(&self) -> &BTreeSet<String> {
        &self.local_ips
    }

    /// Whether a local IP was among the last endpoints applied, ready or not.
    pub fn is_listed(&self) -> bool {
        self.listed
    }

    /// Swaps in `endpoints` (the full current set, ready or not) and returns what changed.
    ///
    /// Only endpoints with `ready == true` become nodes; a duplicated IP counts once (the
    /// first ready entry wins). The events come in a fixed order: `NodeRemoved`, then
    /// `NodeAdded`, each in IP string order and never for a local IP; then, for the local
    /// IPs that have been nodes, `ReadinessChanged` when one is still listed, not
    /// terminating, and turned not ready or ready again, and `LocalLeft` when one is
    /// terminating or no longer listed; then `MasterChanged` if the master changed. A node whose other fields change stays a node silently.
    pub fn apply(&mut self, endpoints: Vec<Member>) -> Vec<TopologyEvent> {
        self.listed = endpoints.iter().any(|m| self.local_ips.contains(&*m.ip));
        // The local endpoints still listed and not terminating: still in the swarm.
        let staying: BTreeMap<Arc<str>, Member> = endpoints
            .iter()
            .filter(|m| !m.terminating && self.local_ips.contains(&*m.ip))
            .map(|m| (m.ip.clone(), m.clone()))
            .collect();
        let reachable = endpoints
            .iter()
            .filter(|m| m.ready || m.serving)
            .map(|m| m.ip.clone())
            .collect();
        // Bulk-built (sorted input, as sources give it, is the fast path); the first
        // entry of an IP wins.
        let mut ready: Vec<Member> = endpoints.into_iter().filter(|m| m.ready).collect();
        ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        ready.dedup_by(|later, first| later.ip == first.ip);
        let nodes: BTreeMap<Arc<str>, Member> =
            ready.into_iter().map(|m| (m.ip.clone(), m)).collect();
        let master = self.rule.master(&nodes);
        let previous = &self.current;

        // Both maps iterate in IP order: one merge finds what left and what joined.
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let mut old = previous.nodes.values().peekable();
        let mut new = nodes.values().peekable();
        loop {
            match (old.peek(), new.peek()) {
                (Some(o), Some(n)) if o.ip == n.ip => {
                    old.next();
                    new.next();
                }
                (Some(o), Some(n)) if o.ip < n.ip => removed.push(old.next().expect("peeked")),
                (Some(_), None) => removed.push(old.next().expect("peeked")),
                (_, Some(_)) => added.push(new.next().expect("peeked")),
                (None, None) => break,
            }
        }
        let mut events = Vec::new();
        let mut local = Vec::new();
        for member in removed {
            if !self.local_ips.contains(&*member.ip) {
                events.push(TopologyEvent::NodeRemoved(member.clone()));
            } else if let Some(listed) = staying.get(&member.ip) {
                local.push(TopologyEvent::ReadinessChanged(listed.clone()));
            }
        }
        for member in added {
            if !self.local_ips.contains(&*member.ip) {
                events.push(TopologyEvent::NodeAdded(member.clone()));
            } else if self
                .joined
                .insert(member.ip.clone(), member.clone())
                .is_some()
            {
                local.push(TopologyEvent::ReadinessChanged(member.clone()));
            }
        }
        for (ip, listed) in &staying {
            if let Some(known) = self.joined.get_mut(ip) {
                known.clone_from(listed);
            }
        }
        // Leaving: terminating, or gone from the endpoints, after having joined.
        let left: Vec<Arc<str>> = self
            .joined
            .keys()
            .filter(|ip| !staying.contains_key(*ip))
            .cloned()
            .collect();
        for ip in left {
            if let Some(member) = self.joined.remove(&ip) {
                local.push(TopologyEvent::LocalLeft(member));
            }
        }
        events.append(&mut local);
        if master != previous.master {
            events.push(TopologyEvent::MasterChanged {
                previous: previous.master.clone(),
                current: master.clone(),
            });
        }

        self.current = Arc::new(View {
            nodes,
            master,
            master_epoch: self.rule.epoch(),
            generation: previous.generation + 1,
            reachable,
        });
        events
    }

    /// Chooses the master by `rule` from now on; returns `MasterChanged` if that changed
    /// it. The nodes, and so the generation, stay as they are.
    pub fn elect(&mut self, rule: MasterRule) -> Vec<TopologyEvent> {
        self.rule = rule;
        let previous = &self.current;
        let master = self.rule.master(&previous.nodes);
        let master_epoch = self.rule.epoch();
        if master == previous.master && master_epoch == previous.master_epoch {
            return Vec::new();
        }
        let events = if master == previous.master {
            Vec::new()
        } else {
            vec![TopologyEvent::MasterChanged {
                previous: previous.master.clone(),
                current: master.clone(),
            }]
        };
        self.current = Arc::new(View {
            master,
            master_epoch,
            ..View::clone(previous)
        });
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TopologyEvent::*;

    fn m(ip: &str) -> Member {
        Member::from_ip(ip)
    }

    fn not_ready(ip: &str) -> Member {
        Member {
            ready: false,
            serving: false,
            ..m(ip)
        }
    }

    fn master(previous: Option<&str>, current: Option<&str>) -> TopologyEvent {
        MasterChanged {
            previous: previous.map(str::to_owned),
            current: current.map(str::to_owned),
        }
    }

    fn set(local: &[&str]) -> MemberSet {
        MemberSet::new(local.iter().map(|s| s.to_string()))
    }

    #[test]
    fn first_set_adds_remote_nodes_and_elects_in_string_order() {
        let mut s = set(&["10.0.0.9"]);
        assert_eq!(s.view().generation, 0);
        let events = s.apply(vec![m("10.0.0.9"), m("10.0.0.10"), m("10.0.0.2")]);
        assert_eq!(
            events,
            vec![
                NodeAdded(m("10.0.0.10")),
                NodeAdded(m("10.0.0.2")),
                master(None, Some("10.0.0.10")),
            ]
        );
        let view = s.view();
        assert_eq!(view.master.as_deref(), Some("10.0.0.10"));
        assert_eq!(view.generation, 1);
        assert!(
            view.is_node("10.0.0.9"),
            "a local IP is a node, just not announced"
        );
    }

    #[test]
    fn removal_and_addition_in_deterministic_order() {
        let mut s = set(&["10.0.0.5"]);
        s.apply(vec![
            m("10.0.0.5"),
            m("10.0.0.7"),
            m("10.0.0.3"),
            m("10.0.0.1"),
        ]);
        let events = s.apply(vec![m("10.0.0.5"), m("10.0.0.8"), m("10.0.0.4")]);
        assert_eq!(
            events,
            vec![
                NodeRemoved(m("10.0.0.1")),
                NodeRemoved(m("10.0.0.3")),
                NodeRemoved(m("10.0.0.7")),
                NodeAdded(m("10.0.0.4")),
                NodeAdded(m("10.0.0.8")),
                master(Some("10.0.0.1"), Some("10.0.0.4")),
            ]
        );
    }

    #[test]
    fn a_smaller_ip_joining_takes_over_the_master() {
        let mut s = set(&["10.0.0.9"]);
        s.apply(vec![m("10.0.0.9")]);
        let events = s.apply(vec![m("10.0.0.9"), m("10.0.0.10")]);
        assert_eq!(
            events,
            vec![
                NodeAdded(m("10.0.0.10")),
                master(Some("10.0.0.9"), Some("10.0.0.10"))
            ]
        );
    }

    #[test]
    fn local_ip_leaving_is_local_left_not_node_removed() {
        let mut s = set(&["10.0.0.1"]);
        s.apply(vec![m("10.0.0.1"), m("10.0.0.2")]);
        let events = s.apply(vec![m("10.0.0.2"), m("10.0.0.3")]);
        assert_eq!(
            events,
            vec![
                NodeAdded(m("10.0.0.3")),
                LocalLeft(m("10.0.0.1")),
                master(Some("10.0.0.1"), Some("10.0.0.2")),
            ]
        );
        // Coming back is not announced either.
        let events = s.apply(vec![m("10.0.0.1"), m("10.0.0.2"), m("10.0.0.3")]);
        assert_eq!(events, vec![master(Some("10.0.0.2"), Some("10.0.0.1"))]);
    }

    #[test]
    fn a_readiness_blip_of_the_local_pod_is_no_leaving() {
        let mut s = set(&["10.0.0.1"]);
        s.apply(vec![m("10.0.0.1"), m("10.0.0.2")]);
        let events = s.apply(vec![not_ready("10.0.0.1"), m("10.0.0.2")]);
        assert_eq!(
            events,
            vec![
                ReadinessChanged(not_ready("10.0.0.1")),
                master(Some("10.0.0.1"), Some("10.0.0.2")),
            ]
        );
        assert!(!s.view().is_node("10.0.0.1"), "out of every ring meanwhile");
        let events = s.apply(vec![m("10.0.0.1"), m("10.0.0.2")]);
        assert_eq!(
            events,
            vec![
                ReadinessChanged(m("10.0.0.1")),
                master(Some("10.0.0.2"), Some("10.0.0.1")),
            ]
        );
        // Not ready, then gone: it leaves then.
        s.apply(vec![not_ready("10.0.0.1"), m("10.0.0.2")]);
        let events = s.apply(vec![m("10.0.0.2")]);
        assert_eq!(events, vec![LocalLeft(not_ready("10.0.0.1"))]);
    }

    #[test]
    fn a_terminating_local_pod_leaves_while_still_listed() {
        let mut s = set(&["10.0.0.1"]);
        s.apply(vec![m("10.0.0.1"), m("10.0.0.2")]);
        let terminating = Member {
            ready: false,
            terminating: true,
            ..m("10.0.0.1")
        };
        let events = s.apply(vec![terminating, m("10.0.0.2")]);
        assert_eq!(
            events,
            vec![
                LocalLeft(m("10.0.0.1")),
                master(Some("10.0.0.1"), Some("10.0.0.2")),
            ]
        );
    }

    #[test]
    fn a_local_ip_that_never_was_a_node_does_not_leave() {
        let mut s = set(&["10.0.0.1"]);
        s.apply(vec![not_ready("10.0.0.1"), m("10.0.0.2")]);
        let events = s.apply(vec![m("10.0.0.2")]);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn not_ready_endpoints_are_not_nodes() {
        let mut s = set(&[]);
        let events = s.apply(vec![not_ready("10.0.0.1"), m("10.0.0.2")]);
        assert_eq!(
            events,
            vec![NodeAdded(m("10.0.0.2")), master(None, Some("10.0.0.2"))]
        );
        assert!(!s.view().is_node("10.0.0.1"));
        // Turning not ready removes the node; turning ready again adds it back.
        let events = s.apply(vec![not_ready("10.0.0.1"), not_ready("10.0.0.2")]);
        assert_eq!(
            events,
            vec![NodeRemoved(m("10.0.0.2")), master(Some("10.0.0.2"), None)]
        );
        let events = s.apply(vec![m("10.0.0.1"), not_ready("10.0.0.2")]);
        assert_eq!(
            events,
            vec![NodeAdded(m("10.0.0.1")), master(None, Some("10.0.0.1"))]
        );
    }

    #[test]
    fn a_field_change_is_no_event_but_updates_the_view() {
        let mut s = set(&[]);
        s.apply(vec![m("10.0.0.1")]);
        let moved = Member {
            zone: Some("eu-west-1b".into()),
            terminating: true,
            ..m("10.0.0.1")
        };
        assert!(s.apply(vec![moved.clone()]).is_empty());
        let view = s.view();
        assert_eq!(view.nodes["10.0.0.1"], moved);
        assert_eq!(view.generation, 2);
    }

    #[test]
    fn duplicates_count_once_and_the_first_ready_entry_wins() {
        let mut s = set(&[]);
        let first = Member {
            pod: Some("web-a".into()),
            ..m("10.0.0.1")
        };
        let second = Member {
            pod: Some("web-b".into()),
            ..m("10.0.0.1")
        };
        let events = s.apply(vec![not_ready("10.0.0.1"), first.clone(), second]);
        assert_eq!(
            events,
            vec![NodeAdded(first.clone()), master(None, Some("10.0.0.1"))]
        );
        assert_eq!(s.view().nodes.len(), 1);
        assert_eq!(s.view().nodes["10.0.0.1"], first);
    }

    #[test]
    fn same_set_again_is_silent() {
        let mut s = set(&["10.0.0.1"]);
        s.apply(vec![m("10.0.0.1"), m("10.0.0.2")]);
        assert!(s.apply(vec![m("10.0.0.2"), m("10.0.0.1")]).is_empty());
    }

    #[test]
    fn snapshots_are_immutable() {
        let mut s = set(&[]);
        s.apply(vec![m("10.0.0.1")]);
        let before = s.view();
        s.apply(vec![m("10.0.0.2")]);
        assert!(before.is_node("10.0.0.1"));
        assert!(!s.view().is_node("10.0.0.1"));
    }

    mod properties {
        use std::collections::BTreeSet;

        use proptest::prelude::*;

        use super::*;

        fn endpoints() -> impl Strategy<Value = Vec<(u8, bool)>> {
            prop::collection::vec((0u8..12, any::<bool>()), 0..16)
        }

        proptest! {
            // Replaying the events on the previous node set gives the new one, whatever
            // the sets (duplicates, unordered input, not-ready entries, local IPs); the
            // local IP, once a node, leaves only when no longer listed, and its readiness
            // changes are said meanwhile.
            #[test]
            fn events_replay_to_the_view(sets in prop::collection::vec(endpoints(), 1..8)) {
                let local = "10.0.0.3".to_string();
                let mut set = MemberSet::new([local.clone()]);
                let mut replayed: BTreeSet<String> = BTreeSet::new();
                let mut joined = false;
                for list in sets {
                    let listed = list.iter().any(|&(n, _)| n == 3);
                    let members: Vec<Member> = list
                        .iter()
                        .map(|&(n, ready)| Member { ready, ..Member::from_ip(format!("10.0.0.{n}")) })
                        .collect();
                    let events = set.apply(members);
                    let view = set.view();
                    for event in events {
                        match event {
                            TopologyEvent::NodeAdded(m) => prop_assert!(replayed.insert(m.ip.to_string())),
                            TopologyEvent::NodeRemoved(m) => prop_assert!(replayed.remove(&*m.ip)),
                            TopologyEvent::LocalLeft(m) => {
                                prop_assert!(joined && !listed && *m.ip == *local);
                                joined = false;
                            }
                            TopologyEvent::ReadinessChanged(m) => {
                                prop_assert!(joined && listed && *m.ip == *local);
                                prop_assert_eq!(m.ready, view.is_node(&local));
                            }
                            _ => {}
                        }
                    }
                    prop_assert!(!joined || listed, "a joined local IP no longer listed left");
                    joined |= view.is_node(&local);
                    let expected: BTreeSet<String> = view.nodes.keys().filter(|ip| ***ip != *local).map(|ip| ip.to_string()).collect();
                    prop_assert_eq!(&replayed, &expected);
                    prop_assert_eq!(view.master.as_deref(), view.nodes.keys().next().map(|ip| &**ip));
                }
            }
        }
    }
}
