//! Chat posts exactly once across bot replicas killed mid-post: two `breakglass bot`
//! processes on one PostgreSQL with Slack (the fake). The fake keeps a chosen post and never
//! answers it, the replica waiting on it is SIGKILLed (the post is out, its progress is not
//! saved), and the other replica takes the thread over when the lease runs out: it finds the
//! post by the key in its metadata (`conversations.history` / `conversations.replies`) and
//! does not post it again.
//!
//! On Discord the card goes out again with the same `nonce` and `enforce_nonce`, and Discord
//! answers the first message instead of making a second.
//!
//! A click follows the same rule at the front door: replica A takes it and dies while its
//! approval waits on the database; the platform resends the same signed delivery to replica
//! B, which runs it (the delivery was taken and never done): one approval, one audit event,
//! and a further copy is a replay (401).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::cluster::{Cluster, ClusterOptions, slack_post_to, type_line};
use e2e::fake_discord::{self as discord, Call as DiscordCall, FakeDiscord};
use e2e::fake_slack::{Call, FakeSlack, Message};
use e2e::gateway::{DISCORD_CHANNEL, SLACK_CHANNEL};

/// alice's Discord user id.
const ALICE: &str = "1010000000000000001";

/// The lease (60 s) plus room for the next claim and pass.
const TAKEOVER: Duration = Duration::from_secs(100);

/// How long a replica may take to take a delivery and block on the lock.
const TAKEN: Duration = Duration::from_secs(20);

/// Past `bot::chat::DELIVERY_STALE_SECS` (10 s): a taken click never done is a dead
/// replica's.
const STALE: Duration = Duration::from_secs(11);

/// Which bot made `call` (bot `i` posts as `xoxb-bot-{i}`).
fn bot_of(call: &Call) -> usize {
    call.token
        .as_deref()
        .and_then(|t| t.strip_prefix("xoxb-bot-"))
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("a call with an unknown token: {call:?}"))
}

fn start(fake: &FakeSlack) -> Cluster {
    Cluster::start(ClusterOptions {
        gateways: 1,
        slack_api: Some(fake.api_url.clone()),
        ..ClusterOptions::default()
    })
}

/// Waits until `sql` (one count) answers `want`.
fn wait_count(c: &Cluster, sql: &str, want: i64, within: Duration) {
    test_util::wait_until(
        within,
        Duration::from_millis(200),
        || (c.numbers(sql).first() == Some(&want)).then_some(()),
        || format!("{sql} never answered {want}: {:?}\n{}", c.numbers(sql), c.logs()),
    );
}

/// The cards of `code` in the channel.
fn cards(fake: &FakeSlack, code: &str) -> Vec<Message> {
    fake.messages()
        .into_iter()
        .filter(|m| m.thread_ts.is_none() && m.body.to_string().contains(code))
        .collect()
}

