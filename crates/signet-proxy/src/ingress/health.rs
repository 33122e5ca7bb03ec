//! The health checks, no proof needed: liveness (`GET`/`HEAD` on the health
//! path, `/healthz` by default) says the process serves; readiness
//! (`/readyz`) also says the replay store can take records, so a load
//! balancer sends no traffic to a replica whose Redis is unreachable.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Response, StatusCode};

use crate::body::ProxyBody;

/// The readiness path.
pub const READY_PATH: &str = "/readyz";

/// Whether this request is a health check.
pub fn matches(method: &Method, path: &str, health_path: &str) -> bool {
    path == health_path && (method == Method::GET || method == Method::HEAD)
}

/// `200 {"status":"ok","timestamp":"<RFC 3339>"}`, as the original proxy answers.
pub fn response(head: bool) -> Response<ProxyBody> {
    let body = if head {
        String::new()
    } else {
        let timestamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        format!(r#"{{"status":"ok","timestamp":"{timestamp}"}}"#)
    };
    let mut response = Response::new(ProxyBody::full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `200 {"status":"ready"}`, or `503 {"status":"not ready",…}` while the
/// replay store cannot take records (its details go to the log only).
pub fn readiness(ready: bool, head: bool) -> Response<ProxyBody> {
    let (status, body) = if ready {
        (StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"not ready","reason":"the replay store is unreachable"}"#,
        )
    };
    let mut response = Response::new(ProxyBody::full(if head { "" } else { body }));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_on_the_exact_path_are_health_checks() {
        assert!(matches(&Method::GET, "/healthz", "/healthz"));
        assert!(matches(&Method::HEAD, "/healthz", "/healthz"));
        assert!(!matches(&Method::POST, "/healthz", "/healthz"));
        assert!(!matches(&Method::GET, "/healthz/x", "/healthz"));
        assert!(!matches(&Method::GET, "/repos", "/healthz"));
    }
}
