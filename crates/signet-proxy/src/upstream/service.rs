//! An upstream as a value: a base URL, how the credential is written for
//! it (`Authorization: Bearer` today; git's Basic is one more
//! [`Rendering`]), and its own concurrency slots — `--upstream-concurrency`
//! in all and `--upstream-concurrency-per-client` for each client. The REST
//! API is one; a second upstream is a second value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::HeaderValue;
use signet_core::ErrorCode;
use tokio::sync::Semaphore;

use crate::config::Upstream;
use crate::refusal::Refusal;
use crate::upstream::credentials::Current;

/// A request's place upstream: one of the `--upstream-concurrency` slots and
/// one of its client's `--upstream-concurrency-per-client`, held together
/// until its response body ends (or is dropped).
pub use crate::body::Held as UpstreamSlot;

/// How the injected credential is written for an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// `Authorization: Bearer <token>` (the REST API).
    Bearer,
}

/// One upstream: where it is, how the token is written for it, and its
/// slots (shared by its clones).
#[derive(Debug, Clone)]
pub struct Service {
    base: Arc<Upstream>,
    rendering: Rendering,
    /// At most this many requests in flight to it.
    slots: Arc<Semaphore>,
    /// At most this many of them for one client.
    shares: Arc<Shares>,
    /// How long a request may wait for a slot (`--upstream-timeout`).
    timeout: Duration,
}

impl Service {
    /// The upstream at `base`, with `concurrency` slots in all and
    /// `per_client` for each client, waited for at most `timeout`.
    pub fn new(
        base: Arc<Upstream>,
        rendering: Rendering,
        concurrency: usize,
        per_client: usize,
        timeout: Duration,
    ) -> Self {
        Service {
            base,
            rendering,
            slots: Arc::new(Semaphore::new(concurrency.clamp(1, Semaphore::MAX_PERMITS))),
            shares: Arc::new(Shares::new(per_client.clamp(1, Semaphore::MAX_PERMITS))),
            timeout,
        }
    }

    /// Its base URL.
    pub fn base(&self) -> &Arc<Upstream> {
        &self.base
    }

    /// The `Authorization` value `credential` goes out as here.
    pub fn authorization<'a>(&self, credential: &'a Current) -> &'a HeaderValue {
        match self.rendering {
            // Built once per token, marked sensitive.
            Rendering::Bearer => &credential.authorization,
        }
    }

    /// A place upstream for one of `client`'s requests, within one
    /// `--upstream-timeout` for both waits. The client's share comes first:
    /// a client beyond it waits for one of its own slots while holding none
    /// of the others', so it cannot starve them; then, beyond the
    /// concurrency GitHub tolerates, a slot.
    pub async fn slot(&self, client: &str) -> Result<UpstreamSlot, Refusal> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let busy = |why: &str| {
            Refusal::new(ErrorCode::UpstreamBusy).with_detail(format!(
                "{why} within {:?} (client {client:?})",
                self.timeout
            ))
        };
        let share = tokio::time::timeout_at(deadline, self.shares.of(client).acquire_owned())
            .await
            .map_err(|_| busy("no slot of this client's share freed"))?
            .map_err(|_| busy("no share"))?;
        let slot = tokio::time::timeout_at(deadline, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| busy("no upstream slot freed"))?
            .map_err(|_| busy("no slot"))?;
        Ok(UpstreamSlot::new(slot, share))
    }
}

/// Each client's share of the upstream slots: a semaphore per client name
/// (so a keys-file reload keeps a client's count), created on its first
/// request. The map holds weak references: a share lives only while one of
/// its client's requests holds or waits for it, and dead entries are
/// dropped whenever the map has doubled since the last sweep, so clients
/// that come and go leave nothing behind.
#[derive(Debug)]
struct Shares {
    per_client: usize,
    by_client: Mutex<ShareMap>,
}

#[derive(Debug, Default)]
struct ShareMap {
    shares: HashMap<Box<str>, Weak<Semaphore>>,
    /// The size at which dead entries are next swept.
    sweep_at: usize,
}

/// The map is swept no sooner than at this size.
const SHARES_SWEPT_FROM: usize = 64;

impl Shares {
    fn new(per_client: usize) -> Self {
        Shares {
            per_client,
            by_client: Mutex::new(ShareMap {
                shares: HashMap::new(),
                sweep_at: SHARES_SWEPT_FROM,
            }),
        }
    }

    /// `client`'s share: the live one, or a new one.
    fn of(&self, client: &str) -> Arc<Semaphore> {
        // Nothing panics while the lock is held, so a poisoned map is whole.
        let mut map = self
            .by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = map.shares.get(client).and_then(Weak::upgrade) {
            return share;
        }
        if map.shares.len() >= map.sweep_at {
            map.shares.retain(|_, share| share.strong_count() > 0);
            map.sweep_at = (map.shares.len() * 2).max(SHARES_SWEPT_FROM);
        }
        let share = Arc::new(Semaphore::new(self.per_client));
        map.shares.insert(client.into(), Arc::downgrade(&share));
        share
    }

    /// How many entries the map holds (live or not yet swept).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.by_client.lock().map_or(0, |map| map.shares.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_a_share_of_its_own() {
        let shares = Shares::new(2);
        let held: Vec<_> = (0..2)
            .filter_map(|_| shares.of("hog").try_acquire_owned().ok())
            .collect();
        assert_eq!(held.len(), 2);
        assert!(
            shares.of("hog").try_acquire_owned().is_err(),
            "beyond its share"
        );
        assert!(shares.of("other").try_acquire_owned().is_ok());
        drop(held);
        assert!(shares.of("hog").try_acquire_owned().is_ok(), "freed");
    }

    #[test]
    fn shares_of_clients_that_left_are_not_kept() {
        let shares = Shares::new(1);
        let kept = shares.of("steady").try_acquire_owned().ok();
        for n in 0..10_000 {
            let share = shares.of(&format!("client-{n}"));
            let permit = share.try_acquire_owned();
            assert!(permit.is_ok());
        }
        assert!(
            shares.entries() <= SHARES_SWEPT_FROM,
            "{} entries",
            shares.entries()
        );
        assert!(kept.is_some());
        assert!(
            shares.of("steady").try_acquire_owned().is_err(),
            "a live share survives the sweeps"
        );
    }
}
