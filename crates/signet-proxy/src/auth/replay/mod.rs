//! The replay store (spec §5 step 11): every `(ek, n)` is accepted once.
//!
//! The backend is chosen at runtime from the configuration: in memory for
//! one process ([`MemoryReplayStore`], forgotten on restart), or Redis for
//! several replicas and restarts ([`RedisReplayStore`]). Whether a proof is
//! still fresh when it is recorded, and how long its record lives, is
//! decided by [`signet_core::VerifiedProof::replay_record`] with the store's
//! own `now`, so no backend can open a window between the check and the
//! record.

mod memory;
mod redis;

pub use self::memory::MemoryReplayStore;
pub use self::redis::{connect as connect_redis, RedisReplayStore, RedisSetupError};

use signet_core::{ErrorCode, VerifiedProof};

use crate::config::Config;
use crate::refusal::Refusal;

/// A replay key: the ephemeral public key followed by the nonce.
pub type ReplayKey = [u8; 48];

/// Why a record could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The key was recorded before and has not expired: a replay.
    #[error("(ek, n) was seen before")]
    Replayed,
    /// The proof went stale (step 6) between its first check and the moment
    /// it would have been recorded.
    #[error("the proof was no longer fresh when its replay record was written")]
    Stale,
    /// The store cannot decide (unreachable, full, broken): fail closed.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
}

/// The configured replay store.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayStore {
    /// This process only.
    Memory(MemoryReplayStore),
    /// Shared by every replica through Redis.
    Redis(RedisReplayStore),
}

impl ReplayStore {
    /// The store `config` asks for: Redis with `--redis-url`, memory otherwise.
    /// Nothing is connected yet; a Redis that is down makes requests fail
    /// closed (and `/readyz` say so) until it is back.
    pub fn for_config(config: &Config) -> Result<Self, RedisSetupError> {
        Ok(match &config.redis_url {
            Some(_) => ReplayStore::Redis(RedisReplayStore::new(config)?),
            None => ReplayStore::Memory(MemoryReplayStore::for_config(config)),
        })
    }

    /// Records `proof` unless its key is already there. A record is never
    /// evicted before it expires; a store that cannot keep that promise
    /// returns `Unavailable`.
    pub async fn record(&self, proof: &VerifiedProof) -> Result<(), ReplayError> {
        match self {
            ReplayStore::Memory(store) => store.record(proof),
            ReplayStore::Redis(store) => store.record(proof).await,
        }
    }

    /// Whether `proof` was recorded already: a look, for refusing a replay
    /// before it costs its client anything (a rate token). It writes
    /// nothing and settles nothing — two copies may both look before either
    /// records — so only [`ReplayStore::record`] decides what is served.
    pub async fn seen(&self, proof: &VerifiedProof) -> Result<bool, ReplayError> {
        match self {
            ReplayStore::Memory(store) => store.seen(proof),
            ReplayStore::Redis(store) => store.seen(proof).await,
        }
    }

    /// Whether the store can take records now (for `/readyz`).
    pub async fn ready(&self) -> Result<(), ReplayError> {
        match self {
            ReplayStore::Memory(_) => Ok(()),
            ReplayStore::Redis(store) => store.ping().await,
        }
    }

    /// Which backend this is, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplayStore::Memory(_) => "memory",
            ReplayStore::Redis(_) => "redis",
        }
    }
}

impl From<ReplayError> for Refusal {
    fn from(error: ReplayError) -> Self {
        match &error {
            ReplayError::Replayed => Refusal::new(ErrorCode::ReplayDetected),
            ReplayError::Stale => Refusal::new(ErrorCode::ClockSkew).with_detail(error.to_string()),
            ReplayError::Unavailable(why) => {
                Refusal::new(ErrorCode::ReplayStoreUnavailable).with_detail(why.clone())
            }
        }
    }
}
