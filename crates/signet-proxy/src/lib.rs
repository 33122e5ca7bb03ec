//! # signet-proxy
//!
//! A reverse proxy for the GitHub API. Clients prove who they are with a
//! Signet proof (spec: `docs/PROTOCOL.md`); the proxy verifies it offline
//! with nothing but the trusted master public keys, refuses replays and stale
//! requests, strips the proof, injects the one shared GitHub token and
//! streams the upstream's response back.
//!
//! Where things live: the folders follow the request's path
//! (`docs/ARCHITECTURE.md` draws it).
//!
//! | module | concern |
//! |---|---|
//! | [`app`] | the composition root: `wiring` (one path from a [`Config`] to the built proxy, for serving and `check-config`), the listener, runtimes, side listeners (admin API, `/metrics` and probes), the `demo` command; nothing imports it |
//! | `pipeline` | the request path, stage by stage (`process`), the per-request context and the request's record (its log line) |
//! | [`ingress`] | the client connection (generic over a handler) and its timeouts, the target and method checks, `/healthz` `/readyz` |
//! | [`auth`] | the one `authenticate` (steps 1–9 and 11 over a key source, for the proxy and the admin API), who is trusted (keys file), who is revoked, the replay store |
//! | `policy` | credential routes, purposes and path rules, per-client rate limits |
//! | `body` | request bodies in (bounded, timed; `RequestBody`), response bodies out (with the cache's `Tap` hook) |
//! | [`upstream`] | the injected credential and its scopes, each upstream as a value (base URL, credential rendering, slots), forwarding, the pooled client; `upstream::api`: the REST API's cache, quota guard and pagination links |
//! | `refusal` | every refusal → its JSON response, in one place |
//! | [`observe`] | the log writer and JSON format, the Prometheus registry, the cache outcome they record |
//! | [`config`] | flags and environment → a validated [`Config`]; the configuration values the stages act on |
//! | `grants` | what the keys file grants a client, parsed: allow rules, rate, GitHub scope |
//! | `method`, `secret`, `clock` | the one method table; the redacted token and Redis URL; `now` |
//!
//! No import cycle between these modules (`tests/layout` checks it); the
//! leaves come first: `clock`, `secret`, `method`, `grants`, `config`,
//! `refusal`, `body`, `auth`, `observe`, `ingress`, `policy`, `upstream`,
//! `pipeline`, `app`.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub(crate) mod body;
pub(crate) mod clock;
pub mod config;
pub(crate) mod grants;
pub mod ingress;
pub(crate) mod method;
pub mod observe;
pub(crate) mod pipeline;
pub(crate) mod policy;
pub(crate) mod refusal;
pub(crate) mod secret;
pub mod upstream;

pub use app::server::{shutdown_signal, Server, StartError};
pub use app::{check_config, run, run_on};
pub use auth::replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
pub use clock::Clock;
pub use config::cli::Args;
pub use config::{Config, ConfigError, Upstream};
pub use pipeline::Proxy;
pub use secret::GitHubToken;
pub use secret::RedisUrl;
