//! The quota guard: the shared token's GitHub rate limits, tracked from
//! every response, so clients are answered locally instead of hammering
//! GitHub once the quota is gone (which gets a token flagged).
//!
//! * **Primary limits**, per resource (`X-RateLimit-Resource`: `core`,
//!   `search`, `graphql`, …): once `X-RateLimit-Remaining` is 0, requests
//!   for that resource are 429 `UPSTREAM_QUOTA_EXHAUSTED` with `Retry-After`
//!   until `X-RateLimit-Reset`. A request's resource is `search` for
//!   `/search/…`, `graphql` for `/graphql`, otherwise `core`.
//! * **Secondary limits**: a 403 or 429 with `Retry-After` holds back every
//!   resource with 429 `UPSTREAM_SECONDARY_LIMIT` until it has passed.
//!
//! Each process learns the state from its own responses. With Redis, the
//! replicas share it: every second each one publishes the holds it knows
//! (`signet:quota:{core,search,graphql,secondary}`, the reset time as value,
//! expiring with it) and takes in the others', so a quota one replica saw
//! run out is guarded by all within about a second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use redis::aio::ConnectionManager;
use signet_core::ErrorCode;

use crate::clock::Clock;
use crate::refusal::Refusal;

/// The resources [`QuotaGuard::check`] can hold back, as they are shared.
const SHARED: [&str; 4] = ["core", "search", "graphql", SECONDARY];

/// The shared name of the secondary-limit hold.
const SECONDARY: &str = "secondary";

/// What the guard knows about the shared token's quota.
#[derive(Default)]
pub struct QuotaGuard {
    state: Mutex<State>,
    /// Redis, to share holds with the other replicas.
    shared: Option<(ConnectionManager, Duration)>,
}

impl std::fmt::Debug for QuotaGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaGuard")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Resource → unix second at which its exhausted quota resets.
    exhausted_until: HashMap<String, u64>,
    /// Unix second until which every request is held back.
    secondary_until: u64,
}

impl State {
    /// Until when `resource` (or [`SECONDARY`]) is held back.
    fn until(&self, resource: &str) -> u64 {
        if resource == SECONDARY {
            self.secondary_until
        } else {
            self.exhausted_until.get(resource).copied().unwrap_or(0)
        }
    }

    /// Holds `resource` (or [`SECONDARY`]) back until `until`.
    fn hold(&mut self, resource: &str, until: u64) {
        if resource == SECONDARY {
            self.secondary_until = until;
        } else {
            self.exhausted_until.insert(resource.to_owned(), until);
        }
    }
}

/// The GitHub rate-limit resource a request target counts against.
pub fn resource_of(target: &str) -> &'static str {
    let path = target.split('?').next().unwrap_or_default();
    if path == "/search" || path.starts_with("/search/") {
        "search"
    } else if path == "/graphql" {
        "graphql"
    } else {
        "core"
    }
}

impl QuotaGuard {
    /// A guard whose holds are shared with every replica through Redis.
    pub fn shared(connection: ConnectionManager, timeout: Duration) -> Self {
        QuotaGuard {
            state: Mutex::default(),
            shared: Some((connection, timeout)),
        }
    }

