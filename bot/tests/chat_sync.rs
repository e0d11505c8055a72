//! The chat sync loop on its own: a request's audit events mirrored into its card and thread
//! through a fake `ChatAdapter` that keeps what it is asked to post and fails on demand (no
//! HTTP, no platform wire format; `slack.rs` and `discord.rs` cover those). The store is the
//! real adapter on both backends.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bot::chat::{CardView, ChatAdapter, ChatError, Platform, Posted, ThreadPost};
use common::{App, TestResult};
use shared::core::request::NewRequest;
use shared::core::{Origin, Reason, RequestRef};
use shared::testing::db::TestDb;
use shared::testing::{host, name};

/// A chat platform in memory: every call it took, and the failures queued for the next posts
/// in a thread.
#[derive(Debug, Default)]
struct Memory {
    calls: Mutex<Vec<String>>,
    thread_failures: Mutex<Vec<ChatError>>,
    /// The key of every post made, as the platform would show it back.
    keys: Mutex<HashSet<String>>,
}

impl Memory {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }
    fn took(&self, call: String) {
        self.calls.lock().expect("calls").push(call);
    }
}

#[async_trait]
impl ChatAdapter for Memory {
    fn platform(&self) -> Platform {
        Platform::Slack
    }
    async fn post_card(
        &self,
        channel: &str,
        card: &CardView,
        key: &str,
    ) -> Result<Posted, ChatError> {
        self.took(format!("card {channel} {:?}", card.status));
        self.keys.lock().expect("keys").insert(key.to_owned());
        Ok(Posted { message_id: "m1".into(), thread_id: None })
    }
    async fn find_card(&self, _channel: &str, key: &str) -> Result<Option<Posted>, ChatError> {
        let found = self.keys.lock().expect("keys").contains(key);
        Ok(found.then(|| Posted { message_id: "m1".into(), thread_id: None }))
    }
    async fn thread_keys(
        &self,
        _channel: &str,
        _posted: &Posted,
    ) -> Result<HashSet<String>, ChatError> {
        Ok(self.keys.lock().expect("keys").clone())
    }
    async fn start_thread(
        &self,
        _channel: &str,
        _posted: &Posted,
        _card: &CardView,
    ) -> Result<Option<String>, ChatError> {
        Ok(None)
    }
    async fn update_card(
        &self,
        _channel: &str,
        posted: &Posted,
        card: &CardView,
    ) -> Result<(), ChatError> {
        self.took(format!("update {} {:?}", posted.message_id, card.status));
        Ok(())
    }
    async fn post_in_thread(
        &self,
        _channel: &str,
        _posted: &Posted,
        post: &ThreadPost,
        key: &str,
    ) -> Result<(), ChatError> {
        if let Some(e) = self.thread_failures.lock().expect("failures").pop() {
            return Err(e);
        }
        self.keys.lock().expect("keys").insert(key.to_owned());
        let what = match post {
            ThreadPost::Approved { by, have, need, .. } => format!("approved {by} {have}/{need}"),
            ThreadPost::Granted { .. } => "granted".to_owned(),
            ThreadPost::Denied { by } => format!("denied {by}"),
            ThreadPost::Revoked { by, was } => format!("revoked {by} {}", was.as_str()),
            ThreadPost::Expired { was } => format!("expired {}", was.as_str()),
            ThreadPost::SessionStarted { .. } => "started".to_owned(),
            ThreadPost::Summary(s) => format!("summary {} {}", s.end_reason, s.commands.join(",")),
        };
        self.took(format!("thread {what}"));
        Ok(())
    }
    async fn ephemeral(&self, _channel: &str, user: &str, _text: &str) -> Result<(), ChatError> {
        self.took(format!("ephemeral {user}"));
        Ok(())
    }
}

struct World {
    app: App,
    chat: Arc<Memory>,
    key: format::integrity::RecordingSigner,
}

impl World {
    fn new(db: &TestDb) -> Self {
        let mut app = App::new(db);
        let chat = Arc::new(Memory::default());
        let key = format::integrity::RecordingSigner::new(shared::testing::key(7));
        app.with_chat(chat.clone(), &key);
        Self { app, chat, key }
    }

    async fn sync(&self) -> usize {
        bot::chat::sync::sync_due(&self.app.deps, &self.app.bot.chat).await.expect("sync runs")
    }

    /// A request by alice made in the incident channel; its code.
    async fn request(&self) -> String {
        let req = self
            .app
            .deps
            .create_request(NewRequest {
                requester: name("alice"),
                host: host("db-1"),
                scope: None,
                login: None,
                duration: None,
                reason: Reason::parse("disk full").expect("reason"),
                origin: Origin::Slack { channel: test_util::world::SLACK_CHANNEL.into() },
            })
            .await
            .expect("created");
        req.code.to_string()
    }

