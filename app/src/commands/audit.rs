//! `breakglass audit verify` and `audit export`: the database named in the config, read
//! directly.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use shared::config::{self, Overrides};
use shared::core::RequestRef;
use shared::ports::Store;

use super::{load_config, recording_pins};
use crate::cli::{EXIT_FAILURE, EXIT_LOCAL, EXIT_UNREACHABLE, Failure};

async fn open_store_for_audit(
    flag: Option<PathBuf>,
    overrides: Overrides,
) -> Result<(config::Config, std::sync::Arc<dyn Store>), Failure> {
    let cfg = load_config(flag, &overrides)?;
    let store = super::open_database(&cfg).await?;
    Ok((cfg, store))
}

/// The keys an auditor verifies against: the config's pins, or with none pinned (embedded
/// defaults) the public half of the data directory's approval key, if there is one.
fn audit_pins(cfg: &config::Config) -> Result<shared::core::PinnedKeys, Failure> {
    bot::app::pins_from(cfg, false).map_err(|e| Failure::new(EXIT_LOCAL, format!("{e:#}")))
}

/// `breakglass audit verify`: the log, the request tables, the recordings; one line per
/// check, or each problem found.
///
/// # Errors
/// A break (1), an unreachable database (4), a config or key problem (5).
pub async fn verify(flag: Option<PathBuf>, overrides: Overrides) -> Result<(), Failure> {
    use bot::audit_check::{LogOutcome, ReadError};
    let (cfg, store) = open_store_for_audit(flag, overrides).await?;
    let pins = audit_pins(&cfg)?;
    let recordings = s3::open_store(&cfg).map_err(|e| Failure::new(EXIT_LOCAL, e.to_string()))?;
    let place = match &cfg.recordings.store {
        config::RecordingStoreKind::Local => cfg.gateway.recordings_dir.display().to_string(),
        config::RecordingStoreKind::S3(s) => format!("bucket {}/{}", s.bucket, s.prefix),
    };
    let log = match bot::audit_check::check_log(store.as_ref(), &pins, recordings.as_ref()).await {
        Ok(LogOutcome::Intact(log)) => log,
        Ok(LogOutcome::ChainBroken(p)) => {
            outln!("audit log BROKEN: {p}");
            return Err(Failure::new(
                EXIT_FAILURE,
                format!("audit verification failed at seq {}", problem_seq(&p)),
            ));
        }
        Ok(LogOutcome::Broken(problems)) => {
            for p in &problems {
                outln!("{}", p.line);
            }
            let first = problems.first().map(|p| p.summary.as_str()).unwrap_or_default();
            let more = match problems.len() {
                1 => String::new(),
                n => format!(" (and {} more problem(s) above)", n - 1),
            };
            return Err(Failure::new(EXIT_FAILURE, format!("{first}{more}")));
        }
        Err(ReadError::Unreachable(e)) => return Err(Failure::new(EXIT_UNREACHABLE, e)),
        Err(ReadError::Inconsistent(e)) => return Err(Failure::new(EXIT_FAILURE, e)),
    };
    let head = log.head.map(hex::encode).unwrap_or_else(|| "(empty)".into());
    outln!("audit log OK: {} events, hash chain intact, head {head}", log.events);
    outln!(
        "approvals OK: {} signatures re-verified against {} pinned key(s)",
        log.approvals_checked,
        pins.bot_key_ids().count() + pins.personal_keys().count()
    );
    for id in &log.from_recorded_pins {
        outln!(
            "  key {id} is no longer pinned in the config: its approvals were verified with the public key and validity the audit log recorded as pinned when they were signed"
        );
    }
    outln!("requests OK: {} match the audit log, each grant used once", log.requests);
    let recording_pins = if log.ended.is_empty() { Vec::new() } else { recording_pins(&cfg)? };
    let recordings = bot::recording_check::check(
        store.as_ref(),
        recordings.as_ref(),
        &recording_pins,
        &log.ended,
        &log.logged,
    )
    .await;
    if !recordings.problems.is_empty() {
        for p in &recordings.problems {
            outln!("recording NOT VERIFIED: {}", format::replay::printable(p));
        }
        return Err(Failure::new(
            EXIT_FAILURE,
            format!(
                "{} of {} recording(s) do not verify, bound to their sessions",
                recordings.problems.len(),
                recordings.checked
            ),
        ));
    }
    outln!(
        "recordings OK: {} signature(s) bound to their sessions re-verified against {} pinned recording key(s), {} file(s) on this machine re-hashed",
        recordings.checked,
        recording_pins.len(),
        recordings.files
    );
    match log.on_disk {
        Some(n) => outln!("recordings OK: {n} file(s) in {place}, each registered or in progress"),
        None => outln!("recordings: {place} is not on this machine; files on disk not checked"),
    }
    Ok(())
}

