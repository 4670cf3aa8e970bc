//! Helpers shared by the integration tests.

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    net::TcpStream,
};

/// Reads one HTTP/1.1 request as a hand-written peer sees it: its head (request line and
/// headers, each with its CRLF, without the empty line) and its `content-length` body;
/// `None` once the client has closed the connection.
pub async fn read_http_request(stream: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("a length");
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("the body");
    Some((head, body))
}
