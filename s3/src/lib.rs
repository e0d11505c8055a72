//! Recordings in S3-compatible object storage: [`S3Store`], the recording store port
//! ([`format::store::RecordingStore`]) over a bucket, for gateways that must not keep the only
//! copy of a recording on their own disk (replicas, short-lived containers).
//!
//! # Why it is shaped this way
//!
//! - **Writes never wait for the network.** The gateway writes a recording on its data path
//!   through a sync [`RecordingWriter`]; an object store answers in milliseconds at best. So a
//!   write goes to a local spool file (`spool_dir/NAME.NNNNNNNN`, one segment per future part)
//!   and returns; a background uploader sends each closed segment as its own object
//!   (`NAME.parts/NNNNNNNN`) every `upload_every`, or as soon as a segment reaches
//!   [`PART_SIZE`], and deletes the segment once the bucket has it. A part is a whole object,
//!   so a recording is readable from the bucket up to its last uploaded part while it runs
//!   (the live view, a second replica) and after the gateway dies (`kill -9` loses nothing
//!   that was uploaded; what was spooled is uploaded at the next start).
//! - **Fail closed.** The spooled backlog is bounded by `spool_max` (across all recordings),
//!   and when the oldest byte not uploaded yet is older than `upload_timeout`, or the bucket
//!   has not answered for that long while recordings are open, every `write` and `sync`
//!   fails and [`RecordingStore::health`] says so: the gateway cuts the session with its
//!   message rather than relay bytes that are not getting recorded.
//! - **Its own runtime.** object_store is async; the port is sync (the format crate links no
//!   runtime) and is called from inside the gateway's tokio runtime. The adapter owns a small
//!   runtime (one worker) and waits for its futures on a std channel, so no caller ever
//!   enters `block_on` inside its own runtime (which panics), and dropping the store never
//!   blocks (`shutdown_background`).
//! - **Same signed bytes.** Sealing uploads what is left, streams the parts in order into
//!   the final object `NAME` (one PUT, or a multipart upload past [`SINGLE_PUT_MAX`]),
//!   hashing them on the way: if they do not hash to the digest the gateway signed while
//!   writing, nothing is sealed and the parts stay. Then `NAME.sig` (the same pretty JSON a
//!   local folder holds), then the parts are deleted. A crash between the steps leaves parts
//!   or a final object without `NAME.sig`: [`RecordingStore::unfinished`] lists it and the
//!   gateway's recovery finishes it as for a local folder.
//! - **Credentials** come from the configured files or the standard `AWS_*` environment
//!   variables; they are held as [`Secret`]s and never reach `Debug`, a log line or an error
//!   (the store's `Debug` names bucket, prefix and endpoint only).
//!
//! Objects, under `prefix/`: `NAME` (the sealed recording), `NAME.sig`, `NAME.pending`,
//! `NAME.parts/00000000` (an empty marker written at `create`, so the recording exists before
//! the session uses its grant) and `NAME.parts/00000001`…

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use format::integrity::Sidecar;
use format::store::{RecordingStore, RecordingWriter, is_plain};
use futures_util::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::{Path, PathPart};
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest as _, Sha256};
use shared::config::Secret;

/// A spool segment is closed and uploaded as soon as it holds this much, whatever the timer.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Final objects up to this size are written with one PUT; larger ones as a multipart upload.
pub const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// How often the uploader looks at the store's health between uploads.
const TICK: Duration = Duration::from_millis(200);
/// Longest a caller waits for one bucket operation (reads, listing, sealing).
const OP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how recordings are kept in a bucket (`[recordings]` with `store = "s3"`).
#[derive(Clone, Debug)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket (`breakglass/recordings`); empty for the bucket's root.
    pub prefix: String,
    /// The S3 endpoint (`https://s3.eu-west-1.amazonaws.com`, a MinIO URL); `None` for AWS's.
    pub endpoint: Option<String>,
    pub region: String,
    /// Allow `http://` endpoints (a local MinIO or moto).
    pub allow_http: bool,
    /// Credentials; `None` takes the standard `AWS_*` environment variables.
    pub access_key_id: Option<Secret<String>>,
    pub secret_access_key: Option<Secret<String>>,
    pub session_token: Option<Secret<String>>,
    /// Where writes are spooled until uploaded (local disk, private).
    pub spool_dir: PathBuf,
    /// Most bytes spooled and not uploaded yet, across all recordings.
    pub spool_max: u64,
    /// How often new bytes are uploaded as a part.
    pub upload_every: Duration,
    /// How long uploads may fail before writes fail (and the gateway cuts its sessions).
    pub upload_timeout: Duration,
}

