//! One running node.
