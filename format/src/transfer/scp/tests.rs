//! Unit tests of the legacy scp tracker: command parsing, hand-built rcp scripts, limits, and
//! random input.

use test_util::Rng;

use super::*;
use crate::transfer::escape_bytes;
use crate::transfer::testing::*;
use crate::transfer::text::MAX_TEXT;

impl Tracker for ScpTracker {
    fn memory(&self) -> usize {
        self.held.capacity()
            + self.dirs.iter().map(Vec::capacity).sum::<usize>()
            + match &self.send {
                SendState::Line(b) | SendState::StatusLine(b) => b.capacity(),
                _ => 0,
            }
            + match &self.recv {
                RecvState::Line { buf, .. } => buf.capacity(),
                RecvState::Idle => 0,
            }
    }
}

fn scp(command: &str, script: &[(Stream, Vec<u8>)]) -> Vec<String> {
    let mut tracker = ScpTracker::from_command(command).expect("an scp command");
    describe_all(&run(&mut tracker, script))
}

fn parsed(command: &str) -> Option<(Direction, Vec<String>, bool, bool)> {
    let t = ScpTracker::from_command(command)?;
    let args = t.args.iter().map(|a| escape_bytes(a)).collect();
    Some((t.direction, args, t.target_dir, t.shell_expansion))
}

