//! The consistent-hash ring.
