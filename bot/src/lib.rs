//! The breakglass bot: HTTP API, the application service every front end shares, the reaper,
//! the chat adapters and the review pages. It never links the SSH gateway: the `breakglass`
//! binary (package `breakglass`, dir `app/`) composes the two.
//!
//! # Layout
//!
//! - [`service`]: create, approve, deny, revoke, expire: load, ask the core, store atomically.
//! - [`http`]: the API's routes (`/api/v1`, `/healthz`, `/readyz`, `/api/openapi.json`), the
//!   `ApiError` -> JSON mapping, and the JSON views shared with the CLI.
//! - [`reaper`]: background loop expiring requests whose deadline passed.
//! - [`chat`]: the platform-neutral card and thread, the `ChatAdapter` port, and the sync loop
//!   mirroring audit events into chat (summaries through an outbox, exactly once).
//! - [`recordings`]: the read side of recorded sessions, shared by the reviewer pages, the API
//!   and the chat summary: integrity checks, command search, downloads, the audit bundle.
//! - [`review`]: the reviewer pages (`/review`).
//! - [`app`]: the bot's start-up parts (keys, pins, chat adapters, database, HTTP server) and
//!   its composition: [`Bot`] and [`router`], which give each front end its own state.
//! - [`slack`]: the slash command, the buttons, and the Slack `ChatAdapter`.
//! - [`discord`]: the slash command, buttons and autocomplete, and the Discord `ChatAdapter`.
//! - [`client`]: the HTTP client the CLI uses.
//! - [`audit_check`]: `audit verify`'s database half as a library function: the log
//!   re-verified, then the requests and recordings tables and the recordings folder held to it.
//! - [`recording_check`]: recordings in `audit verify`: signatures over the session statement
//!   rebuilt from the audit log, the `recordings` rows and the files must agree.
//! - [`fuzzing`]: the bodies of the chat payload fuzz targets, and the list of every target.
//! - [`telemetry`]: the process's Prometheus recorder, `/metrics`, and a standalone gateway's
//!   health listener.
//! - [`logging`]: one format on standard error (text or JSON lines) for logs, the service
//!   banner and a failed command's last line.

pub mod app;
pub mod audit_check;
pub mod chat;
pub mod client;
pub mod discord;
#[cfg(test)]
mod edges;
pub mod fuzzing;
pub mod http;
pub mod logging;
pub mod reaper;
pub mod recording_check;
pub mod recordings;
pub mod review;
pub mod service;
pub mod slack;
pub mod telemetry;

pub use app::{Bot, router, serve};
pub use service::Deps;
