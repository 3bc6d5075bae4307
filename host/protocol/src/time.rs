//! Points in time. The API speaks seconds since the Unix epoch; deadlines and backoff inside the
//! server are kept in milliseconds. Each has its own type, so one is never read as the other.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch: every time the API shows (`createdAt`, `lastSeen`, `at`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct UnixSeconds(pub i64);

/// Milliseconds since the Unix epoch: deadlines, backoff and the store's clock.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The wall clock now.
    pub fn now() -> UnixMillis {
        UnixMillis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        )
    }

    /// The same instant in whole seconds, as the API shows it.
    pub fn seconds(self) -> UnixSeconds {
        UnixSeconds(self.0.div_euclid(1000))
    }

    /// This instant moved by `ms` milliseconds.
    pub fn plus_ms(self, ms: i64) -> UnixMillis {
        UnixMillis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to this instant (negative when `earlier` is later).
    pub fn since(self, earlier: UnixMillis) -> i64 {
        self.0 - earlier.0
    }
}

impl UnixSeconds {
    /// Whole seconds from `earlier` to this instant, never below zero.
    pub fn seconds_since(self, earlier: UnixSeconds) -> u32 {
        u32::try_from((self.0 - earlier.0).max(0)).unwrap_or(u32::MAX)
    }
}

impl std::fmt::Display for UnixSeconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
