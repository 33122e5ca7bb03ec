//! The spec's test vectors, over HTTP: every positive vector is forwarded
//! exactly, every wire-negative one refused.

use serde::Deserialize;
use signet_core::{ErrorCode, SigningKey};
use signet_proxy::Clock;
use signet_standin::StandIn;

use crate::support::{
    assert_refused, assert_refused_with, config, send, Request, RunningProxy, Signer, TOKEN,
};

const POSITIVE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../signet-core/tests/vectors/positive.json"
));
const PARSE_NEGATIVE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../signet-core/tests/vectors/parse_negative.json"
));

#[derive(Debug, Deserialize)]
struct PositiveFile {
    keys: VectorKeys,
    cases: Vec<PositiveCase>,
}

#[derive(Debug, Deserialize)]
struct VectorKeys {
    master_seed_hex: String,
}

#[derive(Debug, Deserialize)]
struct PositiveCase {
    id: String,
    method: String,
    target: String,
    body_hex: String,
    header: String,
    verify_at: u64,
}

#[derive(Debug, Deserialize)]
struct NegativeFile {
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
    message: Option<String>,
}

/// A proxy trusting the vectors' master key, its clock, and its upstream.
async fn vector_env() -> (StandIn, RunningProxy, Clock) {
    let keys: PositiveFile = serde_json::from_str(POSITIVE_JSON).unwrap();
    let seed: [u8; 32] = hex::decode(&keys.keys.master_seed_hex)
        .unwrap()
        .try_into()
        .unwrap();
    let signer = Signer::with_master(SigningKey::from_bytes(&seed));
    let upstream = StandIn::start(Some(TOKEN)).await.unwrap();
    let mut config = config(&upstream.url(), &signer);
    let clock = Clock::fixed(0);
    config.clock = clock.clone();
    let proxy = RunningProxy::start(&config).await;
    (upstream, proxy, clock)
}

/// Whether a vector's path has a `.` or `..` segment (`%2e` in any case):
/// spec amendment 1 has the proxy refuse it, though its signature is valid.
fn has_dot_segment(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[tokio::test]
async fn every_positive_vector_is_forwarded_exactly_over_http() {
    let file: PositiveFile = serde_json::from_str(POSITIVE_JSON).unwrap();
    let (upstream, proxy, clock) = vector_env().await;
    assert!(
        file.cases.iter().any(|c| c.id == "path_not_normalised"),
        "the vectors include the non-normalised path"
    );
    let mut forwarded_count = 0;
    for case in &file.cases {
        clock.set(case.verify_at);
        let body = hex::decode(&case.body_hex).unwrap();
        let mut request = Request::new(&case.method, &case.target).proof(&case.header);
        if !body.is_empty() {
            request = request.body(body.clone());
        }
        let reply = send(proxy.addr, &request).await;
        if has_dot_segment(&case.target) {
            // Signed correctly (signet-core verifies it byte for byte), but
            // amendment 1 refuses dot-segments before any proof work.
            assert_refused(&reply, ErrorCode::InvalidRequestTarget);
            assert_eq!(upstream.requests().len(), forwarded_count, "{}", case.id);
            continue;
        }
        assert_eq!(
            reply.header("x-ratelimit-remaining").as_deref(),
            Some("4999"),
            "{}: answered by the upstream, not refused: {} {}",
            case.id,
            reply.status,
            reply.text()
        );
        let seen = upstream.requests();
        forwarded_count += 1;
        assert_eq!(seen.len(), forwarded_count, "{}", case.id);
        let forwarded = &seen[forwarded_count - 1];
        assert_eq!(forwarded.method, case.method, "{}", case.id);
        assert_eq!(
            forwarded.target, case.target,
            "{}: target byte for byte",
            case.id
        );
        assert_eq!(forwarded.body.as_ref(), body.as_slice(), "{}", case.id);
        assert!(forwarded.headers.get("signet-proof").is_none());
    }
    assert!(
        forwarded_count + 1 >= file.cases.len(),
        "only dot-segment cases are refused"
    );
}

#[tokio::test]
async fn every_wire_negative_vector_is_refused_as_invalid_proof_over_http() {
    let positive: PositiveFile = serde_json::from_str(POSITIVE_JSON).unwrap();
    let negative: NegativeFile = serde_json::from_str(PARSE_NEGATIVE_JSON).unwrap();
    let base = positive
        .cases
        .iter()
        .find(|c| c.id == negative.base_case)
        .expect("the base case is a positive vector");
    assert!(base.body_hex.is_empty(), "the base case has no body");
    let (upstream, proxy, clock) = vector_env().await;
    clock.set(base.verify_at);

    let wire: Vec<&NegativeCase> = negative.cases.iter().filter(|c| c.wire).collect();
    assert!(wire.len() > 100, "only {} wire cases", wire.len());
    for case in wire {
        assert_eq!((case.status, case.code.as_str()), (400, "INVALID_PROOF"));
        // The header value goes out as its raw UTF-8 bytes.
        let request =
            Request::new(&base.method, &base.target).header("Signet-Proof", case.header.as_bytes());
        let reply = send(proxy.addr, &request).await;
        let message = case
            .message
            .as_deref()
            .unwrap_or(ErrorCode::InvalidProof.message());
        assert_eq!(reply.status, 400, "{}: {}", case.id, reply.text());
        assert_refused_with(&reply, ErrorCode::InvalidProof, message);
    }
    assert!(
        upstream.requests().is_empty(),
        "no negative vector is forwarded"
    );
}
