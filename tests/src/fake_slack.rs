//! A local stand-in for Slack, the one fake the tests allow (there is no internet here):
//!
//! - the Web API (`POST /api/{method}`): answers `chat.postMessage`, `chat.update` and
//!   `chat.postEphemeral` the way Slack does, records every call (method, bearer token, JSON
//!   body), and can be told to fail the next calls to a method (e.g. 429 with `Retry-After`,
//!   [`FakeSlack::fail_next`]) or refuse them with an error code ([`FakeSlack::refuse_next`]);
//!   like Slack, it refuses blocks over Slack's limits with `invalid_blocks` (a section's text
//!   3000 characters, a field's 2000, 10 fields, 50 blocks);
//! - the messages posted, kept as Slack keeps them (channel, `ts`, `thread_ts`, text and
//!   `metadata`), served back by `GET conversations.history` and `GET conversations.replies`
//!   (metadata only with `include_all_metadata=true`, as Slack does);
//! - a stall ([`FakeSlack::stall_after_posting`]): the next `chat.postMessage` whose body
//!   contains a needle is kept (the message exists) but its answer never comes, so a test can
//!   SIGKILL the bot replica waiting on it, after the post and before its progress is saved;
//! - Socket Mode: `apps.connections.open` hands out a `ws://` URL served here; the fake says
//!   `hello`, then [`FakeSlack::socket_send`] delivers envelopes and returns the app's ack;
//!   [`FakeSlack::socket_drop`] cuts the connection as a network failure would;
//! - [`sign`]: Slack's request signing (`v0` HMAC-SHA256 over `v0:{ts}:{body}`), so tests send
//!   exactly what Slack sends to the bot's endpoints.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{KeyInit as _, Mac as _};
use serde_json::{Value, json};

/// One recorded Web API call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub token: Option<String>,
    pub body: Value,
    /// The `ts` the fake answered a successful `chat.postMessage` with.
    pub ts: Option<String>,
    /// The fake answered `"ok": true`.
    pub ok: bool,
}

impl Call {
    /// All the text of the call (top-level text and every block), for assertions.
    pub fn text(&self) -> String {
        self.body.to_string()
    }
}

/// How the fake answers a call it was told to fail.
#[derive(Debug, Clone)]
enum Failure {
    /// HTTP status, with `Retry-After` if given.
    Status(u16, Option<u64>),
    /// HTTP 200 with `"ok": false` and this error code.
    Refuse(String),
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<Call>,
    failures: HashMap<String, VecDeque<Failure>>,
    ts: u64,
    ws_url: String,
    /// The connected Socket Mode client, if any.
    socket: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Acks received, by envelope id.
    acks: HashMap<String, Value>,
    /// Socket Mode connections accepted so far.
    connections: usize,
    /// The tasks serving the current connection (aborted to drop it).
    socket_tasks: Vec<tokio::task::AbortHandle>,
    /// Every message posted, oldest first.
    messages: Vec<Message>,
    /// `chat.postMessage` calls containing this are kept and never answered.
    stall: Option<String>,
}

/// A message as Slack stores it.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: Value,
    pub ts: String,
    /// The card's `ts` for a line in its thread; `None` for a card.
    pub thread_ts: Option<String>,
    pub text: Value,
    pub metadata: Value,
    /// The whole `chat.postMessage` body (text and blocks), for assertions.
    pub body: Value,
}

impl Message {
    /// As `conversations.*` answer it; `metadata` only when asked for.
    fn json(&self, with_metadata: bool) -> Value {
        let mut m = json!({"type": "message", "ts": self.ts, "text": self.text, "user": "U0BOT"});
        if let Some(t) = &self.thread_ts {
            m["thread_ts"] = json!(t);
        }
        if with_metadata && !self.metadata.is_null() {
            m["metadata"] = self.metadata.clone();
        }
        m
    }
}

/// The running fake.
#[derive(Debug, Clone)]
pub struct FakeSlack {
    /// The Web API base URL to configure (`slack.api_url`).
    pub api_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSlack {
    /// Starts on 127.0.0.1 at an ephemeral port, on the current tokio runtime.
    ///
    /// # Panics
    /// When it cannot bind.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
        let ws_addr = ws.local_addr().expect("ws addr");
        if let Ok(mut i) = inner.lock() {
            i.ws_url = format!("ws://{ws_addr}/link");
        }
        tokio::spawn(serve_socket(ws, inner.clone()));
        let app = axum::Router::new()
            .route("/api/{method}", post(api).get(read_api))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { api_url: format!("http://{addr}/api"), inner }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().map(|i| i.calls.clone()).unwrap_or_default()
    }

