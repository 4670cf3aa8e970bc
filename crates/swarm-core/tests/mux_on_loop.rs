//! Sends made later (written when the thread flushes) and connections whose replies are
//! read on another thread's loop, as the JavaScript thread reads them in the addon.

mod common;
#[macro_use]
mod support;

use support::*;

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

/// On a loop thread (the JavaScript thread, in the addon), the client's HTTP/1.1
/// connections are made there and polled by that loop ([`loop_io::EventLoop::spawn_here`]).
#[tokio::test]
async fn http_sends_from_a_loop_thread_keep_their_connections_on_its_loop() {
    let server = Server::start(ServerLimits::default()).await;
    let event_loop = Arc::new(ThreadLoop {
        home: Some(std::thread::current().id()),
        ..ThreadLoop::default()
    });
    let client = Client::new(ClientConfig {
        multiplex: false,
        event_loop: Some(event_loop.clone()),
        ..config(server.addr.port())
    });
    exchanges_of_any_size(&client, &server).await;
}

#[tokio::test]
async fn replies_read_on_another_loop_settle_sends_of_both_kinds() {
    let server = Server::start(ServerLimits::default()).await;
    let event_loop = Arc::new(ThreadLoop::default());
    let client = reading_on(&event_loop, server.addr.port());
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
        event_loop.reads.load(Ordering::Relaxed) > 0,
        "the replies were read by the loop"
    );
    assert_eq!(lock(&event_loop.readers).len(), 1, "on one connection");
    assert_eq!(server.app.payloads().len(), 103);
}

#[tokio::test]
async fn a_go_away_read_on_another_loop_sends_the_unread_request_again_and_ends_the_reading() {
    let fake = Fake::start(Some("1"), vec![Script::GoAwayAfterTwo]).await;
    let event_loop = Arc::new(ThreadLoop::default());
    let client = reading_on(&event_loop, fake.port);
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
        event_loop.ended().await,
        2,
        "both connections' readings ended with them"
    );
}

#[test]
fn the_reading_ends_when_the_runtime_that_drove_the_connection_goes() {
    let outer = tokio::runtime::Runtime::new().expect("a runtime");
    let fake = outer.block_on(Fake::start(Some("1"), vec![Script::Mute]));
    let event_loop = Arc::new(ThreadLoop::default());
    let inner = tokio::runtime::Runtime::new().expect("a runtime");
    inner.block_on(async {
        let client = reading_on(&event_loop, fake.port);
        send(&client, "\"over http\"").await.expect("a reply");
        // Never answered (the peer is mute): the connection stays open until it goes.
        let _unanswered = send_later_accepted(&client, "\"unanswered\"").await;
    });
    assert_eq!(lock(&event_loop.readers).len(), 1);
    drop(inner);
    assert_eq!(outer.block_on(event_loop.ended()), 1);
}
