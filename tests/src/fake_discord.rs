//! A local stand-in for Discord's REST API (there is no internet here), and interaction
//! payloads signed exactly as Discord signs them.
//!
//! - The REST fake answers what breakglass calls (messages, message edits, threads from a
//!   message, interaction follow-ups, DM channels, guild command bulk overwrite) with objects
//!   shaped like Discord's, and records every call (method, path, JSON body).
//! - Like Discord, it refuses with 400 (`50035 Invalid Form Body`) a message over Discord's
//!   limits: content 2000 characters, embed title 256, description 4096, field name 256,
//!   field value 1024, footer 2048, 25 fields, 6000 in all; a thread name of 1 to 100. A
//!   thread started from a message gets the message's id, and starting a second one is a 400
//!   (`160004`), as on Discord.
//! - Message create honours `nonce` with `enforce_nonce: true` as Discord does: a second
//!   message with a nonce the bot already used is not made, the first is answered again (the
//!   fake keeps nonces for its whole life, Discord for a few minutes). `GET
//!   channels/{channel}/messages` lists a channel's messages, newest first, without their
//!   nonces (Discord's listing is not documented to show them).
//! - [`FakeDiscord::stall_after_posting`]: the next message create whose body contains a
//!   needle is made, but its answer never comes, so a test can SIGKILL the replica waiting.
//! - Each call records the bot token it came with, so a test can tell replicas apart.
//! - [`FakeDiscord::fail_next`] makes the next calls of a [`Route`] answer an error status.
//! - [`Signer`] signs `timestamp ‖ body` with a test application key (Ed25519), as Discord does
//!   in `X-Signature-Ed25519` / `X-Signature-Timestamp`.
//! - [`command`], [`component`], [`autocomplete`] build interaction payloads with the fields a
//!   current Discord sends (serenity 0.12 refuses payloads without `attachment_size_limit`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};

/// One recorded REST call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    /// The id of the object the fake created for this call (message, thread, DM channel);
    /// `None` when the call was refused.
    pub answer_id: Option<String>,
    /// The HTTP status the fake answered.
    pub status: u16,
    /// The bot token of the call (`Authorization: Bot TOKEN`).
    pub token: Option<String>,
}

/// What a REST call does, for [`FakeDiscord::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST channels/{channel}/messages` (cards, thread posts, DMs).
    CreateMessage,
    /// `PATCH channels/{channel}/messages/{message}` (card updates).
    EditMessage,
    /// `POST channels/{channel}/messages/{message}/threads`.
    StartThread,
    /// `POST webhooks/{application}/{token}` (interaction follow-ups).
    Followup,
    /// `POST users/@me/channels` (opening a DM).
    OpenDm,
    /// `PUT applications/{application}/guilds/{guild}/commands`.
    SetCommands,
    /// `GET channels/{channel}/messages`.
    ListMessages,
}

/// A message the fake made.
#[derive(Debug, Clone)]
pub struct Made {
    pub channel: String,
    pub id: String,
    pub nonce: Option<String>,
    /// The create call's JSON body.
    pub body: Value,
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<Call>,
    next_id: u64,
    /// Registered commands per guild (bulk overwrite replaces them).
    commands: HashMap<String, Vec<Value>>,
    /// Statuses the next calls of a route answer.
    failures: HashMap<Route, VecDeque<u16>>,
    /// Messages a thread was started from (the thread has the message's id).
    threads: HashSet<String>,
    /// Every message made, oldest first.
    made: Vec<Made>,
    /// Message creates containing this are made and never answered.
    stall: Option<String>,
}

/// The running REST fake.
#[derive(Debug, Clone)]
pub struct FakeDiscord {
    /// The base to configure (`discord.api_base`); serenity adds `/api/v10/…`.
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeDiscord {
    /// # Panics
    /// When it cannot bind.
    pub async fn start() -> Self {
        let inner =
            Arc::new(Mutex::new(Inner { next_id: 1_300_000_000_000_000_000, ..Inner::default() }));
        let app = axum::Router::new()
            .route("/api/v10/{*path}", axum::routing::any(rest))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base: format!("http://{addr}"), inner }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().map(|i| i.calls.clone()).unwrap_or_default()
    }

