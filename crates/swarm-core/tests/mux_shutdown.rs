//! Shutdown of the multiplexed transport's server and of its HTTP/1.1 connections: a
//! go-away naming the last request read, the answers it still owes, the drain timeout.

mod common;
#[macro_use]
mod support;

use support::*;

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

on_both_loops!(
    shutdown_sends_a_go_away_answers_what_it_read_and_waits_for_the_client,
    shutdown_waits_for_the_answer_of_a_taken_request,
    shutdown_gives_up_on_an_unanswered_request_after_the_drain_timeout,
    shutdown_cuts_an_http1_connection_whose_handler_outlives_the_drain_timeout,
);
