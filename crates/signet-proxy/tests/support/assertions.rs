//! Assertions shared by the topics: a refusal exactly as spec §6 has it,
//! and the shared token in no bytes a client sees.

use signet_core::ErrorCode;

use super::wire::Reply;
use super::TOKEN;

/// Asserts a refusal exactly as spec §6 describes it, with the code's generic message.
pub fn assert_refused(reply: &Reply, code: ErrorCode) {
    assert_refused_with(reply, code, code.message());
}

/// Asserts a refusal: status, `application/json`, the exact JSON body, and
/// exactly one `WWW-Authenticate` challenge on a 401 (none otherwise).
pub fn assert_refused_with(reply: &Reply, code: ErrorCode, message: &str) {
    assert_eq!(
        reply.status,
        code.status(),
        "expected {code}, got {} {:?}",
        reply.status,
        reply.text()
    );
    assert_refusal_headers(reply, code);
    let expected = serde_json::json!({ "error": { "code": code.as_str(), "message": message } });
    assert_eq!(reply.json(), expected);
}

/// The headers every refusal with `code` carries (also on a refused HEAD).
pub fn assert_refusal_headers(reply: &Reply, code: ErrorCode) {
    assert_eq!(
        reply.all("content-type"),
        ["application/json"],
        "refusals are JSON"
    );
    let challenges = reply.all("www-authenticate");
    if code.status() == 401 {
        assert_eq!(
            challenges,
            [format!(r#"Signet realm="signet-proxy", error="{code}""#)],
            "every 401 carries exactly one challenge"
        );
    } else {
        assert!(
            challenges.is_empty(),
            "only a 401 carries a challenge, got {challenges:?}"
        );
    }
}

/// Asserts `raw` nowhere contains the shared token.
pub fn assert_no_token(raw: &[u8]) {
    assert!(
        !raw.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the shared token leaked: {:?}",
        String::from_utf8_lossy(raw)
    );
}

/// Asserts the health checks' answer: `200 {"status":"ok","timestamp":"<RFC 3339>"}`.
pub fn assert_healthy(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    let timestamp = body["timestamp"].as_str().expect("a timestamp string");
    assert!(
        humantime::parse_rfc3339(timestamp).is_ok(),
        "RFC 3339: {timestamp}"
    );
    assert_eq!(body.as_object().map(serde_json::Map::len), Some(2));
}