/// A store that cannot be opened: the message says what to fix. Never carries a credential.
#[derive(Debug)]
pub struct OpenError(String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for OpenError {}

/// Recordings in an S3-compatible bucket (see the module docs).
pub struct S3Store {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Inner {
    bucket: Arc<dyn ObjectStore>,
    /// Key prefix parts (empty for the bucket's root).
    prefix: Path,
    spool: PathBuf,
    spool_max: u64,
    upload_every: Duration,
    upload_timeout: Duration,
    state: Mutex<State>,
    /// Wakes the uploader: a segment is full, or a caller waits for a drain.
    wake: tokio::sync::Notify,
    /// One upload pass at a time (the timer's or a caller's drain), so no part goes twice.
    uploading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    recs: BTreeMap<String, Rec>,
    /// Spooled bytes not uploaded yet, across all recordings.
    backlog: u64,
    /// When the bucket last answered (an upload or a probe), while writers were open.
    last_ok: Option<Instant>,
    /// Why writes fail now (set by the uploader's health check), if they do.
    failing: Option<String>,
    /// The last upload error, for the failure message.
    last_error: Option<String>,
}

/// One recording's spool.
#[derive(Default)]
struct Rec {
    /// The segment being written: its file, number, length and when its first byte came.
    current: Option<Segment>,
    /// Segments closed and waiting for upload, in order.
    closed: VecDeque<Closed>,
    /// The number the next segment gets.
    next: u32,
    /// A writer is open on it.
    writing: bool,
}

struct Segment {
    file: File,
    number: u32,
    len: u64,
    since: Instant,
}

#[derive(Clone, Copy)]
struct Closed {
    number: u32,
    len: u64,
    since: Instant,
}

impl Rec {
    fn oldest(&self) -> Option<Instant> {
        self.closed.front().map(|c| c.since).or_else(|| self.current.as_ref().map(|s| s.since))
    }

    fn close_current(&mut self) {
        if let Some(seg) = self.current.take()
            && seg.len > 0
        {
            self.closed.push_back(Closed { number: seg.number, len: seg.len, since: seg.since });
        }
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The object store's own Debug could show credentials: never print it.
        f.debug_struct("S3Store")
            .field("bucket", &self.inner.bucket.to_string())
            .field("prefix", &self.inner.prefix.as_ref())
            .field("spool", &self.inner.spool)
            .finish_non_exhaustive()
    }
}

fn invalid(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("recording file name {name:?} is not plain"),
    )
}

fn other(what: &str, e: impl fmt::Display) -> io::Error {
    io::Error::other(format!("object storage: {what}: {e}"))
}

/// An object_store error as an `io::Error` (not found stays `NotFound`).
fn os_err(what: &str, e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => {
            io::Error::new(io::ErrorKind::NotFound, format!("object storage: {what}: not found"))
        }
        e => other(what, e),
    }
}

