//! A small GitHub API stand-in on loopback: the upstream of the `demo`
//! command and of the integration tests. It records every request it gets, so
//! a test can assert exactly what the proxy forwarded.
//!
//! Routes (after an optional `/api/v3` prefix, as GitHub Enterprise has):
//!
//! | route | answer |
//! |---|---|
//! | `GET /user` | `{"login":"signet-demo"}` |
//! | `GET /repos/{owner}/{repo}` | a repository object whose `url`, `issues_url`, … point at this stand-in |
//! | `GET /repos/{owner}/{repo}/issues` | [`ISSUES`] issues over three pages, two per `page`, with GitHub's pagination `Link` (page 1: `next` and a `help` link) |
//! | `GET /repos/{owner}/{repo}/issues/{number}` | one issue |
//! | `POST /graphql` | `{"data":{"viewer":{"login":"signet-demo",…}}}` |
//! | `/echo` | 200, the request body echoed back |
//! | `/stream/{bytes}` | that many bytes, streamed in 64 KiB chunks |
//! | `/delay/{ms}` | 200 after waiting that long before the headers |
//! | `/status/{code}` | that status |
//! | `/redirect` | 302 to `/user` on this stand-in |
//! | `/gated` | 200, `first\n` at once, then `rest\n` only after [`StandIn::open_gate`] |
//! | `/paged/{total}?page=N` | page N of `total`: `[N]` with GitHub's `Link` (`next`, `last`, `prev`, `first`) |
//! | `/etag/{max_age}/{delay_ms}` | `{"revision":N}` with `ETag: "rN"` and `max-age`; `304` to a matching `If-None-Match` ([`StandIn::bump_revision`] changes it); asked with `application/vnd.github.raw` in any `Accept`, the raw text `revision N` (`ETag: "rN-raw"`), as GitHub serves its media types |
//! | `/large/{bytes}` | that many bytes with an `ETag` and `max-age=60`, streamed in 64 KiB chunks |
//! | `/large/{bytes}/gated` | the same without `Content-Length`: `bytes` at once, the last byte only after [`StandIn::open_gate`] |
//! | `/header/{name}/{value}` | 200 with that response header added (any method) |
//! | `/hop-by-hop` | 200 with hop-by-hop response headers a proxy must drop |
//! | `/limit/{resource}/{remaining}/{reset}` | 200 with those `X-RateLimit-*` headers |
//! | `/secondary/{seconds}` | 403, GitHub's secondary-rate-limit answer with `Retry-After` |
//! | App mode: `POST /app/installations/{id}/access_tokens` | 201 with a token (scoped to the body's `repositories`; 422 for a repository named `missing…`; 500 or held while [`StandIn::set_token_endpoint`] says so) |
//! | App mode: `GET /app/installations/{id}` | the installation, account `acme` |
//! | anything else | 404 `{"message":"Not Found"}` |
//!
//! With a token set, a request without `Authorization: Bearer <token>` gets
//! 401 `{"message":"Bad credentials"}`, as GitHub answers.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// The request-target exactly as on the request line.
    pub target: String,
    /// All headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// A running stand-in; stops when dropped.
#[derive(Debug)]
pub struct StandIn {
    app: Option<Arc<AppIssuer>>,
    addr: SocketAddr,
    scheme: &'static str,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    gate: Arc<tokio::sync::Notify>,
    issued: Arc<std::sync::atomic::AtomicUsize>,
    revision: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

struct State {
    token: Option<String>,
    /// GitHub App mode: tokens are issued at the access-token endpoint.
    app: Option<Arc<AppIssuer>>,
    gate: Arc<tokio::sync::Notify>,
    base: String,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    issued: Arc<std::sync::atomic::AtomicUsize>,
    /// The content revision of the `/etag/…` resource.
    revision: Arc<std::sync::atomic::AtomicU64>,
}

/// A GitHub App installation's token issuer.
struct AppIssuer {
    key: jsonwebtoken::DecodingKey,
    app_id: u64,
    installation_id: u64,
    ttl: Duration,
    /// Tokens, when they expire, and the repositories they are limited to.
    issued: Mutex<Vec<Issued>>,
    /// How the access-token endpoint answers ([`TokenEndpoint`] as a number).
    endpoint: std::sync::atomic::AtomicU8,
    /// Exchanges answered 500 by [`TokenEndpoint::Fail`].
    failed: std::sync::atomic::AtomicUsize,
    /// Exchanges held right now by [`TokenEndpoint::Stall`].
    stalled: std::sync::atomic::AtomicUsize,
}

/// How the App access-token endpoint answers, for fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// As GitHub does: 201 with a token.
    Answer,
    /// 500, as GitHub answers during an incident.
    Fail,
    /// Holds each exchange, unanswered, until the endpoint is set otherwise
    /// (then answers as that says).
    Stall,
}

