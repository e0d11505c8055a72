//! Unit tests of the SFTP tracker: hand-built packet scripts, limits, and random input.

use test_util::Rng;

use super::*;
use crate::transfer::SFTP_MAX_PACKET;
use crate::transfer::testing::*;
use crate::transfer::text::MAX_TEXT;

impl Tracker for SftpTracker {
    fn memory(&self) -> usize {
        self.buffered_bytes()
    }
}

fn sftp(script: &[(Stream, Vec<u8>)]) -> Vec<String> {
    describe_all(&run(&mut SftpTracker::new(), script))
}

/// SSH wire encoding.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn s(self, v: &[u8]) -> Self {
        let mut w = self.u32(v.len() as u32);
        w.0.extend_from_slice(v);
        w
    }
    fn packet(self, typ: u8) -> Vec<u8> {
        let mut p = W::default().u32(self.0.len() as u32 + 1).u8(typ).0;
        p.extend_from_slice(&self.0);
        p
    }
}

const READ: u32 = 0x01;
const WRITE: u32 = 0x02 | 0x08 | 0x10; // WRITE | CREAT | TRUNC, as OpenSSH's put

fn init() -> Vec<u8> {
    W::default().u32(3).packet(FXP_INIT)
}
fn version() -> Vec<u8> {
    W::default().u32(3).s(b"posix-rename@openssh.com").s(b"1").packet(2)
}
fn open(id: u32, path: &[u8], pflags: u32) -> Vec<u8> {
    W::default().u32(id).s(path).u32(pflags).u32(0).packet(FXP_OPEN)
}
fn handle(id: u32, h: &[u8]) -> Vec<u8> {
    W::default().u32(id).s(h).packet(FXP_HANDLE)
}
fn status(id: u32, code: u32) -> Vec<u8> {
    let msg: &[u8] = match code {
        0 => b"Success",
        1 => b"End of file",
        2 => b"No such file",
        3 => b"Permission denied",
        _ => b"Failure",
    };
    W::default().u32(id).u32(code).s(msg).s(b"").packet(FXP_STATUS)
}
fn write(id: u32, h: &[u8], offset: u64, data: &[u8]) -> Vec<u8> {
    W::default().u32(id).s(h).u64(offset).s(data).packet(FXP_WRITE)
}
fn read(id: u32, h: &[u8], offset: u64, len: u32) -> Vec<u8> {
    W::default().u32(id).s(h).u64(offset).u32(len).packet(FXP_READ)
}
fn data(id: u32, bytes: &[u8]) -> Vec<u8> {
    W::default().u32(id).s(bytes).packet(FXP_DATA)
}
fn close(id: u32, h: &[u8]) -> Vec<u8> {
    W::default().u32(id).s(h).packet(FXP_CLOSE)
}
fn path_op(typ: u8, id: u32, path: &[u8]) -> Vec<u8> {
    W::default().u32(id).s(path).packet(typ)
}
fn two_paths(typ: u8, id: u32, a: &[u8], b: &[u8]) -> Vec<u8> {
    W::default().u32(id).s(a).s(b).packet(typ)
}
fn extended(id: u32, name: &[u8], rest: W) -> Vec<u8> {
    let mut w = W::default().u32(id).s(name);
    w.0.extend_from_slice(&rest.0);
    w.packet(FXP_EXTENDED)
}
fn mode(m: u32) -> W {
    W::default().u32(ATTR_PERMISSIONS).u32(m)
}

const H0: &[u8] = b"\0\0\0\0";
const H1: &[u8] = b"\0\0\0\x01";

