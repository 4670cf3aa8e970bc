//! Pods name the ring they place keys by: on every HTTP/1.1 request and reply and in the
//! multiplexed handshake; what a peer names that differs from a node's own ring, or a
//! peer that names none (a pod of 0.5.1), is told once per peer and ring.

mod common;
#[macro_use]
mod support;

use support::*;
use swarm_core::{
    messaging::mux,
    ring::{RingKind, Said, Tell},
};

type Told = Arc<Mutex<Vec<(IpAddr, Said)>>>;

fn rings(own: RingKind) -> (Arc<PeerRings>, Told) {
    let told: Told = Arc::default();
    let sink = told.clone();
    let tell: Tell = Box::new(move |peer, said| {
        lock(&sink).push((peer, said.clone()));
        true
    });
    (Arc::new(PeerRings::new(own, tell)), told)
}

/// A server on 127.0.0.1 that names `own`, and what it is told.
async fn server_naming(own: RingKind, reading: Reading) -> (Server, Told) {
    let (rings, told) = rings(own);
    let server = Server::naming(
        Ipv4Addr::LOCALHOST,
        reading,
        ServerLimits::default(),
        Some(rings),
    )
    .await;
    (server, told)
}

/// Sends a request frame on a multiplexed connection whose handshake is done, and reads
/// the head of its reply.
async fn answers_a_request(stream: &mut TcpStream) {
    let request = mux::request_frame(1, "/echo", &json("{}"), None);
    stream.write_all(&request).await.expect("request");
    let mut reply = [0u8; 9];
    within("a reply", stream.read_exact(&mut reply))
        .await
        .expect("a reply");
    assert_eq!(reply[4], mux::REPLY, "a reply frame");
}

const HERE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn a_request_and_its_reply_name_each_side_s_ring_over_http1() {
    let (server, told_there) = server_naming(RingKind::Hashring, Reading::Runtime).await;
    let (mine, told_here) = rings(RingKind::Xxh3);
    let client = Client::new(ClientConfig {
        multiplex: false,
        rings: Some(mine),
        ..config(server.addr.port())
    });
    for _ in 0..3 {
        assert_eq!(send(&client, "{}").await, Ok(Reply::ok(json("{}"))));
    }
    assert_eq!(
        *lock(&told_here),
        [(HERE, Said::Kind(RingKind::Hashring))],
        "once"
    );
    assert_eq!(
        *lock(&told_there),
        [(HERE, Said::Kind(RingKind::Xxh3))],
        "once"
    );
}

#[tokio::test]
async fn a_peer_that_names_no_ring_is_a_pod_of_0_5_1_to_the_client_only() {
    let server = Server::start(ServerLimits::default()).await;
    for (own, expected) in [
        (RingKind::Hashring, vec![]),
        (RingKind::Xxh3, vec![(HERE, Said::Nothing)]),
    ] {
        let (mine, told) = rings(own);
        let client = Client::new(ClientConfig {
            rings: Some(mine),
            ..config(server.addr.port())
        });
        assert_eq!(send(&client, "{}").await, Ok(Reply::ok(json("{}"))));
        assert_eq!(*lock(&told), expected, "{own}");
    }
    // A request that names nothing may come from anything: the server tells nothing.
    let (named, told_there) = server_naming(RingKind::Xxh3, Reading::Runtime).await;
    assert_eq!(
        send(&client(named.addr.port()), "{}").await,
        Ok(Reply::ok(json("{}")))
    );
    assert!(lock(&told_there).is_empty());
}

async fn the_handshake_names_each_side_s_ring(reading: Reading) {
    let (server, told) = server_naming(RingKind::Hashring, reading).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let preface = mux::greeting(mux::PREFACE, Some(RingKind::Xxh3));
    stream.write_all(&preface).await.expect("preface");
    let answer = within("the answer", mux::read_greeting(&mut stream))
        .await
        .expect("read");
    assert_eq!(
        answer,
        mux::greeting(mux::ACCEPTED, Some(RingKind::Hashring))
    );
    assert_eq!(*lock(&told), [(HERE, Said::Kind(RingKind::Xxh3))]);
    // The connection then carries requests as any other.
    answers_a_request(&mut stream).await;
}

on_both_loops!(the_handshake_names_each_side_s_ring);

#[tokio::test]
async fn servers_of_1_0_0_get_the_plain_preface_and_clients_of_1_0_0_the_plain_answer() {
    // A server of level 2 (as 1.0.0's, level 1, it reads the plain preface's bytes
    // exactly and resets a connection that sent more): the ring is not named to it.
    let fake = Fake::start(Some("2"), vec![Script::Serve]).await;
    let (mine, _) = rings(RingKind::Xxh3);
    let client = Client::new(ClientConfig {
        rings: Some(mine),
        ..config(fake.port)
    });
    for i in 0..3 {
        let body = format!("{{\"i\":{i}}}");
        assert_eq!(send(&client, &body).await, Ok(Reply::ok(json(&body))));
    }
    let (connections, answered) = {
        let log = lock(&fake.log);
        (log.connections.clone(), bodies(&log.answered, true).len())
    };
    assert_eq!(
        connections,
        [false, true],
        "HTTP/1.1, then one multiplexed connection"
    );
    assert_eq!(answered, 2, "answered over it");

    // A client of 1.0.0 reads the plain answer's bytes exactly: it gets them.
    let (server, told) = server_naming(RingKind::Xxh3, Reading::Runtime).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(mux::PREFACE).await.expect("preface");
    let mut answer = vec![0u8; mux::ACCEPTED.len()];
    within("the answer", stream.read_exact(&mut answer))
        .await
        .expect("read");
    assert_eq!(answer, mux::ACCEPTED);
    // Nothing but frames follow the answer.
    answers_a_request(&mut stream).await;
    assert!(
        lock(&told).is_empty(),
        "a client that names no ring is not told"
    );
}
