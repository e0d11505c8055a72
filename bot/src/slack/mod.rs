//! Slack: the `/breakglass` slash command, the Approve / Deny / Revoke buttons, and the
//! [`ChatAdapter`] that posts and updates cards through Slack's Web API (slack-morphism).
//!
//! Every request from Slack is verified before anything in it is read: HMAC-SHA256 (`v0`)
//! over the raw body with the signing secret, a timestamp within 5 minutes, a constant-time
//! compare; then a replay check against the database (the same signature and timestamp seen
//! before, on any replica); anything else is a 401 and changes nothing. Clicks go through the same service
//! path as the API, the bot's key signing for the approver whose click was verified. In Socket
//! Mode ([`socket`]) there is no signing secret and the HTTP endpoints answer 404, reading
//! nothing.

pub mod parse;
pub mod render;
pub mod socket;

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use sha2::Digest as _;
use shared::config::Secret;
use shared::core::RequestRef;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

use crate::chat::command::{self, BadInput, Invocation};
use crate::chat::sync::ChatHub;
use crate::chat::{
    Button, CardView, ChatAdapter, ChatError, Delivery, Platform, Posted, ThreadPost,
};
use crate::service::Deps;
use render::Mrkdwn;

/// What Slack's deliveries need: the verifier (signing secret) for the HTTP endpoints, or the
/// app-level token for Socket Mode, and the adapter.
#[derive(Clone)]
pub struct SlackState {
    /// `None` in Socket Mode: the HTTP endpoints then answer 404 and read nothing (with no
    /// signing secret nothing could be verified).
    verifier: Option<SlackEventSignatureVerifier>,
    pub adapter: Arc<SlackAdapter>,
    /// The app-level token (`xapp-…`) in Socket Mode.
    pub app_token: Option<Secret<String>>,
}

impl std::fmt::Debug for SlackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackState").finish_non_exhaustive()
    }
}

impl SlackState {
    /// Deliveries over HTTP, checked with the signing secret.
    pub fn new(signing_secret: &Secret<String>, adapter: Arc<SlackAdapter>) -> Self {
        let secret = SlackSigningSecret::new(signing_secret.expose().clone());
        Self { verifier: Some(SlackEventSignatureVerifier::new(&secret)), adapter, app_token: None }
    }

    /// Deliveries over Socket Mode with the app-level token; the HTTP endpoints are off.
    pub fn socket_mode(app_token: Secret<String>, adapter: Arc<SlackAdapter>) -> Self {
        Self { verifier: None, adapter, app_token: Some(app_token) }
    }

    /// Checks Slack's signature over the raw body. Nothing is parsed before this passes.
    fn verify(&self, headers: &HeaderMap, body: &Bytes) -> bool {
        let Some(verifier) = &self.verifier else { return false };
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(sig), Some(ts)) = (
            h(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
            h(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
        ) else {
            return false;
        };
        let Ok(body) = std::str::from_utf8(body) else { return false };
        verifier.verify(sig, body, ts).is_ok()
    }
}

/// The signature check, then the replay check: a request whose signature and timestamp were
/// seen before (by any replica, before a restart) is a replay. Slack never resends slash
/// commands or interactions on its own, so a second copy is not Slack's and gets the same 401
/// as a forged one; it changes nothing.
async fn verified(
    deps: &Deps,
    slack: &SlackState,
    headers: &HeaderMap,
    body: &Bytes,
    kind: Delivery,
) -> Result<String, Response> {
    if !slack.verify(headers, body) {
        return Err(StatusCode::UNAUTHORIZED.into_response());
    }
    let h =
        |name: &str| headers.get(name).map(axum::http::HeaderValue::as_bytes).unwrap_or_default();
    let mut digest = sha2::Sha256::new();
    digest.update(h(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER));
    digest.update(b"\n");
    digest.update(h(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP));
    let id = hex::encode(digest.finalize());
    match crate::chat::first_delivery(deps.store.as_ref(), Platform::Slack, &id, deps.now(), kind)
        .await
    {
        Ok(true) => Ok(id),
        Ok(false) => {
            tracing::warn!("a replayed Slack request was refused");
            Err((StatusCode::UNAUTHORIZED, "request already handled").into_response())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a Slack request: refused");
            Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
    }
}

/// The Slack Web API client as a [`ChatAdapter`].
pub struct SlackAdapter {
    client: Arc<SlackHyperClient>,
    token: SlackApiToken,
}

impl SlackAdapter {
    /// The Web API client (Socket Mode connects through it).
    pub fn client(&self) -> Arc<SlackHyperClient> {
        self.client.clone()
    }
}

impl std::fmt::Debug for SlackAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackAdapter").finish_non_exhaustive()
    }
}

