//! What a request says besides its topic and body reaches the server on both
//! transports, beside a topic path that is the same as without it: what routed a task
//! request (its key and the caller's ring checksum), and the trace it belongs to.

mod common;
#[macro_use]
mod support;

use support::*;
use swarm_core::{
    messaging::{Routed, Trace},
    ring::RingKind,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_and_ring_of_a_task_request_reach_the_server_on_both_transports() {
    let server = Server::start(ServerLimits::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = client(proxy.port);
    let routed = Routed {
        key: "customer 42/é?%&".into(),
        ring: 0xfeed_beef_0123_4567,
        kind: Some(RingKind::Xxh3),
    };
    for transport in ["HTTP/1.1", "multiplexed"] {
        let request = client
            .unsent("127.0.0.1", "routed", json("{}"))
            .expect("an address")
            .routed_by(&routed);
        let reply = within("a routed send", client.send_request(request)).await;
        let said = format!("routed {}", routed.encode());
        assert_eq!(reply, Ok(Reply::ok(text(&said))), "{transport}");
    }
    assert_eq!(proxy.connections(), vec![false, true], "one of each");

    let plain = within("a send", client.send("127.0.0.1", "routed", json("{}"))).await;
    assert_eq!(plain, Ok(Reply::ok(text("routed none"))), "said by none");
}

#[tokio::test]
async fn a_query_or_header_that_is_not_a_routing_is_ignored() {
    let server = Server::start(ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    peer.write(&request(1, "/routed?key=k", &json("{}"))).await;
    assert_eq!(peer.reply().await, (1, Reply::ok(text("routed none"))));

    let response = http_exchange(server.addr, "/routed?00000000000000ff/k", "{}").await;
    assert!(response.ends_with("routed none"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_context_of_a_request_reaches_the_server_on_both_transports() {
    let server = Server::start(ServerLimits::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = client(proxy.port);
    let trace = Trace::from_text(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nrojo=00f067aa0ba902b7, congo=t61",
    )
    .expect("a trace context");
    for transport in ["HTTP/1.1", "multiplexed"] {
        let request = client
            .unsent("127.0.0.1", "traced", json("{}"))
            .expect("an address")
            .traced(Some(trace.clone()));
        let reply = within("a traced send", client.send_request(request)).await;
        assert_eq!(reply, Ok(Reply::ok(text(&trace.text()))), "{transport}");
    }
    assert_eq!(proxy.connections(), vec![false, true], "one of each");
}

#[tokio::test]
async fn a_trace_context_that_is_not_one_is_ignored() {
    let server = Server::start(ServerLimits::default()).await;
    let mut peer = Peer::open(server.addr).await;
    peer.write(&request(1, "/traced?traceparent=00-abc", &json("{}")))
        .await;
    assert_eq!(peer.reply().await, (1, Reply::ok(text("none"))));

    let response = http_exchange(
        server.addr,
        "/traced?traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "{}",
    )
    .await;
    assert!(
        response.ends_with("none"),
        "a query is not a header over HTTP/1.1: {response}"
    );
}
