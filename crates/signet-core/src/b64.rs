//! Strict unpadded base64url (RFC 4648 §5): no padding, no standard alphabet,
//! no non-canonical trailing bits.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes exactly `N` bytes, or nothing.
///
/// The engine rejects padding, characters outside the URL-safe alphabet and
/// non-zero trailing bits, so every accepted text is the one canonical
/// encoding of its bytes.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    // The exact unpadded length for N bytes; checking it first keeps long
    // junk out of the decoder.
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut buf = [0u8; 96];
    let written = URL_SAFE_NO_PAD.decode_slice(text, &mut buf).ok()?;
    let mut out = [0u8; N];
    out.copy_from_slice(buf.get(..N).filter(|_| written == N)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length_in_use() {
        let bytes = [0xfbu8; 64];
        assert_eq!(decode_array::<16>(&encode(&bytes[..16])), Some([0xfb; 16]));
        assert_eq!(decode_array::<32>(&encode(&bytes[..32])), Some([0xfb; 32]));
        assert_eq!(decode_array::<64>(&encode(&bytes)), Some([0xfb; 64]));
    }

    #[test]
    fn rejects_lenient_encodings() {
        let good = encode(&[0xff; 16]);
        assert_eq!(good.len(), 22);
        assert!(decode_array::<16>(&format!("{good}==")).is_none());
        assert!(decode_array::<16>(&good.replace('_', "/")).is_none());
        // 22 characters carry 132 bits; the last 4 must be zero.
        let mut noncanonical = good.into_bytes();
        noncanonical[21] = b'_';
        let noncanonical = String::from_utf8(noncanonical).unwrap_or_default();
        assert!(decode_array::<16>(&noncanonical).is_none());
    }
}
