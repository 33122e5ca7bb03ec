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
//!   lifetime remains, and at once after GitHub answers 401. One background
//!   task does every exchange (single flight), retries with backoff and
//!   jitter, and the old token keeps serving until the new one arrives.
//!
//! Only `201 Created` with a token is a successful exchange; anything else
//! hands nobody a token. A token's length and prefix are never assumed.
//! Until a usable token is held, `/readyz` says not ready and requests are
//! refused with 503 `UPSTREAM_CREDENTIALS_UNAVAILABLE`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use memchr::memmem;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::config::Upstream;
use crate::forward::UpstreamClient;
use crate::secret::GitHubToken;

/// Where the upstream credential comes from.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// One static token.
    Token(GitHubToken),
    /// A file holding the token, re-read when it changes.
    TokenFile(PathBuf),
    /// A GitHub App installation.
    App(AppCredential),
}

/// A GitHub App installation's credentials.
#[derive(Debug, Clone)]
pub struct AppCredential {
    /// The App's id (the JWT's `iss`).
    pub app_id: u64,
    /// The App's private key, PEM (PKCS#1 as GitHub issues it, or PKCS#8).
    pub key_file: PathBuf,
    /// The installation whose token is used.
    pub installation_id: u64,
}

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
}

impl Current {
    fn new(token: &GitHubToken) -> Self {
        Current {
            authorization: token.authorization().clone(),
            finder: memmem::Finder::new(token.token_bytes()).into_owned(),
        }
    }
}

/// The credential in force and the task that keeps it fresh.
pub struct Credentials {
    current: ArcSwapOption<Current>,
    /// GitHub said 401: refresh now (App only).
    rejected: Notify,
    source: CredentialSource,
    app_key: Option<jsonwebtoken::EncodingKey>,
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
            CredentialSource::Token(token) => current = Some(Arc::new(Current::new(token))),
            CredentialSource::TokenFile(path) => {
                // A missing file is not fatal: the secret may be mounted later.
                if let Ok(Some(token)) = read_token_file(path) {
                    current = Some(Arc::new(Current::new(&token)));
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
        })
    }

    /// The token to send now, if one is held.
    pub fn current(&self) -> Option<Arc<Current>> {
        self.current.load_full()
    }

    /// Whether a usable token is held.
    pub fn ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// GitHub answered 401 to a request made with the current token.
    pub fn rejected(&self) {
        if matches!(self.source, CredentialSource::App(_)) {
            self.rejected.notify_one();
        }
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
                            self.current.store(Some(Arc::new(Current::new(&token))));
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
            let wait = match self.exchange(&app, &client, &upstream).await {
                Ok((token, lifetime)) => {
                    failures = 0;
                    self.current.store(Some(Arc::new(Current::new(&token))));
                    tracing::info!(
                        lifetime_s = lifetime.as_secs(),
                        "GitHub App installation token refreshed"
                    );
                    // Refresh when a fifth of the lifetime remains.
                    lifetime.mul_f64(0.8)
                }
                Err(why) => {
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

    /// One exchange: the App JWT for an installation token and its lifetime.
    async fn exchange(
        &self,
        app: &AppCredential,
        client: &UpstreamClient,
        upstream: &Upstream,
    ) -> Result<(GitHubToken, Duration), String> {
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
        let uri = format!(
            "{}/app/installations/{}/access_tokens",
            upstream.base_url(),
            app.installation_id
        );
        let mut authorization = HeaderValue::from_str(&format!("Bearer {jwt}"))
            .map_err(|_| "the App JWT is not a header value")?;
        authorization.set_sensitive(true);
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::HOST, upstream.host.clone())
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header(http::header::USER_AGENT, "signet-proxy")
            .header("x-github-api-version", "2022-11-28")
            .header(http::header::CONTENT_LENGTH, "0")
            .body(Full::new(Bytes::new()))
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
        // Exactly 201: a 200 (or anything else) is not a token grant.
        if status != StatusCode::CREATED {
            return Err(format!(
                "the token endpoint answered {status}, not 201 Created"
            ));
        }
        let granted: Granted = serde_json::from_slice(&body)
            .map_err(|_| "the token endpoint's answer is not a token grant".to_owned())?;
        let token = GitHubToken::new(&granted.token)
            .ok_or("the granted token cannot be sent in a header")?;
        let expires = humantime::parse_rfc3339(&granted.expires_at)
            .map_err(|_| "the grant's expires_at is not RFC 3339")?;
        let lifetime = expires
            .duration_since(SystemTime::now())
            .map_err(|_| "the granted token has already expired")?;
        Ok((token, lifetime))
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
