//! Prometheus metrics, served at `GET /metrics` on `--metrics-listen` (off
//! unless set; unauthenticated like every Prometheus target, so bind it to
//! a private address). OpenMetrics text from the `prometheus-client` crate.
//! The listener is `app::metrics`; this module is the registry only.
//!
//! Labels are bounded: `client` is a keys-file name, `key:<id>` of a
//! `--master-key`, or `-` before a signature verified; `method` is one of
//! the seven or `OTHER`; `status` a three-digit code; `code` a spec code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use signet_core::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    client: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Every metric the proxy exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    auth_failures: Family<CodeLabels, Counter>,
    durations: Family<StageLabels, Histogram, fn() -> Histogram>,
    upstream_responses: Family<StatusLabels, Counter>,
    inflight: Gauge,
    replay_store_errors: Counter,
    ratelimit_remaining: Family<ResourceLabels, Gauge>,
    ratelimit_reset: Family<ResourceLabels, Gauge>,
    log_lines_dropped: Counter,
    log_lines_dropped_seen: AtomicU64,
    refusals_unlogged: Counter,
    refusals_unlogged_seen: AtomicU64,
    config_reloads: Family<ResultLabels, Counter>,
    last_reload_success: Gauge,
    cache_responses: Family<ResultLabels, Counter>,
    cache_quota_saved: Counter,
    cache_entries: Gauge,
    cache_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("signet");
        let metrics = Metrics {
            requests: Family::default(),
            auth_failures: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
            upstream_responses: Family::default(),
            inflight: Gauge::default(),
            replay_store_errors: Counter::default(),
            ratelimit_remaining: Family::default(),
            ratelimit_reset: Family::default(),
            log_lines_dropped: Counter::default(),
            log_lines_dropped_seen: AtomicU64::new(0),
            refusals_unlogged: Counter::default(),
            refusals_unlogged_seen: AtomicU64::new(0),
            config_reloads: Family::default(),
            last_reload_success: Gauge::default(),
            cache_responses: Family::default(),
            cache_quota_saved: Counter::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by client, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused by authentication or policy, by code",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time spent, by stage: verify (signatures), upstream (to response headers), total",
            metrics.durations.clone(),
        );
        registry.register(
            "upstream_responses",
            "Upstream responses, by status",
            metrics.upstream_responses.clone(),
        );
        registry.register(
            "inflight_requests",
            "Requests being handled now",
            metrics.inflight.clone(),
        );
        registry.register(
            "replay_store_errors",
            "Replay store (or Redis) failures; each one refused a request",
            metrics.replay_store_errors.clone(),
        );
        registry.register(
            "github_ratelimit_remaining",
            "The shared token's X-RateLimit-Remaining, by resource",
            metrics.ratelimit_remaining.clone(),
        );
        registry.register(
            "github_ratelimit_reset_seconds",
            "The shared token's X-RateLimit-Reset (unix seconds), by resource",
            metrics.ratelimit_reset.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stdout could not keep up",
            metrics.log_lines_dropped.clone(),
        );
        registry.register(
            "log_refusals_unlogged",
            "Records of unauthenticated refusals not written (over --refusal-log-limit)",
            metrics.refusals_unlogged.clone(),
        );
        registry.register(
            "config_reloads",
            "Keys file reloads, by result",
            metrics.config_reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the keys file was last loaded successfully (unix seconds)",
            metrics.last_reload_success.clone(),
        );
        registry.register(
            "cache_responses",
            "Cacheable GET and HEAD answers, by X-Signet-Cache result (HIT, REVALIDATED, MISS)",
            metrics.cache_responses.clone(),
        );
        registry.register(
            "cache_quota_saved",
            "Requests answered without spending GitHub primary quota (hits, and 304 revalidations)",
            metrics.cache_quota_saved.clone(),
        );
        registry.register(
            "cache_entries",
            "Responses held by the conditional-request cache",
            metrics.cache_entries.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes held by the conditional-request cache",
            metrics.cache_bytes.clone(),
        );
        let mut metrics = metrics;
        metrics.registry = registry;
        metrics.config_loaded(true);
        metrics
    }

    /// A request's record was written (its response ended).
    pub fn request_finished(
        &self,
        client: Option<&str>,
        method: &Method,
        status: StatusCode,
        code: Option<ErrorCode>,
        total: Duration,
    ) {
        let method = crate::method::forwarded(method.as_str()).unwrap_or("OTHER");
        self.requests
            .get_or_create(&RequestLabels {
                client: client.unwrap_or("-").to_owned(),
                method,
                status: status.as_u16(),
            })
            .inc();
        if let Some(code) = code {
            if matches!(code.status(), 401 | 403) {
                self.auth_failures
                    .get_or_create(&CodeLabels {
                        code: code.as_str(),
                    })
                    .inc();
            }
            if code == ErrorCode::ReplayStoreUnavailable {
                self.replay_store_errors.inc();
            }
        }
        self.stage("total", total);
    }

    /// Time spent in one stage.
    pub fn stage(&self, stage: &'static str, took: Duration) {
        self.durations
            .get_or_create(&StageLabels { stage })
            .observe(took.as_secs_f64());
    }

    /// One more (`true`) or one fewer request in flight.
    pub fn inflight(&self, started: bool) {
        if started {
            self.inflight.inc();
        } else {
            self.inflight.dec();
        }
    }

    /// The upstream answered: its status and the shared token's quota for
    /// `resource` (GitHub's `X-RateLimit-Resource`, as the quota guard reads
    /// it; `core` when it names none).
    pub fn upstream_response(
        &self,
        status: StatusCode,
        resource: Option<&str>,
        headers: &HeaderMap,
    ) {
        self.upstream_responses
            .get_or_create(&StatusLabels {
                status: status.as_u16(),
            })
            .inc();
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let resource = resource.unwrap_or("core").to_owned();
        if let Some(remaining) = number("x-ratelimit-remaining") {
            self.ratelimit_remaining
                .get_or_create(&ResourceLabels {
                    resource: resource.clone(),
                })
                .set(remaining);
        }
        if let Some(reset) = number("x-ratelimit-reset") {
            self.ratelimit_reset
                .get_or_create(&ResourceLabels { resource })
                .set(reset);
        }
    }

    /// The cache answered a request.
    pub fn cache_answered(&self, outcome: crate::observe::CacheOutcome) {
        self.cache_responses
            .get_or_create(&ResultLabels {
                result: outcome.as_str(),
            })
            .inc();
        if outcome != crate::observe::CacheOutcome::Miss {
            self.cache_quota_saved.inc();
        }
    }

    /// The cache stored a response; it now holds `entries` in `bytes`.
    pub fn cache_stored(&self, entries: usize, bytes: u64) {
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The keys file was (re)loaded, or refused.
    pub fn config_loaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        if ok {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.last_reload_success
                .set(i64::try_from(now).unwrap_or(i64::MAX));
        }
    }

    /// The whole exposition, OpenMetrics text.
    pub fn encode(&self) -> String {
        let dropped = crate::observe::logging::dropped_lines();
        let seen = self.log_lines_dropped_seen.swap(dropped, Ordering::AcqRel);
        self.log_lines_dropped.inc_by(dropped.saturating_sub(seen));
        let unlogged = crate::observe::logging::unlogged_refusals();
        let seen = self.refusals_unlogged_seen.swap(unlogged, Ordering::AcqRel);
        self.refusals_unlogged.inc_by(unlogged.saturating_sub(seen));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
