//! # signet-proxy
//!
//! A reverse proxy for the GitHub API. Clients prove who they are with a
//! Signet proof (spec: `docs/PROTOCOL.md`); the proxy verifies it offline
//! with nothing but the trusted master public keys, refuses replays and stale
//! requests, strips the proof, injects the one shared GitHub token and
//! streams the upstream's response back.
//!
//! Where things live:
//!
//! | module | concern |
//! |---|---|
//! | [`cli`], [`config`] | flags and environment → validated [`Config`] |
//! | [`server`], [`connection`], [`serving`] | listeners, HTTP/1.1 connections, timeouts, graceful shutdown, reloads; which threads serve |
//! | [`pipeline`] | the request path, stage by stage |
//! | [`target`], [`health`], [`body`], [`policy`], [`rate`], [`replay`] | one stage each |
//! | [`clients`], [`revoke`] | who is trusted (keys file, swapped at reload) and who is revoked |
//! | [`forward`], [`pool`], [`links`] | header rewrite, the pooled upstream client (one pool per runtime), pagination links |
//! | [`refusal`] | every refusal → its JSON response, in one place |
//! | [`logging`], [`metrics`] | one record per request: the JSON log line and the Prometheus counters |
//! | [`admin`], [`side`] | the admin API, on a small listener of its own (metrics use one too) |
//! | [`secret`], [`clock`] | the redacted token and Redis URL, `now` |
//! | [`standin`], [`demo`] | a GitHub API stand-in, and the `demo` command |
#![forbid(unsafe_code)]

pub mod admin;
pub mod body;
pub mod cache;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod connection;
pub mod credentials;
pub mod demo;
pub mod forward;
pub mod health;
/// Pagination links (moved to `signet-http`, shared with the `signet agent`).
pub use signet_http::links;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod pool;
pub mod quota;
pub mod rate;
pub mod refusal;
pub mod replay;
pub mod revoke;
pub mod scope;
pub mod secret;
pub mod server;
pub mod serving;
pub mod side;
pub mod standin;
pub mod target;

pub use cli::Args;
pub use clock::Clock;
pub use config::{Config, ConfigError, Upstream};
pub use pipeline::Proxy;
pub use replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
pub use secret::GitHubToken;
pub use secret::RedisUrl;
pub use server::{shutdown_signal, Server, StartError};

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
        revoke::Revocations::memory(config.revocations_file.clone())?;
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
