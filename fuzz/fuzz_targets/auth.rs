//! Signature checks on any header values, method, path, content type and body: never a
//! panic; a request passes only with the signer's own headers (once: a replay is refused),
//! or unsigned when signatures are not required.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use hyper::header::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use swarm_core::messaging::auth::{AuthError, Signed, NONCE, SIGNATURE, TIMESTAMP};
use swarm_core::messaging::Auth;

/// What a request carries in one signature header.
#[derive(Arbitrary, Debug)]
enum Header<'a> {
    Absent,
    /// Any bytes (dropped if they are not a valid header value).
    Raw(&'a [u8]),
    /// The value the signer gives this request.
    Signed,
}

#[derive(Arbitrary, Debug)]
struct Request<'a> {
    required: bool,
    method: &'a str,
    path: &'a str,
    content_type: &'a str,
    port: u16,
    body: &'a [u8],
    timestamp: Header<'a>,
    nonce: Header<'a>,
    signature: Header<'a>,
}

fuzz_target!(|request: Request<'_>| {
    let auth = Auth::new(b"fuzz", Duration::from_secs(30), request.required);
    let signed_request = Signed {
        method: request.method,
        path: request.path,
        to: std::net::SocketAddr::from(([10, 0, 0, 1], request.port)),
        content_type: request.content_type,
        body: request.body,
    };
    let signed: HeaderMap = auth.sign(&signed_request).into_iter().collect();

    let mut headers = HeaderMap::new();
    for (name, header) in [
        (TIMESTAMP, &request.timestamp),
        (NONCE, &request.nonce),
        (SIGNATURE, &request.signature),
    ] {
        let value = match header {
            Header::Absent => None,
            Header::Raw(bytes) => HeaderValue::from_bytes(bytes).ok(),
            Header::Signed => signed.get(&name).cloned(),
        };
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }

    let result = auth.verify(&signed_request, &headers);
    if headers.is_empty() {
        let expected = if request.required {
            Err(AuthError::Missing)
        } else {
            Ok(())
        };
        assert_eq!(result, expected);
    } else if headers == signed {
        assert_eq!(result, Ok(()));
        let replay = auth.verify(&signed_request, &headers);
        assert_eq!(replay, Err(AuthError::Replayed));
    } else {
        assert_ne!(result, Ok(()), "{headers:?} passed");
    }
});
