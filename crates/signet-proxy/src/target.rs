//! The request-target check (spec §3): origin-form only, before every other step.

use http::Uri;
use signet_core::ErrorCode;

use crate::refusal::Refusal;

/// The origin-form request-target (`/path?query`) exactly as received, or
/// `INVALID_REQUEST_TARGET` for absolute-form, authority-form (`CONNECT`)
/// and asterisk-form (`OPTIONS *`).
pub fn origin_form(uri: &Uri) -> Result<&str, Refusal> {
    match uri.path_and_query() {
        Some(target)
            if uri.scheme().is_none()
                && uri.authority().is_none()
                && target.as_str().starts_with('/') =>
        {
            Ok(target.as_str())
        }
        _ => Err(Refusal::new(ErrorCode::InvalidRequestTarget)),
    }
}

/// TEMPORARY (replaced by the target-links branch).
pub fn allowed_method(method: &http::Method) -> Result<(), Refusal> {
    match method.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => Ok(()),
        _ => Err(Refusal::new(ErrorCode::MethodNotAllowed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(target: &str) -> Option<String> {
        let uri: Uri = target.parse().ok()?;
        origin_form(&uri).ok().map(str::to_owned)
    }

    #[test]
    fn origin_form_passes_byte_for_byte() {
        assert_eq!(
            check("/repos/a/b?x=1&y=%2C").as_deref(),
            Some("/repos/a/b?x=1&y=%2C")
        );
        assert_eq!(check("/a/%2f/../b").as_deref(), Some("/a/%2f/../b"));
        assert_eq!(check("/search?").as_deref(), Some("/search?"));
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
}
