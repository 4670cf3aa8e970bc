//! Hand-written peers: HTTP/1.1 that echoes JSON bodies, and multiplexed connections run
//! by a [`Script`] (refuse, go away, break, stay mute or frozen, reset).

use super::*;

/// How a hand-written peer treats the Nth multiplexed connection made to it.
#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// Accepts the preface and answers every request.
    Serve,
    /// Answers the preface as HTTP/1.1 would answer a broken request, and closes.
    Refuse,
    /// Reads the preface and never answers.
    Silent,
    /// Reads two requests, goes away naming the first, answers it, and closes.
    GoAwayAfterTwo,
    /// Reads one request and closes without answering.
    BreakAfterOne,
    /// Accepts the preface, reads requests and never answers them.
    Mute,
    /// Accepts the preface, reads the start of a request and resets the connection.
    ResetMidRequest,
    /// Reads the preface and resets the connection, as the kernel of a pod dying does.
    ResetAtPreface,
    /// Accepts the preface and reads on, never answering a request or a ping: a pod
    /// frozen, or behind a link that stopped carrying replies.
    Frozen,
}

#[derive(Debug, Default)]
pub struct Log {
    /// For each connection, whether it began with the preface.
    pub connections: Vec<bool>,
    /// The bodies of the requests answered, and whether over the multiplexed transport.
    pub answered: Vec<(bool, Bytes)>,
    /// The bodies of the request frames read, answered or not.
    pub frames: Vec<Bytes>,
}

/// A hand-written peer on 127.0.0.1: HTTP/1.1 that echoes JSON bodies (offering the
/// multiplexed transport at the level `advertise` gives), and multiplexed connections run by
/// `scripts` in turn (`Serve` once they run out).
pub struct Fake {
    pub port: u16,
    pub log: Arc<Mutex<Log>>,
}

impl Fake {
    pub async fn start(advertise: Option<&'static str>, scripts: Vec<Script>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Log::default()));
        let logged = log.clone();
        tokio::spawn(async move {
            let mut scripts = scripts.into_iter();
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                let mut first = [0u8; 1];
                if stream.peek(&mut first).await.unwrap_or(0) == 0 {
                    continue;
                }
                let multiplexed = first[0] == mux::PREFACE[0];
                lock(&logged).connections.push(multiplexed);
                let log = logged.clone();
                if multiplexed {
                    let script = scripts.next().unwrap_or(Script::Serve);
                    tokio::spawn(fake_mux(stream, script, log));
                } else {
                    tokio::spawn(fake_http(stream, advertise, log));
                }
            }
        });
        Fake { port, log }
    }

    pub fn connections(&self) -> Vec<bool> {
        lock(&self.log).connections.clone()
    }

    pub fn answered(&self) -> Vec<(bool, Bytes)> {
        lock(&self.log).answered.clone()
    }

    pub fn frames(&self) -> Vec<Bytes> {
        lock(&self.log).frames.clone()
    }
}

pub async fn fake_http(stream: TcpStream, advertise: Option<&str>, log: Arc<Mutex<Log>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some((_, body)) = crate::common::read_http_request(&mut stream).await else {
            return;
        };
        lock(&log).answered.push((false, Bytes::from(body.clone())));
        let offer = advertise
            .map(|level| format!("x-swarm-kb-mux: {level}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{offer}\r\n",
            body.len()
        );
        let stream = stream.get_mut();
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&body).await.expect("write");
    }
}

/// The next request frame, noted as read; `None` at the end of the connection.
pub async fn next_request(
    reader: &mut BufReader<OwnedReadHalf>,
    log: &Mutex<Log>,
) -> Option<(u32, mux::RequestFrame)> {
    match mux::read_frame(reader, usize::MAX).await.expect("a frame") {
        Read::Frame(mux::REQUEST, id, rest) => {
            let frame = mux::parse_request(rest).expect("well formed");
            lock(log).frames.push(frame.body.clone());
            Some((id, frame))
        }
        Read::End => None,
        other => panic!("unexpected {other:?}"),
    }
}

/// The echo of a request frame, noted as answered.
pub fn echo_frame(id: u32, frame: &mux::RequestFrame, log: &Mutex<Log>) -> Bytes {
    lock(log).answered.push((true, frame.body.clone()));
    let payload = Payload::decode(frame.content_type, frame.body.clone()).expect("a valid body");
    mux::reply_frame(id, &Reply::ok(payload))
}

pub async fn fake_mux(stream: TcpStream, script: Script, log: Arc<Mutex<Log>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut preface = [0u8; mux::PREFACE.len()];
    reader.read_exact(&mut preface).await.expect("the preface");
    assert_eq!(&preface[..], mux::PREFACE);
    match script {
        Script::Refuse => {
            let refusal =
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            write.write_all(refusal).await.expect("write");
        }
        Script::ResetAtPreface => {
            let stream = reader.get_ref().as_ref();
            stream.set_zero_linger().expect("linger");
            // No FIN first: the socket closes at once, with a reset.
            write.forget();
            return;
        }
        Script::Silent => {
            // Not a byte back, and the connection stays open until the client leaves.
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
            return;
        }
        Script::Serve => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            while let Some((id, frame)) = next_request(&mut reader, &log).await {
                let reply = echo_frame(id, &frame, &log);
                write.write_all(&reply).await.expect("write");
            }
        }
        Script::GoAwayAfterTwo => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            let (first, frame) = next_request(&mut reader, &log).await.expect("a request");
            next_request(&mut reader, &log)
                .await
                .expect("a second request");
            // As a server shutting down does: the go-away, then the answers it promises.
            write
                .write_all(&mux::go_away_frame(first))
                .await
                .expect("write");
            write
                .write_all(&echo_frame(first, &frame, &log))
                .await
                .expect("write");
        }
        Script::BreakAfterOne => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            next_request(&mut reader, &log).await.expect("a request");
        }
        Script::Mute => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            while next_request(&mut reader, &log).await.is_some() {}
        }
        Script::Frozen => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
        }
        Script::ResetMidRequest => {
            write.write_all(mux::ACCEPTED).await.expect("write");
            let mut start = [0u8; 64];
            reader
                .read_exact(&mut start)
                .await
                .expect("a request begun");
            // Closed with unread data: the kernel resets the connection.
            return;
        }
    }
    // Ends its side, then reads on until the client closes (a clean close, no reset).
    let _ = write.shutdown().await;
    let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
}

pub fn bodies(answered: &[(bool, Bytes)], multiplexed: bool) -> Vec<Bytes> {
    answered
        .iter()
        .filter(|(mux, _)| *mux == multiplexed)
        .map(|(_, body)| body.clone())
        .collect()
}
