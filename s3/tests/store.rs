//! The recording store's contract, run against both adapters (the local folder and a real
//! S3-compatible server, moto), and what only object storage has: parts readable while a
//! recording is written, the spool's bound, failing closed when the bucket goes away, the
//! signed bytes kept at sealing, and a spool left by a crash uploaded at the next start.

#[path = "../../tests/src/s3.rs"]
#[allow(dead_code, unreachable_pub)]
mod moto;

use std::io::{self, Read as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use format::integrity::{RecordingSigner, Sidecar};
use format::store::{LocalFolder, RecordingStore};
use moto::{MOTO_KEY, Moto};
use s3::{S3Options, S3Store};
use shared::config::Secret;
use shared::core::Timestamp;

fn options(m: &Moto, spool: &std::path::Path) -> S3Options {
    S3Options {
        bucket: m.bucket.clone(),
        prefix: "rec".into(),
        endpoint: Some(m.endpoint()),
        region: "us-east-1".into(),
        allow_http: true,
        access_key_id: Some(Secret::new(MOTO_KEY.into())),
        secret_access_key: Some(Secret::new(MOTO_KEY.into())),
        session_token: None,
        spool_dir: spool.to_path_buf(),
        spool_max: 64 * 1024 * 1024,
        upload_every: Duration::from_millis(300),
        upload_timeout: Duration::from_secs(3),
    }
}

/// A store of each kind, with what keeps it alive.
struct Each {
    _dir: tempfile::TempDir,
    _moto: Option<Moto>,
    store: Arc<dyn RecordingStore>,
    kind: &'static str,
}

fn both() -> Vec<Each> {
    let folder_dir = tempfile::tempdir().expect("tempdir");
    let folder = LocalFolder::new(folder_dir.path());
    let spool = tempfile::tempdir().expect("tempdir");
    let m = Moto::start("recordings");
    let s3 = S3Store::open(&options(&m, spool.path())).expect("s3 store");
    vec![
        Each { store: Arc::new(folder), _dir: folder_dir, _moto: None, kind: "folder" },
        Each { store: Arc::new(s3), _dir: spool, _moto: Some(m), kind: "s3" },
    ]
}

/// A real signature over `bytes` (sealing object storage checks the digest).
fn side(file: &str, bytes: &[u8]) -> Sidecar {
    let signer = RecordingSigner::new(shared::testing::key(7));
    signer.sign_v1(
        file,
        &format::cast::sha256_file_bytes(bytes),
        Timestamp::from_unix(1_795_403_700),
    )
}

/// Writes `bytes` as recording `name` through the store and closes it.
fn put(store: &dyn RecordingStore, name: &str, bytes: &[u8]) {
    let mut w = store.create(name).expect("created");
    w.write_all(bytes).expect("written");
    w.sync().expect("synced");
}

#[test]
fn names_that_could_leave_the_store_are_refused_by_every_operation_of_both_adapters() {
    for Each { store, kind, .. } in both() {
        for bad in
            ["", "a/b.cast", "../x.cast", "..", ".", ".hidden.cast", "a\\b.cast", "/etc/passwd"]
        {
            let refused = |r: io::Result<()>| {
                assert_eq!(
                    r.map_err(|e| e.kind()),
                    Err(io::ErrorKind::InvalidInput),
                    "{kind}: {bad:?}"
                );
            };
            refused(store.create(bad).map(drop));
            refused(store.read(bad).map(drop));
            refused(store.read_from(bad, 0).map(drop));
            refused(store.replace(bad, b"x"));
            refused(store.remove(bad));
            refused(store.seal(bad, &side(bad, b"x")));
            refused(store.sidecar(bad).map(drop));
            refused(store.put_pending(bad, b"{}"));
            refused(store.read_pending(bad).map(drop));
            refused(store.take_pending(bad));
            assert!(!store.exists(bad) && !store.is_sealed(bad), "{kind}: {bad:?}");
        }
        assert!(store.list().expect("list").is_empty(), "{kind}: nothing was made");
    }
}

#[test]
fn a_recording_is_created_once_written_through_and_read_back_in_both_adapters() {
    for Each { store, kind, .. } in both() {
        let name = "bg-000001-1795403640-00000001.cast";
        let text = b"{\"version\":2}\n[0.1,\"o\",\"hi\"]\n";
        put(store.as_ref(), name, text);
        assert_eq!(
            store.create(name).map(drop).map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists),
            "{kind}: never overwritten"
        );
        assert!(store.exists(name) && !store.exists("bg-000002-1.cast"), "{kind}");
        assert_eq!(store.read(name).expect("read"), text, "{kind}");
        let mut tail = Vec::new();
        store.read_from(name, 14).expect("tail").read_to_end(&mut tail).expect("read");
        assert_eq!(tail, b"[0.1,\"o\",\"hi\"]\n", "{kind}");
        store.replace(name, b"cut\n").expect("replaced");
        assert_eq!(store.read(name).expect("read"), b"cut\n", "{kind}");
        store.remove(name).expect("removed");
        assert!(!store.exists(name), "{kind}");
        assert_eq!(store.read(name).map_err(|e| e.kind()), Err(io::ErrorKind::NotFound), "{kind}");
    }
}

