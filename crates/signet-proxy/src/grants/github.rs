//! A client's `github = { … }` grant, parsed from the keys file: the scope
//! its installation token is minted for (`upstream::scope` mints it).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

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