impl S3Store {
    /// Opens the bucket (no request is made yet) and the spool folder.
    ///
    /// # Errors
    /// The spool folder cannot be created, or the options do not make an S3 client (the
    /// message names the fix).
    pub fn open(o: &S3Options) -> Result<Self, OpenError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&o.bucket)
            .with_region(&o.region)
            .with_allow_http(o.allow_http)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: o.upload_timeout / 2,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(o.allow_http)
                    .with_timeout((o.upload_timeout / 2).max(Duration::from_secs(1)))
                    .with_connect_timeout(Duration::from_secs(2)),
            );
        if let Some(e) = &o.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &o.access_key_id {
            b = b.with_access_key_id(k.expose());
        }
        if let Some(k) = &o.secret_access_key {
            b = b.with_secret_access_key(k.expose());
        }
        if let Some(k) = &o.session_token {
            b = b.with_token(k.expose());
        }
        let bucket: AmazonS3 = b.build().map_err(|e| {
            // object_store's configuration errors name the setting, never a secret's value.
            OpenError(format!(
                "cannot use bucket {:?}: {e}; fix: check [recordings] bucket, endpoint and region",
                o.bucket
            ))
        })?;
        Self::over(Arc::new(bucket), o)
    }

    /// The store over any object store (tests use this with other backends).
    ///
    /// # Errors
    /// The spool folder cannot be created or listed.
    pub fn over(bucket: Arc<dyn ObjectStore>, o: &S3Options) -> Result<Self, OpenError> {
        create_private_dir(&o.spool_dir).map_err(|e| {
            OpenError(format!(
                "cannot create the recording spool folder {}: {e}; fix: set [recordings] spool_dir to a writable local folder",
                o.spool_dir.display()
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("breakglass-s3")
            .enable_all()
            .build()
            .map_err(|e| OpenError(format!("cannot start the upload runtime: {e}")))?;
        let prefix = Path::from_iter(o.prefix.split('/').filter(|p| !p.is_empty()));
        let inner = Arc::new(Inner {
            bucket,
            prefix,
            spool: o.spool_dir.clone(),
            spool_max: o.spool_max,
            upload_every: o.upload_every,
            upload_timeout: o.upload_timeout,
            state: Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
            uploading: tokio::sync::Mutex::new(()),
        });
        runtime.spawn(uploader(Arc::downgrade(&inner)));
        runtime.spawn(watch_health(Arc::downgrade(&inner)));
        Ok(Self { inner, runtime: Some(runtime) })
    }

    /// Runs `fut` on the store's own runtime and waits for it on this thread, without
    /// entering any runtime (callers may be inside theirs).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = io::Result<T>> + Send + 'static,
    ) -> io::Result<T> {
        let Some(rt) = &self.runtime else {
            return Err(io::Error::other("object storage: the store is closed"));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv_timeout(OP_TIMEOUT)
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "object storage: no answer"))?
    }

    /// Takes over what a previous run left in the spool folder: every segment is queued for
    /// upload, in order, as the part of its number. The gateway calls it (through
    /// [`RecordingStore::unfinished`]) at start, before it accepts sessions.
    fn adopt_spool(&self) {
        let Ok(entries) = std::fs::read_dir(&self.inner.spool) else { return };
        let mut found: BTreeMap<String, Vec<(u32, u64)>> = BTreeMap::new();
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some((name, n)) = file.rsplit_once('.') else { continue };
            let (Ok(n), true) = (n.parse::<u32>(), is_plain(name) && n.len() == 8) else {
                continue;
            };
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            found.entry(name.to_owned()).or_default().push((n, len));
        }
        let now = Instant::now();
        let mut st = self.inner.lock();
        for (name, mut segs) in found {
            if st.recs.get(&name).is_some_and(|r| r.writing) {
                continue;
            }
            segs.sort_unstable();
            let rec = st.recs.entry(name).or_default();
            let known: BTreeSet<u32> = rec.closed.iter().map(|c| c.number).collect();
            for (number, len) in segs {
                if !known.contains(&number) {
                    rec.closed.push_back(Closed { number, len, since: now });
                    rec.next = rec.next.max(number + 1);
                }
            }
            let added: u64 =
                rec.closed.iter().filter(|c| !known.contains(&c.number)).map(|c| c.len).sum();
            st.backlog += added;
        }
        self.inner.wake.notify_one();
    }

    /// Uploads everything spooled for `name` now.
    fn drain(&self, name: &str) -> io::Result<()> {
        let inner = self.inner.clone();
        let name = name.to_owned();
        self.run(async move { inner.upload_pass(Some(&name), true).await })
    }

    fn key(&self, name: &str) -> io::Result<Path> {
        self.inner.key(name)
    }

    fn parts_of(&self, name: &str) -> io::Result<Vec<object_store::ObjectMeta>> {
        let inner = self.inner.clone();
        let dir = self.inner.parts_dir(name)?;
        self.run(async move { inner.parts(&dir).await })
    }

    fn head(&self, key: Path) -> io::Result<object_store::ObjectMeta> {
        let inner = self.inner.clone();
        self.run(async move { inner.bucket.head(&key).await.map_err(|e| os_err("head", e)) })
    }

    fn get(&self, key: Path) -> io::Result<Vec<u8>> {
        let inner = self.inner.clone();
        self.run(async move {
            let r = inner.bucket.get(&key).await.map_err(|e| os_err("read", e))?;
            Ok(r.bytes().await.map_err(|e| os_err("read", e))?.to_vec())
        })
    }

    fn put(&self, key: Path, bytes: Vec<u8>) -> io::Result<()> {
        let inner = self.inner.clone();
        self.run(async move {
            inner
                .bucket
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| os_err("write", e))?;
            Ok(())
        })
    }

    fn delete(&self, key: Path) -> io::Result<()> {
        let inner = self.inner.clone();
        self.run(async move { inner.bucket.delete(&key).await.map_err(|e| os_err("delete", e)) })
    }

    /// Deletes `name`'s parts and forgets its spool (the final object holds it now).
    fn drop_parts(&self, name: &str) -> io::Result<()> {
        for p in self.parts_of(name)? {
            self.delete(p.location)?;
        }
        let mut st = self.inner.lock();
        if let Some(rec) = st.recs.remove(name) {
            let left: u64 = rec.closed.iter().map(|c| c.len).sum::<u64>()
                + rec.current.as_ref().map_or(0, |s| s.len);
            st.backlog = st.backlog.saturating_sub(left);
            drop(st);
            for c in rec.closed {
                let _ = std::fs::remove_file(self.inner.segment_path(name, c.number));
            }
            if let Some(s) = rec.current {
                let _ = std::fs::remove_file(self.inner.segment_path(name, s.number));
            }
        }
        Ok(())
    }

    /// The recording as the bucket has it: the final object, else its parts in order.
    fn read_bucket(&self, name: &str) -> io::Result<Vec<u8>> {
        match self.get(self.key(name)?) {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let parts = self.parts_of(name)?;
        if parts.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no recording {name}")));
        }
        let mut out = Vec::new();
        for p in parts {
            out.extend(self.get(p.location)?);
        }
        Ok(out)
    }

    /// Whether this store is writing or holding spooled bytes of `name`.
    fn spooled(&self, name: &str) -> bool {
        self.inner.lock().recs.contains_key(name)
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn key(&self, name: &str) -> io::Result<Path> {
        if !is_plain(name) {
            return Err(invalid(name));
        }
        Ok(self.prefix.clone().join(PathPart::from(name)))
    }

    fn parts_dir(&self, name: &str) -> io::Result<Path> {
        if !is_plain(name) {
            return Err(invalid(name));
        }
        Ok(self.prefix.clone().join(PathPart::from(format!("{name}.parts").as_str())))
    }

    fn segment_path(&self, name: &str, number: u32) -> PathBuf {
        self.spool.join(format!("{name}.{number:08}"))
    }

    /// The parts of a recording, in order (the empty marker `00000000` included).
    async fn parts(&self, dir: &Path) -> io::Result<Vec<object_store::ObjectMeta>> {
        let mut list: Vec<_> = self
            .bucket
            .list(Some(dir))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| os_err("list", e))?;
        list.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(list)
    }

    /// Uploads closed segments (of `only`, or of every recording), in order; with `all`, the
    /// segment being written is closed first. Stops a recording at its first failure.
    async fn upload_pass(&self, only: Option<&str>, all: bool) -> io::Result<()> {
        let _one = self.uploading.lock().await;
        let work: Vec<(String, Vec<Closed>)> = {
            let mut st = self.lock();
            st.recs
                .iter_mut()
                .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
                .map(|(n, rec)| {
                    // Every pass closes what is being written: a byte waits at most one
                    // `upload_every` (plus the upload) before the bucket has it.
                    let _ = all;
                    rec.close_current();
                    (n.clone(), rec.closed.iter().copied().collect())
                })
                .collect()
        };
        let mut first_error = None;
        for (name, segs) in work {
            for seg in segs {
                if let Err(e) = self.upload_segment(&name, seg).await {
                    tracing::warn!(recording = %name, part = seg.number, error = %e, "recording part not uploaded yet");
                    self.lock().last_error = Some(e.to_string());
                    first_error.get_or_insert(e);
                    break;
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn upload_segment(&self, name: &str, seg: Closed) -> io::Result<()> {
        let path = self.segment_path(name, seg.number);
        let bytes = tokio::fs::read(&path).await?;
        let key = self.parts_dir(name)?.join(PathPart::from(format!("{:08}", seg.number).as_str()));
        self.bucket.put(&key, PutPayload::from(bytes)).await.map_err(|e| os_err("upload", e))?;
        let _ = tokio::fs::remove_file(&path).await;
        let mut st = self.lock();
        st.last_ok = Some(Instant::now());
        if let Some(rec) = st.recs.get_mut(name)
            && rec.closed.front().is_some_and(|c| c.number == seg.number)
        {
            rec.closed.pop_front();
        }
        st.backlog = st.backlog.saturating_sub(seg.len);
        Ok(())
    }

    /// Why writes must fail now, if they must: the oldest byte not uploaded is older than
    /// `upload_timeout`, or the bucket has not answered for that long while writers are open.
    fn check_health(&self) {
        let mut st = self.lock();
        let writing = st.recs.values().any(|r| r.writing);
        let oldest = st.recs.values().filter_map(Rec::oldest).min();
        let stale_upload = oldest.is_some_and(|t| t.elapsed() > self.upload_timeout);
        let silent = writing && st.last_ok.is_some_and(|t| t.elapsed() > self.upload_timeout);
        st.failing = (stale_upload || silent).then(|| {
            format!(
                "recordings are not reaching the bucket (nothing uploaded for over {:?}: {})",
                self.upload_timeout,
                st.last_error.as_deref().unwrap_or("no answer")
            )
        });
        if !writing && oldest.is_none() {
            st.last_ok = None;
        }
    }

    /// Asks the bucket whether it answers (while writers are open and nothing was uploaded
    /// lately), so an idle session learns that the bucket went away before its next byte.
    async fn probe(&self) {
        let due = {
            let mut st = self.lock();
            let writing = st.recs.values().any(|r| r.writing);
            if writing && st.last_ok.is_none() {
                st.last_ok = Some(Instant::now());
            }
            writing && st.last_ok.is_some_and(|t| t.elapsed() >= self.upload_every)
        };
        if !due {
            return;
        }
        match self.bucket.list_with_delimiter(Some(&self.prefix)).await {
            Ok(_) => self.lock().last_ok = Some(Instant::now()),
            Err(e) => self.lock().last_error = Some(other("probe", e).to_string()),
        }
    }
}

/// The background uploader: every `upload_every` (or when woken) uploads the closed
/// segments, then asks the bucket whether it answers if nothing went up lately.
async fn uploader(inner: std::sync::Weak<Inner>) {
    let mut last_pass = Instant::now();
    loop {
        let Some(i) = inner.upgrade() else { return };
        let woken = tokio::time::timeout(TICK, i.wake.notified()).await.is_ok();
        if woken || last_pass.elapsed() >= i.upload_every {
            last_pass = Instant::now();
            let _ = i.upload_pass(None, false).await;
            i.probe().await;
        }
    }
}

/// Every [`TICK`], the store's health, on its own task: an upload or a probe that hangs for
/// its whole timeout does not delay the verdict.
async fn watch_health(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(i) = inner.upgrade() else { return };
        i.check_health();
    }
}

fn create_private_dir(dir: &FsPath) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A recording being written: bytes go to the spool, the uploader sends them on.
struct S3Writer {
    name: String,
    inner: Arc<Inner>,
    /// Waits for a drain at `sync` (the store's runtime).
    handle: tokio::runtime::Handle,
}

impl fmt::Debug for S3Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Writer").field("name", &self.name).finish_non_exhaustive()
    }
}