/// A session with an upload, a pipelined download with a short read,
/// and metadata operations: the base of several tests.
fn session() -> Script {
    vec![
        (C, init()),
        (S, version()),
        (C, open(1, b"/srv/up.txt", WRITE)),
        (S, handle(1, H0)),
        (C, write(2, H0, 0, b"hello ")),
        (C, write(3, H0, 6, b"world")),
        (S, status(2, 0)),
        (S, status(3, 0)),
        (C, close(4, H0)),
        (S, status(4, 0)),
        (C, open(5, b"/srv/down.bin", READ)),
        (S, handle(5, H1)),
        (C, read(6, H1, 0, 8)),
        (C, read(7, H1, 8, 8)),
        (S, data(6, b"01234567")),
        (S, data(7, b"89a")),
        (C, read(8, H1, 11, 5)),
        (C, read(9, H1, 16, 8)),
        (S, status(8, 1)),
        (S, status(9, 1)),
        (C, close(10, H1)),
        (S, status(10, 0)),
        (C, path_op(FXP_REMOVE, 11, b"/srv/old")),
        (S, status(11, 0)),
        (C, two_paths(FXP_RENAME, 12, b"/srv/a", b"/srv/b")),
        (S, status(12, 3)),
    ]
}

fn session_expected() -> Vec<String> {
    vec![
        "init 3".to_owned(),
        format!("upload /srv/up.txt bytes=11 sha256={} complete", sha_hex(b"hello world")),
        format!("download /srv/down.bin bytes=11 sha256={} complete", sha_hex(b"0123456789a")),
        "remove /srv/old ok".to_owned(),
        "rename /srv/a -> /srv/b failed: permission denied (3): Permission denied".to_owned(),
    ]
}
// --- SFTP ---------------------------------------------------------------

#[test]
fn sftp_session_upload_download_and_ops() {
    let expected = session_expected();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    check(&sftp(&session()), &expected);
}

#[test]
fn sftp_file_event_comes_with_the_close_answer() {
    let mut t = SftpTracker::new();
    let script = session();
    let close_answer =
        script.iter().position(|(s, b)| *s == S && *b == status(4, 0)).expect("the close answer");
    for (i, (stream, bytes)) in script[..=close_answer].iter().enumerate() {
        let events = t.push(*stream, bytes);
        if i == close_answer {
            assert_eq!(describe_all(&events), session_expected()[1..2]);
        } else if i > 0 {
            assert!(events.is_empty(), "event before the close answer at {i}: {events:?}");
        }
    }
}

#[test]
fn sftp_out_of_order_data_is_reordered_for_the_digest() {
    let content = b"aaaabbbbccccdddd";
    let mut script: Script = vec![(C, open(1, b"/srv/f", READ)), (S, handle(1, H0))];
    for i in 0..5u32 {
        script.push((C, read(10 + i, H0, u64::from(i) * 4, 4)));
    }
    for i in [2usize, 0, 3, 1] {
        script.push((S, data(10 + i as u32, &content[i * 4..i * 4 + 4])));
    }
    script.push((S, status(14, 1)));
    script.push((C, close(20, H0)));
    script.push((S, status(20, 0)));
    let mut t = SftpTracker::new();
    let events = describe_all(&run(&mut t, &script));
    check(&events, &[&format!("download /srv/f bytes=16 sha256={} complete", sha_hex(content))]);
    assert_eq!(t.budget.used, 0, "reorder buffer released");
}

/// An upload whose first chunk comes after `ahead` more chunks of `chunk` bytes, with the
/// default limits.
fn upload_first_chunk_last(chunk: usize, ahead: usize) -> (Vec<String>, Vec<u8>) {
    let content: Vec<u8> = (0..chunk * (ahead + 1)).map(|i| (i % 251) as u8).collect();
    let mut script: Script = vec![(C, open(1, b"/srv/f", WRITE)), (S, handle(1, H0))];
    let mut ids = Vec::new();
    for (i, piece) in content.chunks(chunk).enumerate().skip(1).chain([(0, &content[..chunk])]) {
        let id = 10 + u32::try_from(i).expect("few chunks");
        script.push((C, write(id, H0, (i * chunk) as u64, piece)));
        ids.push(id);
    }
    script.extend(ids.into_iter().map(|id| (S, status(id, 0))));
    script.push((C, close(2, H0)));
    script.push((S, status(2, 0)));
    (describe_all(&run(&mut SftpTracker::new(), &script)), content)
}

