//! Structured logs: JSON lines on stdout, one record per request.
//!
//! Nothing here ever sees the GitHub token; request headers are not logged.

use std::time::Duration;

use http::{Method, StatusCode, Uri};
use signet_core::ErrorCode;

use crate::refusal::Refusal;

/// Installs the JSON subscriber at `level`, writing to stdout from a
/// background thread so a slow log consumer never stalls a request. Keep the
/// returned guard alive until exit: dropping it flushes what is queued.
/// Safe to call twice (the second call installs nothing).
pub fn init(level: tracing::Level) -> tracing_appender::non_blocking::WorkerGuard {
    // Not lossy: an auth gateway's log is its audit trail. Bursts queue in
    // memory; only a consumer that stays slow for long slows requests.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_max_level(level)
        .with_writer(writer)
        .try_init();
    guard
}

/// What one request's log record says, filled in as the pipeline advances.
#[derive(Debug)]
pub struct RequestLog {
    method: Method,
    path: String,
    key_id: Option<String>,
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    Forwarded,
    Health,
    Refused(ErrorCode, Option<String>),
}

impl RequestLog {
    /// Starts the record; the query string is left out of logs.
    pub fn new(method: &Method, uri: &Uri) -> Self {
        RequestLog {
            method: method.clone(),
            path: uri.path().to_owned(),
            key_id: None,
            outcome: Outcome::Forwarded,
        }
    }

    /// The master key that signed (known once the key is found trusted).
    pub fn key(&mut self, mk: &[u8; 32]) {
        self.key_id = Some(signet_core::key_id(mk));
    }

    /// The request was a health check (logged at debug level: probes are frequent).
    pub fn health(&mut self) {
        self.outcome = Outcome::Health;
    }

    /// The request was refused, or the upstream failed.
    pub fn refused(&mut self, refusal: &Refusal) {
        self.outcome = Outcome::Refused(refusal.code, refusal.detail.clone());
    }

    /// Writes the one record of this request.
    pub fn finish(self, status: StatusCode, latency: Duration) {
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let key_id = self.key_id.as_deref().unwrap_or("-");
        match self.outcome {
            Outcome::Health => tracing::debug!(
                method = %self.method,
                path = %self.path,
                status = status.as_u16(),
                latency_ms,
                "health check"
            ),
            Outcome::Forwarded => tracing::info!(
                method = %self.method,
                path = %self.path,
                status = status.as_u16(),
                key_id,
                latency_ms,
                "request forwarded"
            ),
            Outcome::Refused(code, detail) => {
                let detail = detail.as_deref().unwrap_or(code.message());
                let message = match code.status() {
                    401 | 403 => "authentication failed",
                    502 | 504 => "upstream failed",
                    _ => "request refused",
                };
                tracing::warn!(
                    method = %self.method,
                    path = %self.path,
                    status = status.as_u16(),
                    key_id,
                    code = code.as_str(),
                    detail,
                    latency_ms,
                    "{message}"
                );
            }
        }
    }
}
