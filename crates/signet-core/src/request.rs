//! The two signed messages: the binding (spec §2) and the canonical request
//! (spec §3), plus the client side that signs them.

use std::io::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::header::{ProofHeader, Purpose, MAX_PURPOSE_LEN};

/// The domain separator that starts every binding message.
pub const BINDING_PREFIX: &[u8; 28] = b"signet-ephemeral-binding-v1:";

/// The first line of every canonical request.
pub const CANONICAL_PREFIX: &str = "signet-request-v1";

const BINDING_MAX_LEN: usize = 28 + 32 + 8 + 4 + MAX_PURPOSE_LEN;

/// The §2 binding message, built on the stack.
#[derive(Clone, Copy)]
pub struct BindingMessage {
    buf: [u8; BINDING_MAX_LEN],
    len: usize,
}

impl BindingMessage {
    /// `prefix || ek || u64_be(exp) || u32_be(len(pur)) || pur`
    pub fn new(ek: &[u8; 32], exp: u64, pur: &Purpose) -> Self {
        let pur = pur.as_bytes();
        let mut buf = [0u8; BINDING_MAX_LEN];
        let parts: [&[u8]; 5] = [
            BINDING_PREFIX,
            ek,
            &exp.to_be_bytes(),
            &(pur.len() as u32).to_be_bytes(),
            pur,
        ];
        let mut len = 0;
        for part in parts {
            buf[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        BindingMessage { buf, len }
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// SHA-256 of a request body, as covered by the request signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest(pub [u8; 32]);

impl BodyDigest {
    /// SHA-256 of no bytes: the digest of every GET.
    pub const EMPTY: BodyDigest = BodyDigest([
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ]);

    /// Hashes the body bytes (after transfer decoding, before content coding).
    pub fn of(body: &[u8]) -> Self {
        if body.is_empty() {
            return BodyDigest::EMPTY;
        }
        BodyDigest(Sha256::digest(body).into())
    }

    /// The 43-character unpadded base64url form used in the canonical request.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

/// The parts of an HTTP request that the request signature covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method exactly as on the request line.
    pub method: &'a str,
    /// The origin-form request-target (`/path?query`) byte for byte.
    pub target: &'a str,
    /// SHA-256 of the body.
    pub body_digest: BodyDigest,
}

/// Writes the §3 canonical request into `out` (cleared first), so a caller
/// can reuse one buffer for many requests.
pub fn write_canonical(out: &mut Vec<u8>, request: &RequestParts<'_>, ts: u64, n: &[u8; 16]) {
    let mut nonce = [0u8; 22];
    let mut digest = [0u8; 43];
    // Both buffers are exactly the encoded length, so encoding cannot fail.
    let nonce_len = URL_SAFE_NO_PAD.encode_slice(n, &mut nonce).unwrap_or(0);
    let digest_len = URL_SAFE_NO_PAD
        .encode_slice(request.body_digest.0, &mut digest)
        .unwrap_or(0);

    out.clear();
    out.reserve(CANONICAL_PREFIX.len() + request.method.len() + request.target.len() + 100);
    out.extend_from_slice(CANONICAL_PREFIX.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(request.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(request.target.as_bytes());
    out.push(b'\n');
    // Writing to a Vec never fails.
    let _ = write!(out, "{ts}");
    out.push(b'\n');
    out.extend_from_slice(&nonce[..nonce_len]);
    out.push(b'\n');
    out.extend_from_slice(&digest[..digest_len]);
}

/// The §3 canonical request as a new byte string.
pub fn canonical_request(request: &RequestParts<'_>, ts: u64, n: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(&mut out, request, ts, n);
    out
}

/// A master key's signature binding an ephemeral key (spec §2): the part of a
/// proof that stays the same for every request made with one ephemeral key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Master public key.
    pub mk: [u8; 32],
    /// Ephemeral public key.
    pub ek: [u8; 32],
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Purpose.
    pub pur: Purpose,
    /// Master signature over the binding message.
    pub b: [u8; 64],
}

impl Binding {
    /// Signs a binding of `ephemeral` with the master key.
    pub fn sign(master: &SigningKey, ephemeral: &VerifyingKey, exp: u64, pur: Purpose) -> Self {
        let ek = ephemeral.to_bytes();
        let message = BindingMessage::new(&ek, exp, &pur);
        Binding {
            mk: master.verifying_key().to_bytes(),
            ek,
            exp,
            pur,
            b: master.sign(message.as_bytes()).to_bytes(),
        }
    }

    /// Signs one request with the ephemeral key and returns the whole proof.
    ///
    /// `nonce` must be 16 fresh random bytes for every request; `ts` is the
    /// current unix time.
    pub fn sign_request(
        &self,
        ephemeral: &SigningKey,
        request: &RequestParts<'_>,
        ts: u64,
        nonce: [u8; 16],
    ) -> ProofHeader {
        let canonical = canonical_request(request, ts, &nonce);
        ProofHeader {
            mk: self.mk,
            ek: self.ek,
            exp: self.exp,
            pur: self.pur,
            b: self.b,
            ts,
            n: nonce,
            s: ephemeral.sign(&canonical).to_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_digest_is_sha256_of_nothing() {
        assert_eq!(BodyDigest::EMPTY.0, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(
            BodyDigest::EMPTY.to_base64url(),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(
            BodyDigest::of(b"x").0,
            <[u8; 32]>::from(Sha256::digest(b"x"))
        );
    }
}