    /// The first call that `pred` accepts, waiting up to 20 s for it; panics with `what` and
    /// every call so far when none comes.
    pub fn wait_call(&self, what: &str, pred: impl Fn(&Call) -> bool) -> Call {
        test_util::wait_until(
            Duration::from_secs(20),
            Duration::from_millis(50),
            || self.calls().into_iter().find(|c| pred(c)),
            || format!("no Slack call for {what}; calls: {:#?}", self.calls()),
        )
    }

    /// The calls to `method`.
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    /// Thread replies posted under the card `ts`.
    pub fn thread(&self, ts: &str) -> Vec<Call> {
        self.calls_to("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["thread_ts"] == ts)
            .collect()
    }

    /// Waits (up to 10 s) for a Socket Mode client to connect.
    pub async fn socket_connected(&self) -> bool {
        let connected = || self.inner.lock().map(|i| i.socket.is_some()).unwrap_or(false);
        test_util::poll_async(Duration::from_secs(10), Duration::from_millis(50), || {
            std::future::ready(connected().then_some(()))
        })
        .await
        .is_some()
    }

    /// Socket Mode connections accepted so far (a reconnect makes one more).
    pub fn socket_connections(&self) -> usize {
        self.inner.lock().map(|i| i.connections).unwrap_or(0)
    }

    /// Waits (up to `secs`) until `n` Socket Mode connections were accepted.
    pub async fn socket_connected_times(&self, n: usize, secs: u64) -> bool {
        test_util::poll_async(Duration::from_secs(secs), Duration::from_millis(50), || {
            std::future::ready((self.socket_connections() >= n).then_some(()))
        })
        .await
        .is_some()
    }

    /// Drops the Socket Mode connection the way a network failure does: the TCP connection
    /// goes away with no WebSocket close.
    pub fn socket_drop(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.socket = None;
            for t in i.socket_tasks.drain(..) {
                t.abort();
            }
        }
    }

    /// Delivers a Socket Mode envelope of `kind` (`slash_commands`, `interactive`) and waits
    /// for the app's acknowledgement, which it returns.
    ///
    /// # Panics
    /// When no client is connected or no ack comes within 10 s.
    pub async fn socket_send(&self, kind: &str, payload: Value) -> Value {
        let id = format!("env-{}", uuid_like());
        let envelope = json!({"envelope_id": id, "type": kind, "payload": payload, "accepts_response_payload": kind == "slash_commands", "retry_attempt": 0, "retry_reason": ""});
        let tx = self
            .inner
            .lock()
            .ok()
            .and_then(|i| i.socket.clone())
            .expect("a Socket Mode client is connected");
        tx.send(envelope.to_string()).expect("socket open");
        test_util::wait_until_async(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || std::future::ready(self.inner.lock().ok().and_then(|mut i| i.acks.remove(&id))),
            || format!("no ack for {id}"),
        )
        .await
    }

    /// Every message posted so far, oldest first (what a person in the channel sees).
    pub fn messages(&self) -> Vec<Message> {
        self.inner.lock().map(|i| i.messages.clone()).unwrap_or_default()
    }

    /// The next `chat.postMessage` whose JSON body contains `needle` is kept as a message, and
    /// then its answer is held forever (the caller waits until killed).
    pub fn stall_after_posting(&self, needle: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.stall = Some(needle.to_owned());
        }
    }

    /// The next `times` calls to `method` answer HTTP `status` (with `Retry-After` if given).
    pub fn fail_next(&self, method: &str, status: u16, retry_after: Option<u64>, times: usize) {
        if let Ok(mut i) = self.inner.lock() {
            let q = i.failures.entry(method.to_owned()).or_default();
            q.extend(std::iter::repeat_n(Failure::Status(status, retry_after), times));
        }
    }

    /// The next `times` calls to `method` are refused as Slack refuses them: HTTP 200 with
    /// `{"ok": false, "error": error}`.
    pub fn refuse_next(&self, method: &str, error: &str, times: usize) {
        if let Ok(mut i) = self.inner.lock() {
            let q = i.failures.entry(method.to_owned()).or_default();
            q.extend(std::iter::repeat_n(Failure::Refuse(error.to_owned()), times));
        }
    }
}

