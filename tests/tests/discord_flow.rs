//! The whole Discord flow with the real binary, a real OpenSSH sshd and the real `ssh`
//! client: `/breakglass request` in the channel, two approvals clicked on the card, the
//! connect line to the requester alone, a session through the gateway, a revoke clicked while
//! it runs, and the audit summary in the card's thread. Discord's REST API is the local fake;
//! every interaction is signed with the test application key exactly as Discord signs them.

use std::time::Duration;

use e2e::fake_discord::{Call, FakeDiscord, command, component};
use e2e::gateway::{DISCORD_CHANNEL, World, WorldOptions};
use serde_json::json;

const ALICE: &str = "1010000000000000001";

fn wait_for(fake: &FakeDiscord, what: &str, pred: impl Fn(&Call) -> bool) -> Call {
    test_util::wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || fake.calls().into_iter().find(|c| pred(c)),
        || format!("no Discord call for {what}; calls: {:#?}", fake.calls()),
    )
}

#[test]
fn request_approve_connect_revoke_and_summary_through_discord() {
    let rt = e2e::background_runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let w = World::with(WorldOptions {
        discord_api: Some(fake.base.clone()),
        ..WorldOptions::default()
    });
    let mut n = 1_600_000_000_000_000_000u64;
    let mut next = || {
        n += 1;
        n
    };

    let (s, v) = w.discord_post(&command(
        next(),
        ALICE,
        DISCORD_CHANNEL,
        "request",
        &[("host", "db-1"), ("reason", "payments down"), ("login", &w.login), ("duration", "30m")],
    ));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["flags"], 64, "private answer: {v}");
    let text = v["data"]["content"].as_str().unwrap_or_default().to_owned();
    let code = text.split_whitespace().nth(1).expect("code").to_owned();
    let id = w.status(&code)["id"].as_str().expect("id").to_owned();
    let card = wait_for(&fake, "the card", |c| {
        c.method == "POST" && c.path == format!("channels/{DISCORD_CHANNEL}/messages")
    });
    let message = card.answer_id.clone().expect("card id");
    let thread = wait_for(&fake, "the thread", |c| c.path.ends_with("/threads"))
        .answer_id
        .expect("thread id");

    for who in ["1010000000000000002", "1010000000000000003"] {
        let (s, v) = w.discord_post(&component(
            next(),
            who,
            DISCORD_CHANNEL,
            &message,
            &format!("breakglass_approve:{id}"),
        ));
        assert_eq!((s, v["type"].as_u64()), (200, Some(6)), "{v}");
    }
    let connect = wait_for(&fake, "the connect line", |c| c.path.starts_with("webhooks/"));
    assert_eq!(
        connect.body["flags"], 64,
        "ephemeral, to the requester's own interaction: {}",
        connect.body
    );
    assert!(
        connect.body["content"].as_str().unwrap_or_default().contains(&format!("{code}@")),
        "{}",
        connect.body
    );

    // Its first line arrives before the revoke (a revoke in the same process cuts at once).
    let (child, stdout) = w.printing(&code, "discord-session");
    wait_for(&fake, "session live in the thread", |c| {
        c.path == format!("channels/{thread}/messages")
            && c.body["content"].as_str().unwrap_or_default().contains("Session live")
    });

    let (s, _) = w.discord_post(&component(
        next(),
        "1010000000000000002",
        DISCORD_CHANNEL,
        &message,
        &format!("breakglass_revoke:{id}"),
    ));
    assert_eq!(s, 200);
    let out = child.wait_with_output().expect("ssh ends");
    let printed = stdout.lock().map(|b| b.clone()).unwrap_or_default();
    let seen =
        String::from_utf8_lossy(&printed).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(seen.contains("discord-session") && seen.contains("revoked by bob"), "{seen}");

    let summary = wait_for(&fake, "the summary", |c| {
        c.path == format!("channels/{thread}/messages")
            && c.body["content"].as_str().unwrap_or_default().contains("Session summary")
    });
    let text = summary.body["content"].as_str().unwrap_or_default().to_owned();
    for needle in
        [code.as_str(), "revoked by bob", "echo discord\\-session; sleep 30", "signature verifies"]
    {
        assert!(text.contains(needle), "summary lacks {needle}: {text}");
    }
    // A barrier instead of a sleep: a later request's card comes out of a sync pass that ran
    // after the summary (the finished thread, were it due again, would go first in that pass).
    let (s, v) = w.discord_post(&command(
        next(),
        ALICE,
        DISCORD_CHANNEL,
        "request",
        &[("host", "db-1"), ("reason", "barrier"), ("login", &w.login), ("duration", "30m")],
    ));
    assert_eq!(s, 200, "{v}");
    let later = v["data"]["content"].as_str().unwrap_or_default().split_whitespace().nth(1);
    let later = later.expect("code").to_owned();
    wait_for(&fake, "the later card", |c| {
        c.method == "POST"
            && c.path == format!("channels/{DISCORD_CHANNEL}/messages")
            && c.body.to_string().contains(&later)
    });
    let summaries = fake
        .calls()
        .into_iter()
        .filter(|c| c.body["content"].as_str().unwrap_or_default().contains("Session summary"))
        .count();
    assert_eq!(summaries, 1, "exactly one summary");
    for c in fake.calls().into_iter().filter(|c| c.method != "PUT" && !c.path.ends_with("/threads"))
    {
        assert_eq!(c.body["allowed_mentions"]["parse"], json!([]), "{} {}", c.method, c.path);
    }
}
