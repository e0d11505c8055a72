//! Discord: the `/breakglass` slash command (HTTP interactions mode, no gateway connection),
//! Approve / Deny / Revoke buttons, autocomplete of hosts, and the [`ChatAdapter`] posting
//! cards as embeds with a thread each (serenity's model and HTTP client).
//!
//! Every interaction is verified before anything in it is read: Ed25519 over timestamp ‖ body
//! with the application's public key, a timestamp within 5 minutes, and an interaction id never
//! seen before (kept in the database, so replicas and restarts share it); anything else is a 401 (Discord probes endpoints with bad signatures).
//! Clicks go through the same service path as the API and Slack.

pub mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serenity::all::{
    ApplicationId, AutocompleteChoice, ChannelId, CommandInteraction, CommandOptionType,
    ComponentInteraction, CreateAutocompleteResponse, CreateCommand, CreateCommandOption,
    CreateInteractionResponse, CreateInteractionResponseFollowup, CreateInteractionResponseMessage,
    CreateMessage, CreateThread, EditMessage, GetMessages, GuildId, Http, HttpBuilder, Interaction,
    MessageId, Nonce, ResolvedOption, ResolvedValue, UserId,
};
use shared::config::Secret;
use shared::core::{
    GrantDuration, HostName, Login, PolicyError, PrincipalName, Reason, RequestRef,
};

use crate::chat::command::{self, BadInput, Invocation, SlashCommand};
use crate::chat::sync::ChatHub;
use crate::chat::{Button, CardView, ChatAdapter, ChatError, Platform, Posted, ThreadPost};
use crate::service::Deps;
use render::{DiscordMarkdown, no_mentions};

/// How old an interaction's timestamp may be.
const MAX_AGE_SECS: i64 = 300;
/// How long an interaction token can send follow-ups (Discord: 15 minutes; keep a margin).
const TOKEN_LIFE: Duration = Duration::from_secs(14 * 60);

/// What the Discord endpoint needs.
pub struct DiscordState {
    verifier: serenity::interactions_endpoint::Verifier,
    pub adapter: Arc<DiscordAdapter>,
}

impl std::fmt::Debug for DiscordState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordState").finish_non_exhaustive()
    }
}

impl DiscordState {
    /// # Errors
    /// A public key that is not 64 hex digits.
    pub fn new(public_key_hex: &str, adapter: Arc<DiscordAdapter>) -> anyhow::Result<Self> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(public_key_hex.trim(), &mut key)
            .map_err(|_| anyhow::anyhow!("config error at `discord.public_key`: not 64 hex digits; fix: paste the application's public key"))?;
        let verifier = serenity::interactions_endpoint::Verifier::try_new(key).map_err(|_| {
            anyhow::anyhow!("config error at `discord.public_key`: not a valid Ed25519 key")
        })?;
        Ok(Self { verifier, adapter })
    }

    /// Signature, freshness (within 5 minutes of now). Nothing is parsed before this passes.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> bool {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(sig), Some(ts)) = (h("x-signature-ed25519"), h("x-signature-timestamp")) else {
            return false;
        };
        let Ok(t) = ts.parse::<i64>() else { return false };
        // The timestamp is the caller's: no arithmetic on it can overflow.
        if now.abs_diff(t) > MAX_AGE_SECS.unsigned_abs() {
            return false;
        }
        self.verifier.verify(sig, ts, body).is_ok()
    }
}

/// Discord's REST API through serenity, as a [`ChatAdapter`].
pub struct DiscordAdapter {
    http: Arc<Http>,
    /// The latest interaction token of each user (in memory only), so the connect line can be
    /// an ephemeral follow-up visible to them alone; after 14 minutes a DM is used instead.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for DiscordAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordAdapter").finish_non_exhaustive()
    }
}

