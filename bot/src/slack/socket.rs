//! Slack Socket Mode: commands and clicks over an outbound WebSocket, for deployments with no
//! inbound HTTPS. The connection is authenticated by the app-level token (`xapp-…`), sent only
//! to `apps.connections.open` on the configured Web API base; the URL it answers is a
//! single-use WebSocket address. Payloads are parsed into slack-morphism's event types and go
//! through the same [`super::run_command`] and [`super::run_clicks`] as the HTTP
//! endpoints, each envelope once (by its id, on every replica), then acknowledged.
//!
//! The connection is driven here rather than by slack-morphism's listener, which retries at a
//! fixed interval and never reports a failed connection: a dropped socket, a `disconnect`
//! from Slack, or silence past [`IDLE`] plus a ping opens a new one; failures to connect back
//! off exponentially from [`Backoff::FIRST`] to [`Backoff::MAX`] with jitter, and a connection
//! that got Slack's `hello` resets the backoff. Neither the app token nor the WebSocket URL is
//! ever logged.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use sha2::Digest as _;
use shared::config::Secret;
use slack_morphism::prelude::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::SlackState;
use crate::chat::Delivery;
use crate::chat::Platform;
use crate::chat::sync::ChatHub;
use crate::service::Deps;

/// With nothing from Slack for this long, the bot pings; with nothing for twice this long,
/// the connection is given up and a new one opened.
pub const IDLE: Duration = Duration::from_secs(30);

/// Time allowed for `apps.connections.open` plus the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest frame accepted from Slack (envelopes are a few kilobytes).
const MAX_FRAME: usize = 1 << 20;

/// Exponential backoff between connection attempts, with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    /// The wait after the first failure (and after a connection that worked, then dropped).
    pub const FIRST: Duration = Duration::from_secs(1);
    /// The longest wait between attempts.
    pub const MAX: Duration = Duration::from_secs(60);

    /// The wait before the next attempt: the current step with up to a quarter of it taken
    /// off at random (so replicas do not reconnect in step), then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let quarter = u64::try_from(step.as_millis() / 4).unwrap_or(0);
        step.saturating_sub(Duration::from_millis(rand::random_range(0..=quarter)))
    }

    /// A connection worked: the next wait is the first one again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    /// `stop` was cancelled.
    Stopped,
    /// The connection went away (or Slack asked for a new one); `hello` says whether it had
    /// been established.
    Lost { reason: String, hello: bool },
}

/// Keeps a Socket Mode connection open until `stop` is cancelled, reconnecting with backoff.
pub async fn run(
    deps: Deps,
    hub: Arc<ChatHub>,
    slack: Arc<SlackState>,
    app_token: Secret<String>,
    stop: CancellationToken,
) {
    let token = SlackApiToken::new(app_token.expose().clone().into());
    let mut backoff = Backoff::default();
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&slack, &token)) => r,
        };
        let ended = match attempt {
            Ok(Ok(ws)) => serve(&deps, &hub, &slack, ws, &stop).await,
            Ok(Err(e)) => Ended::Lost { reason: e, hello: false },
            Err(_) => Ended::Lost { reason: "timed out connecting".into(), hello: false },
        };
        match ended {
            Ended::Stopped => return,
            Ended::Lost { reason, hello } => {
                if hello {
                    backoff.reset();
                }
                let wait = backoff.next_delay();
                tracing::warn!(%reason, retry_in = ?wait, "Slack Socket Mode connection lost");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `apps.connections.open` with the app token, then the WebSocket handshake with the URL it
/// answers. Errors are described without the token or the URL.
async fn connect(slack: &SlackState, token: &SlackApiToken) -> Result<Socket, String> {
    let client = slack.adapter.client();
    let open = client
        .open_session(token)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .map_err(|e| format!("apps.connections.open failed: {}", super::chat_error(e)))?;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        open.url.value().as_str(),
        Some(config),
        false,
    )
    .await
    .map_err(|e| format!("the WebSocket handshake failed: {}", describe_ws_error(&e)))?;
    Ok(ws)
}

/// A WebSocket error without the URL (which holds a ticket).
fn describe_ws_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Url(_) => "Slack answered an unusable WebSocket URL".into(),
        Error::Http(r) => format!("HTTP {}", r.status()),
        Error::Io(io) => io.kind().to_string(),
        other => other.to_string(),
    }
}

/// Serves one connection: envelopes in, acknowledgements out, until it ends or `stop`.
async fn serve(
    deps: &Deps,
    hub: &ChatHub,
    slack: &SlackState,
    mut ws: Socket,
    stop: &CancellationToken,
) -> Ended {
    let mut hello = false;
    let mut pinged = false;
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => {
                let _ = ws.close(None).await;
                return Ended::Stopped;
            }
            r = tokio::time::timeout(IDLE, ws.next()) => r,
        };
        let msg = match next {
            Err(_) if pinged => {
                return Ended::Lost {
                    reason: format!("nothing from Slack for {:?}", IDLE * 2),
                    hello,
                };
            }
            Err(_) => {
                pinged = true;
                if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                    return Ended::Lost { reason: describe_ws_error(&e), hello };
                }
                continue;
            }
            Ok(None) => return Ended::Lost { reason: "the connection ended".into(), hello },
            Ok(Some(Err(e))) => return Ended::Lost { reason: describe_ws_error(&e), hello },
            Ok(Some(Ok(m))) => m,
        };
        pinged = false;
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => {
                return Ended::Lost { reason: "closed by Slack".into(), hello };
            }
            _ => continue,
        };
        match handle(deps, hub, slack, text.as_str()).await {
            Handled::Hello => {
                hello = true;
                tracing::info!("Slack Socket Mode connected");
            }
            Handled::Disconnect(reason) => {
                let _ = ws.close(None).await;
                return Ended::Lost {
                    reason: format!("Slack asked to reconnect ({reason})"),
                    hello,
                };
            }
            Handled::Ack(ack) => {
                if let Err(e) = ws.send(Message::text(ack)).await {
                    return Ended::Lost { reason: describe_ws_error(&e), hello };
                }
            }
            Handled::Nothing => {}
        }
    }
}

