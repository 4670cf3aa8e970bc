//! The project's Kubernetes API stand-in (`__test__/kube-standin/cli.js`, run with
//! Node) for the tests of the real kube client, and a topology running against it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use swarm_core::topology::{
    self, Discovery, KubeDiscovery, KubeSettings, Member, TopologyEvent, TopologyHandle,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// Long enough for the watcher's backoff (0.8 s, doubling) after a few failures.
pub const WAIT: Duration = Duration::from_secs(60);
pub const TOKEN: &str = "T";

/// The stand-in process; killed on drop (its stdin closing also ends it).
pub struct StandIn {
    child: Child,
    url: String,
    control: String,
}

impl StandIn {
    pub fn start() -> StandIn {
        let cli =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../__test__/kube-standin/cli.js");
        assert!(
            cli.exists(),
            "the Kubernetes API stand-in is missing: {}",
            cli.display()
        );
        let mut child = Command::new("node")
            .arg(&cli)
            .args(["--port", "0", "--token", TOKEN])
            .args(["--namespace", "default", "--app", "web"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` (needed for the Kubernetes API stand-in): {e}")
            });
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the stand-in's first line");
        let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("the stand-in printed {line:?} instead of its JSON line: {e}")
        });
        StandIn {
            url: info["url"].as_str().expect("url").to_owned(),
            control: info["control"].as_str().expect("control").to_owned(),
            child,
        }
    }

    pub fn settings(&self) -> KubeSettings {
        KubeSettings {
            url: self.url.clone(),
            namespace: "default".into(),
            selector: "app=web".into(),
            token: Some(TOKEN.into()),
            ..KubeSettings::default()
        }
    }

    /// One request to the control API over a fresh HTTP/1.1 connection.
    pub async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let authority = self.control.trim_start_matches("http://");
        let mut stream = TcpStream::connect(authority)
            .await
            .expect("connect to the control API");
        let body = body.to_string();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "control {method} {path}: {response}"
        );
        serde_json::from_str(body).unwrap_or(Value::Null)
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.control("POST", path, body).await
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Running {
    pub handle: TopologyHandle,
    pub events: UnboundedReceiver<TopologyEvent>,
    pub cancel: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub fn run(settings: KubeSettings, local: &[&str]) -> Running {
    let local: Vec<String> = local.iter().map(|s| s.to_string()).collect();
    let discovery = Box::new(KubeDiscovery::new(settings, &local));
    run_discovery(discovery, &local)
}

/// A topology of `discovery` for a process that owns `local`.
pub fn run_discovery(discovery: Box<dyn Discovery>, local: &[String]) -> Running {
    let cancel = CancellationToken::new();
    let (handle, events) = topology::start(discovery, local.to_vec(), cancel.clone());
    Running {
        handle,
        events,
        cancel,
    }
}

impl Running {
    pub async fn ready(&self) {
        let ready = tokio::time::timeout(WAIT, self.handle.ready()).await;
        ready.expect("ready in time").expect("ready");
    }

    /// The next event other than `Ready`.
    pub async fn next(&mut self) -> TopologyEvent {
        loop {
            let event = tokio::time::timeout(WAIT, self.events.recv()).await;
            let view = self.handle.view();
            let event = event
                .unwrap_or_else(|_| panic!("no event within {WAIT:?}; the view is {view:?}"))
                .expect("the topology runs");
            if event != TopologyEvent::Ready {
                return event;
            }
        }
    }

    /// The next events, as short strings: `+ip`, `-ip`, `left ip`, `master a>b`, ...
    /// (`Ready`, whose place the unit tests check, is passed over).
    pub async fn expect(&mut self, expected: &[&str]) {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let event = tokio::time::timeout(WAIT, self.events.recv()).await;
            match event {
                Ok(Some(TopologyEvent::Ready)) => {}
                Ok(Some(event)) => got.push(describe(&event)),
                _ => panic!("expected {expected:?}, got only {got:?} within {WAIT:?}"),
            }
        }
        assert_eq!(got, expected);
    }

    pub fn nodes(&self) -> Vec<String> {
        self.handle
            .view()
            .nodes
            .keys()
            .map(|ip| ip.to_string())
            .collect()
    }
}

pub fn describe(event: &TopologyEvent) -> String {
    let ip = |m: &Member| m.ip.clone();
    match event {
        TopologyEvent::NodeAdded(m) => format!("+{}", ip(m)),
        TopologyEvent::NodeRemoved(m) => format!("-{}", ip(m)),
        TopologyEvent::LocalLeft(m) => format!("left {}", ip(m)),
        TopologyEvent::ReadinessChanged(m) => format!("ready={} {}", m.ready, ip(m)),
        TopologyEvent::MasterChanged { previous, current } => format!(
            "master {}>{}",
            previous.as_deref().unwrap_or("none"),
            current.as_deref().unwrap_or("none")
        ),
        TopologyEvent::Error(e) => format!("error {e}"),
        TopologyEvent::Recovered => "recovered".into(),
        TopologyEvent::Ready => "ready".into(),
    }
}

pub fn pod(name: &str, ip: &str, ready: bool) -> Value {
    json!({ "name": name, "ip": ip, "ready": ready, "terminating": false })
}
