//! Signature validity at its edges (spec §5, amendment 3), against an
//! oracle written from the spec's words.
//!
//! The oracle is deliberately slow and plain: constant-time scalar
//! multiplications, multiplication by 8 as three doublings by addition,
//! points compared by their encodings, `S < ℓ` as a comparison of integers
//! and canonical encoding as "decode, re-encode, same bytes". The code
//! under test shares none of that: it checks encodings on the bytes and
//! evaluates the equation with one variable-time double-base
//! multiplication. Every input is built with a key we hold the discrete
//! log of, so each edge (torsion in `R` or `A`, small-order and
//! non-canonical points, `S ≥ ℓ`) can be made on purpose, and each is
//! checked through [`verify_signature`], through [`ValidKey`] and through
//! [`Verifier`] as a binding (step 8) and as a request signature (step 9).

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use proptest::prelude::*;
use sha2::{Digest as _, Sha512};
use signet_core::{
    canonical_request, check_master_key, parse_public_key_hex, verify_signature, BindingMessage,
    BodyDigest, KeyError, Limits, ProofHeader, Purpose, RequestParts, SignatureError, SigningKey,
    ValidKey, Verifier, VerifyError, VerifyingKey,
};

// ---------------------------------------------------------------------------
// The oracle: spec §5 "Signature validity", rule by rule
// ---------------------------------------------------------------------------

/// The group order ℓ = 2^252 + 27742317777372353535851937790883648493,
/// little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Little-endian integers compared from the top byte down.
fn less_than(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().rev().lt(b.iter().rev())
}

/// "They decode, and re-encoding the decoded point gives the same 32 bytes."
fn decode_canonical(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    (point.compress().to_bytes() == *bytes).then_some(point)
}

fn times_8(point: EdwardsPoint) -> EdwardsPoint {
    let two = point + point;
    let four = two + two;
    four + four
}

fn is_identity(point: EdwardsPoint) -> bool {
    point.compress() == EdwardsPoint::default().compress()
}

/// `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
fn challenge(r: &[u8], a: &[u8; 32], message: &[u8]) -> Scalar {
    let digest: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(a)
        .chain_update(message)
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// The spec's rule: `Some(n)` names the first rule (checked in the spec's
/// order) that refuses the signature, `None` means valid.
pub(crate) fn oracle(a_bytes: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> Option<u8> {
    let r_bytes: [u8; 32] = sig[..32].try_into().ok()?;
    let s_bytes: [u8; 32] = sig[32..].try_into().ok()?;
    // 1. S < ℓ.
    if !less_than(&s_bytes, &ELL) {
        return Some(1);
    }
    // 2. A and R canonical encodings of points.
    let (Some(a), Some(r)) = (decode_canonical(a_bytes), decode_canonical(&r_bytes)) else {
        return Some(2);
    };
    // 3. [8]A is not the identity.
    if is_identity(times_8(a)) {
        return Some(3);
    }
    // 4. [8][S]B = [8]R + [8][k]A.
    let s = Scalar::from_bytes_mod_order(s_bytes);
    let k = challenge(&r_bytes, a_bytes, message);
    let left = times_8(ED25519_BASEPOINT_POINT * s);
    let right = times_8(r) + times_8(a * k);
    if left.compress() == right.compress() {
        None
    } else {
        Some(4)
    }
}

// ---------------------------------------------------------------------------
// Inputs we can make on purpose
// ---------------------------------------------------------------------------

const NOW: u64 = 1_800_000_000;
const NONCE: [u8; 16] = [5; 16];

fn request() -> RequestParts<'static> {
    RequestParts {
        method: "GET",
        target: "/repos/octo-org/hello-world",
        body_digest: BodyDigest::EMPTY,
    }
}

fn message() -> Vec<u8> {
    canonical_request(&request(), NOW, &NONCE)
}

fn scalar(seed: u8) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&[seed; 64])
}

fn signature(r: [u8; 32], s: [u8; 32]) -> [u8; 64] {
    let mut out = [0; 64];
    out[..32].copy_from_slice(&r);
    out[32..].copy_from_slice(&s);
    out
}

/// A key we hold the discrete log of: `A = [a]B + T`, written as `ek`
/// (canonically unless an encoding is given).
struct Key {
    a: Scalar,
    ek: [u8; 32],
}

