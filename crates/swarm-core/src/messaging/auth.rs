//! Opt-in authentication of pod traffic: with a shared secret, every request carries an
//! HMAC-SHA256 over its method, path, timestamp, nonce, destination, content type and
//! body; the receiver checks it, refuses a timestamp outside the window and a nonce it has
//! already seen (replay).
//!
//! The destination is the pod's address and port as the sender addressed it, and the
//! receiver checks the signature against the address the connection came to: a request
//! captured on its way to one pod does not run on another. The content type is the
//! `Content-Type` header (the multiplexed frame's type byte stands for the same header),
//! so a JSON request resent as text is refused. Both are left out of nothing: a request
//! without a content type signs an empty one.
//!
//! Without a secret nothing is added or checked, so the 0.5.1 wire protocol is unchanged.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashSet},
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use ring::{
    hmac,
    rand::{SecureRandom, SystemRandom},
};

/// The request headers of a signed message.
pub const TIMESTAMP: HeaderName = HeaderName::from_static("x-swarm-timestamp");
pub const NONCE: HeaderName = HeaderName::from_static("x-swarm-nonce");
pub const SIGNATURE: HeaderName = HeaderName::from_static("x-swarm-signature");

/// Why a request was refused (answered 401).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("Unauthorized: missing or malformed signature headers")]
    Missing,
    #[error("Unauthorized: timestamp outside the accepted window")]
    Stale,
    #[error("Unauthorized: bad signature")]
    BadSignature,
    #[error("Unauthorized: replayed request")]
    Replayed,
    #[error("Unauthorized: more signed requests within the window than this node remembers")]
    Flooded,
}

/// Nonces remembered at most: a flood of valid signed requests holds this many, about
/// 50 bytes each, and more within one window are refused (the replay check would
/// otherwise have to forget nonces whose timestamps are still valid).
const MAX_SEEN: usize = 1 << 21;

/// A clock in milliseconds since the epoch; the system's, or a test's.
type Clock = Arc<dyn Fn() -> u128 + Send + Sync>;

/// The nonces seen, by the timestamp each came with. A nonce is forgotten only once its
/// timestamp is older than the window as judged by the furthest-ahead reading of the
/// clock (`high`), and such a timestamp is refused as stale: if the clock steps back, a
/// nonce stays remembered for as long as its timestamp could be accepted again.
struct Seen {
    /// The first 8 bytes of each nonce: random, so a collision between two requests of
    /// one window is as likely as guessing a 64-bit secret.
    nonces: HashSet<u64>,
    by_time: BinaryHeap<Reverse<(u128, u64)>>,
    high: u128,
    /// Nonces remembered at most ([`MAX_SEEN`]).
    max: usize,
}

impl Seen {
    fn new(max: usize) -> Seen {
        Seen {
            nonces: HashSet::new(),
            by_time: BinaryHeap::new(),
            high: 0,
            max,
        }
    }
}

