//! The read side of recorded sessions, shared by the reviewer pages, the HTTP API and the chat
//! summary: where recordings are and which keys sign them ([`Recordings`]), whether a
//! recording's signature checks out ([`Integrity`]), command search, finished recordings, the
//! audit bundle, and the audit event every view or download writes.
//!
//! No front end lives here: the reviewer pages (`review`), the API (`http`) and chat sit on
//! this module and on the service, never on each other.

pub mod bundle;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use ed25519_dalek::VerifyingKey;
use format::store::{LocalFolder, RecordingStore};
use serde::{Deserialize, Serialize};
use shared::core::event::RecordingViewed;
use shared::core::{
    AuditData, AuditDraft, GrantCode, PrincipalName, Request, RequestId, RequestRef, Timestamp,
};
use shared::ports::{RecordingRecord, RequestFilter, SessionEvent};
use utoipa::ToSchema;

use crate::service::Deps;

/// Most search hits shown.
const HIT_LIMIT: u32 = 200;
/// Longest search text, on the page and in the API (it is recorded in the audit log).
pub const MAX_SEARCH_CHARS: usize = 200;

/// Where the bot reads recordings, and the keys their signatures are checked against.
#[derive(Debug, Clone)]
pub struct Recordings {
    /// Keys recording signatures are checked against (from config or the data directory).
    pub pins: Vec<VerifyingKey>,
    /// The configured recording store (the recordings folder, or a bucket).
    pub store: Arc<dyn RecordingStore>,
}

impl Default for Recordings {
    /// No pins, and a folder at the empty path (nothing is found there).
    fn default() -> Self {
        Self::new(Vec::new(), PathBuf::new())
    }
}

impl Recordings {
    /// Recordings in the folder `dir`.
    pub fn new(pins: Vec<VerifyingKey>, dir: PathBuf) -> Self {
        Self { pins, store: Arc::new(LocalFolder::new(dir)) }
    }

    /// Recordings in `store` (the one `s3::open_store` opened from the config).
    pub fn in_store(pins: Vec<VerifyingKey>, store: Arc<dyn RecordingStore>) -> Self {
        Self { pins, store }
    }

    /// The recording store.
    pub fn folder(&self) -> Arc<dyn RecordingStore> {
        self.store.clone()
    }

    /// Checks the stored signature with the pinned recording keys over the statement that binds
    /// the stored digest to `req`'s session (docs/recording-signature.md), and, with `rehash` and
    /// the file reachable, that the file hashes to that digest, that its header names this
    /// session, and that its `FILE.sig`, if any, binds this session too.
    pub fn integrity(&self, req: &Request, r: &RecordingRecord, rehash: bool) -> Integrity {
        use format::integrity::{Expected, Sidecar};
        let Some(key) = format::integrity::pinned(&self.pins, &r.key_id) else {
            return Integrity::Failed(format!("signed by key {}, which is not pinned", r.key_id));
        };
        let pins = std::slice::from_ref(key);
        let stored = crate::recording_check::stored(r);
        let side = Sidecar::of(&stored, req);
        let expected = Expected::session(&stored, req);
        let file = if rehash {
            self.store.read(&r.file)
        } else {
            Err(std::io::ErrorKind::Unsupported.into())
        };
        let result = match file {
            Ok(bytes) => format::integrity::verify_bytes(&bytes, &side, pins, &expected)
                .map(drop)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    // The signature file beside it, when there is one, must bind this session too.
                    let Ok(text) = self.store.sidecar(&r.file) else {
                        return Ok(());
                    };
                    let on_disk: Sidecar = serde_json::from_slice(&text)
                        .map_err(|_| format!("{}.sig is not a recording signature", r.file))?;
                    format::integrity::verify_bytes(&bytes, &on_disk, pins, &expected)
                        .map(drop)
                        .map_err(|e| format!("{}.sig: {e}", r.file))
                }),
            // Not asked to, or not on this machine (split deployment): the signature over the
            // stored digest, bound to the stored session.
            Err(_) => format::integrity::verify_digest(&r.sha256, &side, pins, &expected)
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => Integrity::Verified { key_id: r.key_id.to_string() },
            Err(e) => Integrity::Failed(e),
        }
    }
}

/// Whether a recording's signature checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// The gateway's signature verifies with a pinned key (and the file, when reachable,
    /// hashes to the signed digest).
    Verified {
        key_id: String,
    },
    Failed(String),
    /// No recording (the session never started one).
    Missing,
}

