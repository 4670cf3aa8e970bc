//! The multiplexed transport's handshake (see [`super`]): the offer a server makes in its
//! HTTP replies, and the two lines that open a connection, each naming its pod's ring.

use std::io;

use hyper::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::ring::{RingKind, Said};

/// The reply header by which a server of ours offers the transport; its value is the
/// [`LEVEL`] of the transport it speaks.
pub const ADVERTISE: HeaderName = HeaderName::from_static("x-swarm-kb-mux");
/// The level of the transport this version speaks: 1, requests, replies and go-aways;
/// 2, pings too; 3, handshake lines that name their pod's ring.
pub const LEVEL: HeaderValue = HeaderValue::from_static("3");
/// The first level that answers pings.
const PINGS: u8 = 2;
/// The first level whose server reads a preface that names a ring (one of level 1 or 2
/// reads the plain preface's bytes exactly, and resets a connection that sent more).
const RINGS: u8 = 3;
/// The first bytes a client sends on a multiplexed connection.
pub const PREFACE: &[u8] = b"\0SWARM-KB MUX/1\r\n";
/// The server's answer to [`PREFACE`].
pub const ACCEPTED: &[u8] = b"\0SWARM-KB MUX/1 OK\r\n";
/// The longest handshake line read.
const GREETING_MAX: usize = 64;

/// `line` ([`PREFACE`] or [`ACCEPTED`]) naming `ring`, when there is one.
pub fn greeting(line: &[u8], ring: Option<RingKind>) -> Vec<u8> {
    let Some(ring) = ring else {
        return line.to_vec();
    };
    let mut greeting = line[..line.len() - 2].to_vec();
    greeting.extend_from_slice(b" ring=");
    greeting.extend_from_slice(ring.name().as_bytes());
    greeting.extend_from_slice(b"\r\n");
    greeting
}

/// Whether `read` is the handshake `line` ([`PREFACE`] or [`ACCEPTED`]), and then
/// what it said of its pod's ring, if anything: the line may carry `name=value` fields,
/// each after a space, and fields other than `ring` are left for later levels.
pub fn greeted(read: &[u8], line: &[u8]) -> Option<Option<Said>> {
    let mut fields = read
        .strip_prefix(&line[..line.len() - 2])?
        .strip_suffix(b"\r\n")?
        .split(|&b| b == b' ');
    // Before the first space, nothing: the line's own text ends there.
    if !fields.next()?.is_empty() {
        return None;
    }
    let mut ring = None;
    for field in fields {
        let (name, value) = field.split_at(field.iter().position(|&b| b == b'=')?);
        if name == b"ring" {
            ring = Some(Said::of(Some(&value[1..])));
        }
    }
    Some(ring)
}

/// Reads one handshake line, through its `\n` and not a byte further (frames may follow
/// it), of a bounded length: once per connection, a read per byte is cheap.
pub async fn read_greeting(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(GREETING_MAX);
    while line.len() < GREETING_MAX {
        let byte = stream.read_u8().await?;
        line.push(byte);
        if byte == b'\n' {
            break;
        }
    }
    Ok(line)
}

/// What a server's [`ADVERTISE`] header offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// The server answers pings.
    pub pings: bool,
    /// The server reads a preface that names a ring, and names its own.
    pub rings: bool,
}

impl Offer {
    /// The offer of a server that advertised `level` (the [`ADVERTISE`] header's value);
    /// a value that is not a number is taken as level 1, as the first servers sent.
    pub fn of(level: &[u8]) -> Offer {
        let level = std::str::from_utf8(level)
            .ok()
            .and_then(|level| level.trim().parse::<u8>().ok())
            .unwrap_or(1);
        Offer {
            pings: level >= PINGS,
            rings: level >= RINGS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_go_to_servers_of_level_2_or_more_and_rings_are_named_to_level_3() {
        for (level, pings, rings) in [
            (&b"3"[..], true, true),
            (b"4", true, true),
            (b"2", true, false),
            (b" 2 ", true, false),
            (b"1", false, false),
            (b"", false, false),
            (b"yes", false, false),
            (b"999", false, false),
        ] {
            assert_eq!(Offer::of(level), Offer { pings, rings }, "{level:?}");
        }
        assert_eq!(
            Offer::of(LEVEL.as_bytes()),
            Offer {
                pings: true,
                rings: true
            }
        );
    }

    #[tokio::test]
    async fn a_handshake_line_may_name_its_ring_and_is_read_to_its_end_only() {
        for line in [PREFACE, ACCEPTED] {
            assert_eq!(greeted(line, line), Some(None), "no ring named");
            assert_eq!(greeting(line, None), line);
            let named = greeting(line, Some(RingKind::Xxh3));
            assert_eq!(
                greeted(&named, line),
                Some(Some(Said::Kind(RingKind::Xxh3)))
            );
            let mut sent = named.clone();
            sent.extend_from_slice(b"\0\0\0\x05frame");
            let mut stream = &sent[..];
            assert_eq!(read_greeting(&mut stream).await.unwrap(), named);
            assert_eq!(stream, b"\0\0\0\x05frame", "what follows is left unread");
        }
        assert_eq!(
            greeted(b"\0SWARM-KB MUX/1 ring=hash2\r\n", PREFACE),
            Some(Some(Said::Unknown("hash2".into())))
        );
        assert_eq!(greeted(b"\0SWARM-KB MUX/1 OK\r\n", PREFACE), None);
        assert_eq!(greeted(b"\0SWARM-KB MUX/12\r\n", PREFACE), None);
        assert_eq!(
            greeted(b"\0SWARM-KB MUX/1 later=1 ring=xxh3\r\n", PREFACE),
            Some(Some(Said::Kind(RingKind::Xxh3))),
            "fields of later levels are left alone"
        );
        assert_eq!(
            greeted(b"\0SWARM-KB MUX/1 later=1\r\n", PREFACE),
            Some(None)
        );
        assert_eq!(greeted(b"GET / HTTP/1.1\r\n", PREFACE), None);
        assert_eq!(greeted(&ACCEPTED[..ACCEPTED.len() - 1], ACCEPTED), None);
        let endless = [b'x'; 100];
        assert_eq!(
            read_greeting(&mut &endless[..]).await.unwrap().len(),
            GREETING_MAX
        );
    }
}
