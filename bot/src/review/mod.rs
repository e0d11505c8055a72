//! The reviewer pages (`/review`): sign in with a single-use link, list sessions, watch a
//! recording with its command index, search commands, download the `.cast` and an offline
//! bundle, and watch live sessions.
//!
//! Access: only members of `review.reviewer_groups` see anything. A link from
//! `/breakglass review` (chat) or `breakglass review` (CLI) opens once and sets an HttpOnly,
//! SameSite=Strict cookie (Secure when the public URL is https); only SHA-256 hashes of links
//! and cookies are stored. Membership is checked again on every page, so removing someone from
//! the group closes their session at once. Every view and download is an audit event.
//!
//! Every page is rendered by `maud` (which escapes all interpolated text) and sent with a
//! strict Content-Security-Policy: no inline script or style, nothing from other origins.

mod live;
mod pages;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use shared::core::event::RecordingViewed;
use shared::core::{GrantCode, PrincipalName, Request, RequestId, RequestRef, Status, Timestamp};
use shared::ports::{LinkRefusal, RecordingRecord, RequestFilter, SessionEvent};

use crate::recordings::{
    Integrity, ListFilters, MAX_SEARCH_CHARS, Recordings, ReviewError, audit_view, bundle_of,
    finished, load_request, read_recording, recording_name, search,
};
use crate::service::{Deps, sha256};

/// The cookie holding a reviewer's browser session.
pub const COOKIE: &str = "bg_review";

/// The Content-Security-Policy of every reviewer page. `'wasm-unsafe-eval'` lets the player
/// compile its WebAssembly terminal; it does not allow `eval` or inline script.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; media-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Most sessions the list shows.
const LIST_LIMIT: u32 = 500;
/// What the reviewer pages run on: the service and the recordings.
#[derive(Debug, Clone)]
pub struct ReviewFront {
    pub deps: Deps,
    pub recordings: Arc<Recordings>,
}

impl FromRef<ReviewFront> for Deps {
    fn from_ref(front: &ReviewFront) -> Self {
        front.deps.clone()
    }
}

impl FromRef<ReviewFront> for Arc<Recordings> {
    fn from_ref(front: &ReviewFront) -> Self {
        front.recordings.clone()
    }
}

/// The reviewer routes (merged into the bot's router).
pub fn routes() -> Router<ReviewFront> {
    Router::new()
        .route("/review", get(list))
        .route("/review/login", get(login))
        .route("/review/s/{code}", get(session))
        .route("/review/s/{code}/cast", get(download_cast))
        .route("/review/s/{code}/bundle", get(download_bundle))
        .route("/review/s/{code}/live", get(live::stream))
        .route("/review/assets/{name}", get(asset))
        .layer(axum::middleware::map_response(secure_headers))
}

async fn secure_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

impl IntoResponse for ReviewError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "reviewer page: internal error");
        }
        let page = pages::error(self.code(), &self.to_string());
        (self.status(), html(page)).into_response()
    }
}

fn html(markup: maud::Markup) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))],
        markup.into_string(),
    )
        .into_response()
}

/// A signed-in reviewer (a valid cookie whose owner is still a reviewer), and the SHA-256 of
/// the cookie (long-lived responses check it again).
#[derive(Debug, Clone)]
pub struct Reviewer(pub PrincipalName, pub [u8; 32]);

impl<S: Send + Sync> FromRequestParts<S> for Reviewer
where
    Deps: FromRef<S>,
{
    type Rejection = ReviewError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ReviewError> {
        let id = cookie(&parts.headers, COOKIE).ok_or(ReviewError::NotSignedIn)?;
        let session = sha256(&id);
        Ok(Self(reviewer_of(&Deps::from_ref(state), &session).await?, session))
    }
}

/// Whose browser session this is, if it is still valid and they are still a reviewer.
pub(crate) async fn reviewer_of(
    deps: &Deps,
    session: &[u8; 32],
) -> Result<PrincipalName, ReviewError> {
    let who =
        deps.store.review_session(session, deps.now()).await?.ok_or(ReviewError::NotSignedIn)?;
    if !deps.config.is_reviewer(&who) {
        return Err(ReviewError::NotAReviewer(who.to_string()));
    }
    Ok(who)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    t: Option<String>,
}