/// Why a recording, a search or a reviewer page was not shown. The reviewer pages render it
/// as an HTML page with its stable code; the API maps it to its own errors.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(
        "sign in first: ask for a link with `/breakglass review` in chat or `breakglass review`"
    )]
    NotSignedIn,
    #[error("this sign-in link is not valid; ask for a new one")]
    LinkUnknown,
    #[error("this sign-in link was already used; links open once, ask for a new one")]
    LinkUsed,
    #[error("this sign-in link expired; ask for a new one")]
    LinkExpired,
    #[error(
        "{0} is not a reviewer: recordings are shown only to members of review.reviewer_groups"
    )]
    NotAReviewer(String),
    #[error("no session {0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("the database is unavailable; try again")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl ReviewError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotSignedIn => "not_signed_in",
            Self::LinkUnknown => "link_unknown",
            Self::LinkUsed => "link_used",
            Self::LinkExpired => "link_expired",
            Self::NotAReviewer(_) => "not_a_reviewer",
            Self::NotFound(_) => "not_found",
            Self::BadInput(_) => "bad_input",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotSignedIn => StatusCode::UNAUTHORIZED,
            Self::LinkUnknown | Self::LinkUsed | Self::LinkExpired | Self::NotAReviewer(_) => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadInput(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<shared::ports::StoreError> for ReviewError {
    fn from(e: shared::ports::StoreError) -> Self {
        match e {
            shared::ports::StoreError::NotFound => Self::NotFound("(unknown)".into()),
            e => {
                tracing::error!(cause = %e, "reviewer page: storage failed");
                Self::Unavailable
            }
        }
    }
}

/// The list's filters (all optional).
#[derive(Debug, Default, Deserialize)]
pub struct ListFilters {
    /// Requester name, exact.
    pub who: Option<String>,
    /// Host name, exact.
    pub host: Option<String>,
    /// Commands containing this text (case-insensitive).
    pub q: Option<String>,
    /// Sessions on or after this day (YYYY-MM-DD, UTC).
    pub from: Option<String>,
    /// Sessions on or before this day (YYYY-MM-DD, UTC).
    pub to: Option<String>,
}

impl ListFilters {
    pub(crate) fn text(v: Option<&String>) -> Option<&str> {
        v.map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// The time window `[from, to]` in unix seconds.
    pub(crate) fn window(&self) -> Result<(i64, i64), ReviewError> {
        let day = |s: &str, end: bool| -> Result<i64, ReviewError> {
            let t = humantime::parse_rfc3339(&format!("{s}T00:00:00Z")).map_err(|_| {
                ReviewError::BadInput(format!("`{s}` is not a day; use YYYY-MM-DD"))
            })?;
            let secs = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| ReviewError::BadInput(format!("`{s}` is before 1970")))?
                .as_secs();
            let secs = i64::try_from(secs).unwrap_or(i64::MAX);
            Ok(if end { secs + 86_399 } else { secs })
        };
        let from = Self::text(self.from.as_ref()).map(|s| day(s, false)).transpose()?;
        let to = Self::text(self.to.as_ref()).map(|s| day(s, true)).transpose()?;
        Ok((from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX)))
    }

    pub(crate) fn keeps(&self, req: &Request, at: Timestamp, window: (i64, i64)) -> bool {
        Self::text(self.who.as_ref()).is_none_or(|w| req.requester.as_str() == w)
            && Self::text(self.host.as_ref()).is_none_or(|h| req.host.as_str() == h)
            && (window.0..=window.1).contains(&at.unix())
    }
}

/// One command that matched, at its moment in a recording (also the API's JSON shape).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub code: String,
    pub requester: String,
    pub host: String,
    /// Unix seconds when it ran.
    pub at: i64,
    /// Seconds into the recording.
    pub t: f64,
    /// `command` (typed in a shell) or `exec` (an `ssh host CMD` request).
    pub kind: String,
    pub command: String,
    /// The reviewer page at that moment.
    pub url: String,
}

