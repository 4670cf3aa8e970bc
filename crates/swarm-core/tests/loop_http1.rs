//! The HTTP/1.1 client of a loop thread's own (`Client::send_here`, as the addon sends
//! from its JavaScript thread to a 0.5.1 pod), against hand-written servers: replies of
//! every framing, kept-alive and closed connections, large requests, timeouts, and the
//! departure of the peer.

mod common;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use swarm_core::local::LoopThread;
use swarm_core::messaging::{
    loop_io::EventLoop, mux, Client, ClientConfig, Payload, Reply, SendError,
};
use tokio::{
    io::{AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A loop whose connections the runtime reads and polls (`EventLoop`'s defaults); the
/// test's thread is the loop's.
struct RuntimeLoop(std::thread::ThreadId);

impl LoopThread for RuntimeLoop {
    fn is_current(&self) -> bool {
        self.0 == std::thread::current().id()
    }
}

impl EventLoop for RuntimeLoop {
    fn adopt(&self, _: Box<dyn mux::Inflow>) {
        unreachable!("no multiplexed connection here")
    }
}

fn client(port: u16, request_timeout: Duration) -> Client {
    Client::new(ClientConfig {
        port,
        request_timeout,
        local_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        multiplex: false,
        event_loop: Some(Arc::new(RuntimeLoop(std::thread::current().id()))),
        ..ClientConfig::default()
    })
}

/// Sends `body` to `echo` as the addon does from its JavaScript thread, on the loop's
/// own HTTP/1.1 connections: written now, the outcome handed to a callback. The peer
/// leaves the cluster when `gone` is cancelled (the client's first token is the one).
async fn send_here(
    client: &Client,
    gone: &CancellationToken,
    body: &str,
) -> Result<Reply, SendError> {
    let departed = gone.clone();
    client.watch_departures(Box::new(move |_| departed.clone()));
    let (tell, outcome) = oneshot::channel();
    let payload = Payload::Json(Bytes::copy_from_slice(body.as_bytes()));
    let unsent = client
        .unsent("127.0.0.1", "echo", payload)
        .expect("an address");
    client.send_loop_http1(
        Arc::new(RuntimeLoop(std::thread::current().id())),
        unsent,
        Box::new(move |outcome| {
            let _ = tell.send(outcome);
        }),
    );
    within("the outcome", outcome).await.expect("settled")
}

/// How a hand-written server answers a request whose body is `body`.
#[derive(Clone, Copy)]
enum Answer {
    /// `content-length`, kept alive.
    Length,
    /// Chunks of at most 3 bytes, kept alive.
    Chunked,
    /// `Connection: close`, then it closes.
    Close,
    /// `content-length`, as if kept alive, then it closes and tells (a keep-alive
    /// timeout).
    ThenClose,
    /// Reads the request, tells, and never answers.
    Mute,
}

struct Peer {
    port: u16,
    connections: Arc<AtomicUsize>,
    /// The heads of the requests read, in order.
    heads: mpsc::UnboundedReceiver<String>,
    /// Told each time it closed a connection after its reply (`Close`, `ThenClose`).
    closed: mpsc::UnboundedReceiver<()>,
}

/// A server on 127.0.0.1 answering each request with the next of `answers` (the last
/// one again once they run out).
async fn peer(answers: Vec<Answer>) -> Peer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let (tell, heads) = mpsc::unbounded_channel();
    let (tell_closed, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let answers = Arc::new(std::sync::Mutex::new(answers));
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (answers, tell, tell_closed) = (answers.clone(), tell.clone(), tell_closed.clone());
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                while let Some((head, body)) = common::read_http_request(&mut stream).await {
                    let answer = {
                        let mut answers = answers.lock().expect("not poisoned");
                        if answers.len() > 1 {
                            answers.remove(0)
                        } else {
                            answers[0]
                        }
                    };
                    let _ = tell.send(head);
                    let stream = stream.get_mut();
                    let reply = match answer {
                        Answer::Length | Answer::ThenClose => {
                            let mut reply = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            reply.extend_from_slice(&body);
                            reply
                        }
                        Answer::Chunked => {
                            let mut reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                            for chunk in body.chunks(3) {
                                reply
                                    .extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                                reply.extend_from_slice(chunk);
                                reply.extend_from_slice(b"\r\n");
                            }
                            reply.extend_from_slice(b"0\r\n\r\n");
                            reply
                        }
                        Answer::Close => {
                            let mut reply = format!(
                                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            reply.extend_from_slice(&body);
                            let _ = stream.write_all(&reply).await;
                            let _ = stream.shutdown().await;
                            let _ = tell_closed.send(());
                            return;
                        }
                        Answer::Mute => {
                            std::future::pending::<()>().await;
                            return;
                        }
                    };
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                    if let Answer::ThenClose = answer {
                        let _ = stream.shutdown().await;
                        let _ = tell_closed.send(());
                        return;
                    }
                }
            });
        }
    });
    Peer {
        port,
        connections,
        heads,
        closed,
    }
}

