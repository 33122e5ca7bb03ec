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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::grants::GitHubScope;
use crate::upstream::credentials::Current;

/// How long a refused scope is answered locally before GitHub is asked again.
pub const REFUSAL_HOLD: Duration = Duration::from_secs(30);

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
