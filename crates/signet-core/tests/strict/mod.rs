//! Strict Ed25519 at its edges (spec §5, "Strict Ed25519"): the request
//! signatures `verify_strict` refuses and lax or cofactored verification
//! would accept, each built with its own key, checked through
//! [`Verifier`] and against an oracle written from the spec's words.
//!
//! These are the inputs a faster verifier (batch verification, issue 9)
//! would have to get exactly right; the spec's vectors hold none of them.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity as _;
use proptest::prelude::*;
use sha2::{Digest as _, Sha512};
use signet_core::{
    canonical_request, BindingMessage, BodyDigest, Limits, ProofHeader, Purpose, RequestParts,
    SigningKey, Verifier, VerifyError,
};

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

/// `H(R || A || M)` reduced mod ℓ.
fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let digest: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(a)
        .chain_update(message)
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

fn scalar(seed: u8) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&[seed; 64])
}

/// An ephemeral key we hold the discrete log of: `A = [a]B + T`.
struct Key {
    a: Scalar,
    ek: [u8; 32],
}

impl Key {
    fn new(a: Scalar, torsion: EdwardsPoint) -> Self {
        let point = EdwardsPoint::mul_base(&a) + torsion;
        Key {
            a,
            ek: point.compress().to_bytes(),
        }
    }

    /// `R = [r]B + T`, `S = r + H(R || A || M)·a`: the equation holds for
    /// `[r]B`, so it holds exactly only when `T` is the identity.
    fn sign(&self, r: Scalar, torsion: EdwardsPoint, message: &[u8]) -> [u8; 64] {
        let big_r = (EdwardsPoint::mul_base(&r) + torsion).compress().to_bytes();
        let s = r + challenge(&big_r, &self.ek, message) * self.a;
        signature(big_r, s.to_bytes())
    }
}

fn signature(r: [u8; 32], s: [u8; 32]) -> [u8; 64] {
    let mut out = [0; 64];
    out[..32].copy_from_slice(&r);
    out[32..].copy_from_slice(&s);
    out
}

/// `A`, decoded, and the signature's `R` and `S` bytes.
fn parts(ek: &[u8; 32], sig: &[u8; 64]) -> Option<(EdwardsPoint, [u8; 32], [u8; 32])> {
    let mut r = [0; 32];
    r.copy_from_slice(&sig[..32]);
    let mut s = [0; 32];
    s.copy_from_slice(&sig[32..]);
    Some((CompressedEdwardsY(*ek).decompress()?, r, s))
}

/// `[S]B − [k]A − R` with `S` taken mod ℓ: the identity exactly when the
/// cofactorless equation holds.
fn residue(
    a: EdwardsPoint,
    r: &[u8; 32],
    s: [u8; 32],
    ek: &[u8; 32],
    message: &[u8],
) -> Option<EdwardsPoint> {
    let k = challenge(r, ek, message);
    let big_r = CompressedEdwardsY(*r).decompress()?;
    Some(EdwardsPoint::mul_base(&Scalar::from_bytes_mod_order(s)) - a * k - big_r)
}

/// The spec's definition, from its words: `S < ℓ`; `A` and `R` decode and
/// are not of small order; `[S]B − [k]A` encodes to exactly `R`'s bytes.
fn oracle(ek: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    let Some((a, r_bytes, s_bytes)) = parts(ek, sig) else {
        return false;
    };
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
        return false;
    };
    if a.is_small_order() || r.is_small_order() {
        return false;
    }
    let k = challenge(&r_bytes, ek, message);
    (EdwardsPoint::mul_base(&s) - a * k).compress().to_bytes() == r_bytes
}

/// Only the cofactorless equation `[S]B − [k]A = R`, none of the other
/// checks: what lax verification accepts.
fn oracle_equation_holds(ek: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    parts(ek, sig)
        .and_then(|(a, r, s)| residue(a, &r, s, ek, message))
        .is_some_and(|residue| residue.is_identity())
}

/// What a cofactored verifier (and a batch that multiplies by 8) checks:
/// `[8]([S]B − [k]A − R) = 0`.
fn cofactored(ek: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    parts(ek, sig)
        .and_then(|(a, r, s)| residue(a, &r, s, ek, message))
        .is_some_and(|residue| residue.mul_by_cofactor().is_identity())
}

/// The request signature `sig` by `ek`, with a valid binding from a trusted
/// master key, through steps 3–9.
fn verify(ek: [u8; 32], sig: [u8; 64]) -> Result<(), VerifyError> {
    let master = SigningKey::from_bytes(&[1; 32]);
    let pur = Purpose::EMPTY;
    let exp = NOW + 300;
    let b = ed25519_dalek::Signer::sign(&master, BindingMessage::new(&ek, exp, &pur).as_bytes())
        .to_bytes();
    let proof = ProofHeader {
        mk: master.verifying_key().to_bytes(),
        ek,
        exp,
        pur,
        b,
        ts: NOW,
        n: NONCE,
        s: sig,
    };
    let verifier = Verifier::new([master.verifying_key()], Limits::default());
    verifier
        .check(&proof, NOW)
        .and_then(|checked| checked.verify(&request()))
        .map(|_| ())
}