impl SlackAdapter {
    /// A client for the Web API at `api_url` (`https://slack.com/api`, or a test server).
    ///
    /// # Errors
    /// TLS setup failures.
    pub fn new(api_url: &str, bot_token: &Secret<String>) -> anyhow::Result<Self> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        let connector =
            SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url);
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(bot_token.expose().clone().into()),
        })
    }
}

/// The message metadata carrying a post's key ([`crate::chat::post_key`]).
fn metadata(key: &str) -> SlackMessageMetadata {
    SlackMessageMetadata::new(crate::chat::POST_EVENT_TYPE.to_owned())
        .with_event_payload([("key".to_owned(), key.to_owned())].into_iter().collect())
}

/// The key of one of our posts, from its metadata.
fn key_of(content: &SlackMessageContent) -> Option<String> {
    let m = content.metadata.as_ref().filter(|m| m.event_type == crate::chat::POST_EVENT_TYPE)?;
    m.event_payload.as_ref()?.get("key").cloned()
}

/// Slack's answer as a [`ChatError`]: an `error` code about the bot's access is retried, one
/// about Slack itself is transient, any other refuses this message for good.
fn chat_error(e: SlackClientError) -> ChatError {
    match e {
        SlackClientError::RateLimitError(r) => ChatError::RateLimited(r.retry_after),
        SlackClientError::ApiError(a) => match a.code.as_str() {
            "ratelimited" => ChatError::RateLimited(None),
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                ChatError::Transient(a.code)
            }
            "not_authed"
            | "invalid_auth"
            | "account_inactive"
            | "token_revoked"
            | "token_expired"
            | "missing_scope"
            | "not_allowed_token_type"
            | "no_permission"
            | "not_in_channel"
            | "channel_not_found"
            | "is_archived"
            | "restricted_action"
            | "team_access_not_granted"
            | "ekm_access_denied" => ChatError::NotAllowed(a.code),
            _ => ChatError::Refused(a.code),
        },
        other => ChatError::Transient(other.to_string()),
    }
}

#[async_trait]
impl ChatAdapter for SlackAdapter {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    /// With `key` in the message metadata (`breakglass_post`), which
    /// `conversations.history` shows back.
    async fn post_card(
        &self,
        channel: &str,
        card: &CardView,
        key: &str,
    ) -> Result<Posted, ChatError> {
        let session = self.client.open_session(&self.token);
        let r = session
            .chat_post_message(&SlackApiChatPostMessageRequest::new(
                channel.into(),
                render::card(card).with_metadata(metadata(key)),
            ))
            .await
            .map_err(chat_error)?;
        Ok(Posted { message_id: r.ts.0, thread_id: None })
    }

    /// `conversations.history` of the channel (the last 200 messages, with metadata).
    async fn find_card(&self, channel: &str, key: &str) -> Result<Option<Posted>, ChatError> {
        let session = self.client.open_session(&self.token);
        let r: SlackApiConversationsHistoryResponse = session
            .http_session_api
            .http_get(
                "conversations.history",
                &[
                    ("channel", Some(channel)),
                    ("limit", Some("200")),
                    ("include_all_metadata", Some("true")),
                ],
                None,
            )
            .await
            .map_err(chat_error)?;
        Ok(r.messages
            .into_iter()
            .find(|m| key_of(&m.content).as_deref() == Some(key))
            .map(|m| Posted { message_id: m.origin.ts.0, thread_id: None }))
    }

