//! Time as an input: the [`Clock`] port and the system clock.

use super::ids::Timestamp;

/// Where adapters get "now" from, so tests can fix it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;

    /// How long from now until `deadline`, zero once it passed. The default counts in the
    /// whole seconds of [`Clock::now`]; the system clock counts to the nanosecond, so a timer
    /// set from it fires at the deadline rather than up to a second after it.
    fn until(&self, deadline: Timestamp) -> std::time::Duration {
        let secs = deadline.unix().saturating_sub(self.now().unix());
        std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }
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

    fn until(&self, deadline: Timestamp) -> std::time::Duration {
        let Ok(at) = u64::try_from(deadline.unix()) else { return std::time::Duration::ZERO };
        match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(at)) {
            Some(at) => at.duration_since(std::time::SystemTime::now()).unwrap_or_default(),
            // Past what the system time can hold: as good as never.
            None => std::time::Duration::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_system_clock_counts_to_the_deadline_below_the_second() {
        let clock = SystemClock;
        let next = clock.now().plus_secs(2);
        let wall_left = || {
            (std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(next.unix()).unwrap_or(0)))
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        };
        let most = wall_left();
        let left = clock.until(next);
        let least = wall_left();
        // What is left by the wall clock to the nanosecond, not in whole seconds (which
        // would say 2 s for most of the current second).
        assert!(least <= left && left <= most, "{least:?} <= {left:?} <= {most:?}");
        assert_eq!(clock.until(clock.now().plus_secs(-1)), Duration::ZERO);
        assert_eq!(clock.until(Timestamp::from_unix(i64::MIN)), Duration::ZERO);
        assert!(clock.until(Timestamp::from_unix(i64::MAX)) > Duration::from_secs(1 << 40));
    }
}
