//! The messaging client's own connection pool, against a bare HTTP/1.1 server on
//! loopback that counts its connections: sequential sends share one connection, a
//! connection the server ends is never used again, and failures say what happened.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use swarm_core::messaging::{Client, ClientConfig, Payload, SendError};
use tokio::{
    io::{AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// How the stand-in server answers each request.
#[derive(Clone, Copy)]
enum Answer {
    KeepAlive,
    Close,
    Never,
}

/// Serves on 127.0.0.1; returns its port and the count of accepted connections.
async fn server(answer: Answer) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            counted.fetch_add(1, Ordering::SeqCst);
            stream.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let Some((_, body)) = common::read_http_request(&mut stream).await else {
                        return;
                    };
                    let connection = match answer {
                        Answer::KeepAlive => "keep-alive",
                        Answer::Close => "close",
                        Answer::Never => return std::future::pending().await,
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n",
                        body.len()
                    );
                    let stream = stream.get_mut();
                    stream.write_all(head.as_bytes()).await.expect("write");
                    stream.write_all(&body).await.expect("write");
                    if matches!(answer, Answer::Close) {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

fn client(port: u16) -> Client {
    Client::new(ClientConfig {
        port,
        request_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    })
}

fn json(i: usize) -> Payload {
    Payload::Json(format!("{{\"i\":{i}}}").into())
}

/// Sends `json(i)` to the echo server and checks that it comes back.
async fn echo(client: &Client, i: usize) -> swarm_core::messaging::Reply {
    let reply = client
        .send("127.0.0.1", "echo", json(i))
        .await
        .expect("a reply");
    assert_eq!(reply.payload, json(i));
    reply
}

#[tokio::test]
async fn sequential_sends_share_one_connection() {
    let (port, accepted) = server(Answer::KeepAlive).await;
    let client = client(port);
    for i in 0..20 {
        assert_eq!(echo(&client, i).await.status, 200);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_sends_each_get_a_connection_and_give_it_back() {
    let (port, accepted) = server(Answer::KeepAlive).await;
    let client = client(port);
    for round in 0..3 {
        let sends = (0..8).map(|i| client.send("127.0.0.1", "echo", json(round * 8 + i)));
        for (i, reply) in futures_util::future::join_all(sends)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(reply.expect("a reply").payload, json(round * 8 + i));
        }
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&opened),
        "{opened} connections for 8 in flight"
    );
}

#[tokio::test]
async fn a_connection_the_server_ends_is_not_used_again() {
    let (port, accepted) = server(Answer::Close).await;
    let client = client(port);
    for i in 0..5 {
        echo(&client, i).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn failures_say_whether_the_message_may_have_been_delivered() {
    let (port, _) = server(Answer::Never).await;
    match client(port).send("127.0.0.1", "echo", json(0)).await {
        Err(SendError::Timeout { ip, ms }) => assert_eq!((ip.as_str(), ms), ("127.0.0.1", 500)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refused = closed.local_addr().expect("addr").port();
    drop(closed);
    match client(refused).send("127.0.0.1", "echo", json(0)).await {
        Err(SendError::Unreachable { ip, .. }) => assert_eq!(ip, "127.0.0.1"),
        other => panic!("expected unreachable, got {other:?}"),
    }
    assert!(matches!(
        client(refused).send("not-an-ip", "echo", json(0)).await,
        Err(SendError::BadAddress(_))
    ));
}
