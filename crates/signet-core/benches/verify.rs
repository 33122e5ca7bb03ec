//! Cost of the proxy's per-request work on a typical proof (the
//! `get_with_query` vector): parse, the cheap checks, full verification with a
//! cold and a warm binding cache, and the cheap rejection of a malformed header.
//!
//! Run with `cargo bench -p signet-core --bench verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_main, Criterion};
use signet_core::{
    parse_public_key_hex, verify_signature, BodyDigest, Limits, ProofHeader, RequestParts,
    ValidKey, Verifier,
};

const POSITIVE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/positive.json"
));

/// The typical proof: header, request, `now`, trusted master key (hex).
struct Typical {
    header: String,
    method: String,
    target: String,
    body: Vec<u8>,
    now: u64,
    master_public_hex: String,
}

fn typical() -> Typical {
    let file: serde_json::Value = serde_json::from_str(POSITIVE_JSON).expect("positive.json");
    let case = file["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["id"] == "get_with_query"))
        .expect("get_with_query case");
    let text = |v: &serde_json::Value| v.as_str().expect("string field").to_owned();
    Typical {
        header: text(&case["header"]),
        method: text(&case["method"]),
        target: text(&case["target"]),
        body: hex::decode(text(&case["body_hex"])).expect("body_hex"),
        now: case["verify_at"].as_u64().expect("verify_at"),
        master_public_hex: text(&file["keys"]["master_public_hex"]),
    }
}

fn bench_verify(c: &mut Criterion) {
    let t = typical();
    let master = parse_public_key_hex(&t.master_public_hex).unwrap();
    let request = RequestParts {
        method: &t.method,
        target: &t.target,
        body_digest: BodyDigest::of(&t.body),
    };
    let header = t.header.as_bytes();
    let proof = ProofHeader::parse(header).unwrap();

    let warm = Verifier::new([master], Limits::default());
    let cold = Verifier::new([master], Limits::default()).with_binding_cache_capacity(0);
    // Both must accept the proof, or the numbers below measure a failure path.
    warm.check(&proof, t.now)
        .and_then(|c| c.verify(&request))
        .expect("the typical proof verifies");
    cold.check(&proof, t.now)
        .and_then(|c| c.verify(&request))
        .expect("the typical proof verifies without a cache");

    // A space (outside the header alphabet) just before the last byte: the
    // parser's first pass refuses it without decoding anything.
    let mut bad_byte = header.to_vec();
    let last = bad_byte.len() - 2;
    bad_byte[last] = b' ';
    assert!(ProofHeader::parse(&bad_byte).is_err());
    // A visible character outside base64url inside `s`: found only while decoding.
    let s_at = t.header.find(";s=").expect("an s field") + 3;
    let mut bad_base64 = t.header.clone();
    bad_base64.replace_range(s_at..=s_at, ".");
    assert_eq!(bad_base64.len(), t.header.len());
    assert!(ProofHeader::parse(bad_base64.as_bytes()).is_err());

    let mut group = c.benchmark_group("signet-proof");
    group.bench_function("parse", |b| {
        b.iter(|| ProofHeader::parse(black_box(header)))
    });
    group.bench_function("check (steps 3-6)", |b| {
        b.iter(|| warm.check(black_box(&proof), black_box(t.now)).is_ok())
    });
    group.bench_function("verify, cold binding cache (2 signatures)", |b| {
        b.iter(|| {
            cold.check(black_box(&proof), t.now)
                .and_then(|c| c.verify(black_box(&request)))
        })
    });
    group.bench_function("verify, warm binding cache (1 signature)", |b| {
        b.iter(|| {
            warm.check(black_box(&proof), t.now)
                .and_then(|c| c.verify(black_box(&request)))
        })
    });
    group.bench_function("parse + verify, warm binding cache", |b| {
        b.iter(|| {
            let proof = ProofHeader::parse(black_box(header)).unwrap();
            warm.check(&proof, t.now)
                .and_then(|c| c.verify(black_box(&request)))
                .is_ok()
        })
    });
    // The floor under the warm figure: the one request signature alone, with
    // the key already decoded, as the binding cache holds it (spec §5
    // "Signature validity", amendment 3).
    let ephemeral = ValidKey::new(&proof.ek).unwrap();
    let canonical = signet_core::canonical_request(&request, proof.ts, &proof.n);
    ephemeral.verify(&canonical, &proof.s).unwrap();
    group.bench_function("signature alone (decoded key)", |b| {
        b.iter(|| ephemeral.verify(black_box(&canonical), black_box(&proof.s)))
    });
    group.bench_function("signature alone (key decoded each time)", |b| {
        b.iter(|| verify_signature(black_box(&proof.ek), black_box(&canonical), &proof.s))
    });
    // The rule before amendment 3, for comparison (cofactorless, no
    // canonical-encoding check): scripts/bench still quotes it.
    let strict_key = ed25519_dalek::VerifyingKey::from_bytes(&proof.ek).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&proof.s);
    strict_key.verify_strict(&canonical, &signature).unwrap();
    group.bench_function(
        "verify_strict alone (parsed key, before amendment 3)",
        |b| b.iter(|| strict_key.verify_strict(black_box(&canonical), black_box(&signature))),
    );
    group.bench_function("reject: bad byte", |b| {
        b.iter(|| ProofHeader::parse(black_box(&bad_byte)))
    });
    group.bench_function("reject: bad base64url character", |b| {
        b.iter(|| ProofHeader::parse(black_box(bad_base64.as_bytes())))
    });
    group.finish();
}

/// Private, so the generated `pub fn benches` needs no documentation.
mod group {
    criterion::criterion_group!(benches, super::bench_verify);
}

criterion_main!(group::benches);
