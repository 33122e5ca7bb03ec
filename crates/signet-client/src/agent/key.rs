//! The agent's master key: read at startup (a bad file stops it there), and
//! read again when the file changes, so a rotated key takes effect without
//! a restart. A file that becomes unreadable fails closed: requests get 503
//! `AGENT_KEY_UNREADABLE` until it is fixed, and nothing is signed with a
//! key the user replaced.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::error::AgentError;
use crate::{KeyFileError, SignError, Signer};

/// A key file and the signer made from its current content.
#[derive(Debug)]
pub struct KeySource {
    path: PathBuf,
    purpose: String,
    ttl: Duration,
    current: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamp: Stamp,
    signer: Result<Arc<Signer>, String>,
}

/// What tells a changed file from the one read (an atomic rename makes a
/// new inode; an editor may keep the size or the time).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    fn of(metadata: &Metadata) -> Self {
        Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(metadata),
        }
    }
}

/// Why the key could not be used at startup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// The file could not be read or is not a master key.
    #[error(transparent)]
    File(#[from] KeyFileError),
    /// The purpose or lifetime is invalid.
    #[error(transparent)]
    Settings(#[from] SignError),
}

impl KeySource {
    /// Reads the key now; binds it with `purpose` and `ttl`.
    pub fn open(path: &Path, purpose: &str, ttl: Duration) -> Result<Self, KeySourceError> {
        let stamp = std::fs::metadata(path)
            .map(|m| Stamp::of(&m))
            .map_err(|source| KeyFileError::Read {
                path: path.to_owned(),
                source,
            })?;
        let signer = load(path, purpose, ttl)?;
        Ok(KeySource {
            path: path.to_owned(),
            purpose: purpose.to_owned(),
            ttl,
            current: Mutex::new(Loaded {
                stamp,
                signer: Ok(Arc::new(signer)),
            }),
        })
    }

    /// The signer for the file as it is now (one `stat` per call; the file
    /// is read again only when it changed).
    pub fn signer(&self) -> Result<Arc<Signer>, AgentError> {
        let unreadable = |why: String| AgentError::KeyUnreadable(why);
        let stamp = std::fs::metadata(&self.path)
            .map(|m| Stamp::of(&m))
            .map_err(|e| {
                unreadable(format!("cannot read key file {}: {e}", self.path.display()))
            })?;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.stamp != stamp {
            let signer = load(&self.path, &self.purpose, self.ttl)
                .map(Arc::new)
                .map_err(|e| e.to_string());
            *current = Loaded { stamp, signer };
        }
        current.signer.clone().map_err(unreadable)
    }

    /// The master public key the agent signs with now, for its startup line.
    pub fn public_key_hex(&self) -> Option<String> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .signer
            .as_ref()
            .ok()
            .map(|signer| signer.master_public_key_hex())
    }
}

fn load(path: &Path, purpose: &str, ttl: Duration) -> Result<Signer, KeySourceError> {
    Ok(Signer::from_pem_file(path)?
        .with_purpose(purpose)?
        .with_ttl(ttl)?)
}

#[cfg(test)]
mod tests {
    use signet_core::{signing_key_to_pem, SigningKey};

    use super::*;

    fn write_key(path: &Path, seed: u8) -> String {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let pem = signing_key_to_pem(&key).map(|p| p.to_string());
        let temp = path.with_extension("tmp");
        let written = pem.ok().map(|pem| {
            std::fs::write(&temp, pem.as_bytes()).and_then(|()| std::fs::rename(&temp, path))
        });
        assert!(matches!(written, Some(Ok(()))));
        signet_core::public_key_hex(&key.verifying_key())
    }

    #[test]
    fn a_rotated_key_is_picked_up_and_a_broken_one_fails_closed() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no temp dir");
        };
        let path = dir.path().join("k.pem");
        let first = write_key(&path, 1);
        let source = KeySource::open(&path, "ci", Duration::from_secs(60));
        let Ok(source) = source else {
            panic!("{source:?}");
        };
        assert_eq!(source.public_key_hex().as_deref(), Some(first.as_str()));

        let second = write_key(&path, 2);
        let signer = source.signer().map(|s| s.master_public_key_hex());
        assert_eq!(signer.ok().as_deref(), Some(second.as_str()));

        assert!(std::fs::write(&path, "not a key").is_ok());
        assert!(matches!(source.signer(), Err(AgentError::KeyUnreadable(_))));
        assert!(std::fs::remove_file(&path).is_ok());
        assert!(matches!(source.signer(), Err(AgentError::KeyUnreadable(_))));
        write_key(&path, 2);
        assert!(source.signer().is_ok());
    }

    #[test]
    fn a_missing_key_stops_the_agent_at_startup() {
        let missing = KeySource::open(Path::new("/nonexistent/k.pem"), "", Duration::from_secs(60));
        assert!(matches!(missing, Err(KeySourceError::File(_))));
    }
}