#[test]
fn sftp_default_reorder_buffer_fits_pipelining_but_not_64_mib() {
    // OpenSSH's 64 pipelined requests of 32 KiB: the digest survives.
    let (events, content) = upload_first_chunk_last(32 * 1024, 64);
    let len = content.len();
    check(&events, &[&format!("upload /srv/f bytes={len} sha256={} complete", sha_hex(&content))]);
    // A client holding back offset 0 while it sends 9 MiB gets no 64 MiB of gateway memory.
    let (events, content) = upload_first_chunk_last(128 * 1024, 72);
    let len = content.len();
    check(
        &events,
        &[&format!(
            "upload /srv/f bytes={len} sha256=none complete \
             (out-of-order content exceeded the 8388608-byte buffer)"
        )],
    );
}

#[test]
fn sftp_reorder_buffer_overflow_counts_bytes_without_digest() {
    let limits = SftpLimits { reorder_buffer: 6, ..SftpLimits::default() };
    let script: Script = vec![
        (C, open(1, b"/srv/f", READ)),
        (S, handle(1, H0)),
        (C, read(2, H0, 0, 4)),
        (C, read(3, H0, 4, 4)),
        (C, read(4, H0, 8, 4)),
        (C, read(5, H0, 12, 4)),
        (S, data(4, b"cccc")),
        (S, data(3, b"bbbb")),
        (S, data(2, b"aaaa")),
        (S, status(5, 1)),
        (C, close(6, H0)),
        (S, status(6, 0)),
    ];
    let mut t = SftpTracker::with_limits(limits);
    check(
        &describe_all(&run(&mut t, &script)),
        &["download /srv/f bytes=12 sha256=none complete \
           (out-of-order content exceeded the 6-byte buffer)"],
    );
    assert_eq!(t.budget.used, 0);
}

#[test]
fn sftp_holes_overlaps_and_resumes_lose_the_digest() {
    let upload = |writes: &[(u64, &[u8])]| {
        let mut script: Script = vec![(C, open(1, b"/srv/f", WRITE)), (S, handle(1, H0))];
        for (i, (offset, bytes)) in writes.iter().enumerate() {
            script.push((C, write(10 + i as u32, H0, *offset, bytes)));
            script.push((S, status(10 + i as u32, 0)));
        }
        script.push((C, close(2, H0)));
        script.push((S, status(2, 0)));
        sftp(&script)
    };
    check(
        &upload(&[(0, b"abcd"), (8, b"ijkl")]),
        &["upload /srv/f bytes=8 sha256=none incomplete (bytes from offset 4 not seen)"],
    );
    check(
        &upload(&[(0, b"abcd"), (2, b"cdef")]),
        &["upload /srv/f bytes=8 sha256=none complete (overlapping content at offset 2)"],
    );
    check(
        &upload(&[(100, b"resumed")]),
        &["upload /srv/f bytes=7 sha256=none incomplete (bytes from offset 0 not seen)"],
    );
    // A download that skips bytes 8..16 and sees EOF only at 16.
    let script: Script = vec![
        (C, open(1, b"/srv/g", READ)),
        (S, handle(1, H0)),
        (C, read(2, H0, 0, 8)),
        (C, read(3, H0, 16, 8)),
        (S, data(2, b"01234567")),
        (S, status(3, 1)),
        (C, close(4, H0)),
        (S, status(4, 0)),
    ];
    check(
        &sftp(&script),
        &[&format!(
            "download /srv/g bytes=8 sha256={} incomplete (closed before end of file)",
            sha_hex(b"01234567")
        )],
    );
    // Written backwards: buffered, then hashed in order.
    check(
        &upload(&[(4, b"efgh"), (0, b"abcd")]),
        &[&format!("upload /srv/f bytes=8 sha256={} complete", sha_hex(b"abcdefgh"))],
    );
}

