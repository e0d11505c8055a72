//! Typed identifiers and validated strings.
//!
//! Every value that crosses a trust boundary (chat text, API JSON, config, database rows) is
//! parsed into one of these types at the edge. Once a value has one of these types it is known
//! to be well formed, so the rest of the code never re-checks charsets or lengths.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Why a string was refused by one of the parsers in this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct InvalidValue {
    /// Which kind of value (e.g. "login", "reason").
    pub what: &'static str,
    /// What is wrong with it, phrased for the person who typed it.
    pub why: String,
}

fn invalid(what: &'static str, why: impl Into<String>) -> InvalidValue {
    InvalidValue { what, why: why.into() }
}

/// Seconds since the Unix epoch (UTC). Time is always passed into the core, never read by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix(secs: i64) -> Self {
        Self(secs)
    }
    pub const fn unix(self) -> i64 {
        self.0
    }
    /// `self + d`, saturating instead of overflowing.
    pub fn plus(self, d: GrantDuration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.secs()).unwrap_or(i64::MAX)))
    }
    /// `self + secs`, saturating.
    pub fn plus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }
    /// RFC 3339 in UTC with second precision, e.g. `2026-11-23T03:14:00Z`; a time before
    /// 1970 or after the year 9999 (which RFC 3339 cannot write) prints as `@<unix seconds>`.
    pub fn rfc3339(self) -> String {
        match u64::try_from(self.0) {
            // humantime's Display fails past 9999-12-31T23:59:59Z, and `to_string` panics on
            // that: a signed-at from a client reaches here through error messages.
            Ok(s) if self.0 <= MAX_RFC3339_SECS => humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
            )
            .to_string(),
            _ => format!("@{}", self.0),
        }
    }

    /// Parses RFC 3339 in UTC, as [`Self::rfc3339`] writes it (`2027-01-10T00:00:00Z`).
    ///
    /// # Errors
    /// Not such a time.
    pub fn parse_rfc3339(text: &str) -> Result<Self, InvalidValue> {
        let bad = || InvalidValue {
            what: "time",
            why: "must be RFC 3339 in UTC, e.g. `2027-01-10T00:00:00Z`".into(),
        };
        let t = humantime::parse_rfc3339(text.trim()).map_err(|_| bad())?;
        let secs = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?.as_secs();
        i64::try_from(secs).map(Self).map_err(|_| bad())
    }
}

/// 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const MAX_RFC3339_SECS: i64 = 253_402_300_799;

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// The length of a grant, in whole seconds, always greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrantDuration(u64);

impl GrantDuration {
    /// Longest duration anything in breakglass accepts (7 days): break-glass is minutes, not weeks.
    pub const CEILING_SECS: u64 = 7 * 24 * 3600;

    /// # Errors
    /// Zero, or longer than [`Self::CEILING_SECS`].
    pub fn from_secs(secs: u64) -> Result<Self, InvalidValue> {
        if secs == 0 {
            return Err(invalid("duration", "must be greater than zero"));
        }
        if secs > Self::CEILING_SECS {
            return Err(invalid("duration", "must be at most 7d"));
        }
        Ok(Self(secs))
    }
    pub const fn secs(self) -> u64 {
        self.0
    }

    /// Parses `30m`, `1h30m`, `90s`, `2h` (humantime syntax).
    ///
    /// # Errors
    /// Unparsable text, zero, fractions of a second, or over the ceiling.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        let d = humantime::parse_duration(text).map_err(|_| {
            invalid(
                "duration",
                format!(
                    "`{}` is not a duration; write it like 30m, 1h or 1h30m",
                    text.escape_debug()
                ),
            )
        })?;
        if d.subsec_nanos() != 0 {
            return Err(invalid("duration", "must be a whole number of seconds"));
        }
        Self::from_secs(d.as_secs())
    }
}

impl fmt::Display for GrantDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, (self.0 % 3600) / 60, self.0 % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 || out.is_empty() {
            out.push_str(&format!("{s}s"));
        }
        f.write_str(&out)
    }
}

impl TryFrom<String> for GrantDuration {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<GrantDuration> for String {
    fn from(d: GrantDuration) -> Self {
        d.to_string()
    }
}

/// A request's identity: a random UUID, the value every approval signature binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(Uuid);

impl RequestId {
    /// Wraps a UUID chosen by the caller (the adapter draws it from the OS RNG).
    pub const fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RequestId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| {
                invalid(
                    "request id",
                    "not a request id (a UUID) or code (`bg-` and six lowercase hex digits, like bg-7f3a2c)",
                )
            })
    }
}

