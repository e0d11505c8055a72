//! The API's JSON shapes, shared by the server and the CLI client.
//!
//! Plain strings and integers on the wire; [`RequestView::to_core`] parses a view back into a
//! core `Request` with the core's own parsers, which is how `breakglass approve --key` rebuilds
//! the bytes it signs from the fields it shows (never from a digest the server sent).

use serde::{Deserialize, Serialize};
use shared::core::approval::SignatureBytes;
use shared::core::{
    Approval, GrantCode, GrantDuration, HostName, InvalidValue, KeyId, Login, Nonce, Origin,
    PinnedKeys, PrincipalName, Reason, Request, ScopeName, Status, Timestamp,
};
use utoipa::{IntoParams, ToSchema};

pub use crate::recordings::SearchHit;

/// A request as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    /// The request id (a UUID): what approvals sign.
    pub id: String,
    /// The short code users type (`bg-7f3a2c`).
    pub code: String,
    /// `pending`, `approved`, `active`, `closed`, `denied`, `expired` or `revoked`, at the time
    /// of the answer (a passed deadline shows as `expired` before the reaper stores it).
    pub status: String,
    pub requester: String,
    pub scope: String,
    pub host: String,
    pub login: String,
    /// Longest session, e.g. `30m`.
    pub duration: String,
    pub duration_secs: u64,
    pub reason: String,
    /// SHA-256 of the reason, hex (informational: signers recompute it from `reason`).
    pub reason_sha256: String,
    /// The single-use nonce every approval binds, hex.
    pub nonce: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds: the grant's hard end.
    pub not_after: i64,
    /// Unix seconds: the request expires if not approved by then.
    pub pending_until: i64,
    /// `api`, `slack` or `discord`.
    pub origin: String,
    pub approvals: Vec<ApprovalView>,
    /// Distinct approvals needed.
    pub quorum: u32,
    pub closed_by: Option<String>,
    /// The command that opens the session; only shown to the requester once approved.
    pub connect: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    pub approver: String,
    pub key_id: String,
    /// `bot` or `personal`: which pinned key signed (`null` if no pinned key matches).
    pub signer: Option<String>,
    /// Unix seconds.
    pub signed_at: i64,
    /// Ed25519 signature, hex.
    pub signature: String,
}

impl RequestView {
    /// Builds the view of `req` at `now` for `viewer`.
    pub fn of(
        req: &Request,
        now: Timestamp,
        quorum: u32,
        pins: &PinnedKeys,
        viewer: &PrincipalName,
        connect_line: impl FnOnce(&Request) -> String,
    ) -> Self {
        let status = req.status_at(now);
        let bot_ids: Vec<&KeyId> = pins.bot_key_ids().collect();
        let personal_ids: Vec<&KeyId> = pins.personal_keys().map(|(id, _)| id).collect();
        Self {
            id: req.id.to_string(),
            code: req.code.to_string(),
            status: status.as_str().to_owned(),
            requester: req.requester.to_string(),
            scope: req.scope.to_string(),
            host: req.host.to_string(),
            login: req.login.to_string(),
            duration: req.duration.to_string(),
            duration_secs: req.duration.secs(),
            reason: req.reason.to_string(),
            reason_sha256: hex::encode(req.reason.sha256()),
            nonce: req.nonce.to_hex(),
            not_before: req.not_before.unix(),
            not_after: req.not_after.unix(),
            pending_until: req.pending_until.unix(),
            origin: match &req.origin {
                Origin::Api => "api",
                Origin::Slack { .. } => "slack",
                Origin::Discord { .. } => "discord",
            }
            .to_owned(),
            approvals: req
                .approvals
                .iter()
                .map(|a| ApprovalView {
                    approver: a.approver.to_string(),
                    key_id: a.key_id.to_hex(),
                    signer: if bot_ids.contains(&&a.key_id) {
                        Some("bot".into())
                    } else if personal_ids.contains(&&a.key_id) {
                        Some("personal".into())
                    } else {
                        None
                    },
                    signed_at: a.signed_at.unix(),
                    signature: a.signature.to_hex(),
                })
                .collect(),
            quorum,
            closed_by: req.closed_by.as_ref().map(ToString::to_string),
            connect: (status == Status::Approved && *viewer == req.requester)
                .then(|| connect_line(req)),
        }
    }

