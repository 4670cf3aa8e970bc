//! The napi boundary of `node-swarm-kb`: converts between JavaScript and the
//! `swarm-core` engine, and forwards. No cluster logic lives here. Each module uses only
//! those listed before it:
//!
//! - `scope`: handle scopes, and where the addon may make JavaScript values;
//! - `bare`: bare napi functions: the ring look-ups and the per-message calls;
//! - `config`: the options object, converted to the engine's settings;
//! - `log`: the engine's log records, forwarded to the `debug` namespaces;
//! - `ring`: the `HashRing` class;
//! - `batch`: what JavaScript is handed: letters, outcomes and payloads, and one
//!   crossing's arguments;
//! - `event_loop`: the JavaScript thread's loop as the engine's event loop, run by
//!   `node-loop` (Unix);
//! - `mailbox`: the batched crossings into JavaScript;
//! - `chain`: a serialized task's next run, handed back with the answer of the run
//!   before;
//! - `host`: the engine's [`swarm_core::swarm::Host`] backed by JavaScript callbacks;
//! - `node`: the `SwarmNode` class the facade drives.
mod bare;
mod batch;
mod chain;
mod config;
#[cfg(unix)]
mod event_loop;
mod host;
mod log;
mod mailbox;
mod node;
mod ring;
mod scope;

/// The addon's own allocations (hyper's, tokio's, the messages') go to mimalloc; Node's
/// and V8's stay with the process's malloc. glibc's `malloc` merges its fast bins before
/// a request of more than 1 KiB whenever they hold chunks, and an HTTP/1.1 message makes
/// three such requests on its sender (hyper's 8 KiB read buffer, the send's two futures)
/// and one on its receiver (the read buffer). `no_thp`: arenas do not ask for
/// transparent huge pages, which made an idle node several MiB larger; `local_dynamic_tls`:
/// the thread-local model for a library loaded by `dlopen`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
