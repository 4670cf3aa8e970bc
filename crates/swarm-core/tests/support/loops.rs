//! Read loops of the tests' own: threads that poll each adopted socket, as the
//! JavaScript thread's loop would, and one that lets go of every connection at once.

use super::*;

/// A read loop of threads of its own, as the JavaScript thread's would be: each adopted
/// connection is read by a thread that waits on its socket with poll(2).
#[derive(Default)]
pub struct ThreadLoop {
    /// How many times a socket was readable and read.
    pub reads: Arc<AtomicUsize>,
    pub readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Told each time a reading is over on this loop.
    pub stopped: Arc<tokio::sync::Notify>,
    /// The thread that is this loop's, if any: the engine keeps work started there.
    pub home: Option<std::thread::ThreadId>,
}

impl LoopThread for ThreadLoop {
    fn is_current(&self) -> bool {
        self.home == Some(std::thread::current().id())
    }
}

impl EventLoop for ThreadLoop {
    fn adopt(&self, mut inflow: Box<dyn mux::Inflow>) {
        let (reads, stopped) = (self.reads.clone(), self.stopped.clone());
        lock(&self.readers).push(std::thread::spawn(move || loop {
            let mut socket = libc::pollfd {
                fd: inflow.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid `pollfd`. Bounded past `WAIT`: a reading that does not
            // end fails the test that waits for it.
            if unsafe { libc::poll(&mut socket, 1, 2 * WAIT.as_millis() as i32) } <= 0 {
                return;
            }
            reads.fetch_add(1, Ordering::Relaxed);
            let over = inflow.read();
            mux::flush();
            if over {
                return stopped.notify_one();
            }
        }));
    }
}

impl ThreadLoop {
    /// Waits until every connection it read has ended.
    pub async fn ended(&self) -> usize {
        let readers = std::mem::take(&mut *lock(&self.readers));
        let count = readers.len();
        let joined = tokio::task::spawn_blocking(move || {
            for reader in readers {
                reader.join().expect("no panic");
            }
        });
        within("the readers to end", joined).await.expect("joined");
        count
    }
}

pub fn reading_on(event_loop: &Arc<ThreadLoop>, port: u16) -> Client {
    Client::new(ClientConfig {
        event_loop: Some(event_loop.clone()),
        ..config(port)
    })
}

/// Has a client that leaves its replies unread fill the server's queue until the
/// server's reading (on another loop) pauses; the requests taken from then on are
/// answered as they come. The peer, and how many requests it sent.
pub async fn pause_the_reading(server: &mut Server) -> (Peer, u32) {
    let event_loop = server.event_loop.clone().expect("read elsewhere");
    // A small receive buffer: the replies it does not read wait in the server's queue.
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let stream = within("connect", socket.connect(server.addr))
        .await
        .expect("connect");
    let mut peer = Peer::greet(stream).await;
    // Requests answered with 128 KiB each, until the answers fill the kernel's buffers
    // and the queue past its high-water mark: the reading then pauses.
    let big = text(&"a".repeat(128 * 1024));
    let mut sent = 0;
    loop {
        sent += 1;
        assert!(sent <= 200, "the reading never paused");
        peer.write(&request(sent, "/take", &Payload::Empty)).await;
        tokio::select! {
            responder = server.taken() => assert!(responder.reply(&Reply::ok(big.clone()))),
            () = event_loop.stopped.notified() => break,
        }
    }
    // The rest are answered as they are read: the request that found the queue full,
    // and any written after it, read once the reading goes on.
    let mut taken = std::mem::replace(&mut server.taken, mpsc::unbounded_channel().1);
    tokio::spawn(async move {
        while let Some(responder) = taken.recv().await {
            responder.reply(&Reply::ok(big.clone()));
        }
    });
    (peer, sent)
}

/// A loop that lets go of every connection at once, as one whose thread's environment
/// ended would.
pub struct GoneLoop;

impl LoopThread for GoneLoop {
    fn is_current(&self) -> bool {
        false
    }
}

impl EventLoop for GoneLoop {
    fn adopt(&self, inflow: Box<dyn mux::Inflow>) {
        drop(inflow);
    }
}