    /// Parses the view back into a core request, every field through the core's parsers.
    ///
    /// # Errors
    /// Any field that does not parse.
    pub fn to_core(&self) -> Result<Request, InvalidValue> {
        let status = Status::parse(&self.status)?;
        Ok(Request {
            id: self.id.parse()?,
            code: GrantCode::parse(&self.code)?,
            requester: PrincipalName::parse(&self.requester)?,
            scope: ScopeName::parse(&self.scope)?,
            host: HostName::parse(&self.host)?,
            login: Login::parse(&self.login)?,
            duration: GrantDuration::from_secs(self.duration_secs)?,
            reason: Reason::parse(&self.reason)?,
            nonce: Nonce::from_hex(&self.nonce)?,
            not_before: Timestamp::from_unix(self.not_before),
            not_after: Timestamp::from_unix(self.not_after),
            pending_until: Timestamp::from_unix(self.pending_until),
            origin: Origin::Api,
            status,
            approvals: self
                .approvals
                .iter()
                .map(|a| {
                    Ok(Approval {
                        approver: PrincipalName::parse(&a.approver)?,
                        key_id: KeyId::from_hex(&a.key_id)?,
                        signed_at: Timestamp::from_unix(a.signed_at),
                        signature: SignatureBytes::from_hex(&a.signature)?,
                    })
                })
                .collect::<Result<_, InvalidValue>>()?,
            closed_by: self.closed_by.as_deref().map(PrincipalName::parse).transpose()?,
            updated_at: Timestamp::from_unix(self.not_before),
            version: 0,
        })
    }
}

/// `POST /api/v1/requests`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequestBody {
    /// Host name as configured in a scope, e.g. `db-1`.
    pub host: String,
    /// Needed only when the host is in several scopes you may request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Defaults to the scope's first login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// e.g. `30m`; defaults to the scope's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Why, 1 to 1000 characters, no control characters.
    pub reason: String,
}

/// `POST /api/v1/requests/{id}/approve` with the approver's own signature. With an empty body
/// the bot signs for the authenticated caller instead.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfflineApprovalBody {
    pub approver: String,
    pub key_id: String,
    /// Unix seconds, as signed.
    pub signed_at: i64,
    /// Ed25519 signature over the canonical bytes, hex.
    pub signature: String,
}

/// `GET /api/v1/requests` filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated stored statuses, e.g. `pending,approved`.
    pub status: Option<String>,
    /// Only the caller's own requests.
    pub mine: Option<bool>,
    /// At most this many, newest first (default 100, max 1000).
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    /// `human` or `service`.
    pub kind: String,
}

/// `POST /api/v1/review-links`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewLinkBody {
    /// Request id or code whose session the link opens; the session list when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// A single-use sign-in link to the reviewer page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewLinkView {
    /// Open it once in a browser; it signs you in and is then spent.
    pub url: String,
    /// Unix seconds: the link does not open after this.
    pub expires_at: i64,
}

/// `GET /api/v1/search` filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Text the command contains (case-insensitive).
    pub q: String,
    /// Only this requester.
    pub who: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only sessions on or after this day (YYYY-MM-DD, UTC).
    pub from: Option<String>,
    /// Only sessions on or before this day (YYYY-MM-DD, UTC).
    pub to: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHits {
    pub hits: Vec<SearchHit>,
}

/// `GET /api/v1/requests/{id}/recording`: a finished session's recording and what verifies it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordingDownload {
    pub code: String,
    /// The file name the gateway gave it.
    pub file: String,
    /// The asciicast v2 file, byte for byte (it is UTF-8 text).
    pub cast: String,
    /// The gateway's signature sidecar (the `FILE.sig` JSON).
    #[schema(value_type = Object)]
    pub sidecar: serde_json::Value,
    /// The recording keys this server trusts (`ed25519:<base64>`); pin your own with `--key`
    /// for a check that does not trust the server.
    pub recording_keys: Vec<String>,
}
