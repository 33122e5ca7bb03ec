//! The admin API, on its own listener (`--admin-listen`, off unless set):
//! list clients, revoke and unrevoke, reload the keys file, stats.
//!
//! It is never open: every request carries a Signet proof made with the
//! admin key (`--admin-key`) and bound to purpose `admin`, checked exactly
//! like a proxied request (target form, method, strict parsing, revoked
//! ephemeral keys, freshness, both signatures, replay). The replay records
//! are the proxy's own store, so with Redis an admin proof is taken once
//! across every replica. Refusals have the spec's status and JSON shape.
//!
//! | request | does |
//! |---|---|
//! | `GET /clients` | every trusted client: name, key id, policy, whether revoked |
//! | `POST /revoke` | `{"client": NAME}` or `{"ephemeral_key": "<b64url>", "until": EXP}` |
//! | `POST /unrevoke` | the same bodies, lifted |
//! | `POST /reload` | re-reads the keys file now |
//! | `GET /stats` | clients, revocations, replay store, dropped log lines |

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use signet_core::{ErrorCode, VerifyingKey};
use tokio::net::TcpListener;

use crate::auth::authenticate::{self as auth, AdminKey, Authenticated, Authenticator, BodyLimits};
use crate::auth::clients::Clients;
use crate::auth::revocation::{Revocation, Revocations};
use crate::body::{BodyBudget, ProxyBody};
use crate::clock::Clock;
use crate::config::Config;
use crate::ingress::connection::Timeouts;
use crate::ingress::target;
use crate::observe::metrics::Metrics;
use crate::pipeline::Proxy;
use crate::refusal::Refusal;

/// The purpose every admin proof must be bound to.
pub const ADMIN_PURPOSE: &str = "admin";

/// Largest admin request body.
const MAX_BODY: u64 = 16 * 1024;

/// The admin API's state.
#[derive(Debug)]
pub struct Admin {
    /// The admin key, less revoked ephemeral keys.
    key: AdminKey,
    auth: Authenticator,
    /// The proxy, for its replay store.
    proxy: Arc<Proxy>,
    clock: Clock,
    clients: Arc<Clients>,
    revocations: Arc<Revocations>,
    metrics: Arc<Metrics>,
}

/// A revoke or unrevoke body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    client: Option<String>,
    ephemeral_key: Option<String>,
    until: Option<u64>,
}

impl Admin {
    /// The admin API for `key`, sharing `proxy`'s clients, revocations,
    /// replay store and metrics.
    pub fn new(
        config: &Config,
        key: VerifyingKey,
        proxy: Arc<Proxy>,
        clients: Arc<Clients>,
        revocations: Arc<Revocations>,
    ) -> Self {
        Admin {
            key: AdminKey::new(key, Arc::clone(&revocations)),
            auth: Authenticator::new(
                config.limits(),
                config.clock.clone(),
                BodyLimits {
                    max: MAX_BODY,
                    timeout: Some(Duration::from_secs(10)),
                    budget: BodyBudget::new(MAX_BODY * 16),
                },
            ),
            metrics: Arc::clone(proxy.metrics()),
            proxy,
            clock: config.clock.clone(),
            clients,
            revocations,
        }
    }

