//! The validated configuration.
//!
//! [`Config::from_args`] turns raw [`Args`] into a [`Config`] or a
//! [`ConfigError`] whose message is what the user sees before the process
//! exits non-zero. Tests build `Config` values directly with [`Config::new`].

pub mod cli;
mod values;

pub use values::{AppCredential, CredentialSource, Serving, DEFAULT_REFUSAL_LOG_LIMIT};

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use signet_core::{parse_public_key_hex, Limits, Purpose, VerifyingKey};

use crate::clock::Clock;
use crate::secret::{GitHubToken, RedisUrl};
use crate::Args;

/// Everything the proxy needs to run, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where every verified request goes.
    pub upstream: Upstream,
    /// Trusted master public keys from `--master-key` (may be empty with a keys file).
    pub master_keys: Vec<VerifyingKey>,
    /// The trusted-keys file: one named client per key, with its policy.
    pub keys_file: Option<PathBuf>,
    /// Where the shared GitHub credential comes from.
    pub credential: CredentialSource,
    /// Log level filter.
    pub log_level: tracing::Level,
    /// Health check path.
    pub health_path: String,
    /// Headers complete within this of their first byte; the body gets as long again (`None`: no limit).
    pub read_timeout: Option<Duration>,
    /// Longest stall of one write to a client (`None`: no limit).
    pub write_timeout: Option<Duration>,
    /// A keep-alive connection waiting this long for its next request is closed (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Largest allowed `|ts - now|`, seconds.
    pub clock_skew: u64,
    /// Largest allowed `exp - now`, seconds.
    pub max_binding_ttl: u64,
    /// Largest request body, bytes.
    pub max_body_size: u64,
    /// Most request-body bytes held in memory at once, over all requests.
    pub body_buffer_budget: u64,
    /// Most client connections served at once; more are refused.
    pub max_connections: usize,
    /// Most records of unauthenticated refusals written per second (0: no
    /// limit).
    pub refusal_log_limit: u64,
    /// Longest wait for the upstream's response headers, and longest an
    /// upstream response body may make no progress.
    pub upstream_timeout: Duration,
    /// Most requests in flight to GitHub at once (its secondary limits).
    pub upstream_concurrency: usize,
    /// Most requests one client may have in flight to GitHub at once
    /// (`None`: a quarter of `upstream_concurrency`); see
    /// [`Config::upstream_share`].
    pub upstream_concurrency_per_client: Option<usize>,
    /// Bytes of responses the conditional-request cache keeps (0: off).
    pub cache_size: u64,
    /// Purposes a proof must carry one of; empty means any.
    pub allowed_purposes: Vec<Purpose>,
    /// The proxy's URL as clients reach it; upstream URLs in `Link` and
    /// `Location` are rewritten to it when set.
    pub public_url: Option<String>,
    /// Extra CA certificates (PEM file) trusted for the upstream.
    pub upstream_ca_file: Option<PathBuf>,
    /// Capacity of the in-memory replay store.
    pub replay_capacity: usize,
    /// Where replay records are shared by every replica (`None`: in memory).
    pub redis_url: Option<RedisUrl>,
    /// Longest wait for one Redis command, connecting included.
    pub redis_timeout: Duration,
    /// CA certificates (PEM) a `rediss://` server is checked against,
    /// instead of the public web roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Where `GET /metrics` is served (`None`: nowhere).
    pub metrics_listen: Option<SocketAddr>,
    /// Where the admin API listens (`None`: off); needs `admin_key`.
    pub admin_listen: Option<SocketAddr>,
    /// The public key whose proofs (purpose `admin`) the admin API accepts.
    pub admin_key: Option<VerifyingKey>,
    /// Where revocations are kept across restarts when there is no Redis.
    pub revocations_file: Option<PathBuf>,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// The serving model (`--runtime`): with `PerCore` the listener is bound
    /// with `SO_REUSEPORT` so each core's runtime can add its own.
    pub serving: Serving,
    /// The source of `now`.
    pub clock: Clock,
}

/// The configured upstream: scheme, authority and optional base path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port as written.
    pub authority: Authority,
    /// Path prefix without a trailing `/` (empty for api.github.com).
    pub base_path: String,
    /// The `Host` header sent upstream: the port only when not the scheme's default.
    pub host: HeaderValue,
}

