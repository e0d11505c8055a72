//! Connections that have not logged in yet ("startups", as sshd calls them): bounded in all
//! and per source address, so a flood of idle connections from one address closes at once
//! instead of filling the gateway's slots and locking everyone else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts of connections not logged in yet.
#[derive(Debug)]
pub struct Startups {
    total_max: usize,
    per_source_max: usize,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One connection's place among the startups; given back when dropped (at login, or when the
/// connection ends first).
#[derive(Debug)]
pub struct StartupSlot {
    startups: Arc<Startups>,
    source: IpAddr,
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Too many connections not logged in yet, in all.
    Total,
    /// Too many from this source address.
    Source,
}

impl Startups {
    pub fn new(total_max: usize, per_source_max: usize) -> Arc<Self> {
        Arc::new(Self { total_max, per_source_max, counts: Mutex::new((0, HashMap::new())) })
    }

    /// A place for a new connection from `source`, or why there is none.
    ///
    /// # Errors
    /// [`Full`] when the total or the source's limit is reached.
    pub fn try_start(self: &Arc<Self>, source: IpAddr) -> Result<StartupSlot, Full> {
        let Ok(mut c) = self.counts.lock() else { return Err(Full::Total) };
        let (total, by_source) = &mut *c;
        if *total >= self.total_max {
            return Err(Full::Total);
        }
        let n = by_source.entry(source).or_default();
        if *n >= self.per_source_max {
            return Err(Full::Source);
        }
        *n += 1;
        *total += 1;
        Ok(StartupSlot { startups: self.clone(), source })
    }

    /// Connections not logged in yet.
    pub fn len(&self) -> usize {
        self.counts.lock().map(|c| c.0).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for StartupSlot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.startups.counts.lock() {
            let (total, by_source) = &mut *c;
            *total = total.saturating_sub(1);
            if let Some(n) = by_source.get_mut(&self.source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    by_source.remove(&self.source);
                }
            }
        }
    }
}

/// At most one event per `every`: keeps a flood's log lines from flooding the log.
#[derive(Debug)]
pub struct Throttle {
    every: std::time::Duration,
    last: Mutex<Option<std::time::Instant>>,
}

impl Throttle {
    pub const fn new(every: std::time::Duration) -> Self {
        Self { every, last: Mutex::new(None) }
    }

    /// Whether an event may happen now (and, if so, it counts as the last one).
    pub fn allow(&self) -> bool {
        let Ok(mut last) = self.last.lock() else { return false };
        let now = std::time::Instant::now();
        if last.is_some_and(|l| now.duration_since(l) < self.every) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn one_source_cannot_take_every_place() {
        let s = Startups::new(5, 2);
        let a1 = s.try_start(ip("127.0.0.2")).expect("first");
        let _a2 = s.try_start(ip("127.0.0.2")).expect("second");
        assert_eq!(s.try_start(ip("127.0.0.2")).err(), Some(Full::Source));
        // Another source still gets in.
        let _b = s.try_start(ip("127.0.0.1")).expect("another source");
        drop(a1);
        let _a3 = s.try_start(ip("127.0.0.2")).expect("a place given back is reused");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn a_throttle_lets_one_through_per_period() {
        let t = Throttle::new(std::time::Duration::from_secs(60));
        assert!(t.allow());
        assert!(!t.allow());
    }

    #[test]
    fn the_total_is_bounded_and_places_come_back() {
        let s = Startups::new(2, 10);
        let a = s.try_start(ip("10.0.0.1")).expect("1");
        let _b = s.try_start(ip("10.0.0.2")).expect("2");
        assert_eq!(s.try_start(ip("10.0.0.3")).err(), Some(Full::Total));
        drop(a);
        assert!(s.try_start(ip("10.0.0.3")).is_ok());
    }
}
