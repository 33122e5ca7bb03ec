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
//! | [`app`] | the composition root: builds everything from a [`Config`], the listener, runtimes, side listeners (admin API, metrics), the `demo` command; nothing imports it |
//! | `pipeline` | the request path, stage by stage |
//! | [`ingress`] | the client connection and its timeouts, the target and method checks, `/healthz` `/readyz` |
//! | [`auth`] | who is trusted (keys file), who is revoked, the replay store |
//! | `policy` | purposes and path rules, per-client rate limits |
//! | `body` | request bodies in (bounded, timed), response bodies out |
//! | [`upstream`] | the injected credential and its scopes, forwarding, the pooled client; `upstream::api`: the REST API's cache, quota guard and pagination links |
//! | `refusal` | every refusal → its JSON response, in one place |
//! | [`observe`] | the JSON log line and the Prometheus counters |
//! | [`config`] | flags and environment → a validated [`Config`] |
//! | `secret`, `clock` | the redacted token and Redis URL; `now` |
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
