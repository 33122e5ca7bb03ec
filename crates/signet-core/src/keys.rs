//! Key formats (spec §1): master public keys as 64 hex characters, private
//! keys as PKCS#8 PEM, and the short key id used in logs.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::signature::check_master_key;

pub use zeroize::Zeroizing;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The public key is not hex.
    #[error("invalid master key hex: {0}")]
    InvalidHex(String),
    /// The public key is hex, but not 32 bytes.
    #[error("invalid master key length: got {0} bytes, expected 32")]
    InvalidLength(usize),
    /// The 32 bytes are not an Ed25519 point.
    #[error("invalid master key: not an Ed25519 public key")]
    NotAPoint,
    /// The 32 bytes decode to a point, but are not its canonical encoding
    /// (spec §5, signature validity rule 2).
    #[error(
        "invalid master key: not the canonical encoding of an Ed25519 point \
         (y must be below 2^255-19, and x = 0 must have the sign bit clear)"
    )]
    NonCanonical,
    /// The point is of small order (spec §5, signature validity rule 3): a
    /// signature under it can hold for many messages, so nobody may trust it.
    #[error(
        "invalid master key: a point of small order, under which signatures \
         can be forged; it cannot be trusted"
    )]
    SmallOrder,
    /// The private key is not a PKCS#8 Ed25519 PEM.
    #[error("invalid private key: expected a PKCS#8 Ed25519 PEM (-----BEGIN PRIVATE KEY-----)")]
    InvalidPem,
}

/// Reads a master public key written as 64 hex characters (either case).
///
/// The key must also be fit to trust ([`check_master_key`]): canonically
/// encoded and not of small order (spec §5, "Signature validity" rules 2
/// and 3), so a key file or flag naming such a key is a configuration error.
///
/// ```
/// use signet_core::parse_public_key_hex;
/// let hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
/// assert!(parse_public_key_hex(hex).is_ok());
/// assert_eq!(
///     parse_public_key_hex("a1b2c3").unwrap_err().to_string(),
///     "invalid master key length: got 3 bytes, expected 32"
/// );
/// ```
pub fn parse_public_key_hex(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = hex::decode(text.trim()).map_err(|e| KeyError::InvalidHex(e.to_string()))?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::InvalidLength(bytes.len()))?;
    check_master_key(&bytes)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint)
}

/// Writes a public key as 64 lowercase hex characters.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Reads an Ed25519 private key from a PKCS#8 PEM document: v1 (what
/// `openssl genpkey -algorithm ed25519` writes) or v2 with the public key
/// attached, which must then match the private key.
pub fn signing_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::InvalidPem)
}

/// Writes an Ed25519 private key as a PKCS#8 v1 PEM document (RFC 8410
/// §7, zeroed on drop): the form every tool reads. The v2 form with the
/// public key attached is refused by OpenSSL 3 and Python's `cryptography`.
pub fn signing_key_to_pem(key: &SigningKey) -> Result<Zeroizing<String>, KeyError> {
    let mut v1 = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let pem = v1.to_pkcs8_pem(Default::default());
    // The `ed25519` crate wipes this copy only with a feature we do not
    // pull in; wipe it here.
    zeroize::Zeroize::zeroize(&mut v1.secret_key);
    pem.map_err(|_| KeyError::InvalidPem)
}

/// A short, stable, non-secret id for a master public key, for logs:
/// the first 8 bytes of its SHA-256, as 16 hex characters.
pub fn key_id(mk: &[u8; 32]) -> String {
    let digest = Sha256::digest(mk);
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_errors_match_the_original_messages() {
        assert!(parse_public_key_hex("zz")
            .err()
            .is_some_and(|e| e.to_string().starts_with("invalid master key hex: ")));
        assert_eq!(
            parse_public_key_hex(&"ab".repeat(31)).map_err(|e| e.to_string()),
            Err("invalid master key length: got 31 bytes, expected 32".to_owned())
        );
    }

    #[test]
    fn a_master_key_of_small_order_or_written_non_canonically_is_refused() {
        // The identity (y = 1): a signature under it holds for many messages.
        let identity = format!("01{}", "00".repeat(31));
        assert_eq!(parse_public_key_hex(&identity), Err(KeyError::SmallOrder));
        // The identity again, as y = p + 1: decodes, but not canonically.
        let high = format!("ee{}7f", "ff".repeat(30));
        assert_eq!(parse_public_key_hex(&high), Err(KeyError::NonCanonical));
        // x = 0 with the sign bit set.
        let signed = format!("01{}80", "00".repeat(30));
        assert_eq!(parse_public_key_hex(&signed), Err(KeyError::NonCanonical));
        assert!(KeyError::SmallOrder
            .to_string()
            .starts_with("invalid master key: "));
        assert!(KeyError::NonCanonical
            .to_string()
            .starts_with("invalid master key: "));
    }

    #[test]
    fn public_keys_read_in_either_case() {
        let lower = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let upper = lower.to_uppercase();
        assert_eq!(parse_public_key_hex(lower), parse_public_key_hex(&upper));
    }

    fn der_of(pem: &str) -> Vec<u8> {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    }

    #[test]
    fn keys_are_written_as_the_48_byte_pkcs8_v1_form() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let pem = signing_key_to_pem(&key).unwrap_or_default();
        let mut expected = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        expected.extend_from_slice(&[7; 32]);
        assert_eq!(der_of(&pem), expected);
    }

    #[test]
    fn v2_keys_still_read_and_a_mismatched_public_key_is_refused() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let v2 = key.to_pkcs8_pem(Default::default()).unwrap_or_default();
        assert!(der_of(&v2).len() > 48, "the crate writes v2");
        assert_eq!(signing_key_from_pem(&v2).map(|k| k.to_bytes()), Ok([9; 32]));
        let other = SigningKey::from_bytes(&[10; 32]).verifying_key();
        let mismatched = KeypairBytes {
            secret_key: [9; 32],
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(other.to_bytes())),
        }
        .to_pkcs8_pem(Default::default())
        .unwrap_or_default();
        assert_eq!(
            signing_key_from_pem(&mismatched).map(|k| k.to_bytes()),
            Err(KeyError::InvalidPem)
        );
    }

    #[test]
    fn pem_round_trips() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let pem = signing_key_to_pem(&key).unwrap_or_default();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = signing_key_from_pem(&pem).map(|k| k.to_bytes());
        assert_eq!(back, Ok([7; 32]));
    }
}
