//! The Prometheus metrics every breakglass process may export: their names, labels and help
//! texts, in one place.
//!
//! Components record through the `metrics` facade (`metrics::counter!(REQUESTS, ...)`); the
//! process that serves `/metrics` installs the exporter and calls [`describe`] once. Names
//! here are the public interface operators build dashboards and alerts on
//! (`deploy/grafana/`): renaming one breaks them, so [`ALL`] is checked against the
//! dashboard's list and against what a running binary exports (tests).
//!
//! # Privacy
//! Labels carry bounded enumerations only (an outcome, a cut reason, a platform): never a
//! host, a user, a reason text or a grant code. A label value from untrusted input would let
//! a caller grow the registry without bound and leak names to whoever scrapes.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Requests by `outcome`: `requested`, `approved`, `denied`, `expired`, `revoked`, `closed`.
pub const REQUESTS: &str = "breakglass_requests_total";
/// Seconds from a request to the approval that completed its quorum.
pub const TIME_TO_APPROVE: &str = "breakglass_time_to_approve_seconds";
/// Seconds from the approval that completed the quorum to the session's start at the gateway.
pub const TIME_TO_ACCESS: &str = "breakglass_time_to_access_seconds";
/// Sessions open at this gateway now.
pub const LIVE_SESSIONS: &str = "breakglass_live_sessions";
/// Sessions the gateway cut, by `reason` (`expired`, `revoked`, `recording_failed`,
/// `protocol_violation`, `gateway_shutdown`).
pub const SESSION_CUTS: &str = "breakglass_session_cuts_total";
/// Seconds from a session's signed deadline to the gateway cutting it (deadline cuts only: a
/// revoke's time is stored to the second, too coarse for this; BENCHMARKS.md measures revokes
/// end to end).
pub const CUT_LATENCY: &str = "breakglass_cut_latency_seconds";
/// Bytes written into recordings (output, and input where recorded).
pub const RECORDED_BYTES: &str = "breakglass_recorded_bytes_total";
/// Seconds the oldest recording byte not yet in object storage has waited (0 on a local
/// folder).
pub const UPLOAD_LAG: &str = "breakglass_recording_upload_lag_seconds";
/// Seconds past its deadline the most overdue request was when the reaper expired it (0 when
/// nothing was overdue at the last pass).
pub const REAPER_LAG: &str = "breakglass_reaper_lag_seconds";
/// Chat API calls that failed, by `platform` (`slack`, `discord`).
pub const CHAT_ERRORS: &str = "breakglass_chat_api_errors_total";
/// Chat API calls scheduled again after a transient failure, by `platform`.
pub const CHAT_RETRIES: &str = "breakglass_chat_api_retries_total";
/// Database connections of this process's pool, by `state` (`idle`, `in_use`).
pub const DB_POOL: &str = "breakglass_db_pool_connections";
/// Most connections this process's pool opens.
pub const DB_POOL_MAX: &str = "breakglass_db_pool_max";

/// Every metric name above, for the tests that hold dashboards and the binary to them.
pub const ALL: [&str; 13] = [
    REQUESTS,
    TIME_TO_APPROVE,
    TIME_TO_ACCESS,
    LIVE_SESSIONS,
    SESSION_CUTS,
    CUT_LATENCY,
    RECORDED_BYTES,
    UPLOAD_LAG,
    REAPER_LAG,
    CHAT_ERRORS,
    CHAT_RETRIES,
    DB_POOL,
    DB_POOL_MAX,
];

/// Histogram buckets for the `_seconds` histograms: from a fast revoke (10 ms) to a slow
/// night's approval (an hour).
pub const SECONDS_BUCKETS: [f64; 14] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// Gives every metric its help text and unit (call once, after installing the exporter).
pub fn describe() {
    describe_counter!(REQUESTS, "Break-glass requests, by outcome.");
    describe_histogram!(
        TIME_TO_APPROVE,
        Unit::Seconds,
        "From a request to the approval that completed its quorum."
    );
    describe_histogram!(
        TIME_TO_ACCESS,
        Unit::Seconds,
        "From the approval that completed the quorum to the session's start."
    );
    describe_gauge!(LIVE_SESSIONS, "Sessions open at this gateway.");
    describe_counter!(SESSION_CUTS, "Sessions the gateway cut, by reason.");
    describe_histogram!(
        CUT_LATENCY,
        Unit::Seconds,
        "From a session's deadline or revoke to the gateway cutting it."
    );
    describe_counter!(RECORDED_BYTES, Unit::Bytes, "Bytes written into recordings.");
    describe_gauge!(
        UPLOAD_LAG,
        Unit::Seconds,
        "Age of the oldest recording byte not yet in object storage."
    );
    describe_gauge!(
        REAPER_LAG,
        Unit::Seconds,
        "How far past its deadline the most overdue request was when the reaper expired it."
    );
    describe_counter!(CHAT_ERRORS, "Chat API calls that failed, by platform.");
    describe_counter!(CHAT_RETRIES, "Chat API calls retried after a transient failure.");
    describe_gauge!(DB_POOL, "Database connections of this process, by state.");
    describe_gauge!(DB_POOL_MAX, "Most database connections this process opens.");
}

/// Seconds from `from` to `to` as a histogram sample, at the timestamps' one-second
/// resolution (0 when `to` is earlier: two machines' clocks may disagree a little).
pub fn seconds_between(from: crate::core::Timestamp, to: crate::core::Timestamp) -> f64 {
    let secs = to.unix().saturating_sub(from.unix()).max(0);
    // Any span of whole seconds this side of 285 million years is exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let s = secs as f64;
    s
}

/// Seconds from `at` (a wall-clock instant such as a signed deadline) to now by the system
/// clock, to the microsecond (0 when `at` is still ahead).
pub fn seconds_since(at: crate::core::Timestamp) -> f64 {
    let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return 0.0;
    };
    let at = std::time::Duration::from_secs(u64::try_from(at.unix()).unwrap_or(0));
    now.saturating_sub(at).as_secs_f64()
}
