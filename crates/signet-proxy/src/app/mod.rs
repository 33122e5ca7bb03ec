//! The composition root: builds the proxy from a [`Config`] and serves it.
//! Nothing in the crate imports this module; it imports the stages.
//!
//! - `server`: the listener (accept loop, connection limit, graceful
//!   shutdown) and the background tasks (keys-file watch, revocation
//!   refresh, quota sync);
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

use crate::auth::clients;
use crate::auth::replay::ReplayStore;
use crate::auth::revocation;
use crate::config::Config;
use crate::upstream::{credentials, forward};
use server::{shutdown_signal, Server, StartError};

/// Everything serving would check before it binds a port — keys file,
/// upstream TLS setup, Redis URL — without binding one (`check-config`).
/// Returns a one-line summary.
pub async fn check_config(config: &Config) -> Result<String, StartError> {
    let clients = clients::Clients::load(
        config.master_keys.clone(),
        config.keys_file.clone(),
        config.credential.can_scope(),
        config.admin_key,
    )?;
    let credentials =
        std::sync::Arc::new(credentials::Credentials::new(config.credential.clone())?);
    forward::Forwarder::new(config, credentials)?;
    let replay = ReplayStore::for_config(config)?;
    if config.redis_url.is_none() {
        revocation::Revocations::memory(config.revocations_file.clone())?;
    }
    Ok(format!(
        "{} trusted client(s), upstream {}, replay store {}",
        clients.current().len(),
        config.upstream.base_url(),
        replay.kind()
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