/// What one frame from Slack calls for.
#[derive(Debug)]
enum Handled {
    Hello,
    Disconnect(String),
    /// This acknowledgement goes back.
    Ack(String),
    Nothing,
}

/// One Socket Mode frame from Slack: `hello`, `disconnect`, or an envelope (`slash_commands`,
/// `interactive`, `events_api`) with an id to acknowledge and a payload. (slack-morphism's own
/// models of these are not exported.)
#[derive(Debug, serde::Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    envelope_id: Option<String>,
    #[serde(default)]
    payload: serde_json::Value,
    reason: Option<String>,
}

/// Handles one frame: a command or clicks run (once per envelope id), then the ack.
async fn handle(deps: &Deps, hub: &ChatHub, slack: &SlackState, text: &str) -> Handled {
    let frame = match serde_json::from_str::<Frame>(text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "an unreadable Slack Socket Mode frame was ignored");
            return Handled::Nothing;
        }
    };
    match (frame.kind.as_str(), frame.envelope_id) {
        ("hello", _) => Handled::Hello,
        ("disconnect", _) => Handled::Disconnect(super::render::escape(
            frame.reason.as_deref().unwrap_or("no reason given"),
            64,
        )),
        ("slash_commands", Some(id)) => {
            let text = match first(deps, &id, Delivery::Other).await {
                Ok(true) => match serde_json::from_value::<SlackCommandEvent>(frame.payload) {
                    Ok(ev) => super::run_command(deps, hub, &ev).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "a malformed Slack slash command was ignored");
                        "malformed slash command [bad_request]".to_owned()
                    }
                },
                Ok(false) => return ack(&id, None),
                Err(text) => text,
            };
            let reply = SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
                .with_response_type(SlackMessageResponseType::Ephemeral);
            ack(&id, serde_json::to_value(reply).ok())
        }
        ("interactive", Some(id)) => {
            match first(deps, &id, Delivery::Click).await {
                Ok(true) => {
                    match serde_json::from_value::<SlackInteractionEvent>(frame.payload) {
                        Ok(SlackInteractionEvent::BlockActions(clicks)) => {
                            super::run_clicks(deps, hub, slack, clicks).await;
                        }
                        // Other interaction kinds are not ours: acknowledge and ignore.
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "a malformed Slack interaction was ignored")
                        }
                    }
                    let key = envelope_key(&id);
                    crate::chat::delivery_done(deps.store.as_ref(), Platform::Slack, &key).await;
                }
                Ok(false) => {}
                // Not acknowledged: Slack resends it, by when the database may answer.
                Err(_) => return Handled::Nothing,
            }
            ack(&id, None)
        }
        // Events and kinds not ours: acknowledged so Slack does not resend them; nothing runs.
        (_, Some(id)) => ack(&id, None),
        (kind, None) => {
            tracing::debug!(kind = %super::render::escape(kind, 32), "a Slack Socket Mode frame without an envelope was ignored");
            Handled::Nothing
        }
    }
}

/// The acknowledgement of envelope `id`, with the answer to show if there is one.
fn ack(id: &str, payload: Option<serde_json::Value>) -> Handled {
    let mut a = serde_json::json!({ "envelope_id": id });
    if let Some(p) = payload {
        a["payload"] = p;
    }
    Handled::Ack(a.to_string())
}

/// The delivery id an envelope is remembered under.
fn envelope_key(id: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("socket:{id}")))
}

/// Whether this envelope is handled for the first time (Slack resends one whose ack it did
/// not get, possibly to another replica). `Err` carries the answer when the database cannot
/// tell: nothing runs (fail closed).
async fn first(deps: &Deps, id: &str, kind: Delivery) -> Result<bool, String> {
    let key = envelope_key(id);
    match crate::chat::first_delivery(deps.store.as_ref(), Platform::Slack, &key, deps.now(), kind)
        .await
    {
        Ok(true) => Ok(true),
        Ok(false) => {
            tracing::info!("a resent Slack Socket Mode envelope was acknowledged again, not rerun");
            Ok(false)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a Slack Socket Mode envelope: refused");
            Err("breakglass cannot reach its database right now; nothing was changed [unavailable]"
                .to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let mut step = Backoff::FIRST;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d <= step && d >= step - step / 4, "{d:?} within a quarter below {step:?}");
            step = (step * 2).min(Backoff::MAX);
        }
        assert!(b.next_delay() >= Backoff::MAX - Backoff::MAX / 4, "capped at the maximum");
        b.reset();
        assert!(b.next_delay() <= Backoff::FIRST, "back to the first step");
    }
}