#[test]
fn sftp_failed_open_is_reported_as_incomplete_transfer() {
    let script: Script = vec![
        (C, open(1, b"/etc/shadow", WRITE)),
        (S, status(1, 3)),
        (C, open(2, b"/root/secret", READ)),
        (S, status(2, 2)),
    ];
    check(
        &sftp(&script),
        &[
            "upload /etc/shadow bytes=0 sha256=none incomplete \
             (open failed: permission denied (3): Permission denied)",
            "download /root/secret bytes=0 sha256=none incomplete \
             (open failed: no such file (2): No such file)",
        ],
    );
}

#[test]
fn sftp_failed_write_read_and_close() {
    let script: Script = vec![
        (C, open(1, b"/srv/full", WRITE)),
        (S, handle(1, H0)),
        (C, write(2, H0, 0, b"abc")),
        (S, status(2, 4)),
        (C, close(3, H0)),
        (S, status(3, 0)),
        (C, open(4, b"/srv/bad", READ)),
        (S, handle(4, H0)),
        (C, read(5, H0, 0, 10)),
        (S, status(5, 4)),
        (C, close(6, H0)),
        (S, status(6, 4)),
    ];
    check(
        &sftp(&script),
        &[
            &format!(
                "upload /srv/full bytes=3 sha256={} incomplete \
                 (write at 0 failed: failure (4): Failure)",
                sha_hex(b"abc")
            ),
            &format!(
                "download /srv/bad bytes=0 sha256={} incomplete (read at 0 failed: \
                 failure (4): Failure; closed before end of file; \
                 close failed: failure (4): Failure)",
                sha_hex(b"")
            ),
        ],
    );
}

#[test]
fn sftp_empty_files() {
    let script: Script = vec![
        (C, open(1, b"/srv/empty-up", WRITE)),
        (S, handle(1, H0)),
        (C, close(2, H0)),
        (S, status(2, 0)),
        (C, open(3, b"/srv/empty-down", READ)),
        (S, handle(3, H0)),
        (C, read(4, H0, 0, 32768)),
        (S, status(4, 1)),
        (C, close(5, H0)),
        (S, status(5, 0)),
    ];
    let empty = sha_hex(b"");
    check(
        &sftp(&script),
        &[
            &format!("upload /srv/empty-up bytes=0 sha256={empty} complete"),
            &format!("download /srv/empty-down bytes=0 sha256={empty} complete"),
        ],
    );
}

#[test]
fn sftp_metadata_operations() {
    let script: Script = vec![
        (C, W::default().u32(1).s(b"/srv/d").u32(ATTR_PERMISSIONS).u32(0o755).packet(FXP_MKDIR)),
        (S, status(1, 0)),
        (C, path_op(FXP_RMDIR, 2, b"/srv/d")),
        (S, status(2, 0)),
        (C, path_op(FXP_REMOVE, 3, b"/srv/x")),
        (S, status(3, 2)),
        (C, two_paths(FXP_RENAME, 4, b"/srv/a", b"/srv/b")),
        (S, status(4, 0)),
        (C, extended(5, b"posix-rename@openssh.com", W::default().s(b"/srv/b").s(b"/srv/c"))),
        (S, status(5, 0)),
        (C, W::default().u32(6).s(b"/srv/c").u32(ATTR_PERMISSIONS).u32(0o4755).packet(FXP_SETSTAT)),
        (S, status(6, 0)),
        (C, two_paths(FXP_SYMLINK, 7, b"/etc/passwd", b"/srv/link")),
        (S, status(7, 0)),
        (C, extended(8, b"hardlink@openssh.com", W::default().s(b"/srv/c").s(b"/srv/hard"))),
        (S, status(8, 0)),
        (C, extended(9, b"lsetstat@openssh.com", W::default().s(b"/srv/link").u32(0))),
        (S, status(9, 0)),
        (C, open(10, b"/srv/c", WRITE)),
        (S, handle(10, H0)),
        (C, {
            let mut w = W::default().u32(11).s(H0);
            w.0.extend_from_slice(&mode(0o600).0);
            w.packet(FXP_FSETSTAT)
        }),
        (S, status(11, 0)),
        (C, close(12, H0)),
        (S, status(12, 0)),
        (C, extended(13, b"statvfs@openssh.com", W::default().s(b"/"))),
        (C, path_op(FXP_REMOVE, 14, b"/srv/never-answered")),
    ];
    check(
        &sftp(&script),
        &[
            "mkdir /srv/d mode=755 ok",
            "rmdir /srv/d ok",
            "remove /srv/x failed: no such file (2): No such file",
            "rename /srv/a -> /srv/b ok",
            "posix-rename /srv/b -> /srv/c ok",
            "setstat /srv/c mode=4755 ok",
            "symlink /srv/link -> /etc/passwd ok",
            "hardlink /srv/hard -> /srv/c ok",
            "lsetstat /srv/link ok",
            "fsetstat /srv/c mode=600 ok",
            &format!("upload /srv/c bytes=0 sha256={} complete", sha_hex(b"")),
            "remove /srv/never-answered unanswered",
        ],
    );
}

