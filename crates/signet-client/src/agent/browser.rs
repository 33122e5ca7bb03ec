//! Requests a web browser makes for a page are refused, and no response
//! tells a browser it may show its answer to a page.
//!
//! The agent acts with the user's key and serves no web page, so no
//! browser request is the user's tool at work: without this, any page the
//! user visits could `fetch("http://127.0.0.1:7180/user/repos")` and read
//! the answer (GitHub sends `Access-Control-Allow-Origin: *`), or send a
//! "simple" `POST` with `Content-Type: text/plain`, which needs no
//! preflight and which GitHub reads as JSON all the same. The `Host` check
//! (see [`route`](super::route)) stops DNS rebinding only; a page that
//! names `127.0.0.1` sends the right `Host`.
//!
//! Browsers mark what a page sends, and a page cannot unset the marks:
//!
//! * `Origin` on every CORS request, every request that is not a `GET` or
//!   `HEAD`, and every preflight. Any value is refused: `null` (sandboxed
//!   frames, `file:` pages) and the agent's own origin too, as the agent
//!   has no pages of its own.
//! * `Sec-Fetch-Site` on everything, `none` only for what the user started
//!   (the address bar, a bookmark): anything else is refused.
//! * `Access-Control-Request-*` on a CORS preflight, which the agent
//!   answers itself with the same refusal, never forwarded.
//!
//! `Sec-Fetch-Mode` alone is no mark: Node's `fetch` (undici, under
//! octokit) sends `Sec-Fetch-Mode: cors` on every request.
//!
//! The check runs first, before routing, reading the body or signing, so a
//! page's request costs the agent nothing and is never signed.

use http::HeaderMap;

use super::error::AgentError;

/// The only `Sec-Fetch-Site` a request the agent forwards may carry: the
/// user, not a page, started it.
const USER_STARTED: &[u8] = b"none";

/// How much of the value that gave a browser away goes into the agent's log.
const LOGGED_VALUE_CHARS: usize = 64;

/// Refuses a request a browser made: one with an `Origin`, a
/// `Sec-Fetch-Site` other than `none`, or a preflight's
/// `Access-Control-Request-*` header.
pub(super) fn refuse_browsers(headers: &HeaderMap) -> Result<(), AgentError> {
    for (name, value) in headers {
        let name = name.as_str();
        let from_a_browser = name == "origin"
            || (name == "sec-fetch-site" && value.as_bytes() != USER_STARTED)
            || name.starts_with("access-control-request-");
        if from_a_browser {
            let value = String::from_utf8_lossy(value.as_bytes());
            let value: String = value.chars().take(LOGGED_VALUE_CHARS).collect();
            return Err(AgentError::BrowserRequest(format!("{name}: {value:?}")));
        }
    }
    Ok(())
}

/// Removes every `Access-Control-*` header (GitHub's
/// `Access-Control-Allow-Origin: *` and `-Expose-Headers`): without them a
/// browser hands a cross-origin page nothing from the agent, should a
/// request ever get past [`refuse_browsers`].
pub(super) fn drop_access_control(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn refused(pairs: &[(&'static str, &'static str)]) -> bool {
        matches!(
            refuse_browsers(&headers(pairs)),
            Err(AgentError::BrowserRequest(_))
        )
    }

    #[test]
    fn what_tools_send_is_not_a_browsers_mark() {
        for pairs in [
            &[][..],
            // curl, gh, PyGithub.
            &[("user-agent", "curl/8.5.0"), ("accept", "*/*")][..],
            // Node's fetch, under octokit.
            &[("sec-fetch-mode", "cors"), ("accept-language", "*")][..],
            // The user typed the agent's URL into the address bar.
            &[
                ("sec-fetch-site", "none"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
                ("sec-fetch-user", "?1"),
            ][..],
            &[("access-control-allow-origin", "*")][..],
        ] {
            assert!(refuse_browsers(&headers(pairs)).is_ok(), "{pairs:?}");
        }
    }

    #[test]
    fn any_origin_is_a_browsers_request_null_and_empty_included() {
        for origin in [
            "https://attacker.example",
            "null",
            "",
            "http://127.0.0.1:7180",
        ] {
            assert!(refused(&[("origin", origin)]), "{origin:?}");
        }
        assert!(refused(&[("sec-fetch-site", "none"), ("origin", "null")]));
    }

    #[test]
    fn a_sec_fetch_site_other_than_none_is_a_browsers_request() {
        for site in [
            "cross-site",
            "same-site",
            "same-origin",
            "None",
            "none,none",
            "",
        ] {
            assert!(refused(&[("sec-fetch-site", site)]), "{site:?}");
        }
        assert!(
            refused(&[("sec-fetch-site", "none"), ("sec-fetch-site", "cross-site")]),
            "every value counts, not the first"
        );
    }

    #[test]
    fn a_preflights_request_headers_are_a_browsers_even_without_an_origin() {
        for name in [
            "access-control-request-method",
            "access-control-request-headers",
            "access-control-request-private-network",
        ] {
            assert!(refused(&[(name, "POST")]), "{name}");
        }
    }

    #[test]
    fn the_log_detail_names_the_mark_and_bounds_the_value() {
        let long = "x".repeat(10_000);
        let mut map = HeaderMap::new();
        map.insert(
            "origin",
            HeaderValue::from_str(&long).unwrap_or(HeaderValue::from_static("x")),
        );
        let detail = refuse_browsers(&map).err().map(|e| e.to_string());
        let detail = detail.unwrap_or_default();
        assert!(detail.contains("origin: \"xxx"), "{detail}");
        assert!(detail.len() < 200, "{}", detail.len());
    }

    #[test]
    fn every_access_control_header_is_dropped_and_nothing_else() {
        let mut map = headers(&[
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", "ETag, Link"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-origin", "https://attacker.example"),
            ("vary", "Accept, Origin"),
            ("content-type", "application/json"),
            ("timing-allow-origin", "https://github.com"),
        ]);
        drop_access_control(&mut map);
        let mut left: Vec<&str> = map.keys().map(|name| name.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "timing-allow-origin", "vary"]);
    }
}
