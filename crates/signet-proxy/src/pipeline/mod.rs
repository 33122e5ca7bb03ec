//! The request pipeline: `process` and its three stages — `ingress`,
//! `admit`, `respond` — read top to bottom as the spec's steps, each
//! implemented in its own module; what they learn travels in the
//! per-request context (`context`).
//!
//! ```text
//! target form → method → health → parse proof → cheap checks → read body
//!   → signatures → policy → replay look → rate → replay → credential
//!   → cache lookup → quota → cached answer, or rewrite + forward → stream
//!   back (kept by the cache) → log
//! ```

mod context;
pub(crate) mod record;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{Entry, AUTHORIZATION};
use http::{HeaderMap, HeaderName, Method, Request, Response, Uri};
use hyper::body::Incoming;
use signet_core::HEADER_NAME;

use crate::auth::authenticate::{
    self as auth, Authenticated, Authenticator, BodyLimits, KeySource, Witness,
};
use crate::auth::clients::Client;
use crate::auth::replay::ReplayError;
use crate::auth::replay::ReplayStore;
use crate::body::{BodyBudget, ProxyBody};
use crate::clock::Clock;
use crate::config::Config;
use crate::ingress::health;
use crate::ingress::target;
use crate::observe::metrics::Metrics;
use crate::policy::rate::RateLimiter;
use crate::policy::Policy;
use crate::refusal::Refusal;
use crate::upstream::api::cache::{Cache, Plan};
use crate::upstream::api::quota::{self, QuotaGuard};
use crate::upstream::credentials::Credentials;
use crate::upstream::forward::{ForwardSetupError, Forwarder, Outgoing};
use context::{Admitted, Ingress, Route};
use record::{LoggedBody, RequestLog};

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
    /// Where proofs' keys are looked up: the keys file's clients today.
    keys: Arc<dyn KeySource<Identity = Arc<Client>>>,
    rate: RateLimiter,
    auth: Authenticator,
    replay: ReplayStore,
    policy: Policy,
    forwarder: Forwarder,
    clock: Clock,
    health_path: String,
    cache: Cache,
    upstream_timeout: Duration,
}

impl crate::ingress::connection::Handler for Proxy {
    type Body = ResponseBody;

    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Response<ResponseBody>> + Send {
        Proxy::handle(self, request, peer)
    }
}

impl Proxy {
    /// Builds the handler from a validated configuration, where proofs'
    /// keys are looked up (the keys file's clients: `ClientKeys`; a further
    /// source is another `KeySource`) and a replay store.
    pub fn new(
        config: &Config,
        keys: Arc<dyn KeySource<Identity = Arc<Client>>>,
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
            keys,
            rate,
            auth: Authenticator::new(
                config.limits(),
                config.clock.clone(),
                BodyLimits {
                    max: config.max_body_size,
                    timeout: config.read_timeout,
                    budget: BodyBudget::new(config.body_buffer_budget),
                },
            ),
            replay,
            policy: Policy::new(config.allowed_purposes.clone()),
            credentials: Arc::clone(&credentials),
            forwarder: Forwarder::new(config, credentials)?,
            clock: config.clock.clone(),
            health_path: config.health_path.clone(),
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
                refusal.into_response(head).map(ProxyBody::from)
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
        let uri = std::mem::take(&mut parts.uri);
        let route = match self.ingress(&parts.method, &uri, log).await? {
            Ingress::Answered(response) => return Ok(response),
            Ingress::Route(route) => route,
        };
        let request = self.admit(route, &parts.headers, body, log).await?;
        self.respond(request, parts, log).await
    }

