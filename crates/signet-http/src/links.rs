//! Keeping pagination on the proxy (spec §7, optional): absolute URLs in the
//! upstream's `Link` and `Location` headers that point at the upstream base
//! are rewritten to point at the proxy's public URL (`--public-url`), so a
//! client that follows `rel="next"` keeps going through the proxy. URLs on
//! other hosts are left alone.

use std::borrow::Cow;

use http::header::{Entry, HeaderName, LINK, LOCATION};
use http::{HeaderMap, HeaderValue};

/// Rewrites upstream URLs into proxy URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRewriter {
    /// `scheme://authority/base-path` of the upstream, no trailing `/`.
    upstream: String,
    /// `scheme://authority/base-path` of the proxy, no trailing `/`.
    public: String,
}

/// Where the [`LinkRewriter::rewrite_link`] scanner is in a `Link` value.
#[derive(Debug, Clone, Copy)]
enum Scan {
    /// Before a link-value: only here does `<` open a target.
    LinkStart,
    /// After a target (or in a link-value that lacks one), among params.
    Params,
    /// Inside a quoted-string parameter value.
    Quoted,
    /// Right after a `\` inside a quoted-string.
    Escaped,
}

impl LinkRewriter {
    /// Maps URLs under `upstream` to the same path under `public`.
    pub fn new(upstream: &str, public: &str) -> Self {
        LinkRewriter {
            upstream: upstream.trim_end_matches('/').to_owned(),
            public: public.trim_end_matches('/').to_owned(),
        }
    }

    /// Rewrites every `Link` and every `Location` value of a response in
    /// place, keeping all values and their order.
    ///
    /// Only URLs under the upstream base move; values on other hosts,
    /// values that are not visible ASCII and values whose rewrite would not
    /// be a valid header are left exactly as the upstream sent them.
    pub fn rewrite(&self, headers: &mut HeaderMap) {
        self.rewrite_values(headers, LOCATION, Self::rewrite_location);
        self.rewrite_values(headers, LINK, Self::rewrite_link);
    }

