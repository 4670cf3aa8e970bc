//! A peer that leaves the cluster: probed with a ping, and the calls waiting on it
//! settled as delivered or not, over both transports.

mod common;
#[macro_use]
mod support;

use support::*;
use swarm_core::messaging::Liveness;

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
