//! Offline two-step verification (spec §5 steps 3–6, 8 and 9).
//!
//! The proxy drives the steps in order; this module owns the ones that need
//! nothing but the trusted keys, the limits and `now`:
//!
//! ```text
//! ProofHeader ──check(now)──▶ CheckedProof ──verify(request)──▶ VerifiedProof
//!             steps 3–6                     steps 8–9
//! ```
//!
//! Step 7 (body size) sits between the two calls because the body must be read
//! before the request signature can be checked. Steps 10–11 (policy, replay)
//! belong to the proxy, but the rule of step 11 — still fresh when recorded,
//! and for how long to remember — is decided here, once, by
//! [`VerifiedProof::replay_record`], so every replay store gets it right by
//! construction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;

use crate::error::VerifyError;
use crate::header::{ProofHeader, Purpose};
use crate::keys::key_id;
use crate::request::{write_canonical, BindingMessage, RequestParts};
use crate::signature::ValidKey;

/// Time limits of verification, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest allowed `|ts - now|` (spec default 30).
    pub clock_skew: u64,
    /// Largest allowed `exp - now` (spec default 900).
    pub max_binding_ttl: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            clock_skew: 30,
            max_binding_ttl: 900,
        }
    }
}

/// Holds the trusted master keys, the limits and a cache of verified
/// bindings. Share one per process (it is `Sync`).
pub struct Verifier {
    trusted: HashMap<[u8; 32], VerifyingKey>,
    limits: Limits,
    bindings: BindingCache,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("trusted_keys", &self.trusted.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// How many verified bindings the cache holds by default.
pub const DEFAULT_BINDING_CACHE_CAPACITY: usize = 65_536;

impl Verifier {
    /// A verifier that trusts `keys`.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>, limits: Limits) -> Self {
        Verifier {
            trusted: keys.into_iter().map(|k| (k.to_bytes(), k)).collect(),
            limits,
            bindings: BindingCache::new(DEFAULT_BINDING_CACHE_CAPACITY),
        }
    }

    /// Sets how many verified bindings are remembered (0 turns the cache off).
    pub fn with_binding_cache_capacity(mut self, capacity: usize) -> Self {
        self.bindings = BindingCache::new(capacity);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Steps 3–6: trusted key, expiry, binding lifetime, clock skew. Cheap;
    /// no signature is checked. Arithmetic cannot overflow: a huge `exp` is
    /// `BindingTtlTooLong`, a huge `ts` is `ClockSkew`.
    pub fn check<'a>(
        &'a self,
        proof: &'a ProofHeader,
        now: u64,
    ) -> Result<CheckedProof<'a>, VerifyError> {
        let master = self.trusted.get(&proof.mk).ok_or(VerifyError::UnknownKey)?;
        self.check_key(master, proof, now)
    }

    /// Steps 4–6 for a proof whose `mk` the caller has already found trusted
    /// (step 3) in a key set of its own — one it can swap at runtime, with
    /// revocations applied. `master` must be the key `proof.mk` names; the
    /// binding cache is only consulted after this, so a key the caller no
    /// longer trusts never reaches a cached binding.
    pub fn check_key<'a>(
        &'a self,
        master: &'a VerifyingKey,
        proof: &'a ProofHeader,
        now: u64,
    ) -> Result<CheckedProof<'a>, VerifyError> {
        if master.as_bytes() != &proof.mk {
            return Err(VerifyError::UnknownKey);
        }
        if now > proof.exp {
            return Err(VerifyError::BindingExpired);
        }
        if proof.exp - now > self.limits.max_binding_ttl {
            return Err(VerifyError::BindingTtlTooLong);
        }
        if proof.ts.abs_diff(now) > self.limits.clock_skew {
            return Err(VerifyError::ClockSkew);
        }
        Ok(CheckedProof {
            verifier: self,
            master,
            proof,
            now,
        })
    }
}

/// A proof that passed steps 3–6; its signatures are not checked yet.
#[derive(Debug)]
pub struct CheckedProof<'a> {
    verifier: &'a Verifier,
    master: &'a VerifyingKey,
    proof: &'a ProofHeader,
    now: u64,
}

