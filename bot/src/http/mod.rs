//! The bot's HTTP surface: the API, health checks, metrics and the OpenAPI document.

pub mod api;
pub mod error;
pub mod server;
pub mod views;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::recordings::Recordings;
use crate::service::Deps;

/// Largest request body the API reads (a request is well under 4 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "breakglass API", description = "Request, approve, deny and revoke break-glass access. Errors are `{\"error\":{\"code\",\"message\"}}` with a stable code."),
    paths(api::create, api::get_one, api::list, api::approve, api::deny, api::revoke, api::whoami, api::review_link, api::search, api::recording, api::bundle, healthz, readyz, metrics),
    components(schemas(views::RequestView, views::ApprovalView, views::NewRequestBody,
        views::OfflineApprovalBody, views::RequestList, views::WhoAmI, views::ReviewLinkBody, views::ReviewLinkView, views::SearchHits, views::SearchHit, views::RecordingDownload, error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What the API runs on: the service, and the recordings (reviewers download them).
#[derive(Debug, Clone)]
pub struct ApiFront {
    pub deps: Deps,
    pub recordings: Arc<Recordings>,
}

impl FromRef<ApiFront> for Deps {
    fn from_ref(front: &ApiFront) -> Self {
        front.deps.clone()
    }
}

impl FromRef<ApiFront> for Arc<Recordings> {
    fn from_ref(front: &ApiFront) -> Self {
        front.recordings.clone()
    }
}

/// The API's routes (`/api/v1`, `/api/openapi.json`, `/healthz`, `/readyz`, `/metrics`), merged into the
/// bot's router.
pub fn routes() -> Router<ApiFront> {
    Router::new()
        .route("/api/v1/requests", post(api::create).get(api::list))
        .route("/api/v1/requests/{id}", get(api::get_one))
        .route("/api/v1/requests/{id}/approve", post(api::approve))
        .route("/api/v1/requests/{id}/deny", post(api::deny))
        .route("/api/v1/requests/{id}/revoke", post(api::revoke))
        .route("/api/v1/whoami", get(api::whoami))
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/requests/{id}/recording", get(api::recording))
        .route("/api/v1/requests/{id}/bundle", get(api::bundle))
        .route("/api/v1/review-links", post(api::review_link))
        .route("/api/v1/search", get(api::search))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// What every route of the bot shares, around the merged routes of its front ends: the
/// `not_found` fallback, the body limit and the request spans.
pub fn around(routes: Router) -> Router {
    routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Spans name the path only: a query can hold a sign-in token (`/review/login?t=`).
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            |req: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!(target: "tower_http::trace::make_span", "request",
                    method = %req.method(), path = %req.uri().path())
            },
        ))
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "ready"), (status = 503, description = "database unavailable")))]
pub async fn readyz(State(deps): State<Deps>) -> (StatusCode, &'static str) {
    crate::telemetry::readiness(deps.store.as_ref()).await
}

/// Prometheus metrics of this process (`shared::telemetry` names them).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(deps): State<Deps>) -> impl axum::response::IntoResponse {
    crate::telemetry::render(deps.store.as_ref())
}

async fn not_found() -> error::ApiError {
    error::ApiError::NotFound("route".into())
}
