//! The pure core: types, policy, the request state machine, signed approvals and the audit
//! chain. Nothing in here does I/O: no network, no database, no files, no clock, no RNG.
//! Time and random values are passed in; a tidy test keeps I/O crates out of this folder.

pub mod approval;
pub mod audit;
pub mod audit_verify;
pub mod clock;
pub mod event;
pub mod grant;
pub mod ids;
pub mod policy;
pub mod request;

pub use approval::{Approval, ApprovalSigner, PinnedKeys, SignerKind};
pub use audit::{AuditDraft, AuditEntry, AuditKind};
pub use clock::{Clock, SystemClock};
pub use event::{AuditData, EndReason, SessionEventKind};
pub use grant::{DenyReason, VerifiedGrant, verify_grant};
pub use ids::*;
pub use policy::{Forwarding, Origin, Policy, PolicyError, Principal, PrincipalKind, ScopePolicy};
pub use request::{Action, Fresh, NewRequest, Request, Status, Transition};