/// Signs outgoing requests and checks incoming ones with one shared secret.
pub struct Auth {
    key: hmac::Key,
    window: Duration,
    required: bool,
    rng: SystemRandom,
    seen: Mutex<Seen>,
    clock: Clock,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

fn system_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    // `from_str_radix` alone also takes a sign: "+f" would pass as a hex byte.
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares two tags in time independent of where they differ.
fn same_tag(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// A signer for `secret`, accepting timestamps within `window` of the local clock.
    /// With `required` false (the first step of a rollout), unsigned requests are still
    /// answered, while signed ones are checked.
    pub fn new(secret: &[u8], window: Duration, required: bool) -> Auth {
        Auth::with_clock(secret, window, required, Arc::new(system_ms))
    }

    /// As [`Auth::new`], with the time read from `clock` (milliseconds since the epoch).
    pub fn with_clock(secret: &[u8], window: Duration, required: bool, clock: Clock) -> Auth {
        Auth {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window,
            required,
            rng: SystemRandom::new(),
            seen: Mutex::new(Seen::new(MAX_SEEN)),
            clock,
        }
    }

    /// The signed string: method, path, timestamp, nonce, destination and content type,
    /// each followed by a line feed, then the body.
    fn mac(&self, request: &Signed<'_>, timestamp: &str, nonce: &str) -> hmac::Context {
        let mut ctx = hmac::Context::with_key(&self.key);
        let to = request.to.to_string();
        for part in [
            request.method,
            request.path,
            timestamp,
            nonce,
            &to,
            request.content_type,
        ] {
            ctx.update(part.as_bytes());
            ctx.update(b"\n");
        }
        ctx.update(request.body);
        ctx
    }

    /// The headers that sign `request`.
    pub fn sign(&self, request: &Signed<'_>) -> [(HeaderName, HeaderValue); 3] {
        let mut nonce = [0u8; 16];
        self.rng
            .fill(&mut nonce)
            .expect("the system's random source works");
        let (timestamp, nonce) = (((self.clock)()).to_string(), hex(&nonce));
        let tag = self.mac(request, &timestamp, &nonce).sign();
        let value = |s: String| HeaderValue::from_str(&s).expect("ASCII");
        [
            (TIMESTAMP, value(timestamp)),
            (NONCE, value(nonce)),
            (SIGNATURE, value(hex(tag.as_ref()))),
        ]
    }

    /// Checks a received request, `to` being the address its connection came to.
    pub fn verify(&self, request: &Signed<'_>, headers: &HeaderMap) -> Result<(), AuthError> {
        let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(timestamp), Some(nonce), Some(signature)) =
            (header(&TIMESTAMP), header(&NONCE), header(&SIGNATURE))
        else {
            let unsigned = [TIMESTAMP, NONCE, SIGNATURE]
                .iter()
                .all(|h| !headers.contains_key(h));
            return if unsigned && !self.required {
                Ok(())
            } else {
                Err(AuthError::Missing)
            };
        };
        let sent: u128 = timestamp.parse().map_err(|_| AuthError::Missing)?;
        let signature = unhex(signature).ok_or(AuthError::Missing)?;
        if nonce.len() != 32 || unhex(nonce).is_none() {
            return Err(AuthError::Missing);
        }
        let (now, window) = ((self.clock)(), self.window.as_millis());
        if now.abs_diff(sent) > window {
            return Err(AuthError::Stale);
        }
        let expected = self.mac(request, timestamp, nonce).sign();
        if !same_tag(expected.as_ref(), &signature) {
            return Err(AuthError::BadSignature);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.admit(sent, nonce_key(nonce), now, window)
    }
}

/// A request as it is signed: the pieces of the signed string besides the timestamp and
/// the nonce.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path as on the request line.
    pub path: &'a str,
    /// The pod's address and port, as the sender addressed it.
    pub to: SocketAddr,
    /// The `Content-Type` header's value; empty without one.
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// The first 8 bytes of a nonce checked to be 32 hex digits.
fn nonce_key(nonce: &str) -> u64 {
    u64::from_str_radix(&nonce[..16], 16).expect("checked hex")
}

impl Seen {
    /// Remembers `nonce`, sent at `sent`, unless it was seen already, its timestamp is too
    /// old for the furthest-ahead clock reading, or the memory is full.
    fn admit(&mut self, sent: u128, nonce: u64, now: u128, window: u128) -> Result<(), AuthError> {
        self.high = self.high.max(now);
        let cutoff = self.high.saturating_sub(window);
        if sent < cutoff {
            return Err(AuthError::Stale);
        }
        while let Some(Reverse((at, old))) = self.by_time.peek().copied() {
            if at >= cutoff {
                break;
            }
            self.by_time.pop();
            self.nonces.remove(&old);
        }
        if self.nonces.contains(&nonce) {
            return Err(AuthError::Replayed);
        }
        if self.nonces.len() >= self.max {
            return Err(AuthError::Flooded);
        }
        self.nonces.insert(nonce);
        self.by_time.push(Reverse((sent, nonce)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const WINDOW: Duration = Duration::from_secs(30);

    fn headers(signed: [(HeaderName, HeaderValue); 3]) -> HeaderMap {
        signed.into_iter().collect()
    }

    fn pod(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("an IP"), 45892)
    }

    fn request<'a>(path: &'a str, to: &str, content_type: &'a str, body: &'a [u8]) -> Signed<'a> {
        Signed {
            method: "POST",
            path,
            to: pod(to),
            content_type,
            body,
        }
    }

    const JSON: &str = "application/json";

    #[test]
    fn a_signed_request_passes_once() {
        let auth = Auth::new(b"secret", WINDOW, true);
        let sent = request("/a/b", "10.0.0.1", JSON, b"{}");
        let signed = headers(auth.sign(&sent));
        assert_eq!(auth.verify(&sent, &signed), Ok(()));
        assert_eq!(auth.verify(&sent, &signed), Err(AuthError::Replayed));
    }