impl TokenEndpoint {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => TokenEndpoint::Fail,
            2 => TokenEndpoint::Stall,
            _ => TokenEndpoint::Answer,
        }
    }
}

/// One installation token the stand-in issued.
struct Issued {
    token: String,
    expires: std::time::SystemTime,
    /// `Some`: only these repositories (bare names), as GitHub scopes tokens.
    repositories: Option<Vec<String>>,
}

/// The account every stand-in installation belongs to.
pub const INSTALLATION_ACCOUNT: &str = "acme";

/// Repositories whose name starts with this do not exist: a token request
/// scoped to one is refused with 422, as GitHub does.
pub const MISSING_REPOSITORY_PREFIX: &str = "missing";

/// The access-token request's optional body.
#[derive(serde::Deserialize, Default)]
struct TokenRequest {
    repositories: Option<Vec<String>>,
}

impl std::fmt::Debug for AppIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppIssuer")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

impl AppIssuer {
    fn endpoint(&self) -> TokenEndpoint {
        TokenEndpoint::from_u8(self.endpoint.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// A 500 when the endpoint fails; waits first while it stalls.
    async fn fault(&self) -> Option<Response<StandInBody>> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.endpoint() == TokenEndpoint::Stall {
            self.stalled.fetch_add(1, Relaxed);
            while self.endpoint() == TokenEndpoint::Stall {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.stalled.fetch_sub(1, Relaxed);
        }
        (self.endpoint() == TokenEndpoint::Fail).then(|| {
            self.failed.fetch_add(1, Relaxed);
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"message":"Server Error"}"#,
            )
        })
    }

    /// Whether the request carries a valid App JWT.
    fn app_jwt_valid(&self, headers: &HeaderMap) -> bool {
        let jwt = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        validation.set_issuer(&[self.app_id.to_string()]);
        jsonwebtoken::decode::<serde_json::Value>(jwt, &self.key, &validation).is_ok()
    }

    /// 201 with a new token, if the request carries a valid App JWT and
    /// asks for repositories that exist.
    fn grant(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        issued: &std::sync::atomic::AtomicUsize,
    ) -> Response<StandInBody> {
        if !self.app_jwt_valid(headers) {
            return json(
                StatusCode::UNAUTHORIZED,
                r#"{"message":"A JSON web token could not be decoded"}"#,
            );
        }
        let request: TokenRequest = if body.is_empty() {
            TokenRequest::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(request) => request,
                Err(_) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        r#"{"message":"Problems parsing JSON"}"#,
                    )
                }
            }
        };
        if let Some(repositories) = &request.repositories {
            if repositories
                .iter()
                .any(|r| r.contains('/') || r.starts_with(MISSING_REPOSITORY_PREFIX))
            {
                return json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    r#"{"message":"There is at least one repository that does not exist or is not accessible to the parent installation."}"#,
                );
            }
        }
        let mut random = [0u8; 20];
        if getrandom::fill(&mut random).is_err() {
            return json(StatusCode::INTERNAL_SERVER_ERROR, "{}");
        }
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("ghs_{token}");
        let expires = std::time::SystemTime::now() + self.ttl;
        if let Ok(mut list) = self.issued.lock() {
            list.push(Issued {
                token: token.clone(),
                expires,
                repositories: request.repositories,
            });
        }
        issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let expires_at = humantime::format_rfc3339_seconds(expires);
        json(
            StatusCode::CREATED,
            &format!(r#"{{"token":"{token}","expires_at":"{expires_at}"}}"#),
        )
    }

    /// `None`: no live token it issued (401). `Some(false)`: a scoped token
    /// asking for a repository outside its scope (404, as GitHub answers).
    fn accepts(&self, headers: &HeaderMap, path: &str) -> Option<bool> {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let now = std::time::SystemTime::now();
        let list = self.issued.lock().ok()?;
        let issued = list.iter().find(|i| i.token == given && i.expires > now)?;
        let repository = path
            .strip_prefix("/api/v3")
            .unwrap_or(path)
            .strip_prefix("/repos/")
            .and_then(|rest| rest.split('/').nth(1));
        Some(match (&issued.repositories, repository) {
            (Some(allowed), Some(repository)) => allowed.iter().any(|a| a == repository),
            _ => true,
        })
    }
}

