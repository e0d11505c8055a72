//! Builders and fakes for tests: a settable clock, the fixed keys and instant of the test
//! world, and parsers of test values that must be valid. The test world itself (users, scopes,
//! keys, tokens) lives in the `test-util` crate (`test_util::world`), written once for every
//! suite.

#[cfg(feature = "storage")]
pub mod db;

use std::sync::atomic::{AtomicI64, Ordering};

use ed25519_dalek::SigningKey;

use crate::core::*;

/// A clock tests can set and advance.
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn at(secs: i64) -> Self {
        Self(AtomicI64::new(secs))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn set(&self, secs: i64) {
        self.0.store(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix(self.0.load(Ordering::SeqCst))
    }
}

/// 2026-11-23T03:14:00Z, the start of every test incident.
pub const T0: i64 = 1_795_403_640;

pub fn name(s: &str) -> PrincipalName {
    PrincipalName::parse(s).expect("valid test name")
}
pub fn host(s: &str) -> HostName {
    HostName::parse(s).expect("valid test host")
}
pub fn login(s: &str) -> Login {
    Login::parse(s).expect("valid test login")
}
pub fn scope_name(s: &str) -> ScopeName {
    ScopeName::parse(s).expect("valid test scope")
}
pub fn dur(s: &str) -> GrantDuration {
    GrantDuration::parse(s).expect("valid test duration")
}

/// The fixed signing key with seed byte `n` repeated (bot = 1, bob = 2, carol = 3, erin = 5).
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}
