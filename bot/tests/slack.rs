//! Slack end to end through the bot's real HTTP endpoints: slash commands and clicks signed
//! exactly as Slack signs them, the Web API answered by a local fake that records every call.
//! Sessions are simulated on the store here (the gateway's part is covered with a real sshd
//! in the end-to-end crate's Slack flow).

mod common;

use std::sync::Arc;

use common::{App, TestResult};
use e2e::fake_slack::{FakeSlack, click_body, command_body, sign};
use serde_json::Value;
use shared::config::Secret;
use shared::testing::db::{Backend, TestDb, run};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CHANNEL: &str = "C0INCIDENT";

/// The bot with Slack enabled, serving on a real socket, and the fake Slack.
struct Slack {
    app: App,
    fake: FakeSlack,
    url: String,
    http: reqwest::Client,
    recording_key: format::integrity::RecordingSigner,
}

impl Slack {
    async fn start(db: &TestDb) -> Self {
        let fake = FakeSlack::start().await;
        let mut app = App::new(db);
        let adapter = Arc::new(
            bot::slack::SlackAdapter::new(&fake.api_url, &Secret::new("xoxb-test-token".into()))
                .expect("client"),
        );
        let recording_key = format::integrity::RecordingSigner::new(shared::testing::key(7));
        app.with_chat(adapter.clone(), &recording_key);
        app.bot.slack =
            Some(Arc::new(bot::slack::SlackState::new(&Secret::new(SECRET.into()), adapter)));
        let url = app.serve().await;
        Self { app, fake, url, http: reqwest::Client::new(), recording_key }
    }