impl CheckedProof<'_> {
    /// The parsed proof.
    pub fn proof(&self) -> &ProofHeader {
        self.proof
    }

    /// Steps 8 and 9: the binding signature under `mk` (skipped when this
    /// exact binding verified before and has not expired), then the request
    /// signature under `ek` over the canonical request. Both are judged by
    /// the one rule of spec §5 "Signature validity" ([`ValidKey::verify`]).
    /// A master key that fails rule 2 or 3 fails step 8 (configuration
    /// should have refused it, see [`check_master_key`]); an `ek` that fails
    /// them fails step 9, whatever `s` is.
    ///
    /// [`check_master_key`]: crate::check_master_key
    pub fn verify(self, request: &RequestParts<'_>) -> Result<VerifiedProof, VerifyError> {
        let proof = self.proof;
        let message = BindingMessage::new(&proof.ek, proof.exp, &proof.pur);
        let cache_key = BindingKey {
            mk: proof.mk,
            b: proof.b,
        };
        // A cached binding comes with its ephemeral key already decoded and
        // checked (rules 2 and 3): a request then decodes only its `R`.
        let ephemeral = match self.verifier.bindings.get(&cache_key, &message, self.now) {
            Some(ephemeral) => ephemeral,
            None => {
                ValidKey::from_verifying_key(self.master)
                    .and_then(|master| master.verify(message.as_bytes(), &proof.b))
                    .map_err(|_| VerifyError::InvalidBindingSignature)?;
                let ephemeral =
                    ValidKey::new(&proof.ek).map_err(|_| VerifyError::InvalidRequestSignature)?;
                self.verifier
                    .bindings
                    .insert(cache_key, message, proof.exp, ephemeral, self.now);
                ephemeral
            }
        };
        CANONICAL_BUF
            .with(|buf| {
                let mut buf = buf.borrow_mut();
                write_canonical(&mut buf, request, proof.ts, &proof.n);
                ephemeral.verify(&buf, &proof.s)
            })
            .map_err(|_| VerifyError::InvalidRequestSignature)?;

        Ok(VerifiedProof {
            mk: proof.mk,
            ek: proof.ek,
            exp: proof.exp,
            pur: proof.pur,
            ts: proof.ts,
            n: proof.n,
        })
    }
}

thread_local! {
    /// One reusable canonical-request buffer per thread: no allocation per
    /// request once it has grown to the longest target seen.
    static CANONICAL_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A proof whose binding and request signatures both verified. Only
/// [`CheckedProof::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    mk: [u8; 32],
    ek: [u8; 32],
    exp: u64,
    pur: Purpose,
    ts: u64,
    n: [u8; 16],
}

impl VerifiedProof {
    /// The master public key that vouched for this request.
    pub fn master_key(&self) -> &[u8; 32] {
        &self.mk
    }

    /// The ephemeral public key that signed this request.
    pub fn ephemeral_key(&self) -> &[u8; 32] {
        &self.ek
    }

    /// The binding's expiry.
    pub fn expires_at(&self) -> u64 {
        self.exp
    }

    /// The binding's purpose.
    pub fn purpose(&self) -> &Purpose {
        &self.pur
    }

    /// The request time.
    pub fn timestamp(&self) -> u64 {
        self.ts
    }

    /// The request nonce.
    pub fn nonce(&self) -> &[u8; 16] {
        &self.n
    }

    /// The replay key `(ek, n)` (spec §5 step 11).
    pub fn replay_key(&self) -> [u8; 48] {
        let mut key = [0u8; 48];
        key[..32].copy_from_slice(&self.ek);
        key[32..].copy_from_slice(&self.n);
        key
    }

    /// A short, non-secret id of the master key, for logs.
    pub fn key_id(&self) -> String {
        key_id(&self.mk)
    }
}

/// Who shares a replay store; it decides how long a record must live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayScope {
    /// One process: the clock that checks freshness also expires records.
    Process,
    /// Several replicas (a shared store such as Redis) whose clocks may
    /// differ from each other by up to `clock_skew`.
    Shared,
}

