//! The quota guard: the shared token's GitHub rate limits, tracked from
//! every response, so clients are answered locally instead of hammering
//! GitHub once the quota is gone (which gets a token flagged).
//!
//! * **Primary limits**, per resource (`X-RateLimit-Resource`: `core`,
//!   `search`, `code_search`, `graphql`, …): once `X-RateLimit-Remaining` is
//!   0, requests for that resource are 429 `UPSTREAM_QUOTA_EXHAUSTED` with
//!   `Retry-After` until `X-RateLimit-Reset`. A request's resource is the
//!   one GitHub charges it to ([`resource_of`]); for a resource that table
//!   does not know, the paths GitHub named it on are remembered.
//! * **Secondary limits**: a 403 or 429 with `Retry-After` holds back every
//!   resource with 429 `UPSTREAM_SECONDARY_LIMIT` until it has passed.
//!
//! GitHub's windows are at most an hour, so no hold lasts longer than
//! [`MAX_HOLD`] from when it was learned: a reset or `Retry-After` further
//! away is clamped and logged, never kept (one answer could otherwise hold
//! every client back for years, through Redis and across restarts). The
//! names and paths kept are bounded ([`MAX_RESOURCES`],
//! [`MAX_LEARNED_PATHS`]), whatever names an upstream sends.
//!
//! Each process learns the state from its own responses. With Redis, the
//! replicas share it: every second each one publishes the holds it knows
//! (`signet:quota:<resource>` and `signet:quota:secondary`, the reset time
//! as value, expiring with it) and takes in the others' (clamped the same
//! way), so a quota one replica saw run out is guarded by all within about
//! a second.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use redis::aio::ConnectionManager;
use signet_core::ErrorCode;

use crate::clock::Clock;
use crate::refusal::Refusal;

/// The longest hold one answer can set, in seconds: GitHub's rate-limit
/// windows are at most an hour, so a reset or `Retry-After` beyond it is a
/// fault (or an attack), and is clamped to it.
pub const MAX_HOLD: u64 = 3600;

/// Most resources held back at once. GitHub names about a dozen; an
/// upstream sending more (junk names) finds no room once this many live
/// holds are kept, and that answer is only logged.
pub const MAX_RESOURCES: usize = 64;

/// Most request paths remembered for a resource other than the one
/// [`resource_of`] reads them as; once full, no more are learned.
pub const MAX_LEARNED_PATHS: usize = 256;

/// Longest path remembered for such a resource.
const MAX_LEARNED_PATH_LEN: usize = 256;

/// Every resource [`resource_of`] returns: always shared through Redis.
const KNOWN: [&str; 12] = [
    "core",
    "search",
    "code_search",
    "graphql",
    "integration_manifest",
    "code_scanning_autofix",
    "actions_runner_registration",
    "scim",
    "dependency_snapshots",
    "dependency_sbom",
    "audit_log",
    "audit_log_streaming",
];

