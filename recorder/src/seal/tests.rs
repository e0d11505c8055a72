//! Sealing and crash recovery over a temporary recordings folder: what a crash leaves (no
//! sidecar, a pending end, a stored end without its sidecar) is finished at the next start,
//! and a normal end leaves nothing pending. Each case runs twice, over a fresh SQLite store and
//! over the in-memory store ([`shared::testing::memory::MemoryStore`]); what needs a database
//! that goes away runs over the in-memory one only.

use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use format::integrity::{Expected, RecordingSigner, SessionBinding, Sidecar};
use format::store::{LocalFolder, RecordingStore as _};
use shared::core::{Action, Request, RequestRef, Status, Timestamp};
use shared::testing::memory::MemoryStore;
use shared::testing::{FixedClock, T0};
use test_util::world::World;

use super::*;

/// When the tests' gateway "restarts" (the fixed clock).
const NOW: i64 = T0 + 600;

struct Fixture {
    _dir: tempfile::TempDir,
    folder: LocalFolder,
    sealer: Sealer,
    key: ed25519_dalek::VerifyingKey,
}

/// Runs each named case (an `async fn(Fixture)`) over both stores, as `NAME::sqlite` and
/// `NAME::memory`.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                super::$case(super::Fixture::sqlite().await).await;
            }

            #[tokio::test]
            async fn memory() {
                super::$case(super::Fixture::memory().0).await;
            }
        }
    )*};
}

on_both_stores!(
    a_sealed_session_has_its_sidecar_and_its_stored_end_and_nothing_pending,
    a_recording_without_a_sidecar_is_cut_closed_signed_and_ended_as_gateway_crashed,
    a_pending_end_is_stored_and_removed,
    a_recording_whose_end_is_stored_but_whose_sidecar_is_missing_gets_its_sidecar,
);

impl Fixture {
    /// Over a fresh SQLite database in a temporary folder.
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("db/breakglass.db").display());
        let store = shared::storage::connect(&url).await.expect("the SQLite store opens");
        Self::over(dir, store)
    }

    /// Over an empty in-memory store, returned too (to take it down).
    fn memory() -> (Self, Arc<MemoryStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(MemoryStore::new());
        (Self::over(dir, store.clone()), store)
    }

    fn over(dir: tempfile::TempDir, store: Arc<dyn GatewayStore>) -> Self {
        let recordings = dir.path().join("recordings");
        std::fs::create_dir_all(&recordings).expect("recordings folder");
        let folder = LocalFolder::new(&recordings);
        let key = SigningKey::from_bytes(&[9; 32]);
        let w = World::new();
        let sealer = Sealer {
            recordings: Arc::new(folder.clone()),
            store,
            signer: Arc::new(RecordingSigner::new(key.clone())),
            clock: Arc::new(FixedClock::at(NOW)),
            config: Arc::new(test_util::world::config()),
            pins: Arc::new(w.pins),
        };
        Self { _dir: dir, folder, sealer, key: key.verifying_key() }
    }

    /// An approved request whose session started at `T0 + 120` (status `active`), stored.
    async fn active(&self) -> Request {
        let w = World::new();
        let (req, draft) = shared::core::request::open(
            &w.policy,
            w.ask("alice", "db-1"),
            w.fresh(),
            Timestamp::from_unix(T0),
        )
        .expect("allowed");
        let store = &self.sealer.store;
        store.create_request(&req, &draft, Timestamp::from_unix(T0)).await.expect("created");
        let mut req = req;
        for (who, at) in [("bob", T0 + 60), ("carol", T0 + 60)] {
            let a = w.bot_approval(&req, who, at);
            req = self.step(&w, &req, Action::Approve(a), at).await;
        }
        let req = self
            .step(&w, &req, Action::SessionStarted(shared::testing::session_started()), T0 + 120)
            .await;
        assert_eq!(req.status, Status::Active);
        req
    }

    async fn step(&self, w: &World, req: &Request, action: Action, at: i64) -> Request {
        let t =
            shared::core::request::apply(req, action, &w.policy, &w.pins, Timestamp::from_unix(at))
                .expect("the core allows it");
        self.sealer.store.apply(&t, Timestamp::from_unix(at)).await.expect("applied");
        t.next
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.folder.path_of(name).expect("plain")
    }

    async fn status(&self, req: &Request) -> Status {
        self.sealer.store.get_request(&RequestRef::Id(req.id)).await.expect("request").status
    }

    /// The recording verifies against the sidecar on disk, under its own file name.
    fn verifies(&self, name: &str) -> format::integrity::Verified {
        let side: Sidecar =
            serde_json::from_slice(&self.folder.sidecar(name).expect("sidecar")).expect("json");
        let bytes = self.folder.read(name).expect("recording");
        format::integrity::verify_bytes(
            &bytes,
            &side,
            &[self.key],
            &Expected::file_name(&self.path(name)),
        )
        .expect("the recording verifies")
    }
}

