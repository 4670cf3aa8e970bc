//! The multiplexed transport between pods, over real sockets on loopback.
//!
//! Server side: `messaging::serve` with a small dispatcher, spoken to by hand with the
//! frame helpers of `mux`: replies by id, limits, malformed frames, the order of ids,
//! shutdown with a go-away, signatures, and the switch that turns the transport off.
//!
//! Client side: `messaging::Client` against the real server behind a proxy that counts
//! connections and tells multiplexed ones (first byte NUL) from HTTP ones, and against
//! hand-written peers: a 0.5.1 pod, a peer that goes away or breaks, and one that
//! advertises the transport but refuses it.

mod common;

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use swarm_core::messaging::{
    mux::{self, Read},
    serve, Answering, Auth, Client, ClientConfig, Dispatch, Inbound, Liveness, Payload, Reply,
    SendError, ServerLimits,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpSocket, TcpStream,
    },
    sync::{mpsc, oneshot, Semaphore},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// The bound on every wait of these tests: a hang fails, it does not stall the suite.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn json(text: &str) -> Payload {
    Payload::Json(Bytes::copy_from_slice(text.as_bytes()))
}

fn text(text: &str) -> Payload {
    Payload::Text(Bytes::copy_from_slice(text.as_bytes()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().expect("not poisoned")
}

// ---------------------------------------------------------------------------------
// The real server, with a dispatcher that records what it is handed.
// ---------------------------------------------------------------------------------

/// Answers by the first topic: `gate` waits for a permit of the test's gate (and says
/// it started), `path` answers the decoded path as text, `nothing` answers nothing,
/// `take` hands the request's responder to the test, anything else echoes.
struct App {
    /// Every message handed over: its path, payload and sender.
    handled: Mutex<Vec<(String, Payload, IpAddr)>>,
    started: mpsc::UnboundedSender<String>,
    gate: Arc<Semaphore>,
    taken: mpsc::UnboundedSender<mux::Responder>,
}

impl App {
    fn payloads(&self) -> Vec<Payload> {
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
}

impl App {
    fn handler(&self, message: Inbound) -> Pin<Box<dyn Future<Output = Reply> + Send>> {
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
            _ => Box::pin(std::future::ready(Reply::ok(message.payload))),
        }
    }
}

/// Where a server reads its multiplexed connections.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reading {
    /// On the runtime.
    Runtime,
    /// On a loop of threads of its own, as the JavaScript thread's ([`ThreadLoop`]).
    Elsewhere,
    /// On a loop that lets go of every connection at once ([`GoneLoop`]).
    Gone,
}

/// Runs each server-side test (an `async fn(Reading)`) twice, as `name::on_the_runtime`
/// and `name::on_another_loop`.
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

struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    /// The loop that reads the multiplexed connections, unless the runtime does.
    read_loop: Option<Arc<ThreadLoop>>,
    /// The paths of the `gate` requests whose handler started.
    started: mpsc::UnboundedReceiver<String>,
    /// The responders of the `take` requests.
    taken: mpsc::UnboundedReceiver<mux::Responder>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(limits: ServerLimits) -> Server {
        Server::reading(Reading::Runtime, limits).await
    }

    async fn reading(reading: Reading, limits: ServerLimits) -> Server {
        Server::start_at(Ipv4Addr::LOCALHOST, reading, limits).await
    }

    async fn start_at(ip: Ipv4Addr, reading: Reading, limits: ServerLimits) -> Server {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, started) = mpsc::unbounded_channel();
        let (responders, taken) = mpsc::unbounded_channel();
        let app = Arc::new(App {
            handled: Mutex::new(Vec::new()),
            started: tx,
            gate: Arc::new(Semaphore::new(0)),
            taken: responders,
        });
        let cancel = CancellationToken::new();
        let read_loop = (reading == Reading::Elsewhere).then(|| Arc::new(ThreadLoop::default()));
        let elsewhere = match reading {
            Reading::Runtime => None,
            Reading::Elsewhere => read_loop.clone().map(|l| l as Arc<dyn mux::ReadLoop>),
            Reading::Gone => Some(Arc::new(GoneLoop) as Arc<dyn mux::ReadLoop>),
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
            read_loop,
            started,
            taken,
            cancel,
            task,
        }
    }

    /// Waits until the handler of a `gate` request has started.
    async fn gate_started(&mut self) -> String {
        within("a gated handler", self.started.recv())
            .await
            .expect("the app is alive")
    }

    fn open_gate(&self) {
        self.app.gate.add_permits(1);
    }

    /// The responder of the next `take` request.
    async fn taken(&mut self) -> mux::Responder {
        within("a taken request", self.taken.recv())
            .await
            .expect("the app is alive")
    }
}

/// A multiplexed connection spoken by hand.
struct Peer {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Peer {
    /// Connects and has the preface accepted.
    async fn open(addr: SocketAddr) -> Peer {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        Peer::greet(stream).await
    }

