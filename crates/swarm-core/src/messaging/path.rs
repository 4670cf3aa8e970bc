//! Topic paths on the wire: percent-encoding on the way out, decoding on the way in,
//! so a topic such as `a b` or `é` reaches the handler registered under that name.

/// Encodes a topic path for a request URI; `/` stays a separator.
pub fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    escape_into(&mut out, path, |b| {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
    });
    out
}

/// Appends `text`, its bytes that `keep` refuses percent-encoded.
pub fn escape_into(out: &mut String, text: &str, keep: impl Fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.extend([
                '%',
                HEX[usize::from(b >> 4)] as char,
                HEX[usize::from(b & 15)] as char,
            ]);
        }
    }
}

/// Decodes a request path; an invalid escape is kept as it is, as 0.5.1 kept the raw path.
pub fn decode(path: &str) -> String {
    String::from_utf8(unescape(path)).unwrap_or_else(|_| path.to_owned())
}

/// The bytes of percent-encoded `text`; an invalid escape is kept as it is.
pub fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_topics() {
        for topic in ["a", "a/b/c", "a b", "é/ü", "100%", "q?x#y"] {
            let encoded = encode(topic);
            assert!(encoded.is_ascii() && !encoded[1..].contains(['?', '#', ' ']));
            assert_eq!(decode(&encoded[1..]), topic);
        }
    }

    #[test]
    fn invalid_escapes_stay_raw() {
        assert_eq!(decode("a%zz%4"), "a%zz%4");
        assert_eq!(decode("%ff"), "%ff");
    }
}
