//! Opt-in authentication of pod traffic: with a shared secret, every request carries an
//! HMAC-SHA256 over its method, path, timestamp, nonce and body; the receiver checks it,
//! refuses a timestamp outside the window and a nonce it has already seen (replay).
//!
//! Without a secret nothing is added or checked, so the 0.5.1 wire protocol is unchanged.

use std::{
    collections::HashMap,
    fmt,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
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
}

/// Signs outgoing requests and checks incoming ones with one shared secret.
pub struct Auth {
    key: hmac::Key,
    window: Duration,
    required: bool,
    rng: SystemRandom,
    seen: Mutex<HashMap<String, Instant>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u128 {
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
        Auth {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window,
            required,
            rng: SystemRandom::new(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn mac(
        &self,
        method: &str,
        path: &str,
        timestamp: &str,
        nonce: &str,
        body: &[u8],
    ) -> hmac::Context {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [method, path, timestamp, nonce] {
            ctx.update(part.as_bytes());
            ctx.update(b"\n");
        }
        ctx.update(body);
        ctx
    }

    /// The headers that sign a request.
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> [(HeaderName, HeaderValue); 3] {
        let mut nonce = [0u8; 16];
        self.rng
            .fill(&mut nonce)
            .expect("the system's random source works");
        let (timestamp, nonce) = (now_ms().to_string(), hex(&nonce));
        let tag = self.mac(method, path, &timestamp, &nonce, body).sign();
        let value = |s: String| HeaderValue::from_str(&s).expect("ASCII");
        [
            (TIMESTAMP, value(timestamp)),
            (NONCE, value(nonce)),
            (SIGNATURE, value(hex(tag.as_ref()))),
        ]
    }

    /// Checks a received request.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), AuthError> {
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
        if now_ms().abs_diff(sent) > self.window.as_millis() {
            return Err(AuthError::Stale);
        }
        let expected = self.mac(method, path, timestamp, nonce, body).sign();
        if !same_tag(expected.as_ref(), &signature) {
            return Err(AuthError::BadSignature);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if seen.len() > 4096 {
            // Nonces older than twice the window can no longer come with a fresh timestamp.
            seen.retain(|_, at| now.duration_since(*at) < self.window * 2);
        }
        if seen.insert(nonce.to_owned(), now).is_some() {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(signed: [(HeaderName, HeaderValue); 3]) -> HeaderMap {
        signed.into_iter().collect()
    }

    #[test]
    fn a_signed_request_passes_once() {
        let auth = Auth::new(b"secret", Duration::from_secs(30), true);
        let signed = headers(auth.sign("POST", "/a/b", b"{}"));
        assert_eq!(auth.verify("POST", "/a/b", &signed, b"{}"), Ok(()));
        assert_eq!(
            auth.verify("POST", "/a/b", &signed, b"{}"),
            Err(AuthError::Replayed)
        );
    }

    #[test]
    fn tampering_and_other_secrets_are_refused() {
        let auth = Auth::new(b"secret", Duration::from_secs(30), true);
        let other = Auth::new(b"other", Duration::from_secs(30), true);
        let signed = headers(auth.sign("POST", "/a", b"{\"x\":1}"));
        let cases: [(&Auth, &str, &str, &[u8]); 4] = [
            (&auth, "POST", "/a", b"{\"x\":2}"),
            (&auth, "POST", "/b", b"{\"x\":1}"),
            (&auth, "PUT", "/a", b"{\"x\":1}"),
            (&other, "POST", "/a", b"{\"x\":1}"),
        ];
        for (checker, method, path, body) in cases {
            let result = checker.verify(method, path, &signed, body);
            assert_eq!(result, Err(AuthError::BadSignature), "{method} {path}");
        }
        let unsigned = auth.verify("POST", "/a", &HeaderMap::new(), b"");
        assert_eq!(unsigned, Err(AuthError::Missing));
    }

    #[test]
    fn during_a_rollout_unsigned_requests_pass_and_signed_ones_are_checked() {
        let auth = Auth::new(b"secret", Duration::from_secs(30), false);
        assert_eq!(auth.verify("POST", "/a", &HeaderMap::new(), b""), Ok(()));
        let other = Auth::new(b"other", Duration::from_secs(30), false);
        let signed = headers(other.sign("POST", "/a", b""));
        assert_eq!(
            auth.verify("POST", "/a", &signed, b""),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn only_hex_digits_are_hex() {
        assert_eq!(unhex("0fA0"), Some(vec![0x0f, 0xa0]));
        for text in ["+f", "+f0a", "-1", " 1", "0g", "f"] {
            assert_eq!(unhex(text), None, "{text:?}");
        }
        let auth = Auth::new(b"secret", Duration::from_secs(30), true);
        let mut signed = headers(auth.sign("POST", "/a", b""));
        signed.insert(NONCE, HeaderValue::from_str(&"+0".repeat(16)).unwrap());
        let result = auth.verify("POST", "/a", &signed, b"");
        assert_eq!(result, Err(AuthError::Missing), "a nonce of signs");
    }

    #[test]
    fn stale_timestamps_are_refused() {
        let auth = Auth::new(b"secret", Duration::from_secs(30), true);
        let mut signed = headers(auth.sign("POST", "/a", b""));
        let old = (now_ms() - 60_000).to_string();
        signed.insert(TIMESTAMP, HeaderValue::from_str(&old).unwrap());
        assert_eq!(
            auth.verify("POST", "/a", &signed, b""),
            Err(AuthError::Stale)
        );
    }
}
