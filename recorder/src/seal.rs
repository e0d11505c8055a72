//! Sealing a recording and storing its session's end, and finishing what a crashed run left.
//!
//! At the end of a session ([`seal`]) the recording is hashed and signed, the signature
//! sidecar is written first (the recording verifies even with the database gone), then the
//! end is kept as the pending end next to the recording until the database has it (retrying
//! while the database is away). At start ([`recover_crashed`]) a recording without a sidecar
//! is a session cut by a crash: it is cut to its last complete line, closed with a marker,
//! signed, and its session ended as `gateway_crashed`; a pending end is stored. So recordings
//! play, verify, and leave no grant `active` forever.
//!
//! Everything goes through the recording store port ([`format::store::RecordingStore`]).
//! The end's details are the audit log's typed `session_ended` data
//! ([`shared::core::event::SessionEnded`]); the pending end is that same JSON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use format::cast::Summary;
use format::integrity::{RecordingSigner, SessionBinding, Sidecar};
use format::store::RecordingStore;
use serde_json::json;
use shared::config::Config;
use shared::core::event;
use shared::core::request::{self as core_request};
use shared::core::{
    Action, AuditData, AuditDraft, Clock, PinnedKeys, PrincipalName, Request, RequestRef, Status,
    Timestamp,
};
use shared::ports::{GatewayStore, RecordingRecord};

use crate::GatewayDeps;
use crate::live::EndReason;

/// What sealing and recovery use of the gateway: the recordings, the database, the recording
/// key, the clock, and the policy and pins a session's end is checked against.
#[derive(Clone)]
pub struct Sealer {
    pub recordings: Arc<dyn RecordingStore>,
    pub store: Arc<dyn GatewayStore>,
    pub signer: Arc<RecordingSigner>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub pins: Arc<PinnedKeys>,
}

impl Sealer {
    pub fn of(deps: &GatewayDeps) -> Self {
        Self {
            recordings: deps.recordings.clone(),
            store: deps.store.clone(),
            signer: deps.recording_signer.clone(),
            clock: deps.clock.clone(),
            config: deps.config.clone(),
            pins: deps.pins.clone(),
        }
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("recordings", &self.recordings).finish_non_exhaustive()
    }
}

/// A session that ended, with its closed recording.
#[derive(Debug)]
pub struct Ended {
    pub req: Request,
    /// The recording's name in the store.
    pub file: String,
    pub reason: EndReason,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// What [`crate::recording::Recording::finish`] returned: the summary, the last exit
    /// status and the number of commands; `None` when the recording could not be finished.
    pub finished: Option<(Summary, Option<i64>, u64)>,
    /// Why the recording failed, if it did.
    pub failure: Option<String>,
}

/// Signs the closed recording, writes its sidecar, and stores the session's end (keeping it
/// pending next to the recording until the database has it, so [`recover_crashed`] can store
/// it at the next start if this process dies first).
pub async fn seal(s: &Sealer, ended: Ended) {
    let Ended { req, file, reason, started_at, ended_at, finished, failure } = ended;
    // A recording that could not be finished is signed as it stands: the end is still
    // stored, so the grant does not stay active.
    let (sha256, summary, exit_status, commands) = match finished {
        Some((summary, exit_status, commands)) => {
            (summary.file_sha256, Some(summary), exit_status, commands)
        }
        None => {
            tracing::error!(code = %req.code, error = ?failure, "the recording could not be finished");
            let bytes = s.recordings.read(&file).unwrap_or_default();
            (format::cast::sha256_file_bytes(&bytes), None, None, 0)
        }
    };
    let side = s.signer.sign(
        &SessionBinding {
            request_id: req.id,
            code: req.code.clone(),
            nonce: req.nonce,
            started_at,
            ended_at,
            file: file.clone(),
        },
        &sha256,
    );
    let record = RecordingRecord {
        request_id: req.id,
        file: file.clone(),
        sha256,
        signature: side.signature,
        key_id: side.key_id,
        started_at,
        ended_at,
        end_reason: reason.core(),
        exit_status,
        bytes_in: summary.as_ref().map_or(0, |s| s.bytes_in),
        bytes_out: summary.as_ref().map_or(0, |s| s.bytes_out),
        commands,
    };
    let detail = event::SessionEnded {
        end_reason: reason.core(),
        recording: file.clone(),
        recording_sha256: hex::encode(sha256),
        recording_signature: side.signature,
        recording_key_id: side.key_id,
        recording_signature_version: side.version,
        started_at,
        ended_at,
        commands,
        ended: event::Ended::Seen(event::SeenEnd {
            revoked_by: match &reason {
                EndReason::Revoked { by } => {
                    by.as_deref().and_then(|b| PrincipalName::parse(b).ok())
                }
                _ => None,
            },
            recording_error: failure,
            bytes_in: record.bytes_in,
            bytes_out: record.bytes_out,
            exit_status,
            duration_secs: ended_at.unix() - started_at.unix(),
        }),
    };
    tracing::info!(code = %req.code, reason = reason.as_str(), commands, "session ended");
    write_sidecar(s, &file, &side);
    store_end(s, &req, &file, &record, &detail, ended_at).await;
}