/// Opens a sign-in link once and starts a browser session.
async fn login(
    State(deps): State<Deps>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ReviewError> {
    let token = q.t.filter(|t| !t.is_empty()).ok_or(ReviewError::LinkUnknown)?;
    let now = deps.now();
    let link = match deps.store.use_review_link(&sha256(&token), now).await? {
        Ok(link) => link,
        Err(LinkRefusal::Unknown) => return Err(ReviewError::LinkUnknown),
        Err(LinkRefusal::Used) => return Err(ReviewError::LinkUsed),
        Err(LinkRefusal::Expired) => return Err(ReviewError::LinkExpired),
    };
    if !deps.config.is_reviewer(&link.principal) {
        return Err(ReviewError::NotAReviewer(link.principal.to_string()));
    }
    let id = crate::service::random_token("bgs_");
    let ttl = deps.config.review.session_ttl.as_secs();
    let expires = now.plus_secs(i64::try_from(ttl).unwrap_or(8 * 3600));
    deps.store.create_review_session(&sha256(&id), &link.principal, now, expires).await?;
    let secure =
        if deps.config.server.public_url.starts_with("https://") { "; Secure" } else { "" };
    let set_cookie =
        format!("{COOKIE}={id}; Path=/review; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}");
    let to = match &link.request_code {
        Some(code) => format!("/review/s/{code}"),
        None => "/review".to_owned(),
    };
    tracing::info!(reviewer = %link.principal, "reviewer signed in");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (
                header::LOCATION,
                HeaderValue::from_str(&to).map_err(|e| ReviewError::Internal(e.to_string()))?,
            ),
            (
                header::SET_COOKIE,
                HeaderValue::from_str(&set_cookie)
                    .map_err(|e| ReviewError::Internal(e.to_string()))?,
            ),
        ],
    )
        .into_response())
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub req: Request,
    pub rec: Option<RecordingRecord>,
    pub integrity: Integrity,
}

impl SessionRow {
    pub(super) fn started(&self) -> Timestamp {
        self.rec.as_ref().map_or(self.req.updated_at, |r| r.started_at)
    }

    pub(super) fn live(&self) -> bool {
        self.rec.is_none() && self.req.status == Status::Active
    }
}

/// Sessions: requests that had a recording, or have a live one.
async fn sessions(
    deps: &Deps,
    recordings: &Recordings,
    f: &ListFilters,
) -> Result<Vec<SessionRow>, ReviewError> {
    let window = f.window()?;
    // The requester filter goes to the database, so it looks past the newest LIST_LIMIT
    // sessions (a `who` that is not a name matches nobody).
    let requester = match ListFilters::text(f.who.as_ref()).map(PrincipalName::parse) {
        Some(Ok(who)) => Some(who),
        Some(Err(_)) => return Ok(Vec::new()),
        None => None,
    };
    // So do the host and the end of the window (a session starts after its request was
    // made); the start of the window is checked here, on the session's start.
    let filter = RequestFilter {
        statuses: vec![Status::Active, Status::Closed, Status::Revoked, Status::Expired],
        requester,
        limit: LIST_LIMIT,
        host: ListFilters::text(f.host.as_ref()).map(str::to_owned),
        created_until: (window.1 < i64::MAX).then(|| Timestamp::from_unix(window.1)),
        ..RequestFilter::default()
    };
    let reqs = deps.store.list_requests(&filter).await?;
    let ids: Vec<RequestId> = reqs.iter().map(|r| r.id).collect();
    let mut recs: HashMap<RequestId, RecordingRecord> =
        deps.store.recordings(&ids).await?.into_iter().map(|r| (r.request_id, r)).collect();
    let mut rows = Vec::new();
    for req in reqs {
        let rec = recs.remove(&req.id);
        if rec.is_none() && req.status != Status::Active {
            continue; // never connected
        }
        let integrity = match &rec {
            // The list checks the signature over the stored digest; the session page also
            // re-hashes the file.
            Some(r) => recordings.integrity(&req, r, false),
            None => Integrity::Missing,
        };
        let row = SessionRow { req, rec, integrity };
        if f.keeps(&row.req, row.started(), window) {
            rows.push(row);
        }
    }
    Ok(rows)
}

async fn list(
    State(deps): State<Deps>,
    State(recordings): State<Arc<Recordings>>,
    Reviewer(who, _): Reviewer,
    Query(f): Query<ListFilters>,
) -> Result<Response, ReviewError> {
    // The search text goes into the append-only audit log: bounded like the API's.
    if f.q.as_ref().is_some_and(|q| q.trim().chars().count() > MAX_SEARCH_CHARS) {
        return Err(ReviewError::BadInput(format!(
            "the search text must be at most {MAX_SEARCH_CHARS} characters"
        )));
    }
    let rows = sessions(&deps, &recordings, &f).await?;
    let hits = match ListFilters::text(f.q.as_ref()) {
        Some(q) => Some(search(&deps, &f, q).await?),
        None => None,
    };
    audit_view(&deps, &who, None, RecordingViewed::List { q: f.q.clone() }).await?;
    Ok(html(pages::list(&who, &f, &rows, hits.as_deref(), deps.now())))
}

