//! Stages of the request path that the end-to-end `pipeline` bench only
//! shows summed: step 11's replay record in the in-memory store (a fresh
//! nonce each time, as under real load), and the whole of steps 1–9 for one
//! proxied request (parse, cheap checks, the cached binding, the request
//! signature). `scripts/bench` measures the process as a whole. Run with
//! `cargo bench -p signet-proxy --bench stages`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use signet_core::{
    Binding, BodyDigest, Limits, ProofHeader, Purpose, RequestParts, SigningKey, VerifiedProof,
    Verifier,
};
use signet_proxy::{Clock, MemoryReplayStore};

const NOW: u64 = 1_700_000_000;
const TARGET: &str = "/repos/octo-org/hello-world";

struct Client {
    ephemeral: SigningKey,
    binding: Binding,
    verifier: Verifier,
}

impl Client {
    fn new() -> Self {
        let master = SigningKey::from_bytes(&[1; 32]);
        let ephemeral = SigningKey::from_bytes(&[2; 32]);
        let binding = Binding::sign(
            &master,
            &ephemeral.verifying_key(),
            NOW + 600,
            Purpose::EMPTY,
        );
        Client {
            ephemeral,
            binding,
            verifier: Verifier::new([master.verifying_key()], Limits::default()),
        }
    }

    fn header(&self, nonce: u64) -> String {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&nonce.to_be_bytes());
        self.binding
            .sign_request(&self.ephemeral, &request(), NOW, n)
            .to_string()
    }

    fn verified(&self, nonce: u64) -> VerifiedProof {
        let header = self.header(nonce);
        let proof = ProofHeader::parse(header.as_bytes()).unwrap();
        self.verifier
            .check(&proof, NOW)
            .and_then(|checked| checked.verify(&request()))
            .unwrap()
    }
}

fn request() -> RequestParts<'static> {
    RequestParts {
        method: "GET",
        target: TARGET,
        body_digest: BodyDigest::of(b""),
    }
}

fn stages(c: &mut Criterion) {
    let client = Client::new();
    // Warm the binding cache, as under steady load.
    client.verified(0);
    let store = MemoryReplayStore::new(10_000_000, Limits::default(), Clock::fixed(NOW));
    let mut nonce = 1u64;
    let mut group = c.benchmark_group("stage");
    group.bench_function("steps 1-9: parse, check, verify (binding cached)", |b| {
        b.iter_batched(
            || {
                nonce += 1;
                client.header(nonce)
            },
            |header| {
                let proof = ProofHeader::parse(black_box(header.as_bytes())).unwrap();
                client
                    .verifier
                    .check(&proof, NOW)
                    .and_then(|checked| checked.verify(&request()))
                    .is_ok()
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("step 11: replay record, memory store", |b| {
        b.iter_batched(
            || {
                nonce += 1;
                client.verified(nonce)
            },
            |proof| store.record(black_box(&proof)).is_ok(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
