//! The HTTP API (`/api/v1`): create, read, list, approve, deny and revoke requests.
//!
//! Every route needs `Authorization: Bearer <token>`; tokens are matched by their SHA-256
//! against the hashes in config (constant time). The CLI and automation both use this API.

use axum::Json;
use axum::body::Bytes;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use shared::core::approval::SignatureBytes;
use shared::core::event::RecordingViewed;
use shared::core::{
    Approval, GrantDuration, HostName, KeyId, Login, NewRequest, Origin, PrincipalKind,
    PrincipalName, Reason, RequestRef, ScopeName, Status, Timestamp,
};
use shared::ports::RequestFilter;
use subtle::ConstantTimeEq as _;

use super::error::ApiError;
use super::views::{
    ListQuery, NewRequestBody, OfflineApprovalBody, RecordingDownload, RequestList, RequestView,
    ReviewLinkBody, ReviewLinkView, SearchHit, SearchHits, SearchQuery, WhoAmI,
};
use crate::chat::present::connect_line;
use crate::recordings::{self, Recordings};
use crate::service::{Deps, OfflineApproval};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub PrincipalName);

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Deps: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let deps = Deps::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?
            .to_str()
            .map_err(|_| ApiError::InvalidToken)?;
        let token = header.strip_prefix("Bearer ").ok_or(ApiError::MissingToken)?.trim();
        let digest = crate::service::sha256(token);
        // Compare against every configured hash, without stopping early.
        let mut found: Option<&PrincipalName> = None;
        for (hash, who) in &deps.config.tokens {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(who);
            }
        }
        found.cloned().map(Caller).ok_or(ApiError::InvalidToken)
    }
}

/// JSON body extractor whose rejections are `ApiError`s with the stable `malformed_json` code.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::MalformedJson(format!("cannot read the body: {e}")))?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedJson(format!("malformed JSON body: {e}")))
}

fn request_ref(s: &str) -> Result<RequestRef, ApiError> {
    Ok(s.parse::<RequestRef>()?)
}

fn view(deps: &Deps, req: &shared::core::Request, viewer: &PrincipalName) -> RequestView {
    let quorum = deps.config.policy.scope(&req.scope).map(|s| s.quorum).unwrap_or(0);
    RequestView::of(req, deps.now(), quorum, &deps.pins, viewer, |r| {
        connect_line(&deps.config.gateway, r)
    })
}

