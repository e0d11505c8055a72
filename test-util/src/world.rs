//! The test world: one small cast of users, scopes and keys that every suite uses, so every
//! test reads the same way. It is written once, as config text ([`config_toml`]); the core's
//! tests get it through the real config loader ([`World`]), the bot's tests load the same
//! text, and the end-to-end gateway world reuses its users ([`users_toml`]).
//!
//! | name | kind | groups / scopes |
//! | --- | --- | --- |
//! | alice | human | oncall |
//! | bob, carol | human | dba (approvers of `prod-db`), oncall |
//! | dave | human | web (approver of nothing in `prod-db`) |
//! | erin | human | security (approver of `vault`, offline signatures only; reviewer) |
//! | ci-deploy | service | may request in `prod-db` |
//!
//! Scope `prod-db`: hosts `db-1`, `db-2`; logins `postgres` (default), `root`; max 1h,
//! default 30m; requesters `oncall`; approvers `dba`; quorum 2; channels [`SLACK_CHANNEL`]
//! and [`DISCORD_CHANNEL`]; approval timeout 15m. Scope `vault`: host `vault-1`; login `root`;
//! max 30m, default 15m; requesters `oncall`; approvers `security`; quorum 1; channel
//! `C0VAULT`; `require_offline_signature`.
//!
//! Keys: the bot's approval key is [`key`]`(1)`; bob, carol and erin have personal keys
//! `key(2)`, `key(3)`, `key(5)`, all pinned. Each principal's API token is [`token`]`(name)`.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};
use shared::core::approval::public_key_text;
use shared::core::request::{self, Fresh, NewRequest};
use shared::core::{
    Action, Approval, ApprovalSigner, GrantCode, Nonce, Origin, PinnedKeys, Policy, Reason,
    Request, RequestId, Timestamp,
};
pub use shared::testing::{T0, key};
use shared::testing::{host, name};

/// The Slack channel of `prod-db`, where incidents are.
pub const SLACK_CHANNEL: &str = "C0INCIDENT";
/// The Discord channel of `prod-db` (a Slack channel id cannot look like it).
pub const DISCORD_CHANNEL: &str = "1150000000000000001";

/// The users: name, groups, Slack id, Discord id.
const USERS: [(&str, &str, &str, &str); 5] = [
    ("alice", r#"["oncall"]"#, "U0ALICE", "1010000000000000001"),
    ("bob", r#"["dba", "oncall"]"#, "U0BOB", "1010000000000000002"),
    ("carol", r#"["dba", "oncall"]"#, "U0CAROL", "1010000000000000003"),
    ("dave", r#"["web"]"#, "U0DAVE", "1010000000000000004"),
    ("erin", r#"["security"]"#, "U0ERIN", "1010000000000000005"),
];

/// The API token of `who` (a user or `ci-deploy`).
pub fn token(who: &str) -> String {
    format!("bgt_test_token_of_{who}")
}

fn token_sha256(who: &str) -> String {
    hex::encode(Sha256::digest(token(who).as_bytes()))
}

/// The `[users.NAME]` tables and `[review]` (erin's group reviews), with `extra` lines added
/// to the named users' tables (e.g. `("alice", "ssh_keys = [...]")`).
pub fn users_toml(extra: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (who, groups, slack, discord) in USERS {
        out.push_str(&format!(
            "[users.{who}]\ndiscord_id = \"{discord}\"\nslack_id = \"{slack}\"\ngroups = {groups}\napi_token_sha256 = \"{}\"\n",
            token_sha256(who)
        ));
        for (_, line) in extra.iter().filter(|(name, _)| *name == who) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\n[review]\nreviewer_groups = [\"security\"]\n");
    out
}

/// The whole world as a config file (what the bot's tests run with).
pub fn config_toml() -> String {
    let pin = |seed: u8| public_key_text(&key(seed).verifying_key());
    format!(
        r#"
[gateway]
public_host = "gw.example"
public_port = 2222

[keys]
pinned_bot_keys = ["{bot}"]
[keys.pinned_approver_keys]
bob = ["{bob}"]
carol = ["{carol}"]
erin = ["{erin}"]

{users}
[service_accounts.ci-deploy]
token_sha256 = "{tci}"
scopes = ["prod-db"]

[scopes.prod-db]
hosts = {{ db-1 = "127.0.0.1:10022", db-2 = "127.0.0.1:10023" }}
logins = ["postgres", "root"]
max_duration = "1h"
default_duration = "30m"
approval_timeout = "15m"
requester_groups = ["oncall"]
approver_groups = ["dba"]
quorum = 2
channels = ["{SLACK_CHANNEL}", "{DISCORD_CHANNEL}"]

[scopes.vault]
hosts = {{ vault-1 = "127.0.0.1:10024" }}
logins = ["root"]
max_duration = "30m"
default_duration = "15m"
requester_groups = ["oncall"]
approver_groups = ["security"]
quorum = 1
channels = ["C0VAULT"]
require_offline_signature = true
"#,
        bot = pin(1),
        bob = pin(2),
        carol = pin(3),
        erin = pin(5),
        users = users_toml(&[]),
        tci = token_sha256("ci-deploy"),
    )
}

/// The world's config, loaded as the product loads a file.
///
/// # Panics
/// Never, unless the world above stops being a valid config.
pub fn config() -> shared::config::Config {
    shared::config::from_toml_str(&config_toml()).expect("the test world is a valid config")
}

/// The test world for the core: its policy and pinned keys, the bot's signer, personal
/// signers, and fresh ids for each request it opens.
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
        let config = config();
        let bot = ApprovalSigner::new(key(1));
        let pins = config.keys.approval_pins();
        let personal = [("bob", 2u8), ("carol", 3), ("erin", 5)]
            .into_iter()
            .map(|(who, seed)| (who.to_owned(), ApprovalSigner::new(key(seed))))
            .collect();
        Self { policy: config.policy, pins, bot, personal, counter: std::cell::Cell::new(0) }
    }

    /// The same world with another policy (keys unchanged): the gateway's own view in tests.
    pub fn with_policy(policy: Policy) -> Self {
        Self { policy, ..Self::new() }
    }

    /// The personal signer of bob, carol or erin.
    ///
    /// # Panics
    /// For anyone else.
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

    /// A `NewRequest` by `who` for host `h` over the API with a fixed reason.
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