impl Upstream {
    /// Parses and checks an upstream base URL such as `https://api.github.com`
    /// or `https://ghe.example.com/api/v3/`.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::UpstreamUrl(url.to_owned(), why.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad("scheme must be http or https"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("scheme must be http or https"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not allowed"));
        }
        if authority.host().is_empty() {
            return Err(bad("missing host"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed"));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => authority.as_str().to_owned(),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|_| bad("invalid host"))?;
        Ok(Upstream {
            scheme,
            authority,
            base_path,
            host,
        })
    }
}

impl Upstream {
    /// `scheme://authority/base-path`, without a trailing `/`.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// A configuration problem; the message is shown to the user as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No master key was given.
    #[error(
        "master public key required: set --master-key or SIGNET_MASTER_PUBLIC_KEY, or --keys-file"
    )]
    MasterKeyMissing,
    /// A master key is not valid hex, not 32 bytes, or not a point.
    #[error("{0}")]
    MasterKey(#[from] signet_core::KeyError),
    /// No GitHub token was given.
    #[error("github token required: set --github-token or GITHUB_TOKEN")]
    GitHubTokenMissing,
    /// The GitHub token cannot be sent in a header.
    #[error("invalid github token: it must be visible ASCII without spaces")]
    GitHubTokenInvalid,
    /// More than one upstream credential source, or an App without all its flags.
    #[error("{0}")]
    Credential(&'static str),
    /// The upstream URL is unusable.
    #[error("invalid --github-api URL {0:?}: {1}")]
    UpstreamUrl(String, String),
    /// The Redis URL is not `redis://` or `rediss://` (not echoed: it may hold a password).
    #[error("invalid --redis-url: use redis://[:password@]host[:port][/db] or rediss://… for TLS")]
    RedisUrl,
    /// A flag has a value that does not parse.
    #[error("invalid --{flag} {value:?}: {why}")]
    Flag {
        /// The flag's name.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What is wrong.
        why: String,
    },
}

impl Config {
    /// Most requests one client may have in flight to GitHub at once: the
    /// configured share, by default a quarter of `upstream_concurrency` (at
    /// least 1), and never more than `upstream_concurrency`.
    pub fn upstream_share(&self) -> usize {
        self.upstream_concurrency_per_client
            .unwrap_or(self.upstream_concurrency / 4)
            .clamp(1, self.upstream_concurrency.max(1))
    }

    /// The verification limits, shared by the verifier and the replay store.
    pub fn limits(&self) -> Limits {
        Limits {
            clock_skew: self.clock_skew,
            max_binding_ttl: self.max_binding_ttl,
        }
    }

    /// A configuration with the documented defaults, for one upstream, key
    /// and token. Tests and embedders start here and change fields.
    pub fn new(
        upstream: Upstream,
        master_keys: Vec<VerifyingKey>,
        github_token: GitHubToken,
    ) -> Self {
        Self::with_credential(upstream, master_keys, CredentialSource::Token(github_token))
    }

    /// The same, with any credential source (a token file, a GitHub App).
    pub fn with_credential(
        upstream: Upstream,
        master_keys: Vec<VerifyingKey>,
        credential: CredentialSource,
    ) -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            upstream,
            master_keys,
            keys_file: None,
            credential,
            log_level: tracing::Level::INFO,
            health_path: "/healthz".to_owned(),
            read_timeout: Some(Duration::from_secs(30)),
            write_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(120)),
            clock_skew: 30,
            max_binding_ttl: 900,
            max_body_size: 1024 * 1024,
            body_buffer_budget: 32 * 1024 * 1024,
            max_connections: 1024,
            refusal_log_limit: DEFAULT_REFUSAL_LOG_LIMIT,
            upstream_timeout: Duration::from_secs(30),
            upstream_concurrency: 100,
            upstream_concurrency_per_client: None,
            cache_size: 64 * 1024 * 1024,
            allowed_purposes: Vec::new(),
            public_url: None,
            upstream_ca_file: None,
            replay_capacity: 1_000_000,
            redis_url: None,
            redis_timeout: Duration::from_millis(500),
            redis_ca_file: None,
            metrics_listen: None,
            admin_listen: None,
            admin_key: None,
            revocations_file: None,
            shutdown_timeout: Duration::from_secs(30),
            serving: Serving::default(),
            clock: Clock::System,
        }
    }

    /// Validates flags and environment into a configuration.
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let keys = args
            .master_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if keys.is_none() && args.keys_file.is_none() {
            return Err(ConfigError::MasterKeyMissing);
        }
        let master_keys = keys
            .map(|keys| {
                keys.split(',')
                    .map(|k| parse_public_key_hex(k.trim()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let credential = credential_source(args)?;
        let upstream = Upstream::parse(&args.github_api)?;

        let mut config = Config::with_credential(upstream, master_keys, credential);
        config.keys_file = args.keys_file.clone();
        config.listen = listen_addr(&args.listen, args.port)?;
        config.log_level = args.log_level.parse().map_err(|_| {
            flag_error(
                "log-level",
                &args.log_level,
                "use debug, info, warn or error",
            )
        })?;
        if !args.health_path.starts_with('/') {
            return Err(flag_error(
                "health-path",
                &args.health_path,
                "must start with /",
            ));
        }
        config.health_path = args.health_path.clone();
        config.read_timeout = optional(parse_duration("read-timeout", &args.read_timeout)?);
        config.write_timeout = optional(parse_duration("write-timeout", &args.write_timeout)?);
        config.idle_timeout = optional(parse_duration("idle-timeout", &args.idle_timeout)?);
        config.clock_skew = parse_duration("clock-skew", &args.clock_skew)?.as_secs();
        config.max_binding_ttl =
            parse_duration("max-binding-ttl", &args.max_binding_ttl)?.as_secs();
        config.max_body_size = parse_size("max-body-size", &args.max_body_size)?;
        config.body_buffer_budget = parse_size("body-buffer-budget", &args.body_buffer_budget)?;
        if config.body_buffer_budget < config.max_body_size {
            return Err(flag_error(
                "body-buffer-budget",
                &args.body_buffer_budget,
                "must be at least --max-body-size, or no body of the largest allowed size could be read",
            ));
        }
        if args.max_connections == 0 {
            return Err(flag_error("max-connections", "0", "must be at least 1"));
        }
        config.max_connections = args.max_connections;
        config.refusal_log_limit = args.refusal_log_limit;
        if args.upstream_concurrency == 0 {
            return Err(flag_error(
                "upstream-concurrency",
                "0",
                "must be at least 1",
            ));
        }
        config.upstream_concurrency = args.upstream_concurrency;
        if let Some(share) = args.upstream_concurrency_per_client {
            let why = if share == 0 {
                Some("must be at least 1")
            } else if share > args.upstream_concurrency {
                Some("must be at most --upstream-concurrency")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(flag_error(
                    "upstream-concurrency-per-client",
                    &share.to_string(),
                    why,
                ));
            }
        }
        config.upstream_concurrency_per_client = args.upstream_concurrency_per_client;
        config.cache_size = parse_size("cache-size", &args.cache_size)?;
        config.upstream_timeout = positive(
            "upstream-timeout",
            &args.upstream_timeout,
            parse_duration("upstream-timeout", &args.upstream_timeout)?,
        )?;
        config.shutdown_timeout = parse_duration("shutdown-timeout", &args.shutdown_timeout)?;
        config.serving = args.runtime;
        config.allowed_purposes = match &args.allowed_purposes {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    Purpose::new(p).map_err(|_| {
                        flag_error(
                            "allowed-purposes",
                            p,
                            "purposes use only A-Z a-z 0-9 . _ : / - (at most 64)",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        config.public_url = match &args.public_url {
            None => None,
            Some(url) => Some(Upstream::parse(url).map(|u| u.base_url()).map_err(|_| {
                flag_error(
                    "public-url",
                    url,
                    "use an http or https URL such as https://signet.internal",
                )
            })?),
        };
        config.upstream_ca_file = args.upstream_ca_file.clone();
        if args.replay_capacity == 0 {
            return Err(flag_error("replay-capacity", "0", "must be at least 1"));
        }
        config.replay_capacity = args.replay_capacity;
        config.redis_url = match args
            .redis_url
            .as_deref()
            .or(args.redis_url_fallback.as_deref())
        {
            None => None,
            Some(url) if url.trim().is_empty() => None,
            Some(url) => {
                let url = url.trim();
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(ConfigError::RedisUrl);
                }
                Some(RedisUrl::new(url))
            }
        };
        config.metrics_listen = side_listen("metrics-listen", args.metrics_listen.as_deref())?;
        config.admin_key = args
            .admin_key
            .as_deref()
            .map(|k| parse_public_key_hex(k.trim()))
            .transpose()
            .map_err(|e| flag_error("admin-key", "…", &e.to_string()))?;
        // The admin key administers; a client's key must not: whoever holds
        // a client key (every machine the client runs on) would also hold
        // the admin API. Keys-file clients are checked where they are loaded.
        if let Some(key) = config.admin_key {
            if config.master_keys.contains(&key) {
                return Err(flag_error(
                    "admin-key",
                    "…",
                    "is also a --master-key: the admin key must not be a client's key",
                ));
            }
        }
        config.admin_listen = side_listen("admin-listen", args.admin_listen.as_deref())?;
        if config.admin_listen.is_some() && config.admin_key.is_none() {
            return Err(flag_error(
                "admin-listen",
                args.admin_listen.as_deref().unwrap_or_default(),
                "needs --admin-key: the admin API is never open",
            ));
        }
        config.revocations_file = args.revocations_file.clone();
        config.redis_ca_file = args.redis_ca_file.clone();
        config.redis_timeout = positive(
            "redis-timeout",
            &args.redis_timeout,
            parse_duration("redis-timeout", &args.redis_timeout)?,
        )?;
        Ok(config)
    }
}

fn flag_error(flag: &'static str, value: &str, why: &str) -> ConfigError {
    ConfigError::Flag {
        flag,
        value: value.to_owned(),
        why: why.to_owned(),
    }
}

/// An IP address, or a host name resolved once at startup (`localhost`).
fn listen_addr(host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            flag_error(
                "listen",
                host,
                "not an IP address or a resolvable host name",
            )
        })
}

/// Exactly one of a token, a token file, or a GitHub App (all three flags).
fn credential_source(args: &Args) -> Result<CredentialSource, ConfigError> {
    let token = args
        .github_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let app = [
        args.github_app_id.is_some(),
        args.github_app_key.is_some(),
        args.github_installation_id.is_some(),
    ];
    let sources = usize::from(token.is_some())
        + usize::from(args.github_token_file.is_some())
        + usize::from(app.iter().any(|set| *set));
    if sources > 1 {
        return Err(ConfigError::Credential(
            "choose one GitHub credential: --github-token, --github-token-file, or the --github-app-* flags",
        ));
    }
    if let Some(token) = token {
        return GitHubToken::new(token)
            .map(CredentialSource::Token)
            .ok_or(ConfigError::GitHubTokenInvalid);
    }
    if let Some(path) = &args.github_token_file {
        return Ok(CredentialSource::TokenFile(path.clone()));
    }
    match (&args.github_app_id, &args.github_app_key, &args.github_installation_id) {
        (Some(app_id), Some(key_file), Some(installation_id)) => {
            Ok(CredentialSource::App(AppCredential {
                app_id: *app_id,
                key_file: key_file.clone(),
                installation_id: *installation_id,
            }))
        }
        (None, None, None) => Err(ConfigError::GitHubTokenMissing),
        _ => Err(ConfigError::Credential(
            "a GitHub App needs all of --github-app-id, --github-app-key and --github-installation-id",
        )),
    }
}

/// `HOST:PORT` of a side listener (admin, metrics), resolved once.
fn side_listen(flag: &'static str, addr: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(Some)
        .ok_or_else(|| flag_error(flag, addr, "use HOST:PORT, e.g. 127.0.0.1:9091"))
}

fn optional(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

fn positive(flag: &'static str, text: &str, duration: Duration) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        Err(flag_error(flag, text, "must be more than 0"))
    } else {
        Ok(duration)
    }
}

/// Parses a Go-style duration: `30s`, `2m`, `1h30m`, `500ms`; `0` is zero.
pub fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .map_err(|_| flag_error(flag, text, "use a duration such as 30s, 2m or 1h30m"))
}

/// Parses a size: plain bytes, or a `KiB`/`MiB`/`GiB` (also `K`/`M`/`G`) suffix.
pub fn parse_size(flag: &'static str, text: &str) -> Result<u64, ConfigError> {
    signet_http::size::parse(text).ok_or_else(|| flag_error(flag, text, signet_http::size::HINT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["signet-proxy"];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    fn error(extra: &[&str]) -> String {
        match Config::from_args(&args(extra)) {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn startup_errors_use_the_original_messages() {
        // These run without touching the process environment: the flags are given.
        assert_eq!(
            error(&["--github-token", "t", "--master-key", ""]),
            "master public key required: set --master-key or SIGNET_MASTER_PUBLIC_KEY, or --keys-file"
        );
        assert_eq!(
            error(&["--github-token", "t", "--master-key", "a1b2c3"]),
            "invalid master key length: got 3 bytes, expected 32"
        );
        assert!(error(&["--github-token", "t", "--master-key", "zz"])
            .starts_with("invalid master key hex: "));
        assert_eq!(
            error(&["--master-key", KEY, "--github-token", " "]),
            "github token required: set --github-token or GITHUB_TOKEN"
        );
        assert!(error(&[
            "--master-key",
            KEY,
            "--github-token",
            "t",
            "--github-api",
            "ftp://x"
        ])
        .contains("scheme must be http or https"));
    }

    #[test]
    fn a_debug_print_of_the_config_never_shows_the_token() {
        let config = Config::from_args(&args(&[
            "--master-key",
            KEY,
            "--github-token",
            "ghs_topsecret123",
        ]));
        let printed = format!("{config:?}");
        assert!(printed.contains("GitHubToken([redacted])"), "{printed}");
        assert!(!printed.contains("topsecret"), "{printed}");
    }

    #[test]
    fn listen_takes_an_ip_or_a_host_name() {
        assert_eq!(
            listen_addr("127.0.0.1", 9).ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 9)))
        );
        assert_eq!(listen_addr("::", 9).map(|a| a.port()).ok(), Some(9));
        assert!(listen_addr("localhost", 9).is_ok_and(|a| a.ip().is_loopback()));
        assert!(listen_addr("no such host.invalid", 9).is_err());
    }

    #[test]
    fn an_admin_key_that_is_also_a_master_key_is_refused() {
        assert_eq!(
            error(&["--github-token", "t", "--master-key", KEY, "--admin-key", KEY]),
            "invalid --admin-key \"…\": is also a --master-key: the admin key must not be a client's key"
        );
    }

    #[test]
    fn several_master_keys_are_trusted() {
        let two = format!("{KEY},{}", KEY.to_uppercase());
        let config = Config::from_args(&args(&["--master-key", &two, "--github-token", "t"]));
        assert_eq!(config.map(|c| c.master_keys.len()).ok(), Some(2));
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        let Ok(config) = Config::from_args(&args(&["--master-key", KEY, "--github-token", "t"]))
        else {
            panic!("defaults must be valid");
        };
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert_eq!(config.upstream.authority.as_str(), "api.github.com");
        assert_eq!(config.read_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(config.max_binding_ttl, 900);
        assert_eq!(config.clock_skew, 30);
        assert_eq!(config.max_body_size, 1 << 20);
        assert_eq!(config.health_path, "/healthz");
        assert_eq!(config.max_connections, 1024);
        assert_eq!(config.body_buffer_budget, 32 << 20);
    }

    #[test]
    fn a_redis_url_is_checked_never_echoed_and_redis_url_is_the_fallback() {
        let base = ["--master-key", KEY, "--github-token", "t"];
        let with = |extra: &[&str]| Config::from_args(&args(&[&base[..], extra].concat()));
        let refused = with(&["--redis-url", "http://:pw123@x"])
            .err()
            .map(|e| e.to_string());
        assert!(refused
            .as_deref()
            .is_some_and(|e| e.contains("--redis-url") && !e.contains("pw123")));
        let config = with(&["--redis-url", "redis://:pw123@redis:6379/1"]).ok();
        let url = config.as_ref().and_then(|c| c.redis_url.as_ref());
        assert_eq!(
            url.map(ToString::to_string).as_deref(),
            Some("redis://redis:6379")
        );
        assert!(!format!("{config:?}").contains("pw123"));
        // `REDIS_URL` arrives through a hidden flag, below `--redis-url`.
        let fallback = with(&["--redis-url-from-env", "rediss://r"]).ok();
        assert!(fallback.is_some_and(|c| c.redis_url.is_some()));
        let both = with(&[
            "--redis-url",
            "redis://a",
            "--redis-url-from-env",
            "redis://b",
        ])
        .ok();
        let chosen = both.and_then(|c| c.redis_url).map(|u| u.to_string());
        assert_eq!(chosen.as_deref(), Some("redis://a"));
    }

    #[test]
    fn exactly_one_github_credential_source_is_configured() {
        let with = |extra: &[&str]| {
            let base = ["--master-key", KEY];
            Config::from_args(&args(&[&base[..], extra].concat()))
        };
        let both = with(&["--github-token", "t", "--github-token-file", "/run/token"]);
        assert!(both
            .err()
            .is_some_and(|e| e.to_string().starts_with("choose one GitHub credential")));
        let partial = with(&["--github-app-id", "1", "--github-installation-id", "2"]);
        assert!(partial
            .err()
            .is_some_and(|e| e.to_string().contains("--github-app-key")));
        let app = with(&[
            "--github-app-id",
            "1",
            "--github-app-key",
            "/k.pem",
            "--github-installation-id",
            "2",
        ]);
        assert!(matches!(
            app.map(|c| c.credential),
            Ok(CredentialSource::App(_))
        ));
        let file = with(&["--github-token-file", "/run/token"]);
        assert!(matches!(
            file.map(|c| c.credential),
            Ok(CredentialSource::TokenFile(_))
        ));
        assert_eq!(
            with(&["--github-token", " "])
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("github token required: set --github-token or GITHUB_TOKEN")
        );
    }

    #[test]
    fn a_clients_upstream_share_defaults_to_a_quarter_and_stays_within_the_whole() {
        let base = ["--master-key", KEY, "--github-token", "t"];
        let share = |extra: &[&str]| {
            Config::from_args(&args(&[&base[..], extra].concat())).map(|c| c.upstream_share())
        };
        assert_eq!(share(&[]).ok(), Some(25));
        assert_eq!(share(&["--upstream-concurrency", "10"]).ok(), Some(2));
        assert_eq!(share(&["--upstream-concurrency", "3"]).ok(), Some(1));
        assert_eq!(
            share(&["--upstream-concurrency-per-client", "100"]).ok(),
            Some(100)
        );
        let with = |extra: &[&str]| error(&[&base[..], extra].concat());
        assert_eq!(
            with(&["--upstream-concurrency-per-client", "0"]),
            r#"invalid --upstream-concurrency-per-client "0": must be at least 1"#
        );
        assert_eq!(
            with(&[
                "--upstream-concurrency",
                "8",
                "--upstream-concurrency-per-client",
                "9"
            ]),
            r#"invalid --upstream-concurrency-per-client "9": must be at most --upstream-concurrency"#
        );
    }

    #[test]
    fn resource_limits_must_leave_room_for_one_request() {
        let base = ["--master-key", KEY, "--github-token", "t"];
        let with = |extra: &[&str]| error(&[&base[..], extra].concat());
        assert!(with(&["--max-connections", "0"]).contains("--max-connections"));
        assert!(with(&["--body-buffer-budget", "512KiB"]).contains("at least --max-body-size"));
        assert_eq!(with(&["--body-buffer-budget", "1MiB"]), "accepted");
    }

    #[test]
    fn upstream_base_path_drops_its_trailing_slash() {
        let up = Upstream::parse("https://ghe.example.com/api/v3/").ok();
        assert_eq!(up.as_ref().map(|u| u.base_path.as_str()), Some("/api/v3"));
        assert_eq!(
            up.map(|u| u.host),
            Some(HeaderValue::from_static("ghe.example.com"))
        );
        let up = Upstream::parse("http://127.0.0.1:9000").ok();
        assert_eq!(up.as_ref().map(|u| u.base_path.as_str()), Some(""));
        assert_eq!(
            up.map(|u| u.host),
            Some(HeaderValue::from_static("127.0.0.1:9000"))
        );
        let up = Upstream::parse("https://ghe.example.com:443").ok();
        assert_eq!(
            up.map(|u| u.host),
            Some(HeaderValue::from_static("ghe.example.com"))
        );
        assert!(Upstream::parse("https://user:pw@example.com").is_err());
        assert!(Upstream::parse("/relative").is_err());
    }

    #[test]
    fn durations_and_sizes_parse_like_the_docs_say() {
        assert_eq!(
            parse_duration("x", "1h30m").ok(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("x", "500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_duration("x", "0").ok(), Some(Duration::ZERO));
        assert!(parse_duration("x", "soon").is_err());
        assert_eq!(parse_size("x", "1MiB").ok(), Some(1 << 20));
        assert_eq!(parse_size("x", "512k").ok(), Some(512 << 10));
        assert_eq!(parse_size("x", "1000").ok(), Some(1000));
        assert!(parse_size("x", "lots").is_err());
        assert!(parse_size("x", "99999999999999999999G").is_err());
    }
}
