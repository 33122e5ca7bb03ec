//! The request pipeline: one function that reads top to bottom as the spec's
//! stages, each implemented in its own module.
//!
//! ```text
//! target form → method → health → parse proof → cheap checks → read body
//!   → signatures → policy → replay look → rate → credential → cache lookup → quota
//!   → replay → cached answer, or rewrite + forward → stream back (kept by
//!   the cache) → log
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{Entry, AUTHORIZATION};
use http::{HeaderMap, HeaderName, Method, Request, Response};
use hyper::body::Incoming;
use signet_core::{
    BodyDigest, ErrorCode, ProofHeader, RequestParts, Verifier, VerifyError, HEADER_NAME,
};

use crate::auth::clients::Clients;
use crate::auth::replay::ReplayError;
use crate::auth::replay::ReplayStore;
use crate::auth::revocation::Revocations;
use crate::body::{self, BodyBudget, ProxyBody};
use crate::clock::Clock;
use crate::config::Config;
use crate::ingress::health;
use crate::ingress::target;
use crate::observe::logging::{LoggedBody, RequestLog};
use crate::observe::metrics::Metrics;
use crate::policy::rate::RateLimiter;
use crate::policy::Policy;
use crate::refusal::Refusal;
use crate::upstream::api::cache::{Cache, Plan};
use crate::upstream::api::quota::QuotaGuard;
use crate::upstream::credentials::Credentials;
use crate::upstream::forward::{ForwardSetupError, Forwarder};

/// The body of every response: the proxy's own or the upstream's, with the
/// request's log record, written when the body ends.
pub type ResponseBody = LoggedBody<ProxyBody>;

/// The proxy's request handler and everything it needs, shared by all
/// connections.
#[derive(Debug)]
pub struct Proxy {
    metrics: Arc<Metrics>,
    quota: Arc<QuotaGuard>,
    credentials: Arc<Credentials>,
    clients: Arc<Clients>,
    revocations: Arc<Revocations>,
    rate: RateLimiter,
    verifier: Verifier,
    replay: ReplayStore,
    policy: Policy,
    forwarder: Forwarder,
    clock: Clock,
    health_path: String,
    max_body_size: u64,
    body_budget: BodyBudget,
    read_timeout: Option<Duration>,
    cache: Cache,
    upstream_timeout: Duration,
}

impl Proxy {
    /// Builds the handler from a validated configuration, the trusted
    /// clients and a replay store.
    pub fn new(
        config: &Config,
        clients: Arc<Clients>,
        revocations: Arc<Revocations>,
        replay: ReplayStore,
        rate: RateLimiter,
        quota: QuotaGuard,
        credentials: Arc<Credentials>,
    ) -> Result<Self, ForwardSetupError> {
        let metrics = Arc::new(Metrics::new());
        Ok(Proxy {
            cache: Cache::new(
                config.cache_size,
                config.public_url.is_none(),
                Arc::clone(&metrics),
            ),
            upstream_timeout: config.upstream_timeout,
            metrics,
            quota: Arc::new(quota),
            clients,
            revocations,
            rate,
            // The trusted keys live in `clients`, swappable at reload; the
            // verifier keeps only the limits and the binding cache.
            verifier: Verifier::new([], config.limits()),
            replay,
            policy: Policy::new(config.allowed_purposes.clone()),
            credentials: Arc::clone(&credentials),
            forwarder: Forwarder::new(config, credentials)?,
            clock: config.clock.clone(),
            health_path: config.health_path.clone(),
            max_body_size: config.max_body_size,
            body_budget: BodyBudget::new(config.body_buffer_budget),
            read_timeout: config.read_timeout,
        })
    }

