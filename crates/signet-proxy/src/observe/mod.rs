//! Observability: one record per request — the JSON log line
//! ([`logging`]) and the Prometheus counters (`metrics`).

pub mod logging;
pub(crate) mod metrics;
