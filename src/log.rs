//! The engine's `tracing` records, forwarded to JavaScript's `debug` namespaces.
//!
//! Targets map to namespaces: `node_swarm_kb::kubernetes` to `node-swarm-kb:kubernetes`,
//! and so on; the libraries' records (kube, hyper, tower: what they do for each request)
//! go to `node-swarm-kb:trace` alone, which the facade enables only when `DEBUG` names
//! it, so `DEBUG=node-swarm-kb*` reads as what this node did. Only records of namespaces
//! that `debug` has enabled cross into JavaScript, and our own warnings always do (the
//! facade prints them), so a quiet process pays nothing.

use std::sync::{Once, RwLock};

use napi::{
    bindgen_prelude::FnArgs,
    threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode},
    Status,
};
use napi_derive::napi;
use tracing::{field::Field, Event, Level, Subscriber};
use tracing_subscriber::{layer::Context, prelude::*, Layer};

/// `(namespace, level, message)`; weak, so logging never keeps the process alive.
type LogArgs = FnArgs<(String, String, String)>;
type LogCallback = ThreadsafeFunction<LogArgs, (), LogArgs, Status, false, true>;

struct Sink {
    callback: LogCallback,
    enabled: Vec<String>,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INSTALL: Once = Once::new();

/// Routes the engine's log records to `callback(namespace, level, message)` for the
/// `enabled` namespaces (warnings and errors always).
#[napi]
pub fn set_log_sink(callback: LogCallback, enabled: Vec<String>) {
    *SINK.write().expect("not poisoned") = Some(Sink { callback, enabled });
    INSTALL.call_once(|| {
        // Another global subscriber (an embedding's own) wins; then logs stay in Rust.
        let _ = tracing_subscriber::registry().with(Forward).try_init();
    });
}

fn namespace(target: &str) -> &'static str {
    let Some(ours) = target.strip_prefix("node_swarm_kb") else {
        return "node-swarm-kb:trace";
    };
    match ours {
        r if r.starts_with("::kubernetes") => "node-swarm-kb:kubernetes",
        r if r.starts_with("::messages") => "node-swarm-kb:messages",
        r if r.starts_with("::tasks") => "node-swarm-kb:tasks",
        _ => "node-swarm-kb",
    }
}

struct Forward;

/// A record's message, then its fields as `name=value`, whatever order they came in.
#[derive(Default)]
struct Message {
    text: String,
    fields: String,
}

impl Message {
    fn line(self) -> String {
        self.text + &self.fields
    }
}

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        use std::fmt::Write;
        if field.name() == "message" {
            self.text.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Forward {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // Our own warnings always show; the libraries' records (kube's retries, hyper's
        // connection errors) only with DEBUG, since our code already reports each outage
        // once.
        let ours = meta.target().starts_with("node_swarm_kb");
        let warning = ours && *meta.level() <= Level::WARN;
        let ns = namespace(meta.target());
        let guard = SINK.read().expect("not poisoned");
        let Some(sink) = guard.as_ref() else { return };
        if !warning && !sink.enabled.iter().any(|e| e == ns) {
            return;
        }
        let mut message = Message::default();
        event.record(&mut message);
        let level = meta.level().as_str().to_ascii_lowercase();
        sink.callback.call(
            FnArgs::from((ns.to_owned(), level, message.line())),
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    }
}
