//! A client peer spoken by hand: multiplexed frames written and read one by one, and an
//! HTTP/1.1 exchange written by hand.

use super::*;

/// A multiplexed connection spoken by hand.
pub struct Peer {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Peer {
    /// Connects and has the preface accepted.
    pub async fn open(addr: SocketAddr) -> Peer {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        Peer::greet(stream).await
    }

    /// Has the preface accepted on `stream`.
    pub async fn greet(mut stream: TcpStream) -> Peer {
        stream.write_all(mux::PREFACE).await.expect("preface");
        let mut answer = [0u8; mux::ACCEPTED.len()];
        within("the preface's answer", stream.read_exact(&mut answer))
            .await
            .expect("an answer");
        assert_eq!(&answer[..], mux::ACCEPTED, "the preface is accepted");
        let (read, writer) = stream.into_split();
        Peer {
            reader: BufReader::new(read),
            writer,
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    pub async fn next(&mut self) -> Read {
        within("a frame", mux::read_frame(&mut self.reader, usize::MAX))
            .await
            .expect("a well-formed frame or the end")
    }

    pub async fn reply(&mut self) -> (u32, Reply) {
        match self.next().await {
            Read::Frame(mux::REPLY, id, rest) => (id, mux::parse_reply(rest).expect("a reply")),
            other => panic!("expected a reply frame, got {other:?}"),
        }
    }

    /// `n` replies, sorted by id.
    pub async fn replies(&mut self, n: usize) -> Vec<(u32, Reply)> {
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(self.reply().await);
        }
        replies.sort_by_key(|(id, _)| *id);
        replies
    }

    /// Everything the server sends until it ends its side.
    pub async fn rest(&mut self) -> Vec<(u8, u32, Bytes)> {
        let mut frames = Vec::new();
        loop {
            match self.next().await {
                Read::Frame(kind, id, rest) => frames.push((kind, id, rest)),
                Read::TooLarge(..) => unreachable!("no limit"),
                Read::End => return frames,
            }
        }
    }
}

pub fn request(id: u32, path: &str, payload: &Payload) -> Bytes {
    mux::request_frame(id, path, payload, None)
}

/// A frame of any kind with any contents, as a broken peer could send.
pub fn raw_frame(kind: u8, id: u32, rest: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u32(5 + rest.len() as u32);
    buf.put_u8(kind);
    buf.put_u32(id);
    buf.put_slice(rest);
    buf.freeze()
}

pub fn status(replies: &[(u32, Reply)]) -> Vec<(u32, u16)> {
    replies.iter().map(|(id, r)| (*id, r.status)).collect()
}

pub fn is_text_containing(payload: &Payload, needle: &str) -> bool {
    matches!(payload, Payload::Text(b) if String::from_utf8_lossy(b).contains(needle))
}

/// Sends one HTTP/1.1 request by hand and returns the whole response, head and body.
pub async fn http_exchange(addr: SocketAddr, path: &str, body: &str) -> String {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    within("the response", stream.read_to_end(&mut response))
        .await
        .expect("read");
    String::from_utf8(response).expect("UTF-8")
}