#[test]
fn scp_command_parsing() {
    let up = Direction::Upload;
    let down = Direction::Download;
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(parsed("scp -t /tmp/x"), Some((up, s(&["/tmp/x"]), false, false)));
    assert_eq!(
        parsed("scp -v -r -p -d -t -- /tmp/dir/"),
        Some((up, s(&["/tmp/dir/"]), true, false))
    );
    assert_eq!(parsed("scp -rpt /srv"), Some((up, s(&["/srv"]), false, false)));
    assert_eq!(parsed("scp -l 100 -t x"), Some((up, s(&["x"]), false, false)));
    assert_eq!(parsed("/usr/bin/scp -f a b"), Some((down, s(&["a", "b"]), false, false)));
    assert_eq!(
        parsed(r#"scp -f 'my file' "q\"x" back\ slash"#),
        Some((down, s(&["my file", "q\"x", "back slash"]), false, false))
    );
    assert_eq!(parsed("scp -f ~/x"), Some((down, s(&["~/x"]), false, true)));
    assert_eq!(parsed("scp -f /var/log/*.log"), Some((down, s(&["/var/log/*.log"]), false, true)));
    assert_eq!(parsed("scp -f \"$HOME/x\""), Some((down, s(&["$HOME/x"]), false, true)));
    for not_scp in [
        "scp -t /tmp; rm -rf /",
        "scp -t /tmp && id",
        "scp -t /tmp > /dev/null",
        "scp -t $(id)",
        "scp -t `id`",
        "scp -t 'unterminated",
        "scp -t a b",
        "scp -t x -r",
        "scp -tf x",
        "scp -f",
        "scp -t",
        "scp /x /y",
        "scp -Z -t x",
        "sftp-server",
        "rsync -t x",
        "",
    ] {
        assert_eq!(parsed(not_scp), None, "{not_scp}");
    }
}

const ACK: &[u8] = b"\0";

fn upload_one(name: &str, content: &[u8]) -> Script {
    let mut body = content.to_vec();
    body.push(0);
    vec![
        (S, ACK.to_vec()),
        (C, format!("C0644 {} {name}\n", content.len()).into_bytes()),
        (S, ACK.to_vec()),
        (C, body),
        (S, ACK.to_vec()),
    ]
}

#[test]
fn scp_upload_one_file() {
    let script = upload_one("a.txt", b"hello");
    let line = |path: &str| format!("upload {path} bytes=5 sha256={} complete", sha_hex(b"hello"));
    check(&scp("scp -t /tmp/", &script), &[&line("/tmp/a.txt")]);
    check(&scp("scp -d -t /tmp", &script), &[&line("/tmp/a.txt")]);
    check(&scp("scp -t .", &script), &[&line("./a.txt")]);
    check(&scp("scp -t /tmp/a.txt", &script), &[&line("/tmp/a.txt")]);
    check(
        &scp("scp -t /tmp/b.txt", &script),
        &[&format!(
            "{} (if the target is a directory, the file is in it as a.txt)",
            line("/tmp/b.txt")
        )],
    );
}

#[test]
fn scp_download_one_file() {
    let script: Script = vec![
        (C, ACK.to_vec()),
        (S, b"T1700000000 0 1700000000 0\n".to_vec()),
        (C, ACK.to_vec()),
        (S, b"C0644 3 hostname\n".to_vec()),
        (C, ACK.to_vec()),
        (S, b"ab\n".to_vec()),
        (S, ACK.to_vec()),
        (C, ACK.to_vec()),
    ];
    let expected = format!("download /etc/hostname bytes=3 sha256={} complete", sha_hex(b"ab\n"));
    check(&scp("scp -p -f /etc/hostname", &script), &[&expected]);
    check(&scp("scp -f /etc/passwd /etc/hostname", &script), &[&expected]);
    check(
        &scp("scp -f /etc/h*", &script),
        &[&format!("{expected} (path subject to remote shell expansion)")],
    );
    check(
        &scp("scp -f /etc/other", &script),
        &[&format!(
            "download /etc/hostname bytes=3 sha256={} complete (source path guessed)",
            sha_hex(b"ab\n")
        )],
    );
}

fn recursive_upload() -> Script {
    let lines: &[&[u8]] = &[
        b"D0755 0 dir\n",
        b"C0644 2 f1\n",
        b"11\0",
        b"T1700000000 0 1700000000 0\n",
        b"D0700 0 sub\n",
        b"C0600 0 f2\n",
        b"\0",
        b"E\n",
        b"E\n",
        b"C0644 1 top\n",
        b"t\0",
    ];
    let mut script: Script = vec![(S, ACK.to_vec())];
    for line in lines {
        script.push((C, line.to_vec()));
        script.push((S, ACK.to_vec()));
    }
    script
}

#[test]
fn scp_recursive_upload() {
    check(
        &scp("scp -r -t /srv/", &recursive_upload()),
        &[
            &format!("upload /srv/dir/f1 bytes=2 sha256={} complete", sha_hex(b"11")),
            &format!("upload /srv/dir/sub/f2 bytes=0 sha256={} complete", sha_hex(b"")),
            &format!("upload /srv/top bytes=1 sha256={} complete", sha_hex(b"t")),
        ],
    );
}

#[test]
fn scp_recursive_download() {
    let mut script: Script = vec![(C, ACK.to_vec())];
    for line in [&b"D0755 0 proj\n"[..], b"C0644 1 a\n", b"a\0", b"E\n"] {
        script.push((S, line.to_vec()));
        script.push((C, ACK.to_vec()));
    }
    check(
        &scp("scp -r -f /home/u/proj/", &script),
        &[&format!("download /home/u/proj/a bytes=1 sha256={} complete", sha_hex(b"a"))],
    );
}

fn scp_errors_script() -> Script {
    vec![
        (S, ACK.to_vec()),
        // Refused by the receiver: no content follows.
        (C, b"C0644 3 a\n".to_vec()),
        (S, b"\x01scp: /srv/a: Permission denied\n".to_vec()),
        // The sender could not read a file: no acknowledgement.
        (C, b"\x01scp: b: No such file or directory\n".to_vec()),
        // Read error after the content.
        (C, b"C0644 3 c\n".to_vec()),
        (S, ACK.to_vec()),
        (C, b"xyz\x01scp: c: Input/output error\n".to_vec()),
        (S, ACK.to_vec()),
        // Write error at the receiver.
        (C, b"C0644 2 d\n".to_vec()),
        (S, ACK.to_vec()),
        (C, b"de\0".to_vec()),
        (S, b"\x01scp: /srv/d: No space left on device\n".to_vec()),
        // A refused directory is not entered.
        (C, b"D0755 0 e\n".to_vec()),
        (S, b"\x01scp: /srv/e: Permission denied\n".to_vec()),
        (C, b"C0644 1 f\n".to_vec()),
        (S, ACK.to_vec()),
        (C, b"f\0".to_vec()),
        (S, ACK.to_vec()),
        (S, b"\x02scp: fatal\n".to_vec()),
    ]
}

#[test]
fn scp_errors() {
    check(
        &scp("scp -t /srv/", &scp_errors_script()),
        &[
            "upload /srv/a bytes=0 sha256=none incomplete \
             (refused: scp: /srv/a: Permission denied)",
            "scp-error client-to-server fatal=false scp: b: No such file or directory",
            &format!(
                "upload /srv/c bytes=3 sha256={} incomplete \
                 (sender error: scp: c: Input/output error)",
                sha_hex(b"xyz")
            ),
            &format!(
                "upload /srv/d bytes=2 sha256={} incomplete \
                 (receiver error: scp: /srv/d: No space left on device)",
                sha_hex(b"de")
            ),
            "scp-error server-to-client fatal=false scp: /srv/e: Permission denied",
            &format!("upload /srv/f bytes=1 sha256={} complete", sha_hex(b"f")),
            "scp-error server-to-client fatal=true scp: fatal",
        ],
    );
}

#[test]
fn scp_content_sent_before_the_acknowledgement_is_held() {
    let script: Script = vec![(C, b"C0644 5 a\nhello\0".to_vec()), (S, b"\0\0\0".to_vec())];
    check(
        &scp("scp -t /srv/", &script),
        &[&format!("upload /srv/a bytes=5 sha256={} complete", sha_hex(b"hello"))],
    );
}

/// scp paths are cut like SFTP paths: directory names of up to 8 KiB each, 256 levels
/// deep, would otherwise give a path of 2 MiB in every event.
#[test]
fn scp_long_paths_are_cut() {
    let names: Vec<String> =
        (b'a'..=b'c').map(|c| char::from(c).to_string().repeat(3000)).collect();
    let mut script: Script = vec![(S, ACK.to_vec())];
    for name in &names {
        script.push((C, format!("D0755 0 {name}\n").into_bytes()));
        script.push((S, ACK.to_vec()));
    }
    script.extend([
        (C, b"C0644 1 f\n".to_vec()),
        (S, ACK.to_vec()),
        (C, b"x\0".to_vec()),
        (S, ACK.to_vec()),
        (C, b"C0644 1 g\n".to_vec()),
        (S, b"\x01scp: denied\n".to_vec()),
    ]);
    let cut = |file: &str| {
        let full = format!("/srv/{}/{file}", names.join("/"));
        format!("{}\\[{} more bytes]", &full[..MAX_TEXT], full.len() - MAX_TEXT)
    };
    check(
        &scp("scp -r -t /srv/", &script),
        &[
            &format!("upload {} bytes=1 sha256={} complete", cut("f"), sha_hex(b"x")),
            &format!("upload {} bytes=0 sha256=none incomplete (refused: scp: denied)", cut("g")),
        ],
    );
    // A name sent for a target that may be a directory is cut too.
    let name = "n".repeat(MAX_TEXT + 10);
    let script: Script = vec![(S, ACK.to_vec()), (C, format!("C0644 0 {name}\n").into_bytes())];
    let events = run(&mut ScpTracker::from_command("scp -t /srv/x").expect("scp"), &script);
    let expected = format!("{}\\[10 more bytes]", &name[..MAX_TEXT]);
    assert!(
        matches!(&events[..], [TransferEvent::File(FileTransfer { notes, .. })]
            if notes.contains(&Note::ScpTargetMayBeDirectory { sent_name: expected })),
        "{events:?}"
    );
}

/// A sender far ahead of the receiver: every acknowledgement uses one line of what is held,
/// and dropping the used bytes must not copy the rest each time.
#[test]
fn scp_acknowledging_held_lines_one_by_one_is_linear() {
    let files = 10_000;
    let mut sent = Vec::new();
    for i in 0..files {
        sent.extend_from_slice(format!("C0644 0 f{i}\n\0").as_bytes());
    }
    assert!(sent.len() <= SCP_MAX_HELD);
    // Ready, then per file: the header and the (empty) content.
    let acks = vec![0u8; 1 + 2 * files];
    let mut t = ScpTracker::from_command("scp -t /srv/").expect("scp");
    assert!(t.client_to_server(&sent).is_empty());
    let events = t.server_to_client(&acks);
    assert_eq!(events.len(), files);
    assert_eq!(
        describe(&events[files - 1]),
        format!("upload /srv/f{} bytes=0 sha256={} complete", files - 1, sha_hex(b""))
    );
    assert_eq!(t.held_len(), 0);
    assert!(
        t.held_moved <= sent.len(),
        "{} bytes moved to use {} held bytes",
        t.held_moved,
        sent.len()
    );
}

#[test]
fn scp_finish_mid_transfer() {
    let script: Script = vec![
        (S, ACK.to_vec()),
        (C, b"C0644 5 a\n".to_vec()),
        (S, ACK.to_vec()),
        (C, b"he".to_vec()),
    ];
    check(
        &scp("scp -t /srv/", &script),
        &[&format!(
            "upload /srv/a bytes=2 sha256={} incomplete (ended before 5 bytes)",
            sha_hex(b"he")
        )],
    );
    check(
        &scp("scp -t /srv/", &script[..2]),
        &["upload /srv/a bytes=0 sha256=none incomplete (not acknowledged)"],
    );
    let mut t = ScpTracker::from_command("scp -t /srv/").expect("scp");
    run(&mut t, &script);
    assert!(t.finish().is_empty(), "finish reports once");
}

#[test]
fn scp_garbage_stops_tracking() {
    let stopped = |script: Script| scp("scp -t /srv/", &script);
    check(
        &stopped(vec![(S, ACK.to_vec()), (C, b"X123\n".to_vec())]),
        &["stopped: client-to-server: unexpected byte 0x58 in the scp stream"],
    );
    check(
        &stopped(vec![(S, b"Z".to_vec())]),
        &["stopped: server-to-client: unexpected byte 0x5a in the scp stream"],
    );
    check(
        &stopped(vec![(S, ACK.to_vec()), (C, b"C06x4 5 a\n".to_vec())]),
        &["stopped: malformed scp control line \"C06x4 5 a\""],
    );
    let mut long = b"C0644 1 ".to_vec();
    long.resize(SCP_MAX_LINE + 100, b'n');
    check(
        &stopped(vec![(S, ACK.to_vec()), (C, long)]),
        &["stopped: client-to-server: scp control line longer than 8192 bytes"],
    );
    let mut t = ScpTracker::from_command("scp -t /srv/").expect("scp");
    t.client_to_server(&vec![b'C'; SCP_MAX_HELD + 1]);
    assert!(t.done, "unbounded data ahead of an acknowledgement stops tracking");
    let mut t = ScpTracker::from_command("scp -t /srv/").expect("scp");
    t.server_to_client(ACK);
    let events = t.client_to_server(b"C0644 1 a\n\x01");
    assert!(events.is_empty());
    assert_eq!(describe_all(&t.server_to_client(b"\0")), Vec::<String>::new());
    // After the content, only a status byte may follow.
    check(
        &describe_all(&t.client_to_server(b"q")),
        &[
            "stopped: client-to-server: unexpected byte 0x71 in the scp stream",
            &format!(
                "upload /srv/a bytes=1 sha256={} incomplete (tracking stopped)",
                sha_hex(b"\x01")
            ),
        ],
    );
    assert!(t.finish().is_empty());
}

#[test]
fn scp_split_at_every_byte_boundary() {
    for (command, script) in
        [("scp -r -t /srv/", recursive_upload()), ("scp -t /srv/", scp_errors_script())]
    {
        check_every_split(&|| Box::new(ScpTracker::from_command(command).expect("scp")), &script);
    }
}

#[test]
fn scp_fuzz_never_panics_and_stays_bounded() {
    let bound = 2 * SCP_MAX_HELD + 8 * SCP_MAX_LINE + SCP_MAX_DEPTH * 2 * (SCP_MAX_LINE + 1);
    let mut rng = Rng::new(0xfeed);
    let bases = [recursive_upload(), scp_errors_script()];
    let alphabet = b"CDET\0\x01\x02\n 0123456789abc";
    for round in 0..1500 {
        let command = ["scp -r -t /srv/", "scp -r -f /srv/x", "scp -t /srv/y"][round % 3];
        let mut t = ScpTracker::from_command(command).expect("scp");
        let script: Script = if round % 2 == 0 {
            (0..rng.below(40))
                .map(|_| {
                    let n = rng.below(40);
                    let bytes = (0..n).map(|_| alphabet[rng.below(alphabet.len())]).collect();
                    (if rng.below(2) == 0 { C } else { S }, bytes)
                })
                .collect()
        } else {
            let mut s = bases[round % bases.len()].clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(s.len());
                let msg = &mut s[i].1;
                if msg.is_empty() {
                    continue;
                }
                let at = rng.below(msg.len());
                msg[at] = alphabet[rng.below(alphabet.len())];
            }
            s
        };
        let mut rest_events = Vec::new();
        for (stream, bytes) in &script {
            for chunk in bytes.chunks(1 + rng.below(8)) {
                rest_events.extend(t.push(*stream, chunk));
                assert!(Tracker::memory(&t) <= bound);
            }
        }
        rest_events.extend(t.finish());
        for e in &rest_events {
            if let TransferEvent::File(f) = e {
                assert!(f.sha256.is_some() || !f.notes.is_empty(), "{f:?}");
            }
        }
    }
}
