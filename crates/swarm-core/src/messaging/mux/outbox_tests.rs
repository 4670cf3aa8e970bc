//! The outbox against real sockets.

use std::{future::Future, time::Duration};

use futures_util::FutureExt;
use tokio::net::TcpStream;

use super::{
    super::{go_away_frame, request_frame, Payload},
    *,
};

/// A connected pair: the outbox's writing half, and the peer's end as a blocking
/// socket, read from without giving the runtime a turn.
async fn pair() -> (Sink, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let ours = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (peer, _) = listener.accept().expect("accept");
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (ours.into_split().1.into(), peer)
}

/// Starts the writer and waits until it holds the socket.
async fn writing(outbox: &Arc<Outbox>, out: Sink) -> tokio::task::JoinHandle<io::Result<()>> {
    let writer = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.run(out).await }
    });
    while outbox.lock().out.is_none() {
        tokio::task::yield_now().await;
    }
    writer
}

fn read_exactly(peer: &mut std::net::TcpStream, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    std::io::Read::read_exact(peer, &mut bytes).expect("the bytes");
    bytes
}

#[tokio::test]
async fn frames_queued_for_later_are_written_by_the_thread_that_flushes() {
    let (out, mut peer) = pair().await;
    let outbox = Arc::new(Outbox::default());
    let _writer = writing(&outbox, out).await;
    let frames: Vec<Bytes> = (1..=3).map(go_away_frame).collect();
    for frame in &frames {
        assert!(outbox.push_later(frame.clone(), EAGER));
    }
    flush();
    // The runtime gets no turn before the bytes are read: the writer task had no
    // part in writing them.
    assert_eq!(read_exactly(&mut peer, 27), frames.concat());
}

#[tokio::test]
async fn frames_queued_for_later_go_out_in_groups_without_waiting_for_the_flush() {
    let (out, mut peer) = pair().await;
    peer.set_nonblocking(true).expect("nonblocking");
    let outbox = Arc::new(Outbox::default());
    let _writer = writing(&outbox, out).await;
    let frames: Vec<Bytes> = (1..=EAGER as u32 + 1).map(go_away_frame).collect();
    for frame in &frames[..EAGER - 1] {
        assert!(outbox.push_later(frame.clone(), EAGER));
    }
    let mut byte = [0u8; 1];
    let nothing = std::io::Read::read(&mut peer, &mut byte);
    assert_eq!(
        nothing.map_err(|e| e.kind()).err(),
        Some(io::ErrorKind::WouldBlock),
        "fewer wait for the flush"
    );
    assert!(outbox.push_later(frames[EAGER - 1].clone(), EAGER));
    assert!(outbox.push_later(frames[EAGER].clone(), EAGER));
    peer.set_nonblocking(false).expect("blocking");
    // Written by the push that made them a group, before any flush and without a
    // turn of the runtime; the frame after it waits for the flush.
    assert_eq!(read_exactly(&mut peer, 9 * EAGER), frames[..EAGER].concat());
    assert_eq!(outbox.lock().queued.list.len(), 1);
    flush();
    assert_eq!(read_exactly(&mut peer, 9), frames[EAGER]);
}

#[tokio::test]
async fn what_the_socket_does_not_take_at_once_the_writer_writes_in_order() {
    let (out, mut peer) = pair().await;
    let outbox = Arc::new(Outbox::default());
    let writer = writing(&outbox, out).await;
    // Far more than the socket buffers take.
    let big = Bytes::from(
        (0..32u32 << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    assert!(outbox.push_later(big.clone(), EAGER));
    flush();
    assert!(
        outbox.lock().queued.bytes > 0,
        "the socket took part of it; the rest is the writer's"
    );
    assert!(outbox.push(go_away_frame(7)), "queued behind the rest");
    outbox.close();
    assert!(!outbox.push(go_away_frame(8)), "closed");
    let reading = std::thread::spawn(move || {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut peer, &mut all).expect("to the end");
        all
    });
    writer.await.expect("joined").expect("written");
    let all = reading.join().expect("joined");
    assert_eq!(all.len(), big.len() + 9);
    assert!(all[..big.len()] == big[..], "the big frame whole, first");
    assert_eq!(&all[big.len()..], &go_away_frame(7)[..], "then the next");
}

#[tokio::test]
async fn producers_wait_for_room_until_the_writer_catches_up() {
    let (out, mut peer) = pair().await;
    let outbox = Arc::new(Outbox::default());
    assert!(outbox.push(Bytes::from(vec![1u8; HIGH_WATER])));
    let room = outbox.room();
    tokio::pin!(room);
    assert!(
        room.as_mut().now_or_never().is_none(),
        "no room before it is written"
    );
    let _writer = writing(&outbox, out).await;
    let reading = std::thread::spawn(move || read_exactly(&mut peer, HIGH_WATER));
    within_test(room).await;
    assert_eq!(reading.join().expect("joined"), vec![1u8; HIGH_WATER]);
}

#[tokio::test]
async fn requests_are_not_written_once_the_peer_has_ended_its_side() {
    let (out, peer) = pair().await;
    peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // The FIN reaches the kernel at once on loopback; the reader has not run.
    within_test(async {
        while !peer_closed(out.raw()) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let outbox = Arc::new(Outbox::for_requests());
    let _writer = writing(&outbox, out).await;
    assert!(outbox.push_later(request_frame(4, "/x", &Payload::Empty, None), EAGER));
    flush();
    assert_eq!(outbox.abort(), vec![4], "never written: known unsent");
}

async fn within_test<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("in time")
}
