//! The Signet-Proof v1 test vectors (`tests/vectors/*.json`), replayed byte
//! for byte against `signet-core`, plus property tests of the header parser.
//!
//! The vectors are normative (see `tests/vectors/README.md`): every layer of
//! every positive proof must be reproduced exactly, every negative header must
//! be refused as `INVALID_PROOF`, and every edge header must parse and verify.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod content_digest;
mod fuzz_corpus;
mod signature_edges;
mod validity;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use signet_core::{
    base64url, canonical_request, parse_public_key_hex, public_key_hex, signing_key_from_pem,
    signing_key_to_pem, Binding, BindingMessage, BodyDigest, ErrorCode, Limits, ParseError,
    ProofHeader, Purpose, RequestParts, SigningKey, VerifiedProof, Verifier, VerifyError,
    VerifyingKey, MAX_HEADER_LEN, TOKEN_STORE_MESSAGE,
};

// ---------------------------------------------------------------------------
// Vector files
// ---------------------------------------------------------------------------

const POSITIVE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/positive.json"
));
const PARSE_NEGATIVE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/parse_negative.json"
));
const PARSE_POSITIVE_EDGE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/parse_positive_edge.json"
));

#[derive(Debug, Deserialize)]
struct PositiveFile {
    spec: String,
    keys: VectorKeys,
    cases: Vec<PositiveCase>,
}

#[derive(Debug, Deserialize)]
struct VectorKeys {
    master_seed_hex: String,
    master_public_hex: String,
    master_private_pem: String,
    untrusted_master_seed_hex: String,
    untrusted_master_public_hex: String,
}

#[derive(Debug, Clone, Deserialize)]
struct PositiveCase {
    id: String,
    master_seed_hex: String,
    master_public_hex: String,
    mk: String,
    ephemeral_seed_hex: String,
    ephemeral_public_hex: String,
    ek: String,
    exp: u64,
    pur: String,
    binding_msg_hex: String,
    b: String,
    b_hex: String,
    method: String,
    target: String,
    body: Option<String>,
    body_hex: String,
    body_digest: String,
    ts: u64,
    n_hex: String,
    n: String,
    canonical: String,
    s: String,
    s_hex: String,
    header: String,
    verify_at: u64,
}

#[derive(Debug, Deserialize)]
struct NegativeFile {
    spec: String,
    base_case: String,
    cases: Vec<NegativeCase>,
}

#[derive(Debug, Deserialize)]
struct NegativeCase {
    id: String,
    header: String,
    status: u16,
    code: String,
    wire: bool,
    length_bytes: Option<usize>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EdgeFile {
    spec: String,
    cases: Vec<EdgeCase>,
}

#[derive(Debug, Clone, Deserialize)]
struct EdgeCase {
    id: String,
    header: String,
    length_bytes: usize,
    expect: EdgeExpect,
    request: EdgeRequest,
    verify_at: String,
}

#[derive(Debug, Clone, Deserialize)]
struct EdgeExpect {
    mk_hex: String,
    ek_hex: String,
    exp: String,
    pur: String,
    b_hex: String,
    ts: String,
    n_hex: String,
    s_hex: String,
    extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
struct EdgeRequest {
    method: String,
    target: String,
    body_hex: String,
}

fn positive() -> PositiveFile {
    let file: PositiveFile = serde_json::from_str(POSITIVE_JSON).expect("positive.json");
    assert_eq!(file.spec, "signet-proof-v1.md");
    assert!(!file.cases.is_empty(), "positive.json has no cases");
    file
}

fn negative() -> NegativeFile {
    let file: NegativeFile =
        serde_json::from_str(PARSE_NEGATIVE_JSON).expect("parse_negative.json");
    assert_eq!(file.spec, "signet-proof-v1.md");
    assert!(!file.cases.is_empty(), "parse_negative.json has no cases");
    file
}

fn edge() -> EdgeFile {
    let file: EdgeFile =
        serde_json::from_str(PARSE_POSITIVE_EDGE_JSON).expect("parse_positive_edge.json");
    assert_eq!(file.spec, "signet-proof-v1.md");
    assert!(
        !file.cases.is_empty(),
        "parse_positive_edge.json has no cases"
    );
    file
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn unhex<const N: usize>(text: &str) -> [u8; N] {
    let bytes = hex::decode(text).unwrap_or_else(|e| panic!("bad hex {text:?}: {e}"));
    bytes
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("expected {N} bytes, got {}", b.len()))
}

fn signing_key(seed_hex: &str) -> SigningKey {
    SigningKey::from_bytes(&unhex::<32>(seed_hex))
}

/// A verifier that trusts exactly `keys.master_public_hex`, default limits.
fn trusting_verifier(keys: &VectorKeys) -> Verifier {
    let master = parse_public_key_hex(&keys.master_public_hex).unwrap();
    Verifier::new([master], Limits::default())
}

/// An owned request (method, target, body) that lends out [`RequestParts`].
#[derive(Debug, Clone)]
struct OwnedRequest {
    method: String,
    target: String,
    body: Vec<u8>,
}

impl OwnedRequest {
    fn of_positive(case: &PositiveCase) -> Self {
        OwnedRequest {
            method: case.method.clone(),
            target: case.target.clone(),
            body: hex::decode(&case.body_hex).unwrap(),
        }
    }

