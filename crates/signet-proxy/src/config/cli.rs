//! Command-line flags and environment variables (clap derive).
//!
//! These are raw strings and numbers as the user typed them; [`crate::config`]
//! validates them into a [`crate::Config`]. Flags beat environment variables.

use clap::{Parser, Subcommand};

use crate::config::Serving;

/// signet-proxy: a reverse proxy for the GitHub API that verifies Signet
/// proofs offline and injects one shared GitHub token.
// These doc comments are also the `--help` text, where URLs stay bare.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, Clone, Parser)]
#[command(name = "signet-proxy", version, about, long_about = None)]
pub struct Args {
    /// What to run instead of the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Port to listen on.
    #[arg(global = true, long, env = "SIGNET_PROXY_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on.
    #[arg(
        global = true,
        long,
        env = "SIGNET_PROXY_LISTEN",
        default_value = "0.0.0.0"
    )]
    pub listen: String,

    /// GitHub API base URL; may carry a path prefix (GitHub Enterprise: https://ghe.example.com/api/v3).
    #[arg(
        global = true,
        long,
        env = "SIGNET_GITHUB_API",
        default_value = "https://api.github.com"
    )]
    pub github_api: String,

    /// Trusted master public key(s): 64 hex characters each, comma-separated.
    #[arg(
        global = true,
        long,
        env = "SIGNET_MASTER_PUBLIC_KEY",
        hide_env_values = true
    )]
    pub master_key: Option<String>,

    /// Trusted-keys file (TOML): one named client per master key, with its purposes and
    /// allowed methods and paths; reloaded on SIGHUP and when it changes.
    #[arg(global = true, long, env = "SIGNET_KEYS_FILE")]
    pub keys_file: Option<std::path::PathBuf>,

    /// A file holding the shared GitHub token, re-read when it changes (secret mounts, rotators).
    #[arg(global = true, long, env = "GITHUB_TOKEN_FILE")]
    pub github_token_file: Option<std::path::PathBuf>,

    /// GitHub App id: the proxy mints installation tokens itself and rotates them.
    #[arg(global = true, long, env = "GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,

    /// GitHub App private key (PEM, PKCS#1 as GitHub issues it, or PKCS#8).
    #[arg(global = true, long, env = "GITHUB_APP_PRIVATE_KEY_FILE")]
    pub github_app_key: Option<std::path::PathBuf>,

    /// GitHub App installation id whose token is used.
    #[arg(global = true, long, env = "GITHUB_INSTALLATION_ID")]
    pub github_installation_id: Option<u64>,

    /// The shared GitHub token injected into forwarded requests.
    #[arg(global = true, long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,

    /// Log level: debug, info, warn, error.
    #[arg(global = true, long, env = "SIGNET_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Most log records per second of refusals no verified key stands behind (malformed or
    /// unknown proofs, bad signatures, stale times) and of replays; the rest are counted and
    /// reported once a second as "refusals not logged" (0 = log every one).
    #[arg(global = true, long, env = "SIGNET_REFUSAL_LOG_LIMIT", default_value_t = crate::config::DEFAULT_REFUSAL_LOG_LIMIT)]
    pub refusal_log_limit: u64,

    /// Health check endpoint (GET or HEAD, no proof needed).
    #[arg(global = true, long, default_value = "/healthz")]
    pub health_path: String,

    /// A request's headers must be complete this long after its first byte; its body gets as long again (0 = no limit).
    #[arg(global = true, long, default_value = "30s")]
    pub read_timeout: String,

    /// Longest a write to a client may stall before the connection is dropped (0 = none).
    #[arg(global = true, long, default_value = "30s")]
    pub write_timeout: String,

    /// A keep-alive connection waiting this long for its next request is closed (0 = never).
    #[arg(global = true, long, default_value = "120s")]
    pub idle_timeout: String,

    /// Largest allowed |ts - now| of a proof.
    #[arg(global = true, long, default_value = "30s")]
    pub clock_skew: String,

    /// Largest allowed remaining lifetime (exp - now) of a binding.
    #[arg(global = true, long, default_value = "15m")]
    pub max_binding_ttl: String,

    /// Largest request body, in bytes or with a KiB/MiB/GiB suffix.
    #[arg(global = true, long, default_value = "1MiB")]
    pub max_body_size: String,

    /// Most request-body bytes held in memory at once, over all requests (bodies are read
    /// before signatures can be checked); beyond it requests get 503 BODY_BUDGET_EXHAUSTED.
    #[arg(global = true, long, default_value = "32MiB")]
    pub body_buffer_budget: String,

    /// Bytes of GitHub responses kept for conditional requests (KiB/MiB/GiB suffix; 0 turns
    /// the cache off). A 304 to a revalidation costs no GitHub quota.
    #[arg(
        global = true,
        long,
        env = "SIGNET_CACHE_SIZE",
        default_value = "64MiB"
    )]
    pub cache_size: String,

    /// Most requests in flight to GitHub at once (its secondary limits); more wait up to
    /// --upstream-timeout for a slot, then get 503 UPSTREAM_BUSY.
    #[arg(global = true, long, default_value_t = 100)]
    pub upstream_concurrency: usize,

    /// Most requests one client may have in flight to GitHub at once (default: a quarter of
    /// --upstream-concurrency, at least 1); more wait up to --upstream-timeout for a slot of
    /// their own, then get 503 UPSTREAM_BUSY, so no client can take every slot.
    #[arg(global = true, long, env = "SIGNET_UPSTREAM_CONCURRENCY_PER_CLIENT")]
    pub upstream_concurrency_per_client: Option<usize>,

    /// Most client connections served at once; more are refused with 503 TOO_MANY_CONNECTIONS.
    #[arg(global = true, long, default_value_t = 1024)]
    pub max_connections: usize,

    /// Longest wait for the upstream's response headers (then 504), and longest an upstream
    /// response body may make no progress (then the response is cut short).
    #[arg(global = true, long, default_value = "30s")]
    pub upstream_timeout: String,

    /// Only accept proofs bound to one of these purposes (comma-separated; default: any).
    #[arg(global = true, long, env = "SIGNET_ALLOWED_PURPOSES")]
    pub allowed_purposes: Option<String>,

    /// The proxy's URL as clients reach it (e.g. https://signet.internal); when set,
    /// upstream URLs in Link and Location headers are rewritten to it, so pagination stays on the proxy.
    #[arg(global = true, long, env = "SIGNET_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Extra CA certificates (PEM) to trust for the upstream, besides the public web roots.
    #[arg(global = true, long, env = "SIGNET_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<std::path::PathBuf>,

    /// Most (ek, nonce) records the in-memory replay store holds; when full, requests are refused (503).
    #[arg(global = true, long, default_value_t = 1_000_000)]
    pub replay_capacity: usize,

    /// Redis for replay records shared by every replica and kept across restarts
    /// (redis://:PASSWORD@HOST:PORT/DB, rediss:// for TLS); default: in memory.
    #[arg(global = true, long, env = "SIGNET_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// `REDIS_URL`, used when `--redis-url`/`SIGNET_REDIS_URL` is not set.
    #[arg(
        global = true,
        long = "redis-url-from-env",
        env = "REDIS_URL",
        hide = true,
        hide_env_values = true
    )]
    pub redis_url_fallback: Option<String>,

    /// CA certificates (PEM) to check a rediss:// server against, instead of the public web roots.
    #[arg(global = true, long, env = "SIGNET_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Longest wait for one Redis command (connecting included); then the request gets 503.
    #[arg(global = true, long, default_value = "500ms")]
    pub redis_timeout: String,

    /// Serve Prometheus metrics at GET /metrics on this HOST:PORT (unauthenticated: bind it to a
    /// private address); default: off.
    #[arg(global = true, long, env = "SIGNET_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Serve the admin API (list clients, revoke, reload, stats) on this HOST:PORT, e.g.
    /// 127.0.0.1:9091; needs --admin-key. Default: off.
    #[arg(global = true, long, env = "SIGNET_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,

    /// Public key (64 hex) whose proofs, bound to purpose `admin`, the admin API accepts.
    #[arg(global = true, long, env = "SIGNET_ADMIN_KEY")]
    pub admin_key: Option<String>,

    /// Keep revocations in this JSON file across restarts (without Redis; with Redis they live there).
    #[arg(global = true, long, env = "SIGNET_REVOCATIONS_FILE")]
    pub revocations_file: Option<std::path::PathBuf>,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(global = true, long, default_value = "30s")]
    pub shutdown_timeout: String,

    /// Serving model: `multi-thread` (one work-stealing runtime) or `per-core` (one
    /// single-threaded runtime per core, each with its own SO_REUSEPORT listener).
    #[arg(global = true, long, env = "SIGNET_RUNTIME", value_enum, default_value_t = Serving::MultiThread)]
    pub runtime: Serving,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the whole product path on loopback against a built-in GitHub API
    /// stand-in, with a throwaway key: a signed request, a replay, an unsigned
    /// request. Exits 0 when each behaves as the spec says.
    #[cfg(feature = "demo")]
    Demo {
        /// Afterwards, keep the proxy and the stand-in running with the key in
        /// a temporary directory, and print the `signet curl` / `signet agent`
        /// commands to try, until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Validate the flags, environment and keys file as serving would, without
    /// binding a port; print what is wrong and exit 1, or a summary and exit 0.
    CheckConfig,
}
