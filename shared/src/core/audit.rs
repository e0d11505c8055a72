//! Audit events and their SHA-256 hash chain.
//!
//! Each stored event carries the hash of the one before it, so editing, inserting or removing
//! any event in the middle breaks every link after it. The hash of event `n` is
//!
//! ```text
//! SHA-256( "breakglass-audit-v1" 0x00
//!          || seq: i64 BE || at: i64 BE
//!          || u32 BE len || kind || u32 BE len || request id (empty if none)
//!          || u32 BE len || actor || u32 BE len || data (the stored JSON text)
//!          || prev_hash (32 bytes; all zero for seq 1) )
//! ```
//!
//! The data is hashed as the exact text stored, so verification never re-serialises JSON.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{InvalidValue, RequestId, Timestamp};

const CONTEXT: &[u8] = b"breakglass-audit-v1\0";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Requested,
    Approved,
    Denied,
    Granted,
    Revoked,
    Expired,
    SessionStarted,
    SessionEnded,
    /// The gateway refused a connection (no grant, not yours, used, expired, target down...).
    SessionRefused,
    KeyLoaded,
    ConfigLoaded,
    /// A reviewer was given a sign-in link to the reviewer page.
    ReviewLinkIssued,
    /// A reviewer viewed or downloaded a recording.
    RecordingViewed,
}

impl AuditKind {
    pub const ALL: [AuditKind; 13] = [
        Self::Requested,
        Self::Approved,
        Self::Denied,
        Self::Granted,
        Self::Revoked,
        Self::Expired,
        Self::SessionStarted,
        Self::SessionEnded,
        Self::SessionRefused,
        Self::KeyLoaded,
        Self::ConfigLoaded,
        Self::ReviewLinkIssued,
        Self::RecordingViewed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Granted => "granted",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::SessionStarted => "session_started",
            Self::SessionEnded => "session_ended",
            Self::SessionRefused => "session_refused",
            Self::KeyLoaded => "key_loaded",
            Self::ConfigLoaded => "config_loaded",
            Self::ReviewLinkIssued => "review_link_issued",
            Self::RecordingViewed => "recording_viewed",
        }
    }

    /// # Errors
    /// An unknown kind name.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| InvalidValue {
            what: "audit kind",
            why: format!("`{}` is not an audit event kind", s.escape_debug()),
        })
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append; storage gives it its sequence number, time and place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub kind: AuditKind,
    pub request_id: Option<RequestId>,
    pub actor: String,
    pub data: serde_json::Value,
}

impl AuditDraft {
    /// The event `data` says, about `request_id`, by `actor`.
    pub fn of(request_id: Option<RequestId>, actor: &str, data: &super::event::AuditData) -> Self {
        Self { kind: data.kind(), request_id, actor: actor.to_owned(), data: data.to_json() }
    }
}

/// A stored event, as read back for verification and export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: Timestamp,
    pub kind: String,
    pub request_id: Option<String>,
    pub actor: String,
    /// The JSON text exactly as stored and hashed.
    pub data: String,
    #[serde(with = "hex_32")]
    pub prev_hash: [u8; 32],
    #[serde(with = "hex_32")]
    pub hash: [u8; 32],
}

/// The hash of an event with these fields, linked to `prev_hash`.
pub fn chain_hash(
    seq: i64,
    at: Timestamp,
    kind: &str,
    request_id: Option<&str>,
    actor: &str,
    data: &str,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CONTEXT);
    h.update(seq.to_be_bytes());
    h.update(at.unix().to_be_bytes());
    for part in [kind, request_id.unwrap_or(""), actor, data] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        h.update(len.to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update(prev_hash);
    h.finalize().into()
}