async fn api(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (answer, stall) = answer(&inner, method, token, &body);
    if stall {
        // The message exists; its answer never comes.
        std::future::pending::<()>().await;
    }
    answer
}

/// The answer to one Web API call, and whether to hold it back forever (a stall).
fn answer(
    inner: &Mutex<Inner>,
    method: String,
    token: Option<String>,
    body: &Value,
) -> (Response, bool) {
    let Ok(mut i) = inner.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR.into_response(), false);
    };
    i.calls.push(Call { method: method.clone(), token, body: body.clone(), ts: None, ok: false });
    match i.failures.get_mut(&method).and_then(VecDeque::pop_front) {
        Some(Failure::Status(status, retry)) => {
            let mut resp = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response();
            if let Some(r) = retry
                && let Ok(v) = r.to_string().parse()
            {
                resp.headers_mut().insert("retry-after", v);
            }
            return (resp, false);
        }
        Some(Failure::Refuse(error)) => {
            return (Json(json!({"ok": false, "error": error})).into_response(), false);
        }
        None => {}
    }
    if !blocks_fit(&body["blocks"]) {
        return (Json(json!({"ok": false, "error": "invalid_blocks"})).into_response(), false);
    }
    i.ts += 1;
    let ts = format!("1795400000.{:06}", i.ts);
    if method == "chat.postMessage"
        && let Some(last) = i.calls.last_mut()
    {
        last.ts = Some(ts.clone());
    }
    let channel = body["channel"].clone();
    if method == "chat.postMessage" {
        i.messages.push(Message {
            channel: channel.clone(),
            ts: ts.clone(),
            thread_ts: body["thread_ts"].as_str().map(str::to_owned),
            text: body["text"].clone(),
            metadata: body["metadata"].clone(),
            body: body.clone(),
        });
        if let Some(needle) = i.stall.clone()
            && body.to_string().contains(&needle)
        {
            i.stall = None;
            return (StatusCode::OK.into_response(), true);
        }
    }
    let answer = match method.as_str() {
        "chat.postMessage" => {
            json!({"ok": true, "channel": channel, "ts": ts, "message": {"ts": ts, "text": body["text"]}})
        }
        "chat.update" => {
            json!({"ok": true, "channel": channel, "ts": body["ts"], "text": body["text"], "message": {"text": body["text"]}})
        }
        "chat.postEphemeral" => json!({"ok": true, "message_ts": ts}),
        "apps.connections.open" => json!({"ok": true, "url": i.ws_url}),
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    if let Some(last) = i.calls.last_mut() {
        last.ok = answer["ok"] == true;
    }
    (Json(answer).into_response(), false)
}

/// `GET conversations.history` (top-level messages of a channel, newest first) and
/// `conversations.replies` (the parent, then its replies, oldest first), recorded as calls.
async fn read_api(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Ok(mut i) = inner.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let body = json!(q);
    i.calls.push(Call { method: method.clone(), token, body, ts: None, ok: true });
    let channel = json!(q.get("channel").cloned().unwrap_or_default());
    let meta = q.get("include_all_metadata").is_some_and(|v| v == "true" || v == "1");
    let in_channel = i.messages.iter().filter(|m| m.channel == channel);
    let messages: Vec<Value> = match method.as_str() {
        "conversations.history" => {
            in_channel.filter(|m| m.thread_ts.is_none()).rev().map(|m| m.json(meta)).collect()
        }
        "conversations.replies" => {
            let ts = q.get("ts").cloned().unwrap_or_default();
            in_channel
                .filter(|m| m.ts == ts || m.thread_ts.as_deref() == Some(ts.as_str()))
                .map(|m| m.json(meta))
                .collect()
        }
        _ => return Json(json!({"ok": false, "error": "unknown_method"})).into_response(),
    };
    Json(json!({"ok": true, "messages": messages, "has_more": false})).into_response()
}