#[test]
fn sealing_writes_the_same_sidecar_in_both_adapters() {
    for Each { store, kind, .. } in both() {
        let name = "bg-000001-1795403640.cast";
        put(store.as_ref(), name, b"x\n");
        assert!(!store.is_sealed(name), "{kind}");
        assert_eq!(store.sidecar(name).map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
        let s = side(name, b"x\n");
        store.seal(name, &s).expect("sealed");
        assert!(store.is_sealed(name), "{kind}");
        assert_eq!(
            store.sidecar(name).expect("read"),
            serde_json::to_vec_pretty(&s).expect("json"),
            "{kind}: pretty JSON as a folder keeps it"
        );
        assert_eq!(store.read(name).expect("read"), b"x\n", "{kind}: the signed bytes");
    }
}

#[test]
fn the_pending_end_is_put_read_and_taken_in_both_adapters() {
    for Each { store, kind, .. } in both() {
        let name = "bg-000001-1795403640.cast";
        assert_eq!(store.read_pending(name).map_err(|e| e.kind()), Err(io::ErrorKind::NotFound));
        store.put_pending(name, b"{\"end_reason\":\"closed\"}").expect("put");
        assert_eq!(store.read_pending(name).expect("read"), b"{\"end_reason\":\"closed\"}");
        store.take_pending(name).expect("taken");
        assert!(store.read_pending(name).is_err(), "{kind}");
        assert!(store.take_pending(name).is_err(), "{kind}: taking it twice fails");
    }
}

#[test]
fn listing_names_recordings_only_and_unfinished_names_the_ones_a_crash_left_in_both_adapters() {
    for Each { store, kind, .. } in both() {
        for n in ["b-2.cast", "a-1.cast", "c-3-0000000a.cast"] {
            put(store.as_ref(), n, b"x\n");
        }
        store.seal("a-1.cast", &side("a-1.cast", b"x\n")).expect("sealed");
        store.seal("c-3-0000000a.cast", &side("c-3-0000000a.cast", b"x\n")).expect("sealed");
        store.put_pending("c-3-0000000a.cast", b"{}").expect("pending");
        assert_eq!(
            store.list().expect("list"),
            ["a-1.cast", "b-2.cast", "c-3-0000000a.cast"],
            "{kind}: no sidecar or pending end is listed"
        );
        // b: never sealed; c: sealed with its end still pending; a: done.
        assert_eq!(store.unfinished(), ["b-2.cast", "c-3-0000000a.cast"], "{kind}");
    }
}

#[test]
fn the_newest_recording_of_a_grant_is_found_in_either_naming_form_in_both_adapters() {
    for Each { store, kind, .. } in both() {
        put(store.as_ref(), "bg-7f3a2c-1795403640.cast", b"x\n");
        assert_eq!(
            store.newest_of("bg-7f3a2c").as_deref(),
            Some("bg-7f3a2c-1795403640.cast"),
            "{kind}"
        );
        // Object stores keep modification times to the second.
        std::thread::sleep(Duration::from_millis(1100));
        put(store.as_ref(), "bg-7f3a2c-1795403700-0badf00d.cast", b"x\n");
        put(store.as_ref(), "bg-7f3a2cd-1795403800.cast", b"x\n");
        assert_eq!(
            store.newest_of("bg-7f3a2c").as_deref(),
            Some("bg-7f3a2c-1795403700-0badf00d.cast"),
            "{kind}"
        );
        assert_eq!(store.newest_of("bg-000000"), None, "{kind}");
    }
}

/// Polls `f` until it is true or `within` passed.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn parts_appear_in_the_bucket_while_the_recording_is_written_and_read_back_before_sealing() {
    let m = Moto::start("recordings");
    let spool = tempfile::tempdir().expect("tempdir");
    let store = S3Store::open(&options(&m, spool.path())).expect("store");
    let name = "bg-000001-1795403640-00000001.cast";
    let mut w = store.create(name).expect("created");
    assert!(
        m.keys().contains(&format!("rec/{name}.parts/00000000")),
        "the marker is in the bucket before the session starts: {:?}",
        m.keys()
    );
    w.write_all(b"{\"version\":2}\n").expect("written");
    assert!(
        eventually(Duration::from_secs(3), || m.object(&format!("rec/{name}.parts/00000001"))
            == Some(b"{\"version\":2}\n".to_vec())),
        "the first part is uploaded within upload_every: {:?}",
        m.keys()
    );
    w.write_all(b"[0.1,\"o\",\"hi\"]\n").expect("written");
    // A second reader (another replica, the live view) reads the parts, no spool.
    let other_spool = tempfile::tempdir().expect("tempdir");
    let reader = S3Store::open(&options(&m, other_spool.path())).expect("store");
    assert!(eventually(Duration::from_secs(3), || {
        reader.read(name).ok().as_deref()
            == Some(b"{\"version\":2}\n[0.1,\"o\",\"hi\"]\n".as_slice())
    }));
    let mut tail = Vec::new();
    reader.read_from(name, 14).expect("tail").read_to_end(&mut tail).expect("read");
    assert_eq!(tail, b"[0.1,\"o\",\"hi\"]\n", "the live tail across parts");
    assert!(reader.exists(name) && !reader.is_sealed(name));
    assert_eq!(reader.newest_of("bg-000001").as_deref(), Some(name));
    drop(w);
    let all = b"{\"version\":2}\n[0.1,\"o\",\"hi\"]\n";
    store.seal(name, &side(name, all)).expect("sealed");
    assert_eq!(m.object(&format!("rec/{name}")).as_deref(), Some(all.as_slice()));
    assert!(m.object(&format!("rec/{name}.sig")).is_some());
    assert!(
        !m.keys().iter().any(|k| k.contains(".parts/")),
        "the parts are gone once sealed: {:?}",
        m.keys()
    );
}

