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

/// A Redis URL, which may carry a password (`redis://:pw@host/0`). Its
/// `Debug` and `Display` show the scheme and host only.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Wraps a URL as given (checked when the store is built).
    pub fn new(url: impl Into<String>) -> Self {
        RedisUrl(url.into())
    }

    /// The whole URL, for the Redis client only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The scheme and `host:port`, never the credentials: everything up to
    /// the last `@` is user information, even if it holds a raw `/`.
    fn shown(&self) -> (&str, &str) {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("redis", ""));
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        (scheme, host.split(['/', '?']).next().unwrap_or_default())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, host) = self.shown();
        write!(f, "{scheme}://{host}")
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
    fn a_redis_password_never_prints() {
        let url = RedisUrl::new("redis://:hunter2@redis.internal:6380/2");
        assert_eq!(url.to_string(), "redis://redis.internal:6380");
        assert_eq!(format!("{url:?}"), "RedisUrl(redis://redis.internal:6380)");
        let url = RedisUrl::new("rediss://user:p%40ss@10.0.0.1");
        assert_eq!(url.to_string(), "rediss://10.0.0.1");
        let url = RedisUrl::new("redis://:raw/slash@host/0");
        assert_eq!(url.to_string(), "redis://host");
    }

    #[test]
    fn tokens_that_cannot_be_a_header_are_refused() {
        assert!(GitHubToken::new("has space").is_none());
        assert!(GitHubToken::new("new\nline").is_none());
        assert!(GitHubToken::new("").is_none());
    }
}
