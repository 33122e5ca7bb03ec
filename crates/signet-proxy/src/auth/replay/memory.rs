//! The in-memory replay store: one process, forgotten on restart.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use signet_core::{Limits, ReplayRecord, ReplayScope, VerifiedProof};

use super::{ReplayError, ReplayKey};
use crate::clock::Clock;

const SHARDS: usize = 64;

/// An in-memory replay store: sharded by a keyed hash, bounded globally,
/// never evicting a live record.
#[derive(Debug)]
pub struct MemoryReplayStore {
    shards: Box<[Mutex<Shard>]>,
    /// Random per process, so no client can choose nonces that crowd one shard.
    shard_hasher: std::collections::hash_map::RandomState,
    capacity: usize,
    /// Records held across all shards (live or expired but not yet dropped).
    len: AtomicUsize,
    /// The `now` of the last sweep over every shard: one per second at most,
    /// since expiry has a granularity of one second.
    last_full_sweep: AtomicU64,
    limits: Limits,
    clock: Clock,
}

#[derive(Debug, Default)]
struct Shard {
    keep_until: HashMap<ReplayKey, u64>,
    /// The same records by expiry, so expired ones are dropped in order
    /// without scanning the live ones.
    by_expiry: BTreeMap<u64, Vec<ReplayKey>>,
}

impl Shard {
    /// Drops every record that expired before `now`; returns how many.
    fn expire(&mut self, now: u64) -> usize {
        let mut dropped = 0;
        while let Some(entry) = self.by_expiry.first_entry() {
            if ReplayRecord::is_live(*entry.key(), now) {
                break;
            }
            for key in entry.remove() {
                self.keep_until.remove(&key);
                dropped += 1;
            }
        }
        dropped
    }
}

