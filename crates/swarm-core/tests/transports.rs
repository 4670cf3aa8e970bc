//! Connections and exchanges counted by transport, by the client and by the server: a
//! first send over HTTP/1.1 (where the client learns the server's offer), then one over
//! the multiplexed transport.

mod common;
#[macro_use]
mod support;

use std::sync::Arc;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_exchanges_are_counted_by_transport_each_way() {
    let server = Server::start(ServerLimits::default()).await;
    let client = client(server.addr.port());
    let transports = Arc::new(Transports::default());
    client.count_in(transports.clone());
    for _ in 0..2 {
        let reply = within("a send", client.send("127.0.0.1", "echo", json("{}"))).await;
        assert_eq!(reply, Ok(Reply::ok(json("{}"))));
    }
    let durations = transports.durations();
    assert_eq!(
        (durations["http1"].count, durations["multiplexed"].count),
        (1, 1),
        "one exchange over each"
    );
    // The HTTP/1.1 connection stays open, idle in the pool, beside the multiplexed one.
    let opened = transports.connections();
    assert_eq!((opened.out["http1"], opened.out["multiplexed"]), (1, 1));
    assert_eq!((opened.r#in["http1"], opened.r#in["multiplexed"]), (0, 0));
    let accepted = server.app.transports.connections();
    assert_eq!(
        (accepted.r#in["http1"], accepted.r#in["multiplexed"]),
        (1, 1)
    );
}
