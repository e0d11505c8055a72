//! The reaper: a thin loop over the core's deadline rules.
//!
//! Every tick it expires requests whose approval window or grant window passed, and every
//! minute it deletes expired review sign-in links and sessions (links a day after they
//! expired) and the ids of chat deliveries whose replay window closed. Live sessions are cut by the gateway itself.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::Deps;

/// How often expired review sign-in links and sessions are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs until `stop` is cancelled.
pub async fn run(deps: Deps, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut purged: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        match deps.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "reaper expired requests"),
            Err(e) => tracing::warn!(error = %e, "reaper could not list requests"),
        }
        if purged.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
            purged = Some(tokio::time::Instant::now());
            match deps.store.purge_review_access(deps.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired review links and sessions deleted"),
                Err(e) => {
                    tracing::warn!(error = %e, "reaper could not delete expired review links")
                }
            }
            match deps.store.purge_chat_deliveries(deps.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired chat delivery ids deleted"),
                Err(e) => tracing::warn!(error = %e, "reaper could not delete chat delivery ids"),
            }
        }
    }
}