    /// Applies `rewrite` to each value of `name`, replacing only the values
    /// it changed.
    fn rewrite_values(
        &self,
        headers: &mut HeaderMap,
        name: HeaderName,
        rewrite: for<'a> fn(&Self, &'a str) -> Cow<'a, str>,
    ) {
        // Most responses carry neither header; `entry` may reserve room in
        // the map, so look first.
        if !headers.contains_key(&name) {
            return;
        }
        if let Entry::Occupied(mut entry) = headers.entry(name) {
            for value in entry.iter_mut() {
                // `to_str` fails on obs-text: such a value passes through.
                let Ok(text) = value.to_str() else {
                    continue;
                };
                let Cow::Owned(rewritten) = rewrite(self, text) else {
                    continue;
                };
                if let Ok(rewritten) = HeaderValue::from_str(&rewritten) {
                    *value = rewritten;
                }
            }
        }
    }

    /// What follows the upstream base in `url`, when `url` is under it.
    fn under_upstream<'a>(&self, url: &'a str) -> Option<&'a str> {
        let rest = url.strip_prefix(self.upstream.as_str())?;
        // Only a whole path segment matches: `/api/v3` must not match
        // `/api/v30`, nor `https://api.github.com` match
        // `https://api.github.com.evil.example` or `…:8443`.
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            Some(rest)
        } else {
            None
        }
    }

    /// A `Location` value (one URI-reference) moved under the public base.
    fn rewrite_location<'a>(&self, url: &'a str) -> Cow<'a, str> {
        match self.under_upstream(url) {
            Some(rest) => Cow::Owned(format!("{}{rest}", self.public)),
            None => Cow::Borrowed(url),
        }
    }

    /// Rewrites the target `<URI-Reference>` of each link-value of a `Link`
    /// value (RFC 8288 §3), and nothing else.
    ///
    /// A `<…>` inside a parameter (`title="<https://…>"`) is not a target:
    /// the scanner tracks quoted-strings, with their `\` escapes, so a `,`
    /// or `<` inside one belongs to the string. Input that breaks off (an
    /// unterminated `<` or quote) passes through unchanged from that point.
    /// Borrows `value` unless some target was rewritten.
    fn rewrite_link<'a>(&self, value: &'a str) -> Cow<'a, str> {
        let bytes = value.as_bytes();
        let mut out: Option<String> = None;
        // `value[..copied]` is already in `out`.
        let mut copied = 0;
        let mut scan = Scan::LinkStart;
        let mut i = 0;
        // Every index this loop slices at is that of an ASCII byte (`<`,
        // `>`), so each slice lies on a char boundary.
        while i < bytes.len() {
            scan = match (scan, bytes[i]) {
                (Scan::LinkStart, b' ' | b'\t' | b',') => Scan::LinkStart,
                (Scan::LinkStart, b'<') => {
                    let start = i + 1;
                    let Some(len) = value[start..].find('>') else {
                        break;
                    };
                    let end = start + len;
                    if let Some(rest) = self.under_upstream(&value[start..end]) {
                        let out = out.get_or_insert_with(|| {
                            String::with_capacity(value.len() + self.public.len())
                        });
                        out.push_str(&value[copied..start]);
                        out.push_str(&self.public);
                        out.push_str(rest);
                        copied = end;
                    }
                    // Continue after the `>`.
                    i = end;
                    Scan::Params
                }
                (Scan::LinkStart | Scan::Params, b'"') => Scan::Quoted,
                (Scan::Params, b',') => Scan::LinkStart,
                // A link-value without a target is malformed; its params are
                // still scanned so the next `,` is found correctly.
                (Scan::LinkStart | Scan::Params, _) => Scan::Params,
                (Scan::Quoted, b'\\') => Scan::Escaped,
                (Scan::Quoted, b'"') => Scan::Params,
                (Scan::Quoted, _) | (Scan::Escaped, _) => Scan::Quoted,
            };
            i += 1;
        }
        match out {
            None => Cow::Borrowed(value),
            Some(mut out) => {
                out.push_str(&value[copied..]);
                Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rewriter() -> LinkRewriter {
        LinkRewriter::new("https://api.github.com", "https://signet.internal:8443/")
    }

    fn link(value: &str) -> String {
        rewriter().rewrite_link(value).into_owned()
    }

    fn values(headers: &HeaderMap, name: HeaderName) -> Vec<&[u8]> {
        headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
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
            ghe.rewrite_location("https://ghe.example.com/api/v3/repos"),
            "http://proxy/repos"
        );
        assert_eq!(
            ghe.rewrite_location("https://ghe.example.com/api/v3?x=1"),
            "http://proxy?x=1"
        );
        assert_eq!(
            ghe.rewrite_location("https://ghe.example.com/api/v3"),
            "http://proxy"
        );
        for untouched in [
            "https://ghe.example.com/api/v30/repos",
            "https://ghe.example.com/api/v3.evil/repos",
            "https://ghe.example.com/api/repos",
            "https://codeload.github.com/o/r/zip",
            "/api/v3/repos",
        ] {
            assert!(
                matches!(ghe.rewrite_location(untouched), Cow::Borrowed(u) if u == untouched),
                "{untouched:?} was rewritten"
            );
        }
        for untouched in [
            "https://api.github.com.evil.example/x",
            "https://api.github.com:8443/x",
            "https://api.github.com@evil.example/x",
            "http://api.github.com/x",
        ] {
            assert_eq!(rewriter().rewrite_location(untouched), untouched);
        }
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
    fn every_location_value_is_rewritten_and_all_are_kept_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(
            LOCATION,
            HeaderValue::from_static("https://api.github.com/repositories/1"),
        );
        headers.append(
            LOCATION,
            HeaderValue::from_static("https://elsewhere.example/2"),
        );
        headers.append(
            LOCATION,
            HeaderValue::from_static("https://api.github.com/repositories/3"),
        );
        rewriter().rewrite(&mut headers);
        assert_eq!(
            values(&headers, LOCATION),
            [
                &b"https://signet.internal:8443/repositories/1"[..],
                b"https://elsewhere.example/2",
                b"https://signet.internal:8443/repositories/3",
            ]
        );
    }

    #[test]
    fn every_link_value_is_rewritten_and_all_are_kept_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(
            LINK,
            HeaderValue::from_static(r#"<https://api.github.com/a?page=2>; rel="next""#),
        );
        headers.append(
            LINK,
            HeaderValue::from_static(r#"<https://x.example/b>; rel="up""#),
        );
        headers.append(
            LINK,
            HeaderValue::from_static(r#"<https://api.github.com/a?page=9>; rel="last""#),
        );
        rewriter().rewrite(&mut headers);
        assert_eq!(
            values(&headers, LINK),
            [
                &br#"<https://signet.internal:8443/a?page=2>; rel="next""#[..],
                br#"<https://x.example/b>; rel="up""#,
                br#"<https://signet.internal:8443/a?page=9>; rel="last""#,
            ]
        );
    }

    #[test]
    fn a_url_inside_a_quoted_parameter_is_not_a_target() {
        assert_eq!(
            link(
                r#"<https://api.github.com/x?page=2>; rel="next"; title="<https://api.github.com/evil>""#
            ),
            r#"<https://signet.internal:8443/x?page=2>; rel="next"; title="<https://api.github.com/evil>""#
        );
    }

    #[test]
    fn an_escaped_quote_does_not_end_a_quoted_parameter() {
        assert_eq!(
            link(
                r#"<https://api.github.com/a>; title="say \"hi\", <https://api.github.com/evil>", <https://api.github.com/b>; rel="next""#
            ),
            r#"<https://signet.internal:8443/a>; title="say \"hi\", <https://api.github.com/evil>", <https://signet.internal:8443/b>; rel="next""#
        );
        // An escaped backslash does end the string at the quote after it.
        assert_eq!(
            link(r#"<https://x.example/a>; title="\\", <https://api.github.com/b>"#),
            r#"<https://x.example/a>; title="\\", <https://signet.internal:8443/b>"#
        );
    }

    #[test]
    fn a_comma_inside_a_quoted_parameter_does_not_start_a_link_value() {
        assert_eq!(
            link(
                r#"<https://x.example/a>; title="a, <https://api.github.com/evil>; rel=next", <https://api.github.com/b>; rel="next""#
            ),
            r#"<https://x.example/a>; title="a, <https://api.github.com/evil>; rel=next", <https://signet.internal:8443/b>; rel="next""#
        );
    }

    #[test]
    fn a_bracket_outside_the_target_position_is_not_a_target() {
        assert_eq!(
            link("<https://x.example/a>; rel=next <https://api.github.com/evil>"),
            "<https://x.example/a>; rel=next <https://api.github.com/evil>"
        );
    }

    #[test]
    fn whitespace_and_empty_list_elements_before_a_target_are_kept() {
        assert_eq!(
            link(" , \t<https://api.github.com/a>,,<https://api.github.com/b>"),
            " , \t<https://signet.internal:8443/a>,,<https://signet.internal:8443/b>"
        );
    }

    #[test]
    fn a_malformed_link_is_passed_through() {
        for malformed in [
            "<https://api.github.com/x",
            "no links here",
            "",
            ">",
            r#"rel="next", "#,
            r#"<https://x.example/a>; title="unterminated, <https://api.github.com/b>"#,
            r#"<https://x.example/a>; title="ends in an escape\"#,
        ] {
            assert!(
                matches!(rewriter().rewrite_link(malformed), Cow::Borrowed(v) if v == malformed),
                "{malformed:?} was changed"
            );
        }
        // What came before the break is still rewritten.
        assert_eq!(
            link("<https://api.github.com/a>, <https://api.github.com/b"),
            "<https://signet.internal:8443/a>, <https://api.github.com/b"
        );
        assert_eq!(
            link(r#"<https://api.github.com/a>; title="x, <https://api.github.com/b>"#),
            r#"<https://signet.internal:8443/a>; title="x, <https://api.github.com/b>"#
        );
    }

    #[test]
    fn a_link_value_without_a_target_does_not_hide_the_next_one() {
        assert_eq!(
            link(r#"rel="next", <https://api.github.com/b>"#),
            r#"rel="next", <https://signet.internal:8443/b>"#
        );
    }

    #[test]
    fn non_utf8_values_are_passed_through() {
        let raw = b"<https://api.github.com/\xff>; rel=\"next\"";
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_bytes(raw).unwrap_or_else(|e| panic!("{e}")),
        );
        headers.insert(
            LOCATION,
            HeaderValue::from_bytes(b"https://api.github.com/\xfe")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        rewriter().rewrite(&mut headers);
        assert_eq!(values(&headers, LINK), [&raw[..]]);
        assert_eq!(
            values(&headers, LOCATION),
            [&b"https://api.github.com/\xfe"[..]]
        );
    }

    #[test]
    fn a_value_with_nothing_to_rewrite_is_borrowed() {
        let value = r#"<https://x.example/a?page=2>; rel="next""#;
        assert!(matches!(rewriter().rewrite_link(value), Cow::Borrowed(_)));
    }

    #[test]
    fn a_response_without_link_or_location_is_untouched() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let before = headers.clone();
        rewriter().rewrite(&mut headers);
        assert_eq!(headers, before);
    }

    /// A parameter value: a token, or a quoted-string whose content may hold
    /// upstream URLs, `<`, `,`, `;` and (escaped) quotes and backslashes.
    fn param_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}",
            prop::collection::vec(
                prop_oneof![
                    Just("<https://api.github.com/evil>".to_owned()),
                    Just(", <https://api.github.com/evil>; rel=next".to_owned()),
                    Just("\\\"".to_owned()),
                    Just("\\\\".to_owned()),
                    "[ -!#-\\[\\]-~]{0,6}",
                ],
                0..4
            )
            .prop_map(|parts| format!("\"{}\"", parts.concat())),
        ]
    }

    /// A link-value whose target is under the upstream or not, as
    /// `(target, params)`; the target's text after the base is `path`.
    fn link_value() -> impl Strategy<Value = (bool, String, String)> {
        (
            any::<bool>(),
            "(/[a-z0-9]{0,4}){0,3}(\\?[a-z]=[0-9]{1,2})?",
            prop::collection::vec(("[a-z]{1,5}", param_value()), 0..3),
        )
            .prop_map(|(upstream, path, params)| {
                let params: String = params
                    .iter()
                    .map(|(name, value)| format!("; {name}={value}"))
                    .collect();
                (upstream, path, params)
            })
    }

    fn format_links(links: &[(bool, String, String)], rewritten: bool) -> String {
        links
            .iter()
            .map(|(upstream, path, params)| {
                let base = match (upstream, rewritten) {
                    (true, true) => "https://signet.internal:8443",
                    (true, false) => "https://api.github.com",
                    (false, _) => "https://x.example",
                };
                format!("<{base}{path}>{params}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    proptest! {
        #[test]
        fn rewrite_link_never_panics_and_leaves_values_without_brackets_alone(
            value in any::<String>(),
        ) {
            let rewritten = rewriter().rewrite_link(&value);
            if !value.contains('<') {
                prop_assert!(matches!(rewritten, Cow::Borrowed(v) if v == value));
            }
        }

        #[test]
        fn rewrite_link_never_panics_on_link_like_text(
            value in "[<>\",;\\\\ a-z/:.=]{0,40}|(<https://api\\.github\\.com[/?#a-z\"\\\\,;<>]{0,10}){0,4}",
        ) {
            let rewritten = rewriter().rewrite_link(&value);
            if !value.contains('<') {
                prop_assert_eq!(rewritten.as_ref(), value.as_str());
            }
        }

        #[test]
        fn only_targets_of_well_formed_link_values_are_rewritten(
            links in prop::collection::vec(link_value(), 1..4),
        ) {
            let value = format_links(&links, false);
            let expected = format_links(&links, true);
            let rewriter = rewriter();
            let rewritten = rewriter.rewrite_link(&value);
            prop_assert_eq!(rewritten.as_ref(), expected.as_str());
        }

        #[test]
        fn a_rewriter_onto_the_same_base_changes_nothing(value in any::<String>()) {
            let identity = LinkRewriter::new("https://api.github.com", "https://api.github.com");
            let rewritten = identity.rewrite_link(&value);
            prop_assert_eq!(rewritten.as_ref(), value.as_str());
        }
    }
}
