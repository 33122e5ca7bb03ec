//! The Redis replay store: shared by every replica, and it survives a
//! restart of the proxy.
//!
//! Each record is one atomic `SET key 1 NX PX ttl`: the first replica to
//! write it wins, every later attempt — on any replica — finds it and is a
//! replay. Records live until `ts + 2 × clock_skew` (the shared scope of
//! spec amendment 1), so replicas whose clocks differ by up to the skew
//! still refuse each other's replays. The connection is made lazily and
//! re-made in the background after a failure; every command has a short
//! timeout, and any failure is `Unavailable` (the proxy answers 503 and
//! forwards nothing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use signet_core::{Limits, ReplayScope, VerifiedProof};

use super::{ReplayError, ReplayKey};
use crate::clock::Clock;
use crate::config::Config;

/// Prefix of every replay key in Redis, so the proxy can share a database.
const KEY_PREFIX: &[u8] = b"signet:replay:";

/// The Redis key of a replay record.
fn redis_key(key: &ReplayKey) -> [u8; KEY_PREFIX.len() + 48] {
    let mut out = [0u8; KEY_PREFIX.len() + 48];
    out[..KEY_PREFIX.len()].copy_from_slice(KEY_PREFIX);
    out[KEY_PREFIX.len()..].copy_from_slice(key);
    out
}

/// Why the Redis store could not be set up (a bad URL, not a Redis that is down).
#[derive(Debug, thiserror::Error)]
#[error("invalid --redis-url: {0}")]
pub struct RedisSetupError(String);

/// A lazy, self-reconnecting connection to the configured Redis (must be
/// called within a Tokio runtime); `--redis-timeout` bounds connecting and
/// each answer. With `--redis-ca-file`, a `rediss://` server is checked
/// against that CA instead of the public web roots.
pub fn connect(config: &Config) -> Result<ConnectionManager, RedisSetupError> {
    let url = config
        .redis_url
        .as_ref()
        .ok_or_else(|| RedisSetupError("no --redis-url".to_owned()))?;
    let timeout = config.redis_timeout;
    let client = match &config.redis_ca_file {
        None => redis::Client::open(url.expose()),
        Some(path) => {
            let root_cert = std::fs::read(path).map_err(|e| {
                RedisSetupError(format!(
                    "cannot read --redis-ca-file {}: {e}",
                    path.display()
                ))
            })?;
            redis::Client::build_with_tls(
                url.expose(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
        }
    }
    .map_err(|e| RedisSetupError(e.to_string()))?;
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // Few quick retries: a request waits for at most about the timeout,
        // then fails closed; the manager keeps reconnecting.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, manager)
        .map_err(|e| RedisSetupError(e.to_string()))
}

/// Replay records in Redis.
pub struct RedisReplayStore {
    connection: ConnectionManager,
    timeout: Duration,
    limits: Limits,
    clock: Clock,
    /// The last answer of a readiness check, and when it was asked (ms
    /// since `started`, `u64::MAX` for never): probes and unauthenticated
    /// callers of `/readyz` make at most one `PING` a second.
    ready: AtomicBool,
    ready_checked_ms: AtomicU64,
    started: std::time::Instant,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// A store on `url`; connects on first use (must be called within a
    /// Tokio runtime).
    pub fn new(config: &Config) -> Result<Self, RedisSetupError> {
        let timeout = config.redis_timeout;
        Ok(RedisReplayStore {
            connection: connect(config)?,
            timeout,
            limits: config.limits(),
            clock: config.clock.clone(),
            ready: AtomicBool::new(false),
            ready_checked_ms: AtomicU64::new(u64::MAX),
            started: std::time::Instant::now(),
        })
    }

    /// Records `proof` unless some replica already did.
    pub async fn record(&self, proof: &VerifiedProof) -> Result<(), ReplayError> {
        let now = self.clock.now();
        let record = proof
            .replay_record(self.limits, now, ReplayScope::Shared)
            .map_err(|_| ReplayError::Stale)?;
        let ttl_ms = record.ttl_secs(now).saturating_mul(1000);
        let mut command = redis::cmd("SET");
        command
            .arg(&redis_key(&record.key)[..])
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let written: Option<String> = self.run(&command).await?;
        match written {
            Some(_) => Ok(()),
            None => Err(ReplayError::Replayed),
        }
    }

    /// Whether some replica recorded `proof`: a look (`EXISTS`) that records
    /// nothing. Records expire in Redis, so what exists is live.
    pub async fn seen(&self, proof: &VerifiedProof) -> Result<bool, ReplayError> {
        let mut command = redis::cmd("EXISTS");
        command.arg(&redis_key(&proof.replay_key())[..]);
        let found: u64 = self.run(&command).await?;
        Ok(found > 0)
    }

    /// Whether Redis answers; asked at most once a second.
    pub async fn ping(&self) -> Result<(), ReplayError> {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.ready_checked_ms.load(Ordering::Acquire);
        let due = last == u64::MAX || now.saturating_sub(last) >= 1000;
        if due
            && self
                .ready_checked_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let answered: Result<String, _> = self.run(&redis::cmd("PING")).await;
            let was_ready = self.ready.swap(answered.is_ok(), Ordering::AcqRel);
            // Logged on a change only: probes come every few seconds.
            match answered {
                Err(error) if was_ready => tracing::warn!(%error, "Redis unreachable: not ready"),
                Ok(_) if !was_ready => tracing::info!("Redis answers: ready"),
                _ => {}
            }
        }
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(ReplayError::Unavailable("Redis does not answer".to_owned()))
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, ReplayError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, command.query_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ReplayError::Unavailable(format!("Redis: {error}"))),
            Err(_) => Err(ReplayError::Unavailable(format!(
                "Redis did not answer within {:?}",
                self.timeout
            ))),
        }
    }
}
