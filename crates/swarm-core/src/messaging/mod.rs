//! The HTTP wire protocol.