    fn of_edge(request: &EdgeRequest) -> Self {
        OwnedRequest {
            method: request.method.clone(),
            target: request.target.clone(),
            body: hex::decode(&request.body_hex).unwrap(),
        }
    }

    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            target: &self.target,
            body_digest: BodyDigest::of(&self.body),
        }
    }
}

/// Parse, steps 3–6 at `now`, then steps 8–9 against `request`.
fn parse_and_verify(
    verifier: &Verifier,
    header: &[u8],
    request: &RequestParts<'_>,
    now: u64,
) -> Result<Result<VerifiedProof, VerifyError>, ParseError> {
    let proof = ProofHeader::parse(header)?;
    Ok(verifier.check(&proof, now).and_then(|c| c.verify(request)))
}

fn verify(
    verifier: &Verifier,
    proof: &ProofHeader,
    request: &RequestParts<'_>,
    now: u64,
) -> Result<VerifiedProof, VerifyError> {
    verifier.check(proof, now).and_then(|c| c.verify(request))
}

/// Fails with every collected problem at once, so a regression names every
/// vector it breaks.
fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} {what} failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// positive.json — keys
// ---------------------------------------------------------------------------

#[test]
fn vector_master_keys_are_the_rfc8032_keys_and_the_pem_holds_the_same_seed() {
    let keys = positive().keys;
    // RFC 8032 §7.1 TEST 1.
    assert_eq!(
        keys.master_public_hex,
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );

    let master = signing_key(&keys.master_seed_hex);
    assert_eq!(
        public_key_hex(&master.verifying_key()),
        keys.master_public_hex
    );
    assert_eq!(
        parse_public_key_hex(&keys.master_public_hex).unwrap(),
        master.verifying_key()
    );
    assert_eq!(
        parse_public_key_hex(&keys.master_public_hex.to_uppercase()).unwrap(),
        master.verifying_key(),
        "public keys read in either case"
    );

    let from_pem = signing_key_from_pem(&keys.master_private_pem).unwrap();
    assert_eq!(from_pem.to_bytes(), master.to_bytes());
    assert_eq!(
        from_pem.verifying_key().to_bytes(),
        master.verifying_key().to_bytes()
    );
    // What we write, we read back (the vector's PEM is PKCS#8 v1; ours may
    // also carry the public key, so only the key is compared).
    let written = signing_key_to_pem(&master).unwrap();
    assert!(written.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(
        signing_key_from_pem(&written).unwrap().to_bytes(),
        master.to_bytes()
    );

    let untrusted = signing_key(&keys.untrusted_master_seed_hex);
    assert_eq!(
        public_key_hex(&untrusted.verifying_key()),
        keys.untrusted_master_public_hex
    );
    assert_ne!(keys.untrusted_master_public_hex, keys.master_public_hex);
}

#[test]
fn every_positive_case_derives_its_public_keys_from_its_seeds() {
    let file = positive();
    let mut failures = Vec::new();
    for case in &file.cases {
        let master = signing_key(&case.master_seed_hex).verifying_key();
        let ephemeral = signing_key(&case.ephemeral_seed_hex).verifying_key();
        let checks = [
            (
                "master_seed_hex",
                case.master_seed_hex == file.keys.master_seed_hex,
            ),
            (
                "master_public_hex",
                public_key_hex(&master) == case.master_public_hex,
            ),
            ("mk", base64url::encode(master.as_bytes()) == case.mk),
            (
                "ephemeral_public_hex",
                public_key_hex(&ephemeral) == case.ephemeral_public_hex,
            ),
            ("ek", base64url::encode(ephemeral.as_bytes()) == case.ek),
            (
                "mk decodes",
                base64url::decode_array::<32>(&case.mk) == Some(master.to_bytes()),
            ),
            (
                "ek decodes",
                base64url::decode_array::<32>(&case.ek) == Some(ephemeral.to_bytes()),
            ),
        ];
        for (field, ok) in checks {
            if !ok {
                failures.push(format!("{}: {field}", case.id));
            }
        }
    }
    // RFC 8032 §7.1 TEST 2 is the ephemeral key of get_with_query.
    let first = file
        .cases
        .iter()
        .find(|c| c.id == "get_with_query")
        .unwrap();
    assert_eq!(
        first.ephemeral_public_hex,
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
    );
    assert_no_failures("positive key derivations", &failures);
}

// ---------------------------------------------------------------------------
// positive.json — binding, canonical request, header
// ---------------------------------------------------------------------------

#[test]
fn binding_message_and_binding_signature_match_every_positive_case() {
    let file = positive();
    for case in &file.cases {
        let id = &case.id;
        let master = signing_key(&case.master_seed_hex);
        let ephemeral = signing_key(&case.ephemeral_seed_hex);
        let pur = Purpose::new(&case.pur).unwrap_or_else(|e| panic!("{id}: purpose: {e}"));
        assert_eq!(pur.as_str(), case.pur, "{id}: purpose text");

        let message = BindingMessage::new(&ephemeral.verifying_key().to_bytes(), case.exp, &pur);
        assert_eq!(
            hex::encode(message.as_bytes()),
            case.binding_msg_hex,
            "{id}: binding_msg_hex"
        );

        let binding = Binding::sign(&master, &ephemeral.verifying_key(), case.exp, pur);
        assert_eq!(hex::encode(binding.b), case.b_hex, "{id}: b_hex");
        assert_eq!(base64url::encode(&binding.b), case.b, "{id}: b");
        assert_eq!(binding.mk, master.verifying_key().to_bytes(), "{id}: mk");
        assert_eq!(binding.ek, ephemeral.verifying_key().to_bytes(), "{id}: ek");
        assert_eq!(binding.exp, case.exp, "{id}: exp");
        // The binding signature is plain Ed25519 over the message bytes.
        master
            .verifying_key()
            .verify_strict(
                message.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&unhex::<64>(&case.b_hex)),
            )
            .unwrap_or_else(|e| panic!("{id}: b does not verify over binding_msg: {e}"));
    }
}

