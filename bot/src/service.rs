//! The application service: the one path every front end (HTTP API, CLI through the API, chat
//! adapters, reviewer pages) takes to create and decide requests.
//!
//! It holds the config, the store, the clock, the approval signer and the pinned keys, and
//! names no front end: what only a front end needs (chat adapters, Slack's and Discord's
//! state, the recordings folder) is handed to that front end by the composition (`app`).
//!
//! Each operation loads the request, asks the pure core what the action does, and has storage
//! apply the resulting transition atomically. A concurrent change makes storage refuse the write
//! (version check); the operation then reloads and asks the core again, so two clicks racing
//! each other are decided one after the other, never both on the same old state.

use std::sync::Arc;

use shared::config::Config;
use shared::core::event;
use shared::core::request::{self, Fresh, NewRequest};
use shared::core::{
    Action, Approval, ApprovalSigner, AuditData, AuditDraft, Clock, GrantCode, Nonce, PinnedKeys,
    PolicyError, PrincipalName, Request, RequestId, RequestRef, Status, Timestamp,
};
use shared::ports::{RequestFilter, Store, StoreError};
use shared::telemetry;

/// Everything the service needs, shared by every task of the process (and nothing more).
#[derive(Debug, Clone)]
pub struct Deps {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The bot's approval key: signs for approvers whose identity a front end verified.
    pub signer: Arc<ApprovalSigner>,
    /// The keys approvals are verified against (from config, never from the database).
    pub pins: Arc<PinnedKeys>,
    /// Notified after every change a decision makes. In `breakglass up` the gateway's
    /// revocation watcher waits on it, so a revoke cuts the session at once, not at the next
    /// poll.
    pub changed: Arc<tokio::sync::Notify>,
}

/// Why an operation did not happen. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("no request {0}")]
    NotFound(String),
    #[error("the request changed while this was decided; try again")]
    Busy,
    #[error("database unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound(String::new()),
            StoreError::Conflict(_) => Self::Busy,
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::Corrupt(m) => Self::Internal(m),
        }
    }
}

/// An approval signed elsewhere with the approver's own key (`breakglass approve --key`).
#[derive(Debug, Clone)]
pub struct OfflineApproval(pub Approval);

/// How many times a decision is retried after losing a race.
const RETRIES: usize = 5;

