//! The `signet agent`: a local endpoint that looks like the GitHub API to
//! tools that cannot sign (`gh`, octokit, PyGithub, curl), and signs every
//! request it forwards to a `signet-proxy` with the master key's rotating
//! ephemeral key.
//!
//! | module | concern |
//! |---|---|
//! | `browser` | a web browser's request refused; no `Access-Control-*` in any answer |
//! | [`route`] | which target the proxy gets, which origin URLs come back under |
//! | `forward` | one request: body once, sign, send, rewrite, stream back |
//! | [`key`] | the master key file, re-read when it changes |
//! | [`error`] | the agent's own failures → JSON responses, in one place |
//!
//! Plain HTTP on loopback by default: anyone who can reach the agent acts
//! with its key, so [`AgentConfig::validate`] refuses a non-loopback listen
//! address unless `allow_remote` is set. A web page the user visits reaches
//! loopback too, so requests a browser made are refused whatever the
//! settings (`AGENT_BROWSER_REFUSED`, in `browser`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use signet_client::agent::{Agent, AgentConfig, KeySource, ProxyUrl};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key = Arc::new(KeySource::open("master-key.pem".as_ref(), "", std::time::Duration::from_secs(300))?);
//! let config = AgentConfig::new("127.0.0.1:7180".parse()?, ProxyUrl::parse("http://localhost:8080")?);
//! let agent = Agent::bind(config, key).await?;
//! agent.run(signet_client::agent::shutdown_signal()).await;
//! # Ok(())
//! # }
//! ```

mod browser;
pub mod error;
mod forward;
pub mod key;
pub mod route;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use signet_http::json_urls::RewrittenBody;
use tokio::net::TcpListener;

pub use error::AgentError;
pub use key::{KeySource, KeySourceError};

/// The default `--max-body-size`: the proxy's default, so the agent never
/// signs a body the proxy would refuse by size.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1024 * 1024;

/// The default `--github-api-url`.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// Longest wait for the proxy's response headers, and for a request body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// A client's request head must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long open requests may finish after Ctrl-C/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The proxy's base URL, parsed once.
#[derive(Debug, Clone)]
pub struct ProxyUrl {
    scheme: Scheme,
    authority: Authority,
    /// The `Host` sent to the proxy.
    host: HeaderValue,
    /// The base path, no trailing `/` (often empty).
    path: String,
    /// `scheme://authority/path`, no trailing `/`: what the proxy's own
    /// `Link`/`Location` URLs start with when it has this `--public-url`.
    base: String,
    /// `http://authority`: where a proxy without `--public-url` points them
    /// (`http://` + the `Host` the agent sent), even behind TLS or a prefix.
    host_base: String,
}

/// Why a setting is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentConfigError {
    /// The proxy URL is not `http(s)://host[:port][/path]`.
    #[error("invalid proxy URL {0:?}: expected http(s)://host[:port][/path]")]
    ProxyUrl(String),
    /// The GitHub API URL is not `http(s)://host[:port][/path]`.
    #[error("invalid GitHub API URL {0:?}: expected http(s)://host[:port][/path]")]
    GitHubApiUrl(String),
    /// A non-loopback listen address without `allow_remote`.
    #[error("refusing to listen on {0}, which is not a loopback address: anyone who can reach the agent acts with its key (use --allow-remote if you mean it)")]
    RemoteListen(SocketAddr),
}

impl ProxyUrl {
    /// Parses `http(s)://host[:port][/path]` (no query, no user information).
    pub fn parse(url: &str) -> Result<Self, AgentConfigError> {
        let invalid = || AgentConfigError::ProxyUrl(url.to_owned());
        let (scheme, authority, path) = parse_base(url).ok_or_else(invalid)?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| invalid())?;
        let base = format!("{scheme}://{authority}{path}");
        let host_base = format!("http://{authority}");
        Ok(ProxyUrl {
            scheme,
            authority,
            host,
            path,
            base,
            host_base,
        })
    }

    /// `scheme://authority/path`, no trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.base
    }
}

/// `(scheme, authority, path without trailing /)` of a plain base URL.
fn parse_base(url: &str) -> Option<(Scheme, Authority, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme()?.clone();
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return None;
    }
    let authority = uri.authority()?.clone();
    if authority.as_str().contains('@') || authority.host().is_empty() || uri.query().is_some() {
        return None;
    }
    let path = uri.path().trim_end_matches('/').to_owned();
    if path.contains(['"', '\\']) {
        return None;
    }
    Some((scheme, authority, path))
}