#[test]
fn body_digest_canonical_request_and_request_signature_match_every_positive_case() {
    let file = positive();
    for case in &file.cases {
        let id = &case.id;
        let body = hex::decode(&case.body_hex).unwrap();
        if let Some(text) = &case.body {
            assert_eq!(text.as_bytes(), body, "{id}: body and body_hex disagree");
        }

        let digest = BodyDigest::of(&body);
        assert_eq!(digest.to_base64url(), case.body_digest, "{id}: body_digest");
        assert_eq!(digest.to_base64url().len(), 43, "{id}: digest length");
        // Independently: unpadded base64url of SHA-256.
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(&body)),
            case.body_digest,
            "{id}: body_digest (independent)"
        );

        let n = unhex::<16>(&case.n_hex);
        assert_eq!(base64url::encode(&n), case.n, "{id}: n");
        let request = RequestParts {
            method: &case.method,
            target: &case.target,
            body_digest: digest,
        };
        let canonical = canonical_request(&request, case.ts, &n);
        assert_eq!(
            String::from_utf8(canonical.clone()).unwrap(),
            case.canonical,
            "{id}: canonical"
        );
        assert!(!canonical.ends_with(b"\n"), "{id}: no trailing newline");

        let ephemeral = signing_key(&case.ephemeral_seed_hex);
        let master = signing_key(&case.master_seed_hex);
        let pur = Purpose::new(&case.pur).unwrap();
        let binding = Binding::sign(&master, &ephemeral.verifying_key(), case.exp, pur);
        let proof = binding.sign_request(&ephemeral, &request, case.ts, n);
        assert_eq!(hex::encode(proof.s), case.s_hex, "{id}: s_hex");
        assert_eq!(base64url::encode(&proof.s), case.s, "{id}: s");
    }
}

#[test]
fn signing_every_positive_case_reproduces_its_header_exactly() {
    let file = positive();
    for case in &file.cases {
        let master = signing_key(&case.master_seed_hex);
        let ephemeral = signing_key(&case.ephemeral_seed_hex);
        let request = OwnedRequest::of_positive(case);
        let binding = Binding::sign(
            &master,
            &ephemeral.verifying_key(),
            case.exp,
            Purpose::new(&case.pur).unwrap(),
        );
        let proof = binding.sign_request(&ephemeral, &request.parts(), case.ts, unhex(&case.n_hex));
        assert_eq!(proof.to_string(), case.header, "{}: header", case.id);
    }
}

#[test]
fn every_positive_header_parses_to_its_fields_and_formats_back_identically() {
    let file = positive();
    for case in &file.cases {
        let id = &case.id;
        let proof = ProofHeader::parse(case.header.as_bytes())
            .unwrap_or_else(|e| panic!("{id}: does not parse: {e}"));
        let expected = ProofHeader {
            mk: unhex(&case.master_public_hex),
            ek: unhex(&case.ephemeral_public_hex),
            exp: case.exp,
            pur: Purpose::new(&case.pur).unwrap(),
            b: unhex(&case.b_hex),
            ts: case.ts,
            n: unhex(&case.n_hex),
            s: unhex(&case.s_hex),
        };
        assert_eq!(proof, expected, "{id}: parsed fields");
        assert_eq!(proof.to_string(), case.header, "{id}: round trip");
        let mut unknown = Vec::new();
        let with = ProofHeader::parse_with(case.header.as_bytes(), |k, v| {
            unknown.push((k.to_owned(), v.to_owned()));
        });
        assert_eq!(with, Ok(expected), "{id}: parse_with");
        assert!(unknown.is_empty(), "{id}: no unknown keys");
    }
}

// ---------------------------------------------------------------------------
// positive.json — verification
// ---------------------------------------------------------------------------

#[test]
fn every_positive_case_verifies_at_verify_at_with_default_limits() {
    let file = positive();
    let verifier = trusting_verifier(&file.keys);
    let cold = trusting_verifier(&file.keys).with_binding_cache_capacity(0);
    for case in &file.cases {
        let id = &case.id;
        let request = OwnedRequest::of_positive(case);
        let proof = ProofHeader::parse(case.header.as_bytes()).unwrap();
        // Twice on the caching verifier (cold, then warm), once without a cache.
        for (label, v) in [
            ("cold", &verifier),
            ("warm", &verifier),
            ("no cache", &cold),
        ] {
            let verified = verify(v, &proof, &request.parts(), case.verify_at)
                .unwrap_or_else(|e| panic!("{id} ({label}): {e}"));
            assert_eq!(verified.master_key(), &proof.mk, "{id}: master key");
            assert_eq!(verified.ephemeral_key(), &proof.ek, "{id}: ephemeral key");
            assert_eq!(verified.expires_at(), case.exp, "{id}: exp");
            assert_eq!(verified.purpose().as_str(), case.pur, "{id}: pur");
            assert_eq!(verified.timestamp(), case.ts, "{id}: ts");
            assert_eq!(verified.nonce(), &unhex::<16>(&case.n_hex), "{id}: n");
            let mut replay_key = proof.ek.to_vec();
            replay_key.extend_from_slice(&proof.n);
            assert_eq!(verified.replay_key().to_vec(), replay_key, "{id}: (ek, n)");
        }
    }
}