    /// With Redis: every second, publishes the holds this replica knows and
    /// takes in the others'. Runs until the task is dropped; a Redis failure
    /// only delays sharing (each replica still guards by its own responses).
    pub async fn sync(self: std::sync::Arc<Self>, clock: Clock) {
        let Some((connection, timeout)) = &self.shared else {
            return;
        };
        let keys: Vec<String> = SHARED.iter().map(|r| format!("signet:quota:{r}")).collect();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut connection = connection.clone();
            let read = tokio::time::timeout(
                *timeout,
                redis::cmd("MGET")
                    .arg(&keys)
                    .query_async::<Vec<Option<u64>>>(&mut connection),
            )
            .await;
            let remote = match read {
                Ok(Ok(values)) => values,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "cannot read the shared quota state");
                    continue;
                }
                Err(_) => continue,
            };
            let now = clock.now();
            let mut publish = redis::pipe();
            let mut any = false;
            if let Ok(mut state) = self.state.lock() {
                for ((resource, key), remote) in SHARED.iter().zip(&keys).zip(remote) {
                    let local = state.until(resource);
                    let remote = remote.unwrap_or(0);
                    if remote > local && remote > now {
                        state.hold(resource, remote);
                    } else if local > remote && local > now {
                        publish
                            .cmd("SET")
                            .arg(key)
                            .arg(local)
                            .arg("PX")
                            .arg((local - now).saturating_mul(1000))
                            .ignore();
                        any = true;
                    }
                }
            }
            if any {
                let written =
                    tokio::time::timeout(*timeout, publish.query_async::<()>(&mut connection))
                        .await;
                if !matches!(written, Ok(Ok(()))) {
                    tracing::debug!("cannot publish the shared quota state");
                }
            }
        }
    }

    /// Refuses locally when the target's resource (or everything) is held back at `now`.
    pub fn check(&self, target: &str, now: u64) -> Result<(), Refusal> {
        let Ok(state) = self.state.lock() else {
            return Ok(());
        };
        if state.secondary_until > now {
            return Err(Refusal::new(ErrorCode::UpstreamSecondaryLimit)
                .retry_after(state.secondary_until - now)
                .with_detail("GitHub's secondary rate limit is in force"));
        }
        let resource = resource_of(target);
        match state.exhausted_until.get(resource) {
            Some(&until) if until > now => Err(Refusal::new(ErrorCode::UpstreamQuotaExhausted)
                .retry_after(until - now)
                .with_detail(format!("the shared token's {resource} quota is exhausted"))),
            _ => Ok(()),
        }
    }

    /// Learns from one upstream response to a request for `target`.
    pub fn observe(&self, target: &str, status: StatusCode, headers: &HeaderMap, now: u64) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let resource = headers
            .get("x-ratelimit-resource")
            .and_then(|v| v.to_str().ok())
            .filter(|r| r.len() <= 32 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or_else(|| resource_of(target));
        match (number("x-ratelimit-remaining"), number("x-ratelimit-reset")) {
            (Some(0), Some(reset)) if reset > now => {
                if state.exhausted_until.get(resource) != Some(&reset) {
                    tracing::warn!(
                        resource,
                        retry_after = reset - now,
                        "the shared token's quota is exhausted: answering locally until it resets"
                    );
                }
                state.exhausted_until.insert(resource.to_owned(), reset);
            }
            (Some(remaining), _) if remaining > 0 => {
                state.exhausted_until.remove(resource);
            }
            _ => {}
        }
        let limited = status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
        if let (true, Some(wait)) = (limited, number("retry-after")) {
            let until = now.saturating_add(wait.max(1));
            if until > state.secondary_until {
                tracing::warn!(
                    retry_after = wait,
                    "GitHub's secondary rate limit: holding back every request"
                );
                state.secondary_until = until;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn resources_follow_githubs_names() {
        assert_eq!(resource_of("/search/issues?q=x"), "search");
        assert_eq!(resource_of("/graphql"), "graphql");
        assert_eq!(resource_of("/repos/o/r"), "core");
        assert_eq!(resource_of("/searching"), "core");
    }

    #[test]
    fn an_exhausted_resource_is_held_back_until_its_reset_and_others_are_not() {
        let guard = QuotaGuard::default();
        let exhausted = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1060"),
            ("x-ratelimit-resource", "core"),
        ]);
        guard.observe("/user", StatusCode::OK, &exhausted, 1000);
        let refused = guard.check("/repos/o/r", 1000).err();
        assert_eq!(
            refused.as_ref().map(|r| r.code),
            Some(ErrorCode::UpstreamQuotaExhausted)
        );
        assert_eq!(refused.and_then(|r| r.retry_after), Some(60));
        assert!(guard.check("/search/code", 1000).is_ok());
        assert!(guard.check("/user", 1060).is_ok(), "reset");
    }

    #[test]
    fn a_secondary_limit_holds_back_every_resource() {
        let guard = QuotaGuard::default();
        guard.observe(
            "/user",
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "30")]),
            1000,
        );
        let refused = guard.check("/search/code", 1010).err();
        assert_eq!(
            refused.as_ref().map(|r| r.code),
            Some(ErrorCode::UpstreamSecondaryLimit)
        );
        assert_eq!(refused.and_then(|r| r.retry_after), Some(20));
        assert!(guard.check("/user", 1030).is_ok());
    }
}