impl DiscordAdapter {
    /// A client for `api_base` (`https://discord.com`, or a test server) with the bot token.
    pub fn new(api_base: &str, application_id: u64, bot_token: &Secret<String>) -> Self {
        let mut b = HttpBuilder::new(bot_token.expose())
            .ratelimiter_disabled(true)
            .application_id(ApplicationId::new(application_id.max(1)));
        if api_base.trim_end_matches('/') != "https://discord.com" {
            b = b.proxy(api_base.trim_end_matches('/'));
        }
        Self { http: Arc::new(b.build()), tokens: Mutex::new(HashMap::new()) }
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    fn remember(&self, user: &str, token: &str) {
        if let Ok(mut t) = self.tokens.lock() {
            t.retain(|_, (_, at)| at.elapsed() < TOKEN_LIFE);
            t.insert(user.to_owned(), (token.to_owned(), Instant::now()));
        }
    }

    fn token_of(&self, user: &str) -> Option<String> {
        let t = self.tokens.lock().ok()?;
        t.get(user).filter(|(_, at)| at.elapsed() < TOKEN_LIFE).map(|(tok, _)| tok.clone())
    }
}

/// Discord's JSON error code for "a thread has already been created for this message".
const THREAD_ALREADY_CREATED: isize = 160_004;

/// Discord's answer as a [`ChatError`]: 429 waits, 401 and 403 (the bot's token or
/// permissions) are retried, any other 4xx, and a message serenity will not send (too long),
/// refuse this message for good.
fn chat_error(e: serenity::Error) -> ChatError {
    match &e {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)) => {
            let code = r.status_code.as_u16();
            let what = format!("{code} {}", r.error.message);
            match code {
                429 => ChatError::RateLimited(None),
                401 | 403 => ChatError::NotAllowed(what),
                400..=499 => ChatError::Refused(what),
                _ => ChatError::Transient(what),
            }
        }
        serenity::Error::Model(m) => ChatError::Refused(m.to_string()),
        _ => ChatError::Transient(e.to_string()),
    }
}

/// The last 100 messages of `channel` that carry a string nonce: (message id, nonce).
async fn recent_nonces(
    http: &serenity::http::Http,
    channel: &str,
) -> Result<Vec<(String, String)>, ChatError> {
    let msgs = ChannelId::new(snowflake(channel)?)
        .messages(http, GetMessages::new().limit(100))
        .await
        .map_err(chat_error)?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m.nonce {
            Some(Nonce::String(n)) => Some((m.id.to_string(), n)),
            _ => None,
        })
        .collect())
}

fn snowflake(s: &str) -> Result<u64, ChatError> {
    s.parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ChatError::Refused(format!("`{}` is not a Discord id", s.escape_debug())))
}

#[async_trait]
impl ChatAdapter for DiscordAdapter {
    fn platform(&self) -> Platform {
        Platform::Discord
    }

    /// With `nonce` = `key` and `enforce_nonce`: Discord answers the message already made
    /// with that nonce (within a few minutes) instead of making a second one.
    async fn post_card(
        &self,
        channel: &str,
        card: &CardView,
        key: &str,
    ) -> Result<Posted, ChatError> {
        let ch = ChannelId::new(snowflake(channel)?);
        let (embed, rows) = render::card(card);
        let msg = ch
            .send_message(
                &self.http,
                CreateMessage::new()
                    .embed(embed)
                    .components(rows)
                    .allowed_mentions(no_mentions())
                    .nonce(Nonce::String(key.to_owned()))
                    .enforce_nonce(true),
            )
            .await
            .map_err(chat_error)?;
        Ok(Posted { message_id: msg.id.to_string(), thread_id: None })
    }

    /// The channel's last 100 messages, by nonce (past `enforce_nonce`'s few minutes).
    async fn find_card(&self, channel: &str, key: &str) -> Result<Option<Posted>, ChatError> {
        let found = recent_nonces(&self.http, channel).await?;
        Ok(found
            .into_iter()
            .find(|(_, nonce)| nonce == key)
            .map(|(id, _)| Posted { message_id: id, thread_id: None }))
    }

    async fn thread_keys(
        &self,
        channel: &str,
        posted: &Posted,
    ) -> Result<std::collections::HashSet<String>, ChatError> {
        let target = posted.thread_id.as_deref().unwrap_or(channel);
        Ok(recent_nonces(&self.http, target).await?.into_iter().map(|(_, n)| n).collect())
    }