#[test]
fn sftp_server_side_copy_is_an_op_not_a_transfer() {
    let copy = W::default().s(H0).u64(0).u64(0).s(H1).u64(0);
    let script: Script = vec![
        (C, open(1, b"/srv/src", READ)),
        (S, handle(1, H0)),
        (C, open(2, b"/srv/dst", WRITE)),
        (S, handle(2, H1)),
        (C, extended(3, b"copy-data", copy)),
        (S, status(3, 0)),
        (C, close(4, H0)),
        (C, close(5, H1)),
        (S, status(4, 0)),
        (S, status(5, 0)),
    ];
    check(&sftp(&script), &["copy-data /srv/src -> /srv/dst ok"]);
}

#[test]
fn sftp_handles_reused_after_close() {
    // OpenSSH's sftp-server hands out the lowest free handle again.
    let script: Script = vec![
        (C, open(1, b"/srv/one", WRITE)),
        (S, handle(1, H0)),
        (C, write(2, H0, 0, b"1")),
        (C, close(3, H0)),
        (C, open(4, b"/srv/two", WRITE)),
        (S, status(2, 0)),
        (S, status(3, 0)),
        (S, handle(4, H0)),
        (C, write(5, H0, 0, b"22")),
        (S, status(5, 0)),
        (C, close(6, H0)),
        (S, status(6, 0)),
    ];
    check(
        &sftp(&script),
        &[
            &format!("upload /srv/one bytes=1 sha256={} complete", sha_hex(b"1")),
            &format!("upload /srv/two bytes=2 sha256={} complete", sha_hex(b"22")),
        ],
    );
}

#[test]
fn sftp_finish_reports_what_is_still_open() {
    let script: Script = vec![
        (C, open(1, b"/srv/partial", WRITE)),
        (S, handle(1, H0)),
        (C, write(2, H0, 0, b"abc")),
        (S, status(2, 0)),
        (C, open(3, b"/srv/unanswered", READ)),
        (C, open(4, b"/srv/closing", READ)),
        (S, handle(4, H1)),
        (C, close(5, H1)),
        // A WRITE cut off by the end of the channel.
        (C, write(6, H0, 3, b"defgh")[..31].to_vec()),
    ];
    check(
        &sftp(&script),
        &[
            "download /srv/unanswered bytes=0 sha256=none incomplete (open not answered)",
            &format!(
                "download /srv/closing bytes=0 sha256={} incomplete \
                 (closed before end of file; close not answered)",
                sha_hex(b"")
            ),
            &format!(
                "upload /srv/partial bytes=5 sha256={} incomplete \
                 (channel ended with the file open)",
                sha_hex(b"abcde")
            ),
        ],
    );
    let mut t = SftpTracker::new();
    run(&mut t, &script);
    assert!(t.finish().is_empty(), "finish reports once");
    assert!(t.client_to_server(&open(9, b"/x", READ)).is_empty());
}

