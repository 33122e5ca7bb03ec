//! Per-client scoped installation tokens: a keys-file client may carry
//!
//! ```toml
//! github = { repositories = ["acme/app"], permissions = { contents = "read", issues = "write" } }
//! ```
//!
//! and its requests are then forwarded with an installation token minted for
//! exactly that scope (the access-token request's `repositories` and
//! `permissions`), so GitHub itself enforces the client's limits even where a
//! path policy could be fooled.
//!
//! Tokens are minted on a client's first request, cached per distinct scope,
//! and refreshed like the main token: when less than a fifth of their
//! lifetime remains (one request refreshes, the others keep the old token),
//! and after GitHub answers 401 to one old enough
//! ([`crate::upstream::credentials::REJECTED_MIN_AGE`]). A scope GitHub refuses (422, an
//! unknown repository; an owner that is not the installation's account) fails
//! that client's requests with 502 `UPSTREAM_SCOPE_REFUSED` for
//! [`REFUSAL_HOLD`] before GitHub is asked again — never the broader token.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use serde::Deserialize;

use crate::upstream::credentials::Current;

/// How long a refused scope is answered locally before GitHub is asked again.
pub const REFUSAL_HOLD: Duration = Duration::from_secs(30);

/// The permission levels GitHub's access-token request takes.
const LEVELS: [&str; 3] = ["read", "write", "admin"];

/// The `github = { … }` table of a keys-file client, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeEntry {
    #[serde(default)]
    repositories: Vec<String>,
    #[serde(default)]
    permissions: BTreeMap<String, String>,
}

/// A validated scope: what its installation token may reach.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GitHubScope {
    /// The account named by `owner/name` entries, if any (all must agree).
    owner: Option<String>,
    /// The access-token request's body: `{"repositories":[…],"permissions":{…}}`,
    /// canonical (sorted), so equal scopes share one token.
    request: Bytes,
    /// `acme/app, contents:read` — for logs.
    label: Arc<str>,
}

impl GitHubScope {
    /// Validates an entry. GitHub's `repositories` takes bare names, so an
    /// `owner/name` entry is sent as `name`, and its owner is remembered to
    /// be checked against the installation's account.
    pub fn parse(entry: ScopeEntry) -> Result<Self, String> {
        if entry.repositories.is_empty() && entry.permissions.is_empty() {
            return Err("`github` needs `repositories` or `permissions` (or leave it out for the installation's full token)".to_owned());
        }
        let mut owner: Option<String> = None;
        let mut names = Vec::with_capacity(entry.repositories.len());
        for repository in &entry.repositories {
            let (entry_owner, name) = match repository.split_once('/') {
                Some((o, n)) => (Some(o), n),
                None => (None, repository.as_str()),
            };
            if !is_github_name(name) || entry_owner.is_some_and(|o| !is_github_name(o)) {
                return Err(format!(
                    "github.repositories: {repository:?} is not `name` or `owner/name`"
                ));
            }
            if let Some(entry_owner) = entry_owner {
                match &owner {
                    Some(seen) if !seen.eq_ignore_ascii_case(entry_owner) => {
                        return Err(format!(
                        "github.repositories: {repository:?} and {seen:?} name different owners; one installation belongs to one account"
                    ))
                    }
                    _ => owner = Some(entry_owner.to_owned()),
                }
            }
            names.push(name.to_owned());
        }
        names.sort_unstable();
        names.dedup();
        for (permission, level) in &entry.permissions {
            let name_ok = !permission.is_empty()
                && permission
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_');
            if !name_ok {
                return Err(format!(
                    "github.permissions: {permission:?} is not a GitHub permission name"
                ));
            }
            if !LEVELS.contains(&level.as_str()) {
                return Err(format!(
                    "github.permissions.{permission}: {level:?} is not read, write or admin"
                ));
            }
        }
        let mut body = serde_json::Map::new();
        if !names.is_empty() {
            body.insert("repositories".to_owned(), serde_json::json!(names));
        }
        if !entry.permissions.is_empty() {
            body.insert(
                "permissions".to_owned(),
                serde_json::json!(entry.permissions),
            );
        }
        let request = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let mut label: Vec<String> = entry.repositories.clone();
        label.extend(entry.permissions.iter().map(|(p, l)| format!("{p}:{l}")));
        Ok(GitHubScope {
            owner,
            request: Bytes::from(request),
            label: label.join(", ").into(),
        })
    }

