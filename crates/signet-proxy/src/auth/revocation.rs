//! Revocations: a whole client, or one ephemeral key until its binding
//! expires. A revoked key is refused at step 3 (401 `UNKNOWN_KEY`, spec §5:
//! "trusted (and not revoked)"), before the binding cache is consulted.
//!
//! Every request checks an in-memory set. With Redis the set is shared:
//! revocations are written to Redis, and every replica re-reads them every
//! second, so all refuse within about a second. Without Redis they live in
//! this process, and in `--revocations-file` (JSON) when one is given, so
//! they survive a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// What is revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// Client names.
    #[serde(default)]
    pub clients: BTreeSet<String>,
    /// Ephemeral keys (base64url) and until when (unix seconds, their `exp`).
    #[serde(default)]
    pub ephemeral_keys: BTreeMap<String, u64>,
}

/// One revocation, as the admin API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// A whole client, by name.
    Client(String),
    /// One ephemeral key (base64url), until `until`.
    EphemeralKey {
        /// The key, base64url as in the proof's `ek`.
        key: String,
        /// Unix seconds; after it the binding has expired anyway.
        until: u64,
    },
}

const REDIS_CLIENTS: &str = "signet:revoked:clients";
const REDIS_KEYS: &str = "signet:revoked:ephemeral_keys";

/// The revocations in force.
pub struct Revocations {
    current: RwLock<Arc<Revoked>>,
    backend: Backend,
}

enum Backend {
    Memory {
        file: Option<PathBuf>,
    },
    Redis {
        connection: ConnectionManager,
        timeout: Duration,
    },
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").finish_non_exhaustive()
    }
}

/// Why revocations could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("revocations: {0}")]
pub struct RevocationError(String);

impl Revocations {
    /// In memory, persisted to `file` when given (read now if it exists).
    pub fn memory(file: Option<PathBuf>) -> Result<Self, RevocationError> {
        let revoked = match &file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| RevocationError(format!("{}: {e}", path.display())))?;
                serde_json::from_str(&text)
                    .map_err(|e| RevocationError(format!("{}: {e}", path.display())))?
            }
            _ => Revoked::default(),
        };
        Ok(Revocations {
            current: RwLock::new(Arc::new(revoked)),
            backend: Backend::Memory { file },
        })
    }

    /// Shared through Redis; call [`Revocations::refresh`] every second.
    pub fn redis(connection: ConnectionManager, timeout: Duration) -> Self {
        Revocations {
            current: RwLock::new(Arc::new(Revoked::default())),
            backend: Backend::Redis {
                connection,
                timeout,
            },
        }
    }

    /// Whether a request from `client` signed by ephemeral key `ek` is
    /// revoked at `now`.
    pub fn is_revoked(&self, client: &str, ek: &[u8; 32], now: u64) -> bool {
        let revoked = self.snapshot();
        revoked.clients.contains(client) || ephemeral_key_revoked(&revoked, ek, now)
    }

    /// Whether ephemeral key `ek` is revoked at `now`, whoever signed with
    /// it (the admin API's keys are no client's).
    pub fn is_ephemeral_key_revoked(&self, ek: &[u8; 32], now: u64) -> bool {
        ephemeral_key_revoked(&self.snapshot(), ek, now)
    }

    /// What is revoked now.
    pub fn snapshot(&self) -> Arc<Revoked> {
        self.current
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_default()
    }

    /// Revokes (`revoke`) or lifts (`!revoke`) one revocation.
    pub async fn apply(&self, change: &Revocation, revoke: bool) -> Result<(), RevocationError> {
        match &self.backend {
            Backend::Memory { file } => {
                let mut next = (*self.snapshot()).clone();
                change_set(&mut next, change, revoke);
                if let Some(path) = file {
                    let text = serde_json::to_string_pretty(&next)
                        .map_err(|e| RevocationError(e.to_string()))?;
                    // Written beside and renamed: a crash never leaves half a file.
                    let temporary = path.with_extension("tmp");
                    std::fs::write(&temporary, text)
                        .and_then(|()| std::fs::rename(&temporary, path))
                        .map_err(|e| RevocationError(format!("{}: {e}", path.display())))?;
                }
                self.store(next);
                Ok(())
            }
            Backend::Redis {
                connection,
                timeout,
            } => {
                let mut connection = connection.clone();
                let command = match (change, revoke) {
                    (Revocation::Client(name), true) => {
                        redis::cmd("SADD").arg(REDIS_CLIENTS).arg(name).clone()
                    }
                    (Revocation::Client(name), false) => {
                        redis::cmd("SREM").arg(REDIS_CLIENTS).arg(name).clone()
                    }
                    (Revocation::EphemeralKey { key, until }, true) => redis::cmd("HSET")
                        .arg(REDIS_KEYS)
                        .arg(key)
                        .arg(*until)
                        .clone(),
                    (Revocation::EphemeralKey { key, .. }, false) => {
                        redis::cmd("HDEL").arg(REDIS_KEYS).arg(key).clone()
                    }
                };
                let done: Result<i64, _> =
                    tokio::time::timeout(*timeout, command.query_async(&mut connection))
                        .await
                        .map_err(|_| RevocationError("Redis timed out".to_owned()))?;
                done.map_err(|e| RevocationError(format!("Redis: {e}")))?;
                self.refresh(u64::MAX).await
            }
        }
    }

    /// Re-reads the shared revocations (Redis only), dropping ephemeral keys
    /// whose time is past `now`. On failure the set in force stays.
    pub async fn refresh(&self, now: u64) -> Result<(), RevocationError> {
        let Backend::Redis {
            connection,
            timeout,
        } = &self.backend
        else {
            return Ok(());
        };
        let mut connection = connection.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("SMEMBERS")
            .arg(REDIS_CLIENTS)
            .cmd("HGETALL")
            .arg(REDIS_KEYS);
        let read: Result<(BTreeSet<String>, BTreeMap<String, u64>), _> =
            tokio::time::timeout(*timeout, pipe.query_async(&mut connection))
                .await
                .map_err(|_| RevocationError("Redis timed out".to_owned()))?;
        let (clients, mut ephemeral_keys) =
            read.map_err(|e| RevocationError(format!("Redis: {e}")))?;
        if now != u64::MAX {
            ephemeral_keys.retain(|_, until| *until >= now);
        }
        self.store(Revoked {
            clients,
            ephemeral_keys,
        });
        Ok(())
    }

    /// Whether revocations are shared through Redis.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis { .. })
    }

    fn store(&self, revoked: Revoked) {
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(revoked);
        }
    }
}

