//! Error messages with their causes: a transport error's own text is often only
//! "client error (Connect)", and the reason (refused, an unknown certificate issuer)
//! is further down its `source()` chain.

/// `error` and each of its sources, joined with `: `, repeats dropped.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_causes_follow_the_error() {
        let error = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            with_causes(&error),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }
}