#[test]
fn a_proof_is_unknown_key_unless_its_master_key_is_trusted() {
    let file = positive();
    let untrusted_pub = parse_public_key_hex(&file.keys.untrusted_master_public_hex).unwrap();
    let only_untrusted = Verifier::new([untrusted_pub], Limits::default());
    let trusting = trusting_verifier(&file.keys);
    let nobody = Verifier::new(std::iter::empty::<VerifyingKey>(), Limits::default());
    let untrusted_master = signing_key(&file.keys.untrusted_master_seed_hex);
    for case in &file.cases {
        let id = &case.id;
        let request = OwnedRequest::of_positive(case);
        let proof = ProofHeader::parse(case.header.as_bytes()).unwrap();
        assert_eq!(
            only_untrusted.check(&proof, case.verify_at).err(),
            Some(VerifyError::UnknownKey),
            "{id}: verifier trusting only the untrusted key"
        );
        assert_eq!(
            nobody.check(&proof, case.verify_at).err(),
            Some(VerifyError::UnknownKey),
            "{id}: verifier trusting nobody"
        );

        // The same request, bound by the untrusted master key instead.
        let ephemeral = signing_key(&case.ephemeral_seed_hex);
        let foreign = Binding::sign(
            &untrusted_master,
            &ephemeral.verifying_key(),
            case.exp,
            proof.pur,
        )
        .sign_request(&ephemeral, &request.parts(), case.ts, proof.n);
        assert_eq!(
            trusting.check(&foreign, case.verify_at).err(),
            Some(VerifyError::UnknownKey),
            "{id}: proof bound by the untrusted master"
        );
        // UNKNOWN_KEY is refused before any time check.
        assert_eq!(
            trusting.check(&foreign, u64::MAX).err(),
            Some(VerifyError::UnknownKey),
            "{id}: unknown key comes first"
        );
        assert_eq!(
            VerifyError::UnknownKey.code().as_str(),
            "UNKNOWN_KEY",
            "{id}: code"
        );
    }
}

/// Flips `mask` in byte `index` of an ASCII string (stays ASCII, so UTF-8).
fn flip(text: &str, index: usize, mask: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[index] ^= mask;
    String::from_utf8(bytes).unwrap()
}

#[test]
fn one_flipped_bit_in_the_method_target_or_body_breaks_the_request_signature() {
    let file = positive();
    let verifier = trusting_verifier(&file.keys);
    for case in &file.cases {
        let id = &case.id;
        let proof = ProofHeader::parse(case.header.as_bytes()).unwrap();
        let original = OwnedRequest::of_positive(case);
        assert!(verify(&verifier, &proof, &original.parts(), case.verify_at).is_ok());

        let mut variants: Vec<(String, OwnedRequest)> = Vec::new();
        for mask in [0x01, 0x20] {
            // 0x20 is an ASCII case flip: `GET` → `gET`, `%2C` → `%2c`.
            for index in [0, original.method.len() - 1] {
                let mut r = original.clone();
                r.method = flip(&r.method, index, mask);
                variants.push((format!("method[{index}]^{mask:#04x}"), r));
            }
            let last = original.target.len() - 1;
            for index in [0, 1, last / 2, last] {
                let mut r = original.clone();
                r.target = flip(&r.target, index, mask);
                variants.push((format!("target[{index}]^{mask:#04x}"), r));
            }
        }
        if original.body.is_empty() {
            let mut r = original.clone();
            r.body.push(0x00);
            variants.push(("body + one zero byte".into(), r));
        } else {
            for index in [0, original.body.len() - 1] {
                for mask in [0x01, 0x80] {
                    let mut r = original.clone();
                    r.body[index] ^= mask;
                    variants.push((format!("body[{index}]^{mask:#04x}"), r));
                }
            }
            let mut r = original.clone();
            r.body.clear();
            variants.push(("empty body".into(), r));
        }

        for (what, request) in variants {
            assert_eq!(
                verify(&verifier, &proof, &request.parts(), case.verify_at),
                Err(VerifyError::InvalidRequestSignature),
                "{id}: {what}"
            );
        }
    }
}

