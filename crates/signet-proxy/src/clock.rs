//! The source of `now` (unix seconds) for verification.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the proxy reads the time. The system clock in production; a fixed,
/// settable time in tests that replay the spec's vectors.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The wall clock, floored to seconds.
    #[default]
    System,
    /// A time set by the test.
    Fixed(Arc<AtomicU64>),
}

impl Clock {
    /// A fixed clock at `now`.
    pub fn fixed(now: u64) -> Self {
        Clock::Fixed(Arc::new(AtomicU64::new(now)))
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Clock::Fixed(now) => now.load(Ordering::Relaxed),
        }
    }

    /// Moves a fixed clock; does nothing to the system clock.
    pub fn set(&self, now: u64) {
        if let Clock::Fixed(cell) = self {
            cell.store(now, Ordering::Relaxed);
        }
    }
}
