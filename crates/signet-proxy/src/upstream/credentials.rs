//! The one upstream credential the proxy injects, from exactly one source:
//!
//! * a static token (`--github-token` / `GITHUB_TOKEN`);
//! * a token file (`--github-token-file`), re-read within 2 s of a change —
//!   Kubernetes' atomic `..data` symlink swap included, since the content is
//!   compared, not the modification time;
//! * a GitHub App (`--github-app-id`, `--github-app-key`,
//!   `--github-installation-id`): an RS256 App JWT (iat 60 s in the past,
//!   exp 9 min ahead) is exchanged at `POST /app/installations/{id}/access_tokens`
//!   for an installation token, refreshed when less than a fifth of its
//!   lifetime remains, and after GitHub answers 401 to it (see
//!   [`REJECTED_MIN_AGE`] for when a 401 counts). One background
//!   task does every exchange (single flight), retries with backoff and
//!   jitter, and the old token keeps serving until the new one arrives.
//!
//! A keys-file client with a `github` scope is forwarded with a token minted
//! for that scope instead ([`crate::upstream::scope`]), App mode only.
//!
//! Only `201 Created` with a token is a successful exchange; anything else
//! hands nobody a token. A token's length and prefix are never assumed.
//! Until a usable token is held, `/readyz` says not ready and requests are
//! refused with 503 `UPSTREAM_CREDENTIALS_UNAVAILABLE`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use memchr::memmem;
use serde::Deserialize;
use tokio::sync::Notify;

use signet_core::ErrorCode;

use crate::config::Upstream;
use crate::grants::GitHubScope;
use crate::refusal::Refusal;
use crate::secret::GitHubToken;
use crate::upstream::forward::UpstreamClient;
use crate::upstream::scope::{Minted, ScopedTokens, Slot};

pub use crate::config::{AppCredential, CredentialSource};

/// Why a credential source cannot be used at all (a startup error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(String);

/// The token in force.
pub struct Current {
    /// `Authorization: Bearer …`, marked sensitive.
    pub authorization: HeaderValue,
    /// Finds the token where it must never appear (echoed response headers).
    pub finder: memmem::Finder<'static>,
    /// What the token may reach: `None` for the installation's (or the
    /// static) token, else the client's scope. Cached responses are
    /// partitioned by it.
    pub scope: Option<GitHubScope>,
    /// Unique to this token: a cached response fetched with another one is
    /// revalidated before it is served.
    pub generation: u64,
    /// When GitHub stops accepting it (App tokens): past it, the token is
    /// not sent (503 until a new one arrives), never a known-dead one.
    expires: Option<Instant>,
    /// When the proxy got it.
    received: Instant,
    /// When a 401 last asked for it to be replaced.
    last_rejection: Mutex<Option<Instant>>,
}

/// A 401 asks for a new token only when the token is at least this old.
/// Any client can make GitHub answer 401 to a good token (a route that
/// takes another credential), and GitHub may refuse a token it issued a
/// moment ago while it propagates: a young token's 401 says little about
/// it, and replacing it at once would let each request cost an exchange.
pub const REJECTED_MIN_AGE: Duration = Duration::from_secs(5);

/// After a 401 asked for a token to be replaced, its further 401s ask again
/// only after this long: a burst costs one exchange, and a refresh that
/// failed is asked for again at this pace at most.
pub const REJECTED_INTERVAL: Duration = Duration::from_secs(5);