impl AuditEntry {
    /// Builds the next entry after `prev` (or the first, when `prev` is `None`).
    pub fn next(prev: Option<(i64, [u8; 32])>, at: Timestamp, draft: &AuditDraft) -> Self {
        let (seq, prev_hash) = match prev {
            Some((s, h)) => (s + 1, h),
            None => (1, [0u8; 32]),
        };
        let kind = draft.kind.as_str().to_owned();
        let request_id = draft.request_id.map(|r| r.to_string());
        let data = draft.data.to_string();
        let hash =
            chain_hash(seq, at, &kind, request_id.as_deref(), &draft.actor, &data, &prev_hash);
        Self { seq, at, kind, request_id, actor: draft.actor.clone(), data, prev_hash, hash }
    }

    /// Recomputes this entry's hash from its fields.
    pub fn computed_hash(&self) -> [u8; 32] {
        chain_hash(
            self.seq,
            self.at,
            &self.kind,
            self.request_id.as_deref(),
            &self.actor,
            &self.data,
            &self.prev_hash,
        )
    }
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {why}")]
pub struct ChainBreak {
    pub seq: i64,
    pub why: String,
}

/// Walks a chain one entry at a time (so a large log streams through in constant memory).
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    last: Option<(i64, [u8; 32])>,
    checked: u64,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `e` follows the entries seen so far.
    ///
    /// # Errors
    /// A gap or reordering in `seq`, a `prev_hash` that is not the previous entry's hash, or a
    /// stored hash that does not match the entry's fields.
    pub fn check(&mut self, e: &AuditEntry) -> Result<(), ChainBreak> {
        let (want_seq, want_prev) = match self.last {
            Some((s, h)) => (s + 1, h),
            None => (1, [0u8; 32]),
        };
        let brk = |why: String| ChainBreak { seq: e.seq, why };
        if e.seq != want_seq {
            return Err(brk(format!("expected seq {want_seq}; an event was removed or inserted")));
        }
        if e.prev_hash != want_prev {
            return Err(brk("prev_hash does not match the previous event's hash".into()));
        }
        if e.computed_hash() != e.hash {
            return Err(brk(
                "the stored hash does not match the event's fields: the row was edited".into(),
            ));
        }
        if AuditKind::parse(&e.kind).is_err() {
            return Err(brk(format!("unknown kind `{}`", e.kind.escape_debug())));
        }
        self.last = Some((e.seq, e.hash));
        self.checked += 1;
        Ok(())
    }

    /// How many entries passed.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last entry that passed: the head of the chain.
    pub fn head(&self) -> Option<[u8; 32]> {
        self.last.map(|(_, h)| h)
    }
}

mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash));
            let d = AuditDraft {
                kind: AuditKind::Requested,
                request_id: None,
                actor: "alice".into(),
                data: json!({ "i": i }),
            };
            out.push(AuditEntry::next(prev, Timestamp::from_unix(100 + i as i64), &d));
        }
        out
    }

    #[track_caller]
    fn first_break(entries: &[AuditEntry]) -> Option<i64> {
        let mut v = ChainVerifier::new();
        entries.iter().find_map(|e| v.check(e).err()).map(|b| b.seq)
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(first_break(&chain(5)), None);
    }

    #[test]
    fn every_field_is_covered() {
        type Edit = (&'static str, fn(&mut AuditEntry));
        let edits: Vec<Edit> = vec![
            ("at", |e| e.at = Timestamp::from_unix(1)),
            ("kind", |e| e.kind = "denied".into()),
            ("request_id", |e| e.request_id = Some("x".into())),
            ("actor", |e| e.actor = "mallory".into()),
            ("data", |e| e.data = "{\"i\":9}".into()),
        ];
        for (name, edit) in edits {
            let mut c = chain(5);
            edit(&mut c[2]);
            assert_eq!(first_break(&c), Some(3), "editing {name} must break the chain at seq 3");
        }
    }

    #[test]
    fn removal_and_rehash_are_caught() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(first_break(&c), Some(3));

        // An attacker who edits a row and recomputes its own hash still breaks the next link.
        let mut c = chain(5);
        c[2].actor = "mallory".into();
        c[2].hash = c[2].computed_hash();
        assert_eq!(first_break(&c), Some(4));
    }
}
