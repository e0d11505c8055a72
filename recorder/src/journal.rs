//! The gateway's own journal of used grants: one line per consumed nonce, appended and
//! fsynced before the database consumes it, so a grant that opened a session here is refused
//! again even if a writer of the database deleted its `consumed_nonces` row.
//!
//! The file is `<gateway.recordings_dir>/used-nonces.journal`, mode 0600, beside the
//! recordings it vouches for (the gateway's own directory, not the database's). Each line:
//!
//! ```text
//! v1 <nonce, 64 hex digits> <request id> <unix seconds>\n
//! ```
//!
//! Crash safety: a session opens only after its line is on disk (`fsync`), so a line cut by a
//! crash belongs to a session that never opened; at load it is dropped (the file is cut back
//! to its last complete line) rather than poisoning the file. Any other line that does not
//! parse, or a file that cannot be read, stops the gateway from starting: without the
//! journal it could not tell a reused grant from a new one (fail closed).
//!
//! The journal is per gateway: replicas sharing one database each keep their own, and the
//! database's unique constraint still orders them.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shared::core::{Nonce, RequestId, Timestamp};

/// The journal's file name inside the recordings directory.
pub const FILE_NAME: &str = "used-nonces.journal";

/// What can go wrong with the journal; [`JournalError::code`] is the stable code.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "cannot read the used-grant journal {path}: {source}; fix: make it readable by the gateway (mode 0600, owned by its user); the gateway does not start without it"
    )]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error(
        "the used-grant journal {path} is damaged at line {line}: {why}; fix: restore it from a backup, or remove that line after checking consumed_nonces in the database; the gateway does not start with a damaged journal"
    )]
    Corrupt { path: PathBuf, line: usize, why: String },
    #[error("this grant's nonce is already in the used-grant journal")]
    AlreadyUsed,
    #[error("cannot write the used-grant journal {path}: {source}")]
    Unwritable { path: PathBuf, source: std::io::Error },
}

impl JournalError {
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "journal_unreadable",
            Self::Corrupt { .. } => "journal_corrupt",
            Self::AlreadyUsed => "already_used",
            Self::Unwritable { .. } => "journal_unavailable",
        }
    }
}

/// The journal, loaded: the file (open for appending) and the nonces in it.
#[derive(Debug)]
pub struct NonceJournal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    seen: HashSet<Nonce>,
}

