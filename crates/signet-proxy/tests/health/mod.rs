//! The health checks: no proof needed, a custom path.

use signet_core::ErrorCode;

use crate::support::{assert_healthy, assert_refused, Env, Request};

#[tokio::test]
async fn the_health_check_needs_no_proof() {
    let env = Env::start().await;
    assert_healthy(&env.send(&Request::get("/healthz")).await);
    let head = env.send(&Request::new("HEAD", "/healthz")).await;
    assert_eq!(head.status, 200);
    // Only GET and HEAD are health checks; anything else needs a proof.
    let post = env.send(&Request::new("POST", "/healthz")).await;
    assert_refused(&post, ErrorCode::MissingProof);
    env.assert_nothing_forwarded();
}

#[tokio::test]
async fn a_custom_health_path_replaces_the_default() {
    let env = Env::start_with(|c| c.health_path = "/-/ready".to_owned()).await;
    assert_healthy(&env.send(&Request::get("/-/ready")).await);
    let old = env.send(&Request::get("/healthz")).await;
    assert_refused(&old, ErrorCode::MissingProof);
    env.assert_nothing_forwarded();
}