/// The agent's validated settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Accept a non-loopback listen address and non-loopback `Host`s.
    pub allow_remote: bool,
    /// The proxy.
    pub proxy: ProxyUrl,
    /// The upstream API base the proxy forwards to: its URLs in bodies and
    /// headers are rewritten to the client's origin.
    pub github_api_url: String,
    /// Largest request body (413 beyond).
    pub max_body_size: u64,
    /// Longest wait for the proxy's response headers (504 beyond).
    pub timeout: Duration,
}

impl AgentConfig {
    /// Defaults for everything but where to listen and the proxy.
    pub fn new(listen: SocketAddr, proxy: ProxyUrl) -> Self {
        AgentConfig {
            listen,
            allow_remote: false,
            proxy,
            github_api_url: DEFAULT_GITHUB_API_URL.to_owned(),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Refuses a non-loopback listen address without `allow_remote`, and an
    /// unusable GitHub API URL.
    pub fn validate(&self) -> Result<(), AgentConfigError> {
        if !self.allow_remote && !self.listen.ip().is_loopback() {
            return Err(AgentConfigError::RemoteListen(self.listen));
        }
        if parse_base(&self.github_api_url).is_none() {
            return Err(AgentConfigError::GitHubApiUrl(self.github_api_url.clone()));
        }
        Ok(())
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentStartError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] AgentConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// rustls refused the TLS client configuration.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// A bound, not yet running agent.
#[derive(Debug)]
pub struct Agent {
    listener: TcpListener,
    forwarder: Arc<forward::Forwarder>,
}

impl Agent {
    /// Validates `config` and binds its listen address (port 0 picks one).
    pub async fn bind(config: AgentConfig, key: Arc<KeySource>) -> Result<Self, AgentStartError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| AgentStartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local = listener
            .local_addr()
            .map_err(|source| AgentStartError::Bind {
                addr: config.listen,
                source,
            })?;
        let forwarder = Arc::new(forward::Forwarder::new(&config, key, local)?);
        Ok(Agent {
            listener,
            forwarder,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets open
    /// requests finish (for up to 10 s).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let forwarder = Arc::clone(&self.forwarder);
                        let service = service_fn(move |request| {
                            let forwarder = Arc::clone(&forwarder);
                            async move { Ok::<_, Infallible>(forwarder.handle(request).await) }
                        });
                        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                    }
                    // Out of file descriptors and the like: back off briefly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The body of every agent response: its own small JSON, or the proxy's
/// body streamed through as it arrives (with JSON URLs rewritten).
#[derive(Debug)]
pub struct AgentBody(BodyKind);

#[derive(Debug)]
enum BodyKind {
    Full(Full<Bytes>),
    Streamed(Incoming),
    Rewritten(RewrittenBody<Incoming>),
}

impl AgentBody {
    fn full(bytes: Bytes) -> Self {
        AgentBody(BodyKind::Full(Full::new(bytes)))
    }

    fn streamed(body: Incoming) -> Self {
        AgentBody(BodyKind::Streamed(body))
    }

    fn rewritten(body: RewrittenBody<Incoming>) -> Self {
        AgentBody(BodyKind::Rewritten(body))
    }
}

impl Body for AgentBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            BodyKind::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            BodyKind::Streamed(body) => Pin::new(body).poll_frame(cx),
            BodyKind::Rewritten(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Full(full) => full.is_end_stream(),
            BodyKind::Streamed(body) => body.is_end_stream(),
            BodyKind::Rewritten(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Full(full) => full.size_hint(),
            BodyKind::Streamed(body) => body.size_hint(),
            BodyKind::Rewritten(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_must_be_plain_http_bases() {
        let parsed = ProxyUrl::parse("https://signet.internal:8443/gh/");
        let Ok(parsed) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(parsed.as_str(), "https://signet.internal:8443/gh");
        assert_eq!(parsed.path, "/gh");
        assert_eq!(parsed.host, "signet.internal:8443");
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://user@x",
            "http://x/?q",
            "/relative",
            "",
        ] {
            assert!(ProxyUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_non_loopback_listen_address_needs_allow_remote() {
        let proxy = ProxyUrl::parse("http://127.0.0.1:8080");
        let Ok(proxy) = proxy else {
            panic!("{proxy:?}");
        };
        let mut config = AgentConfig::new(SocketAddr::from(([0, 0, 0, 0], 7180)), proxy);
        assert!(matches!(
            config.validate(),
            Err(AgentConfigError::RemoteListen(_))
        ));
        config.allow_remote = true;
        assert!(config.validate().is_ok());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 7180));
        config.allow_remote = false;
        assert!(config.validate().is_ok());
        config.github_api_url = "api.github.com".to_owned();
        assert!(matches!(
            config.validate(),
            Err(AgentConfigError::GitHubApiUrl(_))
        ));
    }
}