/// What a replay store writes for one verified proof (spec §5 step 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRecord {
    /// The replay key `(ek, n)`.
    pub key: [u8; 48],
    /// The last unix second (inclusive) during which the record must still
    /// exist: while any clock sharing the store could accept this proof.
    pub keep_until: u64,
}

impl ReplayRecord {
    /// How long from `now` the record must be kept, in whole seconds: to the
    /// end of second `keep_until`, so at least 1.
    pub fn ttl_secs(&self, now: u64) -> u64 {
        self.keep_until.saturating_sub(now).saturating_add(1)
    }

    /// Whether a record kept until `keep_until` still counts at `now`.
    pub fn is_live(keep_until: u64, now: u64) -> bool {
        keep_until >= now
    }
}

impl VerifiedProof {
    /// Step 11's rule (spec §5, amendment 1), for a store about to record
    /// this proof at `now` — the same `now` the store expires records by.
    ///
    /// The proof must still pass step 6 at this moment: reading the body took
    /// time the client controls, and a proof that went stale meanwhile could
    /// otherwise be replayed after the first record expired. It is then
    /// remembered while any clock sharing the store could accept it:
    /// until `ts + clock_skew` in one process, `ts + 2 × clock_skew` when
    /// replicas whose clocks differ by up to `clock_skew` share the store.
    ///
    /// ```
    /// # use signet_core::{ReplayScope, VerifyError, Limits};
    /// # fn demo(proof: &signet_core::VerifiedProof) {
    /// let limits = Limits::default(); // clock_skew 30 s
    /// let ts = proof.timestamp();
    /// let record = proof.replay_record(limits, ts + 30, ReplayScope::Process);
    /// assert_eq!(record.map(|r| r.keep_until), Ok(ts + 30));
    /// assert_eq!(
    ///     proof.replay_record(limits, ts + 31, ReplayScope::Process),
    ///     Err(VerifyError::ClockSkew)
    /// );
    /// # }
    /// ```
    pub fn replay_record(
        &self,
        limits: Limits,
        now: u64,
        scope: ReplayScope,
    ) -> Result<ReplayRecord, VerifyError> {
        if self.ts.abs_diff(now) > limits.clock_skew {
            return Err(VerifyError::ClockSkew);
        }
        let window = match scope {
            ReplayScope::Process => limits.clock_skew,
            ReplayScope::Shared => limits.clock_skew.saturating_mul(2),
        };
        Ok(ReplayRecord {
            key: self.replay_key(),
            keep_until: self.ts.saturating_add(window),
        })
    }
}

const SHARDS: usize = 16;

/// Verified bindings, found by `(mk, b)` and matched on the whole binding
/// message (`ek, exp, pur`), kept until `exp`, each with its ephemeral key
/// decoded and checked ([`ValidKey`]). A hit is exactly "this `mk` signed this message with this `b`
/// before": no digest stands in for the bytes, so there is no collision to
/// worry about, and hashing the key (SipHash, keyed per process) costs far
/// less than the SHA-256 it replaces. Bounded: when a shard is full, expired
/// entries are dropped; if it is still full the new binding is simply not
/// cached.
struct BindingCache {
    shards: Vec<Shard>,
    per_shard: usize,
}

#[derive(PartialEq, Eq, Hash)]
struct BindingKey {
    mk: [u8; 32],
    b: [u8; 64],
}

struct Entry {
    message: BindingMessage,
    exp: u64,
    ephemeral: ValidKey,
}

type Shard = Mutex<HashMap<BindingKey, Entry>>;

