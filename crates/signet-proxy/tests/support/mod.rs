//! Builders for the integration tests: the GitHub API stand-in and the real
//! proxy, both on `127.0.0.1:0`; a signer with throwaway keys; and a raw
//! HTTP/1.1 client, so a test controls every byte it sends (absolute-form
//! targets, forged `Host`, repeated or non-ASCII headers, chunked bodies).
//!
//! By concern: [`signer`] (keys and proofs), [`processes`] (the proxy as a
//! server task and as the real binary), [`redis`] (a real `redis-server`),
//! [`wire`] (raw requests and replies, scripted upstreams), [`assertions`].
//! Everything is re-exported here, so tests write `support::Env`.

mod assertions;
mod processes;
mod redis;
mod signer;
mod wire;

pub use assertions::*;
pub use processes::*;
pub use redis::*;
pub use signer::*;
pub use wire::*;

use std::time::Duration;

/// The shared GitHub token every test proxy injects.
pub const TOKEN: &str = "ghs_integrationTestToken_7Qx2Lm9Vb4";

/// The proxy's fixed `now` in tests that use a fixed clock.
pub const NOW: u64 = 1_750_000_000;

/// Longest any single exchange with the proxy may take before a test fails.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(20);

/// Polls until `check` holds (bounded, 20 s): for what happens in the
/// background (reloads, rotations, Redis sync); whether it did.
pub async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
