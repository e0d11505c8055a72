//! Discord end to end through the bot's real HTTP endpoint: interactions signed with a test
//! application key exactly as Discord signs them, the REST API answered by a local fake that
//! records every call. Sessions are simulated on the store (the gateway part is covered with a
//! real sshd in the end-to-end crate).

mod common;

use std::sync::Arc;

use bot::chat::{ChatAdapter as _, Posted};
use common::{App, TestResult};
use e2e::fake_discord::{
    APP_ID, FakeDiscord, GUILD, Route, Signer, autocomplete, command, component, ping,
};
use serde_json::{Value, json};
use shared::config::Secret;
use shared::testing::db::TestDb;

const CH: &str = "1150000000000000001";
const ALICE: &str = "1010000000000000001";
const BOB: &str = "1010000000000000002";
const CAROL: &str = "1010000000000000003";
const ERIN: &str = "1010000000000000005";

struct Discord {
    app: App,
    fake: FakeDiscord,
    signer: Signer,
    url: String,
    http: reqwest::Client,
    /// The first interaction id this bot sees; each bot started gets its own range, so a
    /// restarted bot sees new ids too.
    first: u64,
    next: std::sync::atomic::AtomicU64,
    recording_key: format::integrity::RecordingSigner,
}

impl Discord {
    async fn start(db: &TestDb) -> Self {
        let fake = FakeDiscord::start().await;
        let signer = Signer::default();
        let mut app = App::new(db);
        let adapter = Arc::new(bot::discord::DiscordAdapter::new(
            &fake.base,
            APP_ID.parse().expect("id"),
            &Secret::new("bot-token".into()),
        ));
        let recording_key = format::integrity::RecordingSigner::new(shared::testing::key(7));
        app.with_chat(adapter.clone(), &recording_key);
        app.bot.discord = Some(Arc::new(
            bot::discord::DiscordState::new(&signer.public_key_hex(), adapter).expect("key"),
        ));
        let url = app.serve().await;
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let first = 1_500_000_000_000_000_000
            + STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) * 1_000_000;
        Self {
            app,
            fake,
            signer,
            url,
            http: reqwest::Client::new(),
            first,
            next: std::sync::atomic::AtomicU64::new(first),
            recording_key,
        }
    }

    fn id(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    async fn send_raw(&self, body: &str, sig: &str, ts: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/discord/interactions", self.url))
            .header("content-type", "application/json")
            .header("x-signature-ed25519", sig)
            .header("x-signature-timestamp", ts)
            .body(body.to_owned())
            .send()
            .await
            .expect("bot answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, v: &Value) -> (u16, Value) {
        let body = v.to_string();
        let (sig, ts) = self.signer.sign(Self::now(), &body);
        self.send_raw(&body, &sig, &ts).await
    }

    /// `/breakglass SUB` as `user`; returns the private answer's text.
    async fn command(&self, user: &str, sub: &str, opts: &[(&str, &str)]) -> String {
        let (s, v) = self.send(&command(self.id(), user, CH, sub, opts)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["type"], 4, "{v}");
        assert_eq!(v["data"]["flags"], 64, "ephemeral: {v}");
        v["data"]["content"].as_str().unwrap_or_default().to_owned()
    }

    async fn click(&self, user: &str, message: &str, action: &str, id: &str) -> (u16, Value) {
        self.send(&component(self.id(), user, CH, message, &format!("{action}:{id}"))).await
    }

    async fn sync(&self) {
        bot::chat::sync::sync_due(&self.app.deps, &self.app.bot.chat).await.expect("sync");
    }

    /// Requests db-1 as alice; returns (code, id, card message id, thread id).
    async fn request(&self, reason: &str) -> (String, String, String, String) {
        let text = self
            .command(ALICE, "request", &[("host", "db-1"), ("reason", reason), ("duration", "30m")])
            .await;
        assert!(text.starts_with("Requested bg-"), "{text}");
        let code = text.split_whitespace().nth(1).expect("code").to_owned();
        let id =
            self.app.deps.get(&code.parse().expect("code")).await.expect("stored").id.to_string();
        self.sync().await;
        let card = self
            .fake
            .calls()
            .into_iter()
            .find(|c| {
                c.method == "POST"
                    && c.path == format!("channels/{CH}/messages")
                    && c.body.to_string().contains(&code)
            })
            .expect("card");
        let message_id = card.answer_id.clone().expect("card id");
        let thread = self
            .fake
            .calls()
            .into_iter()
            .find(|c| c.path == format!("channels/{CH}/messages/{message_id}/threads"))
            .expect("a thread from the card");
        let thread_id = thread.answer_id.expect("thread id");
        (code, id, message_id, thread_id)
    }

    fn thread_posts(&self, thread: &str) -> Vec<String> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path == format!("channels/{thread}/messages"))
            .map(|c| c.body["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Discord's answers to `POST channels/CH/messages` that carry `code` (cards).
    fn cards(&self, code: &str) -> Vec<e2e::fake_discord::Call> {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| {
                c.method == "POST"
                    && c.path == format!("channels/{CH}/messages")
                    && c.body.to_string().contains(code)
            })
            .collect()
    }

    /// Simulates the gateway: the session starts and ends with a signed recording.
    async fn session(&self, code: &str, commands: &[&str]) {
        self.app.start_session(code).await;
        self.app.end_session(code, commands, &self.recording_key, [5; 32], 2).await;
    }
}

test_util::both_backends!(ping_is_answered_and_bad_stale_or_replayed_interactions_are_refused);
async fn ping_is_answered_and_bad_stale_or_replayed_interactions_are_refused(
    db: TestDb,
) -> TestResult {
    let d = Discord::start(&db).await;
    let p = ping(d.id());
    let (s, v) = d.send(&p).await;
    assert_eq!((s, v["type"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(d.send(&p).await.0, 401, "the same interaction twice is a replay");

    let body =
        command(d.id(), ALICE, CH, "request", &[("host", "db-1"), ("reason", "x")]).to_string();
    let (sig, ts) = d.signer.sign(Discord::now(), &body);
    let forged = format!("{}{}", &sig[..126], if sig.ends_with('0') { "11" } else { "00" });
    assert_eq!(d.send_raw(&body, &forged, &ts).await.0, 401);
    assert_eq!(d.send_raw(&body, "", &ts).await.0, 401);
    let old = Discord::now() - 6 * 60;
    let (sig, ts) = d.signer.sign(old, &body);
    assert_eq!(d.send_raw(&body, &sig, &ts).await.0, 401, "stale timestamp");
    let (sig, ts) = d.signer.sign(Discord::now(), &body);
    assert_eq!(
        d.send_raw(&body.replace("db-1", "db-2"), &sig, &ts).await.0,
        401,
        "body changed after signing"
    );
    assert_eq!(d.app.request_count().await, 0);
    Ok(())
}

test_util::both_backends!(
    a_replayed_interaction_is_refused_and_changes_nothing_even_after_a_restart
);
async fn a_replayed_interaction_is_refused_and_changes_nothing_even_after_a_restart(
    db: TestDb,
) -> TestResult {
    let d = Discord::start(&db).await;
    let (code, id, message, _) = d.request("replica lag").await;
    // The exact signed interactions an eavesdropper could have kept: a command, a sign-in link
    // request, a click.
    let sent: Vec<(String, String, String)> = [
        command(d.id(), ALICE, CH, "request", &[("host", "db-1"), ("reason", "again")]),
        command(d.id(), ERIN, CH, "review", &[("id", &code)]),
        component(d.id(), BOB, CH, &message, &format!("breakglass_approve:{id}")),
    ]
    .iter()
    .map(|v| {
        let body = v.to_string();
        let (sig, ts) = d.signer.sign(Discord::now(), &body);
        (body, sig, ts)
    })
    .collect();
    for (body, sig, ts) in &sent {
        assert_eq!(d.send_raw(body, sig, ts).await.0, 200, "{body}");
    }
    assert_eq!(d.app.request_count().await, 2, "the first copies did their work");
    let (requests, audit) = (d.app.request_count().await, d.app.audit_len().await);
    let approvals = d.app.deps.get(&code.parse()?).await?.approvals.len();
    // The same bot, and a restarted one on the same database (nothing kept in memory).
    let again = Discord::start(&db).await;
    for bot in [&d, &again] {
        for (body, sig, ts) in &sent {
            let (status, v) = bot.send_raw(body, sig, ts).await;
            assert_eq!(status, 401, "a replay is refused: {v}");
            assert!(!v.to_string().contains("/review/login"), "no new sign-in link: {v}");
        }
    }
    assert_eq!(d.app.request_count().await, requests, "no second request");
    assert_eq!(d.app.audit_len().await, audit, "nothing recorded");
    assert_eq!(d.app.deps.get(&code.parse()?).await?.approvals.len(), approvals);
    Ok(())
}

test_util::both_backends!(
    a_request_from_discord_gets_an_embed_a_thread_approvals_and_a_private_connect_line
);
async fn a_request_from_discord_gets_an_embed_a_thread_approvals_and_a_private_connect_line(
    db: TestDb,
) -> TestResult {
    let d = Discord::start(&db).await;
    let (code, id, message, thread) = d.request("replica lag").await;
    assert!(!thread.is_empty(), "a thread was started from the card");
    let card = d
        .fake
        .calls()
        .into_iter()
        .find(|c| c.path == format!("channels/{CH}/messages"))
        .ok_or("card")?;
    assert!(
        card.body["embeds"][0]["title"].as_str().unwrap_or_default().contains(&code),
        "{}",
        card.body
    );
    let buttons = card.body["components"][0]["components"].to_string();
    assert!(
        buttons.contains(&format!("breakglass_approve:{id}"))
            && buttons.contains(&format!("breakglass_deny:{id}")),
        "{buttons}"
    );

    let (s, v) = d.click(BOB, &message, "breakglass_approve", &id).await;
    assert_eq!((s, v["type"].as_u64()), (200, Some(6)), "acknowledged: {v}");
    d.sync().await;
    assert!(
        d.thread_posts(&thread)
            .iter()
            .any(|p| p.contains("Approved by bob") && p.contains("1 of 2")),
        "{:?}",
        d.thread_posts(&thread)
    );
    let edit = d.fake.calls().into_iter().rfind(|c| c.method == "PATCH").ok_or("card edited")?;
    assert_eq!(edit.path, format!("channels/{CH}/messages/{message}"));

    let (s, v) = d.click(CAROL, &message, "breakglass_approve", &id).await;
    assert_eq!((s, v["type"].as_u64()), (200, Some(6)), "acknowledged: {v}");
    d.sync().await;
    let followup = d
        .fake
        .calls()
        .into_iter()
        .find(|c| c.path.starts_with(&format!("webhooks/{APP_ID}/")))
        .ok_or_else(|| {
            format!(
                "connect line follow-up: {:#?}",
                d.fake
                    .calls()
                    .iter()
                    .map(|c| (c.method.clone(), c.path.clone()))
                    .collect::<Vec<_>>()
            )
        })?;
    assert!(
        followup.path.ends_with(&format!("interaction-token-{}", d.first)),
        "to alice's own interaction: {}",
        followup.path
    );
    assert_eq!(followup.body["flags"], 64, "ephemeral: {}", followup.body);
    assert!(
        followup.body["content"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{code}@gw.example")),
        "{}",
        followup.body
    );
    let card = d.fake.calls().into_iter().rfind(|c| c.method == "PATCH").ok_or("edit")?;
    assert!(card.body["components"].to_string().contains("breakglass_revoke"), "{}", card.body);

    d.session(&code, &["uptime", "journalctl -u postgresql"]).await;
    d.sync().await;
    d.sync().await;
    let summaries: Vec<String> =
        d.thread_posts(&thread).into_iter().filter(|p| p.contains("Session summary")).collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert!(
        summaries[0].contains("journalctl \\-u postgresql")
            && summaries[0].contains("signature verifies"),
        "{}",
        summaries[0]
    );

    // Every message the bot sent mentions nobody.
    for c in d.fake.calls().into_iter().filter(|c| {
        (c.path.contains("messages") || c.path.starts_with("webhooks"))
            && !c.path.ends_with("/threads")
    }) {
        let am = &c.body["allowed_mentions"];
        assert_eq!(am["parse"], json!([]), "{} {}: {}", c.method, c.path, c.body);
    }
    Ok(())
}

test_util::both_backends!(autocomplete_offers_only_hosts_the_user_may_request_here);
async fn autocomplete_offers_only_hosts_the_user_may_request_here(db: TestDb) -> TestResult {
    let d = Discord::start(&db).await;
    let (s, v) = d.send(&autocomplete(d.id(), ALICE, CH, "")).await;
    assert_eq!((s, v["type"].as_u64()), (200, Some(8)), "{v}");
    let hosts: Vec<&str> = v["data"]["choices"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(hosts, ["db-1", "db-2"], "vault-1's scope allows no chat channel");
    let (_, v) = d.send(&autocomplete(d.id(), ALICE, CH, "2")).await;
    assert_eq!(v["data"]["choices"][0]["value"], "db-2");
    let (_, v) = d.send(&autocomplete(d.id(), ALICE, "1159999999999999999", "")).await;
    assert_eq!(v["data"]["choices"], json!([]), "nothing in a channel no scope allows");
    Ok(())
}

test_util::both_backends!(policy_refusals_are_private_and_change_nothing);
async fn policy_refusals_are_private_and_change_nothing(db: TestDb) -> TestResult {
    let d = Discord::start(&db).await;
    assert!(
        d.command(ALICE, "request", &[("host", "db-9"), ("reason", "x")])
            .await
            .contains("[unknown_host]")
    );
    assert!(
        d.command(ALICE, "request", &[("host", "db-1"), ("reason", "x"), ("duration", "soon")])
            .await
            .contains("[invalid_duration]")
    );
    assert!(
        d.command("1019999999999999999", "request", &[("host", "db-1"), ("reason", "x")])
            .await
            .contains("discord\\_id")
    );
    assert_eq!(d.app.request_count().await, 0);

    let text = d.command(BOB, "request", &[("host", "db-1"), ("reason", "bob's own")]).await;
    let code = text.split_whitespace().nth(1).ok_or("code")?.to_owned();
    let id = d.app.deps.get(&code.parse()?).await?.id.to_string();
    let (s, v) = d.click(BOB, "1", "breakglass_approve", &id).await;
    assert_eq!(s, 200);
    assert!(
        v["data"]["content"].as_str().unwrap_or_default().contains("[self_approval]")
            && v["data"]["flags"] == 64,
        "{v}"
    );
    let (_, v) = d.click(CAROL, "1", "breakglass_deny", &id).await;
    assert_eq!(v["type"], 6);
    assert_eq!(d.app.deps.get(&code.parse()?).await?.status, shared::core::Status::Denied);
    Ok(())
}

test_util::both_backends!(review_links_come_privately_to_reviewers_only);
async fn review_links_come_privately_to_reviewers_only(db: TestDb) -> TestResult {
    let d = Discord::start(&db).await;
    let (code, _, _, _) = d.request("disk full").await;
    // command() asserts the answer is ephemeral (flags 64).
    let text = d.command("1010000000000000005", "review", &[("id", &code)]).await;
    assert!(text.contains("/review/login?t=bgr_") && text.contains("opens once"), "{text}");
    let list = d.command("1010000000000000005", "review", &[]).await;
    assert!(list.contains("/review/login?t=bgr_"), "{list}");
    let refused = d.command(ALICE, "review", &[("id", &code)]).await;
    assert!(
        refused.contains("[not_a_reviewer]") && !refused.contains("/review/login"),
        "{refused}"
    );
    Ok(())
}

test_util::both_backends!(mentions_in_a_reason_cannot_ping);
async fn mentions_in_a_reason_cannot_ping(db: TestDb) -> TestResult {
    let d = Discord::start(&db).await;
    d.request("@everyone <@1010000000000000002> [runbook](https://evil.example) ```rm```").await;
    let card = d
        .fake
        .calls()
        .into_iter()
        .find(|c| c.path == format!("channels/{CH}/messages"))
        .ok_or("card")?;
    let reason = card.body["embeds"][0]["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "Reason"))
        .map(|f| f["value"].to_string())
        .unwrap_or_default();
    assert!(!reason.contains("@everyone") && !reason.contains("<@1010"), "{reason}");
    assert!(reason.contains("\\\\[runbook\\\\]"), "{reason}");
    assert_eq!(card.body["allowed_mentions"]["parse"], json!([]));
    Ok(())
}

#[tokio::test]
async fn command_registration_is_idempotent() -> TestResult {
    let fake = FakeDiscord::start().await;
    let adapter = bot::discord::DiscordAdapter::new(
        &fake.base,
        APP_ID.parse()?,
        &Secret::new("bot-token".into()),
    );
    let logins = vec!["postgres".to_owned(), "root".to_owned()];
    let guild: u64 = GUILD.parse()?;
    assert_eq!(bot::discord::register(&adapter, guild, &logins).await?, 1);
    assert_eq!(bot::discord::register(&adapter, guild, &logins).await?, 1);
    let puts: Vec<_> = fake.calls().into_iter().filter(|c| c.method == "PUT").collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[0].body, puts[1].body, "the same definition both times");
    let cmds = fake.commands(GUILD);
    assert_eq!(cmds.len(), 1, "one command, not two");
    let subs: Vec<&str> = cmds[0]["options"]
        .as_array()
        .map(|o| o.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(subs, ["request", "status", "list", "revoke", "review", "help"]);
    let host = &cmds[0]["options"][0]["options"][0];
    assert_eq!((host["name"].as_str(), host["autocomplete"].as_bool()), (Some("host"), Some(true)));
    Ok(())
}

test_util::both_backends!(a_timestamp_at_the_edge_of_i64_is_refused_not_a_panic);
async fn a_timestamp_at_the_edge_of_i64_is_refused_not_a_panic(db: TestDb) -> TestResult {
    let d = Discord::start(&db).await;
    let body = ping(d.id()).to_string();
    for ts in [i64::MIN, i64::MAX] {
        let (sig, ts) = d.signer.sign(ts, &body);
        assert_eq!(d.send_raw(&body, &sig, &ts).await.0, 401, "timestamp {ts}");
    }
    assert_eq!(d.send(&ping(d.id())).await.0, 200, "the bot is still up");
    Ok(())
}

test_util::both_backends!(a_long_reason_with_markdown_characters_fits_the_embed_field);
async fn a_long_reason_with_markdown_characters_fits_the_embed_field(db: TestDb) -> TestResult {
    let d = Discord::start(&db).await;
    // `-` is escaped to `\-`: 999 characters of ordinary text would be 1199 escaped.
    let reason = vec!["db-1"; 200].join(" ");
    let (code, ..) = d.request(&reason).await;
    let cards = d.cards(&code);
    assert_eq!(cards.iter().map(|c| c.status).collect::<Vec<_>>(), [200], "accepted first time");
    let value = cards[0].body["embeds"][0]["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "Reason"))
        .and_then(|f| f["value"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(value.chars().count() <= 1024, "{}", value.chars().count());
    assert!(value.starts_with("db\\-1 db\\-1") && value.ends_with('…'), "{value}");
    assert!(!value.trim_end_matches('…').ends_with('\\'), "cut between escapes: {value}");
    Ok(())
}

test_util::both_backends!(a_summary_of_many_long_commands_fits_in_a_discord_message);
async fn a_summary_of_many_long_commands_fits_in_a_discord_message(db: TestDb) -> TestResult {
    let d = Discord::start(&db).await;
    let (code, id, message, thread) = d.request("summary drill").await;
    d.click(BOB, &message, "breakglass_approve", &id).await;
    d.click(CAROL, &message, "breakglass_approve", &id).await;
    let commands: Vec<String> = (0..25)
        .map(|i| format!("{i:02} kubectl -n db-1 logs --tail=100 [pod_*] | grep `err` ").repeat(5))
        .collect();
    d.session(&code, &commands.iter().map(String::as_str).collect::<Vec<_>>()).await;
    d.sync().await;
    d.sync().await;
    let summaries: Vec<String> =
        d.thread_posts(&thread).into_iter().filter(|p| p.contains("Session summary")).collect();
    assert_eq!(summaries.len(), 1, "Discord accepted the summary");
    let text = &summaries[0];
    assert!(text.chars().count() <= 2000, "{}", text.chars().count());
    assert!(
        text.contains("• 00 kubectl \\-n db\\-1") && text.contains("**Commands:** 25 run"),
        "{text}"
    );
    assert!(text.contains(" more\n**Bytes:**"), "{text}");
    Ok(())
}

test_util::both_backends!(a_thread_that_failed_to_start_is_started_later_without_a_second_card);
async fn a_thread_that_failed_to_start_is_started_later_without_a_second_card(
    db: TestDb,
) -> TestResult {
    let d = Discord::start(&db).await;
    d.fake.fail_next(Route::StartThread, 500, 1);
    let text = d
        .command(
            ALICE,
            "request",
            &[("host", "db-1"), ("reason", "thread drill"), ("duration", "30m")],
        )
        .await;
    let code = text.split_whitespace().nth(1).ok_or("code")?.to_owned();
    let id = d.app.deps.get(&code.parse()?).await?.id.to_string();
    d.sync().await;
    let started = |d: &Discord| -> Vec<e2e::fake_discord::Call> {
        d.fake
            .calls()
            .into_iter()
            .filter(|c| c.path.ends_with("/threads") && c.status == 200)
            .collect()
    };
    assert!(started(&d).is_empty(), "the 500 started nothing");
    d.app.clock.advance(3);
    d.sync().await;
    let cards = d.cards(&code);
    assert_eq!(cards.len(), 1, "one card: {cards:?}");
    let message = cards[0].answer_id.clone().ok_or("card id")?;
    let threads = started(&d);
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert_eq!(threads[0].path, format!("channels/{CH}/messages/{message}/threads"));
    let thread = threads[0].answer_id.clone().ok_or("thread id")?;

    d.click(BOB, &message, "breakglass_approve", &id).await;
    d.sync().await;
    assert!(
        d.thread_posts(&thread).iter().any(|p| p.contains("Approved by bob")),
        "{:?}",
        d.thread_posts(&thread)
    );

    // Had the thread's answer been lost, starting it again finds the same thread.
    let discord = d.app.bot.discord.clone().ok_or("discord")?;
    let req = d.app.deps.get(&code.parse()?).await?;
    let card = bot::chat::present::card_of(&d.app.deps, &req);
    let posted = Posted { message_id: message, thread_id: None };
    assert_eq!(discord.adapter.start_thread(CH, &posted, &card).await, Ok(Some(thread)));
    Ok(())
}

test_util::both_backends!(every_fixed_answer_of_the_slash_command_is_word_for_word);
async fn every_fixed_answer_of_the_slash_command_is_word_for_word(db: TestDb) -> TestResult {
    let d = Discord::start(&db).await;
    let help = "**/breakglass request** host reason \\[login\\] \\[duration\\]: ask for access; the card is posted here for approvers.\n\
**/breakglass status** \\[id\\] · **/breakglass list** · **/breakglass revoke** id · **/breakglass review** \\[id\\] · **/breakglass help**";
    assert_eq!(d.command(ALICE, "help", &[]).await, help);
    assert_eq!(d.command(ALICE, "nonsense", &[]).await, help);
    assert_eq!(
        d.command("1019999999999999999", "status", &[]).await,
        "You are not a breakglass user yet: ask an operator to add discord\\_id = \"1019999999999999999\" to your entry under \\[users\\] in the breakglass config."
    );
    assert_eq!(d.command(ALICE, "status", &[]).await, "You have no requests.");
    assert_eq!(
        d.command(ALICE, "list", &[]).await,
        "No open requests or live sessions in this channel."
    );
    assert_eq!(
        d.command(ALICE, "status", &[("id", "bg-000000")]).await,
        "No request bg\\-000000 [not_found]"
    );

    let text = d
        .command(
            ALICE,
            "request",
            &[
                ("host", "db-1"),
                ("reason", "replica lag"),
                ("login", "postgres"),
                ("duration", "30m"),
            ],
        )
        .await;
    let code = text.split_whitespace().nth(1).ok_or("code")?.to_owned();
    let req = d.app.deps.get(&code.parse()?).await?;
    let quorum = d.app.deps.config.policy.scope(&req.scope)?.quorum;
    let line =
        format!("{code} alice → db\\-1 as postgres for 30m: **pending** (0 of {quorum} approvals)");
    assert_eq!(
        text,
        format!(
            "Requested {line}. The card is posted in this channel for approvers; you will get the connect line privately once it is approved."
        )
    );
    assert_eq!(d.command(ALICE, "status", &[("id", &code)]).await, line);
    assert_eq!(d.command(ALICE, "status", &[]).await, line);
    assert_eq!(d.command(ALICE, "list", &[]).await, line);
    assert_eq!(d.command(ALICE, "revoke", &[("id", &code)]).await, format!("Revoked {code}."));
    Ok(())
}