#[test]
fn a_changed_binding_field_fails_the_binding_signature_even_with_a_warm_cache() {
    let file = positive();
    let warm = trusting_verifier(&file.keys);
    let cold = trusting_verifier(&file.keys).with_binding_cache_capacity(0);
    let other_ek = signing_key(&file.keys.untrusted_master_seed_hex)
        .verifying_key()
        .to_bytes();
    for case in &file.cases {
        let id = &case.id;
        let request = OwnedRequest::of_positive(case);
        let proof = ProofHeader::parse(case.header.as_bytes()).unwrap();
        // Warm the cache with the genuine binding first.
        assert!(verify(&warm, &proof, &request.parts(), case.verify_at).is_ok());

        let mut tampered: Vec<(String, ProofHeader)> = Vec::new();
        for (index, mask) in [(0, 0x01), (31, 0x80), (32, 0x01), (63, 0x01)] {
            let mut p = proof.clone();
            p.b[index] ^= mask;
            tampered.push((format!("b[{index}]^{mask:#04x}"), p));
        }
        if case.exp > case.verify_at {
            let mut p = proof.clone();
            p.exp -= 1;
            tampered.push(("exp - 1".into(), p));
        }
        if case.exp < case.verify_at + 900 {
            let mut p = proof.clone();
            p.exp += 1;
            tampered.push(("exp + 1".into(), p));
        }
        let mut pur = case.pur.clone();
        if pur.len() < 64 {
            pur.push('x');
        } else {
            pur.pop();
        }
        let mut p = proof.clone();
        p.pur = Purpose::new(&pur).unwrap();
        tampered.push((format!("pur {pur:?}"), p));
        let mut p = proof.clone();
        p.ek = other_ek;
        tampered.push(("another ek".into(), p));

        for (what, p) in &tampered {
            for (label, v) in [("warm", &warm), ("cold", &cold)] {
                assert_eq!(
                    verify(v, p, &request.parts(), case.verify_at).err(),
                    Some(VerifyError::InvalidBindingSignature),
                    "{id} ({label}): {what}"
                );
            }
        }
    }
}

#[test]
fn a_changed_request_field_fails_the_request_signature() {
    let file = positive();
    let verifier = trusting_verifier(&file.keys);
    for case in &file.cases {
        let id = &case.id;
        let request = OwnedRequest::of_positive(case);
        let proof = ProofHeader::parse(case.header.as_bytes()).unwrap();

        let mut tampered: Vec<(String, ProofHeader)> = Vec::new();
        for (index, mask) in [(0, 0x01), (31, 0x80), (32, 0x01), (63, 0x01)] {
            let mut p = proof.clone();
            p.s[index] ^= mask;
            tampered.push((format!("s[{index}]^{mask:#04x}"), p));
        }
        for index in [0, 15] {
            let mut p = proof.clone();
            p.n[index] ^= 0x01;
            tampered.push((format!("n[{index}]^0x01"), p));
        }
        for delta in [1i64, -1] {
            let mut p = proof.clone();
            p.ts = p.ts.checked_add_signed(delta).unwrap();
            tampered.push((format!("ts {delta:+}"), p));
        }
        for (what, p) in &tampered {
            assert_eq!(
                verify(&verifier, p, &request.parts(), case.verify_at).err(),
                Some(VerifyError::InvalidRequestSignature),
                "{id}: {what}"
            );
        }
    }
}

#[test]
fn verifying_at_the_wrong_time_gives_the_matching_time_error() {
    let file = positive();
    let verifier = trusting_verifier(&file.keys);
    assert_eq!(
        Limits::default(),
        Limits {
            clock_skew: 30,
            max_binding_ttl: 900
        },
        "spec defaults"
    );
    for case in &file.cases {
        let id = &case.id;
        let request = OwnedRequest::of_positive(case);
        let proof = ProofHeader::parse(case.header.as_bytes()).unwrap();
        let at = |now: u64| verify(&verifier, &proof, &request.parts(), now).map(|_| ());

        // Far future: the binding has expired (and nothing overflows).
        assert_eq!(
            at(case.verify_at + 1_000_000_000),
            Err(VerifyError::BindingExpired),
            "{id}"
        );
        assert_eq!(
            at(u64::MAX),
            Err(VerifyError::BindingExpired),
            "{id}: u64::MAX"
        );
        assert_eq!(
            at(case.exp + 1),
            Err(VerifyError::BindingExpired),
            "{id}: exp + 1"
        );
        // Far past: the binding lives too long from there.
        assert_eq!(at(0), Err(VerifyError::BindingTtlTooLong), "{id}: now = 0");
        assert_eq!(
            at(case.exp - 901),
            Err(VerifyError::BindingTtlTooLong),
            "{id}: exp - now = 901"
        );
        // The request time is 31 s off while the binding is still fine.
        if case.exp >= case.ts + 31 {
            assert_eq!(
                at(case.ts + 31),
                Err(VerifyError::ClockSkew),
                "{id}: ts + 31"
            );
            assert_eq!(at(case.ts + 30), Ok(()), "{id}: ts + 30");
        }
        if case.exp <= case.ts + 900 - 31 {
            assert_eq!(
                at(case.ts - 31),
                Err(VerifyError::ClockSkew),
                "{id}: ts - 31"
            );
            assert_eq!(at(case.ts - 30), Ok(()), "{id}: ts - 30");
        }
    }

    let by_id = |id: &str| file.cases.iter().find(|c| c.id == id).unwrap().clone();
    // head_request: exp = ts + 900, exactly the maximum TTL.
    let head = by_id("head_request");
    assert_eq!(head.exp, head.ts + 900);
    let head_proof = ProofHeader::parse(head.header.as_bytes()).unwrap();
    let head_req = OwnedRequest::of_positive(&head);
    assert!(verify(&verifier, &head_proof, &head_req.parts(), head.ts).is_ok());
    assert_eq!(
        verify(&verifier, &head_proof, &head_req.parts(), head.ts - 1).err(),
        Some(VerifyError::BindingTtlTooLong)
    );
    // delete_request: exp = ts, so now == exp is allowed and one second later is not.
    let delete = by_id("delete_request");
    assert_eq!(delete.exp, delete.ts);
    let delete_proof = ProofHeader::parse(delete.header.as_bytes()).unwrap();
    let delete_req = OwnedRequest::of_positive(&delete);
    assert!(verify(&verifier, &delete_proof, &delete_req.parts(), delete.exp).is_ok());
    assert_eq!(
        verify(
            &verifier,
            &delete_proof,
            &delete_req.parts(),
            delete.exp + 1
        )
        .err(),
        Some(VerifyError::BindingExpired)
    );
}

