//! Signature validity (spec §5, amendment 3): the one rule by which both
//! signatures of a proof — the binding `b` under `mk` (step 8) and the
//! request signature `s` under `ek` (step 9) — are judged.
//!
//! A signature `R ‖ S` on message `M` under public key `A` is valid if and
//! only if:
//!
//! 1. `S`, read as a little-endian integer, is less than the group order `ℓ`;
//! 2. `A` and `R` are canonical encodings of curve points (they decode, and
//!    re-encoding gives the same 32 bytes);
//! 3. `A` is not of small order (`[8]A` is not the identity);
//! 4. the cofactored equation `[8][S]B = [8]R + [8][k]A` holds, with
//!    `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
//!
//! `R` may be of small or mixed order. This is ZIP-215's rule with
//! canonical encodings and small-order keys refused; unlike the
//! cofactorless `verify_strict` it replaced, a batch verifier can give
//! exactly its answer. Rules 2 and 3 for `A` are checked once, when a
//! [`ValidKey`] is made, so a key decoded once (a trusted master key, or an
//! ephemeral key cached with its binding) costs nothing more per signature:
//! a signature then decodes only its `R`.
//!
//! ```
//! use ed25519_dalek::Signer as _;
//! use signet_core::{verify_signature, SignatureError, SigningKey, ValidKey};
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let signature = key.sign(b"message").to_bytes();
//! let public = key.verifying_key().to_bytes();
//! assert_eq!(verify_signature(&public, b"message", &signature), Ok(()));
//! assert_eq!(
//!     verify_signature(&public, b"other", &signature),
//!     Err(SignatureError::EquationFails)
//! );
//! // The identity point verifies every message it has a signature for:
//! // rule 3 refuses it as a key.
//! let mut identity = [0u8; 32];
//! identity[0] = 1;
//! assert_eq!(ValidKey::new(&identity).err(), Some(SignatureError::SmallOrderKey));
//! ```

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity as _;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest as _, Sha512};

use crate::keys::KeyError;

/// Why a signature is not valid (spec §5 "Signature validity"). The
/// variants name the rule that refused it; callers map every one of them to
/// the same `INVALID_SIGNATURE` refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Rule 1: `S` is not less than the group order.
    #[error("rule 1: S is not reduced modulo the group order")]
    ScalarNotReduced,
    /// Rule 2: the public key is not the canonical encoding of a curve point.
    #[error("rule 2: the public key is not a canonically encoded point")]
    NonCanonicalKey,
    /// Rule 2: `R` is not the canonical encoding of a curve point.
    #[error("rule 2: R is not a canonically encoded point")]
    NonCanonicalR,
    /// Rule 3: the public key is of small order.
    #[error("rule 3: the public key is of small order")]
    SmallOrderKey,
    /// Rule 4: the cofactored equation does not hold.
    #[error("rule 4: the cofactored verification equation does not hold")]
    EquationFails,
}

impl SignatureError {
    /// The number (1–4) of the spec's rule that refused the signature.
    pub const fn rule(self) -> u8 {
        match self {
            Self::ScalarNotReduced => 1,
            Self::NonCanonicalKey | Self::NonCanonicalR => 2,
            Self::SmallOrderKey => 3,
            Self::EquationFails => 4,
        }
    }
}

/// A public key that passed rules 2 and 3: canonically encoded and not of
/// small order. It keeps the decoded point, negated, ready for rule 4.
#[derive(Clone, Copy)]
pub struct ValidKey {
    bytes: [u8; 32],
    /// `−A`: the equation is evaluated as `[S]B + [k](−A)`.
    minus_a: EdwardsPoint,
}

impl std::fmt::Debug for ValidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValidKey")
            .field(&hex::encode(self.bytes))
            .finish()
    }
}

impl PartialEq for ValidKey {
    fn eq(&self, other: &Self) -> bool {
        // Canonical encodings: equal bytes exactly when equal points.
        self.bytes == other.bytes
    }
}

impl Eq for ValidKey {}

impl ValidKey {
    /// Decodes a public key and applies rules 2 and 3 to it.
    pub fn new(bytes: &[u8; 32]) -> Result<Self, SignatureError> {
        let point = decode_canonical(bytes).ok_or(SignatureError::NonCanonicalKey)?;
        Self::from_point(*bytes, point)
    }

    /// The same as [`ValidKey::new`] for a key `ed25519-dalek` already
    /// decoded, without decoding it again. `ed25519-dalek` decodes
    /// leniently, so rules 2 and 3 still apply.
    pub fn from_verifying_key(key: &VerifyingKey) -> Result<Self, SignatureError> {
        // A `VerifyingKey`'s point is its bytes decoded (or its bytes are the
        // point encoded, which is canonical), so checking the bytes' form is
        // checking that re-encoding the point gives them back.
        if !is_canonical_form(key.as_bytes()) {
            return Err(SignatureError::NonCanonicalKey);
        }
        Self::from_point(key.to_bytes(), key.to_edwards())
    }