    /// A thread started from the card. Its id is the card's message id, so a thread that
    /// exists already (an earlier answer was lost) is found again.
    async fn start_thread(
        &self,
        channel: &str,
        posted: &Posted,
        card: &CardView,
    ) -> Result<Option<String>, ChatError> {
        let result = ChannelId::new(snowflake(channel)?)
            .create_thread_from_message(
                &self.http,
                MessageId::new(snowflake(&posted.message_id)?),
                CreateThread::new(render::thread_name(card)),
            )
            .await;
        match result {
            Ok(thread) => Ok(Some(thread.id.to_string())),
            Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)))
                if r.error.code == THREAD_ALREADY_CREATED =>
            {
                Ok(Some(posted.message_id.clone()))
            }
            Err(e) => Err(chat_error(e)),
        }
    }

    async fn update_card(
        &self,
        channel: &str,
        posted: &Posted,
        card: &CardView,
    ) -> Result<(), ChatError> {
        let ch = ChannelId::new(snowflake(channel)?);
        let (embed, rows) = render::card(card);
        ch.edit_message(
            &self.http,
            MessageId::new(snowflake(&posted.message_id)?),
            EditMessage::new().embed(embed).components(rows).allowed_mentions(no_mentions()),
        )
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
        let target = posted.thread_id.as_deref().unwrap_or(channel);
        ChannelId::new(snowflake(target)?)
            .send_message(
                &self.http,
                CreateMessage::new()
                    .content(render::thread_post(post))
                    .allowed_mentions(no_mentions())
                    .nonce(Nonce::String(key.to_owned()))
                    .enforce_nonce(true),
            )
            .await
            .map(drop)
            .map_err(chat_error)
    }

    async fn ephemeral(&self, _channel: &str, user: &str, text: &str) -> Result<(), ChatError> {
        if let Some(token) = self.token_of(user) {
            let f = CreateInteractionResponseFollowup::new()
                .content(text)
                .ephemeral(true)
                .allowed_mentions(no_mentions());
            return self
                .http
                .create_followup_message(&token, &f, Vec::new())
                .await
                .map(drop)
                .map_err(chat_error);
        }
        // Past the interaction's life: a direct message, still for them alone.
        let dm = UserId::new(snowflake(user)?)
            .create_dm_channel(&self.http)
            .await
            .map_err(chat_error)?;
        dm.id
            .send_message(
                &self.http,
                CreateMessage::new().content(text).allowed_mentions(no_mentions()),
            )
            .await
            .map(drop)
            .map_err(chat_error)
    }
}

/// The `/breakglass` command as registered with Discord. `logins` are the choices offered
/// for `login` (every login of every scope).
pub fn command_definition(logins: &[String]) -> CreateCommand {
    let mut login = CreateCommandOption::new(
        CommandOptionType::String,
        "login",
        "Unix login on the host (default: the scope's first)",
    );
    for l in logins.iter().take(25) {
        login = login.add_string_choice(l, l);
    }
    CreateCommand::new("breakglass")
        .description("Request, check or revoke break-glass access")
        .add_option(
            CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "request",
                "Ask for minutes of access to one host",
            )
            .add_sub_option(
                CreateCommandOption::new(CommandOptionType::String, "host", "Host")
                    .required(true)
                    .set_autocomplete(true),
            )
            .add_sub_option(
                CreateCommandOption::new(
                    CommandOptionType::String,
                    "reason",
                    "Why you need access",
                )
                .required(true)
                .max_length(1000),
            )
            .add_sub_option(login)
            .add_sub_option(CreateCommandOption::new(
                CommandOptionType::String,
                "duration",
                "How long, e.g. 30m (default: the scope's)",
            )),
        )
        .add_option(
            CreateCommandOption::new(CommandOptionType::SubCommand, "status", "Show a request")
                .add_sub_option(CreateCommandOption::new(
                    CommandOptionType::String,
                    "id",
                    "Request code (bg-…)",
                )),
        )
        .add_option(CreateCommandOption::new(
            CommandOptionType::SubCommand,
            "list",
            "Open requests and live sessions in this channel",
        ))
        .add_option(
            CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "revoke",
                "Withdraw a request or end a grant",
            )
            .add_sub_option(
                CreateCommandOption::new(CommandOptionType::String, "id", "Request code (bg-…)")
                    .required(true),
            ),
        )
        .add_option(
            CreateCommandOption::new(
                CommandOptionType::SubCommand,
                "review",
                "A private sign-in link to the reviewer page (reviewers only)",
            )
            .add_sub_option(CreateCommandOption::new(
                CommandOptionType::String,
                "id",
                "Request code (bg-…); the session list when empty",
            )),
        )
        .add_option(CreateCommandOption::new(
            CommandOptionType::SubCommand,
            "help",
            "How to use breakglass",
        ))
}

