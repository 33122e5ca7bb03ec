//! The JSON error shape every refusal uses, the proxy's and the agent's
//! (docs/PROTOCOL.md §6): `{"error":{"code":"…","message":"…"}}`.

use bytes::Bytes;

/// `{"error":{"code":…,"message":…}}`, with both strings JSON-escaped.
/// Written directly rather than through a `serde_json::Value` (one
/// allocation, not a map per level): every refusal pays for this.
pub fn error_json(code: &str, message: &str) -> Bytes {
    let mut out = Vec::with_capacity(36 + code.len() + message.len());
    out.extend_from_slice(br#"{"error":{"code":"#);
    string(&mut out, code);
    out.extend_from_slice(br#","message":"#);
    string(&mut out, message);
    out.extend_from_slice(b"}}");
    Bytes::from(out)
}

/// `text` as a quoted JSON string. Serializing a `str` into a `Vec` cannot
/// fail, so there is no error to pass on.
fn string(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

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
        let control = error_json("X", "nl\n nul\0 é");
        let parsed: serde_json::Value = serde_json::from_slice(&control).unwrap();
        assert_eq!(parsed["error"]["message"], "nl\n nul\0 é");
        assert_eq!(
            std::str::from_utf8(&control).unwrap(),
            r#"{"error":{"code":"X","message":"nl\n nul\u0000 é"}}"#
        );
    }
}