/// Slack's limits on blocks: 50 blocks; a section's text 3000 characters, its fields 10 of
/// 2000 each; a context's elements 10.
fn blocks_fit(blocks: &Value) -> bool {
    let len = |v: &Value| v["text"].as_str().map_or(0, |s| s.chars().count());
    let blocks = blocks.as_array().map(Vec::as_slice).unwrap_or_default();
    blocks.len() <= 50
        && blocks.iter().all(|b| match b["type"].as_str() {
            Some("section") => {
                let fields = b["fields"].as_array().map(Vec::as_slice).unwrap_or_default();
                len(&b["text"]) <= 3000
                    && fields.len() <= 10
                    && fields.iter().all(|f| len(f) <= 2000)
            }
            Some("context") => b["elements"].as_array().is_none_or(|e| e.len() <= 10),
            _ => true,
        })
}

/// Slack's signature header value for `body` sent at `ts` with `secret`.
pub fn sign(secret: &str, ts: i64, body: &str) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The fields of a slash command, as Slack sends them (a form over HTTP, JSON in Socket Mode).
fn command_fields<'a>(
    user: &'a str,
    channel: &'a str,
    text: &'a str,
) -> [(&'static str, &'a str); 13] {
    [
        ("token", "deprecated-verification-token"),
        ("team_id", "T0TEAM"),
        ("team_domain", "example"),
        ("channel_id", channel),
        ("channel_name", "incident"),
        ("user_id", user),
        ("user_name", "someone"),
        ("command", "/breakglass"),
        ("text", text),
        ("api_app_id", "A0APP"),
        ("is_enterprise_install", "false"),
        ("response_url", "https://hooks.slack.com/commands/T0TEAM/1/abc"),
        ("trigger_id", "1.2.abc"),
    ]
}

/// The form body of a slash command, exactly as Slack sends it over HTTP.
pub fn command_body(user: &str, channel: &str, text: &str) -> String {
    serde_urlencoded::to_string(command_fields(user, channel, text)).expect("form")
}

/// The payload of a `slash_commands` Socket Mode envelope, exactly as Slack sends it.
pub fn command_payload(user: &str, channel: &str, text: &str) -> Value {
    Value::Object(
        command_fields(user, channel, text)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect(),
    )
}

/// The form body of a button click (`block_actions`), exactly as Slack sends it over HTTP.
pub fn click_body(
    user: &str,
    channel: &str,
    message_ts: &str,
    action_id: &str,
    request_id: &str,
) -> String {
    let payload = click_payload(user, channel, message_ts, action_id, request_id);
    serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form")
}

/// A button click (`block_actions`): the payload of an `interactive` Socket Mode envelope, and
/// the `payload` field of the HTTP form.
pub fn click_payload(
    user: &str,
    channel: &str,
    message_ts: &str,
    action_id: &str,
    request_id: &str,
) -> Value {
    json!({
        "type": "block_actions",
        "team": {"id": "T0TEAM", "domain": "example"},
        "user": {"id": user, "username": "someone", "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "trigger_id": "1.2.abc",
        "channel": {"id": channel, "name": "incident"},
        "message": {"ts": message_ts, "type": "message", "text": "card"},
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
        "actions": [{
            "type": "button", "action_id": action_id, "block_id": "b1",
            "text": {"type": "plain_text", "text": "Approve"},
            "value": request_id, "action_ts": "1795400000.000001"
        }]
    })
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("{:08x}", N.fetch_add(1, Ordering::SeqCst))
}

/// The Socket Mode side: one client at a time; `hello` on connect, envelopes out, acks in.
async fn serve_socket(listener: tokio::net::TcpListener, inner: Arc<Mutex<Inner>>) {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    while let Ok((stream, _)) = listener.accept().await {
        let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { continue };
        let (mut sink, mut source) = ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let hello = json!({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake-slack", "approximate_connection_time": 3600}, "connection_info": {"app_id": "A0APP"}});
        let _ = tx.send(hello.to_string());
        let writer = tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let acks = inner.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = source.next().await {
                if let Message::Text(t) = msg
                    && let Ok(v) = serde_json::from_str::<Value>(t.as_str())
                    && let Some(id) = v["envelope_id"].as_str()
                    && let Ok(mut i) = acks.lock()
                {
                    i.acks.insert(id.to_owned(), v.clone());
                }
            }
        });
        if let Ok(mut i) = inner.lock() {
            i.socket = Some(tx);
            i.connections += 1;
            i.socket_tasks = vec![writer.abort_handle(), reader.abort_handle()];
        }
    }
}