impl StandIn {
    /// Starts a plain-HTTP stand-in on `127.0.0.1:0`. With `token`, requests
    /// must carry `Authorization: Bearer <token>`.
    pub async fn start(token: Option<&str>) -> io::Result<StandIn> {
        Self::start_with(token, None).await
    }

    /// Starts a stand-in that acts as a GitHub App's installation: `POST
    /// /app/installations/{id}/access_tokens` checks the App JWT (RS256,
    /// under `app_public_pem`, `iss` = `app_id`) and answers 201 with a new
    /// token valid for `ttl`; API requests must carry a token it issued that
    /// has not expired (else 401, as GitHub answers).
    pub async fn start_app(
        app_public_pem: &[u8],
        app_id: u64,
        installation_id: u64,
        ttl: Duration,
    ) -> io::Result<StandIn> {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(app_public_pem)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let app = AppIssuer {
            key,
            app_id,
            installation_id,
            ttl,
            issued: Mutex::new(Vec::new()),
            endpoint: std::sync::atomic::AtomicU8::new(0),
            failed: std::sync::atomic::AtomicUsize::new(0),
            stalled: std::sync::atomic::AtomicUsize::new(0),
        };
        Self::start_inner(None, None, Some(app)).await
    }

    /// App mode: every token issued so far stops working (GitHub then answers 401).
    pub fn revoke_issued_tokens(&self) {
        if let Some(app) = &self.app {
            if let Ok(mut list) = app.issued.lock() {
                list.clear();
            }
        }
    }

