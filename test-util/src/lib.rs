//! Test helpers shared by every test suite in the workspace: the unit tests inside `recorder`,
//! the integration tests of `shared` and `bot`, and the end-to-end crate (`tests/`).
//!
//! Why a crate of its own rather than the end-to-end library (`breakglass-e2e`): that library
//! depends on `shared` and `recorder` (and brings reqwest, axum and a WebSocket client), so
//! `shared`'s and `recorder`'s own tests could only use it through a dependency cycle that
//! builds a second copy of the crate under test. This crate depends on no workspace crate, so
//! any of them can take it as a dev-dependency (never a normal one).
//!
//! - [`wait_until`] and [`wait_until_async`]: the one polling loop (try, sleep, give up with
//!   the last reason).
//! - [`Rng`]: a small deterministic generator for tests that mix inputs (xorshift64*).
//! - [`both_backends!`]: a test body declared once, run on SQLite and on PostgreSQL.

use std::future::Future;
use std::time::Duration;

/// Calls `attempt` every `every` until it gives `Ok`, and returns that value.
///
/// # Panics
/// When `within` has passed and `attempt` still gives `Err`: the panic message is that last
/// `Err` (which says what was awaited and what was seen).
#[track_caller]
pub fn wait_until<T>(
    within: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(why) if std::time::Instant::now() >= deadline => panic!("{why}"),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// [`wait_until`] for async tests, on tokio's clock (so a paused clock moves it).
///
/// # Panics
/// As [`wait_until`].
pub async fn wait_until_async<T, F, Fut>(within: Duration, every: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(why) if tokio::time::Instant::now() >= deadline => panic!("{why}"),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
