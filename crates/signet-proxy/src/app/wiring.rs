//! The one wiring path: everything the proxy is built from a [`Config`],
//! without binding a port. Serving (`Server::bind`) binds the listeners
//! around what this builds; `check-config` builds the same and stops, so it
//! checks exactly what serving would.

use std::sync::Arc;

use crate::app::server::StartError;
use crate::auth::authenticate::ClientKeys;
use crate::auth::clients::Clients;
use crate::auth::replay::{connect_redis, ReplayStore};
use crate::auth::revocation::Revocations;
use crate::config::Config;
use crate::pipeline::Proxy;
use crate::policy::rate::RateLimiter;
use crate::upstream::api::quota::QuotaGuard;
use crate::upstream::credentials::Credentials;

/// The proxy and the shared state its side listeners and background tasks
/// use too.
#[derive(Debug)]
pub struct Wired {
    /// The trusted clients (the keys file, reloaded in place).
    pub clients: Arc<Clients>,
    /// Revoked clients and ephemeral keys.
    pub revocations: Arc<Revocations>,
    /// The request handler.
    pub proxy: Arc<Proxy>,
}

/// Builds the keys file's clients, the replay store, the rate limiter, the
/// revocations and the quota guard (in Redis or in memory), the upstream
/// credential and the pipeline. Redis connections are lazy: nothing is
/// connected yet.
pub fn wire(config: &Config) -> Result<Wired, StartError> {
    let clients = Arc::new(Clients::load(
        config.master_keys.clone(),
        config.keys_file.clone(),
        config.credential.can_scope(),
        config.admin_key,
    )?);
    let replay = ReplayStore::for_config(config)?;
    let (rate, revocations, quota) = match &config.redis_url {
        Some(_) => (
            RateLimiter::redis(connect_redis(config)?, config.redis_timeout),
            Revocations::redis(connect_redis(config)?, config.redis_timeout),
            QuotaGuard::shared(connect_redis(config)?, config.redis_timeout),
        ),
        None => (
            RateLimiter::local(),
            Revocations::memory(config.revocations_file.clone())?,
            QuotaGuard::default(),
        ),
    };
    let revocations = Arc::new(revocations);
    let credentials = Arc::new(Credentials::new(config.credential.clone())?);
    let keys = ClientKeys::new(Arc::clone(&clients), Arc::clone(&revocations));
    let proxy = Arc::new(Proxy::new(
        config,
        Arc::new(keys),
        replay,
        rate,
        quota,
        credentials,
    )?);
    Ok(Wired {
        clients,
        revocations,
        proxy,
    })
}