#[test]
fn sftp_split_at_every_byte_boundary() {
    check_every_split(&|| Box::new(SftpTracker::new()), &session());
}

#[test]
fn sftp_oversized_packet_stops_tracking() {
    let mut t = SftpTracker::new();
    for (stream, bytes) in &session()[..5] {
        t.push(*stream, bytes);
    }
    let mut garbage = W::default().u32(SFTP_MAX_PACKET + 1).u8(FXP_WRITE).0;
    garbage.extend_from_slice(&[0; 64]);
    check(
        &describe_all(&t.client_to_server(&garbage)),
        &[
            "stopped: client-to-server: SFTP packet of 262145 bytes exceeds the \
             262144-byte limit",
            &format!(
                "upload /srv/up.txt bytes=6 sha256={} incomplete (tracking stopped)",
                sha_hex(b"hello ")
            ),
        ],
    );
    assert!(t.server_to_client(&status(2, 0)).is_empty());
    assert!(t.client_to_server(&vec![0; 1 << 20]).is_empty());
    assert!(t.finish().is_empty());
    assert!(t.buffered_bytes() < 1024, "buffers released");

    // The largest packet OpenSSH sends is fine.
    let big = vec![7u8; 261_120];
    let script: Script = vec![
        (C, open(1, b"/srv/big", WRITE)),
        (S, handle(1, H0)),
        (C, write(2, H0, 0, &big)),
        (S, status(2, 0)),
        (C, close(3, H0)),
        (S, status(3, 0)),
    ];
    check(
        &sftp(&script),
        &[&format!("upload /srv/big bytes=261120 sha256={} complete", sha_hex(&big))],
    );
}

#[test]
fn sftp_empty_packet_stops_tracking() {
    check(&sftp(&[(S, vec![0, 0, 0, 0, 0])]), &["stopped: server-to-client: empty SFTP packet"]);
}

#[test]
fn sftp_malformed_packets_are_ignored() {
    let mut script: Script = vec![
        // OPEN cut short inside its path.
        (C, W::default().u32(1).u32(100).packet(FXP_OPEN)),
        // WRITE whose data length exceeds the packet.
        (C, W::default().u32(2).s(H0).u64(0).u32(1000).packet(FXP_WRITE)),
        // WRITE too short to hold its header.
        (C, W::default().u32(3).packet(FXP_WRITE)),
        // Answers to requests nobody made.
        (S, status(77, 0)),
        (S, data(78, b"zzz")),
        (S, handle(79, H0)),
        // Packets nobody tracks, and an unknown type.
        (C, path_op(17, 4, b"/srv/stat")),
        (C, W::default().u32(5).packet(250)),
    ];
    script.extend(session());
    let expected = session_expected();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    check(&sftp(&script), &expected);
}

#[test]
fn sftp_write_with_trailing_bytes_is_tracked() {
    // sftp-server ignores bytes after the fields it reads; so do we.
    let mut w = W::default().u32(2).s(H0).u64(0).s(b"abc");
    w.0.extend_from_slice(b"trailing");
    let script: Script = vec![
        (C, open(1, b"/srv/t", WRITE)),
        (S, handle(1, H0)),
        (C, w.packet(FXP_WRITE)),
        (S, status(2, 0)),
        (C, close(3, H0)),
        (S, status(3, 0)),
    ];
    check(&sftp(&script), &[&format!("upload /srv/t bytes=3 sha256={} complete", sha_hex(b"abc"))]);
}