    /// Answers one admin request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let head = request.method() == Method::HEAD;
        let mut verified = false;
        match self.process(request, &mut verified).await {
            Ok((status, json)) => json_response(status, json.to_string()),
            Err(refusal) => {
                // As on the proxy's port: a refusal no verified admin proof
                // stands behind (or a replay, which anyone holding a copy
                // can send) costs its sender nothing, so its record goes
                // through the `--refusal-log-limit` limiter, which counts
                // what it holds back. The admin's own refusals always log.
                let accountable = verified && refusal.code != ErrorCode::ReplayDetected;
                if !accountable && !crate::observe::logging::admit_unauthenticated_refusal() {
                    return refusal.into_response(head).map(ProxyBody::from);
                }
                tracing::warn!(
                    code = refusal.code.as_str(),
                    detail = refusal.detail.as_deref().unwrap_or_default(),
                    "admin request refused"
                );
                refusal.into_response(head).map(ProxyBody::from)
            }
        }
    }

    /// Sets `verified` once the admin key's signatures verify.
    async fn process(
        &self,
        request: Request<Incoming>,
        verified_flag: &mut bool,
    ) -> Result<(StatusCode, serde_json::Value), Refusal> {
        let (parts, body) = request.into_parts();
        let target = target::origin_form(&parts.uri)?;
        target::allowed_method(&parts.method)?;
        // Steps 1–9 as on the proxy's port, with the admin key as the one
        // trusted key.
        let Authenticated {
            proof: verified,
            body,
            ..
        } = self
            .auth
            .verify(
                &self.key,
                &parts.method,
                target,
                &parts.headers,
                body,
                &mut (),
            )
            .await?;
        *verified_flag = true;
        if verified.purpose().as_str() != ADMIN_PURPOSE {
            return Err(Refusal::new(ErrorCode::PurposeMismatch)
                .with_detail("admin proofs are bound to purpose admin"));
        }
        // The proxy's store (Redis when configured): a proof taken by one
        // replica's admin API is a replay on every other one.
        auth::record(self.proxy.replay(), &verified).await?;

        let path = parts.uri.path();
        match (&parts.method, path) {
            (&Method::GET, "/clients") => Ok((StatusCode::OK, self.list_clients())),
            (&Method::GET, "/stats") => Ok((StatusCode::OK, self.stats())),
            (&Method::POST, "/reload") => {
                let reloaded = self.clients.reload();
                self.metrics.config_loaded(reloaded.is_ok());
                match reloaded {
                    Ok(count) => {
                        tracing::info!(clients = count, trigger = "admin", "keys file reloaded");
                        Ok((
                            StatusCode::OK,
                            serde_json::json!({ "reloaded": true, "clients": count }),
                        ))
                    }
                    Err(error) => Ok((
                        StatusCode::UNPROCESSABLE_ENTITY,
                        serde_json::json!({ "error": { "code": "INVALID_KEYS_FILE", "message": error.to_string() } }),
                    )),
                }
            }
            (&Method::POST, "/revoke") => self.change(&body.bytes, true).await,
            (&Method::POST, "/unrevoke") => self.change(&body.bytes, false).await,
            _ => Ok((
                StatusCode::NOT_FOUND,
                serde_json::json!({ "error": { "code": "NOT_FOUND", "message": "No such admin endpoint." } }),
            )),
        }
    }

    fn list_clients(&self) -> serde_json::Value {
        let revoked = self.revocations.snapshot();
        let set = self.clients.current();
        let mut clients: Vec<serde_json::Value> = set
            .iter()
            .map(|client| {
                serde_json::json!({
                    "name": client.name,
                    "key": signet_core::public_key_hex(&client.key),
                    "key_id": client.key_id,
                    "purposes": client.purposes.as_ref().map(|p| p.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>()),
                    "allow": client.allow.as_ref().map(|rules| rules.iter().map(ToString::to_string).collect::<Vec<_>>()),
                    "rate": client.rate.map(|r| r.to_string()),
                    "revoked": revoked.clients.contains(&client.name),
                })
            })
            .collect();
        clients.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        serde_json::json!({ "clients": clients })
    }

    fn stats(&self) -> serde_json::Value {
        let revoked = self.revocations.snapshot();
        serde_json::json!({
            "clients": self.clients.current().len(),
            "revoked_clients": revoked.clients.len(),
            "revoked_ephemeral_keys": revoked.ephemeral_keys.len(),
            "revocations_shared": self.revocations.is_shared(),
            "replay_store": self.proxy.replay().kind(),
            "log_lines_dropped": crate::observe::logging::dropped_lines(),
        })
    }

    async fn change(
        &self,
        body: &Bytes,
        revoke: bool,
    ) -> Result<(StatusCode, serde_json::Value), Refusal> {
        let invalid = |why: &str| {
            Ok((
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": { "code": "INVALID_REQUEST", "message": why } }),
            ))
        };
        let Ok(change) = serde_json::from_slice::<Change>(body) else {
            return invalid(
                r#"Send {"client": NAME} or {"ephemeral_key": "<b64url>", "until": EXP}."#,
            );
        };
        let revocation = match change {
            Change {
                client: Some(name),
                ephemeral_key: None,
                until: None,
            } => Revocation::Client(name),
            Change {
                client: None,
                ephemeral_key: Some(key),
                until,
            } => {
                if signet_core::base64url::decode_array::<32>(&key).is_none() {
                    return invalid(
                        "ephemeral_key must be the base64url of 32 bytes, as in a proof's ek.",
                    );
                }
                // Without `until`, for as long as any binding could live.
                let until = until.unwrap_or_else(|| self.clock.now().saturating_add(24 * 3600));
                Revocation::EphemeralKey { key, until }
            }
            _ => return invalid(r#"Send exactly one of "client" or "ephemeral_key"."#),
        };
        self.revocations
            .apply(&revocation, revoke)
            .await
            .map_err(|e| {
                Refusal::new(ErrorCode::ReplayStoreUnavailable).with_detail(e.to_string())
            })?;
        let what = match &revocation {
            Revocation::Client(name) => serde_json::json!({ "client": name }),
            Revocation::EphemeralKey { key, until } => {
                serde_json::json!({ "ephemeral_key": key, "until": until })
            }
        };
        tracing::warn!(%what, revoked = revoke, "revocation changed by the admin API");
        Ok((
            StatusCode::OK,
            serde_json::json!({ "revoked": revoke, "target": what }),
        ))
    }
}

fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Serves the admin API on `listener` until the task is dropped, its
/// connections held to `timeouts` as [`crate::app::side`] caps them.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, timeouts: Timeouts) {
    crate::app::side::serve(listener, timeouts, move |request| {
        let admin = Arc::clone(&admin);
        async move { admin.handle(request).await }
    })
    .await;
}