    /// The account its `owner/name` entries name, if any.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// The access-token request body.
    pub fn request_body(&self) -> Bytes {
        self.request.clone()
    }

    /// A short description for logs.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// GitHub account and repository names: ASCII letters, digits, `-`, `_`, `.`.
fn is_github_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A token minted for one scope.
pub struct Minted {
    /// The token, as the forwarder injects it.
    pub current: Arc<Current>,
    /// When to mint a new one (a fifth of the lifetime left).
    pub refresh_at: Instant,
    /// When GitHub stops accepting it.
    pub expires_at: Instant,
}

/// One scope's token and its single flight.
#[derive(Default)]
pub struct Slot {
    /// The token in force for this scope.
    pub minted: ArcSwapOption<Minted>,
    /// Held by the one request that mints; the others wait or use the old token.
    pub flight: tokio::sync::Mutex<()>,
    /// GitHub refused the scope: why, and until when we answer locally.
    pub refused: Mutex<Option<(Instant, String)>>,
}

impl Slot {
    /// The refusal in force, if GitHub refused this scope recently.
    pub fn refusal(&self, now: Instant) -> Option<String> {
        let refused = self.refused.lock().ok()?;
        match &*refused {
            Some((until, why)) if now < *until => Some(why.clone()),
            _ => None,
        }
    }

    /// Remembers GitHub's refusal for [`REFUSAL_HOLD`].
    pub fn refuse(&self, now: Instant, why: String) {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some((now + REFUSAL_HOLD, why));
        }
    }

    /// GitHub answered 401 to `token`: refresh on the next request, if it is
    /// this scope's token in force and [`Current::take_rejection`] says so.
    pub fn rejected(&self, token: &Current) {
        if let Some(minted) = self.minted.load_full() {
            if minted.current.generation != token.generation
                || !token.take_rejection(Instant::now())
            {
                return;
            }
            self.minted.store(Some(Arc::new(Minted {
                current: Arc::clone(&minted.current),
                refresh_at: Instant::now(),
                expires_at: minted.expires_at,
            })));
        }
    }
}

/// Every scope's slot. The scopes come from the keys file (the operator's,
/// not a caller's), so the map is bounded by the configuration.
#[derive(Default)]
pub struct ScopedTokens {
    slots: Mutex<HashMap<GitHubScope, Arc<Slot>>>,
}

impl ScopedTokens {
    /// The slot of `scope`, created on first use.
    pub fn slot(&self, scope: &GitHubScope) -> Option<Arc<Slot>> {
        let mut slots = self.slots.lock().ok()?;
        Some(Arc::clone(slots.entry(scope.clone()).or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> Result<GitHubScope, String> {
        let entry: ScopeEntry = toml::from_str(text).map_err(|e| e.to_string())?;
        GitHubScope::parse(entry)
    }

    #[test]
    fn owner_slash_name_is_sent_as_the_bare_name_with_sorted_permissions() {
        let parsed = scope(
            r#"repositories = ["acme/app", "acme/lib", "app"]
            permissions = { issues = "write", contents = "read" }"#,
        );
        let Ok(parsed) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(parsed.owner(), Some("acme"));
        assert_eq!(
            std::str::from_utf8(&parsed.request_body()).ok(),
            Some(
                r#"{"permissions":{"contents":"read","issues":"write"},"repositories":["app","lib"]}"#
            )
        );
    }

    #[test]
    fn equal_scopes_written_differently_share_one_token() {
        let a = scope(r#"repositories = ["acme/b", "acme/a"]"#);
        let b = scope(r#"repositories = ["acme/a", "acme/b", "acme/a"]"#);
        assert_eq!(a.map(|s| s.request_body()), b.map(|s| s.request_body()));
    }

    #[test]
    fn mistakes_in_a_scope_are_refused() {
        for (text, expected) in [
            ("", "needs"),
            (
                r#"repositories = ["acme/app", "other/app"]"#,
                "different owners",
            ),
            (r#"repositories = ["acme/"]"#, "not `name`"),
            (r#"repositories = ["a/b/c"]"#, "not `name`"),
            (
                r#"permissions = { contents = "all" }"#,
                "not read, write or admin",
            ),
            (
                r#"permissions = { "Contents" = "read" }"#,
                "permission name",
            ),
            (r#"repos = ["a"]"#, "unknown field"),
        ] {
            let error = scope(text).err().unwrap_or_default();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
    }
}
