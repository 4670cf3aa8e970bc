//! The client of the multiplexed transport, against the real server behind a proxy that
//! tells multiplexed connections from HTTP ones, and against hand-written peers: a 0.5.1
//! pod, a peer that goes away or breaks, and one that advertises the transport but
//! refuses it.

mod common;
#[macro_use]
mod support;

use support::*;

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
