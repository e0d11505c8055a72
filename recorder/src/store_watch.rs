//! Cuts every live session when the recording store stops storing.
//!
//! A write error cuts its session at the write (`Live::record`), but an idle session writes
//! nothing: with object storage gone it would go on, and the next command typed would reach
//! the target before the flush that fails. So the gateway asks the store
//! ([`RecordingStore::health`]) every [`EVERY`] and, while it says no, cuts each live session
//! with the recording-failed message, before another byte is relayed. A local folder is
//! always healthy; `s3::S3Store` says no once nothing reached the bucket for
//! `upload_timeout`.

use std::sync::Arc;
use std::time::Duration;

use format::store::RecordingStore;
use tokio_util::sync::CancellationToken;

use crate::live::{EndReason, LiveSessions};

/// How often the store's health is asked (an in-memory check).
pub const EVERY: Duration = Duration::from_millis(250);

/// Asks `recordings` every [`EVERY`] whether it stores, and cuts every live session of
/// `live` while it does not. Runs until `stop`.
pub async fn run(
    live: Arc<LiveSessions>,
    recordings: Arc<dyn RecordingStore>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Err(why) = recordings.health() else { continue };
        for (id, _, cutter) in live.all() {
            if cutter.reason().is_none() {
                tracing::error!(request = %id, error = %why, "the recording store fails; cutting the session");
                cutter.cut_in_background(
                    EndReason::RecordingFailed,
                    "breakglass: the session recording failed; session closed".to_owned(),
                );
            }
        }
    }
}