impl S3Writer {
    fn refuse_if_failing(&self, st: &State) -> io::Result<()> {
        if let Some(why) = &st.failing {
            return Err(io::Error::other(format!("object storage: {why}")));
        }
        let oldest = st.recs.get(&self.name).and_then(Rec::oldest);
        if oldest.is_some_and(|t| t.elapsed() > self.inner.upload_timeout) {
            return Err(io::Error::other(format!(
                "object storage: part of recording {} not uploaded after {:?}",
                self.name, self.inner.upload_timeout
            )));
        }
        Ok(())
    }
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.inner.lock();
        self.refuse_if_failing(&st)?;
        let len = buf.len() as u64;
        if st.backlog + len > self.inner.spool_max {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "object storage: {} bytes wait for upload, the spool limit is {}",
                    st.backlog, self.inner.spool_max
                ),
            ));
        }
        let path_of = |n| self.inner.segment_path(&self.name, n);
        let rec = st.recs.entry(self.name.clone()).or_default();
        if rec.current.is_none() {
            let number = rec.next.max(1);
            let file = File::options().create(true).append(true).open(path_of(number))?;
            rec.next = number + 1;
            rec.current = Some(Segment { file, number, len: 0, since: Instant::now() });
        }
        let full = match rec.current.as_mut() {
            Some(seg) => {
                seg.file.write_all(buf)?;
                seg.len += len;
                seg.len >= PART_SIZE
            }
            None => false,
        };
        if full {
            rec.close_current();
        }
        st.backlog += len;
        drop(st);
        if full {
            self.inner.wake.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RecordingWriter for S3Writer {
    /// Everything written so far reaches the bucket (or the error says why not; the bytes
    /// stay spooled for the next try).
    fn sync(&mut self) -> io::Result<()> {
        {
            let mut st = self.inner.lock();
            self.refuse_if_failing(&st)?;
            if let Some(rec) = st.recs.get_mut(&self.name) {
                if let Some(seg) = &rec.current {
                    seg.file.sync_all()?;
                }
                rec.close_current();
            }
        }
        let (inner, name) = (self.inner.clone(), self.name.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(inner.upload_pass(Some(&name), true).await);
        });
        rx.recv_timeout(self.inner.upload_timeout).map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, "object storage: upload timed out")
        })?
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        if let Some(rec) = st.recs.get_mut(&self.name) {
            rec.writing = false;
            rec.close_current();
        }
        drop(st);
        self.inner.wake.notify_one();
    }
}

