//! What the gateway keeps on disk, end to end with the real binary: its journal of used grants
//! stops a grant that a writer of the database made usable again, and `audit verify` notices
//! the reuse when the journal is gone; recordings, their signatures, the journal and the
//! database are private to the service's user, and an open data directory is warned about.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use e2e::gateway::{World, WorldOptions, recorder_sig};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode()
        & 0o777
}

/// Makes `code` usable again as a writer of the database could: drops the trigger that keeps
/// consumed nonces, deletes the grant's nonce, and sets the request back to `approved`.
fn forget_the_use(w: &World, code: &str, postgres: bool) {
    let drop = if postgres {
        "DROP TRIGGER consumed_nonces_no_delete ON consumed_nonces"
    } else {
        "DROP TRIGGER consumed_nonces_no_delete"
    };
    w.sql(drop).expect("trigger dropped");
    assert_eq!(
        w.sql(&format!(
            "DELETE FROM consumed_nonces WHERE nonce = (SELECT nonce FROM requests WHERE code = '{code}')"
        )),
        Ok(1)
    );
    assert_eq!(
        w.sql(&format!("UPDATE requests SET status = 'approved' WHERE code = '{code}'")),
        Ok(1)
    );
}

fn a_grant_reused_by_a_database_writer(postgres: bool) {
    let mut w = World::with(WorldOptions { postgres, ..WorldOptions::default() });
    let code = w.grant("db-1", None);
    let out = w.ssh(&code, &["echo", "first-session"]);
    assert_eq!(text(&out.stdout).trim(), "first-session", "{}", text(&out.stderr));
    w.wait_status(&code, "closed", 10);
    let first = w.recording_of(&code, 10);
    let v = w.cli(&["audit", "verify"]);
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(v.stdout.contains("recordings OK: 1 file(s)"), "{}", v.all());

    // The database forgets the use: the gateway's journal still refuses the grant.
    forget_the_use(&w, &code, postgres);
    let out = w.ssh(&code, &["echo", "second-session"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("second-session"));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "breakglass: {code} was already used: one approval opens one session; request again with `breakglass request db-1`"
        )
    );
    assert_eq!(w.recordings(), std::slice::from_ref(&first), "a refused grant records nothing");
    // The edit itself shows in the audit check.
    let v = w.cli(&["audit", "verify"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stdout.contains("field `status`"), "{}", v.all());

    // Without its journal (lost with the disk, say) the gateway has only the database, which
    // lets the grant through: `audit verify` names the second session and its recording.
    let journal = w.data_dir().join("recordings").join(recorder::journal::FILE_NAME);
    std::fs::remove_file(&journal).expect("journal removed");
    w.restart();
    // A recording is named CODE-UNIXSECONDS-XXXXXXXX.cast (8 hex digits drawn per session)
    // and never overwritten: a second session of the same grant gets a file of its own, even
    // within the first one's second.
    let out = w.ssh(&code, &["echo", "second-session"]);
    assert_eq!(text(&out.stdout).trim(), "second-session", "{}", text(&out.stderr));
    let second = test_util::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || w.recordings().into_iter().find(|p| *p != first && recorder_sig(p).exists()),
        || format!("no second recording:\n{}", w.server.log()),
    );
    let v = w.cli(&["audit", "verify"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(
        v.stdout.contains(&format!("audit log BROKEN: grant {code} ("))
            && v.stdout.contains(") opened 2 sessions (session_started at seq "),
        "{}",
        v.all()
    );
    assert!(
        v.stdout.contains(&format!(
            "recordings BROKEN: {} is on disk but no session in the database has it",
            second.display()
        )),
        "{}",
        v.all()
    );
    assert!(
        v.stderr.contains(&format!("grant {code} was used for more than one session")),
        "{}",
        v.all()
    );
}

#[test]
fn a_grant_reused_by_a_database_writer_is_refused_and_flagged() {
    a_grant_reused_by_a_database_writer(false);
}

#[test]
fn a_grant_reused_by_a_database_writer_is_refused_and_flagged_on_postgres() {
    a_grant_reused_by_a_database_writer(true);
}

#[test]
fn recordings_and_the_database_are_private() {
    let mut w = World::start();
    let code = w.grant("db-1", None);
    let out = w.ssh(&code, &["echo", "private"]);
    assert_eq!(text(&out.stdout).trim(), "private", "{}", text(&out.stderr));
    w.wait_status(&code, "closed", 10);
    let rec = w.recording_of(&code, 10);
    let data = w.data_dir();
    let recordings = data.join("recordings");
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    assert_eq!(mode(&recordings), 0o700, "{}", recordings.display());
    for f in [
        rec.clone(),
        recorder_sig(&rec),
        recordings.join(recorder::journal::FILE_NAME),
        data.join("breakglass.db"),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    // Every other file the process made is private too (keys, WAL, ...).
    for e in std::fs::read_dir(&data).expect("data dir").flatten() {
        assert_eq!(mode(&e.path()) & 0o077, 0, "{}", e.path().display());
    }

    // An existing data directory open to others is named at start, with the fix.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    w.restart();
    let log = w.server.log();
    let line = format!("fix: chmod 700 {}", data.display());
    assert_eq!(log.matches(&line).count(), 1, "{log}");
    assert!(
        log.contains(&format!("{} is open to other users (mode 755)", data.display())),
        "{log}"
    );
}
