//! The request-target and method checks (spec §3, amendment 1): they run
//! first, before the proof is even parsed, so nothing below them ever sees
//! a target that could name another host or climb out of a path, or a
//! method the GitHub API does not use.
//!
//! The pipeline calls [`origin_form`] first, then [`allowed_method`], so a
//! `CONNECT host:443` is refused for its target form (400), not its method.

use http::{Method, Uri};
use signet_core::ErrorCode;

use crate::refusal::Refusal;

/// The methods that are forwarded, in the form of an `Allow` header value
/// for the 405 that [`allowed_method`] causes (from the one method table,
/// `crate::method`).
pub use crate::method::ALLOW_HEADER as ALLOWED_METHODS;

/// How much of a refused method goes into the log detail: the method is
/// client-controlled and may be arbitrarily long.
const METHOD_DETAIL_MAX: usize = 32;

/// The origin-form request-target (`/path?query`) exactly as received, or
/// `INVALID_REQUEST_TARGET` for absolute-form, authority-form (`CONNECT`),
/// asterisk-form (`OPTIONS *`) and for a path with a dot-segment (`.` or
/// `..`, plain or percent-encoded in any case).
///
/// The target is never normalised: what passes is what was signed and what
/// is forwarded. Dot-segments are refused rather than removed because the
/// upstream, or a server in front of it, may remove them and so reach a
/// resource other than the one a path policy allowed.
pub fn origin_form(uri: &Uri) -> Result<&str, Refusal> {
    match uri.path_and_query() {
        Some(target)
            if uri.scheme().is_none()
                && uri.authority().is_none()
                && target.as_str().starts_with('/') =>
        {
            // `path()` stops at the first `?`: the query may hold anything.
            if has_dot_segment(target.path()) {
                return Err(Refusal::new(ErrorCode::InvalidRequestTarget)
                    .with_detail("dot-segment in path"));
            }
            Ok(target.as_str())
        }
        _ => Err(Refusal::new(ErrorCode::InvalidRequestTarget)),
    }
}

/// `Ok` for the seven methods of the GitHub API (`GET HEAD POST PUT PATCH
/// DELETE OPTIONS`), otherwise `METHOD_NOT_ALLOWED`; the 405 carries
/// [`ALLOWED_METHODS`] as its `Allow` header.
///
/// Methods are case-sensitive (RFC 9110 §9.1): `get` is an extension
/// method, not `GET`, and is refused like `TRACE` (which would echo the
/// injected token back) or `CONNECT`.
pub fn allowed_method(method: &Method) -> Result<(), Refusal> {
    match crate::method::forwarded(method.as_str()) {
        Some(_) => Ok(()),
        None => {
            let shown: String = method.as_str().chars().take(METHOD_DETAIL_MAX).collect();
            Err(Refusal::new(ErrorCode::MethodNotAllowed)
                .with_detail(format!("method {shown:?} not allowed")))
        }
    }
}

/// Whether some `/`-separated segment of `path` is `.` or `..` once `%2e`
/// and `%2E` are read as `.`.
///
/// One pass over the bytes, no allocation: this runs on every request. Only
/// `/` separates segments; `%2f` is not decoded, because the spec defines
/// segments by `/` and the target is forwarded byte for byte.
fn has_dot_segment(path: &str) -> bool {
    let bytes = path.as_bytes();
    // Dots seen in the current segment, and whether it held anything else.
    let mut dots = 0usize;
    let mut only_dots = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => {
                if only_dots && matches!(dots, 1 | 2) {
                    return true;
                }
                dots = 0;
                only_dots = true;
                i += 1;
            }
            b'.' => {
                dots += 1;
                i += 1;
            }
            b'%' if is_encoded_dot(&bytes[i..]) => {
                dots += 1;
                i += 3;
            }
            _ => {
                only_dots = false;
                i += 1;
            }
        }
    }
    // The last segment has no `/` after it: `/a/..` ends in a dot-segment.
    only_dots && matches!(dots, 1 | 2)
}