#[test]
fn a_replica_killed_mid_summary_leaves_exactly_one_summary_and_one_card() {
    let rt = e2e::background_runtime();
    let fake = rt.block_on(FakeSlack::start());
    let mut c = start(&fake);
    let code = c.slack_request(0);
    c.act(1, &code, "approve", "bob");
    c.act(1, &code, "approve", "carol");
    fake.stall_after_posting("Session summary");

    let (mut child, _out, mut stdin) = c.shell(0, &code);
    assert!(type_line(&mut stdin, "exit"));
    let _ = child.wait();
    let stalled = fake.wait_call("the summary post", |call| {
        call.method == "chat.postMessage" && call.text().contains("Session summary")
    });
    let holder = bot_of(&stalled);
    let other = 1 - holder;
    // The summary is out; the replica that posted it dies before saving that.
    c.bots[holder].kill9();

    wait_count(&c, "SELECT count(*)::bigint FROM chat_threads WHERE summary_sent", 1, TAKEOVER);
    let card = cards(&fake, &code);
    assert_eq!(card.len(), 1, "one card: {card:#?}");
    let summaries: Vec<Message> = fake
        .messages()
        .into_iter()
        .filter(|m| m.thread_ts.as_deref() == Some(card[0].ts.as_str()))
        .filter(|m| m.body.to_string().contains("Session summary"))
        .collect();
    assert_eq!(summaries.len(), 1, "exactly one summary in the thread: {summaries:#?}");
    // The survivor looked the thread up, with metadata.
    let looked = fake.calls_to("conversations.replies");
    assert!(
        looked.iter().any(|l| bot_of(l) == other && l.body["include_all_metadata"] == "true"),
        "the replica taking over never read the thread: {looked:#?}"
    );
    // Nothing lost: every line of the thread is there once (approved ×2, granted, live,
    // summary).
    let thread: Vec<String> = fake
        .messages()
        .into_iter()
        .filter(|m| m.thread_ts.as_deref() == Some(card[0].ts.as_str()))
        .map(|m| m.metadata["event_payload"]["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut unique = thread.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), thread.len(), "a thread line twice: {thread:?}");
    assert!(thread.len() >= 5, "lines lost: {:#?}", fake.messages());
}

#[test]
fn a_replica_killed_mid_card_leaves_exactly_one_card_with_its_thread() {
    let rt = e2e::background_runtime();
    let fake = rt.block_on(FakeSlack::start());
    let mut c = start(&fake);
    // The first post of the request is its card: kept, never answered.
    fake.stall_after_posting("Break-glass request");
    let code = c.slack_request(0);
    let stalled = fake.wait_call("the card post", |call| {
        call.method == "chat.postMessage" && call.text().contains(&code)
    });
    let holder = bot_of(&stalled);
    c.bots[holder].kill9();
    let other = 1 - holder;

    wait_count(
        &c,
        "SELECT count(*)::bigint FROM chat_threads WHERE message_id IS NOT NULL",
        1,
        TAKEOVER,
    );
    c.act(other, &code, "approve", "bob");
    let card = cards(&fake, &code);
    assert_eq!(card.len(), 1, "one card: {card:#?}");
    let ts = card[0].ts.clone();
    // The survivor carries on with that card: its approval line goes under it.
    fake.wait_call("bob's approval in the thread", |call| {
        call.method == "chat.postMessage"
            && call.body["thread_ts"] == ts.as_str()
            && call.text().contains("bob")
    });
    assert_eq!(cards(&fake, &code).len(), 1, "one card: {:#?}", fake.messages());
    let looked = fake.calls_to("conversations.history");
    assert!(looked.iter().any(|l| bot_of(l) == other), "no lookup: {looked:#?}");
}

#[test]
fn a_click_resent_after_its_replica_died_mid_approval_approves_once() {
    let rt = e2e::background_runtime();
    let fake = rt.block_on(FakeSlack::start());
    let mut c = start(&fake);
    let code = c.slack_request(0);
    let id = c.status(&code)["id"].as_str().expect("id").to_owned();
    let approved = format!(
        "SELECT count(*)::bigint FROM audit_events WHERE kind = 'approved' AND request_id = '{id}'"
    );

    // Writes to requests wait behind an open transaction: bot A's approval will hang there.
    let mut lock = Command::new("psql")
        .arg(&c.database_url)
        .args(["-q", "-v", "ON_ERROR_STOP=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("psql");
    let mut sql = lock.stdin.take().expect("psql stdin");
    sql.write_all(b"BEGIN;\nLOCK TABLE requests IN SHARE MODE;\n").expect("lock");
    sql.flush().expect("flush");
    wait_count(
        &c,
        "SELECT count(*)::bigint FROM pg_locks l JOIN pg_class r ON r.oid = l.relation \
         WHERE r.relname = 'requests' AND l.mode = 'ShareLock' AND l.granted",
        1,
        Duration::from_secs(10),
    );

    // bob clicks Approve; Slack delivers it to bot A.
    let ts = e2e::unix_now();
    let body =
        e2e::fake_slack::click_body("U0BOB", SLACK_CHANNEL, "1.1", "breakglass_approve", &id);
    let (addr, copy) = (c.bots[0].addr.clone(), body.clone());
    let first = std::thread::spawn(move || {
        slack_post_to(&reqwest::blocking::Client::new(), &addr, "/slack/interactions", &copy, ts)
    });
    // A took the delivery and its approval waits on the lock: A dies there.
    wait_count(&c, "SELECT count(*)::bigint FROM chat_deliveries WHERE NOT done", 1, TAKEN);
    wait_count(
        &c,
        "SELECT count(*)::bigint FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock'",
        1,
        TAKEN,
    );
    c.bots[0].kill9();
    assert_eq!(first.join().expect("the first delivery").0, 0, "A never answered");
    sql.write_all(b"ROLLBACK;\n").expect("unlock");
    drop(sql);
    let _ = lock.wait();
    assert_eq!(c.numbers(&approved), [0], "A's approval never committed");

    // Slack resends the same delivery (same signature and timestamp), to bot B, once the
    // taken delivery is stale.
    std::thread::sleep(STALE);
    let (s, v) = c.slack_post(1, "/slack/interactions", &body, ts);
    assert_eq!(s, 200, "the resent click runs on B: {v}\n{}", c.logs());
    assert_eq!(c.numbers(&approved), [1], "exactly one approval event");
    let (_, now) = c.api(1, "alice", "GET", &format!("/api/v1/requests/{code}"), None);
    assert_eq!(now["approvals"].as_array().map(Vec::len), Some(1), "{now}");
    // The replay table is shared (the command and the click, one row each) and says done: a
    // further copy is a replay.
    assert_eq!(c.numbers("SELECT count(*)::bigint FROM chat_deliveries"), [2]);
    assert_eq!(c.numbers("SELECT count(*)::bigint FROM chat_deliveries WHERE NOT done"), [0]);
    let (s, _) = c.slack_post(1, "/slack/interactions", &body, ts);
    assert_eq!(s, 401, "a copy of a finished click is a replay");
    assert_eq!(c.numbers(&approved), [1]);
}

/// Which bot made a Discord call (bot `i` calls as `discord-bot-{i}`).
fn discord_bot_of(call: &DiscordCall) -> usize {
    call.token
        .as_deref()
        .and_then(|t| t.strip_prefix("discord-bot-"))
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("a Discord call with an unknown token: {call:?}"))
}

#[test]
fn on_discord_a_replica_killed_mid_card_leaves_exactly_one_card_with_its_thread() {
    let rt = e2e::background_runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let mut c = Cluster::start(ClusterOptions {
        gateways: 1,
        discord_api: Some(fake.base.clone()),
        ..ClusterOptions::default()
    });
    fake.stall_after_posting("Break-glass request");
    let (s, v) = c.discord_post(
        0,
        &discord::command(
            1_600_000_000_000_000_001,
            ALICE,
            DISCORD_CHANNEL,
            "request",
            &[("host", "db-1"), ("reason", "replica chat test"), ("login", &c.login)],
        ),
    );
    assert_eq!(s, 200, "{v}");
    let text = v["data"]["content"].as_str().unwrap_or_default().to_owned();
    let code = text.split_whitespace().nth(1).expect("code").to_owned();
    let cards = |f: &FakeDiscord| -> Vec<String> {
        f.made()
            .into_iter()
            .filter(|m| m.channel == DISCORD_CHANNEL && m.body.to_string().contains(&code))
            .map(|m| m.id)
            .collect()
    };
    let stalled = test_util::wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            fake.calls().into_iter().find(|call| {
                call.method == "POST"
                    && call.path == format!("channels/{DISCORD_CHANNEL}/messages")
                    && call.body.to_string().contains(&code)
            })
        },
        || format!("no card post: {:#?}", fake.calls()),
    );
    let holder = discord_bot_of(&stalled);
    c.bots[holder].kill9();
    let other = 1 - holder;

    wait_count(
        &c,
        "SELECT count(*)::bigint FROM chat_threads WHERE message_id IS NOT NULL",
        1,
        TAKEOVER,
    );
    c.act(other, &code, "approve", "bob");
    let card = cards(&fake);
    assert_eq!(card.len(), 1, "one card: {:#?}", fake.made());
    // The survivor carries on with that card: its thread, and bob's line in it.
    test_util::wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            fake.made()
                .into_iter()
                .find(|m| m.channel == card[0] && m.body.to_string().contains("bob"))
        },
        || format!("no approval line in the card's thread: {:#?}", fake.made()),
    );
    assert_eq!(cards(&fake).len(), 1, "one card: {:#?}", fake.made());
    // The second create carried the same nonce, enforced.
    let creates: Vec<DiscordCall> = fake
        .calls()
        .into_iter()
        .filter(|call| call.path == format!("channels/{DISCORD_CHANNEL}/messages"))
        .filter(|call| call.method == "POST" && call.body.to_string().contains(&code))
        .collect();
    assert_eq!(creates.len(), 2, "{creates:#?}");
    assert_eq!(creates[0].body["nonce"], creates[1].body["nonce"]);
    assert!(creates.iter().all(|c| c.body["enforce_nonce"] == true), "{creates:#?}");
    assert_eq!(discord_bot_of(&creates[1]), other);
}