#[test]
fn sftp_request_limits_stop_tracking() {
    let limits = SftpLimits { max_pending_requests: 3, max_open_files: 1, ..SftpLimits::default() };
    let mut t = SftpTracker::with_limits(limits);
    let mut events = Vec::new();
    for id in 0..4 {
        events.extend(t.client_to_server(&path_op(FXP_REMOVE, id, b"/x")));
    }
    check(
        &describe_all(&events),
        &[
            "stopped: more than 3 unanswered requests",
            "remove /x unanswered",
            "remove /x unanswered",
            "remove /x unanswered",
        ],
    );
    let script: Script = vec![
        (C, open(1, b"/a", READ)),
        (S, handle(1, H0)),
        (C, open(2, b"/b", READ)),
        (S, handle(2, H1)),
    ];
    check(
        &describe_all(&run(&mut SftpTracker::with_limits(limits), &script)),
        &[
            "stopped: more than 1 open files",
            "download /b bytes=0 sha256=none incomplete (open not answered; tracking stopped)",
            &format!(
                "download /a bytes=0 sha256={} incomplete \
                 (closed before end of file; tracking stopped)",
                sha_hex(b"")
            ),
        ],
    );
}

#[test]
fn sftp_in_order_content_is_hashed_without_copies() {
    let mut rng = Rng::new(7);
    let content = rng.bytes(4 << 20);
    let mut t = SftpTracker::new();
    let mut events = Vec::new();
    events.extend(t.client_to_server(&open(1, b"/srv/big", WRITE)));
    events.extend(t.server_to_client(&handle(1, H0)));
    let mut peak = 0;
    for (i, piece) in content.chunks(261_120).enumerate() {
        let id = 10 + i as u32;
        let packet = write(id, H0, (i * 261_120) as u64, piece);
        // As an SSH channel delivers it: 32 KiB at a time.
        for chunk in packet.chunks(32 * 1024) {
            events.extend(t.client_to_server(chunk));
            peak = peak.max(t.buffered_bytes());
        }
        events.extend(t.server_to_client(&status(id, 0)));
    }
    events.extend(t.client_to_server(&close(2, H0)));
    events.extend(t.server_to_client(&status(2, 0)));
    check(
        &describe_all(&events),
        &[&format!("upload /srv/big bytes={} sha256={} complete", 4 << 20, sha_hex(&content))],
    );
    assert!(peak < 16 * 1024, "in-order content was buffered: peak {peak} bytes");
}

#[test]
fn sftp_paths_are_escaped_losslessly() {
    let path = b"/srv/\xff\xfe bad\\name\n\x1b[31m\xe2\x80\xaeevil";
    let script: Script = vec![(C, path_op(FXP_REMOVE, 1, path)), (S, status(1, 0))];
    let events = sftp(&script);
    check(&events, &["remove /srv/\\xff\\xfe bad\\\\name\\x0a\\x1b[31m\\u{202e}evil ok"]);
    let long = vec![b'a'; MAX_TEXT + 10];
    let script: Script = vec![(C, path_op(FXP_REMOVE, 1, &long)), (S, status(1, 0))];
    let events = sftp(&script);
    assert!(events[0].ends_with("aaa\\[10 more bytes] ok"), "{}", events[0]);
}

/// Memory a tracker with `limits` may hold, whatever it is fed.
fn sftp_bound(limits: &SftpLimits) -> usize {
    let head = 2 * (limits.max_packet as usize + 4);
    let file = 256 + MAX_TEXT + 2 * 64 * (limits.max_fragments + 1);
    let handle = 64 + 2 * MAX_HANDLE;
    let pending = 64 + 2 * (4 * MAX_TEXT + 64);
    2 * head
        + 2 * limits.reorder_buffer
        + limits.max_open_files * (file + handle)
        + limits.max_pending_requests * pending
}

