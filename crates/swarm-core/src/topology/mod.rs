//! Cluster membership.