    /// `conversations.replies` of the card (with metadata; slack-morphism's request type has
    /// no `include_all_metadata`, so the call is spelled out).
    async fn thread_keys(
        &self,
        channel: &str,
        posted: &Posted,
    ) -> Result<std::collections::HashSet<String>, ChatError> {
        let session = self.client.open_session(&self.token);
        let r: SlackApiConversationsRepliesResponse = session
            .http_session_api
            .http_get(
                "conversations.replies",
                &[
                    ("channel", Some(channel)),
                    ("ts", Some(posted.message_id.as_str())),
                    ("limit", Some("1000")),
                    ("include_all_metadata", Some("true")),
                ],
                None,
            )
            .await
            .map_err(chat_error)?;
        Ok(r.messages.iter().filter_map(|m| key_of(&m.content)).collect())
    }

    /// Replies hang off the card's message: there is no thread to start.
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
        channel: &str,
        posted: &Posted,
        card: &CardView,
    ) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        session
            .chat_update(&SlackApiChatUpdateRequest::new(
                channel.into(),
                render::card(card),
                posted.message_id.clone().into(),
            ))
            .await
            .map(drop)
            .map_err(chat_error)
    }

    async fn post_in_thread(
        &self,
        channel: &str,
        posted: &Posted,
        post: &ThreadPost,
        key: &str,
    ) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        session
            .chat_post_message(
                &SlackApiChatPostMessageRequest::new(
                    channel.into(),
                    render::thread_post(post).with_metadata(metadata(key)),
                )
                .with_thread_ts(posted.message_id.clone().into()),
            )
            .await
            .map(drop)
            .map_err(chat_error)
    }

    async fn ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        let content = SlackMessageContent::new().with_text(text.to_owned());
        session
            .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
                channel.into(),
                user.into(),
                content,
            ))
            .await
            .map(drop)
            .map_err(chat_error)
    }
}

/// What the Slack endpoints run on: the service, the chat hub (its sync loop is woken after a
/// change) and Slack's state when Slack is configured.
#[derive(Debug, Clone)]
pub struct SlackFront {
    pub deps: Deps,
    pub hub: Arc<ChatHub>,
    pub slack: Option<Arc<SlackState>>,
}

/// The Slack endpoints (`/slack/commands`, `/slack/interactions`), merged into the bot's router.
pub fn routes() -> Router<SlackFront> {
    Router::new()
        .route("/slack/commands", post(command))
        .route("/slack/interactions", post(interaction))
}

/// The Slack state when the HTTP endpoints are on (Slack configured, not in Socket Mode).
fn slack_state(front: &SlackFront) -> Option<Arc<SlackState>> {
    front.slack.clone().filter(|s| s.verifier.is_some())
}

/// An ephemeral answer to a slash command.
fn reply(text: String) -> Response {
    Json(json!({ "response_type": "ephemeral", "text": text })).into_response()
}

/// `POST /slack/commands`: the `/breakglass` slash command.
pub async fn command(State(front): State<SlackFront>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(slack) = slack_state(&front) else { return StatusCode::NOT_FOUND.into_response() };
    if let Err(refused) = verified(&front.deps, &slack, &headers, &body, Delivery::Other).await {
        return refused;
    }
    let Some(ev) = decode_command(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed slash command").into_response();
    };
    reply(run_command(&front.deps, &front.hub, &ev).await)
}