/// Commands matching `q` in sessions the filters keep, newest first.
/// Each hit's `url` is the page at that moment, relative to the public URL.
pub async fn search(deps: &Deps, f: &ListFilters, q: &str) -> Result<Vec<SearchHit>, ReviewError> {
    let (from, to) = f.window()?;
    let requester = match ListFilters::text(f.who.as_ref()).map(PrincipalName::parse) {
        Some(Ok(who)) => Some(who),
        Some(Err(_)) => return Ok(Vec::new()), // not a name: nobody's sessions
        None => None,
    };
    let search = shared::ports::CommandSearch {
        needle: q.to_owned(),
        requester,
        host: ListFilters::text(f.host.as_ref()).map(str::to_owned),
        from: Timestamp::from_unix(from),
        to: Timestamp::from_unix(to),
        limit: HIT_LIMIT,
    };
    let events = deps.store.search_commands(&search).await?;
    // The sessions of those hits, in one query.
    let mut ids: Vec<RequestId> = events.iter().map(|e| e.request_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut reqs: HashMap<RequestId, Request> = HashMap::new();
    for chunk in ids.chunks(1000) {
        let filter = RequestFilter { ids: chunk.to_vec(), limit: 1000, ..RequestFilter::default() };
        reqs.extend(deps.store.list_requests(&filter).await?.into_iter().map(|r| (r.id, r)));
    }
    Ok(events.iter().filter_map(|e| reqs.get(&e.request_id).map(|req| hit(req, e))).collect())
}

fn hit(req: &Request, e: &SessionEvent) -> SearchHit {
    #[allow(clippy::cast_precision_loss)] // offsets are far below 2^52 ms
    let t = e.offset_ms as f64 / 1000.0;
    let command = e.detail["command"].as_str().unwrap_or_default().to_owned();
    SearchHit {
        code: req.code.to_string(),
        requester: req.requester.to_string(),
        host: req.host.to_string(),
        at: e.at.unix(),
        t,
        kind: e.kind.to_string(),
        url: format!("/review/s/{}#t={t:.3}", req.code),
        command,
    }
}

pub(crate) async fn load_request(deps: &Deps, code: &str) -> Result<Request, ReviewError> {
    let parsed = GrantCode::parse(code).map_err(|_| ReviewError::NotFound(code.to_owned()))?;
    load(deps, &RequestRef::Code(parsed)).await
}

pub(crate) async fn load(deps: &Deps, r: &RequestRef) -> Result<Request, ReviewError> {
    match deps.store.get_request(r).await {
        Ok(req) => Ok(req),
        Err(shared::ports::StoreError::NotFound) => Err(ReviewError::NotFound(r.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Records that `who` saw `what` (an audit event per view or download).
pub async fn audit_view(
    deps: &Deps,
    who: &PrincipalName,
    request: Option<RequestId>,
    what: RecordingViewed,
) -> Result<(), ReviewError> {
    let draft = AuditDraft::of(request, who.as_str(), &AuditData::RecordingViewed(what));
    deps.store.append_audit(&[draft], deps.now()).await?;
    Ok(())
}

/// The finished recording's name, refusing names that could leave the directory.
pub fn recording_name(rec: &RecordingRecord) -> Result<&str, ReviewError> {
    let name = rec.file.as_str();
    if !format::store::is_plain(name) {
        return Err(ReviewError::Internal(format!("recording file name {name:?} is not plain")));
    }
    Ok(name)
}

/// A finished session: its request, its recording row and the recording file's bytes.
pub async fn finished(
    deps: &Deps,
    recordings: &Recordings,
    r: &RequestRef,
) -> Result<(Request, RecordingRecord, Vec<u8>), ReviewError> {
    let req = load(deps, r).await?;
    let rec = deps.store.recording(req.id).await?.ok_or_else(|| {
        ReviewError::NotFound(format!("{} (no finished recording yet)", req.code))
    })?;
    let bytes = read_recording(recordings.folder(), recording_name(&rec)?, &req).await?;
    Ok((req, rec, bytes))
}

pub async fn read_recording(
    store: Arc<dyn RecordingStore>,
    name: &str,
    req: &Request,
) -> Result<Vec<u8>, ReviewError> {
    let file = name.to_owned();
    let read = tokio::task::spawn_blocking(move || store.read(&file))
        .await
        .map_err(|e| ReviewError::Internal(e.to_string()))?;
    read.map_err(|e| {
        tracing::error!(recording = %name, error = %e, "recording unreadable");
        ReviewError::NotFound(format!("{} (the recording file is not on this server)", req.code))
    })
}

/// The audit bundle of a finished session (see [`bundle`]).
pub async fn bundle_of(
    deps: &Deps,
    recordings: &Arc<Recordings>,
    req: &Request,
    rec: &RecordingRecord,
    cast: &[u8],
) -> Result<Vec<u8>, ReviewError> {
    let audit = deps.store.audit_of_request(req.id, 0).await?;
    let events = deps.store.session_events(req.id).await?;
    let (d, recs) = (deps.clone(), recordings.clone());
    let (req, rec, cast) = (req.clone(), rec.clone(), cast.to_vec());
    tokio::task::spawn_blocking(move || {
        bundle::build(&d, &recs, &req, &rec, &cast, &audit, &events)
    })
    .await
    .map_err(|e| ReviewError::Internal(e.to_string()))?
    .map_err(|e| ReviewError::Internal(format!("{e:#}")))
}