    /// Has the preface accepted on `stream`.
    async fn greet(mut stream: TcpStream) -> Peer {
        stream.write_all(mux::PREFACE).await.expect("preface");
        let mut answer = [0u8; mux::ACCEPTED.len()];
        within("the preface's answer", stream.read_exact(&mut answer))
            .await
            .expect("an answer");
        assert_eq!(&answer[..], mux::ACCEPTED, "the preface is accepted");
        let (read, writer) = stream.into_split();
        Peer {
            reader: BufReader::new(read),
            writer,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    async fn next(&mut self) -> Read {
        within("a frame", mux::read_frame(&mut self.reader, usize::MAX))
            .await
            .expect("a well-formed frame or the end")
    }

    async fn reply(&mut self) -> (u32, Reply) {
        match self.next().await {
            Read::Frame(mux::REPLY, id, rest) => (id, mux::parse_reply(rest).expect("a reply")),
            other => panic!("expected a reply frame, got {other:?}"),
        }
    }

    /// `n` replies, sorted by id.
    async fn replies(&mut self, n: usize) -> Vec<(u32, Reply)> {
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(self.reply().await);
        }
        replies.sort_by_key(|(id, _)| *id);
        replies
    }

    /// Everything the server sends until it ends its side.
    async fn rest(&mut self) -> Vec<(u8, u32, Bytes)> {
        let mut frames = Vec::new();
        loop {
            match self.next().await {
                Read::Frame(kind, id, rest) => frames.push((kind, id, rest)),
                Read::TooLarge(..) => unreachable!("no limit"),
                Read::End => return frames,
            }
        }
    }
}

fn request(id: u32, path: &str, payload: &Payload) -> Bytes {
    mux::request_frame(id, path, payload, None)
}

/// A frame of any kind with any contents, as a broken peer could send.
fn raw_frame(kind: u8, id: u32, rest: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u32(5 + rest.len() as u32);
    buf.put_u8(kind);
    buf.put_u32(id);
    buf.put_slice(rest);
    buf.freeze()
}

fn status(replies: &[(u32, Reply)]) -> Vec<(u32, u16)> {
    replies.iter().map(|(id, r)| (*id, r.status)).collect()
}

fn is_text_containing(payload: &Payload, needle: &str) -> bool {
    matches!(payload, Payload::Text(b) if String::from_utf8_lossy(b).contains(needle))
}

/// Sends one HTTP/1.1 request by hand and returns the whole response, head and body.
async fn http_exchange(addr: SocketAddr, path: &str, body: &str) -> String {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    within("the response", stream.read_to_end(&mut response))
        .await
        .expect("read");
    String::from_utf8(response).expect("UTF-8")
}

// ---------------------------------------------------------------------------------
// Server side.
// ---------------------------------------------------------------------------------

async fn requests_written_at_once_are_answered_by_id_as_they_finish(reading: Reading) {
    let mut server = Server::reading(reading, ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    let mut batch = BytesMut::new();
    for frame in [
        request(1, "/echo", &json("{\"a\":[1,2]}")),
        request(2, "/gate/x", &json("\"slow\"")),
        request(3, "/echo", &text("plain words")),
        request(4, "/nothing", &json("{}")),
        request(5, "/path/a%20b/%C3%A9", &Payload::Empty),
    ] {
        batch.put_slice(&frame);
    }
    peer.write(&batch).await;

    // The gated request holds its reply back; the others are not held behind it.
    let first = peer.replies(4).await;
    assert_eq!(
        first,
        vec![
            (1, Reply::ok(json("{\"a\":[1,2]}"))),
            (3, Reply::ok(text("plain words"))),
            (4, Reply::ok(Payload::Empty)),
            (5, Reply::ok(text("path/a b/é"))),
        ]
    );
    assert_eq!(first[2].1.status, 204, "an empty reply is a 204");
    assert_eq!(server.gate_started().await, "gate/x");
    server.open_gate();
    assert_eq!(peer.reply().await, (2, Reply::ok(json("\"slow\""))));
    assert_eq!(lock(&server.app.handled).len(), 5);
    assert_eq!(
        server
            .read_loop
            .as_ref()
            .map(|l| l.reads.load(Ordering::Relaxed) > 0),
        (reading == Reading::Elsewhere).then_some(true),
        "read where asked"
    );
    assert!(
        lock(&server.app.handled)
            .iter()
            .all(|(_, _, from)| *from == IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "the sender is the peer's address"
    );
}

async fn an_oversized_request_gets_413_and_the_connection_goes_on(reading: Reading) {
    let limits = ServerLimits {
        max_body: 1024,
        max_header_size: 8192,
        ..ServerLimits::default()
    };
    let server = Server::reading(reading, limits).await;
    let mut peer = Peer::open(server.addr).await;
    let at_limit = "x".repeat(1024);
    // One byte over the body limit: read whole, refused when decoded.
    peer.write(&request(1, "/echo", &text(&"y".repeat(1025))))
        .await;
    assert_eq!(peer.reply().await.1.status, 413);
    // Over the frame limit (body and head): read past, never kept.
    peer.write(&request(2, "/echo", &text(&"z".repeat(20_000))))
        .await;
    let (id, reply) = peer.reply().await;
    assert_eq!((id, reply.status), (2, 413));
    assert!(is_text_containing(&reply.payload, "1024"), "{reply:?}");
    peer.write(&request(3, "/echo", &text(&at_limit))).await;
    peer.write(&request(4, "/echo", &json("[4]"))).await;
    assert_eq!(
        peer.replies(2).await,
        vec![(3, Reply::ok(text(&at_limit))), (4, Reply::ok(json("[4]")))]
    );
    assert_eq!(
        server.app.payloads(),
        vec![text(&at_limit), json("[4]")],
        "oversized requests never reach the handlers"
    );
}

async fn malformed_bodies_and_frames_get_400_and_never_reach_the_handlers(reading: Reading) {
    let server = Server::reading(reading, ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    let mut batch = BytesMut::new();
    // JSON that does not parse.
    batch.put_slice(&request(1, "/echo", &json("{\"a\":")));
    // Text that is not UTF-8.
    batch.put_slice(&request(
        2,
        "/echo",
        &Payload::Text(Bytes::from_static(b"\xff\xfe")),
    ));
    // A path longer than the frame.
    batch.put_slice(&raw_frame(mux::REQUEST, 3, b"\x01\x00\x40/echo"));
    // A signature field of two values where three are due.
    batch.put_slice(&raw_frame(mux::REQUEST, 4, b"\x00\x00\x05/echo\x00\x03a b"));
    // Nothing after the kind and id.
    batch.put_slice(&raw_frame(mux::REQUEST, 5, b""));
    // And the connection still serves.
    batch.put_slice(&request(6, "/echo", &json("{\"ok\":true}")));
    peer.write(&batch).await;
    let replies = peer.replies(6).await;
    assert_eq!(
        status(&replies),
        vec![(1, 400), (2, 400), (3, 400), (4, 400), (5, 400), (6, 200)]
    );
    assert!(is_text_containing(
        &replies[0].1.payload,
        "Unable to decode"
    ));
    for (_, reply) in &replies[2..5] {
        assert_eq!(reply, &Reply::error(400, "Malformed request frame"));
    }
    assert_eq!(replies[5].1.payload, json("{\"ok\":true}"));
    assert_eq!(server.app.payloads(), vec![json("{\"ok\":true}")]);
}

async fn ids_that_do_not_increase_and_broken_frames_end_the_connection(reading: Reading) {
    let mut server = Server::reading(reading, ServerLimits::default()).await;
    // Each case: what is written, and the ids answered before the server ends its side.
    let cases: Vec<(&str, Vec<Bytes>, Vec<u32>)> = vec![
        (
            "a first id of 0",
            vec![request(0, "/echo", &json("0"))],
            vec![],
        ),
        (
            "an id repeated",
            vec![
                request(1, "/echo", &json("1")),
                request(1, "/echo", &json("2")),
            ],
            vec![1],
        ),
        (
            "an id going back",
            vec![
                request(7, "/echo", &json("7")),
                request(3, "/echo", &json("3")),
            ],
            vec![7],
        ),
        (
            "a frame of a kind clients do not send",
            vec![raw_frame(mux::REPLY, 1, b"\x00\xc8\x00")],
            vec![],
        ),
        (
            "a frame shorter than its head",
            vec![Bytes::from_static(&[0, 0, 0, 2, 1, 0])],
            vec![],
        ),
    ];
    for (case, frames, expected) in cases {
        let mut peer = Peer::open(server.addr).await;
        for frame in &frames {
            peer.write(frame).await;
        }
        let rest = peer.rest().await;
        let answered: Vec<u32> = rest.iter().map(|(_, id, _)| *id).collect();
        assert_eq!(answered, expected, "{case}");
        assert!(rest.iter().all(|(kind, ..)| *kind == mux::REPLY), "{case}");
    }
    assert_eq!(
        server.app.payloads(),
        vec![json("1"), json("7")],
        "requests after the offending frame are not handled"
    );

    // A request in flight when the order breaks is still answered before the end.
    let mut peer = Peer::open(server.addr).await;
    let mut batch = BytesMut::new();
    batch.put_slice(&request(1, "/gate", &json("\"held\"")));
    batch.put_slice(&request(1, "/echo", &json("\"again\"")));
    peer.write(&batch).await;
    server.gate_started().await;
    server.open_gate();
    let rest = peer.rest().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    let (kind, id, body) = rest.into_iter().next().expect("one");
    assert_eq!((kind, id), (mux::REPLY, 1));
    assert_eq!(mux::parse_reply(body), Some(Reply::ok(json("\"held\""))));
}

async fn shutdown_sends_a_go_away_answers_what_it_read_and_waits_for_the_client(reading: Reading) {
    let mut server = Server::reading(reading, ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    let mut batch = BytesMut::new();
    batch.put_slice(&request(1, "/gate", &json("\"in flight\"")));
    batch.put_slice(&request(2, "/echo", &json("\"quick\"")));
    peer.write(&batch).await;
    assert_eq!(peer.reply().await, (2, Reply::ok(json("\"quick\""))));
    server.gate_started().await;

    server.cancel.cancel();
    match peer.next().await {
        Read::Frame(kind, last, rest) => {
            assert_eq!((kind, last), (mux::GO_AWAY, 2), "the last request read");
            assert!(rest.is_empty());
        }
        other => panic!("expected a go-away, got {other:?}"),
    }
    // A request after the go-away is not handled; a ping is answered while a reply is due.
    peer.write(&request(3, "/echo", &json("\"too late\"")))
        .await;
    peer.write(&mux::ping_frame(mux::PING, 9)).await;
    assert!(
        matches!(peer.next().await, Read::Frame(mux::PONG, 9, _)),
        "the pong of a ping after the go-away"
    );
    server.open_gate();
    assert_eq!(peer.reply().await, (1, Reply::ok(json("\"in flight\""))));
    assert!(
        matches!(peer.next().await, Read::End),
        "the server ends its side once the requests it read are answered"
    );
    assert!(
        !server.task.is_finished(),
        "the server reads on until the client closes, so it never resets it"
    );
    peer.writer.shutdown().await.expect("shutdown");
    within("serve to return", &mut server.task)
        .await
        .expect("serve ran to its end");
    assert_eq!(
        server.app.payloads(),
        vec![json("\"in flight\""), json("\"quick\"")]
    );
}

async fn a_taken_request_is_answered_by_the_thread_that_flushes_and_frees_its_slot(
    reading: Reading,
) {
    let limits = ServerLimits {
        max_in_flight: 1,
        ..ServerLimits::default()
    };
    let mut server = Server::reading(reading, limits).await;
    let mut peer = Peer::open(server.addr).await;
    peer.write(&request(1, "/take", &json("\"mine\""))).await;
    let responder = server.taken().await;
    peer.write(&request(2, "/echo", &json("\"busy\""))).await;
    let (id, busy) = peer.reply().await;
    assert_eq!(
        (id, busy.status),
        (2, 503),
        "the taken request holds its slot"
    );
    // Answered and written on a thread of no runtime: nothing else writes it.
    let answered = std::thread::spawn(move || {
        let first = responder.reply_later(&Reply::ok(text("from afar")));
        mux::flush();
        (first, responder.reply_later(&Reply::ok(text("again"))))
    })
    .join()
    .expect("joined");
    assert_eq!(answered, (true, false), "answered once");
    assert_eq!(peer.reply().await, (1, Reply::ok(text("from afar"))));
    peer.write(&request(3, "/echo", &json("\"free\""))).await;
    assert_eq!(peer.reply().await, (3, Reply::ok(json("\"free\""))));
}

async fn a_taken_request_left_unanswered_times_out(reading: Reading) {
    let limits = ServerLimits {
        handler_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let mut server = Server::reading(reading, limits).await;
    let mut peer = Peer::open(server.addr).await;
    // Taken once the connection has settled to waiting for requests.
    peer.write(&request(1, "/echo", &json("\"first\""))).await;
    assert_eq!(peer.reply().await, (1, Reply::ok(json("\"first\""))));
    peer.write(&request(2, "/take", &json("\"slow\""))).await;
    let responder = server.taken().await;
    let (id, reply) = peer.reply().await;
    assert_eq!((id, reply.status), (2, 500));
    assert!(is_text_containing(&reply.payload, "timed out"), "{reply:?}");
    assert!(
        !responder.reply(&Reply::ok(text("late"))),
        "too late to answer"
    );
    peer.write(&request(3, "/echo", &json("\"next\""))).await;
    assert_eq!(peer.reply().await, (3, Reply::ok(json("\"next\""))));
}

async fn shutdown_waits_for_the_answer_of_a_taken_request(reading: Reading) {
    let mut server = Server::reading(reading, ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    peer.write(&request(1, "/take", &json("\"in flight\"")))
        .await;
    let responder = server.taken().await;
    server.cancel.cancel();
    match peer.next().await {
        Read::Frame(kind, last, _) => assert_eq!((kind, last), (mux::GO_AWAY, 1)),
        other => panic!("expected a go-away, got {other:?}"),
    }
    assert!(responder.reply(&Reply::ok(text("done"))));
    assert_eq!(peer.reply().await, (1, Reply::ok(text("done"))));
    assert!(
        matches!(peer.next().await, Read::End),
        "the server ends its side once the request it read is answered"
    );
    peer.writer.shutdown().await.expect("shutdown");
    within("serve to return", &mut server.task)
        .await
        .expect("serve ran to its end");
}

async fn shutdown_gives_up_on_an_unanswered_request_after_the_drain_timeout(reading: Reading) {
    let limits = ServerLimits {
        drain_timeout: Duration::from_millis(200),
        handler_timeout: Duration::from_secs(60),
        ..ServerLimits::default()
    };
    let mut server = Server::reading(reading, limits).await;
    let mut peer = Peer::open(server.addr).await;
    peer.write(&request(1, "/take", &json("\"hung\""))).await;
    let _never_answered = server.taken().await;
    server.cancel.cancel();
    match peer.next().await {
        Read::Frame(kind, last, _) => assert_eq!((kind, last), (mux::GO_AWAY, 1)),
        other => panic!("expected a go-away, got {other:?}"),
    }
    within("serve to return", &mut server.task)
        .await
        .expect("serve ran to its end");
    assert!(
        matches!(peer.next().await, Read::End),
        "the connection ends with the server, not at the handler timeout"
    );
}

async fn a_frame_arriving_slowly_holds_back_no_other_request(reading: Reading) {
    let mut server = Server::reading(
        reading,
        ServerLimits {
            header_timeout: Duration::from_secs(30),
            ..ServerLimits::default()
        },
    )
    .await;
    let mut peer = Peer::open(server.addr).await;
    peer.write(&request(1, "/gate/one", &json("1"))).await;
    assert_eq!(server.gate_started().await, "gate/one");
    // A whole request, then the start of a large one, whose rest comes later.
    let slow = request(3, "/echo", &text(&"s".repeat(4096)));
    let mut batch = BytesMut::new();
    batch.put_slice(&request(2, "/gate/two", &json("2")));
    batch.put_slice(&slow[..100]);
    peer.write(&batch).await;
    // The whole request is handled while the large one arrives...
    assert_eq!(server.gate_started().await, "gate/two");
    // ...and a reply is written as it comes (the gate lets the first request go).
    server.open_gate();
    assert_eq!(peer.reply().await, (1, Reply::ok(json("1"))));
    peer.write(&slow[100..]).await;
    server.open_gate();
    assert_eq!(
        peer.replies(2).await,
        vec![
            (2, Reply::ok(json("2"))),
            (3, Reply::ok(text(&"s".repeat(4096))))
        ]
    );
}

async fn with_signatures_required_only_signed_frames_are_answered(reading: Reading) {
    let secret = b"shared secret";
    let limits = ServerLimits {
        auth: Some(Arc::new(Auth::new(secret, Duration::from_secs(30), true))),
        ..ServerLimits::default()
    };
    let server = Server::reading(reading, limits).await;
    let signer = Auth::new(secret, Duration::from_secs(30), true);
    let stranger = Auth::new(b"another secret", Duration::from_secs(30), true);
    let mut peer = Peer::open(server.addr).await;

    peer.write(&request(1, "/echo", &json("\"unsigned\"")))
        .await;
    let (id, reply) = peer.reply().await;
    assert_eq!((id, reply.status), (1, 401));
    assert!(is_text_containing(&reply.payload, "Unauthorized"));

    let signed = mux::request_frame(2, "/echo", &json("\"signed\""), Some(&signer));
    peer.write(&signed).await;
    assert_eq!(peer.reply().await, (2, Reply::ok(json("\"signed\""))));

    let forged = mux::request_frame(3, "/echo", &json("\"forged\""), Some(&stranger));
    peer.write(&forged).await;
    assert_eq!(peer.reply().await.1.status, 401);

    // The same signed frame again under a new id: a replay.
    let mut replayed = BytesMut::from(&signed[..]);
    replayed[5..9].copy_from_slice(&4u32.to_be_bytes());
    peer.write(&replayed).await;
    let (id, reply) = peer.reply().await;
    assert_eq!((id, reply.status), (4, 401));
    assert!(is_text_containing(&reply.payload, "replayed"), "{reply:?}");

    assert_eq!(server.app.payloads(), vec![json("\"signed\"")]);
}

on_both_loops!(
    requests_written_at_once_are_answered_by_id_as_they_finish,
    an_oversized_request_gets_413_and_the_connection_goes_on,
    malformed_bodies_and_frames_get_400_and_never_reach_the_handlers,
    ids_that_do_not_increase_and_broken_frames_end_the_connection,
    shutdown_sends_a_go_away_answers_what_it_read_and_waits_for_the_client,
    a_taken_request_is_answered_by_the_thread_that_flushes_and_frees_its_slot,
    a_taken_request_left_unanswered_times_out,
    shutdown_waits_for_the_answer_of_a_taken_request,
    shutdown_gives_up_on_an_unanswered_request_after_the_drain_timeout,
    a_frame_arriving_slowly_holds_back_no_other_request,
    with_signatures_required_only_signed_frames_are_answered,
    shutdown_cuts_an_http1_connection_whose_handler_outlives_the_drain_timeout,
    http_exchanges_of_any_size_are_answered_on_kept_alive_connections,
    a_ping_is_answered_at_once_while_a_handler_holds_a_request,
);

async fn a_ping_is_answered_at_once_while_a_handler_holds_a_request(reading: Reading) {
    let mut server = Server::reading(reading, ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    peer.write(&request(1, "/gate/x", &json("1"))).await;
    assert_eq!(server.gate_started().await, "gate/x");
    peer.write(&mux::ping_frame(mux::PING, 7)).await;
    assert!(
        matches!(peer.next().await, Read::Frame(mux::PONG, 7, _)),
        "the pong of ping 7, before the held reply"
    );
    server.open_gate();
    assert_eq!(peer.reply().await, (1, Reply::ok(json("1"))));
}

async fn shutdown_cuts_an_http1_connection_whose_handler_outlives_the_drain_timeout(
    reading: Reading,
) {
    let limits = ServerLimits {
        drain_timeout: Duration::from_millis(200),
        handler_timeout: Duration::from_secs(60),
        ..ServerLimits::default()
    };
    let mut server = Server::reading(reading, limits).await;
    let mut stream = within("connect", TcpStream::connect(server.addr))
        .await
        .expect("connect");
    let request = format!(
        "POST /gate/hung HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 1\r\n\r\n1",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    assert_eq!(server.gate_started().await, "gate/hung");
    server.cancel.cancel();
    within("serve to return", &mut server.task)
        .await
        .expect("serve ran to its end");
    // Ended with the server, not at the handler's timeout a minute later; nothing was
    // answered for the request.
    let mut rest = Vec::new();
    let ended = within("the connection to end", stream.read_to_end(&mut rest)).await;
    assert!(
        ended.is_err() || rest.is_empty(),
        "no answer, the connection ends: {ended:?} {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// HTTP connections are served where the server's loop says (the JavaScript thread's, in
/// the addon): bodies larger than the sockets' buffers go both ways, in many reads and
/// writes, and many exchanges share kept-alive connections.
async fn http_exchanges_of_any_size_are_answered_on_kept_alive_connections(reading: Reading) {
    let server = Server::reading(reading, ServerLimits::default()).await;
    let client = Client::new(ClientConfig {
        multiplex: false,
        ..config(server.addr.port())
    });
    exchanges_of_any_size(&client, &server).await;
}

/// A 4 MiB exchange, larger than the sockets' buffers both ways, then 200 small ones,
/// 16 at a time, each answered and handled once.
async fn exchanges_of_any_size(client: &Client, server: &Server) {
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

#[tokio::test]
async fn the_client_signs_its_multiplexed_requests() {
    let secret = b"shared secret";
    let limits = ServerLimits {
        auth: Some(Arc::new(Auth::new(secret, Duration::from_secs(30), true))),
        ..ServerLimits::default()
    };
    let server = Server::start(limits).await;
    let proxy = Proxy::start(server.addr).await;
    let signing = Client::new(ClientConfig {
        auth: Some(Arc::new(Auth::new(secret, Duration::from_secs(30), true))),
        ..config(proxy.port)
    });
    for i in 0..5 {
        let body = format!("{{\"i\":{i}}}");
        let reply = send(&signing, &body).await.expect("a reply");
        assert_eq!(reply, Reply::ok(json(&body)));
    }
    assert_eq!(
        proxy.connections(),
        vec![false, true],
        "one HTTP exchange, then the multiplexed connection"
    );
    let unsigned = send(&client(proxy.port), "{}").await.expect("a reply");
    assert_eq!(unsigned.status, 401);
    assert_eq!(server.app.payloads().len(), 5);
}

#[tokio::test]
async fn the_transport_is_offered_and_served_only_when_switched_on() {
    for multiplex in [true, false] {
        let server = Server::start(ServerLimits {
            multiplex,
            header_timeout: Duration::from_secs(2),
            ..ServerLimits::default()
        })
        .await;
        let response = http_exchange(server.addr, "/echo", "[1]").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("\r\n\r\n[1]"), "{response}");
        let offered = response
            .lines()
            .any(|line| line.to_ascii_lowercase().starts_with("x-swarm-kb-mux:"));
        assert_eq!(offered, multiplex, "{response}");

        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream.write_all(mux::PREFACE).await.expect("preface");
        let mut answer = Vec::new();
        if multiplex {
            answer.resize(mux::ACCEPTED.len(), 0);
            within("the preface's answer", stream.read_exact(&mut answer))
                .await
                .expect("an answer");
            assert_eq!(answer, mux::ACCEPTED);
        } else {
            // hyper takes the preface for a broken HTTP request: a 400, or a close.
            let _ = within("the connection to end", stream.read_to_end(&mut answer)).await;
            assert!(!answer.starts_with(mux::ACCEPTED), "{answer:?}");
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
        assert_eq!(server.app.payloads().len(), 1, "only the HTTP request");
    }
}

// ---------------------------------------------------------------------------------
// Client side.
// ---------------------------------------------------------------------------------

fn config(port: u16) -> ClientConfig {
    ClientConfig {
        port,
        request_timeout: Duration::from_secs(5),
        local_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ..ClientConfig::default()
    }
}

fn client(port: u16) -> Client {
    Client::new(config(port))
}

async fn send(client: &Client, body: &str) -> Result<Reply, SendError> {
    within("a send", client.send("127.0.0.1", "echo", json(body))).await
}

/// A TCP proxy on 127.0.0.1 in front of `target`; it connects from the client's own
/// address, so the server sees the client as the sender, and notes for each connection
/// whether it began with the preface's NUL byte.
struct Proxy {
    port: u16,
    connections: Arc<Mutex<Vec<bool>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
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
    fn connections(&self) -> Vec<bool> {
        lock(&self.connections).clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_go_over_http_first_then_all_on_one_multiplexed_connection() {
    let server = Server::start(ServerLimits::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = Client::new(ClientConfig {
        local_address: Some("127.0.0.2".parse().expect("an IP")),
        ..config(proxy.port)
    });
    let reply = send(&client, "{\"first\":true}").await.expect("a reply");
    assert_eq!(reply, Reply::ok(json("{\"first\":true}")));
    assert_eq!(
        proxy.connections(),
        vec![false],
        "the first send is HTTP/1.1"
    );

    let sends = futures_util::stream::iter(0..200)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = format!("{{\"i\":{i}}}");
                let reply = client.send("127.0.0.1", "echo", json(&body)).await;
                (body, reply)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>();
    for (body, reply) in within("200 sends", sends).await {
        assert_eq!(reply.expect("a reply"), Reply::ok(json(&body)));
    }
    assert_eq!(
        proxy.connections(),
        vec![false, true],
        "the later sends all travel on one multiplexed connection"
    );
    let handled = lock(&server.app.handled);
    assert_eq!(handled.len(), 201);
    assert!(
        handled
            .iter()
            .all(|(_, _, from)| *from == "127.0.0.2".parse::<IpAddr>().expect("an IP")),
        "the sender is the client's local address on both transports"
    );
}

#[tokio::test]
async fn both_transports_answer_alike() {
    let server = Server::start(ServerLimits::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let over_http = Client::new(ClientConfig {
        multiplex: false,
        ..config(server.addr.port())
    });
    let multiplexed = client(proxy.port);
    send(&multiplexed, "null").await.expect("the HTTP exchange");
    let cases = [
        ("echo", json("{\"a\":[1,\"b\"]}")),
        ("echo", text("some text")),
        ("echo", Payload::Empty),
        ("echo", json("{\"broken\":")),
        ("path/a b/é", Payload::Empty),
    ];
    for (topic, payload) in cases {
        let http = within(
            "a send",
            over_http.send("127.0.0.1", topic, payload.clone()),
        )
        .await
        .expect("a reply");
        let mux = within("a send", multiplexed.send("127.0.0.1", topic, payload))
            .await
            .expect("a reply");
        assert_eq!(http, mux, "{topic}");
    }
    assert_eq!(
        proxy.connections(),
        vec![false, true],
        "the comparisons went multiplexed"
    );
}

#[tokio::test]
async fn a_client_with_the_transport_off_never_sends_the_preface() {
    let server = Server::start(ServerLimits::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = Client::new(ClientConfig {
        multiplex: false,
        ..config(proxy.port)
    });
    for i in 0..5 {
        let body = format!("[{i}]");
        assert_eq!(send(&client, &body).await, Ok(Reply::ok(json(&body))));
    }
    let connections = proxy.connections();
    assert!(
        !connections.is_empty() && connections.iter().all(|mux| !mux),
        "{connections:?}"
    );
}

#[tokio::test]
async fn a_peer_shutting_down_answers_what_it_read_and_later_sends_are_never_delivered() {
    // An address of its own: once closed, no other test's listener can take its port.
    let mut server = Server::start_at(
        Ipv4Addr::new(127, 0, 0, 3),
        Reading::Runtime,
        ServerLimits::default(),
    )
    .await;
    let client = client(server.addr.port());
    let to = |body: &str| client.send("127.0.0.3", "echo", json(body));
    within("a send", to("\"over http\""))
        .await
        .expect("a reply");
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.send("127.0.0.3", "gate", json("\"held\"")).await }
    });
    server.gate_started().await;
    server.cancel.cancel();
    server.open_gate();
    assert_eq!(
        within("the held send", held).await.expect("no panic"),
        Ok(Reply::ok(json("\"held\""))),
        "a request the server read is answered through its shutdown"
    );
    match within("a send", to("\"after\"")).await {
        Err(SendError::Unreachable { ip, .. }) => assert_eq!(ip, "127.0.0.3"),
        other => panic!("expected unreachable, got {other:?}"),
    }
    within("serve to return", server.task)
        .await
        .expect("serve ran to its end");
    assert_eq!(
        server.app.payloads(),
        vec![json("\"over http\""), json("\"held\"")]
    );
}

/// How a hand-written peer treats the Nth multiplexed connection made to it.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Accepts the preface and answers every request.
    Serve,
    /// Answers the preface as HTTP/1.1 would answer a broken request, and closes.
    Refuse,
    /// Reads the preface and never answers.
    Silent,
    /// Reads two requests, goes away naming the first, answers it, and closes.
    GoAwayAfterTwo,
    /// Reads one request and closes without answering.
    BreakAfterOne,
    /// Accepts the preface, reads requests and never answers them.
    Mute,
    /// Accepts the preface, reads the start of a request and resets the connection.
    ResetMidRequest,
    /// Reads the preface and resets the connection, as the kernel of a pod dying does.
    ResetAtPreface,
    /// Accepts the preface and reads on, never answering a request or a ping: a pod
    /// frozen, or behind a link that stopped carrying replies.
    Frozen,
}

#[derive(Debug, Default)]
struct Log {
    /// For each connection, whether it began with the preface.
    connections: Vec<bool>,
    /// The bodies of the requests answered, and whether over the multiplexed transport.
    answered: Vec<(bool, Bytes)>,
    /// The bodies of the request frames read, answered or not.
    frames: Vec<Bytes>,
}

/// A hand-written peer on 127.0.0.1: HTTP/1.1 that echoes JSON bodies (offering the
/// multiplexed transport at the level `advertise` gives), and multiplexed connections run by
/// `scripts` in turn (`Serve` once they run out).
struct Fake {
    port: u16,
    log: Arc<Mutex<Log>>,
}

impl Fake {
    async fn start(advertise: Option<&'static str>, scripts: Vec<Script>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Log::default()));
        let logged = log.clone();
        tokio::spawn(async move {
            let mut scripts = scripts.into_iter();
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                let mut first = [0u8; 1];
                if stream.peek(&mut first).await.unwrap_or(0) == 0 {
                    continue;
                }
                let multiplexed = first[0] == mux::PREFACE[0];
                lock(&logged).connections.push(multiplexed);
                let log = logged.clone();
                if multiplexed {
                    let script = scripts.next().unwrap_or(Script::Serve);
                    tokio::spawn(fake_mux(stream, script, log));
                } else {
                    tokio::spawn(fake_http(stream, advertise, log));
                }
            }
        });
        Fake { port, log }
    }

    fn connections(&self) -> Vec<bool> {
        lock(&self.log).connections.clone()
    }

    fn answered(&self) -> Vec<(bool, Bytes)> {
        lock(&self.log).answered.clone()
    }

    fn frames(&self) -> Vec<Bytes> {
        lock(&self.log).frames.clone()
    }
}

async fn fake_http(stream: TcpStream, advertise: Option<&str>, log: Arc<Mutex<Log>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some((_, body)) = common::read_http_request(&mut stream).await else {
            return;
        };
        lock(&log).answered.push((false, Bytes::from(body.clone())));
        let offer = advertise
            .map(|level| format!("x-swarm-kb-mux: {level}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{offer}\r\n",
            body.len()
        );
        let stream = stream.get_mut();
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&body).await.expect("write");
    }
}

/// The next request frame, noted as read; `None` at the end of the connection.
async fn next_request(
    reader: &mut BufReader<OwnedReadHalf>,
    log: &Mutex<Log>,
) -> Option<(u32, mux::RequestFrame)> {
    match mux::read_frame(reader, usize::MAX).await.expect("a frame") {
        Read::Frame(mux::REQUEST, id, rest) => {
            let frame = mux::parse_request(rest).expect("well formed");
            lock(log).frames.push(frame.body.clone());
            Some((id, frame))
        }
        Read::End => None,
        other => panic!("unexpected {other:?}"),
    }
}

/// The echo of a request frame, noted as answered.
fn echo_frame(id: u32, frame: &mux::RequestFrame, log: &Mutex<Log>) -> Bytes {
    lock(log).answered.push((true, frame.body.clone()));
    let payload = Payload::decode(frame.content_type, frame.body.clone()).expect("a valid body");
    mux::reply_frame(id, &Reply::ok(payload))
}

async fn fake_mux(stream: TcpStream, script: Script, log: Arc<Mutex<Log>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut preface = [0u8; mux::PREFACE.len()];
    reader.read_exact(&mut preface).await.expect("the preface");
    assert_eq!(&preface[..], mux::PREFACE);
    match script {
        Script::Refuse => {
            let refusal =
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            write.write_all(refusal).await.expect("write");
        }
        Script::ResetAtPreface => {
            let stream = reader.get_ref().as_ref();
            stream.set_zero_linger().expect("linger");
            // No FIN first: the socket closes at once, with a reset.
            write.forget();
            return;
        }
        Script::Silent => {
            // Not a byte back, and the connection stays open until the client leaves.
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
            return;
        }
        Script::Serve => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            while let Some((id, frame)) = next_request(&mut reader, &log).await {
                let reply = echo_frame(id, &frame, &log);
                write.write_all(&reply).await.expect("write");
            }
        }
        Script::GoAwayAfterTwo => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            let (first, frame) = next_request(&mut reader, &log).await.expect("a request");
            next_request(&mut reader, &log)
                .await
                .expect("a second request");
            // As a server shutting down does: the go-away, then the answers it promises.
            write
                .write_all(&mux::go_away_frame(first))
                .await
                .expect("write");
            write
                .write_all(&echo_frame(first, &frame, &log))
                .await
                .expect("write");
        }
        Script::BreakAfterOne => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            next_request(&mut reader, &log).await.expect("a request");
        }
        Script::Mute => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            while next_request(&mut reader, &log).await.is_some() {}
        }
        Script::Frozen => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
        }
        Script::ResetMidRequest => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            let mut start = [0u8; 64];
            reader
                .read_exact(&mut start)
                .await
                .expect("a request begun");
            // Closed with unread data: the kernel resets the connection.
            return;
        }
    }
    // Ends its side, then reads on until the client closes (a clean close, no reset).
    let _ = write.shutdown().await;
    let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
}

fn bodies(answered: &[(bool, Bytes)], multiplexed: bool) -> Vec<Bytes> {
    answered
        .iter()
        .filter(|(mux, _)| *mux == multiplexed)
        .map(|(_, body)| body.clone())
        .collect()
}

#[tokio::test]
async fn a_peer_that_does_not_offer_the_transport_only_ever_sees_http() {
    let fake = Fake::start(None, vec![]).await;
    let client = client(fake.port);
    for i in 0..3 {
        let body = format!("[{i}]");
        assert_eq!(send(&client, &body).await, Ok(Reply::ok(json(&body))));
    }
    let concurrent = (3..19).map(|i| {
        let client = client.clone();
        async move {
            let body = format!("[{i}]");
            (send(&client, &body).await, body)
        }
    });
    for (reply, body) in futures_util::future::join_all(concurrent).await {
        assert_eq!(reply, Ok(Reply::ok(json(&body))));
    }
    assert!(!fake.connections().is_empty());
    assert!(
        fake.connections().iter().all(|mux| !mux),
        "no preface to a 0.5.1 pod: {:?}",
        fake.connections()
    );
    assert_eq!(fake.answered().len(), 19);
    assert!(fake.frames().is_empty());
}

#[tokio::test]
async fn requests_the_peer_did_not_read_before_going_away_are_sent_again() {
    let fake = Fake::start(Some("1"), vec![Script::GoAwayAfterTwo]).await;
    let client = client(fake.port);
    send(&client, "\"over http\"").await.expect("a reply");
    let (a, b) = tokio::join!(send(&client, "\"a\""), send(&client, "\"b\""));
    assert_eq!(a, Ok(Reply::ok(json("\"a\""))));
    assert_eq!(b, Ok(Reply::ok(json("\"b\""))));
    assert_eq!(
        fake.connections(),
        vec![false, true, true],
        "the request after the go-away went on a new connection"
    );
    let answered = fake.answered();
    assert_eq!(bodies(&answered, false), vec![Bytes::from("\"over http\"")]);
    let mut multiplexed = bodies(&answered, true);
    multiplexed.sort();
    assert_eq!(
        multiplexed,
        vec![Bytes::from("\"a\""), Bytes::from("\"b\"")],
        "each answered once"
    );
}

#[tokio::test]
async fn a_request_on_a_connection_that_breaks_fails_and_is_not_sent_again() {
    let fake = Fake::start(Some("1"), vec![Script::BreakAfterOne]).await;
    let client = client(fake.port);
    send(&client, "\"over http\"").await.expect("a reply");
    match send(&client, "\"lost\"").await {
        Err(SendError::Failed { ip, .. }) => assert_eq!(ip, "127.0.0.1"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(fake.connections(), vec![false, true]);
    // The next send opens a new connection, which carries only its own request.
    assert_eq!(
        send(&client, "\"next\"").await,
        Ok(Reply::ok(json("\"next\"")))
    );
    assert_eq!(fake.connections(), vec![false, true, true]);
    assert_eq!(
        fake.frames(),
        vec![Bytes::from("\"lost\""), Bytes::from("\"next\"")],
        "the request in doubt was sent once"
    );
}

#[tokio::test]
async fn a_request_the_kernel_never_had_all_of_is_sent_again_when_the_connection_breaks() {
    let fake = Fake::start(Some("1"), vec![Script::ResetMidRequest]).await;
    let client = client(fake.port);
    send(&client, "\"over http\"").await.expect("a reply");
    // Far more than the socket buffers hold: most of it is still queued at the reset.
    let big = format!("\"{}\"", "x".repeat(32 << 20));
    assert_eq!(send(&client, &big).await, Ok(Reply::ok(json(&big))));
    assert_eq!(
        fake.connections(),
        vec![false, true, true],
        "sent again on a new connection"
    );
    assert_eq!(fake.frames().len(), 1, "read whole once");
}

#[tokio::test]
async fn a_peer_that_offers_then_refuses_the_preface_gets_the_send_over_http() {
    for script in [Script::Refuse, Script::Silent] {
        let fake = Fake::start(Some("1"), vec![script]).await;
        let client = Client::new(ClientConfig {
            connect_timeout: Duration::from_millis(500),
            ..config(fake.port)
        });
        send(&client, "\"offer\"").await.expect("a reply");
        assert_eq!(
            send(&client, "\"refused\"").await,
            Ok(Reply::ok(json("\"refused\""))),
            "{script:?}"
        );
        assert_eq!(
            fake.connections().iter().filter(|mux| **mux).count(),
            1,
            "{script:?}"
        );
        assert_eq!(
            bodies(&fake.answered(), false),
            vec![Bytes::from("\"offer\""), Bytes::from("\"refused\"")],
            "{script:?}: delivered once, over HTTP/1.1"
        );
        assert!(fake.frames().is_empty(), "{script:?}");
    }
}

#[tokio::test]
async fn a_connection_reset_before_the_preface_is_answered_is_made_again() {
    let fake = Fake::start(Some("1"), vec![Script::ResetAtPreface, Script::Serve]).await;
    let client = client(fake.port);
    send(&client, "\"offer\"").await.expect("a reply");
    assert_eq!(
        send(&client, "\"again\"").await,
        Ok(Reply::ok(json("\"again\"")))
    );
    assert_eq!(
        fake.connections(),
        vec![false, true, true],
        "not taken for a refusal"
    );
    assert_eq!(
        bodies(&fake.answered(), true),
        vec![Bytes::from("\"again\"")],
        "multiplexed"
    );
}

#[tokio::test]
async fn a_peer_that_did_not_answer_the_preface_in_time_is_asked_again_later() {
    let fake = Fake::start(Some("1"), vec![Script::Silent]).await;
    let connect_timeout = Duration::from_millis(100);
    let client = Client::new(ClientConfig {
        connect_timeout,
        ..config(fake.port)
    });
    send(&client, "\"offer\"").await.expect("a reply");
    assert_eq!(
        send(&client, "\"no answer\"").await,
        Ok(Reply::ok(json("\"no answer\"")))
    );
    // The retry is due ten connect timeouts after the preface went unanswered, which
    // was before that send returned.
    let due = tokio::time::Instant::now() + connect_timeout * 10;
    send(&client, "\"meanwhile\"").await.expect("a reply");
    if tokio::time::Instant::now() < due {
        assert_eq!(
            fake.connections().iter().filter(|mux| **mux).count(),
            1,
            "not asked again before it is due"
        );
    }
    tokio::time::sleep_until(due).await;
    assert_eq!(
        send(&client, "\"later\"").await,
        Ok(Reply::ok(json("\"later\"")))
    );
    assert_eq!(
        fake.connections().iter().filter(|mux| **mux).count(),
        2,
        "asked again: {:?}",
        fake.connections()
    );
    assert_eq!(
        bodies(&fake.answered(), true),
        vec![Bytes::from("\"later\"")],
        "then multiplexed"
    );
}

#[tokio::test]
async fn a_peer_that_refused_the_preface_is_not_asked_again() {
    let fake = Fake::start(Some("1"), vec![Script::Refuse; 8]).await;
    let client = client(fake.port);
    for i in 0..6 {
        let body = format!("[{i}]");
        assert_eq!(send(&client, &body).await, Ok(Reply::ok(json(&body))));
    }
    assert_eq!(
        fake.connections().iter().filter(|mux| **mux).count(),
        1,
        "one refusal is enough: {:?}",
        fake.connections()
    );
}

/// What `Client::send_later` settles a send with: `None` when it hands it back for `send`.
type Later = oneshot::Receiver<Option<Result<Reply, SendError>>>;

/// Sends `body` to `echo` by `Client::send_later` (written at the next `mux::flush`).
fn send_later(client: &Client, body: &str) -> Later {
    let (tx, rx) = oneshot::channel();
    client.send_later("127.0.0.1", "echo", json(body), move |result| {
        let _ = tx.send(result.ok());
    });
    rx
}

async fn settled(later: Later) -> Option<Result<Reply, SendError>> {
    within("a later send to settle", later)
        .await
        .expect("settled")
}

/// Sends `body` by `Client::send_later` once the client's multiplexed connection to the
/// peer is accepted, opened by a `send` of `"opens it"` (the peer must have offered it).
async fn send_later_accepted(client: &Client, body: &str) -> Later {
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

#[tokio::test]
async fn sends_made_later_go_on_the_accepted_connection_when_flushed() {
    let fake = Fake::start(Some("1"), vec![]).await;
    let client = client(fake.port);
    assert!(
        matches!(send_later(&client, "[0]").try_recv(), Ok(None)),
        "before the peer offers the transport, handed back at once for `send`"
    );
    send(&client, "\"over http\"").await.expect("a reply");
    let mut later = vec![("[1]".to_owned(), send_later_accepted(&client, "[1]").await)];
    later.extend((2..=3).map(|i| (format!("[{i}]"), send_later(&client, &format!("[{i}]")))));
    mux::flush();
    for (body, later) in later {
        assert_eq!(settled(later).await, Some(Ok(Reply::ok(json(&body)))));
    }
    assert_eq!(
        fake.connections(),
        vec![false, true],
        "on the one multiplexed connection"
    );
    assert_eq!(
        bodies(&fake.answered(), true).len(),
        4,
        "the opener and the 3 sends"
    );
}

#[tokio::test]
async fn a_send_made_later_that_gets_no_reply_times_out() {
    let fake = Fake::start(Some("1"), vec![Script::Mute]).await;
    let client = Client::new(ClientConfig {
        request_timeout: Duration::from_millis(300),
        ..config(fake.port)
    });
    send(&client, "\"over http\"").await.expect("a reply");
    let later = send_later_accepted(&client, "\"unanswered\"").await;
    mux::flush();
    match settled(later).await {
        Some(Err(SendError::Timeout { ip, ms })) => {
            assert_eq!((ip.as_str(), ms), ("127.0.0.1", 300))
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        fake.frames(),
        vec![Bytes::from("\"opens it\""), Bytes::from("\"unanswered\"")],
        "it was delivered, once"
    );
}

#[tokio::test]
async fn sends_made_later_to_a_peer_that_left_fail_at_once() {
    let fake = Fake::start(Some("1"), vec![Script::Mute]).await;
    let client = client(fake.port);
    send(&client, "\"over http\"").await.expect("a reply");
    let later = send_later_accepted(&client, "\"in doubt\"").await;
    mux::flush();
    client.forget("127.0.0.1");
    match settled(later).await {
        Some(Err(SendError::Left { ip })) => assert_eq!(ip, "127.0.0.1"),
        other => panic!("expected the peer to have left, got {other:?}"),
    }
}

#[tokio::test]
async fn a_send_made_later_the_peer_did_not_read_is_handed_back() {
    let fake = Fake::start(Some("1"), vec![Script::GoAwayAfterTwo]).await;
    let client = client(fake.port);
    send(&client, "\"over http\"").await.expect("a reply");
    // The connection's first request goes with `send`, the second waits for a flush.
    let b = send_later_accepted(&client, "\"b\"").await;
    mux::flush();
    assert_eq!(
        settled(b).await,
        None,
        "after the go-away, handed back for `send`"
    );
    assert_eq!(
        fake.frames(),
        vec![Bytes::from("\"opens it\""), Bytes::from("\"b\"")],
        "read, and not answered: the go-away named the one before"
    );
}

/// A read loop of threads of its own, as the JavaScript thread's would be: each adopted
/// connection is read by a thread that waits on its socket with poll(2).
#[derive(Default)]
struct ThreadLoop {
    /// How many times a socket was readable and read.
    reads: Arc<AtomicUsize>,
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Told each time a reading is over on this loop.
    stopped: Arc<tokio::sync::Notify>,
}

impl mux::ReadLoop for ThreadLoop {
    fn adopt(&self, mut inflow: Box<dyn mux::Inflow>) {
        let (reads, stopped) = (self.reads.clone(), self.stopped.clone());
        lock(&self.readers).push(std::thread::spawn(move || loop {
            let mut socket = libc::pollfd {
                fd: inflow.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid `pollfd`. Bounded past `WAIT`: a reading that does not
            // end fails the test that waits for it.
            if unsafe { libc::poll(&mut socket, 1, 2 * WAIT.as_millis() as i32) } <= 0 {
                return;
            }
            reads.fetch_add(1, Ordering::Relaxed);
            let over = inflow.read();
            mux::flush();
            if over {
                return stopped.notify_one();
            }
        }));
    }
}

impl ThreadLoop {
    /// Waits until every connection it read has ended.
    async fn ended(&self) -> usize {
        let readers = std::mem::take(&mut *lock(&self.readers));
        let count = readers.len();
        let joined = tokio::task::spawn_blocking(move || {
            for reader in readers {
                reader.join().expect("no panic");
            }
        });
        within("the readers to end", joined).await.expect("joined");
        count
    }
}

fn reading_on(read_loop: &Arc<ThreadLoop>, port: u16) -> Client {
    Client::new(ClientConfig {
        read_loop: Some(read_loop.clone()),
        ..config(port)
    })
}

/// On a loop thread (the JavaScript thread, in the addon), the client's HTTP/1.1
/// connections are made there and polled by that loop ([`mux::ReadLoop::spawn_here`]).
#[tokio::test]
async fn http_sends_from_a_loop_thread_keep_their_connections_on_its_loop() {
    swarm_core::local::mark_loop_thread();
    let server = Server::start(ServerLimits::default()).await;
    let read_loop = Arc::new(ThreadLoop::default());
    let client = Client::new(ClientConfig {
        multiplex: false,
        read_loop: Some(read_loop.clone()),
        ..config(server.addr.port())
    });
    exchanges_of_any_size(&client, &server).await;
}

#[tokio::test]
async fn replies_read_on_another_loop_settle_sends_of_both_kinds() {
    let server = Server::start(ServerLimits::default()).await;
    let read_loop = Arc::new(ThreadLoop::default());
    let client = reading_on(&read_loop, server.addr.port());
    send(&client, "\"over http\"").await.expect("a reply");
    let later = send_later_accepted(&client, "\"later\"").await;
    mux::flush();
    assert_eq!(settled(later).await, Some(Ok(Reply::ok(json("\"later\"")))));
    let sends = futures_util::stream::iter(0..100)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = format!("{{\"i\":{i}}}");
                (client.send("127.0.0.1", "echo", json(&body)).await, body)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    for (reply, body) in within("100 sends", sends).await {
        assert_eq!(reply, Ok(Reply::ok(json(&body))));
    }
    assert!(
        read_loop.reads.load(Ordering::Relaxed) > 0,
        "the replies were read by the loop"
    );
    assert_eq!(lock(&read_loop.readers).len(), 1, "on one connection");
    assert_eq!(server.app.payloads().len(), 103);
}

#[tokio::test]
async fn a_go_away_read_on_another_loop_sends_the_unread_request_again_and_ends_the_reading() {
    let fake = Fake::start(Some("1"), vec![Script::GoAwayAfterTwo]).await;
    let read_loop = Arc::new(ThreadLoop::default());
    let client = reading_on(&read_loop, fake.port);
    send(&client, "\"over http\"").await.expect("a reply");
    let (a, b) = tokio::join!(send(&client, "\"a\""), send(&client, "\"b\""));
    assert_eq!(a, Ok(Reply::ok(json("\"a\""))));
    assert_eq!(b, Ok(Reply::ok(json("\"b\""))));
    assert_eq!(fake.connections(), vec![false, true, true]);
    assert_eq!(
        bodies(&fake.answered(), true).len(),
        2,
        "each answered once"
    );
    client.forget("127.0.0.1");
    assert_eq!(
        read_loop.ended().await,
        2,
        "both connections' readings ended with them"
    );
}

#[test]
fn the_reading_ends_when_the_runtime_that_drove_the_connection_goes() {
    let outer = tokio::runtime::Runtime::new().expect("a runtime");
    let fake = outer.block_on(Fake::start(Some("1"), vec![Script::Mute]));
    let read_loop = Arc::new(ThreadLoop::default());
    let inner = tokio::runtime::Runtime::new().expect("a runtime");
    inner.block_on(async {
        let client = reading_on(&read_loop, fake.port);
        send(&client, "\"over http\"").await.expect("a reply");
        // Never answered (the peer is mute): the connection stays open until it goes.
        let _unanswered = send_later_accepted(&client, "\"unanswered\"").await;
    });
    assert_eq!(lock(&read_loop.readers).len(), 1);
    drop(inner);
    assert_eq!(outer.block_on(read_loop.ended()), 1);
}

/// Has a client that leaves its replies unread fill the server's queue until the
/// server's reading (on another loop) pauses; the requests taken from then on are
/// answered as they come. The peer, and how many requests it sent.
async fn pause_the_reading(server: &mut Server) -> (Peer, u32) {
    let read_loop = server.read_loop.clone().expect("read elsewhere");
    // A small receive buffer: the replies it does not read wait in the server's queue.
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let stream = within("connect", socket.connect(server.addr))
        .await
        .expect("connect");
    let mut peer = Peer::greet(stream).await;
    // Requests answered with 128 KiB each, until the answers fill the kernel's buffers
    // and the queue past its high-water mark: the reading then pauses.
    let big = text(&"a".repeat(128 * 1024));
    let mut sent = 0;
    loop {
        sent += 1;
        assert!(sent <= 200, "the reading never paused");
        peer.write(&request(sent, "/take", &Payload::Empty)).await;
        tokio::select! {
            responder = server.taken() => assert!(responder.reply(&Reply::ok(big.clone()))),
            () = read_loop.stopped.notified() => break,
        }
    }
    // The rest are answered as they are read: the request that found the queue full,
    // and any written after it, read once the reading goes on.
    let mut taken = std::mem::replace(&mut server.taken, mpsc::unbounded_channel().1);
    tokio::spawn(async move {
        while let Some(responder) = taken.recv().await {
            responder.reply(&Reply::ok(big.clone()));
        }
    });
    (peer, sent)
}

#[tokio::test]
async fn a_client_that_leaves_its_replies_unread_is_not_read_from_on_another_loop_either() {
    let mut server = Server::reading(Reading::Elsewhere, ServerLimits::default()).await;
    let read_loop = server.read_loop.clone().expect("read elsewhere");
    let (mut peer, sent) = pause_the_reading(&mut server).await;
    peer.write(&request(sent + 1, "/echo", &json("\"last\"")))
        .await;
    let replies = peer.replies(sent as usize + 1).await;
    assert_eq!(
        replies.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (1..=sent + 1).collect::<Vec<_>>(),
        "each answered once"
    );
    assert_eq!(replies[sent as usize].1, Reply::ok(json("\"last\"")));
    assert_eq!(
        lock(&read_loop.readers).len(),
        2,
        "read again once the client read"
    );
}

#[tokio::test]
async fn shutdown_while_the_reading_waits_for_the_client_to_read_ends_when_the_client_closes() {
    let limits = ServerLimits {
        drain_timeout: Duration::from_secs(600),
        ..ServerLimits::default()
    };
    let mut server = Server::reading(Reading::Elsewhere, limits).await;
    let (peer, _) = pause_the_reading(&mut server).await;
    server.cancel.cancel();
    // The client goes without reading: nothing is left to wait for, drain timeout or not.
    drop(peer);
    within("serve to return", &mut server.task)
        .await
        .expect("serve ran to its end");
}

async fn a_frame_that_stalls_past_the_header_timeout_ends_the_connection(reading: Reading) {
    let server = Server::reading(
        reading,
        ServerLimits {
            header_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        },
    )
    .await;
    let mut peer = Peer::open(server.addr).await;
    peer.write(&request(1, "/echo", &json("1"))).await;
    assert_eq!(peer.reply().await, (1, Reply::ok(json("1"))));
    let stalled = request(2, "/echo", &json("2"));
    peer.write(&stalled[..stalled.len() - 1]).await;
    assert!(
        matches!(peer.next().await, Read::End),
        "the server ends the connection"
    );
    assert_eq!(server.app.payloads(), vec![json("1")]);
}

on_both_loops!(a_frame_that_stalls_past_the_header_timeout_ends_the_connection);

/// A loop that lets go of every connection at once, as one whose thread's environment
/// ended would.
struct GoneLoop;

impl mux::ReadLoop for GoneLoop {
    fn adopt(&self, inflow: Box<dyn mux::Inflow>) {
        drop(inflow);
    }
}

#[tokio::test]
async fn a_connection_whose_read_loop_lets_go_of_it_ends_at_once() {
    let server = Server::reading(Reading::Gone, ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    assert!(
        matches!(peer.next().await, Read::End),
        "ended, not left open until the idle timeout"
    );
}

/// Sends `body` to `echo` with `Client::send_until_gone`; once `leaves` is done, the peer
/// leaves the cluster: the token is cancelled and, when `forget` says so, the client
/// forgets the peer, as the swarm does.
async fn send_until_gone(
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
async fn until(ready: impl Fn() -> bool) {
    while !ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_peer_is_probed_with_a_ping_on_its_multiplexed_connection_if_it_answers_pings() {
    let server = Server::start(ServerLimits::default()).await;
    let ours = client(server.addr.port());
    let probe = |client: Client, within: Duration| async move {
        tokio::time::timeout(WAIT, client.probe("127.0.0.1", within))
            .await
            .expect("a probe ends")
    };
    assert_eq!(
        probe(ours.clone(), WAIT).await,
        Liveness::Unknown,
        "no connection yet"
    );
    send(&ours, "1")
        .await
        .expect("over HTTP/1.1, which offers level 2");
    send(&ours, "2")
        .await
        .expect("over the multiplexed connection");
    assert_eq!(probe(ours.clone(), WAIT).await, Liveness::Alive);

    // A peer that reads and never answers: silent within the probe's time.
    let frozen = Fake::start(Some("2"), vec![Script::Frozen]).await;
    let to_frozen = client(frozen.port);
    send(&to_frozen, "1").await.expect("over HTTP/1.1");
    let unanswered = tokio::spawn({
        let to_frozen = to_frozen.clone();
        async move { to_frozen.send("127.0.0.1", "echo", json("2")).await }
    });
    within(
        "the multiplexed connection",
        until(|| frozen.connections() == [false, true]),
    )
    .await;
    let asked = std::time::Instant::now();
    assert_eq!(
        probe(to_frozen.clone(), Duration::from_millis(200)).await,
        Liveness::Silent
    );
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "within the probe's time"
    );
    unanswered.abort();

    // A peer of the first level is never sent a ping, which would end its connection.
    let first_level = Fake::start(Some("1"), vec![]).await;
    let to_first = client(first_level.port);
    send(&to_first, "1").await.expect("over HTTP/1.1");
    send(&to_first, "2")
        .await
        .expect("over the multiplexed connection");
    assert_eq!(probe(to_first.clone(), WAIT).await, Liveness::Unknown);
    send(&to_first, "3").await.expect("the connection goes on");
    assert_eq!(first_level.connections(), vec![false, true]);
}

#[tokio::test]
async fn a_request_no_connection_took_is_not_delivered_when_the_peer_leaves() {
    // The transport's connection is made, but the peer never answers its preface.
    let fake = Fake::start(Some("1"), vec![Script::Silent]).await;
    let client = Client::new(ClientConfig {
        connect_timeout: Duration::from_secs(60),
        ..config(fake.port)
    });
    send(&client, "\"offer\"").await.expect("a reply");
    let sent = send_until_gone(
        &client,
        "\"never read\"",
        until(|| fake.connections().len() == 2),
        true,
    )
    .await;
    assert!(
        matches!(sent, Err(SendError::Unreachable { .. })),
        "not run, so it may go elsewhere: {sent:?}"
    );
    assert!(fake.frames().is_empty());
}

#[tokio::test]
async fn a_request_a_connection_took_may_have_been_delivered_when_the_peer_leaves() {
    // Not forgotten: as on a connection left to drain while a newer one is the peer's
    // (`forget` ends only the newest), the send itself ends the one it waits on.
    for forget in [true, false] {
        let fake = Fake::start(Some("1"), vec![Script::Mute]).await;
        let client = client(fake.port);
        send(&client, "\"offer\"").await.expect("a reply");
        let read = until(|| fake.frames().len() == 1);
        let sent = send_until_gone(&client, "\"read\"", read, forget).await;
        assert!(
            matches!(sent, Err(SendError::Left { .. })),
            "forget {forget}: {sent:?}"
        );
    }
}

#[tokio::test]
async fn over_http_a_request_is_in_doubt_once_a_connection_took_it() {
    // Reads requests, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (read, mut requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut stream = BufReader::new(stream);
        while let Some((_, body)) = common::read_http_request(&mut stream).await {
            read.send(body).expect("the test waits");
        }
    });
    let client = Client::new(ClientConfig {
        multiplex: false,
        ..config(port)
    });
    let leaves = async {
        requests.recv().await.expect("the request read");
    };
    let sent = send_until_gone(&client, "\"read\"", leaves, true).await;
    assert!(matches!(sent, Err(SendError::Left { .. })), "{sent:?}");
}

#[tokio::test]
async fn over_http_a_request_still_connecting_is_not_delivered_when_the_peer_leaves() {
    // A listener whose accept queue is full: the kernel drops the next SYN, so a
    // connection to it stays in SYN-SENT.
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let _queued = TcpStream::connect(addr).await.expect("the one it queues");
    let client = Client::new(ClientConfig {
        multiplex: false,
        connect_timeout: Duration::from_secs(60),
        ..config(addr.port())
    });
    let connecting = until(|| syn_sent_to(addr.port()));
    let sent = send_until_gone(&client, "\"not yet\"", connecting, true).await;
    assert!(
        matches!(sent, Err(SendError::Unreachable { .. })),
        "not run: {sent:?}"
    );
}

/// True when a socket of this machine is in SYN-SENT towards 127.0.0.1:`port`.
fn syn_sent_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"02")
    })
}