/// The short code users type and see: `bg-` and six lowercase hex digits, unique per request.
/// It is what goes before the `@` in `ssh -p 2222 bg-7f3a2c@gateway`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrantCode(String);

impl GrantCode {
    /// Builds a code from three random bytes chosen by the caller.
    pub fn from_random(bytes: [u8; 3]) -> Self {
        Self(format!("bg-{}", hex::encode(bytes)))
    }
    /// # Errors
    /// Anything but `bg-` followed by six lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim();
        let ok = s.len() == 9
            && s.starts_with("bg-")
            && s[3..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "grant code",
                "a grant code is `bg-` and six lowercase hex digits, like bg-7f3a2c",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GrantCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for GrantCode {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<GrantCode> for String {
    fn from(c: GrantCode) -> Self {
        c.0
    }
}

/// Either form a person may use to name a request: its UUID or its short code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestRef {
    Id(RequestId),
    Code(GrantCode),
}

impl FromStr for RequestRef {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().starts_with("bg-") {
            GrantCode::parse(s).map(Self::Code)
        } else {
            s.parse().map(Self::Id)
        }
    }
}

impl fmt::Display for RequestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Code(c) => c.fmt(f),
        }
    }
}

macro_rules! name_type {
    ($(#[$m:meta])* $ty:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// # Errors
            /// Empty, longer than 64 bytes, not starting with a letter or digit, or holding
            /// anything but ASCII letters, digits, `.`, `_` and `-`.
            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                check_name($what, s).map(|()| Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $ty {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> Self {
                v.0
            }
        }
    };
}

fn check_name(what: &'static str, s: &str) -> Result<(), InvalidValue> {
    if s.is_empty() {
        return Err(invalid(what, "must not be empty"));
    }
    if s.len() > 64 {
        return Err(invalid(what, "must be at most 64 characters"));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(invalid(what, "must start with a letter or digit"));
    }
    if let Some(c) =
        s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(
            what,
            format!("`{}` is not allowed (letters, digits, `.`, `_`, `-` only)", c.escape_debug()),
        ));
    }
    Ok(())
}

name_type!(
    /// A configured person or service account. Names are unique across both kinds.
    PrincipalName,
    "name"
);
name_type!(
    /// A group of people in config (e.g. `dba`, `sre-leads`).
    GroupName,
    "group"
);
name_type!(
    /// A scope: a set of hosts with one policy.
    ScopeName,
    "scope"
);
name_type!(
    /// A host's name inside a scope (e.g. `db-1`), not its address.
    HostName,
    "host"
);

/// The Unix account on the target host (the certificate's principal).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Login(String);

