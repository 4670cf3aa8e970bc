//! Signed frames on the multiplexed transport, over real sockets on loopback: a server
//! that requires signatures answers only signed frames, and the client signs its own.

mod common;
#[macro_use]
mod support;

use support::*;
use swarm_core::messaging::Auth;

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

    let signed = mux::request_frame(
        2,
        "/echo",
        &json("\"signed\""),
        Some((&signer, server.addr)),
    );
    peer.write(&signed).await;
    assert_eq!(peer.reply().await, (2, Reply::ok(json("\"signed\""))));

    let forged = mux::request_frame(
        3,
        "/echo",
        &json("\"forged\""),
        Some((&stranger, server.addr)),
    );
    peer.write(&forged).await;
    assert_eq!(peer.reply().await.1.status, 401);

    // The same signed frame again under a new id: a replay.
    let mut replayed = BytesMut::from(&signed[..]);
    replayed[5..9].copy_from_slice(&4u32.to_be_bytes());
    peer.write(&replayed).await;
    let (id, reply) = peer.reply().await;
    assert_eq!((id, reply.status), (4, 401));
    assert!(is_text_containing(&reply.payload, "replayed"), "{reply:?}");

    // Signed for another pod (a capture replayed here), or resent as text: refused.
    let elsewhere = SocketAddr::new("127.0.0.2".parse().expect("an IP"), server.addr.port());
    let other_pod = mux::request_frame(5, "/echo", &json("\"for B\""), Some((&signer, elsewhere)));
    peer.write(&other_pod).await;
    let (id, reply) = peer.reply().await;
    assert_eq!((id, reply.status), (5, 401));
    let mut as_text = BytesMut::from(
        &mux::request_frame(6, "/echo", &json("\"typed\""), Some((&signer, server.addr)))[..],
    );
    as_text[9] = 2; // the type byte: text, where JSON was signed
    peer.write(&as_text).await;
    let (id, reply) = peer.reply().await;
    assert_eq!((id, reply.status), (6, 401));

    assert_eq!(server.app.payloads(), vec![json("\"signed\"")]);
}

on_both_loops!(with_signatures_required_only_signed_frames_are_answered);

#[tokio::test]
async fn the_client_signs_its_multiplexed_requests() {
    let secret = b"shared secret";
    let limits = ServerLimits {
        auth: Some(Arc::new(Auth::new(secret, Duration::from_secs(30), true))),
        ..ServerLimits::default()
    };
    // Sent to the server itself: a signature names the address it was sent to, so a
    // proxy in between (another port) would make it fail, as a replay elsewhere would.
    let server = Server::reading(Reading::Elsewhere, limits).await;
    let signing = Client::new(ClientConfig {
        auth: Some(Arc::new(Auth::new(secret, Duration::from_secs(30), true))),
        ..config(server.addr.port())
    });
    for i in 0..5 {
        let body = format!("{{\"i\":{i}}}");
        let reply = send(&signing, &body).await.expect("a reply");
        assert_eq!(reply, Reply::ok(json(&body)));
    }
    let event_loop = server.event_loop.as_ref().expect("read on another loop");
    assert!(
        event_loop.reads.load(Ordering::Relaxed) > 0,
        "after the first HTTP exchange, signed frames on the multiplexed connection"
    );
    let unsigned = send(&client(server.addr.port()), "{}")
        .await
        .expect("a reply");
    assert_eq!(unsigned.status, 401);
    assert_eq!(server.app.payloads().len(), 5);
}