impl MemoryReplayStore {
    /// A store that holds at most `capacity` records; beyond that it refuses
    /// (and the proxy answers 503) rather than forget a live one. `limits`
    /// and `clock` must be the ones the proxy verifies with.
    pub fn new(capacity: usize, limits: Limits, clock: Clock) -> Self {
        MemoryReplayStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_hasher: std::collections::hash_map::RandomState::new(),
            capacity: capacity.max(1),
            len: AtomicUsize::new(0),
            last_full_sweep: AtomicU64::new(0),
            limits,
            clock,
        }
    }

    /// The store a proxy with `config` uses: its capacity, limits and clock.
    pub fn for_config(config: &crate::config::Config) -> Self {
        Self::new(
            config.replay_capacity,
            config.limits(),
            config.clock.clone(),
        )
    }

    /// Records held, for tests and metrics.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self, index: usize) -> Result<MutexGuard<'_, Shard>, ReplayError> {
        self.shards
            .get(index)
            .ok_or_else(|| ReplayError::Unavailable("no such shard".to_owned()))?
            .lock()
            .map_err(|_| ReplayError::Unavailable("lock poisoned".to_owned()))
    }

    /// Records `proof` unless its key is already there (spec §5 step 11).
    pub fn record(&self, proof: &VerifiedProof) -> Result<(), ReplayError> {
        let key = proof.replay_key();
        let index = (self.shard_hasher.hash_one(key) % SHARDS as u64) as usize;
        let mut shard = self.lock(index)?;
        // Read under the lock: the same `now` decides freshness and expiry.
        let now = self.clock.now();
        let record = proof
            .replay_record(self.limits, now, ReplayScope::Process)
            .map_err(|_| ReplayError::Stale)?;
        let expired = shard.expire(now);
        self.len.fetch_sub(expired, Ordering::Relaxed);
        if shard.keep_until.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        if !self.reserve() {
            // Other shards may hold expired records; they are swept without
            // blocking on busy shards (no lock order to get wrong).
            self.sweep_others(index, now);
            if !self.reserve() {
                return Err(ReplayError::Unavailable(format!(
                    "in-memory replay store is full ({} live records)",
                    self.capacity
                )));
            }
        }
        shard.keep_until.insert(key, record.keep_until);
        shard
            .by_expiry
            .entry(record.keep_until)
            .or_default()
            .push(key);
        Ok(())
    }

    /// Whether `proof`'s key holds a live record: a look that records
    /// nothing, so it decides nothing about a copy still on its way to
    /// [`MemoryReplayStore::record`].
    pub fn seen(&self, proof: &VerifiedProof) -> Result<bool, ReplayError> {
        let key = proof.replay_key();
        let index = (self.shard_hasher.hash_one(key) % SHARDS as u64) as usize;
        let shard = self.lock(index)?;
        let now = self.clock.now();
        Ok(shard
            .keep_until
            .get(&key)
            .is_some_and(|&keep_until| ReplayRecord::is_live(keep_until, now)))
    }

    /// Takes one slot of the global capacity, if one is free.
    fn reserve(&self) -> bool {
        if self.len.fetch_add(1, Ordering::AcqRel) < self.capacity {
            true
        } else {
            self.len.fetch_sub(1, Ordering::AcqRel);
            false
        }
    }

    fn sweep_others(&self, held: usize, now: u64) {
        if self.last_full_sweep.swap(now, Ordering::AcqRel) == now {
            return;
        }
        for (index, shard) in self.shards.iter().enumerate() {
            if index == held {
                continue;
            }
            if let Ok(mut shard) = shard.try_lock() {
                let expired = shard.expire(now);
                self.len.fetch_sub(expired, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_core::{Binding, BodyDigest, Purpose, RequestParts, SigningKey, Verifier};

    const NOW: u64 = 1_000_000;

    struct Proofs {
        master: SigningKey,
        verifier: Verifier,
    }

    impl Proofs {
        fn new() -> Self {
            let master = SigningKey::from_bytes(&[1; 32]);
            let verifier = Verifier::new([master.verifying_key()], Limits::default());
            Proofs { master, verifier }
        }

        /// A verified proof signed at `ts` with the chosen nonce.
        fn at(&self, ts: u64, nonce: [u8; 16]) -> VerifiedProof {
            let ephemeral = SigningKey::from_bytes(&[2; 32]);
            let binding = Binding::sign(
                &self.master,
                &ephemeral.verifying_key(),
                ts + 300,
                Purpose::EMPTY,
            );
            let request = RequestParts {
                method: "GET",
                target: "/user",
                body_digest: BodyDigest::of(b""),
            };
            let proof = binding.sign_request(&ephemeral, &request, ts, nonce);
            match self
                .verifier
                .check(&proof, ts)
                .and_then(|c| c.verify(&request))
            {
                Ok(verified) => verified,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn nonce(i: u32) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[12..].copy_from_slice(&i.to_be_bytes());
        n
    }

    fn store(capacity: usize) -> (MemoryReplayStore, Clock) {
        let clock = Clock::fixed(NOW);
        (
            MemoryReplayStore::new(capacity, Limits::default(), clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_key_is_accepted_once_while_any_replay_could_still_be_fresh() {
        let proofs = Proofs::new();
        let (store, clock) = store(100);
        let proof = proofs.at(NOW, nonce(1));
        assert_eq!(store.record(&proof), Ok(()));
        assert_eq!(store.record(&proof), Err(ReplayError::Replayed));
        // The last second at which the proof is fresh: still a replay.
        clock.set(NOW + 30);
        assert_eq!(store.record(&proof), Err(ReplayError::Replayed));
        // Past it, the proof is stale, never accepted again.
        clock.set(NOW + 31);
        assert_eq!(store.record(&proof), Err(ReplayError::Stale));
    }

    #[test]
    fn a_proof_that_went_stale_before_its_record_is_refused() {
        // The head arrived in time; the body took longer than the skew.
        let proofs = Proofs::new();
        let (store, clock) = store(100);
        clock.set(NOW + 31);
        assert_eq!(
            store.record(&proofs.at(NOW, nonce(1))),
            Err(ReplayError::Stale)
        );
        assert!(store.is_empty());
    }

    #[test]
    fn a_full_store_refuses_instead_of_forgetting() {
        let proofs = Proofs::new();
        let (store, clock) = store(2);
        let a = proofs.at(NOW, nonce(1));
        assert_eq!(store.record(&a), Ok(()));
        assert_eq!(store.record(&proofs.at(NOW, nonce(2))), Ok(()));
        assert!(matches!(
            store.record(&proofs.at(NOW, nonce(3))),
            Err(ReplayError::Unavailable(_))
        ));
        // The live records are still there.
        assert_eq!(store.record(&a), Err(ReplayError::Replayed));
        // Once they have expired, room is made again, whichever shard they are in.
        clock.set(NOW + 31);
        assert_eq!(store.record(&proofs.at(NOW + 31, nonce(3))), Ok(()));
        assert_eq!(store.record(&proofs.at(NOW + 31, nonce(4))), Ok(()));
        assert!(matches!(
            store.record(&proofs.at(NOW + 31, nonce(5))),
            Err(ReplayError::Unavailable(_))
        ));
    }

    #[test]
    fn capacity_is_global_so_nonces_chosen_by_one_client_cannot_fill_a_shard() {
        // Nonces that all start with the same bytes once picked one shard,
        // capped at capacity/64: 2% of the store refused everyone else.
        let proofs = Proofs::new();
        let (store, _) = store(200);
        for i in 0..200 {
            assert_eq!(store.record(&proofs.at(NOW, nonce(i))), Ok(()), "{i}");
        }
        assert!(matches!(
            store.record(&proofs.at(NOW, nonce(5_000))),
            Err(ReplayError::Unavailable(_))
        ));
    }

    #[test]
    fn a_look_sees_live_records_only_and_records_nothing() {
        let proofs = Proofs::new();
        let (store, clock) = store(100);
        let proof = proofs.at(NOW, nonce(1));
        assert_eq!(store.seen(&proof), Ok(false));
        assert!(store.is_empty(), "a look takes no record");
        assert_eq!(store.record(&proof), Ok(()));
        assert_eq!(store.seen(&proof), Ok(true));
        assert_eq!(store.seen(&proofs.at(NOW, nonce(2))), Ok(false));
        // An expired record is as good as none.
        clock.set(NOW + 100);
        assert_eq!(store.seen(&proof), Ok(false));
    }

    #[test]
    fn expired_records_are_dropped_as_new_ones_arrive() {
        let proofs = Proofs::new();
        let (store, clock) = store(1_000_000);
        for i in 0..300 {
            assert_eq!(store.record(&proofs.at(NOW, nonce(i))), Ok(()));
        }
        clock.set(NOW + 100);
        // Every shard that takes a new record drops its expired ones first.
        for i in 0..300 {
            let proof = proofs.at(NOW + 100, nonce(10_000 + i));
            assert_eq!(store.record(&proof), Ok(()));
        }
        assert!(store.len() < 600, "expired records kept: {}", store.len());
    }
}
