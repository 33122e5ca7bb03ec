//! Configuration values that name a choice the stages act on: which
//! threads serve (`--runtime`), where the upstream credential comes from,
//! and the refusal log's default rate. They live with the configuration so
//! that `config` imports none of the modules that act on them.

use std::path::PathBuf;

use crate::secret::GitHubToken;

/// How requests are spread over the machine's cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Serving {
    /// One single-threaded runtime per core, each with its own listener.
    PerCore,
    /// One multi-threaded, work-stealing runtime.
    #[default]
    MultiThread,
}

/// Where the upstream credential comes from.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// One static token.
    Token(GitHubToken),
    /// A file holding the token, re-read when it changes.
    TokenFile(PathBuf),
    /// A GitHub App installation.
    App(AppCredential),
}

impl CredentialSource {
    /// Whether per-client scoped tokens can be minted (GitHub App mode).
    pub fn can_scope(&self) -> bool {
        matches!(self, CredentialSource::App(_))
    }
}

/// A GitHub App installation's credentials.
#[derive(Debug, Clone)]
pub struct AppCredential {
    /// The App's id (the JWT's `iss`).
    pub app_id: u64,
    /// The App's private key, PEM (PKCS#1 as GitHub issues it, or PKCS#8).
    pub key_file: PathBuf,
    /// The installation whose token is used.
    pub installation_id: u64,
}

/// The default of `--refusal-log-limit`: plenty to see what a flood is,
/// a few tens of KiB of log per second at most.
pub const DEFAULT_REFUSAL_LOG_LIMIT: u64 = 100;