    /// App mode: how the access-token endpoint answers from now on.
    pub fn set_token_endpoint(&self, endpoint: TokenEndpoint) {
        if let Some(app) = &self.app {
            app.endpoint
                .store(endpoint as u8, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// App mode: exchanges answered 500 so far, and exchanges held now.
    pub fn token_exchange_faults(&self) -> (usize, usize) {
        self.app.as_ref().map_or((0, 0), |app| {
            (
                app.failed.load(std::sync::atomic::Ordering::Relaxed),
                app.stalled.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    /// Changes the content (and `ETag`) of the `/etag/…` resource.
    pub fn bump_revision(&self) {
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tokens issued in App mode so far.
    pub fn issued_tokens(&self) -> usize {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts an HTTPS stand-in with the given rustls server configuration.
    pub async fn start_tls(
        token: Option<&str>,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<StandIn> {
        Self::start_with(token, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(
        token: Option<&str>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> io::Result<StandIn> {
        Self::start_inner(token, tls, None).await
    }

    async fn start_inner(
        token: Option<&str>,
        tls: Option<tokio_rustls::TlsAcceptor>,
        app: Option<AppIssuer>,
    ) -> io::Result<StandIn> {
        let app = app.map(Arc::new);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Notify::new());
        let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let revision = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let state = Arc::new(State {
            revision: Arc::clone(&revision),
            token: token.map(str::to_owned),
            app: app.clone(),
            issued: Arc::clone(&issued),
            gate: Arc::clone(&gate),
            base: format!("{scheme}://{addr}"),
            recorded: Arc::clone(&recorded),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&state);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    });
                    let builder = http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await
                            }
                            Err(_) => return,
                        },
                        None => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                    };
                });
            }
        });
        Ok(StandIn {
            app,
            addr,
            scheme,
            recorded,
            gate,
            issued,
            revision,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Lets a `/gated` response send the rest of its body.
    pub fn open_gate(&self) {
        self.gate.notify_one();
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every request received since the last call, in order, removed from
    /// the record, so a long run (the soak) keeps its memory bounded.
    pub fn take_requests(&self) -> Vec<Recorded> {
        self.recorded
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type StandInBody =
    http_body_util::Either<http_body_util::Full<Bytes>, http_body_util::Either<Filler, Gated>>;

async fn answer(state: &State, request: Request<Incoming>) -> Response<StandInBody> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_owned());
    if let Ok(mut recorded) = state.recorded.lock() {
        recorded.push(Recorded {
            method: parts.method.to_string(),
            target,
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }

    if let Some(app) = &state.app {
        let installation = format!("/app/installations/{}", app.installation_id);
        if parts.uri.path().strip_prefix(installation.as_str()) == Some("/access_tokens")
            && parts.method == http::Method::POST
        {
            if let Some(fault) = app.fault().await {
                return fault;
            }
            return app.grant(&parts.headers, &body, &state.issued);
        }
        if parts.uri.path() == installation && parts.method == http::Method::GET {
            if !app.app_jwt_valid(&parts.headers) {
                return json(StatusCode::UNAUTHORIZED, r#"{"message":"Bad credentials"}"#);
            }
            return json(
                StatusCode::OK,
                &format!(
                    r#"{{"id":{},"account":{{"login":"{INSTALLATION_ACCOUNT}"}}}}"#,
                    app.installation_id
                ),
            );
        }
        match app.accepts(&parts.headers, parts.uri.path()) {
            None => return json(StatusCode::UNAUTHORIZED, r#"{"message":"Bad credentials"}"#),
            Some(false) => return not_found(),
            Some(true) => {}
        }
    }
    if let Some(token) = &state.token {
        let expected = format!("Bearer {token}");
        let given = parts
            .headers
            .get(AUTHORIZATION)
            .map_or(&b""[..], HeaderValue::as_bytes);
        if !bool::from(given.ct_eq(expected.as_bytes())) {
            return json(StatusCode::UNAUTHORIZED, r#"{"message":"Bad credentials"}"#);
        }
    }

    let path = parts.uri.path();
    let path = path.strip_prefix("/api/v3").unwrap_or(path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["user"] => json(
            StatusCode::OK,
            r#"{"login":"signet-demo","id":1,"type":"Bot"}"#,
        ),
        ["repos", owner, repo] => json(
            StatusCode::OK,
            &repository_json(&api_base(state, &parts.uri), owner, repo),
        ),
        ["repos", owner, repo, "issues"] => {
            issues_page(&api_base(state, &parts.uri), owner, repo, parts.uri.query())
        }
        ["repos", owner, repo, "issues", number] => match number.parse::<u64>() {
            Ok(number) if (1..=ISSUES).contains(&number) => json(
                StatusCode::OK,
                &issue_json(&api_base(state, &parts.uri), owner, repo, number),
            ),
            _ => not_found(),
        },
        ["graphql"] if parts.method == http::Method::POST => json(
            StatusCode::OK,
            r#"{"data":{"viewer":{"login":"signet-demo","url":"https://github.com/signet-demo"}}}"#,
        ),
        ["echo"] => {
            let mut response = Response::new(StandInBody::Left(body.into()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
        ["stream", bytes] => match bytes.parse::<u64>() {
            Ok(total) => {
                let mut response =
                    Response::new(StandInBody::Right(http_body_util::Either::Left(Filler {
                        remaining: total,
                    })));
                response
                    .headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from(total));
                response
            }
            Err(_) => not_found(),
        },
        ["delay", millis] => match millis.parse::<u64>() {
            Ok(millis) => {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                json(StatusCode::OK, r#"{"delayed":true}"#)
            }
            Err(_) => not_found(),
        },
        ["status", code] => match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) => json(status, r#"{"message":"as requested"}"#),
            None => not_found(),
        },
        ["gated"] => {
            let (sender, receiver) = tokio::sync::mpsc::channel(2);
            let gate = Arc::clone(&state.gate);
            tokio::spawn(async move {
                let _ = sender.send(Bytes::from_static(b"first\n")).await;
                gate.notified().await;
                let _ = sender.send(Bytes::from_static(b"rest\n")).await;
            });
            Response::new(StandInBody::Right(http_body_util::Either::Right(Gated {
                receiver,
            })))
        }
        ["redirect"] => {
            let mut response = json(StatusCode::FOUND, "{}");
            if let Ok(location) = HeaderValue::from_str(&format!("{}/user", state.base)) {
                response.headers_mut().insert(LOCATION, location);
            }
            response
        }
        ["limit", resource, remaining, reset] => {
            let mut response = json(StatusCode::OK, "{}");
            let headers = response.headers_mut();
            for (name, value) in [
                ("x-ratelimit-resource", *resource),
                ("x-ratelimit-remaining", *remaining),
                ("x-ratelimit-reset", *reset),
            ] {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.insert(name, value);
                }
            }
            response
        }
        ["secondary", retry_after] => {
            let mut response = json(
                StatusCode::FORBIDDEN,
                r#"{"message":"You have exceeded a secondary rate limit."}"#,
            );
            if let Ok(value) = HeaderValue::from_str(retry_after) {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
        ["paged", total] => paged(state, &parts.uri, total),
        ["large", bytes] => large(bytes, None),
        ["large", bytes, "gated"] => large(bytes, Some(Arc::clone(&state.gate))),
        ["header", name, value] => {
            let mut response = json(StatusCode::OK, "{}");
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
            response
        }
        ["etag", max_age, delay] => conditional(state, &parts.headers, max_age, delay).await,
        ["hop-by-hop"] => {
            let mut response = json(StatusCode::OK, "{}");
            let headers = response.headers_mut();
            headers.insert(
                "connection",
                HeaderValue::from_static("x-upstream-internal"),
            );
            headers.insert("x-upstream-internal", HeaderValue::from_static("1"));
            headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
            response
        }
        _ => not_found(),
    }
}

/// `total` pages of a list, as GitHub paginates: `?page=N` (default 1)
/// answers `[N]` with a `Link` to the `next` and `last` pages (and `prev` and
/// `first` after the first), under the prefix the request came with
/// (`/api/v3` for GitHub Enterprise).
fn paged(state: &State, uri: &http::Uri, total: &str) -> Response<StandInBody> {
    let Ok(total) = total.parse::<u64>() else {
        return not_found();
    };
    let page = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("page="))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1);
    if page == 0 || page > total.max(1) {
        return json(StatusCode::OK, "[]");
    }
    let prefix = if uri.path().starts_with("/api/v3/") {
        "/api/v3"
    } else {
        ""
    };
    let url = |n: u64| format!("{}{prefix}/paged/{total}?page={n}", state.base);
    let mut links = Vec::new();
    if page < total {
        links.push(format!(r#"<{}>; rel="next""#, url(page + 1)));
        links.push(format!(r#"<{}>; rel="last""#, url(total)));
    }
    if page > 1 {
        links.push(format!(r#"<{}>; rel="prev""#, url(page - 1)));
        links.push(format!(r#"<{}>; rel="first""#, url(1)));
    }
    let mut response = json(StatusCode::OK, &format!("[{page}]"));
    if !links.is_empty() {
        if let Ok(link) = HeaderValue::from_str(&links.join(", ")) {
            response.headers_mut().insert(http::header::LINK, link);
        }
    }
    response
}

/// A large cacheable resource: `bytes` bytes of `x` with an `ETag` and
/// `max-age=60`. `gate`: without `Content-Length`, all but the last byte at
/// once, the last only when the gate opens (a body that stalls).
fn large(bytes: &str, gate: Option<Arc<tokio::sync::Notify>>) -> Response<StandInBody> {
    let Ok(total) = bytes.parse::<u64>() else {
        return not_found();
    };
    let mut response = match gate {
        None => {
            let mut response =
                Response::new(StandInBody::Right(http_body_util::Either::Left(Filler {
                    remaining: total,
                })));
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(total));
            response
        }
        Some(gate) => {
            let (sender, receiver) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                let mut left = total.saturating_sub(1);
                while left > 0 {
                    let len = left.min(CHUNK as u64);
                    left -= len;
                    let chunk = Bytes::from(vec![b'x'; usize::try_from(len).unwrap_or(0)]);
                    if sender.send(chunk).await.is_err() {
                        return;
                    }
                }
                gate.notified().await;
                let _ = sender.send(Bytes::from_static(b"x")).await;
            });
            Response::new(StandInBody::Right(http_body_util::Either::Right(Gated {
                receiver,
            })))
        }
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"large-{total}\"")) {
        headers.insert(http::header::ETAG, etag);
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    response
}

/// A resource with an `ETag`, as GitHub serves them: `{"revision":N}` with
/// `ETag: "rN"`, `Cache-Control: private, max-age=<max_age>` and GitHub's
/// `Vary`; a matching `If-None-Match` gets `304 Not Modified`. The answer
/// waits `delay` milliseconds.
async fn conditional(
    state: &State,
    headers: &HeaderMap,
    max_age: &str,
    delay: &str,
) -> Response<StandInBody> {
    let (Ok(max_age), Ok(delay)) = (max_age.parse::<u64>(), delay.parse::<u64>()) else {
        return not_found();
    };
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let revision = state.revision.load(std::sync::atomic::Ordering::Relaxed);
    // Every `Accept` line counts, as GitHub reads them all.
    let raw = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| v.as_bytes().windows(14).any(|w| w == b"vnd.github.raw"));
    let etag = if raw {
        format!("\"r{revision}-raw\"")
    } else {
        format!("\"r{revision}\"")
    };
    let unchanged = headers
        .get(http::header::IF_NONE_MATCH)
        .is_some_and(|given| given.as_bytes() == etag.as_bytes());
    let mut response = if unchanged {
        let mut response = Response::new(StandInBody::Left(Bytes::new().into()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
            .headers_mut()
            .insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
        response
    } else if raw {
        let mut response = Response::new(StandInBody::Left(
            Bytes::from(format!("revision {revision}")).into(),
        ));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.github.raw"),
        );
        response
    } else {
        json(StatusCode::OK, &format!(r#"{{"revision":{revision}}}"#))
    };
    let response_headers = response.headers_mut();
    for (name, value) in [
        ("etag", etag),
        (
            "cache-control",
            format!("private, max-age={max_age}, s-maxage={max_age}"),
        ),
        (
            "vary",
            "Accept, Authorization, Cookie, X-GitHub-OTP".to_owned(),
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(name, value);
        }
    }
    response
}

/// How many issues every repository has (two per page).
pub const ISSUES: u64 = 5;

const ISSUES_PER_PAGE: u64 = 2;

/// This stand-in's API base as the request addressed it: with `/api/v3`
/// when the request used the GitHub Enterprise prefix.
fn api_base(state: &State, uri: &http::Uri) -> String {
    let enterprise = uri.path() == "/api/v3" || uri.path().starts_with("/api/v3/");
    let prefix = if enterprise { "/api/v3" } else { "" };
    format!("{}{prefix}", state.base)
}

/// A repository as GitHub describes it, with its API URLs under `api`.
fn repository_json(api: &str, owner: &str, repo: &str) -> String {
    serde_json::json!({
        "id": 1_296_269,
        "node_id": "R_kgDOsignet",
        "name": repo,
        "full_name": format!("{owner}/{repo}"),
        "private": false,
        "owner": {
            "login": owner,
            "id": 1,
            "type": "Organization",
            "url": format!("{api}/users/{owner}"),
            "html_url": format!("https://github.com/{owner}"),
        },
        "html_url": format!("https://github.com/{owner}/{repo}"),
        "url": format!("{api}/repos/{owner}/{repo}"),
        "issues_url": format!("{api}/repos/{owner}/{repo}/issues{{/number}}"),
        "comments_url": format!("{api}/repos/{owner}/{repo}/comments{{/number}}"),
        "pulls_url": format!("{api}/repos/{owner}/{repo}/pulls{{/number}}"),
        "default_branch": "main",
    })
    .to_string()
}

/// Issue `number` of a repository, with its API URLs under `api` (and one in
/// its prose, which is text, not a link to follow).
fn issue_json(api: &str, owner: &str, repo: &str, number: u64) -> String {
    let url = format!("{api}/repos/{owner}/{repo}/issues/{number}");
    serde_json::json!({
        "id": 1000 + number,
        "node_id": format!("I_signet{number}"),
        "number": number,
        "title": format!("Issue {number}"),
        "state": "open",
        "body": format!("Found while reading {api}/repos/{owner}/{repo}."),
        "user": {"login": "signet-demo", "id": 1, "url": format!("{api}/users/signet-demo")},
        "repository_url": format!("{api}/repos/{owner}/{repo}"),
        "comments_url": format!("{url}/comments"),
        "html_url": format!("https://github.com/{owner}/{repo}/issues/{number}"),
        "url": url,
    })
    .to_string()
}

/// One page of a repository's issues (`?page=N`, from 1), with GitHub's
/// `Link` header: `next` on every page but the last (plus a `help` link on
/// the first, as before), `prev` after the first. Other query parameters are
/// kept in the links, as GitHub keeps them.
fn issues_page(api: &str, owner: &str, repo: &str, query: Option<&str>) -> Response<StandInBody> {
    let mut page = 1;
    let mut kept = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.strip_prefix("page=") {
            Some(n) => page = n.parse::<u64>().unwrap_or(1).max(1),
            None => kept.push(pair),
        }
    }
    let pages = ISSUES.div_ceil(ISSUES_PER_PAGE);
    let first = (page - 1).saturating_mul(ISSUES_PER_PAGE) + 1;
    let issues: Vec<serde_json::Value> = (first..first.saturating_add(ISSUES_PER_PAGE))
        .filter(|n| *n <= ISSUES)
        .filter_map(|n| serde_json::from_str(&issue_json(api, owner, repo, n)).ok())
        .collect();
    let mut response = json(
        StatusCode::OK,
        &serde_json::Value::Array(issues).to_string(),
    );
    let link_to = |n: u64| {
        let mut params = kept.clone();
        let page = format!("page={n}");
        params.push(&page);
        format!("<{api}/repos/{owner}/{repo}/issues?{}>", params.join("&"))
    };
    let mut links = Vec::new();
    if page < pages {
        links.push(format!(r#"{}; rel="next""#, link_to(page + 1)));
    }
    if page == 1 {
        links.push(r#"<https://docs.github.com/rest>; rel="help""#.to_owned());
    } else {
        links.push(format!(r#"{}; rel="prev""#, link_to(page - 1)));
    }
    if let Ok(link) = HeaderValue::from_str(&links.join(", ")) {
        response.headers_mut().insert(http::header::LINK, link);
    }
    response
}

fn json(status: StatusCode, body: &str) -> Response<StandInBody> {
    let mut response = Response::new(StandInBody::Left(
        Bytes::copy_from_slice(body.as_bytes()).into(),
    ));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
    // As GitHub does on every API answer: the agent must not hand it to a browser.
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    // As GitHub does; proxies log it so an audit line matches GitHub's records.
    headers.insert(
        "x-github-request-id",
        HeaderValue::from_static("C0DE:5TAND:1N"),
    );
    response
}

fn not_found() -> Response<StandInBody> {
    json(
        StatusCode::NOT_FOUND,
        r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}"#,
    )
}

/// A body of `remaining` bytes of `x`, produced chunk by chunk.
#[derive(Debug)]
pub struct Filler {
    remaining: u64,
}

const CHUNK: usize = 64 * 1024;

impl Body for Filler {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = usize::try_from(this.remaining).map_or(CHUNK, |r| r.min(CHUNK));
        this.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; len])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A body whose chunks arrive over a channel, as a slow upstream sends them.
#[derive(Debug)]
pub struct Gated {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
}

impl Body for Gated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}
