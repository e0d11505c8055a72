//! Time as an input: the [`Clock`] port and the system clock.

use super::ids::Timestamp;

/// Where adapters get "now" from, so tests can fix it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}
