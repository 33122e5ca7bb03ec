//! Observability: one record per request — the JSON log line
//! ([`logging`]) and the Prometheus counters (`metrics`) — and the values
//! they record that the stages report (the cache's outcome).

pub mod logging;
pub(crate) mod metrics;

/// How the conditional-request cache answered a request, as
/// `X-Signet-Cache` says; the cache returns it, the log and the metrics
/// record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// From the cache, without asking GitHub.
    Hit,
    /// GitHub answered 304; the body came from the cache.
    Revalidated,
    /// From GitHub.
    Miss,
}

impl CacheOutcome {
    /// The header value and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "HIT",
            CacheOutcome::Revalidated => "REVALIDATED",
            CacheOutcome::Miss => "MISS",
        }
    }
}
