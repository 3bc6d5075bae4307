//! How often a request that does not get through is tried, and how long between tries.

use std::time::Duration;

/// Tries of a request that does not get through, with a pause that grows by `step` each time up
/// to `max_pause`. A refusal is never tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first included; 1 tries once.
    pub attempts: u32,
    pub step: Duration,
    pub max_pause: Duration,
}

impl Retry {
    /// One try.
    pub const ONCE: Retry = Retry {
        attempts: 1,
        step: Duration::ZERO,
        max_pause: Duration::ZERO,
    };

    /// The pause after try `attempt` (1-based).
    pub fn pause(&self, attempt: u32) -> Duration {
        (self.step * attempt).min(self.max_pause)
    }
}

impl Default for Retry {
    /// 50 tries over about 45 s: long enough for a server to restart.
    fn default() -> Self {
        Retry {
            attempts: 50,
            step: Duration::from_millis(100),
            max_pause: Duration::from_secs(1),
        }
    }
}