impl NonceJournal {
    /// Opens (or creates, mode 0600) the journal in `dir`, creating `dir` (mode 0700) if
    /// missing, and loads every nonce in it. A last line cut by a crash is dropped.
    ///
    /// # Errors
    /// The file cannot be opened or read, or a complete line does not parse.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join(FILE_NAME);
        let unreadable = |source| JournalError::Unreadable { path: path.clone(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(unreadable)?;
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(unreadable)?;
        if !existed {
            // The new file's name is durable too.
            File::open(dir).and_then(|d| d.sync_all()).map_err(unreadable)?;
        }
        if let Ok(m) = file.metadata()
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{} is readable by others (mode {:o}); fix: chmod 600 {}",
                path.display(),
                m.permissions().mode() & 0o777,
                path.display()
            );
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(unreadable)?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let seen = parse(&path, &bytes[..complete])?;
        if complete < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped = bytes.len() - complete,
                "the used-grant journal ends in a line cut by a crash (its session never opened); dropped"
            );
            file.set_len(complete as u64)
                .and_then(|()| file.sync_all())
                .map_err(|source| JournalError::Unwritable { path: path.clone(), source })?;
        }
        Ok(Self { path, inner: Mutex::new(Inner { file, seen }) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `nonce` opened a session through this gateway.
    pub fn contains(&self, nonce: &Nonce) -> bool {
        self.inner.lock().is_ok_and(|i| i.seen.contains(nonce))
    }

    /// How many nonces the journal holds.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.seen.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `nonce` as used by `request` at `at`: appends its line and waits for it to
    /// reach the disk. Blocking (call it off the async runtime). Two callers with the same
    /// nonce: one succeeds, the other gets [`JournalError::AlreadyUsed`].
    ///
    /// # Errors
    /// `AlreadyUsed` if the nonce is in the journal; `Unwritable` if the line could not be
    /// written and synced (the nonce then counts as used: fail closed).
    pub fn record(
        &self,
        nonce: &Nonce,
        request: RequestId,
        at: Timestamp,
    ) -> Result<(), JournalError> {
        let mut inner = self.inner.lock().map_err(|_| JournalError::Unwritable {
            path: self.path.clone(),
            source: std::io::Error::other("journal lock poisoned"),
        })?;
        if !inner.seen.insert(*nonce) {
            return Err(JournalError::AlreadyUsed);
        }
        let line = format!("v1 {} {request} {}\n", nonce.to_hex(), at.unix());
        inner
            .file
            .write_all(line.as_bytes())
            .and_then(|()| inner.file.sync_data())
            .map_err(|source| JournalError::Unwritable { path: self.path.clone(), source })
    }
}

/// The nonces of the complete lines in `bytes`.
fn parse(path: &Path, bytes: &[u8]) -> Result<HashSet<Nonce>, JournalError> {
    let mut seen = HashSet::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let corrupt = |why: &str| JournalError::Corrupt {
            path: path.to_owned(),
            line: i + 1,
            why: why.to_owned(),
        };
        let line = std::str::from_utf8(raw).map_err(|_| corrupt("not UTF-8"))?;
        let fields: Vec<&str> = line.split(' ').collect();
        let [version, nonce, request, at] = fields[..] else {
            return Err(corrupt("expected `v1 NONCE REQUEST_ID UNIX_SECONDS`"));
        };
        if version != "v1" {
            return Err(corrupt("unknown version (expected v1)"));
        }
        let nonce =
            Nonce::from_hex(nonce).map_err(|_| corrupt("the nonce is not 64 hex digits"))?;
        request.parse::<RequestId>().map_err(|_| corrupt("the request id is not a UUID"))?;
        at.parse::<i64>().map_err(|_| corrupt("the time is not a number"))?;
        seen.insert(nonce);
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(b: u8) -> Nonce {
        Nonce::from_bytes([b; 32])
    }

    fn id() -> RequestId {
        "0b7e4a4c-6f1d-4a55-9d6a-3f0c9e6d2a11".parse().expect("uuid")
    }

    #[test]
    fn a_nonce_is_used_once_and_remembered_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = NonceJournal::open(dir.path()).expect("open");
        assert!(j.is_empty());
        j.record(&nonce(1), id(), Timestamp::from_unix(10)).expect("first use");
        assert!(matches!(
            j.record(&nonce(1), id(), Timestamp::from_unix(11)),
            Err(JournalError::AlreadyUsed)
        ));
        assert!(j.contains(&nonce(1)));
        drop(j);
        let j = NonceJournal::open(dir.path()).expect("reopen");
        assert!(j.contains(&nonce(1)) && !j.contains(&nonce(2)));
        let err = j.record(&nonce(1), id(), Timestamp::from_unix(12)).expect_err("still used");
        assert_eq!(err.code(), "already_used");
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).expect("read");
        assert_eq!(text, format!("v1 {} {} 10\n", nonce(1).to_hex(), id()));
    }

    #[test]
    fn the_journal_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("recordings");
        let _j = NonceJournal::open(&sub).expect("open");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join(FILE_NAME)), 0o600);
    }

    #[test]
    fn a_line_cut_by_a_crash_does_not_poison_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let whole = format!("v1 {} {} 10\n", nonce(1).to_hex(), id());
        std::fs::write(&path, format!("{whole}v1 {}", &nonce(2).to_hex()[..20])).expect("write");
        let j = NonceJournal::open(dir.path()).expect("a torn last line is dropped");
        assert!(j.contains(&nonce(1)) && !j.contains(&nonce(2)));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), whole);
        // The next line starts on a line of its own.
        j.record(&nonce(3), id(), Timestamp::from_unix(20)).expect("record");
        drop(j);
        let j = NonceJournal::open(dir.path()).expect("reopen");
        assert_eq!(j.len(), 2);
        assert!(j.contains(&nonce(3)));
    }

    #[test]
    fn a_damaged_or_unreadable_journal_stops_the_gateway() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, format!("v1 {} {} 10\ngarbage\n", nonce(1).to_hex(), id()))
            .expect("write");
        let err = NonceJournal::open(dir.path()).expect_err("damaged");
        assert_eq!(err.code(), "journal_corrupt");
        assert!(err.to_string().contains("at line 2"), "{err}");

        // A directory where the file should be cannot be read.
        std::fs::remove_file(&path).expect("rm");
        std::fs::create_dir(&path).expect("mkdir");
        let err = NonceJournal::open(dir.path()).expect_err("unreadable");
        assert_eq!(err.code(), "journal_unreadable");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }
}
