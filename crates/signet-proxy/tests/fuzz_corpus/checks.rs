//! The properties the `keys_file` and `request_target` fuzz targets
//! assert. The fuzz crate includes this file (`#[path]`), and
//! `fuzz_corpus/mod.rs` replays the committed corpus through the same
//! functions, so `cargo test` on stable checks every corpus input.

use std::path::Path;

use http::{Method, Uri};
use signet_core::parse_public_key_hex;
use signet_proxy::auth::clients::KeySet;
use signet_proxy::ingress::target::{allowed_method, origin_form};

/// What a `[[client]]` may hold; anything else must be refused.
const CLIENT_FIELDS: [&str; 6] = ["name", "key", "purposes", "allow", "rate", "github"];
/// What a client's `github` table may hold.
const SCOPE_FIELDS: [&str; 2] = ["repositories", "permissions"];
/// The methods an `allow` rule may name.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Target `keys_file`: the input (as UTF-8, lossily) is a keys file.
///
/// The parser never panics, and a file it accepts yields exactly the
/// clients written, none with a policy broader than written: only known
/// fields anywhere; each client's key, purposes, allow rules (same text,
/// same count, a rule for one method matching no other), rate and GitHub
/// scope (same permissions, no repository that was not written) present
/// exactly when written.
pub fn keys_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(set) = KeySet::build(&[], Some((&text, Path::new("keys.toml")))) else {
        return;
    };
    let Ok(file) = text.parse::<toml::Table>() else {
        panic!("accepted a file that is not TOML");
    };
    assert!(
        file.keys().all(|k| k == "client"),
        "accepted unknown top-level keys"
    );
    let entries = match file.get("client") {
        None => Vec::new(),
        Some(toml::Value::Array(entries)) => entries.clone(),
        Some(other) => panic!("accepted `client = {other:?}`"),
    };
    assert_eq!(set.len(), entries.len(), "clients lost or added");
    for entry in &entries {
        let Some(entry) = entry.as_table() else {
            panic!("accepted a client that is not a table");
        };
        assert!(
            entry.keys().all(|k| CLIENT_FIELDS.contains(&k.as_str())),
            "accepted an unknown client field: {entry:?}"
        );
        let name = entry.get("name").and_then(toml::Value::as_str);
        let key = entry.get("key").and_then(toml::Value::as_str);
        let (Some(name), Some(key)) = (name, key) else {
            panic!("accepted a client without a name or key");
        };
        let Some(client) = set.iter().find(|c| c.name == name) else {
            panic!("client {name:?} was accepted but is missing");
        };
        assert_eq!(parse_public_key_hex(key).ok(), Some(client.key), "key");

        let written = |field: &str| -> Option<Vec<String>> {
            entry.get(field).map(|value| {
                value
                    .as_array()
                    .unwrap_or_else(|| panic!("accepted {field} that is not a list"))
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .unwrap_or_else(|| panic!("{field}: {v:?}"))
                            .to_owned()
                    })
                    .collect()
            })
        };
        let purposes = client
            .purposes
            .as_ref()
            .map(|list| list.iter().map(|p| p.as_str().to_owned()).collect());
        assert_eq!(purposes, written("purposes"), "purposes of {name:?}");

        let allow = written("allow");
        assert_eq!(
            client.allow.as_ref().map(Vec::len),
            allow.as_ref().map(Vec::len),
            "allow rules of {name:?}"
        );
        for (rule, text) in client.allow.iter().flatten().zip(allow.iter().flatten()) {
            assert_eq!(rule.to_string(), text.trim(), "rule text");
            let method = text.trim().split(' ').next().unwrap_or_default();
            if method != "*" {
                for other in METHODS.iter().filter(|m| **m != method) {
                    assert!(!rule.matches(other, "/"), "{text:?} matches {other}");
                }
            }
        }

        assert_eq!(
            client.rate.is_some(),
            entry.contains_key("rate"),
            "rate of {name:?}"
        );

        match (&client.github, entry.get("github")) {
            (None, None) => {}
            (Some(scope), Some(toml::Value::Table(written))) => {
                assert!(
                    written.keys().all(|k| SCOPE_FIELDS.contains(&k.as_str())),
                    "accepted an unknown github field: {written:?}"
                );
                let body: serde_json::Value = serde_json::from_slice(&scope.request_body())
                    .unwrap_or_else(|e| panic!("scope body: {e}"));
                let permissions: toml::Table = written
                    .get("permissions")
                    .and_then(toml::Value::as_table)
                    .cloned()
                    .unwrap_or_default();
                let sent = body.get("permissions").and_then(|p| p.as_object());
                assert_eq!(
                    sent.map_or(0, |p| p.len()),
                    permissions.len(),
                    "permissions of {name:?}"
                );
                for (permission, level) in sent.into_iter().flatten() {
                    assert_eq!(
                        permissions.get(permission).and_then(toml::Value::as_str),
                        level.as_str(),
                        "permission {permission:?} of {name:?}"
                    );
                }
                let repositories = written.get("repositories").and_then(toml::Value::as_array);
                let names: Vec<&str> = repositories
                    .into_iter()
                    .flatten()
                    .filter_map(toml::Value::as_str)
                    .map(|r| r.rsplit('/').next().unwrap_or(r))
                    .collect();
                for sent in body
                    .get("repositories")
                    .and_then(|r| r.as_array())
                    .into_iter()
                    .flatten()
                {
                    let sent = sent.as_str().unwrap_or_default();
                    assert!(names.contains(&sent), "repository {sent:?} was not written");
                }
                assert!(
                    !names.is_empty() || body.get("repositories").is_none(),
                    "repositories of {name:?} that were not written"
                );
            }
            (scope, written) => panic!("github of {name:?}: {scope:?} from {written:?}"),
        }
    }
}

/// Target `request_target`: byte 0 is the length of a method, then the
/// method, then a request-target as it would arrive on the request line.
///
/// The first checks of the pipeline never panic and decide exactly as the
/// spec says, checked against a plain re-statement: a target passes iff it
/// is origin-form (no scheme, no authority, starts with `/`) and no
/// `/`-separated segment of its path is `.` or `..` once `%2e`/`%2E` read
/// as `.`; what passes is the target byte for byte (never normalised). A
/// method passes iff it is one of the seven of the GitHub API, case and all.
pub fn request_target(data: &[u8]) {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let (method, target) = rest.split_at(usize::from(len).min(rest.len()));
    if let Ok(method) = Method::from_bytes(method) {
        assert_eq!(
            allowed_method(&method).is_ok(),
            METHODS.contains(&method.as_str()),
            "method {method:?}"
        );
    }
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let expected = match uri.path_and_query() {
        Some(pq)
            if uri.scheme().is_none()
                && uri.authority().is_none()
                && pq.as_str().starts_with('/')
                && !pq.path().split('/').any(is_dot_segment) =>
        {
            Some(pq.as_str())
        }
        _ => None,
    };
    assert_eq!(origin_form(&uri).ok(), expected, "target {uri:?}");
}

/// `.` or `..`, with any dot written as `%2e` or `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}
