//! `ApiError`: every failure of the HTTP API, as a JSON body with a stable code.
//!
//! The body is always `{"error": {"code": "...", "message": "..."}}`. Codes are part of the
//! API contract (clients and the CLI match on them) and are listed in the OpenAPI document.
//! Client mistakes are not logged as errors; server faults are logged with their cause and
//! answered with a generic message, so nothing internal leaks.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::core::{InvalidValue, PolicyError};
use utoipa::ToSchema;

use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` header.
    #[error("missing API token: send `Authorization: Bearer <token>`")]
    MissingToken,
    /// A token that matches no configured principal.
    #[error("invalid API token")]
    InvalidToken,
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadInput(InvalidValue),
    #[error(transparent)]
    Policy(PolicyError),
    #[error("no request {0}")]
    NotFound(String),
    #[error("the request changed while this was decided; try again")]
    Busy,
    #[error("too many requests from your address; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the database is unavailable; nothing was changed")]
    Unavailable,
    #[error("internal error; nothing was changed")]
    Internal(String),
}

/// The JSON error body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `self_approval`, `unknown_host`, `invalid_token`.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::MalformedJson(_) => "malformed_json",
            Self::BadInput(v) => PolicyError::Invalid(v.clone()).code(),
            Self::Policy(p) => p.code(),
            Self::NotFound(_) => "not_found",
            Self::Busy => "conflict",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::MalformedJson(_) | Self::BadInput(_) => StatusCode::BAD_REQUEST,
            Self::Policy(p) => policy_status(p),
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Busy => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn policy_status(p: &PolicyError) -> StatusCode {
    use PolicyError as P;
    match p {
        P::Invalid(_)
        | P::UnknownScope(_)
        | P::UnknownHost(_)
        | P::AmbiguousHost { .. }
        | P::LoginNotAllowed { .. }
        | P::DurationTooLong { .. }
        | P::BadSignature
        | P::SignatureOutOfWindow { .. } => StatusCode::BAD_REQUEST,
        P::UnknownPrincipal(_)
        | P::RequesterNotAllowed { .. }
        | P::ChannelNotAllowed { .. }
        | P::SelfApproval
        | P::NotAnApprover { .. }
        | P::ServiceCannotDecide
        | P::OfflineSignatureRequired { .. }
        | P::UnpinnedKey(_)
        | P::KeyNotValidAt { .. }
        | P::ApproverMismatch { .. }
        | P::NotAllowedToRevoke { .. }
        | P::NotAReviewer(_) => StatusCode::FORBIDDEN,
        P::AlreadyApproved { .. } | P::WrongState { .. } | P::Expired { .. } => {
            StatusCode::CONFLICT
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Policy(p) => Self::Policy(p),
            ServiceError::NotFound(r) => Self::NotFound(r),
            ServiceError::Busy => Self::Busy,
            ServiceError::Unavailable(m) => {
                tracing::error!(cause = %m, "database unavailable");
                Self::Unavailable
            }
            ServiceError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<InvalidValue> for ApiError {
    fn from(v: InvalidValue) -> Self {
        Self::BadInput(v)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail { code: self.code().to_owned(), message: self.to_string() },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        if let Self::RateLimited { retry_after } = self {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after.into());
        }
        resp
    }
}

impl From<crate::recordings::ReviewError> for ApiError {
    fn from(e: crate::recordings::ReviewError) -> Self {
        use crate::recordings::ReviewError;
        use shared::core::PolicyError;
        match e {
            ReviewError::NotFound(what) => Self::NotFound(what),
            ReviewError::Unavailable => Self::Unavailable,
            ReviewError::NotAReviewer(w) => Self::Policy(PolicyError::NotAReviewer(w)),
            ReviewError::BadInput(why) => {
                Self::BadInput(shared::core::InvalidValue { what: "filter", why })
            }
            e => Self::Internal(e.to_string()),
        }
    }
}