/// Registers (or updates) the command in one guild: a bulk overwrite, so re-running it
/// updates and never duplicates.
///
/// # Errors
/// Discord refusing the call.
pub async fn register(
    adapter: &DiscordAdapter,
    guild: u64,
    logins: &[String],
) -> Result<usize, ChatError> {
    let cmds = GuildId::new(guild.max(1))
        .set_commands(adapter.http(), vec![command_definition(logins)])
        .await
        .map_err(chat_error)?;
    Ok(cmds.len())
}

/// An answer only the user sees.
fn private(text: String) -> Response {
    Json(CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(text)
            .ephemeral(true)
            .allowed_mentions(no_mentions()),
    ))
    .into_response()
}

/// What the Discord endpoint runs on: the service, the chat hub (its sync loop is woken after a
/// change) and Discord's state when Discord is configured.
#[derive(Debug, Clone)]
pub struct DiscordFront {
    pub deps: Deps,
    pub hub: Arc<ChatHub>,
    pub discord: Option<Arc<DiscordState>>,
}

/// The Discord endpoint (`/discord/interactions`), merged into the bot's router.
pub fn routes() -> Router<DiscordFront> {
    Router::new().route("/discord/interactions", post(interactions))
}

/// `POST /discord/interactions`.
pub async fn interactions(
    State(front): State<DiscordFront>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let DiscordFront { deps, hub, discord } = front;
    let Some(discord) = discord else { return StatusCode::NOT_FOUND.into_response() };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    if !discord.verify(&headers, &body, now) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let interaction = match decode(&body) {
        Ok(i) => i,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("malformed interaction: {e}"))
                .into_response();
        }
    };
    // Discord does not resend an interaction, so a second copy is a replay: 401, like a
    // forged one, and nothing is done. The id is kept in the database, so every replica and a
    // restarted bot refuse it alike.
    let id = interaction.id().get().to_string();
    let kind = match interaction {
        Interaction::Component(_) => crate::chat::Delivery::Click,
        _ => crate::chat::Delivery::Other,
    };
    match crate::chat::first_delivery(deps.store.as_ref(), Platform::Discord, &id, deps.now(), kind)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(interaction = %id, "a replayed Discord interaction was refused");
            return (StatusCode::UNAUTHORIZED, "interaction already handled").into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a Discord interaction: refused");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    match interaction {
        Interaction::Ping(_) => Json(CreateInteractionResponse::Pong).into_response(),
        Interaction::Autocomplete(cmd) => autocomplete(&deps, &cmd),
        Interaction::Command(cmd) => {
            discord.adapter.remember(&cmd.user.id.to_string(), &cmd.token);
            command(&deps, &hub, &cmd).await
        }
        Interaction::Component(click) => {
            discord.adapter.remember(&click.user.id.to_string(), &click.token);
            let answer = component(&deps, &hub, &click).await;
            crate::chat::delivery_done(deps.store.as_ref(), Platform::Discord, &id).await;
            answer
        }
        _ => StatusCode::OK.into_response(),
    }
}

fn principal(deps: &Deps, user: &UserId) -> Option<PrincipalName> {
    deps.config.principal_by_chat_id(None, Some(&user.to_string())).cloned()
}

/// Hosts the user may request from this channel, matching what they typed so far.
fn autocomplete(deps: &Deps, cmd: &CommandInteraction) -> Response {
    let typed = cmd.data.autocomplete().map(|a| a.value.to_lowercase()).unwrap_or_default();
    let channel = cmd.channel_id.to_string();
    let mut choices = Vec::new();
    if let Some(who) = principal(deps, &cmd.user.id)
        && let Ok(p) = deps.config.policy.principal(&who)
    {
        for scope in deps.config.policy.scopes() {
            if !deps.config.policy.may_request(p, scope) || !scope.channels.contains(&channel) {
                continue;
            }
            for host in scope.hosts.keys() {
                if host.as_str().contains(&typed)
                    && !choices.iter().any(|c: &String| c == host.as_str())
                {
                    choices.push(host.to_string());
                }
            }
        }
    }
    choices.sort();
    let resp = CreateAutocompleteResponse::new().set_choices(
        choices.into_iter().take(25).map(|h| AutocompleteChoice::new(h.clone(), h)).collect(),
    );
    Json(CreateInteractionResponse::Autocomplete(resp)).into_response()
}

