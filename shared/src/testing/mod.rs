//! Builders and fakes for tests: a settable clock, an in-memory store ([`memory`]), the fixed
//! keys and instant of the test world, and parsers of test values that must be valid. The test
//! world itself (users, scopes, keys, tokens) lives in the `test-util` crate
//! (`test_util::world`), written once for every suite.

#[cfg(feature = "storage")]
pub mod db;
#[cfg(feature = "storage")]
pub mod memory;

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

/// What a gateway says of a session it opened (tests that drive the core by hand).
pub fn session_started() -> Box<event::SessionStarted> {
    Box::new(event::SessionStarted {
        approvers: Vec::new(),
        cert_serial: "1".to_owned(),
        cert_valid_before: Timestamp::from_unix(T0 + 3600),
        peer: Some("127.0.0.1:2222".to_owned()),
    })
}

/// What a gateway says of a session that its user closed after a minute (a recording of
/// nothing, signed by no key: tests that check integrity sign their own).
pub fn session_ended() -> Box<event::SessionEnded> {
    let (started_at, ended_at) = (Timestamp::from_unix(T0 + 120), Timestamp::from_unix(T0 + 180));
    Box::new(event::SessionEnded {
        end_reason: EndReason::Closed,
        recording: "test.cast".to_owned(),
        recording_sha256: hex::encode([0u8; 32]),
        recording_signature: approval::SignatureBytes::from_bytes([0; 64]),
        recording_key_id: KeyId::of(&[0; 32]),
        recording_signature_version: 2,
        started_at,
        ended_at,
        commands: 0,
        ended: event::Ended::Seen(event::SeenEnd {
            revoked_by: None,
            recording_error: None,
            bytes_in: 0,
            bytes_out: 0,
            exit_status: Some(0),
            duration_secs: 60,
        }),
    })
}