    /// The forwarder (its client and upstream serve the credential task too).
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The upstream credential.
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    /// The proxy's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The quota guard (its sync task runs beside the server).
    pub fn quota(&self) -> &Arc<QuotaGuard> {
        &self.quota
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The health path (`--health-path`).
    pub fn health_path(&self) -> &str {
        &self.health_path
    }

    /// The replay store, which the admin API shares: a proof is taken once,
    /// on whichever listener and replica.
    pub fn replay(&self) -> &ReplayStore {
        &self.replay
    }

    /// Readiness: a credential to send and a replay store that answers.
    pub async fn ready(&self) -> bool {
        self.credentials.ready() && self.replay.ready().await.is_ok()
    }

    /// Handles one request: a response in every case, and one log record,
    /// written when the response body has ended (or was cut off).
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        mark_sensitive(request.headers_mut());
        let head = request.method() == Method::HEAD;
        let mut log = RequestLog::new(
            request.method(),
            request.uri(),
            peer,
            Arc::clone(&self.metrics),
        );
        let response = match self.process(request, &mut log).await {
            Ok(response) => response,
            Err(refusal) => {
                log.refused(&refusal);
                refusal.into_response(head)
            }
        };
        let status = response.status();
        if let Some(id) = response.headers().get(GITHUB_REQUEST_ID) {
            log.github_request_id(id);
        }
        response.map(|body| log.into_body(status, started.elapsed(), body))
    }