/// Replaces the value of `key` in a header written in the spec's order.
fn with_field(header: &str, key: &str, value: &str) -> String {
    header
        .split(';')
        .map(|element| match element.split_once('=') {
            Some((k, _)) if k == key => format!("{k}={value}"),
            _ => element.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[test]
fn huge_ts_and_exp_parse_and_fail_as_time_errors_not_parse_errors() {
    let file = positive();
    let verifier = trusting_verifier(&file.keys);
    let max19 = "9999999999999999999";
    for case in &file.cases {
        let id = &case.id;
        let huge_exp = ProofHeader::parse(with_field(&case.header, "exp", max19).as_bytes())
            .unwrap_or_else(|e| panic!("{id}: huge exp must parse: {e}"));
        assert_eq!(huge_exp.exp, 9_999_999_999_999_999_999);
        assert_eq!(
            verifier.check(&huge_exp, case.verify_at).err(),
            Some(VerifyError::BindingTtlTooLong),
            "{id}: huge exp"
        );

        let huge_ts = ProofHeader::parse(with_field(&case.header, "ts", max19).as_bytes())
            .unwrap_or_else(|e| panic!("{id}: huge ts must parse: {e}"));
        assert_eq!(
            verifier.check(&huge_ts, case.verify_at).err(),
            Some(VerifyError::ClockSkew),
            "{id}: huge ts"
        );
        assert_eq!(VerifyError::ClockSkew.code().status(), 401);
        assert_eq!(VerifyError::BindingTtlTooLong.code().status(), 401);
    }
}

// ---------------------------------------------------------------------------
// parse_negative.json
// ---------------------------------------------------------------------------

#[test]
fn every_negative_vector_is_rejected_as_invalid_proof() {
    let file = negative();
    assert!(
        positive().cases.iter().any(|c| c.id == file.base_case),
        "base_case {} is a positive case",
        file.base_case
    );
    let mut failures = Vec::new();
    for case in &file.cases {
        let id = &case.id;
        if case.status != ErrorCode::InvalidProof.status()
            || case.code != ErrorCode::InvalidProof.as_str()
        {
            failures.push(format!(
                "{id}: vector expects {} {}, but INVALID_PROOF is {} {}",
                case.status,
                case.code,
                ErrorCode::InvalidProof.status(),
                ErrorCode::InvalidProof.as_str()
            ));
        }
        if let Some(len) = case.length_bytes {
            if len != case.header.len() {
                failures.push(format!("{id}: length_bytes {len} != {}", case.header.len()));
            }
        }
        match ProofHeader::parse(case.header.as_bytes()) {
            Ok(proof) => failures.push(format!("{id} (wire={}): accepted as {proof:?}", case.wire)),
            Err(error) => {
                let expected = case
                    .message
                    .as_deref()
                    .unwrap_or(ErrorCode::InvalidProof.message());
                if error.client_message() != expected {
                    failures.push(format!(
                        "{id}: client message {:?} (from {error:?}), expected {expected:?}",
                        error.client_message()
                    ));
                }
                let is_token_store = error == ParseError::TokenStoreForm;
                if is_token_store != case.message.is_some() {
                    failures.push(format!(
                        "{id}: got {error:?}, token-store form expected: {}",
                        case.message.is_some()
                    ));
                }
            }
        }
    }
    assert_no_failures("negative vectors", &failures);
}

#[test]
fn token_store_vectors_carry_exactly_the_spec_sentence() {
    let file = negative();
    let token_store: Vec<&NegativeCase> =
        file.cases.iter().filter(|c| c.message.is_some()).collect();
    assert!(!token_store.is_empty());
    for case in token_store {
        assert_eq!(
            case.message.as_deref(),
            Some(TOKEN_STORE_MESSAGE),
            "{}",
            case.id
        );
    }
}

/// Drops the element with `key` from a header.
fn without_field(header: &str, key: &str) -> String {
    header
        .split(';')
        .filter(|element| element.split_once('=').map(|(k, _)| k) != Some(key))
        .collect::<Vec<_>>()
        .join(";")
}

/// §4: "lacks `mk` *or* `ek`" — the vectors only drop both, so this drops one
/// at a time from the base case and adds each token-store key in turn.
#[test]
fn lacking_only_mk_or_only_ek_beside_a_token_store_key_is_the_token_store_form() {
    let file = positive();
    let base = &file.cases[0].header;
    for missing in ["mk", "ek"] {
        let stripped = without_field(base, missing);
        assert_eq!(
            ProofHeader::parse(stripped.as_bytes()),
            Err(ParseError::MissingField(missing)),
            "without {missing} and without token-store keys: generic refusal"
        );
        for legacy in ["m=compact", "jti=jmFY8MteBOh-nBWrBdc0ww", "t=1700000000"] {
            let header = format!("{stripped};{legacy}");
            let error = ProofHeader::parse(header.as_bytes()).unwrap_err();
            assert_eq!(
                error,
                ParseError::TokenStoreForm,
                "without {missing}, with {legacy}"
            );
            assert_eq!(error.client_message(), TOKEN_STORE_MESSAGE);
        }
    }
}

#[test]
fn negative_vectors_are_also_rejected_by_parse_with_without_reporting_unknown_keys() {
    let file = negative();
    let mut failures = Vec::new();
    for case in &file.cases {
        let mut reported = Vec::new();
        let result = ProofHeader::parse_with(case.header.as_bytes(), |k, v| {
            reported.push(format!("{k}={v}"));
        });
        if result.is_ok() {
            failures.push(format!("{}: accepted", case.id));
        }
        if !reported.is_empty() {
            failures.push(format!(
                "{}: reported {reported:?} for an invalid header",
                case.id
            ));
        }
    }
    assert_no_failures("negative vectors (parse_with)", &failures);
}

// ---------------------------------------------------------------------------
// parse_positive_edge.json
// ---------------------------------------------------------------------------

fn expected_edge_proof(case: &EdgeCase) -> Result<ProofHeader, String> {
    let e = &case.expect;
    let int = |name: &str, text: &str| {
        text.parse::<u64>()
            .map_err(|err| format!("expect.{name} {text:?}: {err}"))
    };
    Ok(ProofHeader {
        mk: unhex(&e.mk_hex),
        ek: unhex(&e.ek_hex),
        exp: int("exp", &e.exp)?,
        pur: Purpose::new(&e.pur).map_err(|err| format!("expect.pur: {err}"))?,
        b: unhex(&e.b_hex),
        ts: int("ts", &e.ts)?,
        n: unhex(&e.n_hex),
        s: unhex(&e.s_hex),
    })
}

#[test]
fn every_edge_vector_parses_to_its_expected_fields_and_unknown_elements() {
    let file = edge();
    let mut failures = Vec::new();
    for case in &file.cases {
        let id = &case.id;
        if case.length_bytes != case.header.len() {
            failures.push(format!(
                "{id}: length_bytes {} != {}",
                case.length_bytes,
                case.header.len()
            ));
        }
        if case.header.len() > MAX_HEADER_LEN {
            failures.push(format!("{id}: longer than {MAX_HEADER_LEN} bytes"));
        }
        let expected = match expected_edge_proof(case) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{id}: {e}"));
                continue;
            }
        };
        let mut unknown: Vec<(String, String)> = Vec::new();
        let parsed = ProofHeader::parse_with(case.header.as_bytes(), |k, v| {
            unknown.push((k.to_owned(), v.to_owned()));
        });
        match parsed {
            Err(e) => failures.push(format!("{id}: rejected: {e:?}")),
            Ok(proof) if proof != expected => {
                failures.push(format!("{id}: parsed {proof:?}, expected {expected:?}"));
            }
            Ok(_) => {}
        }
        if ProofHeader::parse(case.header.as_bytes()) != Ok(expected.clone()) {
            failures.push(format!("{id}: parse and parse_with disagree"));
        }
        let reported: BTreeMap<String, String> = unknown.iter().cloned().collect();
        if reported.len() != unknown.len() {
            failures.push(format!(
                "{id}: an unknown key was reported twice: {unknown:?}"
            ));
        }
        if reported != case.expect.extra {
            failures.push(format!(
                "{id}: unknown elements {reported:?}, expected {:?}",
                case.expect.extra
            ));
        }
    }
    assert_no_failures("edge vectors", &failures);
}

#[test]
fn every_edge_vector_verifies_at_verify_at_with_its_request() {
    let keys = positive().keys;
    let verifier = trusting_verifier(&keys);
    let mut failures = Vec::new();
    for case in &edge().cases {
        let request = OwnedRequest::of_edge(&case.request);
        let now: u64 = case.verify_at.parse().unwrap();
        match parse_and_verify(&verifier, case.header.as_bytes(), &request.parts(), now) {
            Ok(Ok(verified)) => {
                if verified.purpose().as_str() != case.expect.pur {
                    failures.push(format!("{}: purpose {:?}", case.id, verified.purpose()));
                }
            }
            Ok(Err(e)) => failures.push(format!("{}: {e:?}", case.id)),
            Err(e) => failures.push(format!("{}: does not parse: {e:?}", case.id)),
        }
    }
    assert_no_failures("edge vector verifications", &failures);
}

#[test]
fn edge_vectors_format_back_to_a_canonical_header_that_parses_identically() {
    let mut failures = Vec::new();
    for case in &edge().cases {
        let Ok(proof) = ProofHeader::parse(case.header.as_bytes()) else {
            failures.push(format!("{}: does not parse", case.id));
            continue;
        };
        let canonical = proof.to_string();
        if ProofHeader::parse(canonical.as_bytes()).as_ref() != Ok(&proof) {
            failures.push(format!("{}: canonical form {canonical:?}", case.id));
        }
    }
    assert_no_failures("edge vector re-formatting", &failures);
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

fn arb_purpose() -> impl Strategy<Value = Purpose> {
    "[A-Za-z0-9._:/-]{0,64}".prop_map(|p| Purpose::new(&p).unwrap())
}

/// The largest integer §4 can write: 19 digits.
const MAX_WIRE_INT: u64 = 9_999_999_999_999_999_999;

/// `exp` and `ts` values the header can carry, with the edges weighted in.
fn arb_wire_int() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0),
        1 => Just(MAX_WIRE_INT),
        1 => (MAX_WIRE_INT - 1000)..=MAX_WIRE_INT,
        1 => 1_600_000_000u64..2_000_000_000,
        6 => 0..=MAX_WIRE_INT,
    ]
}

