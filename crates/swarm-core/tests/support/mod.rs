//! Fixtures of the multiplexed transport's tests, shared by `mux_*.rs`: the real server
//! with a recording dispatcher, a hand-written client peer (`Peer`), hand-written
//! servers (`Fake`, run by a `Script`), a proxy that tells the transports apart, and
//! read loops of the tests' own. Each test crate uses a part of them.
#![allow(dead_code)]

mod fake;
mod loops;
mod peer;

// Each test crate uses a part of these, as of the rest of this module.
#[allow(unused_imports)]
pub use fake::*;
#[allow(unused_imports)]
pub use loops::*;
#[allow(unused_imports)]
pub use peer::*;

pub use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

pub use bytes::{BufMut, Bytes, BytesMut};
pub use futures_util::StreamExt;
pub use swarm_core::local::LoopThread;
pub use swarm_core::messaging::{
    loop_io::EventLoop,
    mux::{self, Read},
    serve, Answering, Client, ClientConfig, Dispatch, Inbound, Payload, Reply, SendError,
    ServerLimits,
};
pub use swarm_core::ring::PeerRings;
pub use swarm_core::stats::Transports;
pub use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpSocket, TcpStream,
    },
    sync::{mpsc, oneshot, Semaphore},
    task::JoinHandle,
};
pub use tokio_util::sync::CancellationToken;

/// The bound on every wait of these tests: a hang fails, it does not stall the suite.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub fn json(text: &str) -> Payload {
    Payload::Json(Bytes::copy_from_slice(text.as_bytes()))
}

pub fn text(text: &str) -> Payload {
    Payload::Text(Bytes::copy_from_slice(text.as_bytes()))
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().expect("not poisoned")
}

/// Answers by the first topic: `gate` waits for a permit of the test's gate (and says
/// it started), `path` answers the decoded path as text, `nothing` answers nothing,
/// `routed` the path and what routed the request, `traced` the trace context it came
/// with, `take` hands the request's responder to the test, anything else echoes.
pub struct App {
    /// Every message handed over: its path, payload and sender.
    pub handled: Mutex<Vec<(String, Payload, IpAddr)>>,
    pub started: mpsc::UnboundedSender<String>,
    pub gate: Arc<Semaphore>,
    pub taken: mpsc::UnboundedSender<mux::Responder>,
    /// What the server counts its connections in.
    pub transports: Arc<Transports>,
    /// The ring the server names, and where what its clients name is told.
    pub rings: Option<Arc<PeerRings>>,
}

impl App {
    pub fn payloads(&self) -> Vec<Payload> {
        lock(&self.handled)
            .iter()
            .map(|(_, payload, _)| payload.clone())
            .collect()
    }
}

impl Dispatch for App {
    fn dispatch(&self, mut message: Inbound) -> Answering {
        lock(&self.handled).push((message.path.clone(), message.payload.clone(), message.from));
        if message.path == "take" {
            let responder = message.responder.take().expect("a multiplexed request");
            self.taken.send(responder).expect("the test is alive");
            return Answering::Taken;
        }
        Answering::Later(self.handler(message))
    }

    fn transports(&self) -> Option<Arc<Transports>> {
        Some(self.transports.clone())
    }

    fn rings(&self) -> Option<Arc<PeerRings>> {
        self.rings.clone()
    }
}

impl App {
    pub fn handler(&self, message: Inbound) -> Pin<Box<dyn Future<Output = Reply> + Send>> {
        match message.topics()[0].as_str() {
            "gate" => {
                let (gate, started) = (self.gate.clone(), self.started.clone());
                Box::pin(async move {
                    let _ = started.send(message.path.clone());
                    gate.acquire().await.expect("never closed").forget();
                    Reply::ok(message.payload)
                })
            }
            "path" => Box::pin(std::future::ready(Reply::ok(Payload::Text(
                message.path.into(),
            )))),
            "nothing" => Box::pin(std::future::ready(Reply::ok(Payload::Empty))),
            "routed" => {
                let routed = message.meta.routed.map_or("none".into(), |r| r.encode());
                let said = format!("{} {routed}", message.path);
                Box::pin(std::future::ready(Reply::ok(Payload::Text(said.into()))))
            }
            "traced" => {
                let trace = message.meta.trace.map_or("none".into(), |t| t.text());
                Box::pin(std::future::ready(Reply::ok(Payload::Text(trace.into()))))
            }
            _ => Box::pin(std::future::ready(Reply::ok(message.payload))),
        }
    }
}

