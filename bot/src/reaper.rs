//! The reaper: a thin loop over the core's deadline rules.
//!
//! Every tick it expires requests whose approval window or grant window passed. (Cutting live
//! sessions and posting audit summaries join it with the gateway and chat adapters.)

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::Deps;

/// Runs until `stop` is cancelled.
pub async fn run(deps: Deps, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => match deps.expire_due().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "reaper expired requests"),
                Err(e) => tracing::warn!(error = %e, "reaper could not list requests"),
            },
        }
    }
}
