//! Fuzzing entry points for the chat front ends' parsers of outside input: Slack's slash
//! command form and interaction payloads, and Discord's interactions with their options. The
//! decoders are the ones the handlers use once a request's signature has been checked.
//!
//! Each function takes arbitrary bytes and must never panic. The cargo-fuzz targets in
//! `fuzz/` call these; `tests/fuzz_corpus.rs` replays every checked-in corpus file through
//! [`all_targets`] on stable.

use serenity::all::{Interaction, ResolvedOption, ResolvedValue};

use crate::{discord, slack};

/// The targets this crate owns.
pub const TARGETS: &[shared::fuzzing::Target] = &[
    ("slash_command", slash_command),
    ("slack_command", slack_command),
    ("slack_interaction", slack_interaction),
    ("discord_interaction", discord_interaction),
];

/// Every fuzz target of the workspace: this crate's, the recording format's and `shared`'s.
pub fn all_targets() -> impl Iterator<Item = &'static shared::fuzzing::Target> {
    TARGETS.iter().chain(format::fuzzing::TARGETS).chain(shared::fuzzing::TARGETS)
}

/// Fuzz target `slash_command`: the text after `/breakglass`, as typed.
pub fn slash_command(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = slack::parse::parse(text)
    {
        let _ = (e.code(), e.to_string());
    }
}

/// Fuzz target `slack_command`: the body of `POST /slack/commands` (a URL-encoded form).
pub fn slack_command(data: &[u8]) {
    if let Some(ev) = slack::decode_command(data) {
        let _ = slack::parse::parse(ev.text.as_deref().unwrap_or_default());
    }
}

/// Fuzz target `slack_interaction`: the body of `POST /slack/interactions` (a form whose
/// `payload` is JSON), down to the button and request of each clicked action.
pub fn slack_interaction(data: &[u8]) {
    if let Some(Some(ev)) = slack::decode_interaction(data) {
        for action in ev.actions.unwrap_or_default() {
            let _ = slack::click_of(&action);
        }
    }
}

/// Fuzz target `discord_interaction`: the body of `POST /discord/interactions` (JSON), through
/// option resolution to the validated options of each subcommand, and clicked buttons.
pub fn discord_interaction(data: &[u8]) {
    match discord::decode(data) {
        Ok(Interaction::Command(cmd) | Interaction::Autocomplete(cmd)) => {
            let _ = cmd.data.autocomplete();
            if let Some(ResolvedOption { value: ResolvedValue::SubCommand(args), .. }) =
                cmd.data.options().first()
            {
                let _ = discord::request_options(args);
                let _ = discord::string_opt(args, "id").map(str::parse::<shared::core::RequestRef>);
            }
        }
        Ok(Interaction::Component(click)) => {
            let _ = discord::click_of(&click.data.custom_id);
        }
        _ => {}
    }
}