impl Key {
    fn new(a: Scalar, torsion: EdwardsPoint) -> Self {
        Key {
            a,
            ek: (EdwardsPoint::mul_base(&a) + torsion).compress().to_bytes(),
        }
    }

    /// `R = [r]B + T` (written as `r_bytes` when given), `S = r + k·a`:
    /// `[S]B − [k]A − R = −[k]T_A − T`, which the cofactor clears.
    fn sign_with(
        &self,
        r: Scalar,
        torsion: EdwardsPoint,
        r_bytes: Option<[u8; 32]>,
        message: &[u8],
    ) -> [u8; 64] {
        let big_r =
            r_bytes.unwrap_or_else(|| (EdwardsPoint::mul_base(&r) + torsion).compress().to_bytes());
        let s = r + challenge(&big_r, &self.ek, message) * self.a;
        signature(big_r, s.to_bytes())
    }

    fn sign(&self, r: Scalar, torsion: EdwardsPoint, message: &[u8]) -> [u8; 64] {
        self.sign_with(r, torsion, None, message)
    }
}

/// Every non-canonical encoding of a point, with the point it decodes to:
/// only `y < 19` has a second form `y + p` (either sign), and only `x = 0`
/// (`y = ±1`, both of small order) a second sign.
fn non_canonical_encodings() -> Vec<([u8; 32], EdwardsPoint)> {
    let p: [u8; 32] = {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        p
    };
    let mut out = Vec::new();
    for low in 0u8..19 {
        for sign in [0u8, 0x80] {
            // y + p for y < 19, with either sign; and y with the sign bit.
            let mut high = p;
            high[0] += low;
            high[31] |= sign;
            let mut plain = [0u8; 32];
            plain[0] = low;
            plain[31] |= sign;
            for bytes in [high, plain] {
                if let Some(point) = CompressedEdwardsY(bytes).decompress() {
                    if point.compress().to_bytes() != bytes {
                        out.push((bytes, point));
                    }
                }
            }
        }
    }
    // y = p − 1 (the point of order 2) with the sign bit set.
    let mut minus_one = p;
    minus_one[0] = 0xec;
    minus_one[31] |= 0x80;
    if let Some(point) = CompressedEdwardsY(minus_one).decompress() {
        out.push((minus_one, point));
    }
    out
}

// ---------------------------------------------------------------------------
// The code under test, every way in
// ---------------------------------------------------------------------------

/// A proof whose binding is `b` under the master key `mk` and whose request
/// signature is `s` under `ek`, through steps 3–9 with a verifier trusting
/// `mk` (decoded leniently, as a configuration that skipped
/// [`check_master_key`] would), cold, warm and without a cache.
fn through_verifier(
    mk: [u8; 32],
    b: [u8; 64],
    ek: [u8; 32],
    s: [u8; 64],
) -> Result<(), VerifyError> {
    let master = VerifyingKey::from_bytes(&mk).map_err(|_| VerifyError::InvalidBindingSignature)?;
    let proof = ProofHeader {
        mk,
        ek,
        exp: NOW + 300,
        pur: Purpose::EMPTY,
        b,
        ts: NOW,
        n: NONCE,
        s,
    };
    let cached = Verifier::new([master], Limits::default());
    let uncached = Verifier::new([master], Limits::default()).with_binding_cache_capacity(0);
    let run = |verifier: &Verifier| {
        verifier
            .check(&proof, NOW)
            .and_then(|checked| checked.verify(&request()))
            .map(|_| ())
    };
    let cold = run(&cached);
    assert_eq!(
        run(&cached),
        cold,
        "a warm binding cache changed the verdict"
    );
    assert_eq!(
        run(&uncached),
        cold,
        "the binding cache changed the verdict"
    );
    cold
}

fn binding_message(ek: &[u8; 32]) -> Vec<u8> {
    BindingMessage::new(ek, NOW + 300, &Purpose::EMPTY)
        .as_bytes()
        .to_vec()
}

/// An honest master key (RFC 8032's signing) for proofs whose edge is in
/// the request signature.
fn honest_master() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

