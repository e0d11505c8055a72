//! The whole Slack flow with the real binary, a real OpenSSH sshd and the real `ssh` client:
//! `/breakglass request` in the channel, two approvals clicked on the card, the connect line
//! to the requester alone, a session through the gateway, a revoke clicked while it runs, and
//! the audit summary in the card's thread with the commands that ran. Slack's Web API is the
//! local fake; every request to the bot is signed exactly as Slack signs it.

use e2e::fake_slack::{Call, FakeSlack, command_body};
use e2e::gateway::{SLACK_CHANNEL, World, WorldOptions};

#[test]
fn request_approve_connect_revoke_and_summary_through_slack() {
    let rt = e2e::background_runtime();
    let fake = rt.block_on(FakeSlack::start());
    let w = World::with(WorldOptions {
        slack_api: Some(fake.api_url.clone()),
        ..WorldOptions::default()
    });

    // The request, from the incident channel.
    let card = w.slack_request(
        &fake,
        &format!("request db-1 --as {} --for 30m payments down, checking the db", w.login),
    );
    let (code, ts) = (card.code.clone(), card.ts.clone());

    // Two approvals on the card.
    for who in ["U0BOB", "U0CAROL"] {
        assert_eq!(w.slack_click(who, &card, "breakglass_approve"), 200);
    }
    let connect = fake.wait_call("the connect line", |c| c.method == "chat.postEphemeral");
    assert_eq!(connect.body["user"], "U0ALICE");
    assert!(connect.text().contains(&format!("{code}@")), "{}", connect.text());

    // The session through the real gateway.
    // Its first line arrives before the revoke (a revoke in the same process cuts at once).
    let (child, stdout) = w.printing(&code, "session-started");
    fake.wait_call("the session-live note", |c| {
        c.body["thread_ts"] == ts.as_str() && c.text().contains("Session live")
    });
    let card_now = fake.calls_to("chat.update").last().map(Call::text).unwrap_or_default();
    assert!(
        card_now.contains("breakglass_revoke"),
        "approvers can revoke a live session: {card_now}"
    );

    // bob revokes from the card: the session is cut.
    assert_eq!(w.slack_click("U0BOB", &card, "breakglass_revoke"), 200);
    let out = child.wait_with_output().expect("ssh ends");
    let printed = stdout.lock().map(|b| b.clone()).unwrap_or_default();
    let seen =
        String::from_utf8_lossy(&printed).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(seen.contains("session-started") && seen.contains("revoked by bob"), "{seen}");

    // The summary, once, in the thread.
    let summary = fake.wait_call("the summary", |c| {
        c.body["thread_ts"] == ts.as_str() && c.text().contains("Session summary")
    });
    let text = summary.text();
    for needle in [
        code.as_str(),
        "revoked by bob",
        "echo session-started; sleep 30",
        "signature verifies",
        "alice",
        "bob",
        "carol",
    ] {
        assert!(text.contains(needle), "summary lacks {needle}: {text}");
    }
    // A barrier instead of a sleep: a later request's card comes out of a sync pass that ran
    // after the summary (the finished thread, were it due again, would go first in that pass).
    let (s, v) = w.slack_post(
        "/slack/commands",
        &command_body("U0ALICE", SLACK_CHANNEL, &format!("request db-1 --as {} barrier", w.login)),
    );
    assert_eq!(s, 200, "{v}");
    let later = v["text"].as_str().unwrap_or_default().split('`').nth(1).expect("code").to_owned();
    fake.wait_call("the later card", |c| {
        c.method == "chat.postMessage" && c.text().contains(&later)
    });
    let summaries = fake
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.text().contains("Session summary"))
        .count();
    assert_eq!(summaries, 1, "exactly one summary");
}