#[test]
fn sealing_refuses_parts_that_do_not_hash_to_the_signed_digest_and_keeps_them() {
    let m = Moto::start("recordings");
    let spool = tempfile::tempdir().expect("tempdir");
    let store = S3Store::open(&options(&m, spool.path())).expect("store");
    let name = "bg-000001-1795403640-00000001.cast";
    put(&store, name, b"what was written\n");
    let e = store.seal(name, &side(name, b"something else\n")).expect_err("refused");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    assert!(!store.is_sealed(name));
    assert!(m.object(&format!("rec/{name}")).is_none(), "no final object");
    assert_eq!(store.read(name).expect("parts kept"), b"what was written\n");
}

#[test]
fn the_spool_is_bounded_and_a_write_past_it_fails() {
    let m = Moto::start("recordings");
    let spool = tempfile::tempdir().expect("tempdir");
    let mut o = options(&m, spool.path());
    o.spool_max = 1000;
    o.upload_every = Duration::from_secs(3600);
    let store = S3Store::open(&o).expect("store");
    let mut w = store.create("a-1.cast").expect("created");
    w.write_all(&[b'x'; 900]).expect("under the bound");
    let e = w.write_all(&[b'x'; 200]).expect_err("past the bound");
    assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}");
    // Once uploaded (sync), the room is back.
    w.sync().expect("uploaded");
    w.write_all(&[b'y'; 900]).expect("room again");
}

#[test]
fn a_bucket_that_goes_away_makes_writes_fail_within_the_upload_timeout() {
    let mut m = Moto::start("recordings");
    let spool = tempfile::tempdir().expect("tempdir");
    let o = options(&m, spool.path());
    let store = S3Store::open(&o).expect("store");
    let mut w = store.create("a-1.cast").expect("created");
    w.write_all(b"before\n").expect("written");
    assert!(store.health().is_ok());
    m.kill();
    let gone = Instant::now();
    let mut failed = None;
    while gone.elapsed() < o.upload_timeout * 3 {
        if let Err(e) = w.write_all(b"more\n") {
            failed = Some((gone.elapsed(), e));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (after, e) = failed.expect("writes fail once the bucket is gone");
    assert!(
        after <= o.upload_timeout + o.upload_every + Duration::from_secs(1),
        "failed after {after:?}"
    );
    assert!(e.to_string().contains("object storage"), "{e}");
    assert!(
        eventually(Duration::from_secs(2), || store.health().is_err()),
        "the gateway's health check sees it too"
    );
    assert!(!format!("{store:?}").contains(MOTO_KEY), "no credential in Debug: {store:?}");
}

#[test]
fn an_idle_recording_learns_that_the_bucket_went_away_before_its_next_byte() {
    let mut m = Moto::start("recordings");
    let spool = tempfile::tempdir().expect("tempdir");
    let o = options(&m, spool.path());
    let store = S3Store::open(&o).expect("store");
    let _w = store.create("a-1.cast").expect("created");
    m.kill();
    assert!(
        eventually(o.upload_timeout + o.upload_every + Duration::from_secs(2), || store
            .health()
            .is_err()),
        "health fails with nothing written"
    );
}

#[test]
fn a_spool_left_by_a_crash_is_uploaded_at_the_next_start() {
    let m = Moto::start("recordings");
    let spool = tempfile::tempdir().expect("tempdir");
    let mut o = options(&m, spool.path());
    o.upload_every = Duration::from_secs(3600);
    let name = "bg-000001-1795403640-00000001.cast";
    {
        let store = S3Store::open(&o).expect("store");
        let mut w = store.create(name).expect("created");
        w.write_all(b"{\"version\":2}\n[0.1,\"o\",\"lost?\"]\n").expect("written");
        // The process dies: nothing uploaded, the writer never closed.
        std::mem::forget(w);
    }
    assert!(m.object(&format!("rec/{name}.parts/00000001")).is_none(), "nothing uploaded");
    let store = S3Store::open(&o).expect("store");
    assert_eq!(store.unfinished(), [name]);
    assert_eq!(store.read(name).expect("read"), b"{\"version\":2}\n[0.1,\"o\",\"lost?\"]\n");
    assert_eq!(std::fs::read_dir(spool.path()).expect("spool").count(), 0, "the spool is empty");
}