/// What the session page shows.
#[derive(Debug)]
pub struct SessionPage {
    pub row: SessionRow,
    /// Commands, exec requests and transfers, in order.
    pub events: Vec<SessionEvent>,
    /// Each approval and whether its signature verifies against the pinned keys.
    pub approvals: Vec<(shared::core::Approval, Result<String, String>)>,
    pub quorum: u32,
}

async fn session(
    State(deps): State<Deps>,
    State(recordings): State<Arc<Recordings>>,
    Reviewer(who, _): Reviewer,
    Path(code): Path<String>,
) -> Result<Response, ReviewError> {
    let req = load_request(&deps, &code).await?;
    let rec = deps.store.recording(req.id).await?;
    let integrity = match &rec {
        // Re-hashing the whole file is blocking work: off the async workers.
        Some(r) => {
            let (recs, q, r) = (recordings.clone(), req.clone(), r.clone());
            tokio::task::spawn_blocking(move || recs.integrity(&q, &r, true))
                .await
                .map_err(|e| ReviewError::Internal(e.to_string()))?
        }
        None => Integrity::Missing,
    };
    let events = deps.store.session_events(req.id).await?;
    let approvals = req
        .approvals
        .iter()
        .map(|a| {
            let ok = deps
                .pins
                .verify_signature(&req, a)
                .map(|kind| kind.as_str().to_owned())
                .map_err(|e| e.to_string());
            (a.clone(), ok)
        })
        .collect();
    let quorum = deps.config.policy.scope(&req.scope).map(|s| s.quorum).unwrap_or(0);
    let page = SessionPage { row: SessionRow { req, rec, integrity }, events, approvals, quorum };
    if page.row.rec.is_none() && !page.row.live() {
        return Err(ReviewError::NotFound(format!("{code} (it has no recording)")));
    }
    audit_view(&deps, &who, Some(page.row.req.id), RecordingViewed::Page).await?;
    Ok(html(pages::session(&who, &page)))
}

async fn download_cast(
    State(deps): State<Deps>,
    State(recordings): State<Arc<Recordings>>,
    Reviewer(who, _): Reviewer,
    Path(code): Path<String>,
) -> Result<Response, ReviewError> {
    let req = load_request(&deps, &code).await?;
    let (name, live) = match deps.store.recording(req.id).await? {
        Some(rec) => (recording_name(&rec)?.to_owned(), false),
        // A live session: the recording so far (the player's "watch from the start").
        None if req.status == Status::Active => {
            let name = live::live_file(recordings.folder().as_ref(), &req.code.to_string())
                .ok_or_else(|| {
                    ReviewError::NotFound(format!(
                        "{code} (its live recording is not on this server)"
                    ))
                })?;
            (name, true)
        }
        None => return Err(ReviewError::NotFound(format!("{code} (it has no recording)"))),
    };
    let mut bytes = read_recording(recordings.folder(), &name, &req).await?;
    if live {
        // Live viewers never get keystrokes; whole lines only (the gateway may be midway
        // through writing one).
        bytes = live::output_only(&bytes);
    }
    let file = name.clone();
    let what =
        if live { RecordingViewed::CastLive { file } } else { RecordingViewed::Cast { file } };
    audit_view(&deps, &who, Some(req.id), what).await?;
    Ok(attachment(bytes, "application/x-asciicast", &name))
}

async fn download_bundle(
    State(deps): State<Deps>,
    State(recordings): State<Arc<Recordings>>,
    Reviewer(who, _): Reviewer,
    Path(code): Path<String>,
) -> Result<Response, ReviewError> {
    let code = GrantCode::parse(&code).map_err(|_| ReviewError::NotFound(code.clone()))?;
    let (req, rec, cast) = finished(&deps, &recordings, &RequestRef::Code(code)).await?;
    let name = format!("{}-bundle.tar.gz", req.code);
    let bytes = bundle_of(&deps, &recordings, &req, &rec, &cast).await?;
    audit_view(&deps, &who, Some(req.id), RecordingViewed::Bundle { file: rec.file.clone() })
        .await?;
    Ok(attachment(bytes, "application/gzip", &name))
}

fn attachment(bytes: Vec<u8>, mime: &'static str, name: &str) -> Response {
    // File names are ours (`bg-xxxxxx-<unix>-<hex>.cast`, older `bg-xxxxxx-<unix>.cast`); keep
    // only safe characters anyway.
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from(bytes),
    )
        .into_response()
}

/// The vendored player and the page's own script and style.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "asciinema-player.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/review/asciinema-player.min.js"),
    ),
    (
        "asciinema-player.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/review/asciinema-player.css"),
    ),
    (
        "review.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/review/review.js"),
    ),
    ("review.css", "text/css; charset=utf-8", include_bytes!("../../assets/review/review.css")),
];

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
            ],
            *bytes,
        )
            .into_response(),
        None => ReviewError::NotFound(format!("asset {name}")).into_response(),
    }
}
