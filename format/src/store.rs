//! Where recordings live: the one port the gateway writes through and the bot reads through
//! ([`RecordingStore`]), the one naming function ([`recording_name`]), and the local-folder
//! adapter ([`LocalFolder`], today's behaviour). The object-storage adapter is the
//! `breakglass-s3` crate (`s3::S3Store`), so this crate links no async runtime.
//!
//! A recording is named by a plain file name (the database stores it, the signature binds it);
//! next to it live its signature sidecar (`NAME.sig`, written once the recording is sealed)
//! and, between sealing and the database storing the end, the end itself (`NAME.pending`, so
//! a crash in between loses nothing: the gateway stores it at its next start).
//!
//! Sync std I/O only: the format crate links no async runtime. The gateway's hot path writes
//! through the [`RecordingWriter`] that [`RecordingStore::create`] returns, with no buffer of
//! its own (the asciicast writer keeps one and hands over whole lines).

use std::fmt;
use std::io::{self, Read, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};

use shared::core::Timestamp;

use crate::integrity::{Sidecar, sidecar_path};

/// The name of a new recording: `CODE-UNIXSECONDS-XXXXXXXX.cast`, with the low 32 bits of
/// `session_tag` (a value drawn per session, such as its certificate serial) as 8 hex digits.
/// Two sessions of the same grant in the same second get two names, so a reuse is never
/// refused for want of a file name. Older recordings are `CODE-UNIXSECONDS.cast`; both forms
/// start with `CODE-` and end with `.cast`, which is all readers rely on.
pub fn recording_name(code: &str, started_at: Timestamp, session_tag: u64) -> String {
    format!("{code}-{}-{:08x}.cast", started_at.unix(), session_tag & 0xffff_ffff)
}

/// Whether `name` is a plain file name: not empty, no path separator, not hidden (so neither
/// `.` nor `..`). Every store operation refuses other names: a name from the database must not
/// leave the recordings folder.
pub fn is_plain(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.contains('\\') && !name.starts_with('.')
}

/// A recording being written. `Write` goes straight to the storage (no buffer of its own).
pub trait RecordingWriter: Write + Send + fmt::Debug {
    /// Makes everything written so far durable (`fsync` for a file).
    ///
    /// # Errors
    /// The storage refused.
    fn sync(&mut self) -> io::Result<()>;
}

impl RecordingWriter for std::fs::File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

/// Where recordings live. Every `name` must be plain ([`is_plain`]); other names are refused
/// with [`io::ErrorKind::InvalidInput`].
pub trait RecordingStore: Send + Sync + fmt::Debug {
    /// Creates recording `name`, which must not exist yet (a recording is never overwritten).
    ///
    /// # Errors
    /// It exists, or cannot be created: the session must not start.
    fn create(&self, name: &str) -> io::Result<Box<dyn RecordingWriter>>;

    /// Removes a recording that was created for a session that never started.
    ///
    /// # Errors
    /// It cannot be removed.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Whether recording `name` is here.
    fn exists(&self, name: &str) -> bool;

    /// The whole recording.
    ///
    /// # Errors
    /// It is not here, or cannot be read.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;

    /// The recording from byte `offset` on, as far as it is written now (the live tail).
    ///
    /// # Errors
    /// It is not here, or cannot be read.
    fn read_from(&self, name: &str, offset: u64) -> io::Result<Box<dyn Read + Send>>;

    /// Replaces the recording's bytes (crash recovery closes a recording cut mid-line).
    ///
    /// # Errors
    /// It cannot be written.
    fn replace(&self, name: &str, bytes: &[u8]) -> io::Result<()>;

    /// Seals the recording: writes its signature sidecar.
    ///
    /// # Errors
    /// The sidecar cannot be written.
    fn seal(&self, name: &str, side: &Sidecar) -> io::Result<()>;

