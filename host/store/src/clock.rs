//! Where the store's time comes from: the wall clock, or a clock a test moves by hand, so
//! deadlines, backoff and quarantine are tested without waiting for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use hotswap_protocol::UnixMillis;

pub trait Clock: Send + Sync {
    fn now(&self) -> UnixMillis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        UnixMillis::now()
    }
}

/// A clock that moves only when told; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// Starts at the wall clock's now.
    pub fn new() -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(UnixMillis::now().0)))
    }

    /// Moves the time on by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}
