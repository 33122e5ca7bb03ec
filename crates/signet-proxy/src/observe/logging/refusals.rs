//! How many records of unauthenticated refusals (and replays) are written.
//!
//! A refusal that no verified key stands behind (a malformed proof, an
//! unknown key, a bad signature, a stale timestamp, a target or method the
//! proxy never forwards) costs its sender nothing, and so does a replay: its
//! signatures verify, but whoever holds a copy of the proof can send it
//! again and again. A flood of them would otherwise cost us a log line each:
//! CPU, the log queue shared with the records that matter, and whatever the
//! log pipeline charges or drops (journald's rate limit drops the next lines
//! whoever wrote them). So at most `--refusal-log-limit` of them are written
//! per second; the rest are counted, and once a second one `"refusals not
//! logged"` record says how many. Every refusal is still counted in the
//! metrics, and the other refusals of verified clients (policy, rate limits,
//! upstream failures) are always logged: someone accountable stands behind
//! those.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The limit in force, set once by [`super::init`]; none before that (every
/// refusal is logged).
static INSTALLED: OnceLock<RefusalLimit> = OnceLock::new();

/// Installs the limit (`0`: none). Only the first call counts.
pub(super) fn install(per_second: u64) {
    let _ = INSTALLED.set(RefusalLimit::new(per_second));
}

/// Whether the record of an unauthenticated refusal may be written now;
/// if not, it is counted for the next report.
pub(crate) fn admit() -> bool {
    INSTALLED.get().is_none_or(RefusalLimit::admit)
}

/// Refusal records not written since start. Never decreases.
pub fn unlogged_total() -> u64 {
    INSTALLED
        .get()
        .map_or(0, |limit| limit.total.load(Ordering::Relaxed))
}

/// Writes one `"refusals not logged"` record per second in which some were
/// held back, with how many. Runs until dropped; returns at once when no
/// limit is installed.
pub async fn report_unlogged() {
    let Some(limit) = INSTALLED.get().filter(|limit| limit.per_second > 0) else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let count = limit.take_unreported();
        if count > 0 {
            tracing::warn!(
                count,
                limit_per_second = limit.per_second,
                "refusals not logged"
            );
        }
    }
}

/// A fixed window of one second: the first `per_second` admitted, the rest
/// counted.
#[derive(Debug)]
pub(super) struct RefusalLimit {
    per_second: u64,
    start: Instant,
    /// The second (since `start`) `admitted` counts for.
    window: AtomicU64,
    admitted: AtomicU64,
    /// Held back since the last report.
    unreported: AtomicU64,
    /// Held back since start.
    total: AtomicU64,
}

impl RefusalLimit {
    pub(super) fn new(per_second: u64) -> Self {
        RefusalLimit {
            per_second,
            start: Instant::now(),
            window: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    fn admit(&self) -> bool {
        self.per_second == 0 || self.admit_at(self.start.elapsed().as_secs())
    }

    /// Lock-free and approximate at a window's edge: two threads crossing
    /// into a new second together may admit a few more than the limit,
    /// never fewer.
    fn admit_at(&self, second: u64) -> bool {
        let window = self.window.load(Ordering::Relaxed);
        if window != second
            && self
                .window
                .compare_exchange(window, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.admitted.store(0, Ordering::Relaxed);
        }
        if self.admitted.fetch_add(1, Ordering::Relaxed) < self.per_second {
            return true;
        }
        self.unreported.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        false
    }

    fn take_unreported(&self) -> u64 {
        self.unreported.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_records_of_each_second_are_admitted_and_the_rest_counted() {
        let limit = RefusalLimit::new(3);
        let first: Vec<bool> = (0..5).map(|_| limit.admit_at(0)).collect();
        assert_eq!(first, [true, true, true, false, false]);
        assert_eq!(limit.take_unreported(), 2);
        assert_eq!(limit.take_unreported(), 0, "a count is reported once");
        let next: Vec<bool> = (0..4).map(|_| limit.admit_at(1)).collect();
        assert_eq!(next, [true, true, true, false]);
        // A second with nothing in it changes nothing; the one after starts
        // afresh.
        assert!(limit.admit_at(5));
        assert_eq!(limit.take_unreported(), 1);
        assert_eq!(limit.total.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn zero_admits_everything() {
        let limit = RefusalLimit::new(0);
        assert!((0..10_000).all(|_| limit.admit()));
        assert_eq!(limit.take_unreported(), 0);
    }
}
