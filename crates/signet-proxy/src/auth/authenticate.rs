//! The one authentication (spec §5 steps 1–9 and 11), used by the proxy's
//! port (`pipeline`) and the admin API (`app::admin`) alike.
//!
//! It comes in two halves because the product's own checks sit between
//! them: [`Authenticator::verify`] (steps 1–9: proof header, key lookup
//! with revocation, the cheap checks, the body, both signatures) and
//! [`record`] (step 11: the replay record, last, so only verified and
//! authorised requests take room in the store). Where a proof's master key
//! is looked up is a value, a [`KeySource`]: the keys file's clients for the
//! proxy ([`ClientKeys`]), the admin key for the admin API ([`AdminKey`]); a
//! further source (OIDC enrolment) is one more implementation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use hyper::body::Incoming;
use signet_core::{
    BodyDigest, ErrorCode, Limits, ProofHeader, RequestParts, VerifiedProof, Verifier, VerifyError,
    VerifyingKey, HEADER_NAME,
};

use crate::auth::clients::{Client, Clients};
use crate::auth::replay::{ReplayError, ReplayStore};
use crate::auth::revocation::Revocations;
use crate::body::{self, BodyBudget, BufferedBody};
use crate::clock::Clock;
use crate::refusal::Refusal;

/// Where a proof's master key is looked up (step 3, with revocations).
pub trait KeySource: std::fmt::Debug + Send + Sync {
    /// Who a trusted key names (a keys-file client; nobody in particular
    /// for the admin key).
    type Identity: Send + Sync;

    /// The identity `proof.mk` names and its key, or `UNKNOWN_KEY` when the
    /// key is not trusted here or the proof's keys are revoked: before the
    /// binding cache is consulted.
    fn lookup(
        &self,
        proof: &ProofHeader,
        now: u64,
    ) -> Result<(Self::Identity, VerifyingKey), Refusal>;
}

/// The proxy's key source: the keys file's clients (and `--master-key`),
/// swapped at reload, minus revoked clients and ephemeral keys.
#[derive(Debug, Clone)]
pub struct ClientKeys {
    clients: Arc<Clients>,
    revocations: Arc<Revocations>,
}

impl ClientKeys {
    /// The clients of `clients`, less what `revocations` revokes.
    pub fn new(clients: Arc<Clients>, revocations: Arc<Revocations>) -> Self {
        ClientKeys {
            clients,
            revocations,
        }
    }
}

impl KeySource for ClientKeys {
    type Identity = Arc<Client>;

    fn lookup(
        &self,
        proof: &ProofHeader,
        now: u64,
    ) -> Result<(Arc<Client>, VerifyingKey), Refusal> {
        let client = match self.clients.current().get(&proof.mk) {
            Some(client) => Arc::clone(client),
            None => return Err(VerifyError::UnknownKey.into()),
        };
        // "Trusted (and not revoked)": before the binding cache is consulted.
        if self.revocations.is_revoked(&client.name, &proof.ek, now) {
            return Err(Refusal::from(VerifyError::UnknownKey).with_detail("revoked"));
        }
        let key = client.key;
        Ok((client, key))
    }
}

/// The admin API's key source: the one `--admin-key`. The admin is no
/// keys-file client, so only its ephemeral keys can be revoked; the admin
/// key itself is replaced by changing `--admin-key`.
#[derive(Debug, Clone)]
pub struct AdminKey {
    key: VerifyingKey,
    revocations: Arc<Revocations>,
}

impl AdminKey {
    /// `key`, less the ephemeral keys `revocations` revokes.
    pub fn new(key: VerifyingKey, revocations: Arc<Revocations>) -> Self {
        AdminKey { key, revocations }
    }
}

impl KeySource for AdminKey {
    type Identity = ();

    fn lookup(&self, proof: &ProofHeader, now: u64) -> Result<((), VerifyingKey), Refusal> {
        if self.revocations.is_ephemeral_key_revoked(&proof.ek, now) {
            return Err(Refusal::from(VerifyError::UnknownKey).with_detail("revoked"));
        }
        // Any key but the admin key is unknown here: `check_key` says so,
        // and the rest of steps 4–6 answer as for any proof.
        Ok(((), self.key))
    }
}

