//! Keeping pagination on the proxy (spec §7, optional): absolute URLs in the
//! upstream's `Link` and `Location` headers that point at the upstream base
//! are rewritten to point at the proxy's public URL (`--public-url`), so a
//! client that follows `rel="next"` keeps going through the proxy. URLs on
//! other hosts are left alone.

use http::header::{LINK, LOCATION};
use http::{HeaderMap, HeaderValue};

/// Rewrites upstream URLs into proxy URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRewriter {
    /// `scheme://authority/base-path` of the upstream, no trailing `/`.
    upstream: String,
    /// `scheme://authority/base-path` of the proxy, no trailing `/`.
    public: String,
}

impl LinkRewriter {
    /// Maps URLs under `upstream` to the same path under `public`.
    pub fn new(upstream: &str, public: &str) -> Self {
        LinkRewriter {
            upstream: upstream.trim_end_matches('/').to_owned(),
            public: public.trim_end_matches('/').to_owned(),
        }
    }

    /// Rewrites the `Link` and `Location` headers of a response in place.
    pub fn rewrite(&self, headers: &mut HeaderMap) {
        if let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok()) {
            if let Some(rewritten) = self.rewrite_url(location) {
                if let Ok(value) = HeaderValue::from_str(&rewritten) {
                    headers.insert(LOCATION, value);
                }
            }
        }
        let links: Vec<HeaderValue> = headers
            .get_all(LINK)
            .iter()
            .map(|value| {
                value
                    .to_str()
                    .ok()
                    .map(|text| self.rewrite_link(text))
                    .and_then(|text| HeaderValue::from_str(&text).ok())
                    .unwrap_or_else(|| value.clone())
            })
            .collect();
        if !links.is_empty() {
            headers.remove(LINK);
            for link in links {
                headers.append(LINK, link);
            }
        }
    }

    /// `url` under the upstream base, moved under the public base.
    fn rewrite_url(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix(&self.upstream)?;
        // Only a whole path segment matches: `/api/v3` must not match `/api/v30`.
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            Some(format!("{}{rest}", self.public))
        } else {
            None
        }
    }

    /// Rewrites every `<url>` of a `Link` value (RFC 8288).
    fn rewrite_link(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let url = &rest[open + 1..open + close];
            out.push_str(&rest[..=open]);
            match self.rewrite_url(url) {
                Some(rewritten) => out.push_str(&rewritten),
                None => out.push_str(url),
            }
            out.push('>');
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter() -> LinkRewriter {
        LinkRewriter::new("https://api.github.com", "https://signet.internal:8443/")
    }

    #[test]
    fn pagination_links_point_at_the_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(
                r#"<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=9>; rel="last""#,
            ),
        );
        rewriter().rewrite(&mut headers);
        assert_eq!(
            headers[LINK],
            r#"<https://signet.internal:8443/repositories/1/issues?page=2>; rel="next", <https://signet.internal:8443/repositories/1/issues?page=9>; rel="last""#
        );
    }

    #[test]
    fn other_hosts_and_partial_matches_are_left_alone() {
        let ghe = LinkRewriter::new("https://ghe.example.com/api/v3/", "http://proxy");
        assert_eq!(
            ghe.rewrite_url("https://ghe.example.com/api/v3/repos")
                .as_deref(),
            Some("http://proxy/repos")
        );
        assert_eq!(
            ghe.rewrite_url("https://ghe.example.com/api/v30/repos"),
            None
        );
        assert_eq!(ghe.rewrite_url("https://codeload.github.com/o/r/zip"), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            LOCATION,
            HeaderValue::from_static("https://objects.githubusercontent.com/x"),
        );
        rewriter().rewrite(&mut headers);
        assert_eq!(headers[LOCATION], "https://objects.githubusercontent.com/x");
    }

    #[test]
    fn a_redirect_to_the_upstream_stays_on_the_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LOCATION,
            HeaderValue::from_static("https://api.github.com/repositories/42"),
        );
        rewriter().rewrite(&mut headers);
        assert_eq!(
            headers[LOCATION],
            "https://signet.internal:8443/repositories/42"
        );
    }

    #[test]
    fn a_malformed_link_is_passed_through() {
        assert_eq!(
            rewriter().rewrite_link("<https://api.github.com/x"),
            "<https://api.github.com/x"
        );
        assert_eq!(rewriter().rewrite_link("no links here"), "no links here");
    }
}