/// The shared name of the secondary-limit hold (never taken from a header).
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
    /// Resource → unix second at which its exhausted quota resets (at most
    /// [`MAX_RESOURCES`] entries).
    exhausted_until: HashMap<String, u64>,
    /// Unix second until which every request is held back.
    secondary_until: u64,
    /// Path → the resource GitHub named for it, where [`resource_of`] reads
    /// the path otherwise (at most [`MAX_LEARNED_PATHS`] entries).
    learned: HashMap<String, String>,
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

    /// Holds `resource` (or [`SECONDARY`]) back until `until`, which the
    /// caller has clamped; whether there was room for it.
    fn hold(&mut self, resource: &str, until: u64, now: u64) -> bool {
        if resource == SECONDARY {
            self.secondary_until = until;
            return true;
        }
        if !self.exhausted_until.contains_key(resource)
            && self.exhausted_until.len() >= MAX_RESOURCES
        {
            self.exhausted_until.retain(|_, until| *until > now);
            if self.exhausted_until.len() >= MAX_RESOURCES {
                return false;
            }
        }
        self.exhausted_until.insert(resource.to_owned(), until);
        true
    }

    /// The resource GitHub charges a request for `target` to.
    /// What GitHub last named for this path wins over the table, whatever
    /// the table reads it as: GitHub charges the request, not our table.
    fn resource_for<'a>(&'a self, target: &str) -> &'a str {
        if self.learned.is_empty() {
            return resource_of(target);
        }
        self.learned
            .get(path_of(target))
            .map_or_else(|| resource_of(target), String::as_str)
    }

    /// GitHub named `resource` for `target`: when the table reads the path
    /// otherwise (a resource it does not know, or a known one it maps
    /// elsewhere, like `code_search` for a path it reads as `core`),
    /// remember the path (bounded), so the hold applies to it; when the
    /// table agrees, forget what was remembered (GitHub's latest word wins).
    fn learn(&mut self, target: &str, resource: &str) {
        let path = path_of(target);
        if resource_of(target) == resource {
            if !self.learned.is_empty() {
                self.learned.remove(path);
            }
            return;
        }
        if path.len() > MAX_LEARNED_PATH_LEN
            || (self.learned.len() >= MAX_LEARNED_PATHS && !self.learned.contains_key(path))
        {
            return;
        }
        self.learned.insert(path.to_owned(), resource.to_owned());
    }

    /// Every name shared through Redis: the known resources, the secondary
    /// hold, and the others this replica holds or has learned paths for.
    fn shared_names(&self) -> Vec<String> {
        let mut names: BTreeSet<&str> = KNOWN.into_iter().collect();
        names.insert(SECONDARY);
        names.extend(self.exhausted_until.keys().map(String::as_str));
        names.extend(self.learned.values().map(String::as_str));
        names.into_iter().map(str::to_owned).collect()
    }
}

/// The path of a request-target (the query dropped).
fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or_default()
}

/// The GitHub rate-limit resource a request target counts against, by
/// GitHub's documentation (`GET /rate_limit`): `code_search` for
/// `/search/code`, `search` for the other searches, `graphql`, and the
/// resources of single routes (App manifests, code-scanning autofixes,
/// runner registration tokens, SCIM, dependency snapshots and SBOMs, the
/// audit log and its streams); `core` for everything else.
pub fn resource_of(target: &str) -> &'static str {
    let path = path_of(target);
    // Empty segments are skipped, as GitHub's router does: `/search/code/`
    // and `//search/code` are code search too.
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["search", "code"] => "code_search",
        ["search", ..] => "search",
        ["graphql"] => "graphql",
        ["app-manifests", _, "conversions"] => "integration_manifest",
        ["repos", _, _, "code-scanning", "alerts", _, "autofix", ..] => "code_scanning_autofix",
        ["repos", _, _, "actions", "runners", "registration-token"]
        | ["orgs" | "enterprises", _, "actions", "runners", "registration-token"] => {
            "actions_runner_registration"
        }
        ["scim", "v2", ..] => "scim",
        ["repos", _, _, "dependency-graph", "snapshots"] => "dependency_snapshots",
        ["repos", _, _, "dependency-graph", "sbom"] => "dependency_sbom",
        ["orgs" | "enterprises", _, "audit-log"] => "audit_log",
        ["enterprises", _, "audit-log", _, ..] => "audit_log_streaming",
        _ => "core",
    }
}

