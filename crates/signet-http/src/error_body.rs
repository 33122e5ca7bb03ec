//! The JSON error shape every refusal uses, the proxy's and the agent's
//! (docs/PROTOCOL.md §6): `{"error":{"code":"…","message":"…"}}`.

use bytes::Bytes;

/// `{"error":{"code":…,"message":…}}`, with both strings JSON-escaped.
pub fn error_json(code: &str, message: &str) -> Bytes {
    let json = serde_json::json!({ "error": { "code": code, "message": message } });
    Bytes::from(json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_body_has_the_spec_shape_and_escapes_its_strings() {
        assert_eq!(
            &error_json("REPLAY_DETECTED", "This request has already been processed.")[..],
            br#"{"error":{"code":"REPLAY_DETECTED","message":"This request has already been processed."}}"#
        );
        assert_eq!(
            &error_json("X", "a \"quoted\" \\ word")[..],
            br#"{"error":{"code":"X","message":"a \"quoted\" \\ word"}}"#
        );
    }
}
