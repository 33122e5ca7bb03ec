//! The composition root: builds the proxy from a [`Config`] and serves it.
//! Nothing in the crate imports this module; it imports the stages.
//!
//! - `server`: the listener (accept loop, connection limit, graceful
//!   shutdown) and the background tasks (keys-file watch, revocation
//!   refresh, quota sync);
//! - `wiring`: the one path from a `Config` to the built proxy, used by
//!   serving and by `check-config`;
//! - [`serving`]: which threads serve (`--runtime`);
//! - `side`, `admin`, `metrics`: the small listeners beside the proxy's own
//!   (the admin API; `/metrics` and the probes);
//! - `demo`: the `demo` command (the default `demo` feature), against the
//!   GitHub API stand-in of the `signet-standin` crate.

pub(crate) mod admin;
#[cfg(feature = "demo")]
pub mod demo;
pub(crate) mod metrics;
pub(crate) mod server;
pub mod serving;
pub(crate) mod side;
pub(crate) mod wiring;

use crate::config::Config;
use server::{shutdown_signal, Server, StartError};
use wiring::{wire, Wired};

/// Everything serving would check before it binds a port — keys file,
/// upstream TLS setup, Redis URL — without binding one (`check-config`):
/// the same wiring as serving (`wiring::wire`), stopped before the ports.
/// Returns a one-line summary.
pub async fn check_config(config: &Config) -> Result<String, StartError> {
    let Wired { clients, proxy, .. } = wire(config)?;
    Ok(format!(
        "{} trusted client(s), upstream {}, replay store {}",
        clients.current().len(),
        config.upstream.base_url(),
        proxy.replay().kind()
    ))
}

/// Runs the proxy with a validated configuration until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), StartError> {
    run_on(config, Vec::new()).await
}

/// [`run`], with further runtimes (`per-core`: one per further core) that
/// each accept and serve connections of their own.
pub async fn run_on(
    config: Config,
    workers: Vec<tokio::runtime::Handle>,
) -> Result<(), StartError> {
    let server = Server::bind(&config).await?;
    let addr = server.local_addr().unwrap_or(config.listen);
    tracing::info!(
        %addr,
        upstream = %config.upstream.base_url(),
        master_keys = config.master_keys.len(),
        keys_file = config.keys_file.as_ref().map(|p| p.display().to_string()),
        replay_store = if config.redis_url.is_some() { "redis" } else { "memory" },
        runtimes = workers.len() + 1,
        "signet-proxy listening"
    );
    server.run_on(&workers, shutdown_signal()).await;
    tracing::info!("signet-proxy stopped");
    Ok(())
}