/// Every token the process holds gets the next number.
static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Current {
    fn new(token: &GitHubToken, scope: Option<GitHubScope>) -> Self {
        Current {
            authorization: token.authorization().clone(),
            finder: memmem::Finder::new(token.token_bytes()).into_owned(),
            scope,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            expires: None,
            received: Instant::now(),
            last_rejection: Mutex::new(None),
        }
    }

    /// GitHub answered 401 to this token at `now`: whether that should
    /// replace it ([`REJECTED_MIN_AGE`], [`REJECTED_INTERVAL`]). Counts as
    /// the one request for a while when it says yes.
    pub fn take_rejection(&self, now: Instant) -> bool {
        if now.saturating_duration_since(self.received) < REJECTED_MIN_AGE {
            return false;
        }
        let Ok(mut last) = self.last_rejection.lock() else {
            return false;
        };
        if last.is_some_and(|at| now.saturating_duration_since(at) < REJECTED_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn expiring(mut self, at: Instant) -> Self {
        self.expires = Some(at);
        self
    }

    fn live(&self) -> bool {
        self.expires.is_none_or(|at| Instant::now() < at)
    }
}

/// Why an exchange at the access-token endpoint gave no token.
#[derive(Debug)]
struct ExchangeError {
    /// GitHub answered and said no (422, 403, 404): asking again now would
    /// get the same answer.
    refused: bool,
    why: String,
}

impl From<String> for ExchangeError {
    fn from(why: String) -> Self {
        ExchangeError {
            refused: false,
            why,
        }
    }
}

impl From<&str> for ExchangeError {
    fn from(why: &str) -> Self {
        why.to_owned().into()
    }
}

/// The credential in force and the task that keeps it fresh.
pub struct Credentials {
    current: ArcSwapOption<Current>,
    /// GitHub said 401: refresh now (App only).
    rejected: Notify,
    source: CredentialSource,
    app_key: Option<jsonwebtoken::EncodingKey>,
    /// Per-client scoped tokens (App mode).
    scoped: ScopedTokens,
    /// The installation's account, fetched once, to check scoped owners.
    account: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Checks the source (reads a token file or an App key now).
    pub fn new(source: CredentialSource) -> Result<Self, CredentialError> {
        let mut current = None;
        let mut app_key = None;
        match &source {
            CredentialSource::Token(token) => {
                current = Some(Arc::new(Current::new(token, None)));
            }
            CredentialSource::TokenFile(path) => {
                // A missing file is not fatal: the secret may be mounted later.
                if let Ok(Some(token)) = read_token_file(path) {
                    current = Some(Arc::new(Current::new(&token, None)));
                }
            }
            CredentialSource::App(app) => {
                let pem = std::fs::read(&app.key_file).map_err(|e| {
                    CredentialError(format!(
                        "cannot read --github-app-key {}: {e}",
                        app.key_file.display()
                    ))
                })?;
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|_| {
                    CredentialError(format!(
                        "invalid --github-app-key {}: expected an RSA private key PEM (PKCS#1 or PKCS#8)",
                        app.key_file.display()
                    ))
                })?;
                app_key = Some(key);
            }
        }
        Ok(Credentials {
            current: ArcSwapOption::new(current),
            rejected: Notify::new(),
            source,
            app_key,
            scoped: ScopedTokens::default(),
            account: tokio::sync::OnceCell::new(),
        })
    }

    /// The token to send now, if one is held.
    pub fn current(&self) -> Option<Arc<Current>> {
        self.current.load_full().filter(|token| token.live())
    }

    /// Whether a usable token is held.
    pub fn ready(&self) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|token| token.live())
    }

    /// GitHub answered 401 to a request made with `token`: it is replaced
    /// if it is still the one in force and [`Current::take_rejection`] says
    /// so (a 401 to a token already replaced says nothing).
    pub fn rejected(&self, token: &Current) {
        if !matches!(self.source, CredentialSource::App(_)) {
            return;
        }
        match &token.scope {
            None => {
                let in_force = self
                    .current
                    .load()
                    .as_ref()
                    .is_some_and(|current| current.generation == token.generation);
                if in_force && token.take_rejection(Instant::now()) {
                    self.rejected.notify_one();
                }
            }
            Some(scope) => {
                if let Some(slot) = self.scoped.slot(scope) {
                    slot.rejected(token);
                }
            }
        }
    }

    /// The token for a client's request: the main one, or the one minted for
    /// the client's scope (minted now if none is held, refreshed when a fifth
    /// of its lifetime remains). Never a broader token than the scope.
    pub async fn for_client(
        &self,
        scope: Option<&GitHubScope>,
        client: &UpstreamClient,
        upstream: &Upstream,
    ) -> Result<Arc<Current>, Refusal> {
        let Some(scope) = scope else {
            return self.current().ok_or_else(|| {
                Refusal::new(ErrorCode::UpstreamCredentialsUnavailable)
                    .with_detail("no usable GitHub token is held yet")
            });
        };
        let (CredentialSource::App(app), Some(slot)) = (&self.source, self.scoped.slot(scope))
        else {
            // Refused at startup and reload; this is the fail-closed backstop.
            return Err(Refusal::new(ErrorCode::UpstreamScopeRefused)
                .with_detail("a scoped client needs GitHub App credentials"));
        };
        let now = Instant::now();
        if let Some(why) = slot.refusal(now) {
            return Err(Refusal::new(ErrorCode::UpstreamScopeRefused).with_detail(why));
        }
        let held = slot.minted.load_full();
        match &held {
            Some(minted) if now < minted.refresh_at => return Ok(Arc::clone(&minted.current)),
            // Due for a refresh but still good: one request refreshes, the
            // others keep using it meanwhile.
            Some(minted) if now + Duration::from_secs(5) < minted.expires_at => {
                match slot.flight.try_lock() {
                    Ok(_flight) => {
                        return Ok(self
                            .mint(app, scope, &slot, client, upstream)
                            .await
                            .unwrap_or_else(|_| Arc::clone(&minted.current)));
                    }
                    Err(_) => return Ok(Arc::clone(&minted.current)),
                }
            }
            _ => {}
        }
        // None held (or expired): wait for the one exchange in flight.
        let _flight = slot.flight.lock().await;
        if let Some(minted) = slot.minted.load_full() {
            if Instant::now() < minted.refresh_at {
                return Ok(Arc::clone(&minted.current));
            }
        }
        if let Some(why) = slot.refusal(Instant::now()) {
            return Err(Refusal::new(ErrorCode::UpstreamScopeRefused).with_detail(why));
        }
        self.mint(app, scope, &slot, client, upstream).await
    }

    /// One exchange for `scope`'s token (the caller holds the slot's flight).
    async fn mint(
        &self,
        app: &AppCredential,
        scope: &GitHubScope,
        slot: &Slot,
        client: &UpstreamClient,
        upstream: &Upstream,
    ) -> Result<Arc<Current>, Refusal> {
        let outcome = async {
            if let Some(owner) = scope.owner() {
                let account = self
                    .account
                    .get_or_try_init(|| self.installation_account(app, client, upstream))
                    .await?;
                if !owner.eq_ignore_ascii_case(account) {
                    return Err(ExchangeError {
                        refused: true,
                        why: format!(
                            "the scope names repositories of {owner:?}, but the installation belongs to {account:?}"
                        ),
                    });
                }
            }
            self.exchange(app, client, upstream, Some(scope.request_body()))
                .await
        }
        .await;
        match outcome {
            Ok((token, lifetime)) => {
                let now = Instant::now();
                let current = Arc::new(Current::new(&token, Some(scope.clone())));
                slot.minted.store(Some(Arc::new(Minted {
                    current: Arc::clone(&current),
                    refresh_at: now + lifetime.mul_f64(0.8),
                    expires_at: now + lifetime,
                })));
                tracing::info!(
                    scope = scope.label(),
                    lifetime_s = lifetime.as_secs(),
                    "scoped installation token minted"
                );
                Ok(current)
            }
            Err(error) if error.refused => {
                tracing::error!(
                    scope = scope.label(),
                    why = %error.why,
                    "GitHub refused a client's token scope; its requests are refused, never sent with a broader token"
                );
                slot.refuse(Instant::now(), error.why.clone());
                Err(Refusal::new(ErrorCode::UpstreamScopeRefused).with_detail(error.why))
            }
            Err(error) => {
                tracing::error!(scope = scope.label(), why = %error.why, "scoped token exchange failed");
                Err(Refusal::new(ErrorCode::UpstreamCredentialsUnavailable).with_detail(error.why))
            }
        }
    }

    /// `GET /app/installations/{id}`: the account the installation belongs to.
    async fn installation_account(
        &self,
        app: &AppCredential,
        client: &UpstreamClient,
        upstream: &Upstream,
    ) -> Result<String, ExchangeError> {
        let uri = format!(
            "{}/app/installations/{}",
            upstream.base_url(),
            app.installation_id
        );
        let (status, body) = self
            .app_request(app, Method::GET, uri, None, client, upstream)
            .await?;
        if status != StatusCode::OK {
            return Err(format!("the installation lookup answered {status}").into());
        }
        #[derive(Deserialize)]
        struct Installation {
            account: Account,
        }
        #[derive(Deserialize)]
        struct Account {
            login: String,
        }
        let installation: Installation = serde_json::from_slice(&body)
            .map_err(|_| "the installation lookup's answer has no account login")?;
        Ok(installation.account.login)
    }

    /// Keeps the credential fresh until the task is dropped.
    pub async fn run(self: Arc<Self>, client: UpstreamClient, upstream: Arc<Upstream>) {
        match &self.source {
            CredentialSource::Token(_) => {}
            CredentialSource::TokenFile(path) => self.watch_file(path.clone()).await,
            CredentialSource::App(app) => self.refresh_app(app.clone(), client, upstream).await,
        }
    }

    async fn watch_file(&self, path: PathBuf) {
        let mut last: Option<Vec<u8>> = None;
        loop {
            match std::fs::read(&path) {
                Ok(bytes) if last.as_deref() != Some(&bytes) => {
                    match parse_token(&bytes) {
                        Some(token) => {
                            self.current
                                .store(Some(Arc::new(Current::new(&token, None))));
                            tracing::info!(file = %path.display(), "GitHub token (re)loaded");
                        }
                        None => tracing::error!(
                            file = %path.display(),
                            "the token file holds no usable token; the previous token stays in force"
                        ),
                    }
                    last = Some(bytes);
                }
                Ok(_) => {}
                Err(error) if last.is_some() => {
                    tracing::warn!(file = %path.display(), %error, "cannot read the token file; the previous token stays in force");
                    last = None;
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn refresh_app(
        &self,
        app: AppCredential,
        client: UpstreamClient,
        upstream: Arc<Upstream>,
    ) {
        let mut failures: u32 = 0;
        loop {
            let wait = match self.exchange(&app, &client, &upstream, None).await {
                Ok((token, lifetime)) => {
                    failures = 0;
                    let expires = Instant::now() + lifetime;
                    self.current
                        .store(Some(Arc::new(Current::new(&token, None).expiring(expires))));
                    tracing::info!(
                        lifetime_s = lifetime.as_secs(),
                        "GitHub App installation token refreshed"
                    );
                    // Refresh when a fifth of the lifetime remains.
                    lifetime.mul_f64(0.8)
                }
                Err(ExchangeError { why, .. }) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_millis(250)
                        .saturating_mul(2u32.saturating_pow(failures.min(7)))
                        .min(Duration::from_secs(30));
                    let wait = backoff + jitter(backoff / 2);
                    tracing::error!(
                        %why,
                        retry_in_ms = wait.as_millis() as u64,
                        "GitHub App token exchange failed; the previous token (if any) stays in force"
                    );
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.rejected.notified() => {
                    tracing::warn!("GitHub answered 401: refreshing the installation token now");
                }
            }
        }
    }

    /// One exchange: the App JWT for an installation token and its lifetime;
    /// `scope` is the access-token request's JSON body, if any.
    async fn exchange(
        &self,
        app: &AppCredential,
        client: &UpstreamClient,
        upstream: &Upstream,
        scope: Option<Bytes>,
    ) -> Result<(GitHubToken, Duration), ExchangeError> {
        let uri = format!(
            "{}/app/installations/{}/access_tokens",
            upstream.base_url(),
            app.installation_id
        );
        let (status, body) = self
            .app_request(app, Method::POST, uri, scope, client, upstream)
            .await?;
        // Exactly 201: a 200 (or anything else) is not a token grant.
        if status != StatusCode::CREATED {
            return Err(ExchangeError {
                refused: matches!(
                    status,
                    StatusCode::UNPROCESSABLE_ENTITY
                        | StatusCode::FORBIDDEN
                        | StatusCode::NOT_FOUND
                ),
                why: format!("the token endpoint answered {status}, not 201 Created"),
            });
        }
        let granted: Granted = serde_json::from_slice(&body)
            .map_err(|_| "the token endpoint's answer is not a token grant")?;
        let token = GitHubToken::new(&granted.token)
            .ok_or("the granted token cannot be sent in a header")?;
        let expires = humantime::parse_rfc3339(&granted.expires_at)
            .map_err(|_| "the grant's expires_at is not RFC 3339")?;
        let lifetime = expires
            .duration_since(SystemTime::now())
            .map_err(|_| "the granted token has already expired")?;
        Ok((token, lifetime))
    }

    /// One request authenticated with a fresh App JWT: its status and body
    /// (at most 64 KiB).
    async fn app_request(
        &self,
        app: &AppCredential,
        method: Method,
        uri: String,
        body: Option<Bytes>,
        client: &UpstreamClient,
        upstream: &Upstream,
    ) -> Result<(StatusCode, Bytes), ExchangeError> {
        let key = self.app_key.as_ref().ok_or("no App key")?;
        let now = unix_now();
        let claims = AppClaims {
            iat: now.saturating_sub(60),
            exp: now + 9 * 60,
            iss: app.app_id.to_string(),
        };
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            key,
        )
        .map_err(|e| format!("cannot sign the App JWT: {e}"))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {jwt}"))
            .map_err(|_| "the App JWT is not a header value")?;
        authorization.set_sensitive(true);
        let body = body.unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::HOST, upstream.host.clone())
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header(http::header::USER_AGENT, "signet-proxy")
            .header("x-github-api-version", "2022-11-28");
        if !body.is_empty() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
            .await
            .map_err(|_| "the token endpoint did not answer in 30 s".to_owned())?
            .map_err(|e| format!("cannot reach the token endpoint: {e}"))?;
        let status = response.status();
        let body = tokio::time::timeout(
            Duration::from_secs(30),
            http_body_util::Limited::new(response.into_body(), 64 * 1024).collect(),
        )
        .await
        .map_err(|_| "the token endpoint's body did not arrive in 30 s".to_owned())?
        .map_err(|e| format!("cannot read the token endpoint's answer: {e}"))?
        .to_bytes();
        Ok((status, body))
    }
}

#[derive(serde::Serialize)]
struct AppClaims {
    iat: u64,
    exp: u64,
    iss: String,
}

#[derive(Deserialize)]
struct Granted {
    token: String,
    expires_at: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn jitter(max: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return Duration::ZERO;
    }
    max.mul_f64(f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX))
}

/// A token from a file's bytes: trimmed of surrounding whitespace.
fn parse_token(bytes: &[u8]) -> Option<GitHubToken> {
    std::str::from_utf8(bytes)
        .ok()
        .map(str::trim)
        .and_then(GitHubToken::new)
}

fn read_token_file(path: &std::path::Path) -> std::io::Result<Option<GitHubToken>> {
    std::fs::read(path).map(|bytes| parse_token(&bytes))
}