    /// The signature sidecar's bytes.
    ///
    /// # Errors
    /// It is not here (the recording is not sealed), or cannot be read.
    fn sidecar(&self, name: &str) -> io::Result<Vec<u8>>;

    /// Whether the recording has its signature sidecar.
    fn is_sealed(&self, name: &str) -> bool;

    /// Keeps the session's end (JSON) next to the recording until the database has it.
    ///
    /// # Errors
    /// It cannot be written.
    fn put_pending(&self, name: &str, end: &[u8]) -> io::Result<()>;

    /// The pending end.
    ///
    /// # Errors
    /// There is none, or it cannot be read.
    fn read_pending(&self, name: &str) -> io::Result<Vec<u8>>;

    /// Drops the pending end: the database has it.
    ///
    /// # Errors
    /// There is none, or it cannot be removed.
    fn take_pending(&self, name: &str) -> io::Result<()>;

    /// Every recording's name, sorted.
    ///
    /// # Errors
    /// The store cannot be listed (for a folder: it is not on this machine).
    fn list(&self) -> io::Result<Vec<String>>;

    /// The recordings a crash left: not sealed, or sealed with a pending end. Sorted.
    fn unfinished(&self) -> Vec<String>;

    /// The newest recording of grant `code` (`CODE-*.cast`): the session being recorded.
    fn newest_of(&self, code: &str) -> Option<String>;

    /// Where recording `name` is, for a person reading a message (a path, a URL).
    fn locate(&self, name: &str) -> String {
        name.to_owned()
    }

