//! The multiplexed transport's server, over real sockets on loopback, spoken to by hand
//! with the frame helpers of `mux`: replies by id, limits, malformed frames, the order
//! of ids, pings, shutdown with a go-away, the switch that turns the transport off, and
//! connections read on another loop. Signed frames: `mux_signatures.rs`.

mod common;
#[macro_use]
mod support;

use support::*;

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
            .event_loop
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

on_both_loops!(
    requests_written_at_once_are_answered_by_id_as_they_finish,
    an_oversized_request_gets_413_and_the_connection_goes_on,
    malformed_bodies_and_frames_get_400_and_never_reach_the_handlers,
    ids_that_do_not_increase_and_broken_frames_end_the_connection,
    a_taken_request_is_answered_by_the_thread_that_flushes_and_frees_its_slot,
    a_taken_request_left_unanswered_times_out,
    a_frame_arriving_slowly_holds_back_no_other_request,
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

#[tokio::test]
async fn a_client_that_leaves_its_replies_unread_is_not_read_from_on_another_loop_either() {
    let mut server = Server::reading(Reading::Elsewhere, ServerLimits::default()).await;
    let event_loop = server.event_loop.clone().expect("read elsewhere");
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
        lock(&event_loop.readers).len(),
        2,
        "read again once the client read"
    );
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

#[tokio::test]
async fn a_connection_whose_event_loop_lets_go_of_it_ends_at_once() {
    let server = Server::reading(Reading::Gone, ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    assert!(
        matches!(peer.next().await, Read::End),
        "ended, not left open until the idle timeout"
    );
}