    /// The next `times` calls of `route` answer HTTP `status` (429 with `Retry-After: 1`)
    /// and change nothing.
    pub fn fail_next(&self, route: Route, status: u16, times: usize) {
        if let Ok(mut i) = self.inner.lock() {
            i.failures.entry(route).or_default().extend(std::iter::repeat_n(status, times));
        }
    }

    /// Every message made so far, oldest first.
    pub fn made(&self) -> Vec<Made> {
        self.inner.lock().map(|i| i.made.clone()).unwrap_or_default()
    }

    /// The next message create whose JSON body contains `needle` is made, and its answer is
    /// then held forever.
    pub fn stall_after_posting(&self, needle: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.stall = Some(needle.to_owned());
        }
    }

    /// The commands registered in `guild` now.
    pub fn commands(&self, guild: &str) -> Vec<Value> {
        self.inner
            .lock()
            .map(|i| i.commands.get(guild).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

fn user(id: &str, name: &str) -> Value {
    json!({"id": id, "username": name, "discriminator": "0", "global_name": name, "avatar": null, "bot": name == "breakglass"})
}

fn message(id: &str, channel: &str, body: &Value) -> Value {
    json!({
        "id": id, "channel_id": channel, "author": user("1200000000000000001", "breakglass"),
        "content": body["content"].as_str().unwrap_or_default(), "timestamp": "2026-11-23T03:14:00.000000+00:00",
        "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": [],
        "embeds": if body["embeds"].is_array() { body["embeds"].clone() } else { json!([]) },
        "components": if body["components"].is_array() { body["components"].clone() } else { json!([]) },
        "pinned": false, "type": 0, "flags": body["flags"].as_u64().unwrap_or(0)
    })
}

/// Discord's length limits on what the fake is sent: the JSON path of the first text over
/// its limit, and the limit.
fn over_limit(route: Route, body: &Value) -> Option<(String, usize)> {
    let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let mut checks: Vec<(String, &Value, usize)> = vec![("content".into(), &body["content"], 2000)];
    if route == Route::StartThread {
        let name = len(&body["name"]);
        if name == 0 || name > 100 {
            return Some(("name".into(), 100));
        }
    }
    for (e, embed) in body["embeds"].as_array().into_iter().flatten().enumerate() {
        let fields = embed["fields"].as_array().map(Vec::as_slice).unwrap_or_default();
        if fields.len() > 25 {
            return Some((format!("embeds.{e}.fields"), 25));
        }
        checks.push((format!("embeds.{e}.title"), &embed["title"], 256));
        checks.push((format!("embeds.{e}.description"), &embed["description"], 4096));
        checks.push((format!("embeds.{e}.footer.text"), &embed["footer"]["text"], 2048));
        for (f, field) in fields.iter().enumerate() {
            checks.push((format!("embeds.{e}.fields.{f}.name"), &field["name"], 256));
            checks.push((format!("embeds.{e}.fields.{f}.value"), &field["value"], 1024));
        }
        let total: usize = [&embed["title"], &embed["description"], &embed["footer"]["text"]]
            .into_iter()
            .chain(fields.iter().flat_map(|f| [&f["name"], &f["value"]]))
            .map(len)
            .sum();
        if total > 6000 {
            return Some((format!("embeds.{e}"), 6000));
        }
    }
    checks.into_iter().find(|(_, v, max)| len(v) > *max).map(|(path, _, max)| (path, max))
}

/// Discord's `Invalid Form Body` answer for the text at `path` (dot-separated).
fn invalid_form_body(path: &str, max: usize) -> Response {
    let mut errors = json!({"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": format!("Must be {max} or fewer in length.")}]});
    for part in path.rsplit('.') {
        errors = json!({ part: errors });
    }
    let body = json!({"code": 50035, "message": "Invalid Form Body", "errors": errors});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn error_status(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::TOO_MANY_REQUESTS {
        let body =
            json!({"message": "You are being rate limited.", "retry_after": 1.0, "global": false});
        let mut resp = (code, Json(body)).into_response();
        resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return resp;
    }
    (code, Json(json!({"message": format!("fake failure {status}"), "code": 0}))).into_response()
}

async fn rest(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bot "))
        .map(str::to_owned);
    let (answer, stall) = answer(&inner, &method, path, token, body);
    if stall {
        // The message exists; its answer never comes.
        std::future::pending::<()>().await;
    }
    answer
}

/// The answer to one REST call, and whether to hold it back forever (a stall).
#[allow(clippy::too_many_lines)]
fn answer(
    inner: &Mutex<Inner>,
    method: &Method,
    path: String,
    token: Option<String>,
    body: Value,
) -> (Response, bool) {
    let Ok(mut i) = inner.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR.into_response(), false);
    };
    let parts: Vec<&str> = path.split('/').collect();
    let route = match (method.as_str(), parts.as_slice()) {
        ("POST", ["channels", _, "messages"]) => Route::CreateMessage,
        ("PATCH", ["channels", _, "messages", _]) => Route::EditMessage,
        ("POST", ["channels", _, "messages", _, "threads"]) => Route::StartThread,
        ("POST", ["webhooks", _, _]) => Route::Followup,
        ("POST", ["users", "@me", "channels"]) => Route::OpenDm,
        ("PUT", ["applications", _, "guilds", _, "commands"]) => Route::SetCommands,
        ("GET", ["channels", _, "messages"]) => Route::ListMessages,
        _ => {
            i.calls.push(Call {
                method: method.to_string(),
                path,
                body,
                answer_id: None,
                status: 404,
                token,
            });
            let body = json!({"message": "Unknown route", "code": 0});
            return ((StatusCode::NOT_FOUND, Json(body)).into_response(), false);
        }
    };
    let mut call = Call {
        method: method.to_string(),
        path: path.clone(),
        body: body.clone(),
        answer_id: None,
        status: 200,
        token,
    };
    let refusal = if let Some(status) = i.failures.get_mut(&route).and_then(VecDeque::pop_front) {
        Some((status, error_status(status)))
    } else if let Some((field, max)) = over_limit(route, &body) {
        Some((400, invalid_form_body(&field, max)))
    } else if let ("POST", ["channels", _, "messages", msg, "threads"]) =
        (method.as_str(), parts.as_slice())
        && i.threads.contains(*msg)
    {
        let body = json!({"code": 160_004, "message": "A thread has already been created for this message."});
        Some((400, (StatusCode::BAD_REQUEST, Json(body)).into_response()))
    } else {
        None
    };
    if let Some((status, resp)) = refusal {
        call.status = status;
        i.calls.push(call);
        return (resp, false);
    }
    if let ("GET", ["channels", ch, "messages"]) = (method.as_str(), parts.as_slice()) {
        let listed: Vec<Value> = i
            .made
            .iter()
            .rev()
            .filter(|m| m.channel == *ch)
            .take(100)
            .map(|m| message(&m.id, &m.channel, &m.body))
            .collect();
        i.calls.push(call);
        return (Json(Value::Array(listed)).into_response(), false);
    }
    let nonce = body["nonce"].as_str().map(str::to_owned);
    if let ("POST", ["channels", ch, "messages"]) = (method.as_str(), parts.as_slice())
        && body["enforce_nonce"] == true
        && let Some(n) = &nonce
        && let Some(m) = i.made.iter().find(|m| m.nonce.as_ref() == Some(n)).cloned()
    {
        // Discord: "that message will be returned and no new message will be created".
        call.answer_id = Some(m.id.clone());
        i.calls.push(call);
        let mut answer = message(&m.id, ch, &m.body);
        answer["nonce"] = json!(n);
        return (Json(answer).into_response(), false);
    }
    i.next_id += 1;
    let id = i.next_id.to_string();
    let answer = match (method.as_str(), parts.as_slice()) {
        ("POST", ["channels", ch, "messages"]) => {
            i.made.push(Made {
                channel: (*ch).to_owned(),
                id: id.clone(),
                nonce: nonce.clone(),
                body: body.clone(),
            });
            if let Some(needle) = i.stall.clone()
                && body.to_string().contains(&needle)
            {
                i.stall = None;
                call.answer_id = Some(id);
                i.calls.push(call);
                return (StatusCode::OK.into_response(), true);
            }
            let mut m = message(&id, ch, &body);
            if let Some(n) = &nonce {
                m["nonce"] = json!(n);
            }
            m
        }
        ("PATCH", ["channels", ch, "messages", msg]) => message(msg, ch, &body),
        ("POST", ["channels", ch, "messages", msg, "threads"]) => {
            i.threads.insert((*msg).to_owned());
            call.answer_id = Some((*msg).to_owned());
            json!({
                "id": msg, "type": 11, "guild_id": "1100000000000000001", "parent_id": ch,
                "name": body["name"], "owner_id": "1200000000000000001", "flags": 0
            })
        }
        ("POST", ["webhooks", _app, _token]) => message(&id, "1150000000000000001", &body),
        ("POST", ["users", "@me", "channels"]) => json!({
            "id": id, "type": 1, "recipients": [user(body["recipient_id"].as_str().unwrap_or("0"), "someone")]
        }),
        ("PUT", ["applications", app, "guilds", guild, "commands"]) => {
            let cmds: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(n, mut c)| {
                    c["id"] = json!(format!("14000000000000000{n:02}"));
                    c["application_id"] = json!(app);
                    c["guild_id"] = json!(guild);
                    c["version"] = json!("1");
                    c["type"] = c.get("type").cloned().unwrap_or(json!(1));
                    c["default_member_permissions"] = Value::Null;
                    c
                })
                .collect();
            i.commands.insert((*guild).to_owned(), cmds.clone());
            Value::Array(cmds)
        }
        _ => return (StatusCode::INTERNAL_SERVER_ERROR.into_response(), false),
    };
    if call.answer_id.is_none() {
        call.answer_id = Some(id);
    }
    i.calls.push(call);
    (Json(answer).into_response(), false)
}

