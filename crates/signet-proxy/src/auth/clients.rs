//! Who may use the proxy: one [`Client`] per trusted master key, with its
//! name and policy, from `--master-key` and the keys file (`--keys-file`).
//!
//! The whole set is swapped atomically when the file is reloaded (SIGHUP, or
//! the file changed on disk): a request sees either the old set or the new
//! one, never a mix. A change is noticed by the file's content (a SHA-256 of
//! its bytes, through any symlink), never its modification time: `cp -p`, a
//! Nix-store symlink swap (every file dated 1970) or two writes within one
//! timestamp tick leave the time as it was. A file that does not parse or validate is refused with
//! a log line and the set in force stays — never fail open, never crash.
//!
//! ```toml
//! [[client]]
//! name = "release-bot"
//! key = "<64 hex master public key>"
//! purposes = ["github-api"]                  # optional: allowed binding purposes
//! allow = ["GET /repos/acme/**", "POST /repos/acme/*/issues"]   # optional
//! rate = "600/min"                           # optional: burst 600, refills at 600/min
//! # optional, GitHub App mode only: forward with a token minted for this scope
//! github = { repositories = ["acme/app"], permissions = { contents = "read" } }
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use signet_core::{key_id, parse_public_key_hex, Purpose, VerifyingKey};

use crate::grants::{GitHubScope, Rate, Rule, ScopeEntry};

/// One trusted master key and what it may do.
#[derive(Debug, Clone)]
pub struct Client {
    /// The name in logs and metrics: from the keys file, or `key:<key id>`
    /// for a `--master-key`.
    pub name: String,
    /// The master public key.
    pub key: VerifyingKey,
    /// Its [`key_id`], as logs and the admin API name it (computed once: a
    /// SHA-256 per request saved).
    pub key_id: String,
    /// Binding purposes this client may use (`None`: any).
    pub purposes: Option<Vec<Purpose>>,
    /// Methods and paths this client may call (`None`: any).
    pub allow: Option<Vec<Rule>>,
    /// Its rate limit (`None`: none).
    pub rate: Option<Rate>,
    /// The scope of its installation token (`None`: the installation's full
    /// token).
    pub github: Option<GitHubScope>,
}

/// Every trusted client, by master public key.
#[derive(Debug, Default)]
pub struct KeySet {
    by_key: HashMap<[u8; 32], Arc<Client>>,
}

impl KeySet {
    /// The client whose master key is `mk`, if trusted (spec §5 step 3).
    pub fn get(&self, mk: &[u8; 32]) -> Option<&Arc<Client>> {
        self.by_key.get(mk)
    }

    /// Every trusted client.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.by_key.values()
    }

    /// How many clients are trusted.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no client is trusted.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Builds the set from the `--master-key` keys and a keys file's text;
    /// `origin` names the file in errors.
    pub fn build(
        master_keys: &[VerifyingKey],
        keys_file: Option<(&str, &Path)>,
    ) -> Result<Self, KeysFileError> {
        let mut by_key = HashMap::new();
        for key in master_keys {
            let id = key_id(key.as_bytes());
            let client = Client {
                name: format!("key:{id}"),
                key: *key,
                key_id: id,
                purposes: None,
                allow: None,
                rate: None,
                github: None,
            };
            by_key.insert(key.to_bytes(), Arc::new(client));
        }
        if let Some((text, path)) = keys_file {
            let error = |why: String| KeysFileError {
                path: path.to_owned(),
                why,
            };
            let file: KeysFile = toml::from_str(text).map_err(|e| error(e.to_string()))?;
            let mut names = HashSet::new();
            for entry in file.client {
                let client = entry.validate().map_err(error)?;
                if !names.insert(client.name.clone()) {
                    return Err(error(format!(
                        "client name {:?} appears twice",
                        client.name
                    )));
                }
                let bytes = client.key.to_bytes();
                if by_key.contains_key(&bytes) {
                    return Err(error(format!(
                        "client {:?}: its key is already trusted (another client or --master-key)",
                        client.name
                    )));
                }
                by_key.insert(bytes, Arc::new(client));
            }
            // One installation belongs to one account.
            let mut owners = by_key.values().filter_map(|c| {
                c.github
                    .as_ref()
                    .and_then(|s| s.owner().map(|o| (&c.name, o)))
            });
            if let Some((first_client, first)) = owners.next() {
                if let Some((client, owner)) = owners.find(|(_, o)| !o.eq_ignore_ascii_case(first))
                {
                    return Err(error(format!(
                        "client {client:?} scopes repositories of {owner:?} but client {first_client:?} those of {first:?}; one installation belongs to one account"
                    )));
                }
            }
        }
        Ok(KeySet { by_key })
    }
}

