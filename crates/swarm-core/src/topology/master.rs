//! How the master is chosen: 0.5.1's rule, the smallest node IP in string order, or the
//! holder of a Kubernetes Lease (`masterElection: 'lease'`, see `lease.rs`).

use std::{collections::BTreeMap, sync::Arc};

use super::Member;

/// How the master is chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MasterRule {
    /// The smallest node IP in string order (`"10.0.0.10" < "10.0.0.9"`), recomputed
    /// after every change: 0.5.1's rule.
    #[default]
    SmallestIp,
    /// The holder of the Lease as last seen (`None`: nobody known to hold it), and the
    /// lease's transitions between holders, the master's epoch.
    Lease { holder: Option<String>, epoch: u64 },
}

impl MasterRule {
    /// The master of `nodes` by this rule.
    pub(super) fn master(&self, nodes: &BTreeMap<Arc<str>, Member>) -> Option<String> {
        match self {
            MasterRule::SmallestIp => nodes.keys().next().map(|ip| ip.to_string()),
            MasterRule::Lease { holder, .. } => holder.clone(),
        }
    }

    /// The holder, under a lease.
    pub(super) fn holder(&self) -> Option<&str> {
        match self {
            MasterRule::SmallestIp => None,
            MasterRule::Lease { holder, .. } => holder.as_deref(),
        }
    }

    /// The master's epoch, under a lease.
    pub(super) fn epoch(&self) -> Option<u64> {
        match self {
            MasterRule::SmallestIp => None,
            MasterRule::Lease { epoch, .. } => Some(*epoch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MemberSet, TopologyEvent};
    use super::*;

    fn lease(holder: Option<&str>, epoch: u64) -> MasterRule {
        MasterRule::Lease {
            holder: holder.map(str::to_owned),
            epoch,
        }
    }

    fn changed(previous: Option<&str>, current: Option<&str>) -> Vec<TopologyEvent> {
        vec![TopologyEvent::MasterChanged {
            previous: previous.map(str::to_owned),
            current: current.map(str::to_owned),
        }]
    }

    #[test]
    fn under_a_lease_the_master_is_its_holder_whatever_the_nodes() {
        let mut set = MemberSet::new(["10.0.0.2".to_owned()]);
        assert_eq!(set.elect(lease(None, 0)), vec![]);
        let events = set.apply(vec![
            Member::from_ip("10.0.0.1"),
            Member::from_ip("10.0.0.2"),
        ]);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, TopologyEvent::MasterChanged { .. })),
            "{events:?}"
        );
        let generation = set.view().generation;

        assert_eq!(
            set.elect(lease(Some("10.0.0.2"), 3)),
            changed(None, Some("10.0.0.2"))
        );
        let view = set.view();
        assert_eq!(
            (view.master.as_deref(), view.master_epoch),
            (Some("10.0.0.2"), Some(3))
        );
        assert_eq!(view.generation, generation, "the ring does not change");
        assert_eq!(
            set.elect(lease(Some("10.0.0.2"), 3)),
            vec![],
            "nothing changed"
        );

        set.apply(vec![Member::from_ip("10.0.0.2")]);
        assert_eq!(set.view().master.as_deref(), Some("10.0.0.2"));
        assert_eq!(set.elect(lease(None, 3)), changed(Some("10.0.0.2"), None));

        // The fallback: the smallest IP again, and no epoch.
        set.apply(vec![
            Member::from_ip("10.0.0.1"),
            Member::from_ip("10.0.0.2"),
        ]);
        assert_eq!(
            set.elect(MasterRule::SmallestIp),
            changed(None, Some("10.0.0.1"))
        );
        assert_eq!(set.view().master_epoch, None);
    }
}
