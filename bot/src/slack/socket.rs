//! Slack Socket Mode: commands and clicks over an outbound WebSocket, for deployments with no
//! inbound HTTPS. The connection is authenticated by the app-level token (`xapp-…`); events
//! arrive already parsed and go through the same [`super::run_command`] and
//! [`super::run_clicks`] as the HTTP endpoints.

use std::sync::Arc;

use shared::config::Secret;
use slack_morphism::prelude::*;
use tokio_util::sync::CancellationToken;

use super::SlackState;
use crate::service::Deps;

/// What the callbacks need (slack-morphism passes state through its user-state storage).
#[derive(Clone)]
struct Shared {
    deps: Deps,
    slack: Arc<SlackState>,
}

async fn on_command(
    ev: SlackCommandEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let shared = states.read().await.get_user_state::<Shared>().cloned();
    let text = match shared {
        Some(s) => super::run_command(&s.deps, &ev).await,
        None => "breakglass is starting; try again in a moment".to_owned(),
    };
    Ok(SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
        .with_response_type(SlackMessageResponseType::Ephemeral))
}

async fn on_interaction(
    ev: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let shared = states.read().await.get_user_state::<Shared>().cloned();
    if let (Some(s), SlackInteractionEvent::BlockActions(ev)) = (shared, ev) {
        super::run_clicks(&s.deps, &s.slack, ev).await;
    }
    Ok(())
}

/// Connects to Slack in Socket Mode and handles events until `stop` is cancelled.
///
/// # Errors
/// The first connection failing (bad app token, Slack unreachable).
pub async fn run(
    deps: Deps,
    slack: Arc<SlackState>,
    app_token: Secret<String>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let client = slack.adapter.client();
    let env = Arc::new(
        SlackClientEventsListenerEnvironment::new(client).with_user_state(Shared { deps, slack }),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_interaction_events(on_interaction);
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new().with_max_connections_count(1),
        env,
        callbacks,
    );
    listener
        .listen_for(&SlackApiToken::new(app_token.expose().clone().into()))
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the Slack Socket Mode connection: {e}"))?;
    listener.start().await;
    tracing::info!("Slack Socket Mode connected");
    stop.cancelled().await;
    listener.shutdown().await;
    Ok(())
}