fn problem_seq(p: &shared::core::audit_verify::AuditProblem) -> i64 {
    use shared::core::audit_verify::AuditProblem as P;
    match p {
        P::Chain(b) => b.seq,
        P::Approval { seq, .. } | P::Malformed { seq, .. } => *seq,
    }
}

/// `breakglass audit export`: every audit event, then every session and its events, one
/// JSON object per line.
///
/// # Errors
/// An unreadable database (4), an unwritable output (5).
pub async fn export(
    flag: Option<PathBuf>,
    overrides: Overrides,
    output: Option<PathBuf>,
) -> Result<(), Failure> {
    let (_, store) = open_store_for_audit(flag, overrides).await?;
    let mut out: Box<dyn std::io::Write> = match &output {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(|e| {
            Failure::new(EXIT_LOCAL, format!("cannot create {}: {e}", p.display()))
        })?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let fail = |e: shared::ports::StoreError| {
        Failure::new(EXIT_UNREACHABLE, format!("cannot read the audit log: {e}"))
    };
    let mut write = |v: &serde_json::Value| -> Result<(), Failure> {
        writeln!(out, "{v}").map_err(|e| Failure::output(&e))
    };
    let mut after = 0;
    let (mut n, mut sessions, mut commands) = (0u64, 0u64, 0u64);
    // Requests whose session started, in log order: their records follow the chain.
    let mut started = Vec::new();
    loop {
        let page = store.audit_page(after, 1000).await.map_err(fail)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            let mut line = serde_json::to_value(e)
                .context("while encoding an event")
                .map_err(|e| Failure::new(EXIT_FAILURE, format!("{e:#}")))?;
            if let Some(o) = line.as_object_mut() {
                o.insert("record".into(), "audit".into());
            }
            write(&line)?;
            n += 1;
            if e.kind == shared::core::AuditKind::SessionStarted.as_str()
                && let Some(Ok(RequestRef::Id(id))) =
                    e.request_id.as_deref().map(str::parse::<RequestRef>)
            {
                started.push(id);
            }
        }
    }
    started.dedup();
    for id in started {
        if let Some(r) = store.recording(id).await.map_err(fail)? {
            write(&serde_json::json!({
                "record": "session",
                "request_id": id.to_string(),
                "file": r.file,
                "sha256": hex::encode(r.sha256),
                "signature": r.signature.to_hex(),
                "key_id": r.key_id.to_hex(),
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "end_reason": r.end_reason,
                "exit_status": r.exit_status,
                "bytes_in": r.bytes_in,
                "bytes_out": r.bytes_out,
                "commands": r.commands,
            }))?;
            sessions += 1;
        }
        for ev in store.session_events(id).await.map_err(fail)? {
            let mut line = serde_json::json!({
                "record": ev.kind,
                "request_id": id.to_string(),
                "at": ev.at,
                "offset_ms": ev.offset_ms,
            });
            if let (Some(o), serde_json::Value::Object(d)) = (line.as_object_mut(), &ev.detail) {
                for (k, v) in d {
                    o.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            write(&line)?;
            commands += 1;
        }
    }
    out.flush().map_err(|e| Failure::output(&e))?;
    if let Some(p) = output {
        errln!(
            "wrote {n} audit events, {sessions} session(s) and {commands} session event(s) to {}",
            p.display()
        );
    }
    Ok(())
}
