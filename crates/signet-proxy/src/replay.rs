//! The replay store (spec §5 step 11): every `(ek, n)` is accepted once.
//!
//! [`ReplayStore`] is the seam for shared stores (Redis for several replicas);
//! [`MemoryReplayStore`] serves one process.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

/// A replay key: the ephemeral public key followed by the nonce.
pub type ReplayKey = [u8; 48];

/// Why a record could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The key was recorded before and has not expired: a replay.
    #[error("(ek, n) was seen before")]
    Replayed,
    /// The store cannot decide (unreachable, full, broken): fail closed.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
}

/// Records each replay key at most once, atomically.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` unless it is already there. The record is kept at least
    /// until `expires_at` (unix seconds) has passed and is never evicted
    /// before; a store that cannot keep that promise returns `Unavailable`.
    fn record(
        &self,
        key: &ReplayKey,
        expires_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send;
}

const SHARDS: usize = 64;
const MIN_SWEEP: usize = 1024;

/// An in-memory replay store: sharded, bounded, never evicting a live record.
#[derive(Debug)]
pub struct MemoryReplayStore {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Debug, Default)]
struct Shard {
    expiries: HashMap<ReplayKey, u64>,
    /// Expired records are swept when the shard reaches this size, so the
    /// cost of sweeping is spread over the inserts that made it necessary.
    next_sweep: usize,
}

impl MemoryReplayStore {
    /// A store that holds at most `capacity` live records; beyond that it
    /// refuses (and the proxy answers 503) rather than forget one.
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        expiries: HashMap::new(),
                        next_sweep: MIN_SWEEP,
                    })
                })
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Live and not yet swept records, for tests and metrics.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.expiries.len()))
            .sum()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record_now(&self, key: &ReplayKey, expires_at: u64, now: u64) -> Result<(), ReplayError> {
        // Nonces are random, so their first byte spreads keys over shards.
        let shard = self
            .shards
            .get(usize::from(key[32]) % SHARDS)
            .ok_or_else(|| ReplayError::Unavailable("no shard".to_owned()))?;
        let mut shard = shard
            .lock()
            .map_err(|_| ReplayError::Unavailable("lock poisoned".to_owned()))?;
        if let Some(&expiry) = shard.expiries.get(key) {
            if expiry >= now {
                return Err(ReplayError::Replayed);
            }
        }
        if shard.expiries.len() >= shard.next_sweep.min(self.per_shard) {
            shard.expiries.retain(|_, &mut expiry| expiry >= now);
            shard.next_sweep = (shard.expiries.len() * 2).max(MIN_SWEEP);
        }
        if shard.expiries.len() >= self.per_shard && !shard.expiries.contains_key(key) {
            return Err(ReplayError::Unavailable(
                "in-memory replay store is full".to_owned(),
            ));
        }
        shard.expiries.insert(*key, expires_at);
        Ok(())
    }
}

impl ReplayStore for MemoryReplayStore {
    fn record(
        &self,
        key: &ReplayKey,
        expires_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<(), ReplayError>> + Send {
        std::future::ready(self.record_now(key, expires_at, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ReplayKey {
        let mut key = [7u8; 48];
        key[32] = n;
        key[47] = n;
        key
    }

    #[test]
    fn a_key_is_accepted_once_until_it_expires() {
        let store = MemoryReplayStore::new(100);
        assert_eq!(store.record_now(&key(1), 130, 100), Ok(()));
        assert_eq!(
            store.record_now(&key(1), 130, 100),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            store.record_now(&key(1), 130, 130),
            Err(ReplayError::Replayed)
        );
        assert_eq!(store.record_now(&key(1), 161, 131), Ok(()));
    }

    #[test]
    fn a_full_store_refuses_instead_of_forgetting() {
        let store = MemoryReplayStore::new(1);
        // One record per shard fits; the second key in a shard does not.
        let mut a = key(5);
        let mut b = key(5);
        a[0] = 1;
        b[0] = 2;
        assert_eq!(store.record_now(&a, 200, 100), Ok(()));
        assert!(matches!(
            store.record_now(&b, 200, 100),
            Err(ReplayError::Unavailable(_))
        ));
        // The live record is still there.
        assert_eq!(store.record_now(&a, 200, 100), Err(ReplayError::Replayed));
        // Once it has expired, room is made again.
        assert_eq!(store.record_now(&b, 300, 201), Ok(()));
    }

    #[test]
    fn expired_records_are_swept() {
        let store = MemoryReplayStore::new(1_000_000);
        for i in 0..5_000u32 {
            let mut k = key(0);
            k[..4].copy_from_slice(&i.to_be_bytes());
            assert_eq!(store.record_now(&k, 100, 90), Ok(()));
        }
        for i in 0..5_000u32 {
            let mut k = key(0);
            k[4..8].copy_from_slice(&i.to_be_bytes());
            assert_eq!(store.record_now(&k, 300, 200), Ok(()));
        }
        assert!(
            store.len() < 10_000,
            "expired records were kept: {}",
            store.len()
        );
    }
}