/// What a caller learns while [`Authenticator::verify`] runs, so its record
/// of the request holds what was known when a later step failed. Every
/// method does nothing unless implemented.
pub trait Witness<I> {
    /// Steps 3–6 passed for `identity`: claimed, nothing verified yet.
    fn claimed(&mut self, _identity: &I) {}
    /// Steps 8–9 took this long (whether they passed or not).
    fn verifying_took(&mut self, _elapsed: Duration) {}
    /// Steps 8–9 passed for `identity`.
    fn verified(&mut self, _identity: &I) {}
}

/// A witness that notes nothing.
impl<I> Witness<I> for () {}

/// How a request body is read (step 7).
#[derive(Debug)]
pub struct BodyLimits {
    /// Largest body, bytes.
    pub max: u64,
    /// How long the whole body may take.
    pub timeout: Option<Duration>,
    /// The bodies held at once, in all.
    pub budget: BodyBudget,
}

/// Steps 1–9, for one listener's limits.
#[derive(Debug)]
pub struct Authenticator {
    verifier: Verifier,
    clock: Clock,
    body: BodyLimits,
}

/// A request that passed steps 1–9.
#[derive(Debug)]
pub struct Authenticated<I> {
    /// Who its key names.
    pub identity: I,
    /// The verified proof, to record (step 11) once the request is allowed.
    pub proof: VerifiedProof,
    /// The body, read whole and covered by the request signature.
    pub body: BufferedBody,
}

impl Authenticator {
    /// Checks proofs within `limits` by `clock`, reading bodies within
    /// `body`. The trusted keys are the [`KeySource`]'s, swappable at
    /// runtime: the verifier keeps only the limits and the binding cache.
    pub fn new(limits: Limits, clock: Clock, body: BodyLimits) -> Self {
        Authenticator {
            verifier: Verifier::new([], limits),
            clock,
            body,
        }
    }

    /// Steps 1–9 for a request whose target and method ingress already
    /// checked: the proof header, the key in `keys`, the cheap checks, the
    /// body, both signatures. The proof is not recorded: see [`record`].
    pub async fn verify<S, W>(
        &self,
        keys: &S,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: Incoming,
        witness: &mut W,
    ) -> Result<Authenticated<S::Identity>, Refusal>
    where
        S: KeySource + ?Sized,
        W: Witness<S::Identity> + Send,
    {
        // Steps 1–2: syntax only, no key lookups or crypto yet.
        let proof = proof_header(headers)?;

        // Steps 3–6: table lookup and integer compares, before reading a
        // body or checking a signature.
        let now = self.clock.now();
        let (identity, key) = keys.lookup(&proof, now)?;
        let checked = self.verifier.check_key(&key, &proof, now)?;
        witness.claimed(&identity);

        // Step 7: the body is read (bounded, and within the global budget,
        // since nothing is authenticated yet) before the signatures because
        // the request signature covers its digest.
        let body = body::read(body, self.body.max, self.body.timeout, &self.body.budget).await?;

        // Steps 8–9: binding signature (cached), then request signature.
        let verifying = Instant::now();
        let verified = checked.verify(&RequestParts {
            method: method.as_str(),
            target,
            body_digest: BodyDigest::of(&body.bytes),
        });
        witness.verifying_took(verifying.elapsed());
        let proof = verified?;
        witness.verified(&identity);
        Ok(Authenticated {
            identity,
            proof,
            body,
        })
    }
}

/// Step 11: the replay record, written last (after the caller's own checks),
/// so only verified, authorised requests can take room in the store; the
/// store checks freshness again with the `now` it records by (amendment 1).
pub async fn record(replay: &ReplayStore, proof: &VerifiedProof) -> Result<(), ReplayError> {
    replay.record(proof).await
}

/// Steps 1–2: exactly one `Signet-Proof` header, and it parses.
pub fn proof_header(headers: &HeaderMap) -> Result<ProofHeader, Refusal> {
    let mut values = headers.get_all(HEADER_NAME).iter();
    let value = values
        .next()
        .ok_or_else(|| Refusal::new(ErrorCode::MissingProof))?;
    if values.next().is_some() {
        return Err(
            Refusal::new(ErrorCode::InvalidProof).with_detail("more than one Signet-Proof header")
        );
    }
    Ok(ProofHeader::parse(value.as_bytes())?)
}
