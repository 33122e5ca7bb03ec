//! The `--metrics-listen` listener: `GET /metrics` from the registry
//! (`observe::metrics`), and the health checks, so probes pointed at it
//! still get through when the proxy's own port is at `--max-connections`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::app::side;
use crate::body::ProxyBody;
use crate::ingress::connection::Timeouts;
use crate::ingress::health;
use crate::pipeline::Proxy;

/// Serves, on `listener` until the task is dropped: `GET /metrics`, and the
/// health checks as the proxy's own port answers them (`GET`/`HEAD` on
/// `--health-path` and `/readyz`); anything else is 404. Its connections
/// are held to `timeouts` as [`crate::app::side`] caps them.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, timeouts: Timeouts) {
    side::serve(
        listener,
        timeouts,
        move |request: Request<hyper::body::Incoming>| {
            let proxy = Arc::clone(&proxy);
            async move {
                let (method, path) = (request.method(), request.uri().path());
                let head = method == Method::HEAD;
                let mut response = if path == "/metrics" && method == Method::GET {
                    let mut response = Response::new(ProxyBody::full(proxy.metrics().encode()));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    response
                } else if health::matches(method, path, proxy.health_path()) {
                    health::response(head)
                } else if health::matches(method, path, health::READY_PATH) {
                    health::readiness(proxy.ready().await, head)
                } else {
                    let mut response = Response::new(ProxyBody::full(Bytes::new()));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                };
                response.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                );
                response
            }
        },
    )
    .await;
}