/// Ask for break-glass access to one host.
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests",
    request_body = NewRequestBody,
    responses(
        (status = 201, description = "Request opened, waiting for approvals", body = RequestView),
        (status = 400, description = "invalid_reason, invalid_duration, unknown_host, unknown_scope, ambiguous_host, login_not_allowed, duration_too_long, malformed_json", body = super::error::ErrorBody),
        (status = 401, description = "missing_token, invalid_token", body = super::error::ErrorBody),
        (status = 403, description = "requester_not_allowed", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(deps): State<Deps>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<NewRequestBody>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let input = NewRequest {
        requester: who.clone(),
        host: HostName::parse(&body.host)?,
        scope: body.scope.as_deref().map(ScopeName::parse).transpose()?,
        login: body.login.as_deref().map(Login::parse).transpose()?,
        duration: body.duration.as_deref().map(GrantDuration::parse).transpose()?,
        reason: Reason::parse(&body.reason)?,
        origin: Origin::Api,
    };
    let req = deps.create_request(input).await?;
    Ok((StatusCode::CREATED, Json(view(&deps, &req, &who))))
}

/// One request, by id or code.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "Request id (UUID) or code (bg-xxxxxx)")),
    responses(
        (status = 200, body = RequestView),
        (status = 404, description = "not_found", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_one(
    State(deps): State<Deps>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let req = deps.get(&request_ref(&id)?).await?;
    Ok(Json(view(&deps, &req, &who)))
}

/// Requests, newest first.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", params(ListQuery),
    responses((status = 200, body = RequestList)),
    security(("bearer" = [])))]
pub async fn list(
    State(deps): State<Deps>,
    Caller(who): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let statuses = match q.status.as_deref() {
        None | Some("") => Vec::new(),
        Some(s) => s.split(',').map(|s| Status::parse(s.trim())).collect::<Result<_, _>>()?,
    };
    let filter = RequestFilter {
        statuses,
        requester: q.mine.unwrap_or(false).then(|| who.clone()),
        limit: q.limit.unwrap_or(100).min(1000),
        ..RequestFilter::default()
    };
    let reqs = deps.list(&filter).await?;
    Ok(Json(RequestList { requests: reqs.iter().map(|r| view(&deps, r, &who)).collect() }))
}

/// Approve as the caller. With an empty body the bot signs on the caller's behalf; with an
/// `OfflineApprovalBody` the caller's own signature is verified against their pinned key.
#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", tag = "decisions",
    params(("id" = String, Path, description = "Request id or code")),
    request_body(content = Option<OfflineApprovalBody>, description = "Empty, or the approver's own signature"),
    responses(
        (status = 200, description = "Approval recorded; `status` is `approved` once quorum is reached", body = RequestView),
        (status = 400, description = "bad_signature, signature_out_of_window, malformed_json", body = super::error::ErrorBody),
        (status = 403, description = "self_approval, not_an_approver, service_cannot_decide, offline_signature_required, unpinned_key, approver_mismatch", body = super::error::ErrorBody),
        (status = 409, description = "already_approved, wrong_state, request_expired", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn approve(
    State(deps): State<Deps>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RequestView>, ApiError> {
    let r = request_ref(&id)?;
    let offline = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let b: OfflineApprovalBody = parse_json(&body)?;
        Some(OfflineApproval(Approval {
            approver: PrincipalName::parse(&b.approver)?,
            key_id: KeyId::from_hex(&b.key_id)?,
            signed_at: Timestamp::from_unix(b.signed_at),
            signature: SignatureBytes::from_hex(&b.signature)?,
        }))
    };
    let req = deps.approve(&r, &who, offline).await?;
    Ok(Json(view(&deps, &req, &who)))
}

/// Deny as the caller (an approver of the scope).
#[utoipa::path(post, path = "/api/v1/requests/{id}/deny", tag = "decisions",
    params(("id" = String, Path, description = "Request id or code")),
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "self_approval, not_an_approver, service_cannot_decide", body = super::error::ErrorBody),
        (status = 409, description = "wrong_state, request_expired", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn deny(
    State(deps): State<Deps>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let req = deps.deny(&request_ref(&id)?, &who).await?;
    Ok(Json(view(&deps, &req, &who)))
}

/// Revoke: withdraws a pending request, or ends an approved or live grant.
#[utoipa::path(post, path = "/api/v1/requests/{id}/revoke", tag = "decisions",
    params(("id" = String, Path, description = "Request id or code")),
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "not_allowed_to_revoke", body = super::error::ErrorBody),
        (status = 409, description = "wrong_state", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn revoke(
    State(deps): State<Deps>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let req = deps.revoke(&request_ref(&id)?, &who).await?;
    Ok(Json(view(&deps, &req, &who)))
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "requests",
    responses((status = 200, body = WhoAmI), (status = 401, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn whoami(
    State(deps): State<Deps>,
    Caller(who): Caller,
) -> Result<Json<WhoAmI>, ApiError> {
    let p = deps.config.policy.principal(&who).map_err(ApiError::Policy)?;
    let kind = match p.kind {
        PrincipalKind::Human { .. } => "human",
        PrincipalKind::Service { .. } => "service",
    };
    Ok(Json(WhoAmI { name: who.to_string(), kind: kind.to_owned() }))
}

/// A single-use sign-in link to the reviewer page (reviewers only).
#[utoipa::path(post, path = "/api/v1/review-links", tag = "review",
    request_body = ReviewLinkBody,
    responses(
        (status = 201, body = ReviewLinkView),
        (status = 403, description = "not_a_reviewer", body = super::error::ErrorBody),
        (status = 404, description = "not_found", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn review_link(
    State(deps): State<Deps>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<ReviewLinkBody>,
) -> Result<(StatusCode, Json<ReviewLinkView>), ApiError> {
    let r = body.request.as_deref().map(request_ref).transpose()?;
    let link = deps.issue_review_link(&who, r.as_ref()).await?;
    Ok((
        StatusCode::CREATED,
        Json(ReviewLinkView { url: link.url, expires_at: link.expires_at.unix() }),
    ))
}

/// Commands across recordings that contain `q` (reviewers only), newest first; each hit links
/// to that moment of the recording. Every search is an audit event.
#[utoipa::path(get, path = "/api/v1/search", tag = "review",
    params(SearchQuery),
    responses(
        (status = 200, body = SearchHits),
        (status = 400, description = "invalid_value", body = super::error::ErrorBody),
        (status = 403, description = "not_a_reviewer", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn search(
    State(deps): State<Deps>,
    Caller(who): Caller,
    Query(q): Query<SearchQuery>,
) -> Result<Json<SearchHits>, ApiError> {
    reviewer(&deps, &who)?;
    let text = q.q.trim();
    let max = recordings::MAX_SEARCH_CHARS;
    if text.is_empty() || text.chars().count() > max {
        return Err(ApiError::BadInput(shared::core::InvalidValue {
            what: "q",
            why: format!("the search text must be 1 to {max} characters"),
        }));
    }
    let f = recordings::ListFilters {
        who: q.who,
        host: q.host,
        q: Some(text.to_owned()),
        from: q.from,
        to: q.to,
    };
    let hits = recordings::search(&deps, &f, text).await?;
    let audit = RecordingViewed::Search {
        q: text.to_owned(),
        hits: u64::try_from(hits.len()).unwrap_or(u64::MAX),
    };
    recordings::audit_view(&deps, &who, None, audit).await?;
    let base = &deps.config.server.public_url;
    Ok(Json(SearchHits {
        hits: hits
            .into_iter()
            .map(|h| SearchHit { url: format!("{base}{}", h.url), ..h })
            .collect(),
    }))
}

fn reviewer(deps: &Deps, who: &PrincipalName) -> Result<(), ApiError> {
    if deps.config.is_reviewer(who) {
        Ok(())
    } else {
        Err(ApiError::Policy(shared::core::PolicyError::NotAReviewer(who.to_string())))
    }
}

/// A finished session's recording with its signature (reviewers only; audited).
#[utoipa::path(get, path = "/api/v1/requests/{id}/recording", tag = "review",
    params(("id" = String, Path, description = "Request id or code")),
    responses(
        (status = 200, body = RecordingDownload),
        (status = 403, description = "not_a_reviewer", body = super::error::ErrorBody),
        (status = 404, description = "not_found: no such request, or no finished recording", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn recording(
    State(deps): State<Deps>,
    State(recs): State<Arc<Recordings>>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<RecordingDownload>, ApiError> {
    reviewer(&deps, &who)?;
    let (req, rec, bytes) = recordings::finished(&deps, &recs, &request_ref(&id)?).await?;
    let cast = String::from_utf8(bytes)
        .map_err(|_| ApiError::Internal(format!("{} is not UTF-8", rec.file)))?;
    let what = RecordingViewed::ApiCast { file: rec.file.clone() };
    recordings::audit_view(&deps, &who, Some(req.id), what).await?;
    let sidecar = format::integrity::Sidecar::of(&crate::recording_check::stored(&rec), &req);
    Ok(Json(RecordingDownload {
        code: req.code.to_string(),
        file: rec.file.clone(),
        cast,
        sidecar: serde_json::to_value(&sidecar).map_err(|e| ApiError::Internal(e.to_string()))?,
        recording_keys: recs.pins.iter().map(shared::core::approval::public_key_text).collect(),
    }))
}

/// A finished session's audit bundle, `.tar.gz` (reviewers only; audited).
#[utoipa::path(get, path = "/api/v1/requests/{id}/bundle", tag = "review",
    params(("id" = String, Path, description = "Request id or code")),
    responses(
        (status = 200, description = "the bundle", content_type = "application/gzip"),
        (status = 403, description = "not_a_reviewer", body = super::error::ErrorBody),
        (status = 404, description = "not_found", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn bundle(
    State(deps): State<Deps>,
    State(recs): State<Arc<Recordings>>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    reviewer(&deps, &who)?;
    let (req, rec, cast) = recordings::finished(&deps, &recs, &request_ref(&id)?).await?;
    let bytes = recordings::bundle_of(&deps, &recs, &req, &rec, &cast).await?;
    let what = RecordingViewed::ApiBundle { file: rec.file.clone() };
    recordings::audit_view(&deps, &who, Some(req.id), what).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/gzip")], bytes).into_response())
}