/// The resource GitHub named in `X-RateLimit-Resource`, if it is a plausible
/// name (at most 32 of `A-Z a-z 0-9 _`). The one reading of the header, for
/// the guard and the metrics.
pub fn resource_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-ratelimit-resource")
        .and_then(|v| v.to_str().ok())
        .filter(|r| {
            !r.is_empty()
                && r.len() <= 32
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// A header holding a count of seconds, or a unix second: all digits (a
/// number too large for 64 bits reads as the largest, so it is clamped
/// like any other far-off value rather than ignored).
fn seconds_header(headers: &HeaderMap, name: &str) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().unwrap_or(u64::MAX))
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
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let names = match self.state.lock() {
                Ok(state) => state.shared_names(),
                Err(_) => continue,
            };
            let keys: Vec<String> = names.iter().map(|r| format!("signet:quota:{r}")).collect();
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
                for ((resource, key), remote) in names.iter().zip(&keys).zip(remote) {
                    let local = state.until(resource);
                    // Another replica (or an older version) may have
                    // published a hold beyond the bound: read as the bound.
                    let remote = remote.unwrap_or(0).min(now.saturating_add(MAX_HOLD));
                    if remote > local && remote > now {
                        state.hold(resource, remote, now);
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
        let resource = state.resource_for(target);
        match state.exhausted_until.get(resource) {
            Some(&until) if until > now => Err(Refusal::new(ErrorCode::UpstreamQuotaExhausted)
                .retry_after(until - now)
                .with_detail(format!("the shared token's {resource} quota is exhausted"))),
            _ => Ok(()),
        }
    }

    /// Learns from one upstream response to a request for `target`.
    pub fn observe(&self, target: &str, status: StatusCode, headers: &HeaderMap, now: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let named = resource_header(headers).filter(|r| *r != SECONDARY);
        if let Some(named) = named {
            state.learn(target, named);
        }
        let resource = named.unwrap_or_else(|| resource_of(target));
        let bound = now.saturating_add(MAX_HOLD);
        match (
            seconds_header(headers, "x-ratelimit-remaining"),
            seconds_header(headers, "x-ratelimit-reset"),
        ) {
            (Some(0), Some(reset)) if reset > now => {
                if reset > bound {
                    tracing::warn!(
                        resource,
                        sent = reset,
                        held_until = bound,
                        "GitHub's X-RateLimit-Reset is more than an hour away: holding back for an hour only"
                    );
                }
                let until = reset.min(bound);
                if state.until(resource) != until {
                    tracing::warn!(
                        resource,
                        retry_after = until - now,
                        "the shared token's quota is exhausted: answering locally until it resets"
                    );
                }
                if !state.hold(resource, until, now) {
                    tracing::warn!(
                        resource,
                        limit = MAX_RESOURCES,
                        "too many rate-limit resources held back at once: this one is not guarded"
                    );
                }
            }
            (Some(remaining), _) if remaining > 0 => {
                state.exhausted_until.remove(resource);
            }
            _ => {}
        }
        let limited = status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
        if let (true, Some(sent)) = (limited, seconds_header(headers, "retry-after")) {
            if sent > MAX_HOLD {
                tracing::warn!(
                    resource,
                    sent,
                    held_for = MAX_HOLD,
                    "GitHub's Retry-After is more than an hour: holding back for an hour only"
                );
            }
            let wait = sent.clamp(1, MAX_HOLD);
            let until = now.saturating_add(wait);
            if until > state.secondary_until {
                tracing::warn!(
                    resource,
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
    fn a_path_github_names_a_known_resource_for_is_learned_when_the_table_reads_it_otherwise() {
        let mut state = State::default();
        state.learn("/limit/x?n=1", "code_search");
        assert_eq!(state.resource_for("/limit/x?n=2"), "code_search");
        // The table agrees: nothing to remember, and what was is forgotten.
        state.learn("/search/code", "code_search");
        assert!(!state.learned.contains_key("/search/code"));
        state.learn("/limit/x", "core");
        assert_eq!(state.resource_for("/limit/x"), "core");
        assert!(state.learned.is_empty());
    }

    #[test]
    fn resources_follow_githubs_names() {
        assert_eq!(resource_of("/search/issues?q=x"), "search");
        assert_eq!(resource_of("/graphql"), "graphql");
        assert_eq!(resource_of("/repos/o/r"), "core");
        assert_eq!(resource_of("/searching"), "core");
        assert_eq!(resource_of("/search/code/"), "code_search");
        assert_eq!(resource_of("//search//code?q=x"), "code_search");
        for (target, resource) in [
            ("/search/code?q=x", "code_search"),
            ("/search/repositories?q=x", "search"),
            ("/search", "search"),
            ("/app-manifests/abc/conversions", "integration_manifest"),
            (
                "/repos/o/r/code-scanning/alerts/7/autofix",
                "code_scanning_autofix",
            ),
            (
                "/repos/o/r/actions/runners/registration-token",
                "actions_runner_registration",
            ),
            (
                "/orgs/o/actions/runners/registration-token",
                "actions_runner_registration",
            ),
            ("/scim/v2/organizations/o/Users", "scim"),
            (
                "/repos/o/r/dependency-graph/snapshots",
                "dependency_snapshots",
            ),
            ("/repos/o/r/dependency-graph/sbom", "dependency_sbom"),
            ("/orgs/o/audit-log?phrase=x", "audit_log"),
            ("/enterprises/e/audit-log", "audit_log"),
            ("/enterprises/e/audit-log/streams/1", "audit_log_streaming"),
            ("/repos/o/r/actions/runners", "core"),
            ("/repos/search/code", "core"),
        ] {
            assert_eq!(resource_of(target), resource, "{target}");
            assert!(KNOWN.contains(&resource));
        }
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
    fn holds_further_than_an_hour_are_clamped_to_an_hour() {
        let guard = QuotaGuard::default();
        guard.observe(
            "/search/code",
            StatusCode::OK,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "94608001000"),
                ("x-ratelimit-resource", "code_search"),
            ]),
            1000,
        );
        let refused = guard.check("/search/code?q=x", 1000).err();
        assert_eq!(refused.and_then(|r| r.retry_after), Some(MAX_HOLD));
        assert!(guard.check("/search/code", 1000 + MAX_HOLD).is_ok());

        for sent in ["94608000000", "99999999999999999999999999"] {
            let guard = QuotaGuard::default();
            let mut limited = HeaderMap::new();
            limited.insert("retry-after", HeaderValue::from_static(sent));
            guard.observe("/user", StatusCode::TOO_MANY_REQUESTS, &limited, 1000);
            let refused = guard.check("/user", 1000).err();
            assert_eq!(
                refused.and_then(|r| r.retry_after),
                Some(MAX_HOLD),
                "{sent}"
            );
        }
    }

    #[test]
    fn a_resource_the_table_does_not_know_is_held_on_the_paths_github_named_it_for() {
        let guard = QuotaGuard::default();
        let exhausted = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1030"),
            ("x-ratelimit-resource", "brand_new"),
        ]);
        guard.observe("/new/thing?x=1", StatusCode::OK, &exhausted, 1000);
        let refused = guard.check("/new/thing", 1000).err();
        assert_eq!(refused.and_then(|r| r.retry_after), Some(30));
        assert!(guard.check("/new/other", 1000).is_ok());
        assert!(guard.check("/user", 1000).is_ok());
        // A header naming the secondary hold is not taken for it.
        let secondary = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1030"),
            ("x-ratelimit-resource", "secondary"),
        ]);
        guard.observe("/user", StatusCode::OK, &secondary, 1000);
        assert_eq!(
            guard.check("/repos/o/r", 1000).err().map(|r| r.code),
            Some(ErrorCode::UpstreamQuotaExhausted),
            "held as the request's own resource, core"
        );
        assert!(guard.check("/search/issues", 1000).is_ok());
    }

    #[test]
    fn junk_resource_names_and_paths_are_bounded() {
        let guard = QuotaGuard::default();
        for n in 0..10_000 {
            let mut junk = HeaderMap::new();
            junk.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            junk.insert("x-ratelimit-reset", HeaderValue::from_static("2000"));
            if let Ok(name) = HeaderValue::from_str(&format!("junk{n}")) {
                junk.insert("x-ratelimit-resource", name);
            }
            guard.observe(&format!("/junk/{n}"), StatusCode::OK, &junk, 1000);
        }
        let state = guard.state.lock().ok();
        let sizes = state.map(|s| {
            (
                s.exhausted_until.len(),
                s.learned.len(),
                s.shared_names().len(),
            )
        });
        assert_eq!(
            sizes,
            Some((
                MAX_RESOURCES,
                MAX_LEARNED_PATHS,
                KNOWN.len() + 1 + MAX_LEARNED_PATHS
            ))
        );
        // Once the junk holds have passed, a real one finds room again.
        let exhausted = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "2100"),
            ("x-ratelimit-resource", "code_search"),
        ]);
        guard.observe("/search/code", StatusCode::OK, &exhausted, 2000);
        assert!(guard.check("/search/code", 2000).is_err());
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