/// The text of option `name`, typed or autocompleted.
pub fn string_opt<'a>(opts: &'a [ResolvedOption<'a>], name: &str) -> Option<&'a str> {
    opts.iter().find(|o| o.name == name).and_then(|o| match &o.value {
        ResolvedValue::String(s) => Some(*s),
        ResolvedValue::Autocomplete { value, .. } => Some(*value),
        _ => None,
    })
}

/// The slash command through the shared runner; the answer is private.
async fn command(deps: &Deps, hub: &ChatHub, cmd: &CommandInteraction) -> Response {
    let (user, channel) = (cmd.user.id.to_string(), cmd.channel_id.to_string());
    let inv = Invocation { platform: Platform::Discord, user: &user, channel: &channel };
    let decoded = slash_command(&cmd.data.options());
    private(command::run(deps, hub, &DiscordMarkdown, &inv, decoded).await)
}

/// The subcommand and its options as a [`SlashCommand`]. No subcommand, or one this bot
/// does not know, is `help`.
///
/// # Errors
/// An option that does not validate (a missing request id is an invalid one).
pub fn slash_command(options: &[ResolvedOption<'_>]) -> Result<SlashCommand, BadInput> {
    let Some(ResolvedOption { name: sub, value: ResolvedValue::SubCommand(args), .. }) =
        options.first()
    else {
        return Ok(SlashCommand::Help);
    };
    let bad = |e: shared::core::InvalidValue| BadInput {
        message: e.to_string(),
        code: PolicyError::Invalid(e).code(),
    };
    let id = |name| string_opt(args, name).map(str::parse::<RequestRef>).transpose().map_err(bad);
    Ok(match *sub {
        "request" => {
            let RequestOptions { host, login, duration, reason } =
                request_options(args).map_err(bad)?;
            SlashCommand::Request { host, login, duration, scope: None, reason }
        }
        "status" => SlashCommand::Status(id("id")?),
        "list" => SlashCommand::List,
        "revoke" => SlashCommand::Revoke(
            string_opt(args, "id").unwrap_or_default().parse::<RequestRef>().map_err(bad)?,
        ),
        "review" => SlashCommand::Review(id("id")?),
        _ => SlashCommand::Help,
    })
}

/// A click on a card's button through the shared runner: acknowledged when taken (the sync
/// loop edits the card for everyone), otherwise the refusal, privately.
async fn component(deps: &Deps, hub: &ChatHub, click: &ComponentInteraction) -> Response {
    let Some((button, r)) = click_of(&click.data.custom_id) else {
        return StatusCode::OK.into_response();
    };
    let (user, channel) = (click.user.id.to_string(), click.channel_id.to_string());
    let inv = Invocation { platform: Platform::Discord, user: &user, channel: &channel };
    match command::click(deps, hub, &DiscordMarkdown, &inv, button, &r).await {
        Ok(()) => Json(CreateInteractionResponse::Acknowledge).into_response(),
        Err(text) => private(text),
    }
}

/// Decodes a verified interaction body. Also the entry point of the `discord_interaction`
/// fuzz target.
///
/// # Errors
/// The body is not an interaction Discord could send.
pub fn decode(body: &[u8]) -> Result<Interaction, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The options of `/breakglass request`, validated.
#[derive(Debug)]
pub struct RequestOptions {
    pub host: HostName,
    pub login: Option<Login>,
    pub duration: Option<GrantDuration>,
    pub reason: Reason,
}

/// Validates the options of `/breakglass request` (a missing host or reason is invalid).
///
/// # Errors
/// The first option that is not valid.
pub fn request_options(
    args: &[ResolvedOption<'_>],
) -> Result<RequestOptions, shared::core::InvalidValue> {
    Ok(RequestOptions {
        host: HostName::parse(string_opt(args, "host").unwrap_or_default())?,
        login: string_opt(args, "login").map(Login::parse).transpose()?,
        duration: string_opt(args, "duration").map(GrantDuration::parse).transpose()?,
        reason: Reason::parse(string_opt(args, "reason").unwrap_or_default())?,
    })
}

/// The button and request a clicked component's `custom_id` (`action:id`) names; `None` for
/// one that is not ours.
pub fn click_of(custom_id: &str) -> Option<(Button, RequestRef)> {
    let (action, id) = custom_id.split_once(':')?;
    Some((Button::from_action_id(action)?, id.parse::<RequestRef>().ok()?))
}