    async fn approve(&self, code: &str, who: &str) {
        let r = RequestRef::Code(shared::core::GrantCode::parse(code).expect("code"));
        self.app.deps.approve(&r, &name(who), None).await.expect("approved");
    }
}

/// The card first, then one thread line per audit event in order, the connect line to the
/// requester alone once granted, and the summary once, however often the loop runs.
async fn a_requests_events_become_its_card_and_thread_in_order_and_the_summary_once(
    db: TestDb,
) -> TestResult {
    let w = World::new(&db);
    let code = w.request().await;
    w.sync().await;
    assert_eq!(w.chat.calls().first().map(String::as_str), Some("card C0INCIDENT Pending"));

    w.approve(&code, "bob").await;
    w.approve(&code, "carol").await;
    w.sync().await;
    w.app.start_session(&code).await;
    w.app.end_session(&code, &["uptime", "df -h"], &w.key, [0; 32], 10).await;
    for _ in 0..3 {
        w.sync().await;
    }
    let calls = w.chat.calls();
    let thread: Vec<&String> = calls.iter().filter(|c| c.starts_with("thread ")).collect();
    assert_eq!(
        thread,
        [
            "thread approved bob 1/2",
            "thread approved carol 2/2",
            "thread granted",
            "thread started",
            "thread summary closed uptime,df -h",
        ],
        "{calls:?}"
    );
    assert_eq!(calls.iter().filter(|c| *c == "ephemeral U0ALICE").count(), 1, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("card ")).count(), 1, "{calls:?}");
    Ok(())
}

/// A thread post the platform refuses for good is skipped and never retried; one that fails
/// for now is retried at the next run, and nothing after it is posted before it.
async fn a_post_refused_for_good_is_skipped_and_a_transient_failure_is_retried_in_order(
    db: TestDb,
) -> TestResult {
    let w = World::new(&db);
    let code = w.request().await;
    w.sync().await;
    w.approve(&code, "bob").await;
    w.chat.thread_failures.lock().expect("failures").push(ChatError::Refused("too long".into()));
    w.sync().await;
    w.approve(&code, "carol").await;
    w.chat.thread_failures.lock().expect("failures").push(ChatError::Transient("503".into()));
    w.sync().await;
    let before: Vec<String> =
        w.chat.calls().into_iter().filter(|c| c.starts_with("thread ")).collect();
    assert!(before.is_empty(), "bob's line was refused, carol's failed for now: {before:?}");

    // The retry waits for its backoff: let time pass, then the loop posts carol's line and
    // what followed it, in order.
    w.app.clock.advance(120);
    w.sync().await;
    let after: Vec<String> =
        w.chat.calls().into_iter().filter(|c| c.starts_with("thread ")).collect();
    assert_eq!(after, ["thread approved carol 2/2", "thread granted"]);
    Ok(())
}

/// A pass whose lease ran out unsaved (its replica died after posting): the next claim looks
/// every post up by its key and posts none of them again.
async fn a_thread_taken_over_from_an_unsaved_lease_posts_nothing_twice(db: TestDb) -> TestResult {
    let w = World::new(&db);
    let code = w.request().await;
    w.sync().await;
    w.approve(&code, "bob").await;
    w.approve(&code, "carol").await;
    w.sync().await;
    let before = w.chat.calls();
    // As the database looks when a replica posted all that and died before saving it.
    db.admin
        .exec(
            "UPDATE chat_threads SET message_id = NULL, synced_seq = 0, connect_sent = FALSE, \
             lease_until = 1",
        )
        .await?;
    assert_eq!(w.sync().await, 1, "the thread is due again");
    let calls = w.chat.calls();
    let new: Vec<&String> = calls[before.len()..].iter().collect();
    assert!(
        !new.iter().any(|c| c.starts_with("card ") || c.starts_with("thread ")),
        "posted again after a takeover: {new:?}"
    );
    // Nothing lost: the card is updated, and only the connect line (ephemeral, not findable)
    // may go out again.
    assert!(new.iter().any(|c| c.starts_with("update m1")), "{new:?}");
    assert!(new.iter().all(|c| c.starts_with("update ") || c.starts_with("ephemeral ")), "{new:?}");
    Ok(())
}

test_util::both_backends!(
    a_requests_events_become_its_card_and_thread_in_order_and_the_summary_once,
    a_post_refused_for_good_is_skipped_and_a_transient_failure_is_retried_in_order,
    a_thread_taken_over_from_an_unsaved_lease_posts_nothing_twice
);