impl Deps {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Opens a request for `input.requester` and stores it with its audit event.
    ///
    /// # Errors
    /// A [`PolicyError`] for anything the policy refuses; storage errors.
    pub async fn create_request(&self, input: NewRequest) -> Result<Request, ServiceError> {
        for _ in 0..RETRIES {
            let now = self.now();
            let (req, audit) = request::open(&self.config.policy, input.clone(), fresh(), now)?;
            match self.store.create_request(&req, &audit, now).await {
                Ok(()) => {
                    tracing::info!(code = %req.code, requester = %req.requester, host = %req.host, "request opened");
                    metrics::counter!(telemetry::REQUESTS, "outcome" => "requested").increment(1);
                    return Ok(req);
                }
                // A code collision (1 in 16M per live code): draw new random parts.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Busy)
    }

    /// # Errors
    /// `NotFound`, storage errors.
    pub async fn get(&self, r: &RequestRef) -> Result<Request, ServiceError> {
        self.store.get_request(r).await.map_err(|e| match e {
            StoreError::NotFound => ServiceError::NotFound(r.to_string()),
            e => e.into(),
        })
    }

    /// # Errors
    /// Storage errors.
    pub async fn list(&self, filter: &RequestFilter) -> Result<Vec<Request>, ServiceError> {
        Ok(self.store.list_requests(filter).await?)
    }

    /// Approves as `who`: with the approver's own signature when given, otherwise signed by
    /// the bot's key on their behalf (the caller has authenticated `who`).
    ///
    /// # Errors
    /// Any refusal of the core (self-approval, not an approver, twice, wrong state, expired,
    /// bad or unpinned signature, offline signature required), `NotFound`, storage errors.
    pub async fn approve(
        &self,
        r: &RequestRef,
        who: &PrincipalName,
        offline: Option<OfflineApproval>,
    ) -> Result<Request, ServiceError> {
        self.decide(r, |req, now| match &offline {
            Some(OfflineApproval(a)) => {
                if a.approver != *who {
                    // The signature names someone else than the authenticated caller.
                    return Err(PolicyError::ApproverMismatch {
                        signed_for: a.approver.to_string(),
                        caller: who.to_string(),
                    });
                }
                Ok(Action::Approve(a.clone()))
            }
            None => Ok(Action::Approve(self.signer.sign(req, who, now))),
        })
        .await
    }

    /// # Errors
    /// As [`Self::approve`].
    pub async fn deny(&self, r: &RequestRef, who: &PrincipalName) -> Result<Request, ServiceError> {
        self.decide(r, |_, _| Ok(Action::Deny { by: who.clone() })).await
    }

    /// # Errors
    /// `NotAllowedToRevoke`, wrong state, `NotFound`, storage errors.
    pub async fn revoke(
        &self,
        r: &RequestRef,
        who: &PrincipalName,
    ) -> Result<Request, ServiceError> {
        self.decide(r, |_, _| Ok(Action::Revoke { by: who.clone() })).await
    }

    /// Expires one request whose deadline passed (the reaper's step).
    ///
    /// # Errors
    /// As [`Self::approve`].
    pub async fn expire(&self, id: RequestId) -> Result<Request, ServiceError> {
        self.decide(&RequestRef::Id(id), |_, _| Ok(Action::Expire)).await
    }

    async fn decide(
        &self,
        r: &RequestRef,
        make: impl Fn(&Request, Timestamp) -> Result<Action, PolicyError>,
    ) -> Result<Request, ServiceError> {
        for _ in 0..RETRIES {
            let req = self.get(r).await?;
            let now = self.now();
            let action = make(&req, now)?;
            let t = request::apply(&req, action, &self.config.policy, &self.pins, now)?;
            match self.store.apply(&t, now).await {
                Ok(()) => {
                    tracing::info!(code = %t.next.code, status = t.next.status.as_str(), "request changed");
                    self.changed.notify_one();
                    count_outcome(&req, &t.next, now);
                    return Ok(t.next);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Busy)
    }

    /// Expires every open request whose deadline passed; returns how many. Sets the reaper
    /// lag: how far past its deadline the most overdue of them was.
    ///
    /// # Errors
    /// Storage errors while listing. Errors on single requests are logged and skipped.
    pub async fn expire_due(&self) -> Result<usize, ServiceError> {
        let open = self
            .store
            .list_requests(&RequestFilter {
                statuses: vec![Status::Pending, Status::Approved],
                requester: None,
                limit: 1000,
                ..RequestFilter::default()
            })
            .await?;
        let now = self.now();
        let lag = open
            .iter()
            .filter(|r| !r.status.is_terminal() && r.status_at(now) == Status::Expired)
            .map(|r| match r.status {
                Status::Pending => r.pending_until,
                _ => r.not_after,
            })
            .map(|due| telemetry::seconds_between(due, now))
            .fold(0.0, f64::max);
        metrics::gauge!(telemetry::REAPER_LAG).set(lag);
        let mut n = 0;
        for id in request::due_for_expiry(&open, now) {
            match self.expire(id).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(%id, error = %e, "could not expire request"),
            }
        }
        Ok(n)
    }

    /// Records that this process loaded its keys and config (two audit events).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn record_startup(&self, component: &str) -> Result<(), ServiceError> {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let mut drafts = vec![AuditDraft::of(
            None,
            component,
            &AuditData::KeyLoaded(event::KeyLoaded {
                purpose: "approval_signing".to_owned(),
                key_id: self.signer.key_id(),
                pinned_bot_keys: self.pins.bot_key_ids().copied().collect(),
                pinned_personal_keys: self
                    .pins
                    .personal_keys()
                    .map(|(id, who)| event::PinnedPersonalKey {
                        key_id: *id,
                        approver: who.clone(),
                    })
                    .collect(),
                pinned_keys: self.pinned_key_records(),
            }),
        )];
        drafts.push(AuditDraft::of(
            None,
            component,
            &AuditData::ConfigLoaded(event::ConfigLoaded {
                file: self.config.source.as_ref().map(|(p, _)| p.display().to_string()),
                sha256: self.config.source.as_ref().map(|(_, h)| hex::encode(h)),
                scopes: count(self.config.policy.scopes().count()),
                principals: count(self.config.policy.principals().count()),
            }),
        ));
        self.store.append_audit(&drafts, self.now()).await?;
        Ok(())
    }
}