impl RecordingStore for S3Store {
    fn create(&self, name: &str) -> io::Result<Box<dyn RecordingWriter>> {
        let key = self.key(name)?;
        if self.spooled(name) || !self.parts_of(name)?.is_empty() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists")));
        }
        match self.head(key) {
            Ok(_) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists")));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // The marker: the recording exists in the bucket before the session uses its grant.
        let marker = self.inner.parts_dir(name)?.join("00000000");
        self.put(marker, Vec::new())?;
        let handle = match &self.runtime {
            Some(rt) => rt.handle().clone(),
            None => return Err(io::Error::other("object storage: the store is closed")),
        };
        let mut st = self.inner.lock();
        st.last_ok = Some(Instant::now());
        let rec = st.recs.entry(name.to_owned()).or_default();
        rec.writing = true;
        rec.next = rec.next.max(1);
        Ok(Box::new(S3Writer { name: name.to_owned(), inner: self.inner.clone(), handle }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let key = self.key(name)?;
        self.drop_parts(name)?;
        match self.delete(key) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn exists(&self, name: &str) -> bool {
        let Ok(key) = self.key(name) else { return false };
        self.spooled(name)
            || self.head(key).is_ok()
            || self.parts_of(name).is_ok_and(|p| !p.is_empty())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.key(name)?;
        if self.spooled(name) {
            // Ours: what is spooled goes up first, so the bucket has every byte.
            self.drain(name)?;
        }
        self.read_bucket(name)
    }

    fn read_from(&self, name: &str, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let key = self.key(name)?;
        let inner = self.inner.clone();
        let dir = self.inner.parts_dir(name)?;
        let bytes = self.run(async move {
            match inner.bucket.head(&key).await {
                Ok(meta) => {
                    if offset >= meta.size {
                        return Ok(Vec::new());
                    }
                    let b = inner
                        .bucket
                        .get_range(&key, offset..meta.size)
                        .await
                        .map_err(|e| os_err("read", e))?;
                    return Ok(b.to_vec());
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os_err("read", e)),
            }
            let parts = inner.parts(&dir).await?;
            if parts.is_empty() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such recording"));
            }
            let (mut at, mut out) = (0u64, Vec::new());
            for p in parts {
                let end = at + p.size;
                if end > offset && p.size > 0 {
                    let from = offset.saturating_sub(at);
                    let b = inner
                        .bucket
                        .get_range(&p.location, from..p.size)
                        .await
                        .map_err(|e| os_err("read", e))?;
                    out.extend_from_slice(&b);
                }
                at = end;
            }
            Ok(out)
        })?;
        Ok(Box::new(io::Cursor::new(bytes)))
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let key = self.key(name)?;
        self.put(key, bytes.to_vec())?;
        self.drop_parts(name)
    }

    fn seal(&self, name: &str, side: &Sidecar) -> io::Result<()> {
        let key = self.key(name)?;
        if self.spooled(name) {
            self.drain(name)?;
        }
        let sealed_bytes = serde_json::to_vec_pretty(side).map_err(io::Error::other)?;
        let final_exists = match self.head(key.clone()) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !final_exists {
            let parts = self.parts_of(name)?;
            if parts.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no recording {name}"),
                ));
            }
            let inner = self.inner.clone();
            let want = side.sha256.clone();
            let target = key.clone();
            self.run(async move { inner.assemble(&target, parts, &want).await })?;
        }
        self.put(self.inner.key(&format!("{name}.sig"))?, sealed_bytes)?;
        self.drop_parts(name)
    }

    fn sidecar(&self, name: &str) -> io::Result<Vec<u8>> {
        self.key(name)?;
        self.get(self.inner.key(&format!("{name}.sig"))?)
    }

    fn is_sealed(&self, name: &str) -> bool {
        self.key(name).is_ok()
            && self.inner.key(&format!("{name}.sig")).is_ok_and(|k| self.head(k).is_ok())
    }

    fn put_pending(&self, name: &str, end: &[u8]) -> io::Result<()> {
        self.key(name)?;
        self.put(self.inner.key(&format!("{name}.pending"))?, end.to_vec())
    }

    fn read_pending(&self, name: &str) -> io::Result<Vec<u8>> {
        self.key(name)?;
        self.get(self.inner.key(&format!("{name}.pending"))?)
    }

    fn take_pending(&self, name: &str) -> io::Result<()> {
        self.key(name)?;
        let key = self.inner.key(&format!("{name}.pending"))?;
        // S3 deletes succeed for missing keys: ask first, as the folder does.
        self.head(key.clone())?;
        self.delete(key)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names: BTreeSet<String> =
            self.objects()?.iter().filter_map(|(loc, _)| self.name_of(loc)).collect();
        names.extend(self.inner.lock().recs.keys().cloned());
        Ok(names.into_iter().collect())
    }

    /// From one listing of the bucket (not a request per recording): every recording
    /// without its `NAME.sig` or with a `NAME.pending`, after adopting what a crash left in
    /// the spool.
    fn unfinished(&self) -> Vec<String> {
        self.adopt_spool();
        let Ok(objects) = self.objects() else { return Vec::new() };
        let keys: BTreeSet<String> = objects
            .iter()
            .filter_map(|(loc, _)| {
                let rest: Vec<PathPart<'_>> = loc.prefix_match(&self.inner.prefix)?.collect();
                (rest.len() == 1).then(|| rest[0].as_ref().to_owned())
            })
            .collect();
        let mut names: BTreeSet<String> =
            objects.iter().filter_map(|(loc, _)| self.name_of(loc)).collect();
        names.extend(self.inner.lock().recs.keys().cloned());
        names
            .into_iter()
            .filter(|n| is_plain(n))
            .filter(|n| {
                !keys.contains(&format!("{n}.sig")) || keys.contains(&format!("{n}.pending"))
            })
            .collect()
    }

    fn newest_of(&self, code: &str) -> Option<String> {
        let prefix = format!("{code}-");
        self.objects()
            .ok()?
            .into_iter()
            .filter_map(|(loc, at)| Some((at, self.name_of(&loc)?)))
            .filter(|(_, n)| n.starts_with(&prefix))
            .max()
            .map(|(_, n)| n)
    }

    fn locate(&self, name: &str) -> String {
        let key = self.inner.key(name).map(|k| k.to_string()).unwrap_or_default();
        format!("{}/{key}", self.inner.bucket)
    }

    fn health(&self) -> io::Result<()> {
        match &self.inner.lock().failing {
            Some(why) => Err(io::Error::other(format!("object storage: {why}"))),
            None => Ok(()),
        }
    }
}