/// A recording of `req` as the gateway writes it: the header, two output lines, and (when
/// `cut`) half a line a crash left.
fn cast(req: &Request, cut: bool) -> Vec<u8> {
    let header = format::cast::Header {
        width: 80,
        height: 24,
        timestamp: u64::try_from(T0 + 120).ok(),
        term: None,
        shell: None,
        command: None,
        title: None,
        breakglass: Some(json!({ "grant_id": req.id, "code": req.code })),
    };
    let mut w = format::cast::CastWriter::new(Vec::new(), &header).expect("header");
    w.output(Duration::from_millis(500), b"$ ls\r\n").expect("output");
    w.output(Duration::from_millis(900), b"a b c\r\n").expect("output");
    let (mut bytes, _) = w.finish(Duration::from_secs(1)).expect("finished");
    if cut {
        bytes.extend_from_slice(b"[1.2,\"o\",\"half a li");
    }
    bytes
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect()
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write");
}

async fn a_sealed_session_has_its_sidecar_and_its_stored_end_and_nothing_pending(f: Fixture) {
    let req = f.active().await;
    let name = format::store::recording_name(req.code.as_str(), Timestamp::from_unix(T0 + 120), 7);
    put(f.folder.dir(), &name, &cast(&req, false));
    let ended = Ended {
        req: req.clone(),
        file: name.clone(),
        reason: EndReason::Closed,
        started_at: Timestamp::from_unix(T0 + 120),
        ended_at: Timestamp::from_unix(T0 + 300),
        // Not finished by the recording: the file is signed as it stands.
        finished: None,
        failure: Some("a test".to_owned()),
    };
    seal(&f.sealer, ended).await;

    let verified = f.verifies(&name);
    assert_eq!(verified.session.file, name);
    let rec = f.sealer.store.recording(req.id).await.expect("read").expect("the end is stored");
    assert_eq!((rec.file.as_str(), rec.end_reason.as_str()), (name.as_str(), "closed"));
    assert_eq!(f.status(&req).await, Status::Closed);
    assert!(f.folder.read_pending(&name).is_err(), "nothing pending once the database has it");
    assert!(f.sealer.recordings.unfinished().is_empty());
}