impl Deps {
    /// Every key this process pins, with its public half and validity, for `key_loaded`: the
    /// approval keys it verifies with and the recording keys the config pins.
    fn pinned_key_records(&self) -> Vec<event::PinnedKeyRecord> {
        use shared::core::approval::public_key_text;
        let approval = self.pins.all().into_iter().map(|p| event::PinnedKeyRecord {
            role: if p.approver.is_some() { event::PinRole::Personal } else { event::PinRole::Bot },
            key_id: p.key_id,
            public_key: public_key_text(&p.key),
            approver: p.approver,
            not_before: p.validity.not_before,
            not_after: p.validity.not_after,
        });
        let recording =
            self.config.keys.pinned_recording_keys.iter().map(|p| event::PinnedKeyRecord {
                role: event::PinRole::Recording,
                key_id: shared::core::KeyId::of(p.key.as_bytes()),
                public_key: public_key_text(&p.key),
                approver: None,
                not_before: p.validity.not_before,
                not_after: p.validity.not_after,
            });
        approval.chain(recording).collect()
    }
}

/// A sign-in link to the reviewer page, as issued.
#[derive(Debug, Clone)]
pub struct IssuedLink {
    pub url: String,
    pub expires_at: Timestamp,
}

impl Deps {
    /// Issues a single-use sign-in link to the reviewer page for `who` (a reviewer), opening
    /// `request` when given. Only the SHA-256 of the token is stored.
    ///
    /// # Errors
    /// `NotAReviewer`, `NotFound` for an unknown request, storage errors.
    pub async fn issue_review_link(
        &self,
        who: &PrincipalName,
        request: Option<&RequestRef>,
    ) -> Result<IssuedLink, ServiceError> {
        if !self.config.is_reviewer(who) {
            return Err(PolicyError::NotAReviewer(who.to_string()).into());
        }
        let code = match request {
            Some(r) => Some(self.get(r).await?.code.to_string()),
            None => None,
        };
        let token = random_token("bgr_");
        let now = self.now();
        let ttl = i64::try_from(self.config.review.link_ttl.as_secs()).unwrap_or(600);
        let link = shared::ports::ReviewLink {
            token_sha256: sha256(&token),
            principal: who.clone(),
            request_code: code.clone(),
            created_at: now,
            expires_at: now.plus_secs(ttl),
        };
        self.store.create_review_link(&link).await?;
        let audit = AuditDraft::of(
            None,
            who.as_str(),
            &AuditData::ReviewLinkIssued(event::ReviewLinkIssued {
                request: code,
                expires_at: link.expires_at,
            }),
        );
        self.store.append_audit(&[audit], now).await?;
        Ok(IssuedLink {
            url: format!("{}/review/login?t={token}", self.config.server.public_url),
            expires_at: link.expires_at,
        })
    }
}

/// A fresh secret: `prefix` and 32 random bytes from the OS RNG, hex.
pub fn random_token(prefix: &str) -> String {
    use rand::RngExt as _;
    let raw: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", hex::encode(raw))
}

/// SHA-256 of a token or session id: what is stored instead of the value.
pub fn sha256(text: &str) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(text.as_bytes()).into()
}

/// Draws a request's random parts from the OS RNG.
fn fresh() -> Fresh {
    use rand::RngExt as _;
    let mut rng = rand::rng();
    let code: [u8; 3] = rng.random();
    let nonce: [u8; 32] = rng.random();
    Fresh {
        id: RequestId::from_uuid(uuid::Uuid::new_v4()),
        code: GrantCode::from_random(code),
        nonce: Nonce::from_bytes(nonce),
    }
}

/// Counts a request's change of status by outcome; the approval that completed the quorum
/// also records how long the request waited for it.
fn count_outcome(before: &Request, after: &Request, now: Timestamp) {
    if before.status == after.status {
        return;
    }
    let outcome = match after.status {
        Status::Approved => {
            metrics::histogram!(telemetry::TIME_TO_APPROVE)
                .record(telemetry::seconds_between(after.not_before, now));
            "approved"
        }
        Status::Denied => "denied",
        Status::Expired => "expired",
        Status::Revoked => "revoked",
        Status::Closed => "closed",
        Status::Pending | Status::Active => return,
    };
    metrics::counter!(telemetry::REQUESTS, "outcome" => outcome).increment(1);
}