    /// The checks before any proof work: target form, method, health.
    async fn ingress<'u>(
        &self,
        method: &Method,
        uri: &'u Uri,
        log: &mut RequestLog,
    ) -> Result<Ingress<'u>, Refusal> {
        let head = *method == Method::HEAD;

        // Target form comes before every §5 step, so nothing below ever sees
        // an absolute URL, a target that could name another host, or a
        // dot-segment an upstream might resolve to another resource.
        let target = target::origin_form(uri)?;

        // Then the method (amendment 1): TRACE would echo the injected token,
        // CONNECT is rewritten to authority-form by HTTP clients.
        target::allowed_method(method)?;

        // Health needs no proof; it is answered before any proof work.
        if health::matches(method, uri.path(), &self.health_path) {
            log.health();
            return Ok(Ingress::Answered(health::response(head)));
        }
        if health::matches(method, uri.path(), health::READY_PATH) {
            log.health();
            return Ok(Ingress::Answered(health::readiness(
                self.ready().await,
                head,
            )));
        }
        Ok(Ingress::Route(Route {
            method: method.clone(),
            target,
            head,
        }))
    }

    /// Steps 1–11 with the product's checks between verify and record:
    /// authenticated, allowed, within its limits, its proof spent.
    async fn admit<'r>(
        &self,
        route: Route<'r>,
        headers: &HeaderMap,
        body: Incoming,
        log: &mut RequestLog,
    ) -> Result<Admitted<'r>, Refusal> {
        // Steps 1–9: proof, key, cheap checks, body, both signatures.
        let Authenticated {
            identity: client,
            proof,
            body,
        } = self
            .auth
            .verify(
                &*self.keys,
                &route.method,
                route.target,
                headers,
                body,
                &mut Witnessed {
                    log: &mut *log,
                    metrics: &self.metrics,
                },
            )
            .await?;

        // Step 10: policy only after the signatures, so unauthenticated
        // callers learn nothing about it.
        self.policy
            .check(&client, &proof, route.method.as_str(), route.target)?;

        // A replay of a recorded proof is refused before the rate limit: it
        // is not its client's traffic, and must not take tokens from the
        // bucket of the client whose proof was captured. Only a look; the
        // atomic record stays last (below), and a copy that races past the
        // look gives its token back there. (Recording first instead would
        // consume the proof of a request refused with 429.) A client
        // without a bucket has nothing to protect, and skips the look.
        if client.rate.is_some() && self.replay.seen(&proof).await? {
            return Err(ReplayError::Replayed.into());
        }

        // The client's rate limit, before its proof takes a replay record:
        // a refused request may be retried with the same proof.
        self.rate.check(&client).await?;
        // Given back by a refusal until the replay record below is written
        // (see `RateLimiter::refund_unless_kept`).
        let token = self.rate.refund_unless_kept(&client);

        // Step 11: the replay record, right after the token it costs, so
        // only verified, authorised requests take room in the store; the
        // store checks freshness again with the `now` it records by
        // (amendment 1). A copy that raced the first one past the look
        // above gives its token back (the guard): copies of one proof take
        // one between them. Written before the credential, cache and quota
        // stages, so a proof they refuse (429 on a spent quota) is spent
        // too: its copies are refused by the look before the rate and take
        // nothing from its client's bucket, which they would if it stayed
        // unrecorded. A cached answer consumes the proof like a forwarded one.
        auth::record(&self.replay, &proof).await?;
        token.keep();

        // The token this client's requests go out with (its own scope, or
        // the installation's), before the cache: entries are partitioned by it.
        let credential = self.forwarder.credential(client.github.as_ref()).await?;

        // The cache: what it holds for this request, fresh or to revalidate.
        let lookup = self.cache.lookup(
            &route.method,
            route.target,
            headers,
            &credential,
            Instant::now(),
        );

        // The shared token's quota: answered here while GitHub would refuse
        // (a fresh cache hit does not ask GitHub).
        if !lookup.is_fresh() {
            self.quota.check(route.target, self.clock.now())?;
        }

        Ok(Admitted {
            route,
            client,
            proof,
            credential,
            lookup,
            body,
        })
    }

    /// An admitted request's answer: from the cache, or from GitHub.
    async fn respond(
        &self,
        request: Admitted<'_>,
        mut parts: http::request::Parts,
        log: &mut RequestLog,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let Admitted {
            route,
            client,
            proof,
            credential,
            lookup,
            body,
        } = request;

        // A fresh entry is answered now; an identical GET already in flight
        // is waited for instead of asked again.
        let flight = match self
            .cache
            .plan(lookup, &route.method, self.upstream_timeout)
            .await
        {
            Plan::Answer(entry, outcome) => {
                log.cache(outcome);
                return Ok(self.cache.answer(&entry, outcome, route.head));
            }
            Plan::Forward(flight) => flight,
        };
        // The client's share of the upstream slots, then a slot, before this
        // request may lead identical ones: waiting for its own client's
        // share, it must hold back no other client's `GET`.
        let slot = self.forwarder.slot(&client.name).await?;
        let mut flight = flight;
        self.cache.lead(&mut flight);
        flight.add_validators(&mut parts.headers);
        // A write may change what any GET returns, whether its answer comes
        // back or not: held across the forward, this makes every stored
        // answer stale once the write is done, failed or abandoned.
        let _write = self.cache.write(&route.method);

        // §7: rewrite headers and forward; the response streams back.
        let forwarding = Instant::now();
        let response = self
            .forwarder
            .forward(Outgoing {
                proof: &proof,
                slot,
                credential: &credential,
                parts,
                target: route.target,
                body: body.into(),
            })
            .await?;
        self.metrics.stage("upstream", forwarding.elapsed());
        self.metrics.upstream_response(
            response.status(),
            quota::resource_header(response.headers()),
            response.headers(),
        );
        self.quota.observe(
            route.target,
            response.status(),
            response.headers(),
            self.clock.now(),
        );
        // A 304 to our revalidation becomes the stored 200; a cacheable 200
        // is kept as it streams.
        let (response, outcome) = self.cache.complete(flight, response, Instant::now());
        if let Some(outcome) = outcome {
            log.cache(outcome);
        }
        Ok(response)
    }
}

/// What the pipeline notes while authentication runs: the log line's
/// client (claimed, then verified) and the verify stage's time.
struct Witnessed<'a> {
    log: &'a mut RequestLog,
    metrics: &'a Metrics,
}

impl Witness<Arc<Client>> for Witnessed<'_> {
    fn claimed(&mut self, client: &Arc<Client>) {
        // Only claimed: nothing has been verified yet.
        self.log.claimed(client);
    }

    fn verifying_took(&mut self, elapsed: Duration) {
        self.metrics.stage("verify", elapsed);
    }

    fn verified(&mut self, client: &Arc<Client>) {
        self.log.verified(client);
    }
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