fn write_sidecar(s: &Sealer, file: &str, side: &Sidecar) {
    if let Err(e) = s.recordings.seal(file, side) {
        tracing::error!(recording = %file, error = %e, "cannot write the recording signature");
    }
}

/// Stores the end in the database, keeping it pending next to the recording until that
/// worked.
async fn store_end(
    s: &Sealer,
    req: &Request,
    file: &str,
    record: &RecordingRecord,
    detail: &event::SessionEnded,
    at: Timestamp,
) {
    let pending = AuditData::SessionEnded(Box::new(detail.clone())).to_json().to_string();
    if let Err(e) = s.recordings.put_pending(file, pending.as_bytes()) {
        tracing::error!(recording = %file, error = %e, "cannot write the pending session end");
    }
    if record_end(s, req, record, detail, at).await {
        let _ = s.recordings.take_pending(file);
    }
}

/// Stores the end, retrying with backoff for up to an hour while the database is unavailable.
/// Returns whether the end is stored (now or before).
async fn record_end(
    s: &Sealer,
    req: &Request,
    record: &RecordingRecord,
    detail: &event::SessionEnded,
    at: Timestamp,
) -> bool {
    let mut wait = Duration::from_millis(200);
    let give_up = Instant::now() + Duration::from_secs(3600);
    loop {
        let result = async {
            if s.store.recording(req.id).await?.is_some() {
                return Ok(()); // stored before (a retry, or a recovered session)
            }
            let current = s.store.get_request(&RequestRef::Id(req.id)).await?;
            // `active` moves to `closed`; otherwise (revoked or expired meanwhile, or a
            // policy that no longer allows the transition) the end is an audit event only.
            let transition = (current.status == Status::Active)
                .then(|| {
                    core_request::apply(
                        &current,
                        Action::SessionEnded(Box::new(detail.clone())),
                        &s.config.policy,
                        &s.pins,
                        at,
                    )
                    .inspect_err(|e| {
                        tracing::warn!(code = %req.code, error = %e, "the session end is recorded without a transition")
                    })
                    .ok()
                })
                .flatten();
            let audit = match transition {
                Some(_) => Vec::new(),
                None => vec![AuditDraft::of(
                    Some(req.id),
                    req.requester.as_str(),
                    &AuditData::SessionEnded(Box::new(detail.clone())),
                )],
            };
            s.store.end_session(record, transition.as_ref(), &audit, at).await
        }
        .await;
        match result {
            Ok(()) => return true,
            Err(e) if Instant::now() > give_up => {
                tracing::error!(code = %req.code, error = %e, "gave up recording the end of the session (the signed recording holds it)");
                return false;
            }
            Err(e) => {
                tracing::warn!(code = %req.code, error = %e, "cannot record the end of the session yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// At start: finishes what the last run left (see the module docs). Runs in the background
/// (it may wait for the database); what fails is tried again at the next start.
///
/// Takes the list of recordings before the gateway accepts connections (see [`unfinished`]),
/// so a session that starts meanwhile is never mistaken for a crashed one.
pub async fn recover_crashed(s: Sealer, names: Vec<String>) {
    for name in names {
        let result = if s.recordings.is_sealed(&name) {
            store_pending(&s, &name).await
        } else {
            recover_one(&s, &name).await
        };
        if let Err(e) = result {
            tracing::error!(recording = %name, error = %e, "cannot finish a recording left by the last run");
        }
    }
}

/// The recordings without a signature sidecar or with a pending end.
pub fn unfinished(recordings: &dyn RecordingStore) -> Vec<String> {
    recordings.unfinished()
}

/// Stores an end that was signed but not stored (the pending end).
async fn store_pending(s: &Sealer, name: &str) -> anyhow::Result<()> {
    let detail: event::SessionEnded = serde_json::from_slice(&s.recordings.read_pending(name)?)?;
    let side: Sidecar = serde_json::from_slice(&s.recordings.sidecar(name)?)?;
    let header = s.recordings.read(name)?;
    let header = header.split(|b| *b == b'\n').next().unwrap_or_default();
    let header: serde_json::Value = serde_json::from_slice(header)?;
    let id: shared::core::RequestId = header["breakglass"]["grant_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no grant id in the header"))?
        .parse()?;
    let req = s.store.get_request(&RequestRef::Id(id)).await?;
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(&side.sha256, &mut sha256)?;
    let seen = match &detail.ended {
        event::Ended::Seen(e) => Some(e),
        event::Ended::Recovered { .. } => None,
    };
    let record = RecordingRecord {
        request_id: id,
        file: side.file.clone(),
        sha256,
        signature: side.signature,
        key_id: side.key_id,
        started_at: side.started_at.unwrap_or(detail.started_at),
        ended_at: side.ended_at.unwrap_or(side.signed_at),
        end_reason: detail.end_reason,
        exit_status: seen.and_then(|e| e.exit_status),
        bytes_in: seen.map_or(0, |e| e.bytes_in),
        bytes_out: seen.map_or(0, |e| e.bytes_out),
        commands: detail.commands,
    };
    store_end(s, &req, name, &record, &detail, side.signed_at).await;
    Ok(())
}

/// Finishes a recording with no sidecar: its sidecar only, when the database has its end;
/// otherwise cut, closed, signed and ended as `gateway_crashed`.
async fn recover_one(s: &Sealer, name: &str) -> anyhow::Result<()> {
    let mut bytes = s.recordings.read(name)?;
    bytes.truncate(format::cast::complete_len(&bytes));
    let cast = format::cast::parse_bytes(&bytes)?;
    let id: shared::core::RequestId = cast.header_json["breakglass"]["grant_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no grant id in the header"))?
        .parse()?;
    if let Some(stored) = s.store.recording(id).await? {
        // The end is stored; only the signature file is missing.
        let req = s.store.get_request(&RequestRef::Id(id)).await?;
        let stored = format::integrity::StoredRecording {
            file: &stored.file,
            sha256: &stored.sha256,
            key_id: stored.key_id,
            signature: stored.signature,
            started_at: stored.started_at,
            ended_at: stored.ended_at,
        };
        write_sidecar(s, name, &Sidecar::of(&stored, &req));
        return Ok(());
    }
    let req = s.store.get_request(&RequestRef::Id(id)).await?;
    let last = cast.events.last().map_or(0.0, |e| e.t);
    let marker =
        serde_json::to_string(&json!([last, "m", "session ended: gateway_crashed (recovered)"]))?;
    bytes.extend_from_slice(marker.as_bytes());
    bytes.push(b'\n');
    s.recordings.replace(name, &bytes)?;
    let sha256 = format::cast::sha256_file_bytes(&bytes);
    let now = s.clock.now();
    let file = name.to_owned();
    let events = s.store.session_events(id).await.unwrap_or_default();
    let commands = events.iter().filter(|e| e.kind.is_command()).count();
    let commands = u64::try_from(commands).unwrap_or(u64::MAX);
    let started_at = Timestamp::from_unix(
        cast.header.timestamp.and_then(|t| i64::try_from(t).ok()).unwrap_or(now.unix()),
    );
    let side = s.signer.sign(
        &SessionBinding {
            request_id: id,
            code: req.code.clone(),
            nonce: req.nonce,
            started_at,
            ended_at: now,
            file: file.clone(),
        },
        &sha256,
    );
    let record = RecordingRecord {
        request_id: id,
        file: file.clone(),
        sha256,
        signature: side.signature,
        key_id: side.key_id,
        started_at,
        ended_at: now,
        end_reason: shared::core::EndReason::GatewayCrashed,
        exit_status: None,
        bytes_in: 0,
        bytes_out: 0,
        commands,
    };
    let detail = event::SessionEnded {
        end_reason: shared::core::EndReason::GatewayCrashed,
        recording: file,
        recording_sha256: hex::encode(sha256),
        recording_signature: side.signature,
        recording_key_id: side.key_id,
        recording_signature_version: side.version,
        started_at,
        ended_at: now,
        commands,
        ended: event::Ended::Recovered { recovered: true },
    };
    tracing::warn!(code = %req.code, "recovered the recording of a session cut by a gateway crash");
    write_sidecar(s, name, &side);
    store_end(s, &req, name, &record, &detail, now).await;
    Ok(())
}

#[cfg(test)]
mod tests;