/// `%2e` or `%2E` at the start of `bytes`.
fn is_encoded_dot(bytes: &[u8]) -> bool {
    matches!(bytes, [b'%', b'2', b'e' | b'E', ..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(target: &str) -> Option<String> {
        let uri: Uri = target.parse().ok()?;
        origin_form(&uri).ok().map(str::to_owned)
    }

    fn refusal_of(target: &str) -> Refusal {
        let uri: Uri = match target.parse() {
            Ok(uri) => uri,
            Err(error) => panic!("{target:?} does not parse as a URI: {error}"),
        };
        match origin_form(&uri) {
            Ok(passed) => panic!("{target:?} passed as {passed:?}"),
            Err(refusal) => refusal,
        }
    }

    fn method(name: &str) -> Method {
        match Method::from_bytes(name.as_bytes()) {
            Ok(method) => method,
            Err(error) => panic!("{name:?} is not a method: {error}"),
        }
    }

    #[test]
    fn origin_form_passes_byte_for_byte() {
        assert_eq!(
            check("/repos/a/b?x=1&y=%2C").as_deref(),
            Some("/repos/a/b?x=1&y=%2C")
        );
        assert_eq!(check("/a/%2f/b").as_deref(), Some("/a/%2f/b"));
        assert_eq!(check("/search?").as_deref(), Some("/search?"));
        assert_eq!(check("/").as_deref(), Some("/"));
        assert_eq!(
            check("//evil.example/x").as_deref(),
            Some("//evil.example/x")
        );
    }

    #[test]
    fn other_forms_are_refused() {
        assert_eq!(check("http://evil.example/repos"), None);
        assert_eq!(check("evil.example:443"), None);
        assert_eq!(check("*"), None);
    }

    #[test]
    fn plain_dot_segments_are_refused_anywhere_in_the_path() {
        for target in [
            "/.",
            "/..",
            "/./",
            "/../",
            "/repos/a/../../orgs/x",
            "/repos/./a",
            "/repos/a/.",
            "/repos/a/..",
            "/repos/a/..?page=2",
            "/repos/a/.?",
            "//..",
            "/a//../b",
            "/a/%2f/../b",
        ] {
            assert_eq!(check(target), None, "{target:?} passed");
        }
    }

    #[test]
    fn percent_encoded_dot_segments_are_refused_in_any_case() {
        for target in [
            "/%2e",
            "/%2E",
            "/%2e%2e",
            "/%2E%2E",
            "/%2E%2e",
            "/%2e%2E",
            "/.%2e",
            "/.%2E",
            "/%2e.",
            "/%2E.",
            "/repos/a/%2e%2e/%2e%2e/orgs/x",
            "/repos/%2e/a",
            "/repos/a/%2E%2e?x=1",
        ] {
            assert_eq!(check(target), None, "{target:?} passed");
        }
    }

    #[test]
    fn dots_inside_a_segment_pass() {
        for target in [
            "/v1.2",
            "/a..b",
            "/...",
            "/.a",
            "/a.",
            "/..a",
            "/%2e%2e%2e",
            "/.%2e.",
            "/%2ea",
            "/%2e%2ex",
            "/repos/o/r/contents/.github/workflows/ci.yml",
            "/repos/o/r/compare/main...feature",
            "/a/%2e%2",
            "/a/%2",
            "/a/%",
            "/a/%2d",
            "/a/%252e",
        ] {
            assert_eq!(check(target).as_deref(), Some(target), "{target:?} refused");
        }
    }

    #[test]
    fn empty_segments_are_not_dot_segments() {
        for target in ["/", "//", "/a//b", "/a/", "///"] {
            assert_eq!(check(target).as_deref(), Some(target), "{target:?} refused");
        }
    }

    #[test]
    fn dot_segments_in_the_query_pass() {
        for target in [
            "/search?q=../x",
            "/search?q=..",
            "/search?./..",
            "/search?q=%2e%2e/%2e",
            "/a?/../../b",
            "/?..",
        ] {
            assert_eq!(check(target).as_deref(), Some(target), "{target:?} refused");
        }
    }

    #[test]
    fn a_dot_segment_refusal_is_invalid_request_target_with_a_log_detail() {
        let refusal = refusal_of("/repos/a/../b");
        assert_eq!(refusal.code, ErrorCode::InvalidRequestTarget);
        assert_eq!(refusal.code.status(), 400);
        assert_eq!(refusal.detail.as_deref(), Some("dot-segment in path"));
    }

    #[test]
    fn the_seven_github_methods_are_allowed() {
        for name in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert!(allowed_method(&method(name)).is_ok(), "{name} refused");
        }
    }

    #[test]
    fn other_methods_are_405_method_not_allowed() {
        for name in [
            "TRACE",
            "CONNECT",
            "PROPFIND",
            "PROPPATCH",
            "MKCOL",
            "COPY",
            "MOVE",
            "LOCK",
            "UNLOCK",
            "SEARCH",
            "QUERY",
            "PURGE",
            "BREW",
            "X",
        ] {
            let refusal = match allowed_method(&method(name)) {
                Ok(()) => panic!("{name} allowed"),
                Err(refusal) => refusal,
            };
            assert_eq!(refusal.code, ErrorCode::MethodNotAllowed);
            assert_eq!(refusal.code.status(), 405);
            assert_eq!(
                refusal.detail.as_deref(),
                Some(format!("method {name:?} not allowed").as_str())
            );
        }
    }

    #[test]
    fn methods_are_compared_case_sensitively() {
        for name in [
            "get", "Get", "gET", "head", "post", "Put", "patch", "delete", "options",
        ] {
            assert!(allowed_method(&method(name)).is_err(), "{name} allowed");
        }
    }

    #[test]
    fn a_long_method_is_truncated_in_the_detail() {
        let long = "A".repeat(1000);
        let refusal = match allowed_method(&method(&long)) {
            Ok(()) => panic!("a 1000-byte method was allowed"),
            Err(refusal) => refusal,
        };
        let shown = "A".repeat(METHOD_DETAIL_MAX);
        assert_eq!(
            refusal.detail.as_deref(),
            Some(format!("method {shown:?} not allowed").as_str())
        );
    }

    #[test]
    fn the_allow_header_lists_exactly_the_allowed_methods() {
        for name in ALLOWED_METHODS.split(", ") {
            assert!(allowed_method(&method(name)).is_ok(), "{name} refused");
        }
        assert_eq!(ALLOWED_METHODS.split(", ").count(), 7);
        assert!(http::HeaderValue::from_str(ALLOWED_METHODS).is_ok());
    }

    /// The slow, obvious reading of the spec that the one-pass scanner must
    /// agree with.
    fn oracle_has_dot_segment(path: &str) -> bool {
        path.split('/').any(|segment| {
            let decoded = segment.replace("%2e", ".").replace("%2E", ".");
            decoded == "." || decoded == ".."
        })
    }

    /// Segments biased towards dots and encoded dots so that dot-segments
    /// and near misses both come up often.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            "(\\.|%2[eE]){1,4}",
            "(\\.|%2[eE]|%2|%|e|E|2|a){1,5}",
            "[a-zA-Z0-9._%~-]{1,8}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 1..6)
            .prop_map(|segments| format!("/{}", segments.join("/")))
    }

    proptest! {
        #[test]
        fn a_path_is_refused_iff_a_decoded_segment_is_dot_or_dot_dot(path in path()) {
            let uri: Uri = path.parse().map_err(|e| TestCaseError::fail(format!("{path:?}: {e}")))?;
            let refused = origin_form(&uri).is_err();
            prop_assert_eq!(refused, oracle_has_dot_segment(&path), "path {:?}", path);
        }

        #[test]
        fn the_query_never_changes_the_verdict(
            path in path(),
            query in "[a-zA-Z0-9._%~/=&?-]{0,16}",
        ) {
            let target = format!("{path}?{query}");
            let uri: Uri = target.parse().map_err(|e| TestCaseError::fail(format!("{target:?}: {e}")))?;
            let refused = origin_form(&uri).is_err();
            prop_assert_eq!(refused, oracle_has_dot_segment(&path), "target {:?}", target);
            if !refused {
                prop_assert_eq!(origin_form(&uri).ok(), Some(target.as_str()));
            }
        }
    }
}