/// Why the keys file was refused; the message names the file and the
/// client or field at fault, never a secret (public keys only).
#[derive(Debug, Clone, thiserror::Error)]
#[error("keys file {}: {why}", path.display())]
pub struct KeysFileError {
    path: PathBuf,
    why: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    client: Vec<ClientEntry>,
}

/// One `[[client]]` as written. Unknown fields are refused: a misspelt
/// `allow` must not silently allow everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    name: String,
    key: String,
    purposes: Option<Vec<String>>,
    allow: Option<Vec<String>>,
    rate: Option<String>,
    github: Option<ScopeEntry>,
}

impl ClientEntry {
    fn validate(self) -> Result<Client, String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(format!(
                "client name {:?}: use 1-64 of A-Z a-z 0-9 - _ .",
                self.name
            ));
        }
        let at = |why: String| format!("client {:?}: {why}", self.name);
        let key = parse_public_key_hex(&self.key).map_err(|e| at(e.to_string()))?;
        let purposes = self
            .purposes
            .map(|list| {
                list.iter()
                    .map(|p| Purpose::new(p).map_err(|_| at(format!("invalid purpose {p:?}"))))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let allow = self
            .allow
            .map(|list| {
                list.iter()
                    .map(|r| Rule::parse(r).map_err(|e| at(e.to_string())))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let rate = self
            .rate
            .as_deref()
            .map(|r| Rate::parse(r).map_err(at))
            .transpose()?;
        let github = self
            .github
            .map(|scope| GitHubScope::parse(scope).map_err(at))
            .transpose()?;
        Ok(Client {
            name: self.name,
            key_id: key_id(key.as_bytes()),
            key,
            purposes,
            allow,
            rate,
            github,
        })
    }
}

/// The key set in force, and where it comes from, so it can be reloaded.
#[derive(Debug)]
pub struct Clients {
    current: ArcSwap<KeySet>,
    master_keys: Vec<VerifyingKey>,
    keys_file: Option<PathBuf>,
    /// Whether clients may carry `github` scopes (GitHub App mode only).
    scopes_allowed: bool,
    /// The admin API's key (`--admin-key`), which no client may have.
    admin_key: Option<VerifyingKey>,
    /// The keys file's content when last read, to notice changes.
    loaded: std::sync::Mutex<Fingerprint>,
}

/// A SHA-256 of the keys file's bytes; `None` when it could not be read.
type Fingerprint = Option<[u8; 32]>;

/// The fingerprint of the file at `path` now, read through any symlink.
/// Streamed: the watcher calls this every few seconds.
fn fingerprint(path: &Path) -> Fingerprint {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(hasher.finalize().into())
}

impl Clients {
    /// Loads the set once (at startup or for `check-config`). Only a proxy
    /// with GitHub App credentials can mint scoped tokens, so a `github`
    /// scope is refused unless `scopes_allowed`; a client whose key is the
    /// `admin_key` is refused (here and at every reload).
    pub fn load(
        master_keys: Vec<VerifyingKey>,
        keys_file: Option<PathBuf>,
        scopes_allowed: bool,
        admin_key: Option<VerifyingKey>,
    ) -> Result<Self, KeysFileError> {
        let (loaded, set) = read(
            &master_keys,
            keys_file.as_deref(),
            scopes_allowed,
            admin_key.as_ref(),
        );
        Ok(Clients {
            current: ArcSwap::from_pointee(set?),
            master_keys,
            keys_file,
            scopes_allowed,
            admin_key,
            loaded: std::sync::Mutex::new(loaded),
        })
    }

    /// The set in force now.
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// Re-reads the keys file and swaps the set in; on any error the set in
    /// force stays and the error is returned (for the log).
    pub fn reload(&self) -> Result<usize, KeysFileError> {
        let (read_now, set) = read(
            &self.master_keys,
            self.keys_file.as_deref(),
            self.scopes_allowed,
            self.admin_key.as_ref(),
        );
        // The content just read, noted even when it is refused, so a bad
        // file is reported once, not at every check, until it changes again.
        if let Ok(mut loaded) = self.loaded.lock() {
            *loaded = read_now;
        }
        let set = set?;
        let count = set.len();
        self.current.store(Arc::new(set));
        Ok(count)
    }

    /// Whether the keys file's content differs from what was last read
    /// (or it became readable or unreadable since): reads the whole file,
    /// through any symlink.
    pub fn file_changed(&self) -> bool {
        let Some(path) = &self.keys_file else {
            return false;
        };
        let now = fingerprint(path);
        self.loaded
            .lock()
            .map(|loaded| *loaded != now)
            .unwrap_or(false)
    }

    /// The keys file, if any.
    pub fn keys_file(&self) -> Option<&Path> {
        self.keys_file.as_deref()
    }
}

/// Reads the keys file once: the fingerprint of the bytes read (what a
/// later change is measured against, whether or not they were valid), and
/// the set they make.
fn read(
    master_keys: &[VerifyingKey],
    keys_file: Option<&Path>,
    scopes_allowed: bool,
    admin_key: Option<&VerifyingKey>,
) -> (Fingerprint, Result<KeySet, KeysFileError>) {
    let Some(path) = keys_file else {
        return (None, KeySet::build(master_keys, None));
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            let error = KeysFileError {
                path: path.to_owned(),
                why: e.to_string(),
            };
            return (None, Err(error));
        }
    };
    let read = Some(Sha256::digest(&bytes).into());
    (
        read,
        validate(master_keys, &bytes, path, scopes_allowed, admin_key),
    )
}

/// The set a keys file's `bytes` make, with every check a set must pass.
fn validate(
    master_keys: &[VerifyingKey],
    bytes: &[u8],
    path: &Path,
    scopes_allowed: bool,
    admin_key: Option<&VerifyingKey>,
) -> Result<KeySet, KeysFileError> {
    let error = |why: String| KeysFileError {
        path: path.to_owned(),
        why,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| error(format!("not UTF-8: {e}")))?;
    let set = KeySet::build(master_keys, Some((text, path)))?;
    if set.is_empty() {
        return Err(error(
            "no client, and no --master-key: nobody could use the proxy".to_owned(),
        ));
    }
    if !scopes_allowed {
        if let Some(client) = set.iter().find(|c| c.github.is_some()) {
            return Err(error(format!(
                "client {:?} has a `github` scope, which needs GitHub App credentials (--github-app-id, --github-app-key, --github-installation-id); a static token or token file cannot be narrowed",
                client.name
            )));
        }
    }
    // Whoever holds a client's key (every machine the client runs on) must
    // not hold the admin API too.
    if let Some(client) = admin_key.and_then(|key| set.get(key.as_bytes())) {
        return Err(error(format!(
            "client {:?}: its key is the admin key (--admin-key); the admin key must not be a client's key",
            client.name
        )));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const KEY_B: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn build(text: &str) -> Result<KeySet, String> {
        KeySet::build(&[], Some((text, Path::new("keys.toml")))).map_err(|e| e.to_string())
    }

    #[test]
    fn a_keys_file_gives_each_client_its_name_and_policy() {
        let set = build(&format!(
            r#"
            [[client]]
            name = "release-bot"
            key = "{KEY_A}"
            purposes = ["github-api"]
            allow = ["GET /repos/acme/**"]

            [[client]]
            name = "ci"
            key = "{KEY_B}"
            "#
        ));
        let Ok(set) = set else { panic!("{set:?}") };
        assert_eq!(set.len(), 2);
        let key = parse_public_key_hex(KEY_A)
            .map(|k| k.to_bytes())
            .unwrap_or_default();
        let bot = set
            .get(&key)
            .map(|c| (c.name.clone(), c.allow.is_some(), c.purposes.is_some()));
        assert_eq!(bot, Some(("release-bot".to_owned(), true, true)));
    }

    #[test]
    fn a_change_is_the_content_not_the_modification_time() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("keys.toml");
        let entry =
            |name: &str, key: &str| format!("[[client]]\nname = \"{name}\"\nkey = \"{key}\"\n");
        let write = |text: &str| {
            let written = std::fs::write(&path, text).and_then(|()| {
                std::fs::File::options()
                    .write(true)
                    .open(&path)?
                    .set_modified(std::time::UNIX_EPOCH)
            });
            assert!(written.is_ok(), "{written:?}");
        };
        write(&(entry("a", KEY_A) + &entry("b", KEY_B)));
        let clients = match Clients::load(Vec::new(), Some(path.clone()), false, None) {
            Ok(clients) => clients,
            Err(e) => panic!("{e}"),
        };
        assert!(!clients.file_changed());
        // The same bytes written again: nothing to reload.
        write(&(entry("a", KEY_A) + &entry("b", KEY_B)));
        assert!(!clients.file_changed());
        // Other bytes, the same time: a change.
        write(&entry("a", KEY_A));
        assert!(clients.file_changed());
        assert_eq!(clients.reload().ok(), Some(1));
        assert!(!clients.file_changed());
        // Gone: a change, refused once, and the set in force stays.
        assert!(std::fs::remove_file(&path).is_ok());
        assert!(clients.file_changed());
        assert!(clients.reload().is_err());
        assert!(!clients.file_changed(), "a refused file is reported once");
        assert_eq!(clients.current().len(), 1);
    }

    #[test]
    fn mistakes_in_the_keys_file_are_refused_with_where_they_are() {
        let cases = [
            (format!("[[client]]\nname = \"a\"\nkey = \"{KEY_A}\"\nallows = [\"GET /x\"]"), "allows"),
            (format!("[[client]]\nname = \"a\"\nkey = \"{KEY_A}\"\n[[client]]\nname = \"a\"\nkey = \"{KEY_B}\""), "twice"),
            (format!("[[client]]\nname = \"a\"\nkey = \"{KEY_A}\"\n[[client]]\nname = \"b\"\nkey = \"{KEY_A}\""), "already trusted"),
            ("[[client]]\nname = \"a\"\nkey = \"zz\"".to_owned(), "hex"),
            (format!("[[client]]\nname = \"has space\"\nkey = \"{KEY_A}\""), "client name"),
            (format!("[[client]]\nname = \"a\"\nkey = \"{KEY_A}\"\nallow = [\"GET /a*\"]"), "invalid allow rule"),
            (format!("[[client]]\nname = \"a\"\nkey = \"{KEY_A}\"\npurposes = [\"no space\"]"), "invalid purpose"),
            ("[[client]\n".to_owned(), "keys.toml"),
            (format!("[[client]]\nname = \"a\"\nkey = \"{KEY_A}\"\ngithub = {{ repositories = [\"acme/x\"] }}\n[[client]]\nname = \"b\"\nkey = \"{KEY_B}\"\ngithub = {{ repositories = [\"other/y\"] }}"), "one installation belongs to one account"),
            (format!("[[client]]\nname = \"a\"\nkey = \"{KEY_A}\"\ngithub = {{ permissions = {{ contents = \"all\" }} }}"), "client \"a\": github.permissions"),
        ];
        for (text, expected) in cases {
            let error = build(&text).err().unwrap_or_default();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
            assert!(error.starts_with("keys file keys.toml: "), "{error}");
        }
    }
}
