//! The seven methods the proxy forwards (the GitHub API's), in one table:
//! the method check, the `Allow` header of its 405, the keys file's `allow`
//! rules and the metrics' method label all read it.

/// The methods that are forwarded. Methods are case-sensitive (RFC 9110
/// §9.1): `get` is not `GET`.
pub const FORWARDED: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The forwarded methods as an `Allow` header value, for the 405 of any other
/// method (a unit test keeps it in step with the table).
pub const ALLOW_HEADER: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// `method`'s entry in [`FORWARDED`], if it is one of them.
pub fn forwarded(method: &str) -> Option<&'static str> {
    FORWARDED.iter().copied().find(|m| *m == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_header_is_the_table() {
        assert_eq!(ALLOW_HEADER, FORWARDED.join(", "));
        assert!(http::HeaderValue::from_str(ALLOW_HEADER).is_ok());
        assert_eq!(forwarded("PATCH"), Some("PATCH"));
        assert_eq!(forwarded("patch"), None);
        assert_eq!(forwarded("TRACE"), None);
    }
}
