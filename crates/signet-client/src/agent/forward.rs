//! One request through the agent, top to bottom: refuse a browser's → route
//! → read the body (once, bounded) → sign exactly what is forwarded →
//! rewrite the request headers → send to the proxy → rewrite
//! `Link`/`Location` and JSON URLs back to the client's origin → stream the
//! answer back, without `Access-Control-*` headers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, HOST, PROXY_AUTHORIZATION, TRANSFER_ENCODING,
};
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use signet_http::headers::remove_hop_by_hop;
use signet_http::json_urls::{is_rewritable_json, JsonUrlRewriter, RewrittenBody};
use signet_http::links::LinkRewriter;

use super::browser::{drop_access_control, refuse_browsers};
use super::error::AgentError;
use super::key::KeySource;
use super::route::{route, Route};
use super::{AgentBody, AgentConfig, ProxyUrl};
use crate::SIGNET_PROOF;

type ProxyClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Signs and forwards requests to one proxy.
#[derive(Debug)]
pub(super) struct Forwarder {
    client: ProxyClient,
    key: Arc<KeySource>,
    proxy: ProxyUrl,
    /// The upstream API base whose URLs the proxy passes through in bodies.
    github_api: String,
    max_body_size: u64,
    timeout: Duration,
    local: std::net::SocketAddr,
    allow_remote: bool,
}

impl Forwarder {
    pub(super) fn new(
        config: &AgentConfig,
        key: Arc<KeySource>,
        local: std::net::SocketAddr,
    ) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Forwarder {
            client,
            key,
            proxy: config.proxy.clone(),
            github_api: config.github_api_url.trim_end_matches('/').to_owned(),
            max_body_size: config.max_body_size,
            timeout: config.timeout,
            local,
            allow_remote: config.allow_remote,
        })
    }

    /// Answers one request: the proxy's response, or the agent's own error.
    pub(super) async fn handle(&self, request: Request<Incoming>) -> Response<AgentBody> {
        let head = request.method() == Method::HEAD;
        let line = format!("{} {}", request.method(), request.uri());
        let mut response = match self.forward(request).await {
            Ok(response) => {
                eprintln!("signet agent: {line} -> {}", response.status().as_u16());
                response
            }
            Err(error) => {
                eprintln!(
                    "signet agent: {line} -> {} {}: {error}",
                    error.status().as_u16(),
                    error.code()
                );
                error.into_response(head)
            }
        };
        // Every answer, forwarded or the agent's own: none may let a browser
        // show it to a page.
        drop_access_control(response.headers_mut());
        response
    }

    async fn forward(&self, request: Request<Incoming>) -> Result<Response<AgentBody>, AgentError> {
        let (mut parts, body) = request.into_parts();
        // First: a web page's request is refused whatever else it says, and
        // costs no routing, no body read and no signature.
        refuse_browsers(&parts.headers)?;
        // Before the body: a refused request costs no read.
        let route = route(&parts, self.local, self.allow_remote, &self.proxy.path)?;
        let client_framed_a_body = parts.headers.contains_key(CONTENT_LENGTH)
            || parts.headers.contains_key(TRANSFER_ENCODING);
        // Read once: these exact bytes are hashed into the proof and sent.
        let body = self.read_body(body).await?;
        let signer = self.key.signer()?;
        let proof = signer.sign(parts.method.as_str(), &route.target, &body)?;

        remove_hop_by_hop(&mut parts.headers);
        // A client's (dummy) token never leaves the agent; the proxy injects
        // the shared one. Only the agent's framing and proof go out.
        for name in [AUTHORIZATION, PROXY_AUTHORIZATION, HOST, CONTENT_LENGTH] {
            parts.headers.remove(name);
        }
        parts.headers.remove(SIGNET_PROOF);
        // Bodies come back uncompressed, so their URLs can be rewritten (the
        // hop to the client is loopback).
        parts.headers.remove(ACCEPT_ENCODING);
        parts.headers.insert(HOST, self.proxy.host.clone());
        let proof = HeaderValue::from_str(&proof)
            .map_err(|e| AgentError::ProxyFailed(format!("unusable proof header: {e}")))?;
        parts.headers.insert(SIGNET_PROOF, proof);
        if !body.is_empty() || client_framed_a_body {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let uri = self.proxy.uri(&route.target)?;
        let mut outgoing = Request::new(Full::new(body));
        *outgoing.method_mut() = parts.method;
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = parts.headers;

        let response = tokio::time::timeout(self.timeout, self.client.request(outgoing))
            .await
            .map_err(|_| AgentError::ProxyTimeout(self.timeout))?
            .map_err(|e| {
                let why = chain(&e);
                if e.is_connect() {
                    AgentError::ProxyUnreachable(why)
                } else {
                    AgentError::ProxyFailed(why)
                }
            })?;
        Ok(self.rewrite_response(response, &route))
    }

    /// The whole request body, refused with 413 beyond `--max-body-size`.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, AgentError> {
        let limit = self.max_body_size;
        if body.size_hint().lower() > limit {
            return Err(AgentError::BodyTooLarge { limit });
        }
        let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
        match tokio::time::timeout(self.timeout, limited.collect()).await {
            Err(_) => Err(AgentError::BodyRead(format!(
                "not complete within {:?}",
                self.timeout
            ))),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                Err(AgentError::BodyTooLarge { limit })
            }
            Ok(Err(error)) => Err(AgentError::BodyRead(error.to_string())),
        }
    }

    /// URLs that point at the proxy (its `Link`/`Location`) or at the
    /// upstream (bodies, and headers a proxy without rewriting passed on)
    /// move back under the client's origin and prefix.
    fn rewrite_response(&self, response: Response<Incoming>, route: &Route) -> Response<AgentBody> {
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        for base in [&self.proxy.base, &self.proxy.host_base, &self.github_api] {
            LinkRewriter::new(base, &route.client_base).rewrite(&mut parts.headers);
        }
        if !is_rewritable_json(&parts.headers) {
            return Response::from_parts(parts, AgentBody::streamed(body));
        }
        let rewriter = JsonUrlRewriter::new(&[
            (self.github_api.as_str(), route.client_base.as_str()),
            (self.proxy.base.as_str(), route.client_base.as_str()),
        ]);
        // The rewritten length is not known before the end: chunked.
        parts.headers.remove(CONTENT_LENGTH);
        Response::from_parts(
            parts,
            AgentBody::rewritten(RewrittenBody::new(body, rewriter)),
        )
    }
}

impl ProxyUrl {
    /// `scheme://authority` + the routed target.
    fn uri(&self, target: &str) -> Result<Uri, AgentError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|e| {
                AgentError::Unsignable(crate::SignError::InvalidTarget(format!("{target}: {e}")))
            })
    }
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}