/// The one function, the key-first path and the oracle agree on
/// (`key`, `message`, `sig`); returns the verdict.
fn verdict(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    let spec = oracle(key, message, sig);
    let ours = verify_signature(key, message, sig);
    assert_eq!(
        ours.is_ok(),
        spec.is_none(),
        "verify_signature {ours:?}, spec refuses by rule {spec:?}"
    );
    // The spec fixes the verdict, not the order: the key's rules (2, 3) are
    // checked first, once per key, so a key refused by them may also break
    // an earlier rule; any other refusal names the spec's first rule.
    match ours {
        Err(e @ (SignatureError::NonCanonicalKey | SignatureError::SmallOrderKey)) => {
            assert!(
                spec.is_some_and(|rule| rule <= e.rule()),
                "{e:?}, spec {spec:?}"
            );
        }
        _ => assert_eq!(ours.err().map(SignatureError::rule), spec, "{ours:?}"),
    }
    let key_first = ValidKey::new(key).and_then(|k| k.verify(message, sig));
    assert_eq!(key_first, ours, "ValidKey and verify_signature disagree");
    spec.is_none()
}

/// `sig` by `ek` as the request signature of a proof with an honest binding:
/// the verifier agrees with the oracle, and refuses at step 9.
fn request_verdict(ek: [u8; 32], sig: [u8; 64]) -> bool {
    let spec = verdict(&ek, &message(), &sig);
    let master = honest_master();
    let b = ed25519_dalek::Signer::sign(&master, &binding_message(&ek)).to_bytes();
    let ours = through_verifier(master.verifying_key().to_bytes(), b, ek, sig);
    assert_eq!(ours.is_ok(), spec, "step 9: {ours:?}, spec valid: {spec}");
    if let Err(error) = ours {
        assert_eq!(error, VerifyError::InvalidRequestSignature);
    }
    spec
}

/// `b` by the master key `mk` over the binding of an honest `ek`, whose
/// request signature is honest: the verifier agrees with the oracle, and
/// refuses at step 8.
fn binding_verdict(mk: [u8; 32], b: [u8; 64]) -> bool {
    let ephemeral = SigningKey::from_bytes(&[2; 32]);
    let ek = ephemeral.verifying_key().to_bytes();
    let spec = verdict(&mk, &binding_message(&ek), &b);
    let s = ed25519_dalek::Signer::sign(&ephemeral, &message()).to_bytes();
    let ours = through_verifier(mk, b, ek, s);
    assert_eq!(ours.is_ok(), spec, "step 8: {ours:?}, spec valid: {spec}");
    if let Err(error) = ours {
        assert_eq!(error, VerifyError::InvalidBindingSignature);
    }
    spec
}

// ---------------------------------------------------------------------------
// The edges, one by one
// ---------------------------------------------------------------------------

#[test]
fn an_honest_signature_verifies_as_request_and_as_binding() {
    let key = Key::new(scalar(3), EdwardsPoint::default());
    assert!(request_verdict(
        key.ek,
        key.sign(scalar(4), EdwardsPoint::default(), &message())
    ));
    let ek = SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes();
    let b = key.sign(scalar(5), EdwardsPoint::default(), &binding_message(&ek));
    assert!(binding_verdict(key.ek, b));
}

#[test]
fn a_commitment_with_a_torsion_component_is_accepted_because_the_cofactor_clears_it() {
    let key = Key::new(scalar(3), EdwardsPoint::default());
    let ek = SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes();
    for torsion in &EIGHT_TORSION[1..] {
        assert!(request_verdict(
            key.ek,
            key.sign(scalar(4), *torsion, &message())
        ));
        assert!(binding_verdict(
            key.ek,
            key.sign(scalar(4), *torsion, &binding_message(&ek))
        ));
    }
}

#[test]
fn each_small_order_point_is_accepted_as_the_commitment() {
    // R = T of small order, S = k·a: [S]B − [k]A − R = −T, cleared by 8.
    let key = Key::new(scalar(3), EdwardsPoint::default());
    for torsion in &EIGHT_TORSION {
        assert!(request_verdict(
            key.ek,
            key.sign(Scalar::ZERO, *torsion, &message())
        ));
    }
}

#[test]
fn a_mixed_order_key_is_accepted_whatever_its_torsion() {
    // [S]B − [k]A − R = −[k]T: cleared by 8 for every k, not only when
    // k is a multiple of T's order (the old rule's 1 time in 8).
    for torsion in &EIGHT_TORSION[1..] {
        let key = Key::new(scalar(3), *torsion);
        for seed in 0..8u8 {
            let sig = key.sign(scalar(seed), EdwardsPoint::default(), &message());
            assert!(request_verdict(key.ek, sig));
        }
        let ek = SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes();
        let b = key.sign(scalar(9), EIGHT_TORSION[3], &binding_message(&ek));
        assert!(binding_verdict(key.ek, b), "a mixed-order master key");
    }
}