/// Runs one slash command (verified, from HTTP or Socket Mode) through the shared runner;
/// returns the private answer.
pub async fn run_command(deps: &Deps, hub: &ChatHub, ev: &SlackCommandEvent) -> String {
    let (user, channel) = (ev.user_id.to_string(), ev.channel_id.to_string());
    let inv = Invocation { platform: Platform::Slack, user: &user, channel: &channel };
    let cmd = parse::parse(ev.text.as_deref().unwrap_or_default())
        .map_err(|e| BadInput { message: e.to_string(), code: e.code() });
    command::run(deps, hub, &Mrkdwn, &inv, cmd).await
}

/// Handles the clicks of one verified `block_actions` event (HTTP or Socket Mode): each goes
/// through the shared runner as the clicker; refusals are told to the clicker alone, off the
/// request path.
pub async fn run_clicks(
    deps: &Deps,
    hub: &ChatHub,
    slack: &SlackState,
    ev: SlackInteractionBlockActionsEvent,
) {
    let user = ev.user.as_ref().map(|u| u.id.to_string()).unwrap_or_default();
    let channel = ev.channel.as_ref().map(|c| c.id.to_string()).unwrap_or_default();
    let inv = Invocation { platform: Platform::Slack, user: &user, channel: &channel };
    for action in ev.actions.unwrap_or_default() {
        let Some((button, r)) = click_of(&action) else { continue };
        if let Err(text) = command::click(deps, hub, &Mrkdwn, &inv, button, &r).await {
            let adapter = slack.adapter.clone();
            let (channel, user) = (channel.clone(), user.clone());
            tokio::spawn(async move {
                if let Err(e) = adapter.ephemeral(&channel, &user, &text).await {
                    tracing::warn!(error = %e, "cannot tell the clicker why");
                }
            });
        }
    }
}

#[derive(serde::Deserialize)]
struct InteractionForm {
    payload: String,
}

/// `POST /slack/interactions`: Approve, Deny and Revoke clicks on cards.
pub async fn interaction(
    State(front): State<SlackFront>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(slack) = slack_state(&front) else { return StatusCode::NOT_FOUND.into_response() };
    let id = match verified(&front.deps, &slack, &headers, &body, Delivery::Click).await {
        Ok(id) => id,
        Err(refused) => return refused,
    };
    let Some(decoded) = decode_interaction(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed interaction").into_response();
    };
    let Some(ev) = decoded else {
        // Other interaction kinds are not ours: acknowledge and ignore.
        return StatusCode::OK.into_response();
    };
    run_clicks(&front.deps, &front.hub, &slack, ev).await;
    crate::chat::delivery_done(front.deps.store.as_ref(), Platform::Slack, &id).await;
    StatusCode::OK.into_response()
}

/// Decodes a verified `/slack/commands` body (a URL-encoded form); `None` if malformed.
/// Also the entry point of the `slack_command` fuzz target.
pub fn decode_command(body: &[u8]) -> Option<SlackCommandEvent> {
    serde_urlencoded::from_bytes::<SlackCommandEvent>(body).ok()
}

/// Decodes a verified `/slack/interactions` body: `None` if the form is malformed,
/// `Some(None)` for an interaction kind other than button clicks. Also the entry point of the
/// `slack_interaction` fuzz target.
pub fn decode_interaction(body: &[u8]) -> Option<Option<SlackInteractionBlockActionsEvent>> {
    let form = serde_urlencoded::from_bytes::<InteractionForm>(body).ok()?;
    match serde_json::from_str::<SlackInteractionEvent>(&form.payload) {
        Ok(SlackInteractionEvent::BlockActions(ev)) => Some(Some(ev)),
        _ => Some(None),
    }
}

/// The button and request one clicked action names; `None` for an action that is not ours.
pub fn click_of(action: &SlackInteractionActionInfo) -> Option<(Button, RequestRef)> {
    let button = Button::from_action_id(action.action_id.as_ref())?;
    let r = action.value.as_deref()?.parse::<RequestRef>().ok()?;
    Some((button, r))
}
