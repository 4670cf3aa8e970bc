//! The napi boundary of `node-swarm-kb`: converts between JavaScript and the
//! `swarm-core` engine, and forwards. No cluster logic lives here.
//!
//! - [`node`]: the `SwarmNode` class the facade drives;
//! - [`host`]: the engine's [`swarm_core::swarm::Host`] backed by JavaScript callbacks;
//! - [`mailbox`]: the batched crossings into JavaScript;
//! - [`reader`]: multiplexed replies read on the JavaScript thread's loop;
//! - [`config`]: the options object, converted to the engine's settings;
//! - [`log`]: the engine's log records, forwarded to the `debug` namespaces;
//! - [`ring`]: the `HashRing` class;
//! - [`bare`]: bare napi functions: the ring look-ups and the per-message calls;
//! - [`driver`]: HTTP connections served on the JavaScript thread's loop;
//! - [`uv`]: the libuv handles the addon puts on that loop.
mod bare;
mod config;
mod driver;
mod host;
mod log;
mod mailbox;
mod node;
mod reader;
mod ring;
mod uv;