impl S3Store {
    /// Every object under the prefix, with when it was last changed.
    fn objects(&self) -> io::Result<Vec<(Path, std::time::SystemTime)>> {
        let inner = self.inner.clone();
        self.run(async move {
            let list: Vec<_> = inner.bucket.list(Some(&inner.prefix)).collect::<Vec<_>>().await;
            list.into_iter()
                .map(|r| r.map(|m| (m.location, m.last_modified.into())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| os_err("list", e))
        })
    }

    /// The recording an object belongs to: `NAME` itself, or `NAME.parts/…`; `None` for a
    /// sidecar, a pending end or anything else.
    fn name_of(&self, loc: &Path) -> Option<String> {
        let rest: Vec<PathPart<'_>> = loc.prefix_match(&self.inner.prefix)?.collect();
        let first = rest.first()?.as_ref();
        let name = match rest.len() {
            1 => first,
            2 => first.strip_suffix(".parts")?,
            _ => return None,
        };
        (name.ends_with(".cast") && is_plain(name)).then(|| name.to_owned())
    }
}

impl Inner {
    /// Streams `parts` in order into `target`, hashing them; refuses (and writes nothing
    /// final) when they do not hash to `want`, the digest the gateway signed.
    async fn assemble(
        &self,
        target: &Path,
        parts: Vec<object_store::ObjectMeta>,
        want: &str,
    ) -> io::Result<()> {
        let total: u64 = parts.iter().map(|p| p.size).sum();
        let mut hash = Sha256::new();
        if total <= SINGLE_PUT_MAX {
            let mut all = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            for p in &parts {
                let b = self.get_all(&p.location).await?;
                hash.update(&b);
                all.extend_from_slice(&b);
            }
            check_digest(hash, want)?;
            self.bucket.put(target, PutPayload::from(all)).await.map_err(|e| os_err("seal", e))?;
            return Ok(());
        }
        let upload = self.bucket.put_multipart(target).await.map_err(|e| os_err("seal", e))?;
        let mut w = WriteMultipart::new(upload);
        for p in &parts {
            let b = match self.get_all(&p.location).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(e);
                }
            };
            hash.update(&b);
            w.put(b);
        }
        if let Err(e) = check_digest(hash, want) {
            let _ = w.abort().await;
            return Err(e);
        }
        w.finish().await.map_err(|e| os_err("seal", e))?;
        Ok(())
    }

    async fn get_all(&self, key: &Path) -> io::Result<Bytes> {
        let r = self.bucket.get(key).await.map_err(|e| os_err("read", e))?;
        r.bytes().await.map_err(|e| os_err("read", e))
    }
}