/// Our verifier and the oracle agree on `sig`; returns that verdict.
fn verdict(ek: [u8; 32], sig: [u8; 64]) -> bool {
    let ours = verify(ek, sig);
    let spec = oracle(&ek, &message(), &sig);
    assert_eq!(ours.is_ok(), spec, "verifier {ours:?}, spec {spec}");
    if let Err(error) = ours {
        assert_eq!(error, VerifyError::InvalidRequestSignature);
    }
    spec
}

#[test]
fn an_honest_signature_verifies() {
    let key = Key::new(scalar(3), EdwardsPoint::default());
    assert!(verdict(
        key.ek,
        key.sign(scalar(4), EdwardsPoint::default(), &message())
    ));
}

#[test]
fn a_commitment_with_a_torsion_component_is_refused_though_the_cofactored_equation_holds() {
    let key = Key::new(scalar(3), EdwardsPoint::default());
    for torsion in &EIGHT_TORSION[1..] {
        let sig = key.sign(scalar(4), *torsion, &message());
        assert!(
            cofactored(&key.ek, &message(), &sig),
            "a batch could accept it"
        );
        assert!(!verdict(key.ek, sig), "verify_strict refuses it");
    }
}

#[test]
fn the_identity_as_commitment_is_refused_though_the_equation_holds() {
    // R = identity, S = k·a: [S]B − [k]A = 0 = R.
    let key = Key::new(scalar(3), EdwardsPoint::default());
    let r = EdwardsPoint::default().compress().to_bytes();
    let s = challenge(&r, &key.ek, &message()) * key.a;
    let sig = signature(r, s.to_bytes());
    let ek = ed25519_dalek::VerifyingKey::from_bytes(&key.ek).expect("a point");
    let lax = ed25519_dalek::Verifier::verify(
        &ek,
        &message(),
        &ed25519_dalek::Signature::from_bytes(&sig),
    );
    assert!(lax.is_ok(), "lax verification accepts it");
    assert!(!verdict(key.ek, sig));
}

#[test]
fn a_small_order_ephemeral_key_is_refused_though_its_signature_fits_any_message() {
    // A = identity, S = r: [S]B − [k]A = [r]B = R, whatever the message.
    for torsion in &EIGHT_TORSION {
        let key = Key::new(Scalar::ZERO, *torsion);
        let sig = signature(
            EdwardsPoint::mul_base(&scalar(4)).compress().to_bytes(),
            scalar(4).to_bytes(),
        );
        assert!(cofactored(&key.ek, &message(), &sig));
        if torsion.is_identity() {
            assert!(oracle_equation_holds(&key.ek, b"any other message", &sig));
        }
        assert!(!verdict(key.ek, sig));
    }
}

#[test]
fn a_mixed_order_ephemeral_key_verifies_exactly_when_its_torsion_cancels() {
    // [S]B − [k]A = [r]B − [k]T: equal to R = [r]B only when [k]T = 0,
    // which for T of order 8 is one commitment in eight.
    let torsion = EIGHT_TORSION[1];
    let key = Key::new(scalar(3), torsion);
    let (mut accepted, mut refused) = (0, 0);
    for seed in 0..64u8 {
        let r = scalar(seed);
        let sig = key.sign(r, EdwardsPoint::default(), &message());
        let k = challenge(
            &sig[..32].try_into().expect("32 bytes"),
            &key.ek,
            &message(),
        );
        let cancels = (torsion * k).is_identity();
        assert!(cofactored(&key.ek, &message(), &sig));
        assert_eq!(verdict(key.ek, sig), cancels);
        if cancels {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn a_scalar_at_or_above_the_group_order_is_refused() {
    let key = Key::new(scalar(3), EdwardsPoint::default());
    let sig = key.sign(scalar(4), EdwardsPoint::default(), &message());
    assert!(verdict(key.ek, sig));
    // S + ℓ: the same residue, a non-canonical encoding.
    let mut s = [0u8; 32];
    s.copy_from_slice(&sig[32..]);
    let ell: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (byte, add) in s.iter_mut().zip(ell) {
        let sum = u16::from(*byte) + u16::from(add) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + ℓ fits in 32 bytes");
    assert!(cofactored(
        &key.ek,
        &message(),
        &signature(sig[..32].try_into().expect("32"), s)
    ));
    assert!(!verdict(
        key.ek,
        signature(sig[..32].try_into().expect("32"), s)
    ));
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
    assert!(!verdict(key.ek, bad_r));
    assert!(!verdict(not_a_point, sig));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random keys and commitments, with or without torsion in either, and
    /// random damage to the signature: our verifier decides as the spec's
    /// definition does, every time.
    #[test]
    fn the_verifier_decides_as_the_spec_defines(
        a in any::<[u8; 32]>(),
        r in any::<[u8; 32]>(),
        key_torsion in prop_oneof![3 => Just(0usize), 1 => 0usize..8],
        commitment_torsion in prop_oneof![3 => Just(0usize), 1 => 0usize..8],
        damage in proptest::option::weighted(0.5, (0usize..64, 0u8..8)),
    ) {
        let key = Key::new(Scalar::from_bytes_mod_order(a), EIGHT_TORSION[key_torsion]);
        let mut sig = key.sign(
            Scalar::from_bytes_mod_order(r),
            EIGHT_TORSION[commitment_torsion],
            &message(),
        );
        if let Some((byte, bit)) = damage {
            sig[byte] ^= 1 << bit;
        }
        verdict(key.ek, sig);
    }
}