async fn a_recording_without_a_sidecar_is_cut_closed_signed_and_ended_as_gateway_crashed(
    f: Fixture,
) {
    let req = f.active().await;
    let name = format!("{}-{}.cast", req.code, T0 + 120); // the older naming form
    let left = cast(&req, true);
    put(f.folder.dir(), &name, &left);
    assert_eq!(unfinished(f.sealer.recordings.as_ref()), std::slice::from_ref(&name));

    recover_crashed(f.sealer.clone(), unfinished(f.sealer.recordings.as_ref())).await;

    let bytes = f.folder.read(&name).expect("recording");
    let mut expected = lines(&cast(&req, false));
    expected.push(r#"[0.9,"m","session ended: gateway_crashed (recovered)"]"#.to_owned());
    assert_eq!(lines(&bytes), expected, "cut to its last whole line, then the end marker");
    assert!(format::cast::parse_bytes(&bytes).is_ok());
    let verified = f.verifies(&name);
    let session = verified.session;
    assert_eq!(
        (session.request_id, session.started_at, session.ended_at),
        (req.id, Timestamp::from_unix(T0 + 120), Timestamp::from_unix(NOW))
    );
    let rec = f.sealer.store.recording(req.id).await.expect("read").expect("the end is stored");
    assert_eq!(rec.end_reason, shared::core::EndReason::GatewayCrashed);
    assert_eq!(rec.sha256, format::cast::sha256_file_bytes(&bytes));
    assert_eq!(f.status(&req).await, Status::Closed);
    assert!(f.folder.read_pending(&name).is_err());
    assert!(f.sealer.recordings.unfinished().is_empty());
}

async fn a_pending_end_is_stored_and_removed(f: Fixture) {
    let req = f.active().await;
    let name = format::store::recording_name(req.code.as_str(), Timestamp::from_unix(T0 + 120), 1);
    let bytes = cast(&req, false);
    put(f.folder.dir(), &name, &bytes);
    // What a gateway that died after sealing left: the sidecar and the pending end.
    let (started_at, ended_at) = (Timestamp::from_unix(T0 + 120), Timestamp::from_unix(T0 + 300));
    let sha256 = format::cast::sha256_file_bytes(&bytes);
    let side = f.sealer.signer.sign(
        &SessionBinding {
            request_id: req.id,
            code: req.code.clone(),
            nonce: req.nonce,
            started_at,
            ended_at,
            file: name.clone(),
        },
        &sha256,
    );
    f.folder.seal(&name, &side).expect("sealed");
    let end = shared::core::AuditData::SessionEnded(Box::new(shared::core::event::SessionEnded {
        end_reason: shared::core::EndReason::Expired,
        recording: name.clone(),
        recording_sha256: hex::encode(sha256),
        recording_signature: side.signature,
        recording_key_id: side.key_id,
        recording_signature_version: side.version,
        started_at,
        ended_at,
        commands: 2,
        ended: shared::core::event::Ended::Seen(shared::core::event::SeenEnd {
            revoked_by: None,
            recording_error: None,
            bytes_in: 3,
            bytes_out: 40,
            exit_status: Some(0),
            duration_secs: 180,
        }),
    }));
    f.folder.put_pending(&name, end.to_json().to_string().as_bytes()).expect("pending");
    assert_eq!(unfinished(f.sealer.recordings.as_ref()), std::slice::from_ref(&name));

    recover_crashed(f.sealer.clone(), unfinished(f.sealer.recordings.as_ref())).await;

    let rec = f.sealer.store.recording(req.id).await.expect("read").expect("the end is stored");
    assert_eq!(
        (rec.end_reason.as_str(), rec.commands, rec.bytes_in, rec.bytes_out, rec.exit_status),
        ("expired", 2, 3, 40, Some(0))
    );
    assert_eq!((rec.sha256, rec.started_at, rec.ended_at), (sha256, started_at, ended_at));
    assert_eq!(f.status(&req).await, Status::Closed);
    assert!(f.folder.read_pending(&name).is_err(), "the pending end is removed");
    assert_eq!(f.folder.read(&name).expect("recording"), bytes, "the recording is untouched");
    assert!(f.sealer.recordings.unfinished().is_empty());
}

async fn a_recording_whose_end_is_stored_but_whose_sidecar_is_missing_gets_its_sidecar(f: Fixture) {
    let req = f.active().await;
    let name = format::store::recording_name(req.code.as_str(), Timestamp::from_unix(T0 + 120), 2);
    put(f.folder.dir(), &name, &cast(&req, false));
    let ended = Ended {
        req: req.clone(),
        file: name.clone(),
        reason: EndReason::Closed,
        started_at: Timestamp::from_unix(T0 + 120),
        ended_at: Timestamp::from_unix(T0 + 300),
        finished: None,
        failure: None,
    };
    seal(&f.sealer, ended).await;
    let sidecar = f.folder.sidecar(&name).expect("sealed");
    let bytes = f.folder.read(&name).expect("recording");
    let stored = f.sealer.store.recording(req.id).await.expect("read").expect("stored");
    std::fs::remove_file(format::integrity::sidecar_path(&f.path(&name))).expect("sidecar lost");
    assert_eq!(unfinished(f.sealer.recordings.as_ref()), std::slice::from_ref(&name));

    recover_crashed(f.sealer.clone(), unfinished(f.sealer.recordings.as_ref())).await;

    let side: Sidecar =
        serde_json::from_slice(&f.folder.sidecar(&name).expect("sidecar back")).expect("json");
    assert_eq!(side, serde_json::from_slice::<Sidecar>(&sidecar).expect("json"));
    assert_eq!(f.folder.read(&name).expect("recording"), bytes, "no crash marker: it ended");
    f.verifies(&name);
    let after = f.sealer.store.recording(req.id).await.expect("read").expect("stored");
    assert_eq!((after.end_reason, after.sha256), (stored.end_reason, stored.sha256));
    assert!(f.sealer.recordings.unfinished().is_empty());
}

#[tokio::test]
async fn unfinished_lists_the_unsealed_and_the_pending_only() {
    let (f, _) = Fixture::memory();
    let dir = f.folder.dir();
    let side = f.sealer.signer.sign_v1("x", &[0; 32], Timestamp::from_unix(T0));
    for n in ["bg-000001-1.cast", "bg-000002-2-0000000a.cast", "bg-000003-3.cast"] {
        put(dir, n, b"{}\n");
    }
    put(dir, "journal", b"");
    // 1: done; 2: never sealed; 3: sealed with its end pending.
    f.folder.seal("bg-000001-1.cast", &side).expect("sealed");
    f.folder.seal("bg-000003-3.cast", &side).expect("sealed");
    f.folder.put_pending("bg-000003-3.cast", b"{}").expect("pending");
    assert_eq!(
        unfinished(f.sealer.recordings.as_ref()),
        ["bg-000002-2-0000000a.cast", "bg-000003-3.cast"]
    );
}

#[tokio::test(start_paused = true)]
async fn while_the_database_is_away_the_end_stays_pending_and_is_stored_once_it_is_back() {
    let (f, db) = Fixture::memory();
    let req = f.active().await;
    let name = format::store::recording_name(req.code.as_str(), Timestamp::from_unix(T0 + 120), 3);
    put(f.folder.dir(), &name, &cast(&req, false));
    let ended = Ended {
        req: req.clone(),
        file: name.clone(),
        reason: EndReason::Closed,
        started_at: Timestamp::from_unix(T0 + 120),
        ended_at: Timestamp::from_unix(T0 + 300),
        finished: None,
        failure: None,
    };
    db.set_down(true);
    let sealer = f.sealer.clone();
    let sealing = tokio::spawn(async move { seal(&sealer, ended).await });
    // Several retries (200 ms, doubling) while the database is away.
    tokio::time::sleep(Duration::from_secs(5)).await;

    assert!(!sealing.is_finished(), "sealing waits for the database");
    f.verifies(&name);
    assert!(f.folder.read_pending(&name).is_ok(), "the end is pending next to the recording");
    assert_eq!(unfinished(f.sealer.recordings.as_ref()), std::slice::from_ref(&name));

    db.set_down(false);
    sealing.await.expect("sealing finished");

    let rec = f.sealer.store.recording(req.id).await.expect("read").expect("the end is stored");
    assert_eq!((rec.file.as_str(), rec.end_reason.as_str()), (name.as_str(), "closed"));
    assert_eq!(f.status(&req).await, Status::Closed);
    assert!(f.folder.read_pending(&name).is_err(), "nothing pending once the database has it");
    assert!(f.sealer.recordings.unfinished().is_empty());
}
