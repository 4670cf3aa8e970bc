//! The HTTP wire protocol of 0.5.1: every node serves `POST /<topic>` on one port, the
//! body is JSON or raw text, and the reply carries the handlers' results.
//!
//! - [`codec`]: bodies, topics and the `_task` envelope;
//! - [`path`]: topic paths on the wire;
//! - [`meta`]: what a request says besides its topic and body ([`routed`], [`trace`]);
//! - [`server`]: the hyper server, its limits and its graceful shutdown;
//! - [`client`]: the pooled client with its timeouts;
//! - [`mux`]: the multiplexed transport between pods of this version;
//! - [`loop_io`]: the event loop of another thread, and connections served on it;
//! - [`auth`]: the opt-in signatures of pod traffic;
//! - [`sys`]: the socket calls that differ between platforms.

pub mod auth;
pub mod client;
pub mod codec;
mod loop_http1;
pub mod loop_io;
pub mod meta;
pub mod mux;
pub mod path;
pub mod routed;
pub mod server;
pub mod sys;
pub mod trace;

use std::net::IpAddr;

use bytes::Bytes;

pub use auth::Auth;
pub use client::{Client, ClientConfig, Liveness, SendError};
pub use codec::{CodecError, Payload, TaskRequest, TASK_TOPIC};
pub use meta::{Meta, RING};
pub use routed::Routed;
pub use server::{serve, Answering, Dispatch, ServerLimits};
pub use trace::Trace;

/// A decoded request.
#[derive(Debug)]
pub struct Inbound {
    /// The topic path without its leading and trailing slashes, percent-decoded.
    pub path: String,
    /// The body.
    pub payload: Payload,
    /// The sender's address.
    pub from: IpAddr,
    /// For a multiplexed request, what answers it from any thread; a dispatcher that
    /// takes it answers through it and returns [`Answering::Taken`].
    pub responder: Option<mux::Responder>,
    /// How a task request between pods of 1.x was routed, and the trace it belongs to,
    /// when it says so.
    pub meta: Meta,
}

impl Inbound {
    /// The topics, as handlers receive them.
    pub fn topics(&self) -> Vec<String> {
        codec::topics(&self.path)
    }
}

/// An answer to a request, or a reply received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub payload: Payload,
}

impl Reply {
    /// A `200` (or `204` when empty) reply.
    pub fn ok(payload: Payload) -> Reply {
        let status = if payload == Payload::Empty { 204 } else { 200 };
        Reply { status, payload }
    }

    /// An error reply: the status and the message as raw text, as 0.5.1 answers.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            payload: Payload::Text(Bytes::copy_from_slice(message.as_bytes())),
        }
    }

    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}
