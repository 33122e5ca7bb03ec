//! Forwarding a verified request to the one configured upstream (spec §7).
//!
//! The upstream's scheme, host and base path come only from the
//! configuration; the client contributes nothing but the verified method,
//! request-target and body, and the headers it may set.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, PROXY_AUTHORIZATION, TRANSFER_ENCODING};
use http::{request, HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use memchr::memmem;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use signet_core::{ErrorCode, VerifiedProof};
use signet_http::headers::remove_hop_by_hop;

use crate::body::{ProxyBody, RequestBody};
use crate::config::{Config, Upstream};
use crate::grants::GitHubScope;
use crate::refusal::Refusal;
use crate::upstream::api::links::LinkRewriter;
use crate::upstream::credentials::{Credentials, Current};
use crate::upstream::pool::Pools;
use crate::upstream::service::UpstreamSlot;
use crate::upstream::service::{Rendering, Service};

/// Request headers a client may not pass upstream, besides the hop-by-hop set.
const CLIENT_ONLY: [HeaderName; 6] = [
    HeaderName::from_static("signet-proof"),
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Why the forwarder could not be built at startup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardSetupError {
    /// The upstream CA file could not be read or holds no certificate.
    #[error("cannot use --upstream-ca-file {path}: {why}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// rustls refused the TLS configuration.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The pooled HTTP/1.1 client to the upstream (rustls).
pub type UpstreamClient = Client<UpstreamConnector, Full<Bytes>>;

/// How upstream connections are made (rustls over TCP).
pub type UpstreamConnector = HttpsConnector<HttpConnector>;

/// Sends verified requests to the upstream over a pooled keep-alive client.
#[derive(Clone)]
pub struct Forwarder {
    client: UpstreamClient,
    /// Per-runtime pools like `client`'s (`--runtime per-core`).
    pools: Pools,
    /// The REST API: its base URL, how the token is written for it, and
    /// its concurrency slots.
    api: Service,
    /// The token to inject, kept fresh by its own task.
    credentials: Arc<Credentials>,
    timeout: Duration,
    links: Option<LinkRewriter>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("upstream", self.api.base())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Builds the upstream client: rustls with the public web roots plus any
    /// extra CA file, HTTP/1.1 with keep-alive pooling.
    pub fn new(config: &Config, credentials: Arc<Credentials>) -> Result<Self, ForwardSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &config.upstream_ca_file {
            let ca_error = |why: String| ForwardSetupError::CaFile {
                path: path.display().to_string(),
                why,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no certificate found".to_owned()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.upstream_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90));
        let client = builder.build(https.clone());

        Ok(Forwarder {
            client,
            pools: Pools::new(builder, https),
            api: Service::new(
                Arc::new(config.upstream.clone()),
                Rendering::Bearer,
                config.upstream_concurrency,
                config.upstream_share(),
                config.upstream_timeout,
            ),
            credentials,
            timeout: config.upstream_timeout,
            links: config
                .public_url
                .as_deref()
                .map(|public| LinkRewriter::new(&config.upstream.base_url(), public)),
        })
    }

    /// Sends the verified request upstream and returns its response with the
    /// body still streaming. `BAD_GATEWAY` when the upstream cannot be
    /// reached or answers something that is not a usable response,
    /// `GATEWAY_TIMEOUT` when its headers do not arrive in time. The request
    /// is framed by the proxy (`Content-Length` of the verified body), never
    /// as the client framed it.
    ///
    pub async fn forward(&self, outgoing: Outgoing<'_>) -> Result<Response<ProxyBody>, Refusal> {
        let Outgoing {
            proof: _,
            slot,
            credential,
            mut parts,
            target,
            body,
        } = outgoing;
        let RequestBody::Buffered(body) = body;
        let uri = upstream_uri(self.api.base(), target)?;
        // The client's Host, for pagination links when no --public-url is set.
        let client_host = parts.headers.get(HOST).cloned();
        let client_framed_a_body = parts.headers.contains_key(CONTENT_LENGTH)
            || parts.headers.contains_key(TRANSFER_ENCODING);
        rewrite_request_headers(
            &mut parts.headers,
            self.api.base(),
            self.api.authorization(credential),
        );
        // The pooled connection's next request carries the token: it must not
        // depend on the upstream parsing the client's framing (`010`,
        // `0000…10`) the way we did. Only the length we verified goes out.
        if !body.bytes.is_empty() || client_framed_a_body {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(body.bytes.len()));
        }
        // The body's share of the budget is held until the upstream answers.
        let mut request = Request::new(Full::new(body.bytes.clone()));
        *request.method_mut() = parts.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = parts.headers;

        let client = self.pools.client(&self.client);
        let response = tokio::time::timeout(self.timeout, client.request(request))
            .await
            .map_err(|_| {
                Refusal::new(ErrorCode::GatewayTimeout).with_detail(format!(
                    "no upstream response headers within {:?}",
                    self.timeout
                ))
            })?
            .map_err(|e| {
                let refusal = Refusal::new(ErrorCode::BadGateway).with_detail(error_chain(&e));
                if answered_garbage(&e) {
                    refusal.with_message(INVALID_RESPONSE)
                } else {
                    refusal
                }
            })?;
        drop(body);

        let (mut parts, body) = response.into_parts();
        if parts.status == http::StatusCode::UNAUTHORIZED {
            // An expired or revoked installation token: get a new one (if
            // the token is old enough for its 401 to count).
            self.credentials.rejected(credential);
        }
        if parts.status.is_informational() {
            // We never ask for an upgrade (Upgrade is stripped), so a 101 or
            // any other 1xx as a final answer is an upstream fault.
            return Err(Refusal::new(ErrorCode::BadGateway)
                .with_message(INVALID_RESPONSE)
                .with_detail(format!("unrequested {} from the upstream", parts.status)));
        }
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length. The body
        // is re-framed for the client, so a stale length must not survive.
        if parts.headers.contains_key(TRANSFER_ENCODING) {
            parts.headers.remove(CONTENT_LENGTH);
        }
        remove_hop_by_hop(&mut parts.headers);
        // Only the proxy's cache says how a request was answered: an upstream
        // claiming `HIT` must not reach a client (or the log).
        parts
            .headers
            .remove(crate::upstream::api::cache::X_SIGNET_CACHE);
        drop_echoed_token(&credential.finder, &mut parts.headers);
        if parts.headers.contains_key(http::header::LINK)
            || parts.headers.contains_key(http::header::LOCATION)
        {
            match &self.links {
                Some(links) => links.rewrite(&mut parts.headers),
                None => {
                    if let Some(public) = client_host.as_ref().and_then(public_base) {
                        LinkRewriter::new(&self.api.base().base_url(), &public)
                            .rewrite(&mut parts.headers);
                    }
                }
            }
        }
        Ok(Response::from_parts(
            parts,
            ProxyBody::streamed(body, self.timeout, Some(slot)),
        ))
    }

    /// A place upstream for one of `client`'s requests: its client's share
    /// first, then a slot, within one `--upstream-timeout`.
    pub async fn slot(&self, client: &str) -> Result<UpstreamSlot, Refusal> {
        self.api.slot(client).await
    }

    /// The token a client's requests go out with: the installation's (or
    /// the static one), or the one minted for the client's `github` scope.
    pub async fn credential(&self, scope: Option<&GitHubScope>) -> Result<Arc<Current>, Refusal> {
        self.credentials
            .for_client(scope, &self.client, self.api.base())
            .await
    }

    /// The client the forwarder uses, for the credential task's exchanges.
    pub fn client(&self) -> UpstreamClient {
        self.client.clone()
    }

    /// The upstream.
    pub fn upstream(&self) -> Arc<Upstream> {
        Arc::clone(self.api.base())
    }
}

/// One verified request on its way upstream: what the forwarder needs of
/// the pipeline's per-request context. (No `Debug`: it holds the token.)
pub struct Outgoing<'a> {
    /// The evidence: only [`CheckedProof::verify`] makes a
    /// [`VerifiedProof`], so nothing can reach the token without one.
    ///
    /// [`CheckedProof::verify`]: signet_core::CheckedProof::verify
    pub proof: &'a VerifiedProof,
    /// The request's place upstream (its client's share, then a slot),
    /// taken with [`Forwarder::slot`] before the cache may make it the
    /// leader of identical requests.
    pub slot: UpstreamSlot,
    /// The token it goes out with.
    pub credential: &'a Current,
    /// The request's head, rewritten for the upstream on the way.
    pub parts: request::Parts,
    /// The origin-form target, as received and verified.
    pub target: &'a str,
    /// The body.
    pub body: RequestBody,
}

/// An upstream that echoes request headers would hand the token to the
/// client: every response header carrying it is dropped (and logged, without
/// the token).
fn drop_echoed_token(token: &memmem::Finder<'_>, headers: &mut HeaderMap) {
    let leaking: Vec<HeaderName> = headers
        .iter()
        .filter(|(name, value)| {
            token.find(value.as_bytes()).is_some() || token.find(name.as_str().as_bytes()).is_some()
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in leaking {
        tracing::warn!(
            header = %name,
            "upstream response header carried the shared token; header dropped"
        );
        headers.remove(&name);
    }
}

/// `http://` + the client's `Host`, when that is a plain authority (no
/// user information, path or odd bytes); `X-Forwarded-*` is never trusted.
fn public_base(host: &HeaderValue) -> Option<String> {
    let host = host.to_str().ok()?;
    let authority: http::uri::Authority = host.parse().ok()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    Some(format!("http://{authority}"))
}

/// The 502 message when the upstream answered, but not with a usable response.
const INVALID_RESPONSE: &str = "The upstream API sent an invalid response.";

/// `scheme://authority` + base path + the verified target, exactly.
fn upstream_uri(upstream: &Upstream, target: &str) -> Result<Uri, Refusal> {
    let mut path = String::with_capacity(upstream.base_path.len() + target.len());
    path.push_str(&upstream.base_path);
    path.push_str(target);
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| Refusal::new(ErrorCode::InvalidRequestTarget).with_detail(e.to_string()))
}

/// Strips what the client must not control, then sets `Authorization` and
/// `Host` only from the configuration.
fn rewrite_request_headers(
    headers: &mut HeaderMap,
    upstream: &Upstream,
    authorization: &HeaderValue,
) {
    remove_unforwarded(headers);
    headers.insert(AUTHORIZATION, authorization.clone());
    headers.insert(HOST, upstream.host.clone());
}

/// Removes the client's headers that never go upstream: the hop-by-hop set
/// and whatever `Connection` names, the client's framing, and
/// [`CLIENT_ONLY`]. The cache keys on what is left, through this same
/// function, so a stored answer is always filed under what GitHub was asked.
pub(crate) fn remove_unforwarded(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    headers.remove(CONTENT_LENGTH);
    for name in &CLIENT_ONLY {
        headers.remove(name);
    }
}

/// Whether the upstream answered, but not with HTTP we could parse.
fn answered_garbage(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            return hyper.is_parse() || hyper.is_parse_status();
        }
        source = cause.source();
    }
    false
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        match Upstream::parse(url) {
            Ok(u) => u,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_target_is_appended_to_the_base_path_verbatim() {
        let ghe = upstream("https://ghe.example.com/api/v3/");
        let uri = upstream_uri(&ghe, "/repos/a/b?x=%2C&y").map(|u| u.to_string());
        assert_eq!(
            uri.ok().as_deref(),
            Some("https://ghe.example.com/api/v3/repos/a/b?x=%2C&y")
        );
        let dotcom = upstream("https://api.github.com");
        let uri = upstream_uri(&dotcom, "//evil.example/x").ok();
        assert_eq!(uri.as_ref().and_then(Uri::host), Some("api.github.com"));
        assert_eq!(
            uri.map(|u| u.path().to_owned()).as_deref(),
            Some("//evil.example/x")
        );
    }

    #[test]
    fn client_credentials_and_hop_by_hop_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("signet-proof", "v1;..."),
            ("authorization", "Bearer stolen"),
            ("proxy-authorization", "Basic x"),
            ("x-http-method-override", "DELETE"),
            ("x-http-method", "DELETE"),
            ("x-method-override", "DELETE"),
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("host", "evil.example"),
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", "2022-11-28"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let token = HeaderValue::from_static("Bearer shared");
        rewrite_request_headers(&mut headers, &upstream("https://api.github.com"), &token);
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["accept", "authorization", "host", "x-github-api-version"]
        );
        assert_eq!(headers[AUTHORIZATION], "Bearer shared");
        assert_eq!(headers[HOST], "api.github.com");
    }
}
