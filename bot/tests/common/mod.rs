//! The bot's test harness: the real router over a real store (SQLite or PostgreSQL, fresh per
//! test), a fixed clock, and the test world's config (`test_util::world`) with one API token
//! per principal.
//!
//! Requests go through `tower::ServiceExt::oneshot`: the whole axum stack (extractors, auth,
//! error mapping, body limits) without a socket.

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bot::Bot;
use bot::recordings::Recordings;
use bot::service::Deps;
use serde_json::Value;
use shared::config::Config;
use shared::core::Clock as _;
use shared::testing::db::TestDb;
use shared::testing::{FixedClock, T0};
use tower::ServiceExt as _;

pub use shared::testing::db::TestResult;

pub use test_util::world::token;

pub fn test_config() -> Config {
    test_util::world::config()
}

/// The app under test.
#[derive(Debug, Clone)]
pub struct App {
    /// The service.
    pub deps: Deps,
    /// The front ends' parts (no chat, no recordings folder unless a test sets them); its
    /// `deps` is replaced by [`Self::deps`] when the router is built ([`Self::bot`]).
    pub bot: Bot,
    pub clock: Arc<FixedClock>,
}

impl App {
    pub fn new(db: &TestDb) -> Self {
        // The world's bot key and pins, over the same config the router reads.
        let test_util::world::World { bot: signer, pins, .. } = test_util::world::World::new();
        let config = test_config();
        let clock = Arc::new(FixedClock::at(T0));
        let deps = Deps {
            config: Arc::new(config),
            store: db.store.clone(),
            clock: clock.clone(),
            signer: Arc::new(signer),
            pins: Arc::new(pins),
            changed: std::sync::Arc::default(),
        };
        let bot = Bot::new(deps.clone(), Recordings::default());
        Self { deps, bot, clock }
    }

    /// What the router is built with: [`Self::deps`] and the front ends' parts.
    pub fn bot(&self) -> Bot {
        Bot { deps: self.deps.clone(), ..self.bot.clone() }
    }

    /// Chat through `adapter`, with the recordings checked against `recording_key` (the
    /// platform's own state is the caller's to set).
    pub fn with_chat(
        &mut self,
        adapter: Arc<dyn bot::chat::ChatAdapter>,
        recording_key: &format::integrity::RecordingSigner,
    ) {
        let recordings = Arc::new(Recordings::new(
            vec![recording_key.verifying_key()],
            std::env::temp_dir().join("bg-no-recordings"),
        ));
        let mut hub = bot::chat::sync::ChatHub::new(recordings, "https://bg.example".into());
        hub.add(adapter);
        self.bot.chat = Arc::new(hub);
    }

    /// The router on a loopback port; its base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let router = bot::router(self.bot());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        url
    }

    pub fn now(&self) -> i64 {
        self.clock.now().unix()
    }

    /// Sends one request with `who`'s token (none when `who` is empty) and a raw body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        auth: Option<String>,
        body: Body,
        json: bool,
    ) -> (StatusCode, Value) {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        if json {
            b = b.header("content-type", "application/json");
        }
        let resp = bot::router(self.bot())
            .oneshot(b.body(body).expect("request builds"))
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body reads");
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, v)
    }

    /// A JSON call as `who`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        who: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let auth = (!who.is_empty()).then(|| format!("Bearer {}", token(who)));
        match body {
            Some(v) => self.raw(method, path, auth, Body::from(v.to_string()), true).await,
            None => self.raw(method, path, auth, Body::empty(), false).await,
        }
    }

    pub async fn post(&self, path: &str, who: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, who, Some(body)).await
    }

    pub async fn get(&self, path: &str, who: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, who, None).await
    }

    /// Opens a request as `who` and returns its code, asserting 201.
    pub async fn open(&self, who: &str, body: Value) -> String {
        let (s, v) = self.post("/api/v1/requests", who, body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["code"].as_str().expect("code").to_owned()
    }

    /// An action on a request with an empty body.
    pub async fn act(&self, code: &str, verb: &str, who: &str) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/api/v1/requests/{code}/{verb}"), who, None).await
    }

    /// How many audit events are stored.
    pub async fn audit_len(&self) -> usize {
        self.deps.store.audit_page(0, 1000).await.expect("audit reads").len()
    }

    /// Simulates the gateway starting the session of `code` (the request becomes `active`).
    pub async fn start_session(&self, code: &str) {
        use shared::core::{Action, request};
        let d = &self.deps;
        let req = d.get(&code.parse().expect("code")).await.expect("request");
        let now = d.now();
        let t = request::apply(
            &req,
            Action::SessionStarted(shared::testing::session_started()),
            &d.config.policy,
            &d.pins,
            now,
        )
        .expect("start");
        d.store.apply(&t, now).await.expect("started");
    }

    /// Simulates the gateway ending the live session of `code` a minute later, after
    /// `commands` (one a second), with a recording whose SHA-256 is `sha256`, signed by `key`,
    /// and `bytes_out` bytes of output.
    pub async fn end_session(
        &self,
        code: &str,
        commands: &[&str],
        key: &format::integrity::RecordingSigner,
        sha256: [u8; 32],
        bytes_out: u64,
    ) {
        use shared::core::{Action, RequestRef, request};
        let d = &self.deps;
        let req = d.get(&code.parse().expect("code")).await.expect("request");
        let now = d.now();
        for (i, c) in commands.iter().enumerate() {
            let e = shared::ports::SessionEvent {
                request_id: req.id,
                at: now,
                offset_ms: i64::try_from(i).unwrap_or(0) * 1000,
                kind: shared::core::SessionEventKind::Command,
                detail: serde_json::json!({ "command": c }),
            };
            d.store.add_session_event(&e).await.expect("event");
        }
        let live = d.get(&RequestRef::Id(req.id)).await.expect("live");
        let ended = now.plus_secs(60);
        let end = request::apply(
            &live,
            Action::SessionEnded(shared::testing::session_ended()),
            &d.config.policy,
            &d.pins,
            ended,
        )
        .expect("end");
        let file = format!("{code}-1.cast");
        let side = key.sign(
            &format::integrity::SessionBinding {
                request_id: req.id,
                code: req.code.clone(),
                nonce: req.nonce,
                started_at: now,
                ended_at: ended,
                file: file.clone(),
            },
            &sha256,
        );
        let rec = shared::ports::RecordingRecord {
            request_id: req.id,
            file,
            sha256,
            signature: side.signature,
            key_id: side.key_id,
            started_at: now,
            ended_at: ended,
            end_reason: shared::core::EndReason::Closed,
            exit_status: Some(0),
            bytes_in: 42,
            bytes_out,
            commands: commands.len() as u64,
        };
        d.store.end_session(&rec, Some(&end), &[], ended).await.expect("ended");
    }

    /// How many requests are stored.
    pub async fn request_count(&self) -> usize {
        self.deps
            .store
            .list_requests(&shared::ports::RequestFilter { limit: 1000, ..Default::default() })
            .await
            .expect("list")
            .len()
    }
}

/// Asserts an error answer: status and stable code.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
}
