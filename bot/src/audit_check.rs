//! The database half of `breakglass audit verify`, as a library function: [`check_log`]
//! re-verifies the audit log (hash chain and every approval signature, through the core's
//! `AuditChecker`), then holds the requests table, the recordings table and the recordings
//! folder to it, and returns what it found. It prints nothing: the CLI (`cli::audit_verify`)
//! says it, then checks the recordings' signatures (`recording_check::check`) with the
//! session ends this returns.

use std::collections::{BTreeMap, HashMap, HashSet};

use format::store::RecordingStore;
use shared::core::audit_verify::{AuditChecker, AuditProblem, first_difference};
use shared::core::{AuditEntry, PinnedKeys, Request, RequestId, RequestRef, Status};
use shared::ports::Store;

/// Audit events read per page.
const PAGE: u32 = 1000;
/// Requests whose recordings are read per query.
const RECORDINGS_BATCH: usize = 500;

/// What [`check_log`] found.
#[derive(Debug)]
pub enum LogOutcome {
    /// The hash chain or an approval signature failed at one event; reading stopped there.
    ChainBroken(AuditProblem),
    /// The log verified, but the tables or the recordings folder disagree with it: every
    /// problem, in the order found.
    Broken(Vec<Problem>),
    /// The log verified, and the tables and the folder agree with it.
    Intact(LogReport),
}

/// One disagreement between the log and the rest of the database or the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line that explains it (`audit log BROKEN: …`, `recordings BROKEN: …`).
    pub line: String,
    /// The short form a failing command ends with.
    pub summary: String,
}

/// A log that verified, and what the recordings check needs next.
#[derive(Debug)]
pub struct LogReport {
    pub events: u64,
    /// The chain's last hash (`None` for an empty log).
    pub head: Option<[u8; 32]>,
    pub approvals_checked: u64,
    /// Keys the config no longer pins that verified old approvals because the log recorded
    /// them as pinned when they signed (`key_loaded`).
    pub from_recorded_pins: Vec<shared::core::KeyId>,
    /// Requests whose table row matches the log.
    pub requests: usize,
    /// The `session_ended` events that name a recording, for `recording_check::check`.
    pub ended: Vec<AuditEntry>,
    /// Every request as the log rebuilds it.
    pub logged: BTreeMap<RequestId, Request>,
    /// `.cast` files in the recordings folder, when it is on this machine.
    pub on_disk: Option<usize>,
}

/// Reading failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The database did not answer.
    Unreachable(String),
    /// The log names a request the requests table cannot give back.
    Inconsistent(String),
}

/// Re-verifies the audit log in `store` against `pins`, then the requests and recordings
/// tables and the recordings in `recordings` (the folder or the bucket) against the log.
///
/// # Errors
///
/// A read from the database failed ([`ReadError`]); a problem in what was read is an
/// [`LogOutcome`], not an error.
pub async fn check_log(
    store: &dyn Store,
    pins: &PinnedKeys,
    recordings: &dyn RecordingStore,
) -> Result<LogOutcome, ReadError> {
    let mut checker = AuditChecker::new(pins);
    let mut after = 0;
    // Session ends with a recording: their signatures are checked once the log is read.
    let mut ended = Vec::new();
    loop {
        let page = store
            .audit_page(after, PAGE)
            .await
            .map_err(|e| ReadError::Unreachable(format!("cannot read the audit log: {e}")))?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if let Err(p) = checker.check(e) {
                return Ok(LogOutcome::ChainBroken(p));
            }
            if crate::recording_check::is_recording_end(e) {
                ended.push(e.clone());
            }
        }
    }
    // From here on every problem is listed.
    let mut broken = Vec::new();
    for (req, seqs) in checker.reused_grants() {
        let at: Vec<String> = seqs.iter().map(i64::to_string).collect();
        broken.push(Problem {
            line: format!(
                "audit log BROKEN: grant {} ({}) opened {} sessions (session_started at seq {}): one approval set opens one session, so its consumed nonce was removed from the database",
                req.code,
                req.id,
                seqs.len(),
                at.join(", ")
            ),
            summary: format!("grant {} was used for more than one session", req.code),
        });
    }
    let mut requests = 0;
    // Codes of sessions in progress (active, no recording yet): their file is not registered.
    let mut live = Vec::new();
    let ids: Vec<RequestId> = checker.requests().map(|r| r.id).collect();
    let mut registered = HashMap::new();
    for chunk in ids.chunks(RECORDINGS_BATCH) {
        let recs = store.recordings(chunk).await.map_err(|e| {
            ReadError::Unreachable(format!("cannot read the recordings table: {e}"))
        })?;
        registered.extend(recs.into_iter().map(|r| (r.request_id, r.file)));
    }
    for logged in checker.requests() {
        let table = store.get_request(&RequestRef::Id(logged.id)).await.map_err(|e| {
            ReadError::Inconsistent(format!(
                "request {} is in the audit log but not readable from the requests table: {e}",
                logged.code
            ))
        })?;
        if let Some(field) = first_difference(&table, logged) {
            broken.push(Problem {
                line: format!(
                    "audit log BROKEN: the requests table disagrees with the audit log for {} ({}): field `{field}`",
                    logged.code, logged.id
                ),
                summary: format!("request {} was altered outside the audit log", logged.code),
            });
        } else {
            requests += 1;
        }
        if table.status == Status::Active && !registered.contains_key(&table.id) {
            live.push(format!("{}-", table.code));
        }
    }
    let files: HashSet<&str> = registered.values().map(String::as_str).collect();
    // `None` when the folder is not on this machine.
    let on_disk = recordings.list().ok();
    for name in on_disk.iter().flatten() {
        if files.contains(name.as_str()) || live.iter().any(|p| name.starts_with(p.as_str())) {
            continue;
        }
        broken.push(Problem {
            line: format!(
                "recordings BROKEN: {} is on disk but no session in the database has it (a session the database never registered: its grant was used again, or its row was removed)",
                recordings.locate(name)
            ),
            summary: format!("recording {name} is not registered in the database"),
        });
    }
    if !broken.is_empty() {
        return Ok(LogOutcome::Broken(broken));
    }
    Ok(LogOutcome::Intact(LogReport {
        events: checker.events(),
        head: checker.head(),
        approvals_checked: checker.approvals_checked(),
        from_recorded_pins: checker.from_recorded_pins().copied().collect(),
        requests,
        ended,
        logged: checker.requests().map(|r| (r.id, r.clone())).collect(),
        on_disk: on_disk.map(|names| names.len()),
    }))
}