    async fn process(
        &self,
        request: Request<Incoming>,
        log: &mut RequestLog,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let (mut parts, body) = request.into_parts();
        let head = parts.method == Method::HEAD;
        let uri = std::mem::take(&mut parts.uri);

        // Target form comes before every §5 step, so nothing below ever sees
        // an absolute URL, a target that could name another host, or a
        // dot-segment an upstream might resolve to another resource.
        let target = target::origin_form(&uri)?;

        // Then the method (amendment 1): TRACE would echo the injected token,
        // CONNECT is rewritten to authority-form by HTTP clients.
        target::allowed_method(&parts.method)?;

        // Health needs no proof; it is answered before any proof work.
        if health::matches(&parts.method, uri.path(), &self.health_path) {
            log.health();
            return Ok(health::response(head));
        }
        if health::matches(&parts.method, uri.path(), health::READY_PATH) {
            log.health();
            return Ok(health::readiness(self.ready().await, head));
        }

        // Steps 1–2: syntax only, no key lookups or crypto yet.
        let proof = proof_header(&parts.headers)?;

        // Steps 3–6: table lookup and integer compares, before reading a
        // body or checking a signature.
        let now = self.clock.now();
        let client = match self.clients.current().get(&proof.mk) {
            Some(client) => Arc::clone(client),
            None => return Err(VerifyError::UnknownKey.into()),
        };
        // "Trusted (and not revoked)": before the binding cache is consulted.
        if self.revocations.is_revoked(&client.name, &proof.ek, now) {
            return Err(Refusal::from(VerifyError::UnknownKey).with_detail("revoked"));
        }
        let checked = self.verifier.check_key(&client.key, &proof, now)?;
        // Only claimed: nothing has been verified yet.
        log.claimed(&client);

        // Step 7: the body is read (bounded, and within the global budget,
        // since nothing is authenticated yet) before the signatures because
        // the request signature covers its digest.
        let body = body::read(
            body,
            self.max_body_size,
            self.read_timeout,
            &self.body_budget,
        )
        .await?;

        // Steps 8–9: binding signature (cached), then request signature.
        let verifying = Instant::now();
        let verified = checked.verify(&RequestParts {
            method: parts.method.as_str(),
            target,
            body_digest: BodyDigest::of(&body.bytes),
        });
        self.metrics.stage("verify", verifying.elapsed());
        let verified = verified?;
        log.verified(&client);

        // Step 10: policy only after the signatures, so unauthenticated
        // callers learn nothing about it.
        self.policy
            .check(&client, &verified, parts.method.as_str(), target)?;

        // A replay of a recorded proof is refused before the rate limit: it
        // is not its client's traffic, and must not take tokens from the
        // bucket of the client whose proof was captured. Only a look; the
        // atomic record stays last (below), and a copy that races past the
        // look gives its token back there. (Recording first instead would
        // consume the proof of a request refused with 429.) A client
        // without a bucket has nothing to protect, and skips the look.
        if client.rate.is_some() && self.replay.seen(&verified).await? {
            return Err(ReplayError::Replayed.into());
        }

        // The client's rate limit, before its proof takes a replay record:
        // a refused request may be retried with the same proof.
        self.rate.check(&client).await?;

        // The token this client's requests go out with (its own scope, or
        // the installation's), before the cache: entries are partitioned by it.
        let credential = self.forwarder.credential(client.github.as_ref()).await?;

        // The cache: what it holds for this request, fresh or to revalidate.
        let lookup = self.cache.lookup(
            &parts.method,
            target,
            &parts.headers,
            &credential,
            Instant::now(),
        );

        // The shared token's quota: answered here while GitHub would refuse
        // (a fresh cache hit does not ask GitHub).
        if !lookup.is_fresh() {
            self.quota.check(target, self.clock.now())?;
        }

        // Step 11: the replay record is written last, so only verified,
        // authorised requests can take room in the store; the store checks
        // freshness again with the `now` it records by (amendment 1). A
        // cached answer consumes the proof like a forwarded one.
        if let Err(error) = self.replay.record(&verified).await {
            // A copy that raced the first one past the look above: copies
            // of one proof take one token between them.
            if error == ReplayError::Replayed {
                self.rate.refund(&client).await;
            }
            return Err(error.into());
        }

        // A fresh entry is answered now; an identical GET already in flight
        // is waited for instead of asked again.
        let lookup = match self
            .cache
            .plan(lookup, &parts.method, self.upstream_timeout)
            .await
        {
            Plan::Answer(entry, outcome) => {
                log.cache(outcome);
                return Ok(self.cache.answer(&entry, outcome, head));
            }
            Plan::Forward(lookup) => lookup,
        };
        // The client's share of the upstream slots, then a slot, before this
        // request may lead identical ones: waiting for its own client's
        // share, it must hold back no other client's `GET`.
        let slot = self.forwarder.slot(&client.name).await?;
        let leader = self.cache.lead(&lookup, &parts.method);
        let method = parts.method.clone();
        lookup.add_validators(&mut parts.headers);
        // A write may change what any GET returns, whether its answer comes
        // back or not: held across the forward, this makes every stored
        // answer stale once the write is done, failed or abandoned.
        let _write = self.cache.write(&method);

        // §7: rewrite headers and forward; the response streams back.
        let forwarding = Instant::now();
        let response = self
            .forwarder
            .forward(&verified, slot, &credential, parts, target, body)
            .await?;
        self.metrics.stage("upstream", forwarding.elapsed());
        self.metrics
            .upstream_response(response.status(), response.headers());
        self.quota.observe(
            target,
            response.status(),
            response.headers(),
            self.clock.now(),
        );
        // A 304 to our revalidation becomes the stored 200; a cacheable 200
        // is kept as it streams.
        let (response, outcome) =
            self.cache
                .complete(lookup, leader, &method, response, head, Instant::now());
        if let Some(outcome) = outcome {
            log.cache(outcome);
        }
        Ok(response)
    }
}

/// Steps 1–2: exactly one `Signet-Proof` header, and it parses.
pub(crate) fn proof_header(headers: &HeaderMap) -> Result<ProofHeader, Refusal> {
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

/// GitHub's id of a request, logged so an audit line can be matched with
/// GitHub's own records.
const GITHUB_REQUEST_ID: HeaderName = HeaderName::from_static("x-github-request-id");

/// Credentials are marked sensitive before anything could print a header.
fn mark_sensitive(headers: &mut HeaderMap) {
    for name in [AUTHORIZATION, HeaderName::from_static(HEADER_NAME)] {
        if let Entry::Occupied(mut entry) = headers.entry(name) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}