/// Where a server reads its multiplexed connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// On the runtime.
    Runtime,
    /// On a loop of threads of its own, as the JavaScript thread's ([`ThreadLoop`]).
    Elsewhere,
    /// On a loop that lets go of every connection at once ([`GoneLoop`]).
    Gone,
}

/// Runs each server-side test (an `async fn(Reading)`) twice, as `name::on_the_runtime`
/// and `name::on_another_loop`.
#[allow(unused_macros)] // used by the server's tests alone
macro_rules! on_both_loops {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn on_the_runtime() {
                super::$name(super::Reading::Runtime).await
            }

            #[tokio::test]
            async fn on_another_loop() {
                super::$name(super::Reading::Elsewhere).await
            }
        }
    )*};
}

pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    /// The loop that reads the multiplexed connections, unless the runtime does.
    pub event_loop: Option<Arc<ThreadLoop>>,
    /// The paths of the `gate` requests whose handler started.
    pub started: mpsc::UnboundedReceiver<String>,
    /// The responders of the `take` requests.
    pub taken: mpsc::UnboundedReceiver<mux::Responder>,
    pub cancel: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Server {
    pub async fn start(limits: ServerLimits) -> Server {
        Server::reading(Reading::Runtime, limits).await
    }

    pub async fn reading(reading: Reading, limits: ServerLimits) -> Server {
        Server::start_at(Ipv4Addr::LOCALHOST, reading, limits).await
    }

    pub async fn start_at(ip: Ipv4Addr, reading: Reading, limits: ServerLimits) -> Server {
        Server::naming(ip, reading, limits, None).await
    }

    /// A server that names the ring of `rings` and tells it what its clients name.
    pub async fn naming(
        ip: Ipv4Addr,
        reading: Reading,
        limits: ServerLimits,
        rings: Option<Arc<PeerRings>>,
    ) -> Server {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, started) = mpsc::unbounded_channel();
        let (responders, taken) = mpsc::unbounded_channel();
        let app = Arc::new(App {
            handled: Mutex::new(Vec::new()),
            started: tx,
            gate: Arc::new(Semaphore::new(0)),
            taken: responders,
            transports: Arc::new(Transports::default()),
            rings,
        });
        let cancel = CancellationToken::new();
        let event_loop = (reading == Reading::Elsewhere).then(|| Arc::new(ThreadLoop::default()));
        let elsewhere = match reading {
            Reading::Runtime => None,
            Reading::Elsewhere => event_loop.clone().map(|l| l as Arc<dyn EventLoop>),
            Reading::Gone => Some(Arc::new(GoneLoop) as Arc<dyn EventLoop>),
        };
        let task = tokio::spawn(serve(
            listener,
            app.clone(),
            limits,
            cancel.clone(),
            elsewhere,
        ));
        Server {
            addr,
            app,
            event_loop,
            started,
            taken,
            cancel,
            task,
        }
    }

    /// Waits until the handler of a `gate` request has started.
    pub async fn gate_started(&mut self) -> String {
        within("a gated handler", self.started.recv())
            .await
            .expect("the app is alive")
    }

    pub fn open_gate(&self) {
        self.app.gate.add_permits(1);
    }

    /// The responder of the next `take` request.
    pub async fn taken(&mut self) -> mux::Responder {
        within("a taken request", self.taken.recv())
            .await
            .expect("the app is alive")
    }
}

/// A 4 MiB exchange, larger than the sockets' buffers both ways, then 200 small ones,
/// 16 at a time, each answered and handled once.
pub async fn exchanges_of_any_size(client: &Client, server: &Server) {
    let large = format!("\"{}\"", "x".repeat(4 * 1024 * 1024));
    assert_eq!(send(client, &large).await, Ok(Reply::ok(json(&large))));
    let sends = futures_util::stream::iter(0..200)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = format!("{{\"i\":{i}}}");
                (send(&client, &body).await, body)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for (reply, body) in sends {
        assert_eq!(reply, Ok(Reply::ok(json(&body))));
    }
    assert_eq!(lock(&server.app.handled).len(), 201, "each handled once");
}

