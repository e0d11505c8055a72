//! Both trackers fed real OpenSSH streams captured earlier (`tests/fixtures/transfer/`), as
//! recorded and re-chunked at random. The crate's `tests/transfer_openssh.rs` runs the real
//! programs instead.

use test_util::Rng;

use super::sftp::Reader;
use super::testing::*;
use super::{ScpTracker, SftpTracker};

// Captured with tests/fixtures/transfer/capture.sh (Debian OpenSSH 9.2p1):
// the real sftp/scp client and sftp-server/scp, relayed by capture.py.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/transfer/", $name))
    };
}

const SHA256SUMS: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/transfer/SHA256SUMS"));

/// The digest `sha256sum` printed for a file at capture time.
fn sum(file: &str) -> &'static str {
    SHA256SUMS
        .lines()
        .find_map(|l| l.strip_suffix(file)?.strip_suffix("  "))
        .expect("file in SHA256SUMS")
}

/// Reads capture.py's format: the exec command and the chunks.
fn parse_capture(raw: &[u8]) -> (Option<String>, Script) {
    let mut command = None;
    let mut script = Script::new();
    let mut r = Reader(raw);
    while let Some(tag) = r.take(1) {
        let len = r.u32().expect("length") as usize;
        let bytes = r.take(len).expect("chunk").to_vec();
        match tag[0] {
            b'x' => command = Some(String::from_utf8(bytes).expect("utf-8 command")),
            b'c' => script.push((C, bytes)),
            b's' => script.push((S, bytes)),
            other => panic!("bad tag {other}"),
        }
    }
    (command, script)
}

/// Runs a capture as recorded and re-chunked at random; both must agree.
fn replay(raw: &[u8]) -> Vec<String> {
    let (command, script) = parse_capture(raw);
    let new = || -> Box<dyn Tracker> {
        match &command {
            Some(c) => Box::new(ScpTracker::from_command(c).expect("scp command")),
            None => Box::new(SftpTracker::new()),
        }
    };
    let events = describe_all(&run(new().as_mut(), &script));
    for seed in 1..4 {
        let rechunked = describe_all(&run_chunked(new().as_mut(), &script, &mut Rng::new(seed)));
        assert_eq!(rechunked, events, "seed {seed}");
    }
    events
}

const FX: &str = "/var/tmp/bgxfer";

#[test]
fn fixture_sftp_session() {
    let empty = sum("local/empty.bin");
    check(
        &replay(fixture!("sftp-session.bin")),
        &[
            "init 3",
            &format!(
                "upload {FX}/remote/up.bin bytes=100000 sha256={} complete",
                sum("local/up.bin")
            ),
            &format!(
                "download {FX}/remote/down.bin bytes=70000 sha256={} complete",
                sum("local/down.bin")
            ),
            &format!("fsetstat {FX}/remote/empty.bin mode=644 ok"),
            &format!("upload {FX}/remote/empty.bin bytes=0 sha256={empty} complete"),
            &format!(
                "upload {FX}/nodir/x.bin bytes=0 sha256=none incomplete \
                 (open failed: no such file (2): No such file)"
            ),
            &format!("mkdir {FX}/remote/newdir mode=777 ok"),
            &format!("posix-rename {FX}/remote/up.bin -> {FX}/remote/newdir/moved.bin ok"),
            &format!("setstat {FX}/remote/newdir/moved.bin mode=600 ok"),
            &format!("symlink {FX}/remote/link -> {FX}/remote/newdir/moved.bin ok"),
            &format!("hardlink {FX}/remote/hard -> {FX}/remote/newdir/moved.bin ok"),
            &format!("copy-data {FX}/remote/hard -> {FX}/remote/copy ok"),
            &format!("remove {FX}/remote/link ok"),
            &format!("remove {FX}/remote/hard ok"),
            &format!("remove {FX}/remote/newdir/moved.bin ok"),
            &format!("rmdir {FX}/remote/newdir ok"),
        ],
    );
}

#[test]
fn fixture_scp_recursive_upload() {
    check(
        &replay(fixture!("scp-upload-r.bin")),
        &[
            &format!(
                "upload {FX}/scp-dst/tree/a.bin bytes=20000 sha256={} complete",
                sum("scp-src/tree/a.bin")
            ),
            &format!(
                "upload {FX}/scp-dst/tree/empty bytes=0 sha256={} complete",
                sum("local/empty.bin")
            ),
            &format!(
                "upload {FX}/scp-dst/tree/sub/b.txt bytes=10 sha256={} complete",
                sum("scp-src/tree/sub/b.txt")
            ),
        ],
    );
}

#[test]
fn fixture_scp_download() {
    check(
        &replay(fixture!("scp-download.bin")),
        &[&format!(
            "download {FX}/scp-dst/down.bin bytes=30000 sha256={} complete",
            sum("scp-dst/down.bin")
        )],
    );
}

#[test]
fn fixture_scp_recursive_glob_download() {
    let glob = "(path subject to remote shell expansion)";
    check(
        &replay(fixture!("scp-download-r-glob.bin")),
        &[
            &format!(
                "download {FX}/scp-dst/tree/a.bin bytes=20000 sha256={} complete {glob}",
                sum("scp-src/tree/a.bin")
            ),
            &format!(
                "download {FX}/scp-dst/tree/empty bytes=0 sha256={} complete {glob}",
                sum("local/empty.bin")
            ),
            &format!(
                "download {FX}/scp-dst/tree/sub/b.txt bytes=10 sha256={} complete {glob}",
                sum("scp-src/tree/sub/b.txt")
            ),
        ],
    );
}

#[test]
fn fixture_scp_failures() {
    check(
        &replay(fixture!("scp-upload-refused.bin")),
        &[&format!(
            "upload {FX}/nodir/a.bin bytes=0 sha256=none incomplete \
             (refused: scp: {FX}/nodir/a.bin: No such file or directory)"
        )],
    );
    check(
        &replay(fixture!("scp-download-missing.bin")),
        &[&format!(
            "scp-error server-to-client fatal=false scp: {FX}/scp-dst/nope: No such file or directory"
        )],
    );
}