#[test]
fn sftp_fuzz_never_panics_and_stays_bounded() {
    let limits = SftpLimits {
        max_packet: 4096,
        reorder_buffer: 16 * 1024,
        max_open_files: 8,
        max_pending_requests: 32,
        max_fragments: 16,
    };
    let bound = sftp_bound(&limits);
    let mut rng = Rng::new(0x5eed);
    let base = session();
    let types = [
        FXP_INIT,
        FXP_OPEN,
        FXP_CLOSE,
        FXP_READ,
        FXP_WRITE,
        FXP_SETSTAT,
        FXP_FSETSTAT,
        FXP_REMOVE,
        FXP_MKDIR,
        FXP_RMDIR,
        FXP_RENAME,
        FXP_SYMLINK,
        FXP_EXTENDED,
        FXP_STATUS,
        FXP_HANDLE,
        FXP_DATA,
        2,
        7,
        104,
    ];
    for round in 0..600 {
        let mut t = SftpTracker::with_limits(limits);
        let script: Script = match round % 3 {
            // A huge claimed length followed by lots of bytes.
            _ if round % 100 == 0 => {
                let mut p = W::default().u32(0x7fff_0000).u8(FXP_OPEN).0;
                p.extend(rng.bytes(2 << 20));
                vec![(if round % 200 == 0 { C } else { S }, p)]
            }
            // Pure noise.
            0 => (0..rng.below(20))
                .map(|_| {
                    let n = rng.below(300);
                    (if rng.below(2) == 0 { C } else { S }, rng.bytes(n))
                })
                .collect(),
            // Plausible packets with random fields and small handles/ids.
            1 => (0..rng.below(200))
                .map(|_| {
                    let typ = types[rng.below(types.len())];
                    let mut body = W::default().u32(rng.below(8) as u32);
                    if rng.below(2) == 0 {
                        body = body.s(&[0, 0, 0, rng.below(3) as u8]);
                        body = body.u64(rng.below(64) as u64);
                    }
                    let n = rng.below(64);
                    body.0.extend(rng.bytes(n));
                    let stream = if typ >= 100 || typ == 2 { S } else { C };
                    (stream, body.packet(typ))
                })
                .collect(),
            // A real session with bytes flipped, dropped or duplicated.
            _ => {
                let mut s = base.clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(s.len());
                    let msg = &mut s[i].1;
                    if msg.is_empty() {
                        continue;
                    }
                    let at = rng.below(msg.len());
                    match rng.below(3) {
                        0 => msg[at] = rng.next_u64() as u8,
                        1 => {
                            msg.remove(at);
                        }
                        _ => {
                            let copy = s[i].clone();
                            s.insert(i, copy);
                        }
                    }
                }
                s
            }
        };
        let mut events = Vec::new();
        for (stream, bytes) in &script {
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                events.extend(t.push(*stream, &rest[..n]));
                rest = &rest[n..];
                let used = Tracker::memory(&t);
                assert!(used <= bound, "round {round}: {used} > {bound}");
                assert!(t.budget.used <= limits.reorder_buffer);
            }
        }
        events.extend(t.finish());
        for e in &events {
            if let TransferEvent::File(f) = e {
                assert!(f.sha256.is_some() || !f.notes.is_empty(), "{f:?}");
            }
        }
        assert_eq!(t.budget.used, 0, "round {round}: buffer not released");
    }
}

#[test]
fn sftp_many_fragments_are_bounded() {
    let limits = SftpLimits { max_fragments: 4, ..SftpLimits::default() };
    let mut script: Script = vec![(C, open(1, b"/srv/f", WRITE)), (S, handle(1, H0))];
    // Every other byte: ever more disjoint pieces.
    for i in 0..20u32 {
        script.push((C, write(10 + i, H0, u64::from(2 * i + 1), b"x")));
        script.push((S, status(10 + i, 0)));
    }
    script.push((C, close(2, H0)));
    script.push((S, status(2, 0)));
    check(
        &describe_all(&run(&mut SftpTracker::with_limits(limits), &script)),
        &["upload /srv/f bytes=20 sha256=none incomplete (too many disjoint pieces)"],
    );
}