pub fn config(port: u16) -> ClientConfig {
    ClientConfig {
        port,
        request_timeout: Duration::from_secs(5),
        local_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ..ClientConfig::default()
    }
}

pub fn client(port: u16) -> Client {
    Client::new(config(port))
}

pub async fn send(client: &Client, body: &str) -> Result<Reply, SendError> {
    within("a send", client.send("127.0.0.1", "echo", json(body))).await
}

/// A TCP proxy on 127.0.0.1 in front of `target`; it connects from the client's own
/// address, so the server sees the client as the sender, and notes for each connection
/// whether it began with the preface's NUL byte.
pub struct Proxy {
    pub port: u16,
    pub connections: Arc<Mutex<Vec<bool>>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let noted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, from) = listener.accept().await.expect("accept");
                let noted = noted.clone();
                tokio::spawn(async move {
                    let mut first = [0u8; 1];
                    if inbound.peek(&mut first).await.unwrap_or(0) == 0 {
                        return;
                    }
                    lock(&noted).push(first[0] == mux::PREFACE[0]);
                    let socket = TcpSocket::new_v4().expect("socket");
                    socket.bind(SocketAddr::new(from.ip(), 0)).expect("bind");
                    let mut outbound = socket.connect(target).await.expect("connect");
                    let _ = outbound.set_nodelay(true);
                    let _ = inbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Proxy { port, connections }
    }

    /// For each connection so far, whether it was multiplexed.
    pub fn connections(&self) -> Vec<bool> {
        lock(&self.connections).clone()
    }
}

/// What `Client::send_multiplexed` settles a send with: `None` when it hands it back for `send`.
pub type Later = oneshot::Receiver<Option<Result<Reply, SendError>>>;

/// Sends `body` to `echo` by `Client::send_multiplexed` (written at the next `mux::flush`).
pub fn send_later(client: &Client, body: &str) -> Later {
    let (tx, rx) = oneshot::channel();
    client.send_multiplexed("127.0.0.1", "echo", json(body), move |result| {
        let _ = tx.send(result.ok());
    });
    rx
}

pub async fn settled(later: Later) -> Option<Result<Reply, SendError>> {
    within("a later send to settle", later)
        .await
        .expect("settled")
}

/// Sends `body` by `Client::send_multiplexed` once the client's multiplexed connection to the
/// peer is accepted, opened by a `send` of `"opens it"` (the peer must have offered it).
pub async fn send_later_accepted(client: &Client, body: &str) -> Later {
    let opener = client.clone();
    tokio::spawn(async move {
        let _ = opener.send("127.0.0.1", "echo", json("\"opens it\"")).await;
    });
    // `Some`: a receiver is itself a future, and is not to be awaited here.
    let accepted = async {
        loop {
            let mut later = send_later(client, body);
            match later.try_recv() {
                Ok(None) => tokio::task::yield_now().await,
                Err(oneshot::error::TryRecvError::Empty) => return Some(later),
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    within("an accepted connection", accepted)
        .await
        .expect("on the connection")
}

/// Sends `body` to `echo` with `Client::send_until_gone`; once `leaves` is done, the peer
/// leaves the cluster: the token is cancelled and, when `forget` says so, the client
/// forgets the peer, as the swarm does.
pub async fn send_until_gone(
    client: &Client,
    body: &str,
    leaves: impl Future<Output = ()>,
    forget: bool,
) -> Result<Reply, SendError> {
    let gone = CancellationToken::new();
    let sent = client.send_until_gone("127.0.0.1", "echo", json(body), &gone);
    let leaving = async {
        leaves.await;
        gone.cancel();
        if forget {
            client.forget("127.0.0.1");
        }
    };
    within("the send to end", async { tokio::join!(sent, leaving).0 }).await
}

/// Resolves once `ready` holds, looking every few milliseconds.
pub async fn until(ready: impl Fn() -> bool) {
    while !ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True when a socket of this machine is in SYN-SENT towards 127.0.0.1:`port`.
pub fn syn_sent_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"02")
    })
}