fn arb_proof() -> impl Strategy<Value = ProofHeader> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        arb_wire_int(),
        arb_purpose(),
        any::<[u8; 64]>(),
        arb_wire_int(),
        any::<[u8; 16]>(),
        any::<[u8; 64]>(),
    )
        .prop_map(|(mk, ek, exp, pur, b, ts, n, s)| ProofHeader {
            mk,
            ek,
            exp,
            pur,
            b,
            ts,
            n,
            s,
        })
}

/// One `key=value` element, mostly shaped like a real one.
fn arb_element() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => prop::sample::select(vec![
            "mk", "ek", "exp", "pur", "b", "ts", "n", "s", "m", "jti", "t", "v1",
        ])
        .prop_map(str::to_owned),
        2 => "[a-z0-9_-]{0,33}",
        1 => "[!-~]{0,4}",
    ];
    let value = prop_oneof![
        3 => "[A-Za-z0-9_-]{0,90}",
        2 => "[0-9]{0,21}",
        2 => "[A-Za-z0-9._:/-]{0,66}",
        2 => "[!-:<-~]{0,40}",
        1 => "[ -~]{0,8}",
    ];
    prop_oneof![
        10 => (key, value).prop_map(|(k, v)| format!("{k}={v}")),
        1 => "[!-~]{0,6}",
    ]
}

