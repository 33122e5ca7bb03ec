//! The shared GitHub token, kept out of every log line, error and `Debug` print.

use std::fmt;

use http::HeaderValue;

const BEARER: &str = "Bearer ";

/// The shared GitHub token. Its `Debug` and `Display` print `[redacted]`; the
/// only way out is [`GitHubToken::authorization`], a header value marked
/// sensitive so HTTP tooling never prints it either.
#[derive(Clone)]
pub struct GitHubToken {
    authorization: HeaderValue,
}

impl GitHubToken {
    /// Wraps a token; `None` if it cannot travel in an HTTP header
    /// (whitespace, control or non-ASCII characters).
    pub fn new(token: &str) -> Option<Self> {
        if token.is_empty() || !token.bytes().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut authorization = HeaderValue::from_str(&format!("{BEARER}{token}")).ok()?;
        authorization.set_sensitive(true);
        Some(GitHubToken { authorization })
    }

    /// The token's bytes, to recognise it where it must never appear.
    pub(crate) fn token_bytes(&self) -> &[u8] {
        self.authorization
            .as_bytes()
            .get(BEARER.len()..)
            .unwrap_or_default()
    }

    /// The `Authorization: Bearer …` value sent upstream.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }
}

impl fmt::Debug for GitHubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitHubToken([redacted])")
    }
}

impl fmt::Display for GitHubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_prints() {
        let token = GitHubToken::new("ghs_supersecret")
            .map(|t| (format!("{t:?} {t}"), format!("{:?}", t.authorization())));
        let (plain, header) = token.unwrap_or_default();
        assert!(!plain.contains("supersecret"), "{plain}");
        assert!(!header.contains("supersecret"), "{header}");
    }

    #[test]
    fn tokens_that_cannot_be_a_header_are_refused() {
        assert!(GitHubToken::new("has space").is_none());
        assert!(GitHubToken::new("new\nline").is_none());
        assert!(GitHubToken::new("").is_none());
    }
}