#[test]
fn a_small_order_key_is_refused_though_its_signature_fits_any_message() {
    // A = T of small order, S = r, R = [r]B: [S]B − [k]A − R = −[k]T,
    // which the cofactor clears whatever the message: rule 3 stops it.
    for torsion in &EIGHT_TORSION {
        let key = Key::new(Scalar::ZERO, *torsion);
        let r = EdwardsPoint::mul_base(&scalar(4)).compress().to_bytes();
        let sig = signature(r, scalar(4).to_bytes());
        assert_eq!(oracle(&key.ek, b"any other message", &sig), Some(3));
        assert!(!request_verdict(key.ek, sig));
        assert!(!binding_verdict(key.ek, sig));
        assert_eq!(check_master_key(&key.ek), Err(KeyError::SmallOrder));
        assert_eq!(
            parse_public_key_hex(&hex::encode(key.ek)),
            Err(KeyError::SmallOrder)
        );
    }
}

#[test]
fn non_canonical_encodings_are_refused_as_commitment_and_as_key() {
    let encodings = non_canonical_encodings();
    // The six the vectors hold (identity and the order-2 point with the
    // sign bit, y + p for y = 0 and 1) and the points with y < 19 that
    // exist. ZIP-215 as written accepts those of small order below.
    assert!(encodings.len() >= 6, "{} encodings", encodings.len());
    let small = encodings.iter().filter(|(_, p)| p.is_small_order()).count();
    assert!(small >= 6, "{small} of small order");
    let key = Key::new(scalar(3), EdwardsPoint::default());
    for (bytes, point) in &encodings {
        // As R: S = k·a with k over the bytes as sent; for a small-order
        // point the cofactored equation holds.
        let sig = key.sign_with(Scalar::ZERO, *point, Some(*bytes), &message());
        assert_eq!(oracle(&key.ek, &message(), &sig), Some(2));
        assert!(!request_verdict(key.ek, sig));
        // As A (a small-order point written another way): S = r, R = [r]B.
        let sig = signature(
            EdwardsPoint::mul_base(&scalar(4)).compress().to_bytes(),
            scalar(4).to_bytes(),
        );
        assert_eq!(oracle(bytes, &message(), &sig), Some(2));
        assert!(!request_verdict(*bytes, sig));
        assert!(!binding_verdict(*bytes, sig));
        assert_eq!(check_master_key(bytes), Err(KeyError::NonCanonical));
        assert_eq!(
            parse_public_key_hex(&hex::encode(bytes)),
            Err(KeyError::NonCanonical)
        );
    }
}