/// Signs interactions as Discord does, with a test application key.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
}

impl Default for Signer {
    fn default() -> Self {
        Self { key: SigningKey::from_bytes(&[42; 32]) }
    }
}

impl Signer {
    /// The application public key to configure (`discord.public_key`).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }
    /// `(X-Signature-Ed25519, X-Signature-Timestamp)` for `body` at `ts`.
    pub fn sign(&self, ts: i64, body: &str) -> (String, String) {
        let sig = self.key.sign(format!("{ts}{body}").as_bytes());
        (hex::encode(sig.to_bytes()), ts.to_string())
    }
}

/// The application id of the test application.
pub const APP_ID: &str = "1180000000000000001";
/// The guild of the tests.
pub const GUILD: &str = "1100000000000000001";

fn base(kind: u8, id: u64, user_id: &str, channel: &str) -> Value {
    json!({
        "id": id.to_string(), "application_id": APP_ID, "type": kind, "token": format!("interaction-token-{id}"),
        "version": 1, "guild_id": GUILD, "channel_id": channel,
        "channel": {"id": channel, "type": 0, "name": "incident", "guild_id": GUILD, "permissions": "0"},
        "member": {
            "user": user(user_id, "someone"), "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "deaf": false, "mute": false, "flags": 0, "permissions": "0", "pending": false
        },
        "app_permissions": "0", "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD}, "context": 0, "attachment_size_limit": 26214400
    })
}