    fn from_point(bytes: [u8; 32], point: EdwardsPoint) -> Result<Self, SignatureError> {
        if point.is_small_order() {
            return Err(SignatureError::SmallOrderKey);
        }
        Ok(ValidKey {
            bytes,
            minus_a: -point,
        })
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Rules 1, 2 (for `R`) and 4 for `signature` (`R ‖ S`) on `message`;
    /// rules 2 and 3 for the key held when it was made.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureError> {
        let (r_bytes, s_bytes) = split(signature);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(SignatureError::ScalarNotReduced)?;
        let r = decode_canonical(&r_bytes).ok_or(SignatureError::NonCanonicalR)?;
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r_bytes)
                .chain_update(self.bytes)
                .chain_update(message)
                .finalize()
                .into(),
        );
        // [S]B − [k]A − R, multiplied by the cofactor: the identity exactly
        // when [8][S]B = [8]R + [8][k]A. Variable time is fine: every input
        // here is public.
        let residue = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &self.minus_a, &s) - r;
        if residue.mul_by_cofactor().is_identity() {
            Ok(())
        } else {
            Err(SignatureError::EquationFails)
        }
    }
}

/// Whether `signature` is a valid signature of `message` under the public
/// key `public_key`, by the four rules of spec §5 "Signature validity".
/// The one definition both signatures of a proof are checked by; a caller
/// that verifies many signatures under one key makes a [`ValidKey`] once and
/// calls [`ValidKey::verify`], which is this function's second half.
pub fn verify_signature(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    ValidKey::new(public_key)?.verify(message, signature)
}

/// Checks a key that is to be trusted as a master key (spec §5: a trusted
/// master key that fails rule 2 or 3 is a configuration error): it must be
/// the canonical encoding of a curve point and not of small order.
///
/// ```
/// use signet_core::{check_master_key, KeyError};
/// let honest = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")?;
/// assert_eq!(check_master_key(&honest.try_into().unwrap_or_default()), Ok(()));
/// let mut identity = [0u8; 32];
/// identity[0] = 1;
/// assert_eq!(check_master_key(&identity), Err(KeyError::SmallOrder));
/// # Ok::<(), hex::FromHexError>(())
/// ```
pub fn check_master_key(key: &[u8; 32]) -> Result<(), KeyError> {
    match ValidKey::new(key) {
        Ok(_) => Ok(()),
        Err(SignatureError::SmallOrderKey) => Err(KeyError::SmallOrder),
        Err(_) if CompressedEdwardsY(*key).decompress().is_some() => Err(KeyError::NonCanonical),
        Err(_) => Err(KeyError::NotAPoint),
    }
}

fn split(signature: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&signature[..32]);
    s.copy_from_slice(&signature[32..]);
    (r, s)
}

/// Rule 2: decodes `bytes` if they are the canonical encoding of a point.
fn decode_canonical(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !is_canonical_form(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes).decompress()
}

/// For bytes that decode, whether re-encoding the point gives them back —
/// without the field inversion re-encoding costs. `decompress` reads `y`
/// modulo `p` and keeps the sign bit as the parity of `x`, which it can do
/// for every `x` except 0 (its negation is itself). So the encoding comes
/// back unchanged exactly when `y < p` and the sign bit is not set on a
/// point with `x = 0`, i.e. `y = 1` (the identity) or `y = p − 1` (the
/// point of order 2). The test suite checks this against decoding and
/// re-encoding.
fn is_canonical_form(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    let sign = y[31] >> 7 == 1;
    y[31] &= 0x7f;
    if !less_than_p(&y) {
        return false;
    }
    let x_is_zero = y == ONE || y == P_MINUS_ONE;
    !(sign && x_is_zero)
}

/// `p = 2^255 − 19`, little-endian.
const P: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

const ONE: [u8; 32] = {
    let mut one = [0; 32];
    one[0] = 1;
    one
};

const P_MINUS_ONE: [u8; 32] = {
    let mut p = P;
    p[0] = 0xec;
    p
};

/// Whether the little-endian 32-byte integer `y` is below `p`.
fn less_than_p(y: &[u8; 32]) -> bool {
    // Compare from the most significant byte down.
    for (a, b) in y.iter().rev().zip(P.iter().rev()) {
        if a != b {
            return a < b;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_and_its_neighbours_are_written_as_the_spec_defines() {
        // p = 2^255 − 19: adding 19 gives 2^255, which is bit 255 alone.
        let mut sum = P;
        let mut carry = 19u16;
        for byte in &mut sum {
            let s = u16::from(*byte) + carry;
            *byte = s as u8;
            carry = s >> 8;
        }
        let mut two_255 = [0u8; 32];
        two_255[31] = 0x80;
        assert_eq!((sum, carry), (two_255, 0));
        assert!(less_than_p(&P_MINUS_ONE));
        assert!(!less_than_p(&P));
        assert!(less_than_p(&ONE));
    }

    #[test]
    fn the_byte_test_of_canonical_form_is_decoding_then_re_encoding() {
        // Every y near 0 and near p (where the two can differ), both signs.
        let mut candidates = Vec::new();
        for low in 0u8..=38 {
            let mut y = [0u8; 32];
            y[0] = low;
            candidates.push(y);
            let mut y = P;
            y[0] = 0xd9 + low; // p − 20 ..= p + 18
            candidates.push(y);
        }
        candidates.push([0xff; 32]);
        let mut decoded = 0;
        for y in candidates {
            for sign in [0, 0x80] {
                let mut bytes = y;
                bytes[31] = (bytes[31] & 0x7f) | sign;
                let Some(point) = CompressedEdwardsY(bytes).decompress() else {
                    continue;
                };
                decoded += 1;
                assert_eq!(
                    is_canonical_form(&bytes),
                    point.compress().to_bytes() == bytes,
                    "{}",
                    hex::encode(bytes)
                );
            }
        }
        assert!(decoded > 20, "only {decoded} candidates decoded");
    }
}
