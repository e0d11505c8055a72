//! Builders and fakes for tests: a small world of users, scopes and keys, and a settable clock.
//!
//! The world (used across the test suites so every test reads the same way):
//!
//! | name | kind | groups / scopes |
//! | --- | --- | --- |
//! | alice | human | oncall |
//! | bob, carol | human | dba (approvers of `prod-db`), oncall |
//! | dave | human | web (approver of nothing in `prod-db`) |
//! | erin | human | security (approver of `vault`, offline signatures only) |
//! | ci-deploy | service | may request in `prod-db` |
//!
//! Scope `prod-db`: hosts `db-1`, `db-2`; logins `postgres` (default), `root`; max 1h,
//! default 30m; requesters `oncall`; approvers `dba`; quorum 2; channel `C0INCIDENT`;
//! approval timeout 15m. Scope `vault`: host `vault-1`; login `root`; max 30m; requesters
//! `oncall`; approvers `security`; quorum 1; `require_offline_signature`.

#[cfg(feature = "storage")]
pub mod db;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};

use ed25519_dalek::SigningKey;

use crate::core::request::{self, Fresh, NewRequest};
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
fn groups(gs: &[&str]) -> BTreeSet<GroupName> {
    gs.iter().map(|g| GroupName::parse(g).expect("valid test group")).collect()
}

/// The fixed signing key with seed byte `n` repeated (bot = 1, bob = 2, carol = 3, erin = 5).
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// The test world: policy, pinned keys, the bot's signer, personal signers.
#[derive(Debug)]
pub struct World {
    pub policy: Policy,
    pub pins: PinnedKeys,
    pub bot: ApprovalSigner,
    personal: BTreeMap<String, ApprovalSigner>,
    counter: std::cell::Cell<u8>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        let human = |n: &str, gs: &[&str]| Principal {
            name: name(n),
            kind: PrincipalKind::Human { groups: groups(gs) },
        };
        let principals = vec![
            human("alice", &["oncall"]),
            human("bob", &["dba", "oncall"]),
            human("carol", &["dba", "oncall"]),
            human("dave", &["web"]),
            human("erin", &["security"]),
            Principal {
                name: name("ci-deploy"),
                kind: PrincipalKind::Service { scopes: [scope_name("prod-db")].into() },
            },
        ];
        let prod = ScopePolicy {
            name: scope_name("prod-db"),
            hosts: [
                (host("db-1"), "127.0.0.1:10022".to_owned()),
                (host("db-2"), "127.0.0.1:10023".to_owned()),
            ]
            .into(),
            logins: vec![login("postgres"), login("root")],
            max_duration: dur("1h"),
            default_duration: dur("30m"),
            requester_groups: groups(&["oncall"]),
            approver_groups: groups(&["dba"]),
            quorum: 2,
            channels: ["C0INCIDENT".to_owned()].into(),
            require_offline_signature: false,
            approval_timeout: dur("15m"),
            forwarding: Forwarding::default(),
        };
        let vault = ScopePolicy {
            name: scope_name("vault"),
            hosts: [(host("vault-1"), "127.0.0.1:10024".to_owned())].into(),
            logins: vec![login("root")],
            max_duration: dur("30m"),
            default_duration: dur("15m"),
            requester_groups: groups(&["oncall"]),
            approver_groups: groups(&["security"]),
            quorum: 1,
            channels: BTreeSet::new(),
            require_offline_signature: true,
            approval_timeout: dur("15m"),
            forwarding: Forwarding::default(),
        };
        let bot = ApprovalSigner::new(key(1));
        let mut pins = PinnedKeys::new();
        pins.pin_bot(bot.verifying_key());
        let mut personal = BTreeMap::new();
        for (who, seed) in [("bob", 2u8), ("carol", 3), ("erin", 5)] {
            let s = ApprovalSigner::new(key(seed));
            pins.pin_personal(name(who), s.verifying_key());
            personal.insert(who.to_owned(), s);
        }
        Self {
            policy: Policy::new(principals, vec![prod, vault]),
            pins,
            bot,
            personal,
            counter: std::cell::Cell::new(0),
        }
    }

    /// The same world with another policy (keys unchanged): the gateway's own view in tests.
    pub fn with_policy(policy: Policy) -> Self {
        Self { policy, ..Self::new() }
    }

    /// The personal signer of bob, carol or erin.
    pub fn personal(&self, who: &str) -> &ApprovalSigner {
        self.personal.get(who).expect("bob, carol and erin have personal keys")
    }

    /// Distinct random parts for each request this world opens.
    pub fn fresh(&self) -> Fresh {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        Fresh {
            id: RequestId::from_uuid(uuid::Uuid::from_bytes([n; 16])),
            code: GrantCode::from_random([0xb0, 0x00, n]),
            nonce: Nonce::from_bytes([n; 32]),
        }
    }

    /// A `NewRequest` by `who` for `db-1` over the API with a fixed reason.
    pub fn ask(&self, who: &str, h: &str) -> NewRequest {
        NewRequest {
            requester: name(who),
            host: host(h),
            scope: None,
            login: None,
            duration: None,
            reason: Reason::parse("replica lag, need to kill a query").expect("valid reason"),
            origin: Origin::Api,
        }
    }

    /// Opens alice's default request for `db-1` at `T0`.
    pub fn open_default(&self) -> Request {
        request::open(
            &self.policy,
            self.ask("alice", "db-1"),
            self.fresh(),
            Timestamp::from_unix(T0),
        )
        .expect("the default request is allowed")
        .0
    }

    /// Applies `action` at `now`, panicking on refusal.
    #[track_caller]
    pub fn must(&self, req: &Request, action: Action, now: i64) -> Request {
        match request::apply(req, action, &self.policy, &self.pins, Timestamp::from_unix(now)) {
            Ok(t) => t.next,
            Err(e) => panic!("expected the action to pass, got {} ({e})", e.code()),
        }
    }

    /// A bot-signed approval of `req` by `who` at `at`.
    pub fn bot_approval(&self, req: &Request, who: &str, at: i64) -> Approval {
        self.bot.sign(req, &name(who), Timestamp::from_unix(at))
    }

    /// `req` approved by bob and carol through the bot at `T0 + 60`.
    pub fn approved(&self) -> Request {
        let r = self.open_default();
        let r = self.must(&r, Action::Approve(self.bot_approval(&r, "bob", T0 + 60)), T0 + 60);
        self.must(&r, Action::Approve(self.bot_approval(&r, "carol", T0 + 60)), T0 + 60)
    }
}