/// A PING.
pub fn ping(id: u64) -> Value {
    json!({"id": id.to_string(), "application_id": APP_ID, "type": 1, "token": "ping-token", "version": 1})
}

/// `/breakglass SUB` with string options.
pub fn command(
    id: u64,
    user_id: &str,
    channel: &str,
    sub: &str,
    options: &[(&str, &str)],
) -> Value {
    let mut v = base(2, id, user_id, channel);
    let opts: Vec<Value> =
        options.iter().map(|(n, val)| json!({"name": n, "type": 3, "value": val})).collect();
    v["data"] = json!({"id": "1400000000000000000", "name": "breakglass", "type": 1, "guild_id": GUILD,
        "options": [{"name": sub, "type": 1, "options": opts}]});
    v
}

/// Autocomplete of `host` in `/breakglass request` with `typed` so far.
pub fn autocomplete(id: u64, user_id: &str, channel: &str, typed: &str) -> Value {
    let mut v = base(4, id, user_id, channel);
    v["data"] = json!({"id": "1400000000000000000", "name": "breakglass", "type": 1, "guild_id": GUILD,
        "options": [{"name": "request", "type": 1, "options": [{"name": "host", "type": 3, "value": typed, "focused": true}]}]});
    v
}

/// A click on a card button with `custom_id`, on message `message_id`.
pub fn component(
    id: u64,
    user_id: &str,
    channel: &str,
    message_id: &str,
    custom_id: &str,
) -> Value {
    let mut v = base(3, id, user_id, channel);
    v["data"] = json!({"custom_id": custom_id, "component_type": 2});
    v["message"] =
        message(message_id, channel, &json!({"content": "", "embeds": [], "components": []}));
    v
}