/// `bytes` + ℓ × `times`, if it fits in 32 bytes.
fn plus_ell(bytes: [u8; 32], times: u16) -> Option<[u8; 32]> {
    let mut out = bytes;
    let mut carry = 0u32;
    for (byte, add) in out.iter_mut().zip(ELL) {
        let sum = u32::from(*byte) + u32::from(add) * u32::from(times) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    (carry == 0).then_some(out)
}

#[test]
fn a_scalar_at_or_above_the_group_order_is_refused() {
    let key = Key::new(scalar(3), EdwardsPoint::default());
    let sig = key.sign(scalar(4), EdwardsPoint::default(), &message());
    assert!(request_verdict(key.ek, sig));
    let r: [u8; 32] = sig[..32].try_into().unwrap_or_default();
    let s: [u8; 32] = sig[32..].try_into().unwrap_or_default();
    // S + ℓ, S + 15ℓ: the same residue, refused by rule 1 alone.
    for times in [1, 15] {
        let Some(big) = plus_ell(s, times) else {
            continue;
        };
        assert_eq!(oracle(&key.ek, &message(), &signature(r, big)), Some(1));
        assert!(!request_verdict(key.ek, signature(r, big)));
    }
    // ℓ itself, and ℓ − 1 (the largest valid S, on a wrong equation).
    assert!(!request_verdict(key.ek, signature(r, ELL)));
    let mut ell_minus_one = ELL;
    ell_minus_one[0] -= 1;
    assert_eq!(
        oracle(&key.ek, &message(), &signature(r, ell_minus_one)),
        Some(4)
    );
    assert!(!request_verdict(key.ek, signature(r, ell_minus_one)));
}

#[test]
fn encodings_that_are_not_points_are_refused() {
    let key = Key::new(scalar(3), EdwardsPoint::default());
    let sig = key.sign(scalar(4), EdwardsPoint::default(), &message());
    // y = 2 has no x on edwards25519.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert!(CompressedEdwardsY(not_a_point).decompress().is_none());
    let mut bad_r = sig;
    bad_r[..32].copy_from_slice(&not_a_point);
    assert!(!request_verdict(key.ek, bad_r));
    assert!(!request_verdict(not_a_point, sig));
    assert_eq!(check_master_key(&not_a_point), Err(KeyError::NotAPoint));
}

#[test]
fn a_trusted_master_key_that_breaks_rule_2_or_3_fails_every_binding_at_step_8() {
    // Configuration refuses such a key; should one reach the verifier, it
    // fails closed. The identity signs "any" binding with R = [r]B, S = r.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let r = EdwardsPoint::mul_base(&scalar(4)).compress().to_bytes();
    let forged = signature(r, scalar(4).to_bytes());
    assert_eq!(oracle(&identity, b"anything", &forged), Some(3));
    assert!(!binding_verdict(identity, forged));
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// RFC 8032 signing, any key, any message: valid under the rule.
    #[test]
    fn every_honest_rfc8032_signature_verifies(
        seed in any::<[u8; 32]>(),
        message in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let key = SigningKey::from_bytes(&seed);
        let sig = ed25519_dalek::Signer::sign(&key, &message).to_bytes();
        let public = key.verifying_key().to_bytes();
        prop_assert_eq!(verify_signature(&public, &message, &sig), Ok(()));
        prop_assert_eq!(oracle(&public, &message, &sig), None);
        prop_assert_eq!(check_master_key(&public), Ok(()));
    }

    /// Random keys and commitments, with or without torsion in either,
    /// non-canonical forms of small-order points, `S + ℓ`, and random damage
    /// to the key or signature, as binding or as request signature: the
    /// code decides as the spec's words do, every time, every way in.
    #[test]
    fn the_verifier_decides_as_the_spec_defines(
        a in any::<[u8; 32]>(),
        r in any::<[u8; 32]>(),
        key_torsion in prop_oneof![3 => Just(0usize), 1 => 0usize..8],
        commitment_torsion in prop_oneof![2 => Just(0usize), 1 => 0usize..8],
        small_order_key in proptest::bool::weighted(0.1),
        non_canonical in proptest::option::weighted(0.15, (any::<bool>(), any::<prop::sample::Index>())),
        s_plus_ell in proptest::bool::weighted(0.1),
        damage in proptest::option::weighted(0.4, (0usize..96, 0u8..8)),
        as_binding in any::<bool>(),
    ) {
        let a = if small_order_key { Scalar::ZERO } else { Scalar::from_bytes_mod_order(a) };
        let mut key = Key::new(a, EIGHT_TORSION[key_torsion]);
        let encodings = non_canonical_encodings();
        let mut r_bytes = None;
        let mut torsion = EIGHT_TORSION[commitment_torsion];
        let mut r_scalar = Scalar::from_bytes_mod_order(r);
        if let Some((in_key, index)) = non_canonical {
            let (bytes, point) = encodings[index.index(encodings.len())];
            if in_key {
                // A key nobody holds the discrete log of, signed as if
                // it were the identity.
                key = Key { a: Scalar::ZERO, ek: bytes };
            } else {
                r_bytes = Some(bytes);
                torsion = point;
                r_scalar = Scalar::ZERO;
            }
        }
        let ek = SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes();
        let signed = if as_binding { binding_message(&ek) } else { message() };
        let mut sig = key.sign_with(r_scalar, torsion, r_bytes, &signed);
        if s_plus_ell {
            let s: [u8; 32] = sig[32..].try_into().unwrap_or_default();
            if let Some(big) = plus_ell(s, 1) {
                sig[32..].copy_from_slice(&big);
            }
        }
        if let Some((byte, bit)) = damage {
            if byte < 64 {
                sig[byte] ^= 1 << bit;
            } else {
                key.ek[byte - 64] ^= 1 << bit;
            }
        }
        if as_binding {
            binding_verdict(key.ek, sig);
        } else {
            request_verdict(key.ek, sig);
        }
    }
}