    #[test]
    fn tampering_another_destination_or_content_type_and_other_secrets_are_refused() {
        let auth = Auth::new(b"secret", WINDOW, true);
        let other = Auth::new(b"other", WINDOW, true);
        let sent = request("/a", "10.0.0.1", JSON, b"{\"x\":1}");
        let signed = headers(auth.sign(&sent));
        let cases: [(&Auth, Signed<'_>); 6] = [
            (&auth, request("/a", "10.0.0.1", JSON, b"{\"x\":2}")),
            (&auth, request("/b", "10.0.0.1", JSON, b"{\"x\":1}")),
            (
                &auth,
                Signed {
                    method: "PUT",
                    ..request("/a", "10.0.0.1", JSON, b"{\"x\":1}")
                },
            ),
            (&auth, request("/a", "10.0.0.2", JSON, b"{\"x\":1}")),
            (
                &auth,
                request("/a", "10.0.0.1", "text/plain; charset=utf-8", b"{\"x\":1}"),
            ),
            (&other, request("/a", "10.0.0.1", JSON, b"{\"x\":1}")),
        ];
        for (checker, received) in cases {
            let result = checker.verify(&received, &signed);
            assert_eq!(
                result,
                Err(AuthError::BadSignature),
                "{} {} to {} as {:?}",
                received.method,
                received.path,
                received.to,
                received.content_type
            );
        }
        let unsigned = auth.verify(&sent, &HeaderMap::new());
        assert_eq!(unsigned, Err(AuthError::Missing));
    }

    #[test]
    fn a_request_refused_for_its_signature_does_not_use_up_its_nonce() {
        let auth = Auth::new(b"secret", WINDOW, true);
        let sent = request("/a", "10.0.0.1", JSON, b"{}");
        let signed = headers(auth.sign(&sent));
        let elsewhere = request("/a", "10.0.0.2", JSON, b"{}");
        assert_eq!(
            auth.verify(&elsewhere, &signed),
            Err(AuthError::BadSignature)
        );
        assert_eq!(auth.verify(&sent, &signed), Ok(()));
    }

    #[test]
    fn during_a_rollout_unsigned_requests_pass_and_signed_ones_are_checked() {
        let auth = Auth::new(b"secret", WINDOW, false);
        let sent = request("/a", "10.0.0.1", "", b"");
        assert_eq!(auth.verify(&sent, &HeaderMap::new()), Ok(()));
        let other = Auth::new(b"other", WINDOW, false);
        let signed = headers(other.sign(&sent));
        assert_eq!(auth.verify(&sent, &signed), Err(AuthError::BadSignature));
    }

    #[test]
    fn only_hex_digits_are_hex() {
        assert_eq!(unhex("0fA0"), Some(vec![0x0f, 0xa0]));
        for text in ["+f", "+f0a", "-1", " 1", "0g", "f"] {
            assert_eq!(unhex(text), None, "{text:?}");
        }
        let auth = Auth::new(b"secret", WINDOW, true);
        let sent = request("/a", "10.0.0.1", "", b"");
        let mut signed = headers(auth.sign(&sent));
        signed.insert(NONCE, HeaderValue::from_str(&"+0".repeat(16)).unwrap());
        assert_eq!(
            auth.verify(&sent, &signed),
            Err(AuthError::Missing),
            "a nonce of signs"
        );
    }

    #[test]
    fn stale_timestamps_are_refused() {
        let auth = Auth::new(b"secret", WINDOW, true);
        let sent = request("/a", "10.0.0.1", "", b"");
        let mut signed = headers(auth.sign(&sent));
        let old = (system_ms() - 60_000).to_string();
        signed.insert(TIMESTAMP, HeaderValue::from_str(&old).unwrap());
        assert_eq!(auth.verify(&sent, &signed), Err(AuthError::Stale));
    }

    #[test]
    fn a_nonce_stays_remembered_while_its_timestamp_could_pass_whatever_the_clock_does() {
        let time = Arc::new(AtomicU64::new(1_000_000_000));
        let clock = {
            let time = time.clone();
            Arc::new(move || u128::from(time.load(Ordering::SeqCst)))
        };
        let auth = Auth::with_clock(b"secret", WINDOW, true, clock);
        let sent = request("/a", "10.0.0.1", "", b"");
        let signed = headers(auth.sign(&sent));
        assert_eq!(auth.verify(&sent, &signed), Ok(()));
        // The clock steps back, then forward past the window, then back again: the
        // captured request is refused each time, as replayed or as stale.
        time.fetch_sub(20_000, Ordering::SeqCst);
        assert_eq!(auth.verify(&sent, &signed), Err(AuthError::Replayed));
        time.fetch_add(3_600_000, Ordering::SeqCst);
        let later = request("/b", "10.0.0.1", "", b"");
        assert_eq!(
            auth.verify(&later, &headers(auth.sign(&later))),
            Ok(()),
            "prunes the old nonce"
        );
        time.fetch_sub(3_600_000, Ordering::SeqCst);
        assert_eq!(
            auth.verify(&sent, &signed),
            Err(AuthError::Stale),
            "forgotten, so refused as stale"
        );
    }

    #[test]
    fn a_flood_of_valid_nonces_is_bounded_and_the_old_ones_go() {
        let mut seen = Seen::new(100);
        let window = WINDOW.as_millis();
        for n in 0..100 {
            assert_eq!(seen.admit(1_000, n, 1_000, window), Ok(()));
        }
        assert_eq!(
            seen.admit(1_000, 100, 1_000, window),
            Err(AuthError::Flooded)
        );
        assert_eq!(
            seen.admit(1_000, 5, 1_000, window),
            Err(AuthError::Replayed)
        );
        // Once the window has passed them, their room is free again.
        let later = 1_000 + window + 1;
        assert_eq!(seen.admit(later, 100, later, window), Ok(()));
        assert_eq!(seen.nonces.len(), 1);
        assert_eq!(seen.by_time.len(), 1);
    }
}
