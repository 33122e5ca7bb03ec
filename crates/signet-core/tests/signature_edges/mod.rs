//! `signature_edges.json` (spec §5 "Signature validity", amendment 3),
//! replayed byte for byte: every (key, message, signature) triple through
//! the one verification function, every complete proof through
//! [`Verifier`] at its `verify_at`. Only the `amendment3` verdicts and the
//! `expect_amendment3` outcomes are normative; the other rules' verdicts
//! are informative and not asserted.

use serde::Deserialize;
use signet_core::{
    parse_public_key_hex, verify_signature, BodyDigest, Limits, ProofHeader, RequestParts,
    SignatureError, ValidKey, Verifier, VerifyError,
};

use crate::validity::oracle;

const SIGNATURE_EDGES_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/signature_edges.json"
));

#[derive(Debug, Deserialize)]
struct EdgesFile {
    spec: String,
    signatures: Vec<SignatureCase>,
    proofs: Vec<ProofCase>,
}

#[derive(Debug, Deserialize)]
struct SignatureCase {
    id: String,
    public_key_hex: String,
    message_hex: String,
    signature_hex: String,
    amendment3: bool,
    amendment3_refused_by: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct ProofCase {
    id: String,
    master_public_hex: String,
    header: String,
    method: String,
    target: String,
    body_hex: String,
    body_digest: String,
    canonical: String,
    ts: u64,
    n_hex: String,
    verify_at: u64,
    expect_amendment3: Expected,
}

#[derive(Debug, Deserialize)]
struct Expected {
    status: u16,
    code: Option<String>,
    step: Option<u8>,
}

fn edges() -> EdgesFile {
    let file: EdgesFile = serde_json::from_str(SIGNATURE_EDGES_JSON).expect("signature_edges.json");
    assert_eq!(file.spec, "signet-proof-v1.md");
    assert!(!file.signatures.is_empty() && !file.proofs.is_empty());
    file
}

fn unhex<const N: usize>(text: &str) -> [u8; N] {
    hex::decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .unwrap_or_else(|| panic!("expected {N} bytes of hex: {text:?}"))
}

/// The outcome the vectors write for a verification result.
fn outcome(result: &Result<(), VerifyError>) -> (u16, Option<&'static str>, Option<u8>) {
    match result {
        Ok(()) => (200, None, None),
        Err(error) => {
            let step = match error {
                VerifyError::InvalidBindingSignature => Some(8),
                VerifyError::InvalidRequestSignature => Some(9),
                _ => None,
            };
            (error.code().status(), Some(error.code().as_str()), step)
        }
    }
}

#[test]
fn every_edge_proof_gets_its_amendment3_outcome_at_verify_at_cold_and_warm() {
    let file = edges();
    let mut failures = Vec::new();
    for case in &file.proofs {
        let id = &case.id;
        let master = parse_public_key_hex(&case.master_public_hex).expect("the vectors' master");
        let warm = Verifier::new([master], Limits::default());
        let cold = Verifier::new([master], Limits::default()).with_binding_cache_capacity(0);
        let body = hex::decode(&case.body_hex).expect("body_hex");
        let request = RequestParts {
            method: &case.method,
            target: &case.target,
            body_digest: BodyDigest::of(&body),
        };
        assert_eq!(request.body_digest.to_base64url(), case.body_digest, "{id}");
        let canonical = signet_core::canonical_request(&request, case.ts, &unhex(&case.n_hex));
        assert_eq!(canonical, case.canonical.as_bytes(), "{id}: canonical");
        let proof = ProofHeader::parse(case.header.as_bytes())
            .unwrap_or_else(|e| panic!("{id}: does not parse: {e}"));
        let expected = (
            case.expect_amendment3.status,
            case.expect_amendment3.code.as_deref(),
            case.expect_amendment3.step,
        );
        // Cold, then warm (a second time on the caching verifier), then
        // without any cache: the cache never changes a verdict.
        for (label, verifier) in [("cold", &warm), ("warm", &warm), ("no cache", &cold)] {
            let result = verifier
                .check(&proof, case.verify_at)
                .and_then(|checked| checked.verify(&request))
                .map(|_| ());
            let got = outcome(&result);
            if got != expected {
                failures.push(format!(
                    "{id} ({label}): got {got:?} ({result:?}), expected {expected:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} edge proofs failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn every_edge_signature_gets_its_amendment3_verdict_from_the_one_function() {
    let file = edges();
    let mut failures = Vec::new();
    for case in &file.signatures {
        let id = &case.id;
        let key: [u8; 32] = unhex(&case.public_key_hex);
        let signature: [u8; 64] = unhex(&case.signature_hex);
        let message = hex::decode(&case.message_hex).expect("message_hex");
        let result = verify_signature(&key, &message, &signature);
        if result.is_ok() != case.amendment3 {
            failures.push(format!(
                "{id}: got {result:?}, amendment3 says valid = {}",
                case.amendment3
            ));
        }
        // Informative in the vectors, but our rules run in the spec's
        // order, so the rule that refuses is the one they name.
        if result.err().map(SignatureError::rule) != case.amendment3_refused_by {
            failures.push(format!(
                "{id}: refused by {result:?}, the vectors name rule {:?}",
                case.amendment3_refused_by
            ));
        }
        // The key-first path the verifier's cache uses gives the same answer.
        let key_first = ValidKey::new(&key).and_then(|k| k.verify(&message, &signature));
        if key_first != result {
            failures.push(format!(
                "{id}: ValidKey gives {key_first:?}, not {result:?}"
            ));
        }
        // The tests' oracle, written from the spec's words, agrees too.
        if oracle(&key, &message, &signature) != case.amendment3_refused_by {
            failures.push(format!("{id}: the oracle disagrees with the vectors"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} edge signatures failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn the_edge_vectors_cover_every_way_the_rules_differ() {
    let file = edges();
    let accepted = file.signatures.iter().filter(|c| c.amendment3).count();
    let refused_by = |rule| {
        file.signatures
            .iter()
            .filter(|c| c.amendment3_refused_by == Some(rule))
            .count()
    };
    assert!(accepted > 0, "no accepted case");
    for rule in 1..=4 {
        assert!(refused_by(rule) > 0, "no case refused by rule {rule}");
    }
    for step in [8, 9] {
        assert!(
            file.proofs
                .iter()
                .any(|p| p.expect_amendment3.step == Some(step)),
            "no proof refused at step {step}"
        );
    }
}