    /// Whether recordings are being stored now. A store that cannot keep up (object storage
    /// that stopped answering) says why, so the gateway cuts its live sessions before their
    /// next byte rather than relay what is not getting recorded. A folder is always healthy
    /// (its write errors show at the write).
    ///
    /// # Errors
    /// Why writes would fail now.
    fn health(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Recordings as files in one local folder: `NAME`, `NAME.sig`, `NAME.pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFolder {
    dir: PathBuf,
}

impl LocalFolder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of recording `name`.
    ///
    /// # Errors
    /// `name` is not plain ([`is_plain`]).
    pub fn path_of(&self, name: &str) -> io::Result<PathBuf> {
        if !is_plain(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("recording file name {name:?} is not plain"),
            ));
        }
        Ok(self.dir.join(name))
    }

    fn pending_path(&self, name: &str) -> io::Result<PathBuf> {
        let mut s = self.path_of(name)?.into_os_string();
        s.push(".pending");
        Ok(PathBuf::from(s))
    }

    fn sidecar_path(&self, name: &str) -> io::Result<PathBuf> {
        Ok(sidecar_path(&self.path_of(name)?))
    }
}

impl RecordingStore for LocalFolder {
    fn create(&self, name: &str) -> io::Result<Box<dyn RecordingWriter>> {
        let file =
            std::fs::File::options().write(true).create_new(true).open(self.path_of(name)?)?;
        Ok(Box::new(file))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path_of(name)?)
    }

    fn exists(&self, name: &str) -> bool {
        self.path_of(name).is_ok_and(|p| p.is_file())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.path_of(name)?)
    }

    fn read_from(&self, name: &str, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut f = std::fs::File::open(self.path_of(name)?)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        std::fs::write(self.path_of(name)?, bytes)
    }

    fn seal(&self, name: &str, side: &Sidecar) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(side).map_err(io::Error::other)?;
        std::fs::write(self.sidecar_path(name)?, bytes)
    }

    fn sidecar(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.sidecar_path(name)?)
    }

    fn is_sealed(&self, name: &str) -> bool {
        self.sidecar_path(name).is_ok_and(|p| p.exists())
    }

    fn put_pending(&self, name: &str, end: &[u8]) -> io::Result<()> {
        std::fs::write(self.pending_path(name)?, end)
    }

    fn read_pending(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.pending_path(name)?)
    }

    fn take_pending(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.pending_path(name)?)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cast"))
            .collect();
        names.sort();
        Ok(names)
    }

    fn unfinished(&self) -> Vec<String> {
        let names = self.list().unwrap_or_default();
        names
            .into_iter()
            .filter(|n| is_plain(n))
            .filter(|n| !self.is_sealed(n) || self.pending_path(n).is_ok_and(|p| p.exists()))
            .collect()
    }

    fn locate(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn newest_of(&self, code: &str) -> Option<String> {
        let prefix = format!("{code}-");
        std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                (n.starts_with(&prefix) && n.ends_with(".cast")).then_some((e, n))
            })
            .filter_map(|(e, n)| Some((e.metadata().ok()?.modified().ok()?, n)))
            .max()
            .map(|(_, n)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, LocalFolder) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalFolder::new(dir.path());
        (dir, store)
    }

    fn side(file: &str) -> Sidecar {
        let signer = crate::integrity::RecordingSigner::new(shared::testing::key(7));
        signer.sign_v1(file, &[1; 32], Timestamp::from_unix(1_795_403_700))
    }

    #[test]
    fn new_names_are_unique_per_session_and_keep_the_old_prefix() {
        let at = Timestamp::from_unix(1_795_403_640);
        let a = recording_name("bg-7f3a2c", at, 0x1234_5678_9abc_def0);
        assert_eq!(a, "bg-7f3a2c-1795403640-9abcdef0.cast");
        assert_eq!(recording_name("bg-7f3a2c", at, 1), "bg-7f3a2c-1795403640-00000001.cast");
        assert_ne!(a, recording_name("bg-7f3a2c", at, 2), "same grant, same second");
        assert!(is_plain(&a));
    }

    #[test]
    fn names_that_could_leave_the_folder_are_refused_by_every_operation() {
        let (dir, store) = folder();
        std::fs::write(dir.path().join(".hidden.cast"), b"x").expect("write");
        for bad in
            ["", "a/b.cast", "../x.cast", "..", ".", ".hidden.cast", "a\\b.cast", "/etc/passwd"]
        {
            assert!(!is_plain(bad), "{bad:?}");
            let refused = |r: io::Result<()>| {
                assert_eq!(r.map_err(|e| e.kind()), Err(io::ErrorKind::InvalidInput), "{bad:?}");
            };
            refused(store.create(bad).map(drop));
            refused(store.read(bad).map(drop));
            refused(store.read_from(bad, 0).map(drop));
            refused(store.replace(bad, b"x"));
            refused(store.remove(bad));
            refused(store.seal(bad, &side(bad)));
            refused(store.sidecar(bad).map(drop));
            refused(store.put_pending(bad, b"{}"));
            refused(store.read_pending(bad).map(drop));
            refused(store.take_pending(bad));
            assert!(!store.exists(bad) && !store.is_sealed(bad), "{bad:?}");
        }
        assert!(
            !dir.path().join("a").exists()
                && !dir.path().parent().expect("parent").join("x.cast").exists()
        );
    }

    #[test]
    fn a_recording_is_created_once_written_through_and_read_back() {
        let (dir, store) = folder();
        let name = "bg-000001-1795403640-00000001.cast";
        let mut w = store.create(name).expect("created");
        w.write_all(b"{\"version\":2}\n[0.1,\"o\",\"hi\"]\n").expect("written");
        w.sync().expect("synced");
        drop(w);
        assert_eq!(
            store.create(name).map(drop).map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists),
            "never overwritten"
        );
        assert!(store.exists(name) && !store.exists("bg-000002-1.cast"));
        assert_eq!(store.read(name).expect("read"), b"{\"version\":2}\n[0.1,\"o\",\"hi\"]\n");
        assert_eq!(std::fs::read(dir.path().join(name)).expect("on disk").len(), 29);
        let mut tail = Vec::new();
        store.read_from(name, 14).expect("tail").read_to_end(&mut tail).expect("read");
        assert_eq!(tail, b"[0.1,\"o\",\"hi\"]\n");
        store.replace(name, b"cut\n").expect("replaced");
        assert_eq!(store.read(name).expect("read"), b"cut\n");
        store.remove(name).expect("removed");
        assert!(!store.exists(name));
        assert_eq!(store.read(name).map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
    }

    #[test]
    fn sealing_writes_the_sidecar_next_to_the_recording() {
        let (dir, store) = folder();
        let name = "bg-000001-1795403640.cast";
        std::fs::write(dir.path().join(name), b"x").expect("write");
        assert!(!store.is_sealed(name));
        assert_eq!(store.sidecar(name).map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
        let s = side(name);
        store.seal(name, &s).expect("sealed");
        assert!(store.is_sealed(name));
        let on_disk = std::fs::read(dir.path().join(format!("{name}.sig"))).expect("NAME.sig");
        assert_eq!(on_disk, serde_json::to_vec_pretty(&s).expect("json"), "pretty JSON as before");
        assert_eq!(store.sidecar(name).expect("read"), on_disk);
    }

    #[test]
    fn the_pending_end_is_put_read_and_taken() {
        let (dir, store) = folder();
        let name = "bg-000001-1795403640.cast";
        assert_eq!(store.read_pending(name).map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
        store.put_pending(name, b"{\"end_reason\":\"closed\"}").expect("put");
        assert_eq!(
            std::fs::read(dir.path().join(format!("{name}.pending"))).expect("NAME.pending"),
            b"{\"end_reason\":\"closed\"}"
        );
        assert_eq!(store.read_pending(name).expect("read"), b"{\"end_reason\":\"closed\"}");
        store.take_pending(name).expect("taken");
        assert!(!dir.path().join(format!("{name}.pending")).exists());
        assert!(store.take_pending(name).is_err());
    }

    #[test]
    fn listing_names_recordings_only_and_unfinished_names_the_ones_a_crash_left() {
        let (dir, store) = folder();
        let put = |n: &str| std::fs::write(dir.path().join(n), b"x").expect("write");
        for n in ["b-2.cast", "a-1.cast", "c-3-0000000a.cast", "journal", "x.cast.tmp"] {
            put(n);
        }
        store.seal("a-1.cast", &side("a-1.cast")).expect("sealed");
        store.seal("c-3-0000000a.cast", &side("c-3-0000000a.cast")).expect("sealed");
        store.put_pending("c-3-0000000a.cast", b"{}").expect("pending");
        assert_eq!(store.list().expect("list"), ["a-1.cast", "b-2.cast", "c-3-0000000a.cast"]);
        // b: never sealed; c: sealed with its end still pending; a: done.
        assert_eq!(store.unfinished(), ["b-2.cast", "c-3-0000000a.cast"]);
        let gone = LocalFolder::new(dir.path().join("nowhere"));
        assert!(gone.list().is_err());
        assert!(gone.unfinished().is_empty());
    }

    #[test]
    fn the_newest_recording_of_a_grant_is_found_in_either_naming_form() {
        let (dir, store) = folder();
        let put = |n: &str, age: u64| {
            let f = std::fs::File::create(dir.path().join(n)).expect("create");
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            f.set_modified(t).expect("mtime");
        };
        put("bg-7f3a2c-1795403640.cast", 60);
        assert_eq!(store.newest_of("bg-7f3a2c").as_deref(), Some("bg-7f3a2c-1795403640.cast"));
        put("bg-7f3a2c-1795403700-0badf00d.cast", 10);
        put("bg-7f3a2c-1795403700-0badf00d.cast.sig", 0);
        put("bg-7f3a2cd-1795403800.cast", 0);
        assert_eq!(
            store.newest_of("bg-7f3a2c").as_deref(),
            Some("bg-7f3a2c-1795403700-0badf00d.cast")
        );
        assert_eq!(store.newest_of("bg-000000"), None);
    }
}
