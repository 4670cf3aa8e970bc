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
    // Most paths hold no escape: copied, not decoded and checked again.
    if !path.contains('%') {
        return path.to_owned();
    }
    String::from_utf8(unescape(path)).unwrap_or_else(|_| path.to_owned())
}

/// The bytes of percent-encoded `text`; an invalid escape is kept as it is.
pub fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        out.extend_from_slice(&rest[..at]);
        match rest.get(at + 1..at + 3).and_then(hex_byte) {
            Some(byte) => {
                out.push(byte);
                rest = &rest[at + 3..];
            }
            None => {
                out.push(b'%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The byte two hex digits spell.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    Some((digit(digits[0])? << 4 | digit(digits[1])?) as u8)
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
        // Two hex digits, nothing else: `from_str_radix` would have read `+5` as 5.
        assert_eq!(unescape("%+5%-1%%41%"), b"%+5%-1%A%");
        assert_eq!(unescape("%e9t%C3%A9"), b"\xe9t\xc3\xa9");
    }
}