fn check_digest(hash: Sha256, want: &str) -> io::Result<()> {
    let got = hex_lower(&hash.finalize());
    if got.eq_ignore_ascii_case(want) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "object storage: the uploaded parts hash to {got}, not to the signed {want}; nothing sealed, the parts are kept"
            ),
        ))
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The recording store `config` names: the recordings folder (`recordings.store = "local"`,
/// `gateway.recordings_dir`) or a bucket (`"s3"`). The gateway, the bot and the CLI all open
/// their store here.
///
/// # Errors
/// A credential file that cannot be read (or that others can read), a spool folder that
/// cannot be made, options that make no S3 client: the message names the key and the fix,
/// never a credential.
pub fn open_store(config: &shared::config::Config) -> Result<Arc<dyn RecordingStore>, OpenError> {
    use shared::config::RecordingStoreKind;
    match &config.recordings.store {
        RecordingStoreKind::Local => {
            Ok(Arc::new(format::store::LocalFolder::new(&config.gateway.recordings_dir)))
        }
        RecordingStoreKind::S3(s) => {
            let load = |src: &shared::config::SecretSource| {
                src.load().map_err(|e| OpenError(e.to_string()))
            };
            let opts = S3Options {
                bucket: s.bucket.clone(),
                prefix: s.prefix.clone(),
                endpoint: s.endpoint.clone(),
                region: s.region.clone(),
                allow_http: s.allow_http,
                access_key_id: load(&s.access_key_id)?,
                secret_access_key: load(&s.secret_access_key)?,
                session_token: load(&s.session_token)?,
                spool_dir: s.spool_dir.clone(),
                spool_max: s.spool_max,
                upload_every: s.upload_every,
                upload_timeout: s.upload_timeout,
            };
            Ok(Arc::new(S3Store::open(&opts)?))
        }
    }
}