impl BindingCache {
    fn new(capacity: usize) -> Self {
        BindingCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    /// Only verified bindings are ever inserted, so a caller choosing `b`
    /// to crowd one shard needs a master key.
    fn shard(&self, key: &BindingKey) -> Option<&Shard> {
        self.shards.get(usize::from(key.b[0]) % SHARDS)
    }

    /// The binding's decoded ephemeral key, if this exact binding verified
    /// before and has not expired.
    fn get(&self, key: &BindingKey, message: &BindingMessage, now: u64) -> Option<ValidKey> {
        let map = self.shard(key)?.lock().ok()?;
        map.get(key)
            .filter(|entry| now <= entry.exp && entry.message.as_bytes() == message.as_bytes())
            .map(|entry| entry.ephemeral)
    }

    fn insert(
        &self,
        key: BindingKey,
        message: BindingMessage,
        exp: u64,
        ephemeral: ValidKey,
        now: u64,
    ) {
        if self.per_shard == 0 {
            return;
        }
        let Some(Ok(mut map)) = self.shard(&key).map(Mutex::lock) else {
            return;
        };
        if map.len() >= self.per_shard {
            map.retain(|_, entry| now <= entry.exp);
        }
        if map.len() < self.per_shard {
            map.insert(
                key,
                Entry {
                    message,
                    exp,
                    ephemeral,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    use crate::request::{Binding, BodyDigest};

    fn proof_at(ts: u64, exp: u64) -> (Verifier, ProofHeader) {
        let master = SigningKey::from_bytes(&[1; 32]);
        let ephemeral = SigningKey::from_bytes(&[2; 32]);
        let binding = Binding::sign(&master, &ephemeral.verifying_key(), exp, Purpose::EMPTY);
        let request = RequestParts {
            method: "GET",
            target: "/user",
            body_digest: BodyDigest::of(b""),
        };
        let proof = binding.sign_request(&ephemeral, &request, ts, [3; 16]);
        (
            Verifier::new([master.verifying_key()], Limits::default()),
            proof,
        )
    }

    fn check(verifier: &Verifier, proof: &ProofHeader, now: u64) -> Result<(), VerifyError> {
        verifier.check(proof, now).map(|_| ())
    }

    #[test]
    fn time_checks_hit_their_edges_exactly() {
        let (v, p) = proof_at(1000, 1900);
        assert_eq!(check(&v, &p, 1000), Ok(()));
        assert_eq!(check(&v, &p, 999), Err(VerifyError::BindingTtlTooLong));
        assert_eq!(check(&v, &p, 1030), Ok(()));
        assert_eq!(check(&v, &p, 1031), Err(VerifyError::ClockSkew));
        assert_eq!(check(&v, &p, 970), Err(VerifyError::BindingTtlTooLong));
        let (v, p) = proof_at(1000, 1000);
        assert_eq!(check(&v, &p, 1000), Ok(()));
        assert_eq!(check(&v, &p, 1001), Err(VerifyError::BindingExpired));
    }

    #[test]
    fn huge_values_are_time_failures_not_overflows() {
        let (v, p) = proof_at(u64::MAX, u64::MAX);
        assert_eq!(check(&v, &p, 1000), Err(VerifyError::BindingTtlTooLong));
        let (v, p) = proof_at(u64::MAX, 1500);
        assert_eq!(check(&v, &p, 1000), Err(VerifyError::ClockSkew));
        let (v, p) = proof_at(0, 1500);
        assert_eq!(check(&v, &p, 1000), Err(VerifyError::ClockSkew));
    }

    #[test]
    fn a_cached_binding_still_needs_a_valid_request_signature() {
        let (v, mut p) = proof_at(1000, 1500);
        let request = RequestParts {
            method: "GET",
            target: "/user",
            body_digest: BodyDigest::of(b""),
        };
        assert!(v.check(&p, 1000).and_then(|c| c.verify(&request)).is_ok());
        p.s[0] ^= 1;
        assert_eq!(
            v.check(&p, 1000).and_then(|c| c.verify(&request)),
            Err(VerifyError::InvalidRequestSignature)
        );
    }

    #[test]
    fn a_cached_binding_does_not_cover_a_changed_purpose() {
        let (v, mut p) = proof_at(1000, 1500);
        let request = RequestParts {
            method: "GET",
            target: "/user",
            body_digest: BodyDigest::of(b""),
        };
        assert!(v.check(&p, 1000).and_then(|c| c.verify(&request)).is_ok());
        p.pur = Purpose::new("admin").unwrap_or(Purpose::EMPTY);
        assert_eq!(
            v.check(&p, 1000).and_then(|c| c.verify(&request)),
            Err(VerifyError::InvalidBindingSignature)
        );
    }

    #[test]
    fn a_cached_binding_does_not_cover_another_ephemeral_key_or_expiry() {
        let request = RequestParts {
            method: "GET",
            target: "/user",
            body_digest: BodyDigest::of(b""),
        };
        let (v, p) = proof_at(1000, 1500);
        assert!(v.check(&p, 1000).and_then(|c| c.verify(&request)).is_ok());
        // Same `mk` and `b`, so the same cache slot: the message must match.
        let mut later = p.clone();
        later.exp = 1400;
        assert_eq!(
            v.check(&later, 1000).and_then(|c| c.verify(&request)),
            Err(VerifyError::InvalidBindingSignature)
        );
        let mut other = p.clone();
        other.ek = SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
        assert_eq!(
            v.check(&other, 1000).and_then(|c| c.verify(&request)),
            Err(VerifyError::InvalidBindingSignature)
        );
        // And the original is still a hit.
        assert!(v.check(&p, 1000).and_then(|c| c.verify(&request)).is_ok());
    }

    fn verified_at(ts: u64) -> VerifiedProof {
        let (v, p) = proof_at(ts, ts.saturating_add(300));
        let request = RequestParts {
            method: "GET",
            target: "/user",
            body_digest: BodyDigest::of(b""),
        };
        match v.check(&p, ts).and_then(|c| c.verify(&request)) {
            Ok(verified) => verified,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_proof_must_still_be_fresh_when_its_replay_record_is_written() {
        let proof = verified_at(1000);
        let limits = Limits::default();
        let record = |now| proof.replay_record(limits, now, ReplayScope::Process);
        assert_eq!(record(1030).map(|r| r.keep_until), Ok(1030));
        assert_eq!(record(970).map(|r| r.keep_until), Ok(1030));
        assert_eq!(record(1031), Err(VerifyError::ClockSkew));
        assert_eq!(record(969), Err(VerifyError::ClockSkew));
        assert_eq!(record(1000).map(|r| r.key), Ok(proof.replay_key()));
    }

    #[test]
    fn a_record_outlives_every_moment_at_which_the_proof_is_fresh() {
        let proof = verified_at(1000);
        let limits = Limits::default();
        for now in 970..=1030 {
            let Ok(record) = proof.replay_record(limits, now, ReplayScope::Process) else {
                panic!("fresh at {now}");
            };
            // Any later moment at which a replay could be recorded finds it.
            for later in now..=1030 {
                assert!(ReplayRecord::is_live(record.keep_until, later));
            }
            assert_eq!(record.ttl_secs(now), 1030 - now + 1);
        }
    }

    #[test]
    fn a_shared_store_covers_replicas_whose_clocks_differ_by_the_skew() {
        let proof = verified_at(1000);
        let record = proof.replay_record(Limits::default(), 1000, ReplayScope::Shared);
        // A replica 30 s behind still accepts the proof until its own 1030,
        // which is 1060 on the recording replica's clock.
        assert_eq!(record.map(|r| r.keep_until), Ok(1060));
        let huge = verified_at(u64::MAX - 10);
        let record = huge.replay_record(Limits::default(), u64::MAX - 10, ReplayScope::Shared);
        assert_eq!(record.map(|r| r.keep_until), Ok(u64::MAX));
    }

    #[test]
    fn a_key_found_elsewhere_must_be_the_one_the_proof_names() {
        let (v, p) = proof_at(1000, 1500);
        let stranger = SigningKey::from_bytes(&[9; 32]).verifying_key();
        assert_eq!(
            v.check_key(&stranger, &p, 1000).map(|_| ()),
            Err(VerifyError::UnknownKey)
        );
        let master = SigningKey::from_bytes(&[1; 32]).verifying_key();
        assert!(v.check_key(&master, &p, 1000).is_ok());
        let empty = Verifier::new([], Limits::default());
        assert!(
            empty.check_key(&master, &p, 1000).is_ok(),
            "no built-in keys needed"
        );
    }

    #[test]
    fn unknown_master_keys_are_refused_first() {
        let (_, p) = proof_at(1000, 1500);
        let stranger = Verifier::new(
            [SigningKey::from_bytes(&[9; 32]).verifying_key()],
            Limits::default(),
        );
        assert_eq!(check(&stranger, &p, 1000), Err(VerifyError::UnknownKey));
    }
}