    async fn post(&self, path: &str, body: &str, ts: i64, signature: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .expect("bot answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// A slash command as `user`, signed now; returns the ephemeral text.
    async fn command(&self, user: &str, channel: &str, text: &str) -> String {
        let body = command_body(user, channel, text);
        let ts = Self::now();
        let (status, v) = self.post("/slack/commands", &body, ts, &sign(SECRET, ts, &body)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["response_type"], "ephemeral", "{v}");
        v["text"].as_str().unwrap_or_default().to_owned()
    }

    /// A click on the card, signed now.
    async fn click(&self, user: &str, card_ts: &str, action: &str, request_id: &str) -> u16 {
        let body = click_body(user, CHANNEL, card_ts, action, request_id);
        let ts = Self::now();
        self.post("/slack/interactions", &body, ts, &sign(SECRET, ts, &body)).await.0
    }

    async fn sync(&self) {
        bot::chat::sync::sync_due(&self.app.deps, &self.app.bot.chat).await.expect("sync runs");
    }

    /// Requests db-1 as alice from the incident channel; returns (code, id, card ts).
    async fn request(&self, reason: &str) -> (String, String, String) {
        let text = self
            .command("U0ALICE", CHANNEL, &format!("request db-1 --as postgres --for 30m {reason}"))
            .await;
        assert!(text.starts_with("Requested `bg-"), "{text}");
        let code = text.split('`').nth(1).expect("code").to_owned();
        let id =
            self.app.deps.get(&code.parse().expect("code")).await.expect("stored").id.to_string();
        self.sync().await;
        let card = self
            .fake
            .calls_to("chat.postMessage")
            .into_iter()
            .rev()
            .find(|c| c.text().contains(&code))
            .expect("a card was posted");
        (code, id, card.ts.expect("the card was answered"))
    }

    /// Simulates the gateway: the session starts and ends with a signed recording.
    async fn session(&self, code: &str, commands: &[&str]) {
        self.session_start(code).await;
        self.session_end(code, commands).await;
    }

    /// Simulates the gateway starting the session.
    async fn session_start(&self, code: &str) {
        self.app.start_session(code).await;
    }

    /// Simulates the gateway ending the live session after `commands`, with a signed
    /// recording.
    async fn session_end(&self, code: &str, commands: &[&str]) {
        self.app.end_session(code, commands, &self.recording_key, [9; 32], 4242).await;
    }
}

test_util::both_backends!(a_request_from_slack_gets_a_card_approvals_and_a_private_connect_line);
async fn a_request_from_slack_gets_a_card_approvals_and_a_private_connect_line(
    db: TestDb,
) -> TestResult {
    let s = Slack::start(&db).await;
    let (code, id, ts) = s.request("replica lag, need to kill a query").await;
    let card = &s.fake.calls_to("chat.postMessage")[0];
    assert_eq!(card.token.as_deref(), Some("xoxb-test-token"));
    assert_eq!(card.body["channel"], CHANNEL);
    let text = card.text();
    assert!(
        text.contains("breakglass_approve")
            && text.contains("breakglass_deny")
            && text.contains(&id),
        "{text}"
    );
    assert!(text.contains("replica lag"), "{text}");

    assert_eq!(s.click("U0BOB", &ts, "breakglass_approve", &id).await, 200);
    s.sync().await;
    let thread = s.fake.thread(&ts);
    assert!(
        thread
            .last()
            .is_some_and(|c| c.text().contains("Approved by bob") && c.text().contains("1 of 2")),
        "{thread:?}"
    );
    let update = s.fake.calls_to("chat.update");
    assert!(
        update
            .last()
            .is_some_and(|c| c.body["ts"] == ts.as_str() && c.text().contains("1 of 2 approvals")),
        "{update:?}"
    );
    assert!(s.fake.calls_to("chat.postEphemeral").is_empty(), "no connect line before the grant");

    assert_eq!(s.click("U0CAROL", &ts, "breakglass_approve", &id).await, 200);
    s.sync().await;
    let eph = s.fake.calls_to("chat.postEphemeral");
    assert_eq!(eph.len(), 1, "{eph:?}");
    assert_eq!(eph[0].body["user"], "U0ALICE", "the requester alone gets the connect line");
    assert!(eph[0].text().contains(&format!("ssh -p 2222 {code}@gw.example")), "{:?}", eph[0]);
    let card = s.fake.calls_to("chat.update").last().map(|c| c.text()).unwrap_or_default();
    assert!(card.contains("breakglass_revoke") && !card.contains("breakglass_approve"), "{card}");
    assert!(s.fake.thread(&ts).iter().any(|c| c.text().contains("Granted")));

    // Status and list answer privately.
    assert!(s.command("U0ALICE", CHANNEL, &format!("status {code}")).await.contains("approved"));
    assert!(s.command("U0BOB", CHANNEL, "list").await.contains(&code));
    assert!(s.command("U0BOB", "C0OTHER", "list").await.contains("No open requests"));

    // The session runs and ends: one summary, in the thread, with the commands.
    s.session(&code, &["uptime", "systemctl restart postgresql"]).await;
    s.sync().await;
    s.sync().await;
    let summaries: Vec<_> =
        s.fake.thread(&ts).into_iter().filter(|c| c.text().contains("Session summary")).collect();
    assert_eq!(summaries.len(), 1);
    let summary = summaries[0].text();
    for needle in [
        "alice",
        "bob",
        "carol",
        "db-1",
        "postgres",
        "systemctl restart postgresql",
        "4242 out",
        "signature verifies",
    ] {
        assert!(summary.contains(needle), "summary lacks {needle}: {summary}");
    }
    let review = format!("https://bg.example/review/s/{code}");
    assert!(summary.contains(&review), "the summary links to the reviewer page: {summary}");
    assert!(summary.contains("\"verbatim\":true"), "no auto-linking in the summary: {summary}");
    Ok(())
}

test_util::both_backends!(review_links_are_private_and_for_reviewers_only);
async fn review_links_are_private_and_for_reviewers_only(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    let (code, _, _) = s.request("disk full").await;
    let text = s.command("U0ERIN", CHANNEL, &format!("review {code}")).await;
    assert!(text.contains("/review/login?t=bgr_"), "{text}");
    assert!(text.contains("opens once"), "{text}");
    let refused = s.command("U0ALICE", CHANNEL, &format!("review {code}")).await;
    assert!(refused.contains("not_a_reviewer") && !refused.contains("/review/login"), "{refused}");
    let unknown = s.command("U0ERIN", CHANNEL, "review bg-000000").await;
    assert!(!unknown.contains("/review/login"), "{unknown}");
    // Nothing about a link is ever posted in the channel.
    assert!(s.fake.calls().iter().all(|c| !c.text().contains("/review/login")));
    Ok(())
}

test_util::both_backends!(forged_or_stale_requests_are_refused_before_reading);
async fn forged_or_stale_requests_are_refused_before_reading(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    let body = command_body("U0ALICE", CHANNEL, "request db-1 because");
    let now = Slack::now();
    assert_eq!(
        s.post("/slack/commands", &body, now, &sign("wrong-secret", now, &body)).await.0,
        401
    );
    assert_eq!(s.post("/slack/commands", &body, now, "v0=00").await.0, 401);
    let stale = now - 6 * 60;
    assert_eq!(s.post("/slack/commands", &body, stale, &sign(SECRET, stale, &body)).await.0, 401);
    let tampered = body.replace("db-1", "db-2");
    assert_eq!(s.post("/slack/commands", &tampered, now, &sign(SECRET, now, &body)).await.0, 401);
    let click = click_body("U0BOB", CHANNEL, "1.1", "breakglass_approve", "x");
    assert_eq!(
        s.post("/slack/interactions", &click, now, &sign("wrong-secret", now, &click)).await.0,
        401
    );
    assert_eq!(s.app.request_count().await, 0);
    assert_eq!(s.app.audit_len().await, 0);
    assert!(s.fake.calls().is_empty());
    Ok(())
}

test_util::both_backends!(a_replayed_request_is_refused_and_changes_nothing_even_after_a_restart);
async fn a_replayed_request_is_refused_and_changes_nothing_even_after_a_restart(
    db: TestDb,
) -> TestResult {
    let s = Slack::start(&db).await;
    let (code, id, ts) = s.request("disk full").await;
    let now = Slack::now();
    // The exact signed requests an eavesdropper could have kept: a command, a sign-in link
    // request, a click.
    let request = command_body("U0ALICE", CHANNEL, "request db-1 --as postgres again");
    let review = command_body("U0ERIN", CHANNEL, &format!("review {code}"));
    let click = click_body("U0BOB", CHANNEL, &ts, "breakglass_approve", &id);
    let sent =
        [("/slack/commands", request), ("/slack/commands", review), ("/slack/interactions", click)]
            .map(|(path, body)| {
                let sig = sign(SECRET, now, &body);
                (path, body, sig)
            });
    for (path, body, sig) in &sent {
        assert_eq!(s.post(path, body, now, sig).await.0, 200, "{path}: {body}");
    }
    assert_eq!(s.app.request_count().await, 2, "the first copies did their work");
    let (requests, audit) = (s.app.request_count().await, s.app.audit_len().await);
    let approvals = s.app.deps.get(&code.parse()?).await?.approvals.len();
    let again = Slack::start(&db).await;
    for slack in [&s, &again] {
        for (path, body, sig) in &sent {
            let (status, v) = slack.post(path, body, now, sig).await;
            assert_eq!(status, 401, "a replay of {path} is refused: {v}");
            assert!(!v.to_string().contains("/review/login"), "no new sign-in link: {v}");
        }
    }
    assert_eq!(s.app.request_count().await, requests, "no second request");
    assert_eq!(s.app.audit_len().await, audit, "nothing recorded: no link, no approval");
    assert_eq!(s.app.deps.get(&code.parse()?).await?.approvals.len(), approvals);
    Ok(())
}

test_util::both_backends!(the_same_click_twice_records_one_approval);
async fn the_same_click_twice_records_one_approval(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    let (code, id, ts) = s.request("disk full").await;
    let body = click_body("U0BOB", CHANNEL, &ts, "breakglass_approve", &id);
    let now = Slack::now();
    assert_eq!(s.post("/slack/interactions", &body, now, &sign(SECRET, now, &body)).await.0, 200);
    // A second click is a second delivery from Slack (its own timestamp and signature).
    let later = now + 1;
    assert_eq!(
        s.post("/slack/interactions", &body, later, &sign(SECRET, later, &body)).await.0,
        200,
        "a second click is acknowledged"
    );
    let req = s.app.deps.get(&code.parse()?).await?;
    assert_eq!(req.approvals.len(), 1);
    wait_ephemeral(&s, "already_approved").await;
    Ok(())
}

async fn wait_ephemeral(s: &Slack, needle: &str) -> String {
    let found =
        || s.fake.calls_to("chat.postEphemeral").into_iter().find(|c| c.text().contains(needle));
    test_util::wait_until_async(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_millis(20),
        || std::future::ready(found().map(|c| c.text())),
        || format!("no ephemeral with {needle}: {:?}", s.fake.calls_to("chat.postEphemeral")),
    )
    .await
}

test_util::both_backends!(clicks_and_commands_are_checked_against_policy);
async fn clicks_and_commands_are_checked_against_policy(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    // Requests outside policy: private errors, nothing created.
    assert!(s.command("U0ALICE", CHANNEL, "request db-9 because").await.contains("[unknown_host]"));
    assert!(
        s.command("U0ALICE", "C0RANDOM", "request db-1 because")
            .await
            .contains("[channel_not_allowed]")
    );
    assert!(
        s.command("U0ALICE", CHANNEL, "request db-1 --for 3h because")
            .await
            .contains("[duration_too_long]")
    );
    assert!(
        s.command("U0NOBODY", CHANNEL, "request db-1 because")
            .await
            .contains("slack_id = \"U0NOBODY\"")
    );
    assert!(s.command("U0ALICE", CHANNEL, "request db-1").await.contains("[usage]"));
    assert_eq!(s.app.request_count().await, 0);

    // bob requests; bob clicks approve on his own request; dave is not an approver.
    let text = s.command("U0BOB", CHANNEL, "request db-1 cache warmup broke").await;
    let code = text.split('`').nth(1).expect("code").to_owned();
    let id = s.app.deps.get(&code.parse()?).await?.id.to_string();
    s.sync().await;
    assert_eq!(s.click("U0BOB", "1.1", "breakglass_approve", &id).await, 200);
    wait_ephemeral(&s, "[self_approval]").await;
    assert_eq!(s.click("U0DAVE", "1.1", "breakglass_approve", &id).await, 200);
    wait_ephemeral(&s, "[not_an_approver]").await;
    assert_eq!(s.app.deps.get(&code.parse()?).await?.approvals.len(), 0);

    // carol denies; the card says so and loses its buttons.
    assert_eq!(s.click("U0CAROL", "1.1", "breakglass_deny", &id).await, 200);
    s.sync().await;
    assert_eq!(s.app.deps.get(&code.parse()?).await?.status, shared::core::Status::Denied);
    let card = s.fake.calls_to("chat.update").last().map(|c| c.text()).unwrap_or_default();
    assert!(card.contains("denied") && !card.contains("breakglass_approve"), "{card}");
    assert!(
        s.fake.calls_to("chat.postMessage").iter().any(|c| c.text().contains("Denied by carol"))
    );
    Ok(())
}

test_util::both_backends!(offline_signature_scopes_point_the_approver_to_their_key);
async fn offline_signature_scopes_point_the_approver_to_their_key(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    let text = s.command("U0ALICE", "C0VAULT", "request vault-1 unseal after the restart").await;
    let code = text.split('`').nth(1).ok_or("code")?.to_owned();
    let id = s.app.deps.get(&code.parse()?).await?.id.to_string();
    assert_eq!(s.click("U0ERIN", "1.1", "breakglass_approve", &id).await, 200);
    let told = wait_ephemeral(&s, "[offline_signature_required]").await;
    assert!(told.contains(&format!("breakglass approve --key YOUR_KEY {code}")), "{told}");
    assert_eq!(s.app.deps.get(&code.parse()?).await?.approvals.len(), 0);
    Ok(())
}

test_util::both_backends!(mrkdwn_in_a_reason_cannot_ping_or_forge_links);
async fn mrkdwn_in_a_reason_cannot_ping_or_forge_links(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    s.request("<!channel> <@U0BOB> <https://evil.example|the runbook> & more").await;
    let card = s.fake.calls_to("chat.postMessage")[0].text();
    assert!(
        !card.contains("<!channel>")
            && !card.contains("<@U0BOB>")
            && !card.contains("<https://evil"),
        "{card}"
    );
    assert!(card.contains("&lt;!channel&gt;") && card.contains("&amp; more"), "{card}");
    assert!(card.contains("\"verbatim\":true"), "no auto-linking of mentions or URLs: {card}");
    Ok(())
}

test_util::both_backends!(a_rate_limited_summary_is_retried_and_posted_once);
async fn a_rate_limited_summary_is_retried_and_posted_once(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    let (code, id, ts) = s.request("rate limit drill").await;
    s.click("U0BOB", &ts, "breakglass_approve", &id).await;
    s.click("U0CAROL", &ts, "breakglass_approve", &id).await;
    s.sync().await;
    s.session_start(&code).await;
    s.sync().await;
    assert!(
        s.fake.thread(&ts).iter().any(|c| c.ok && c.text().contains("Session live")),
        "the session-live line is out before the 429"
    );
    s.session_end(&code, &["ls"]).await;
    s.fake.fail_next("chat.postMessage", 429, Some(2), 1);
    s.sync().await;
    let limited: Vec<_> = s.fake.thread(&ts).into_iter().filter(|c| !c.ok).collect();
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert!(limited[0].text().contains("Session summary"), "the 429 hit the summary");
    assert_eq!(count_summaries(&s, &ts), 0, "429: nothing posted yet");
    s.sync().await;
    assert_eq!(count_summaries(&s, &ts), 0, "not retried before Retry-After");
    s.app.clock.advance(3);
    s.sync().await;
    s.app.clock.advance(3);
    s.sync().await;
    assert_eq!(count_summaries(&s, &ts), 1, "posted once after the 429");
    Ok(())
}

test_util::both_backends!(a_summary_of_many_long_commands_fits_in_a_slack_section);
async fn a_summary_of_many_long_commands_fits_in_a_slack_section(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    // Escaping a reason of `&` makes it five times longer: the card must still fit.
    let (code, id, ts) = s.request(&"&".repeat(900)).await;
    let card =
        s.fake.calls_to("chat.postMessage").into_iter().find(|c| c.ts.as_deref() == Some(&ts));
    assert!(card.is_some_and(|c| c.ok), "the card was accepted");
    s.click("U0BOB", &ts, "breakglass_approve", &id).await;
    s.click("U0CAROL", &ts, "breakglass_approve", &id).await;
    let commands: Vec<String> = (0..25)
        .map(|i| format!("{i:02} grep '<err>' /var/log/db-1 && echo 'x > y' & ").repeat(8))
        .collect();
    s.session(&code, &commands.iter().map(String::as_str).collect::<Vec<_>>()).await;
    s.sync().await;
    s.sync().await;
    assert_eq!(count_summaries(&s, &ts), 1, "Slack accepted the summary");
    let summary = s
        .fake
        .thread(&ts)
        .into_iter()
        .find(|c| c.ok && c.text().contains("Session summary"))
        .ok_or("summary")?;
    let text = summary.body["blocks"][0]["text"]["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.chars().count() <= 3000, "{}", text.chars().count());
    assert!(
        text.contains("• `00 grep '&lt;err&gt;'") && text.contains("*Commands:* 25 run"),
        "{text}"
    );
    assert!(text.contains(" more") && text.contains("4242 out"), "{text}");
    Ok(())
}

test_util::both_backends!(a_post_refused_for_good_is_skipped_and_one_not_allowed_is_retried);
async fn a_post_refused_for_good_is_skipped_and_one_not_allowed_is_retried(
    db: TestDb,
) -> TestResult {
    let s = Slack::start(&db).await;
    let (code, id, ts) = s.request("refusal drill").await;
    s.fake.refuse_next("chat.postMessage", "invalid_blocks", 1);
    s.click("U0BOB", &ts, "breakglass_approve", &id).await;
    s.sync().await;
    let card = s.fake.calls_to("chat.update").last().map(|c| c.text()).unwrap_or_default();
    assert!(card.contains("1 of 2 approvals"), "the card moved on: {card}");

    // No backoff: the next event goes out at once, and the refused line is never retried.
    s.click("U0CAROL", &ts, "breakglass_approve", &id).await;
    s.sync().await;
    let thread = s.fake.thread(&ts);
    assert!(thread.iter().any(|c| c.ok && c.text().contains("Granted")), "{thread:?}");
    let bob: Vec<_> = thread.iter().filter(|c| c.text().contains("Approved by bob")).collect();
    assert_eq!(bob.len(), 1, "tried once, refused, skipped: {bob:?}");
    assert!(!bob[0].ok);

    // The bot not being allowed in the channel is not the message's fault: retried.
    s.fake.refuse_next("chat.postMessage", "not_in_channel", 1);
    s.session_start(&code).await;
    s.sync().await;
    s.sync().await;
    let live = |s: &Slack| -> usize {
        s.fake.thread(&ts).iter().filter(|c| c.ok && c.text().contains("Session live")).count()
    };
    assert_eq!(live(&s), 0, "waits for the backoff");
    s.app.clock.advance(3);
    s.sync().await;
    s.sync().await;
    assert_eq!(live(&s), 1);
    Ok(())
}

test_util::both_backends!(a_failed_connect_line_is_retried_without_repeating_the_grant);
async fn a_failed_connect_line_is_retried_without_repeating_the_grant(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    let (_, id, ts) = s.request("ephemeral drill").await;
    s.click("U0BOB", &ts, "breakglass_approve", &id).await;
    s.sync().await;
    s.fake.fail_next("chat.postEphemeral", 500, None, 1);
    s.click("U0CAROL", &ts, "breakglass_approve", &id).await;
    s.sync().await;
    let connect = |s: &Slack| -> Vec<_> {
        s.fake.calls_to("chat.postEphemeral").into_iter().filter(|c| c.ok).collect()
    };
    assert!(connect(&s).is_empty(), "the 500 sent nothing");
    s.app.clock.advance(3);
    s.sync().await;
    s.sync().await;
    let granted: Vec<_> =
        s.fake.thread(&ts).into_iter().filter(|c| c.ok && c.text().contains("Granted")).collect();
    assert_eq!(granted.len(), 1, "{granted:?}");
    let sent = connect(&s);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].body["user"], "U0ALICE");
    let card = s.fake.calls_to("chat.update").last().map(|c| c.text()).unwrap_or_default();
    assert!(card.contains("breakglass_revoke"), "the card caught up: {card}");
    Ok(())
}

/// Summaries Slack accepted in the thread (a 429-answered call has no `ts`).
fn count_summaries(s: &Slack, ts: &str) -> usize {
    s.fake
        .thread(ts)
        .iter()
        .filter(|c| c.ts.is_some() && c.text().contains("Session summary"))
        .count()
}

test_util::both_backends!(a_summary_due_while_the_bot_was_down_is_posted_once_after_restart);
async fn a_summary_due_while_the_bot_was_down_is_posted_once_after_restart(
    db: TestDb,
) -> TestResult {
    let first = Slack::start(&db).await;
    let (code, id, ts) = first.request("restart drill").await;
    first.click("U0BOB", &ts, "breakglass_approve", &id).await;
    first.click("U0CAROL", &ts, "breakglass_approve", &id).await;
    first.sync().await;
    // The session ends while the bot is down (no sync runs).
    first.session(&code, &["reboot"]).await;
    drop(first);

    let second = Slack::start(&db).await;
    second.sync().await;
    second.sync().await;
    let posted: Vec<_> = second
        .fake
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.ts.is_some() && c.text().contains("Session summary"))
        .collect();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].body["thread_ts"], ts.as_str(), "in the card's thread");
    assert!(posted[0].text().contains("reboot"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_carries_commands_and_clicks_without_inbound_http() {
    run(Backend::Sqlite, |db| async move {
        let s = Slack::start(&db).await;
        let slack = s.app.bot.slack.clone().ok_or("slack state")?;
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(bot::slack::socket::run(s.app.deps.clone(), s.app.bot.chat.clone(), slack, Secret::new("xapp-test".into()), stop.clone()));
        assert!(s.fake.socket_connected().await, "the bot connected over Socket Mode");
        let open = s.fake.calls_to("apps.connections.open");
        assert_eq!(open.first().and_then(|c| c.token.clone()).as_deref(), Some("xapp-test"), "with the app-level token");

        let command = serde_json::json!({
            "team_id": "T0TEAM", "team_domain": "example", "channel_id": CHANNEL, "channel_name": "incident",
            "user_id": "U0ALICE", "user_name": "alice", "command": "/breakglass",
            "text": "request db-1 --for 20m socket mode drill", "api_app_id": "A0APP",
            "response_url": "https://hooks.slack.com/commands/T0TEAM/1/abc", "trigger_id": "1.2.abc"
        });
        let ack = s.fake.socket_send("slash_commands", command).await;
        let text = ack["payload"]["text"].as_str().unwrap_or_default().to_owned();
        assert!(text.starts_with("Requested `bg-"), "{ack}");
        assert_eq!(ack["payload"]["response_type"], "ephemeral");
        let code = text.split('`').nth(1).ok_or("code")?.to_owned();
        let id = s.app.deps.get(&code.parse()?).await?.id.to_string();

        let click: serde_json::Value = serde_json::from_str(
            &serde_urlencoded::from_str::<Vec<(String, String)>>(&click_body("U0BOB", CHANNEL, "1.1", "breakglass_approve", &id))?
                .into_iter()
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| v)
                .ok_or("payload")?,
        )?;
        s.fake.socket_send("interactive", click).await;
        let req = s.app.deps.get(&code.parse()?).await?;
        assert_eq!(req.approvals.iter().map(|a| a.approver.as_str()).collect::<Vec<_>>(), ["bob"]);
        stop.cancel();
        let _ = task.await;
        Ok(())
    })
    .await;
}

test_util::both_backends!(
    a_thread_in_step_with_its_request_is_left_alone_until_the_request_changes
);
async fn a_thread_in_step_with_its_request_is_left_alone_until_the_request_changes(
    db: TestDb,
) -> TestResult {
    let s = Slack::start(&db).await;
    let (_code, id, ts) = s.request("disk full on the primary").await;
    let sync = || bot::chat::sync::sync_due(&s.app.deps, &s.app.bot.chat);
    // The card is out and nothing happened since: no claim, no call to Slack.
    let calls = s.fake.calls().len();
    assert_eq!(sync().await?, 0);
    assert_eq!(s.fake.calls().len(), calls);
    // An approval is a new audit event: the thread has work again, once.
    assert_eq!(s.click("U0BOB", &ts, "breakglass_approve", &id).await, 200);
    assert_eq!(sync().await?, 1);
    assert!(s.fake.calls().len() > calls, "the card and the thread were updated");
    assert_eq!(sync().await?, 0);
    Ok(())
}

test_util::both_backends!(every_fixed_answer_of_the_slash_command_is_word_for_word);
async fn every_fixed_answer_of_the_slash_command_is_word_for_word(db: TestDb) -> TestResult {
    let s = Slack::start(&db).await;
    assert_eq!(s.command("U0ALICE", CHANNEL, "help").await, bot::slack::parse::USAGE);
    assert_eq!(s.command("U0ALICE", CHANNEL, "").await, bot::slack::parse::USAGE);
    assert_eq!(
        s.command("U0NOBODY", CHANNEL, "status").await,
        "You are not a breakglass user yet: ask an operator to add `slack_id = \"U0NOBODY\"` to your entry under [users] in the breakglass config."
    );
    // Each command below differs from every other in its text or user: a second copy of a
    // signed body within the same second would be refused as a replay.
    assert_eq!(s.command("U0BOB", CHANNEL, "status").await, "You have no requests.");
    assert_eq!(
        s.command("U0BOB", CHANNEL, "list").await,
        "No open requests or live sessions in this channel."
    );
    assert_eq!(
        s.command("U0ALICE", CHANNEL, "status bg-000000").await,
        "No request bg-000000 [not_found]"
    );

    let text =
        s.command("U0ALICE", CHANNEL, "request db-1 --as postgres --for 30m replica lag").await;
    let code = text.split('`').nth(1).ok_or("code")?.to_owned();
    let req = s.app.deps.get(&code.parse()?).await?;
    let quorum = s.app.deps.config.policy.scope(&req.scope)?.quorum;
    let line = format!(
        "`{code}` alice → `db-1` as `postgres` for 30m: *pending* (0 of {quorum} approvals)"
    );
    assert_eq!(
        text,
        format!(
            "Requested {line}. The card is posted in this channel for approvers; you will get the connect line here once it is approved."
        )
    );
    assert_eq!(s.command("U0ALICE", CHANNEL, &format!("status {code}")).await, line);
    assert_eq!(s.command("U0ALICE", CHANNEL, "status").await, line);
    assert_eq!(s.command("U0CAROL", CHANNEL, "list").await, line);
    assert_eq!(
        s.command("U0ALICE", "C0ELSEWHERE", "list").await,
        "No open requests or live sessions in this channel."
    );
    assert_eq!(
        s.command("U0ALICE", CHANNEL, &format!("revoke {code}")).await,
        format!("Revoked `{code}`.")
    );
    Ok(())
}