fn arb_near_valid_header() -> impl Strategy<Value = String> {
    prop::collection::vec(arb_element(), 0..14).prop_map(|elements| {
        let mut header = String::from("v1");
        for element in elements {
            header.push(';');
            header.push_str(&element);
        }
        header
    })
}

/// A signed header from the vectors, with its request and `verify_at`.
struct SignedHeader {
    header: String,
    request: OwnedRequest,
    now: u64,
}

/// Every signed header the vectors hold, and a verifier that trusts the
/// vectors' master key (built once for all property-test cases).
struct SignedCorpus {
    headers: Vec<SignedHeader>,
    verifier: Verifier,
}

fn signed_corpus() -> &'static SignedCorpus {
    static CORPUS: OnceLock<SignedCorpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let file = positive();
        let mut headers: Vec<SignedHeader> = file
            .cases
            .iter()
            .map(|c| SignedHeader {
                header: c.header.clone(),
                request: OwnedRequest::of_positive(c),
                now: c.verify_at,
            })
            .collect();
        headers.extend(edge().cases.iter().map(|c| SignedHeader {
            header: c.header.clone(),
            request: OwnedRequest::of_edge(&c.request),
            now: c.verify_at.parse().unwrap(),
        }));
        SignedCorpus {
            headers,
            verifier: trusting_verifier(&file.keys),
        }
    })
}

proptest! {
    #[test]
    fn any_formatted_proof_parses_back_to_itself(proof in arb_proof()) {
        let text = proof.to_string();
        prop_assert!(text.len() <= MAX_HEADER_LEN);
        prop_assert_eq!(ProofHeader::parse(text.as_bytes()), Ok(proof));
    }

    /// §4 integers have at most 19 digits, so a `u64` of 10^19 or more has no
    /// header form: what `Display` writes for it (20 digits) is refused.
    #[test]
    fn a_proof_with_a_20_digit_exp_or_ts_is_refused_not_misread(
        proof in arb_proof(),
        huge in (MAX_WIRE_INT + 1)..=u64::MAX,
        in_ts in any::<bool>(),
    ) {
        let mut proof = proof;
        let field = if in_ts { proof.ts = huge; "ts" } else { proof.exp = huge; "exp" };
        prop_assert_eq!(
            ProofHeader::parse(proof.to_string().as_bytes()),
            Err(ParseError::InvalidValue(field))
        );
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..5000)) {
        let _ = ProofHeader::parse(&bytes);
    }

    #[test]
    fn parsing_near_valid_headers_never_panics_and_what_parses_reformats_identically(
        header in arb_near_valid_header()
    ) {
        let mut unknown = 0usize;
        let parsed = ProofHeader::parse_with(header.as_bytes(), |_, _| unknown += 1);
        if let Ok(proof) = parsed {
            prop_assert_eq!(ProofHeader::parse(proof.to_string().as_bytes()), Ok(proof));
        } else {
            prop_assert_eq!(unknown, 0, "unknown keys reported for a rejected header");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_one_byte_change_to_a_signed_header_never_verifies_as_a_different_proof(
        which in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        replacement in prop_oneof![any::<u8>(), 0x21u8..=0x7e],
    ) {
        let corpus = signed_corpus();
        let signed = which.get(&corpus.headers);
        let original = ProofHeader::parse(signed.header.as_bytes()).unwrap();

        let mut mutated = signed.header.clone().into_bytes();
        let index = position.index(mutated.len());
        mutated[index] = replacement;

        if let Ok(Ok(verified)) = parse_and_verify(&corpus.verifier, &mutated, &signed.request.parts(), signed.now) {
            let proof = ProofHeader::parse(&mutated).unwrap();
            prop_assert_eq!(&proof, &original, "byte {} -> {:#04x}", index, replacement);
            prop_assert_eq!(verified.replay_key(), {
                let mut key = [0u8; 48];
                key[..32].copy_from_slice(&original.ek);
                key[32..].copy_from_slice(&original.n);
                key
            });
        }
    }
}