fn json(text: &str) -> Payload {
    Payload::Json(Bytes::copy_from_slice(text.as_bytes()))
}

#[tokio::test]
async fn replies_of_either_framing_settle_sends_on_one_kept_alive_connection() {
    let mut peer = peer(vec![Answer::Length, Answer::Chunked, Answer::Length]).await;
    let client = client(peer.port, WAIT);
    let gone = CancellationToken::new();
    // Large enough that the socket does not take it at once: the connection's task
    // writes the rest.
    let large = format!("\"{}\"", "x".repeat(16 * 1024 * 1024));
    for body in ["{\"a\":1}", "[1,2,3,4,5,6,7]", &large] {
        let reply = send_here(&client, &gone, body).await.expect("a reply");
        assert_eq!(reply, Reply::ok(json(body)));
    }
    assert_eq!(peer.connections.load(Ordering::SeqCst), 1, "kept alive");
    let head = peer.heads.recv().await.expect("a head");
    assert_eq!(
        head,
        format!(
            "POST /echo HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\ncontent-length: 7\r\n",
            peer.port
        ),
        "the headers hyper's client sent"
    );
}

#[tokio::test]
async fn a_connection_its_server_closed_by_its_reply_or_after_it_is_not_used_again() {
    for answer in [Answer::Close, Answer::ThenClose] {
        let mut peer = peer(vec![answer]).await;
        let client = client(peer.port, WAIT);
        let gone = CancellationToken::new();
        for body in ["1", "2", "3"] {
            assert_eq!(
                send_here(&client, &gone, body).await,
                Ok(Reply::ok(json(body)))
            );
            within("the server to close", peer.closed.recv()).await;
            // Idle long enough that the pool asks the kernel before using it again,
            // without letting the connection's task run and see the end first.
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(peer.connections.load(Ordering::SeqCst), 3);
    }
}

#[tokio::test]
async fn a_call_without_a_reply_times_out_or_ends_when_its_peer_leaves() {
    let mut peer = peer(vec![Answer::Mute]).await;
    let client = client(peer.port, Duration::from_millis(200));
    let gone = CancellationToken::new();
    assert_eq!(
        send_here(&client, &gone, "1").await,
        Err(SendError::Timeout {
            ip: "127.0.0.1".into(),
            ms: 200
        })
    );
    let client = self::client(peer.port, WAIT);
    let call = send_here(&client, &gone, "2");
    let leave = async {
        // Once the peer has read it, it may have been delivered.
        peer.heads.recv().await;
        peer.heads.recv().await;
        gone.cancel();
    };
    let (outcome, ()) = tokio::join!(call, leave);
    assert_eq!(
        outcome,
        Err(SendError::Left {
            ip: "127.0.0.1".into()
        })
    );
}

#[tokio::test]
async fn a_peer_that_is_gone_or_does_not_listen_never_got_the_request() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let client = client(port, WAIT);
    let gone = CancellationToken::new();
    assert!(matches!(
        send_here(&client, &gone, "1").await,
        Err(SendError::Unreachable { .. })
    ));
    gone.cancel();
    assert!(matches!(
        send_here(&client, &gone, "1").await,
        Err(SendError::Unreachable { reason, .. }) if reason.contains("left the cluster")
    ));
}