fn ephemeral_key_revoked(revoked: &Revoked, ek: &[u8; 32], now: u64) -> bool {
    if revoked.ephemeral_keys.is_empty() {
        return false;
    }
    let ek = signet_core::base64url::encode(ek);
    revoked
        .ephemeral_keys
        .get(&ek)
        .is_some_and(|&until| until >= now)
}

fn change_set(revoked: &mut Revoked, change: &Revocation, revoke: bool) {
    match (change, revoke) {
        (Revocation::Client(name), true) => {
            revoked.clients.insert(name.clone());
        }
        (Revocation::Client(name), false) => {
            revoked.clients.remove(name);
        }
        (Revocation::EphemeralKey { key, until }, true) => {
            revoked.ephemeral_keys.insert(key.clone(), *until);
        }
        (Revocation::EphemeralKey { key, .. }, false) => {
            revoked.ephemeral_keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime.block_on(future),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn revocations_survive_a_restart_through_the_file() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { panic!("tempdir") };
        let file = dir.path().join("revoked.json");
        let ek = [5u8; 32];
        let revocations = Revocations::memory(Some(file.clone()));
        let Ok(revocations) = revocations else {
            panic!("memory store")
        };
        let key = signet_core::base64url::encode(&ek);
        let done = block_on(async {
            revocations
                .apply(&Revocation::Client("bot".to_owned()), true)
                .await?;
            revocations
                .apply(&Revocation::EphemeralKey { key, until: 100 }, true)
                .await
        });
        assert!(done.is_ok());
        assert!(revocations.is_revoked("bot", &[0; 32], 0));
        assert!(revocations.is_revoked("other", &ek, 100));
        assert!(
            !revocations.is_revoked("other", &ek, 101),
            "only until its exp"
        );

        let Ok(restarted) = Revocations::memory(Some(file)) else {
            panic!("reload")
        };
        assert!(restarted.is_revoked("bot", &[0; 32], 0));
        let lifted = block_on(restarted.apply(&Revocation::Client("bot".to_owned()), false));
        assert!(lifted.is_ok());
        assert!(!restarted.is_revoked("bot", &[0; 32], 0));
    }
}