impl Login {
    /// # Errors
    /// Anything that is not a portable Unix user name: `[a-z_][a-z0-9_.-]{0,31}`.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 32 {
            return Err(invalid("login", "must be 1 to 32 characters"));
        }
        if !(b[0].is_ascii_lowercase() || b[0] == b'_') {
            return Err(invalid("login", "must start with a lowercase letter or `_`"));
        }
        if !b[1..].iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
        }) {
            return Err(invalid("login", "lowercase letters, digits, `_`, `.`, `-` only"));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl FromStr for Login {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
impl TryFrom<String> for Login {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Login> for String {
    fn from(v: Login) -> Self {
        v.0
    }
}

/// Why someone needs access, as they typed it. Free text from an untrusted source: it is
/// validated here (length, no control or bidi characters) and escaped again wherever it is
/// rendered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);

impl Reason {
    pub const MAX_CHARS: usize = 1000;

    /// Trims surrounding whitespace, then checks the rest.
    ///
    /// # Errors
    /// Empty, over [`Self::MAX_CHARS`] characters, or holding a control character or a
    /// bidirectional-text override (which can make text display differently from what it is).
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let s = s.trim();
        if s.is_empty() {
            return Err(invalid("reason", "a reason is required: say why you need access"));
        }
        let n = s.chars().count();
        if n > Self::MAX_CHARS {
            return Err(invalid(
                "reason",
                format!("is {n} characters; at most {} are allowed", Self::MAX_CHARS),
            ));
        }
        if let Some(c) = s.chars().find(|&c| c.is_control() || is_bidi_control(c)) {
            return Err(invalid(
                "reason",
                format!(
                    "holds the control character U+{:04X}; use plain text on one line",
                    c as u32
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// SHA-256 of the UTF-8 bytes: the form in which the reason is bound into approvals.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

/// Bidirectional formatting characters (Trojan Source, CVE-2021-42574) and invisible marks.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for Reason {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Reason> for String {
    fn from(v: Reason) -> Self {
        v.0
    }
}

/// 32 random bytes bound into every approval of one request and consumed by the one session
/// the approvals allow.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nonce([u8; 32]);

impl Nonce {
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// # Errors
    /// Not 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, InvalidValue> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).map_err(|_| invalid("nonce", "must be 64 hex digits"))?;
        Ok(Self(b))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.to_hex())
    }
}
impl TryFrom<String> for Nonce {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::from_hex(&s)
    }
}
impl From<Nonce> for String {
    fn from(v: Nonce) -> Self {
        v.to_hex()
    }
}

/// Names a public key: the first 8 bytes of SHA-256 of its 32 raw bytes, as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId([u8; 8]);

impl KeyId {
    pub fn of(public_key: &[u8; 32]) -> Self {
        let d = Sha256::digest(public_key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        Self(id)
    }
    /// # Errors
    /// Not 16 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, InvalidValue> {
        let mut b = [0u8; 8];
        hex::decode_to_slice(s, &mut b).map_err(|_| invalid("key id", "must be 16 hex digits"))?;
        Ok(Self(b))
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl TryFrom<String> for KeyId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::from_hex(&s)
    }
}
impl From<KeyId> for String {
    fn from(v: KeyId) -> Self {
        v.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `approval` fuzz target: a signed-at past the year 9999 in an approval
    /// made `SignatureOutOfWindow`'s message panic (humantime cannot format it).
    #[test]
    fn timestamps_rfc3339_cannot_write_print_as_unix_seconds() {
        let t = Timestamp::from_unix;
        assert_eq!(t(253_402_300_799).rfc3339(), "9999-12-31T23:59:59Z");
        assert_eq!(t(253_402_300_800).rfc3339(), "@253402300800");
        assert_eq!(t(i64::MAX).to_string(), format!("@{}", i64::MAX));
        assert_eq!(t(-1).rfc3339(), "@-1");
        assert_eq!(t(0).rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[track_caller]
    fn bad_reason(s: &str, expect_in_error: &str) {
        let e = Reason::parse(s).expect_err("reason should be refused");
        assert!(e.to_string().contains(expect_in_error), "{e}");
    }

    #[test]
    fn reason_rules() {
        assert_eq!(Reason::parse("  replica lag  ").map(|r| r.0), Ok("replica lag".to_owned()));
        bad_reason("", "required");
        bad_reason(&"x".repeat(1001), "1001 characters");
        assert!(Reason::parse(&"é".repeat(1000)).is_ok(), "1000 characters, 2000 bytes is fine");
        bad_reason("a\u{7}b", "U+0007");
        bad_reason("line1\nline2", "U+000A");
        bad_reason("nice \u{202E}gnp.exe", "U+202E");
        bad_reason("c1 \u{9b}31m", "U+009B");
    }

    #[test]
    fn durations() {
        assert_eq!(GrantDuration::parse("30m").map(|d| d.secs()), Ok(1800));
        assert_eq!(GrantDuration::parse("1h30m").map(|d| d.to_string()), Ok("1h30m".into()));
        assert!(GrantDuration::parse("0m").is_err());
        assert!(GrantDuration::parse("soon").is_err());
        assert!(GrantDuration::parse("1.5s").is_err());
        assert!(GrantDuration::parse("8d").is_err());
    }

    #[test]
    fn names_and_logins() {
        assert!(HostName::parse("db-1.eu").is_ok());
        assert!(HostName::parse("-db").is_err());
        assert!(HostName::parse("db 1").is_err());
        assert!(HostName::parse("db;rm").is_err());
        assert!(HostName::parse(&"a".repeat(65)).is_err());
        assert!(Login::parse("postgres").is_ok());
        assert!(Login::parse("Root").is_err());
        assert!(Login::parse("root@x").is_err());
        assert!(Login::parse(&"a".repeat(33)).is_err());
    }

    #[test]
    fn codes_and_refs() {
        let c = GrantCode::from_random([0x7f, 0x3a, 0x2c]);
        assert_eq!(c.as_str(), "bg-7f3a2c");
        assert_eq!("bg-7f3a2c".parse::<RequestRef>(), Ok(RequestRef::Code(c)));
        assert!("bg-7F3A2C".parse::<RequestRef>().is_err());
        assert!("bg-7f3a2".parse::<RequestRef>().is_err());
        assert!("nonsense".parse::<RequestRef>().is_err());
        let id = "6f1c2a1e-8f43-4b7e-9a55-0d2b8f1e7c11";
        assert!(matches!(id.parse::<RequestRef>(), Ok(RequestRef::Id(_))));
    }

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(Timestamp::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_unix(1_795_000_000).rfc3339(), "2026-11-18T11:06:40Z");
    }
}
