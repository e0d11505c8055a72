//! The transfer trackers against the real OpenSSH programs, run now: `sftp` with
//! `sftp-server` and legacy `scp -O` with a remote `scp` (through `sh`), relayed over loopback
//! by this test, which records both directions in the order a gateway would see them and
//! checks the trackers' digests against `sha256sum`. Replays of earlier captures are the unit
//! tests in `format/src/transfer/tests.rs`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use format::transfer::{ScpTracker, SftpTracker, Stream};
use test_util::Rng;

#[path = "common/transfer_script.rs"]
mod script;
use script::*;

const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

#[track_caller]
fn require_tools() {
    for (tool, package) in [
        ("/usr/bin/sftp", "openssh-client"),
        ("/usr/bin/scp", "openssh-client"),
        (SFTP_SERVER, "openssh-server"),
        ("/bin/bash", "bash"),
        ("/usr/bin/sha256sum", "coreutils"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: this test needs the Debian package {package} \
             (apt-get install -y {package})"
        );
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir()
            .join(format!("breakglass-transfer-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn sha256sum(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {path}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.split_whitespace().next().expect("a digest").to_owned()
}

const RELAY_TIMEOUT: Duration = Duration::from_secs(120);

/// Copies `from` to `to`, recording each chunk before forwarding it: the
/// order in `record` is the order a gateway would see.
fn pump(
    mut from: impl Read,
    mut to: impl Write,
    stream: Stream,
    record: &mpsc::Sender<(Stream, Vec<u8>)>,
) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if record.send((stream, buf[..n].to_vec())).is_err() || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn accept(listener: &TcpListener, client: &mut std::process::Child, dir: &TempDir) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + RELAY_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = client.try_wait() {
                    let err = fs::read_to_string(dir.path("client.err")).unwrap_or_default();
                    panic!("client exited ({status}) before connecting: {err}");
                }
                if Instant::now() > deadline {
                    let _ = client.kill();
                    panic!("client did not start its ssh/sftp-server");
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Runs an OpenSSH client whose ssh (`scp -S`) or sftp-server (`sftp -D`)
/// is a wrapper handing its stdin and stdout to this test over two
/// loopback connections. The test runs the remote side itself (`remote`,
/// given scp's exec command) and records both directions in arrival order.
fn relay(
    dir: &TempDir,
    client: &dyn Fn(&str) -> Command,
    remote: &dyn Fn(Option<&str>) -> Command,
) -> (Option<String>, Script) {
    use std::os::unix::fs::PermissionsExt;
    let c2s_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let s2c_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = |l: &TcpListener| l.local_addr().expect("address").port();
    let wrapper = dir.path("relay.sh");
    let command_file = dir.path("command");
    let _ = fs::remove_file(&command_file);
    // Background jobs of a script get /dev/null as stdin, hence fd 5.
    let script = format!(
        "#!/bin/bash\n\
         if [ $# -gt 1 ]; then printf '%s' \"${{@: -1}}\" > '{command_file}'; fi\n\
         exec 3>/dev/tcp/127.0.0.1/{} 4</dev/tcp/127.0.0.1/{} 5<&0\n\
         cat <&5 >&3 4<&- 5<&- &\n\
         exec 3>&- 5<&-\n\
         cat <&4\n\
         kill $! 2>/dev/null\n\
         exit 0\n",
        port(&c2s_listener),
        port(&s2c_listener),
    );
    fs::write(&wrapper, script).expect("write wrapper");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");

    let log = |name: &str| fs::File::create(dir.path(name)).expect("log file");
    let mut child = client(&wrapper)
        .stdin(Stdio::null())
        .stdout(log("client.out"))
        .stderr(log("client.err"))
        .spawn()
        .expect("spawn the OpenSSH client");
    let c2s = accept(&c2s_listener, &mut child, dir);
    let s2c = accept(&s2c_listener, &mut child, dir);
    let command = fs::read_to_string(&command_file).ok();
    let mut server = remote(command.as_deref())
        .current_dir(&dir.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log("server.err"))
        .spawn()
        .expect("spawn the remote side");
    let (tx, rx) = mpsc::channel();
    let (server_in, server_out) = (server.stdin.take(), server.stdout.take());
    let up_tx = tx.clone();
    let up = thread::spawn(move || {
        if let Some(server_in) = server_in {
            pump(c2s, server_in, C, &up_tx);
        }
    });
    let down = thread::spawn(move || {
        if let Some(server_out) = server_out {
            pump(server_out, s2c, S, &tx);
        }
    });
    let deadline = Instant::now() + RELAY_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = server.kill();
            panic!("the OpenSSH client did not finish");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let err = fs::read_to_string(dir.path("client.err")).unwrap_or_default();
    assert!(status.success(), "client failed ({status}): {err}");
    up.join().expect("relay up");
    down.join().expect("relay down");
    let _ = server.wait();
    (command, rx.iter().collect())
}

#[test]
fn live_sftp_put_and_get_match_sha256sum() {
    require_tools();
    let dir = TempDir::new("sftp");
    let mut rng = Rng::new(0x5f7);
    fs::write(dir.path("up.bin"), rng.bytes(1 << 20)).expect("write");
    fs::write(dir.path("remote-down.bin"), rng.bytes((1 << 20) + 12345)).expect("write");
    let batch = format!(
        "put {} {}\nget {} {}\n",
        dir.path("up.bin"),
        dir.path("remote-up.bin"),
        dir.path("remote-down.bin"),
        dir.path("down.bin"),
    );
    fs::write(dir.path("batch"), batch).expect("write batch");
    let (_, script) = relay(
        &dir,
        &|wrapper| {
            let mut c = Command::new("sftp");
            c.arg("-b").arg(dir.path("batch")).arg("-D").arg(wrapper);
            c
        },
        &|_| Command::new(SFTP_SERVER),
    );
    let expected = [
        "init 3".to_owned(),
        format!(
            "upload {} bytes=1048576 sha256={} complete",
            dir.path("remote-up.bin"),
            sha256sum(&dir.path("up.bin"))
        ),
        format!(
            "download {} bytes=1060921 sha256={} complete",
            dir.path("remote-down.bin"),
            sha256sum(&dir.path("down.bin"))
        ),
    ];
    let events = describe_all(&run(&mut SftpTracker::new(), &script));
    assert_eq!(events, expected);
    assert_eq!(sha256sum(&dir.path("remote-down.bin")), sha256sum(&dir.path("down.bin")));
    let rechunked = describe_all(&run_chunked(&mut SftpTracker::new(), &script, &mut Rng::new(9)));
    assert_eq!(rechunked, expected);
}

#[test]
fn live_legacy_scp_upload_download_and_recursive() {
    require_tools();
    let dir = TempDir::new("scp");
    let mut rng = Rng::new(0x5c9);
    for sub in ["remote", "local", "tree/sub"] {
        fs::create_dir_all(dir.0.join(sub)).expect("mkdir");
    }
    fs::write(dir.path("up.bin"), rng.bytes(1 << 20)).expect("write");
    fs::write(dir.path("remote/down.bin"), rng.bytes((1 << 20) - 1)).expect("write");
    fs::write(dir.path("tree/x.bin"), rng.bytes(5000)).expect("write");
    fs::write(dir.path("tree/sub/y.txt"), b"y\n").expect("write");
    let scp_with = |args: Vec<String>| {
        move |wrapper: &str| {
            let mut c = Command::new("scp");
            c.arg("-O").arg("-S").arg(wrapper).args(&args);
            c
        }
    };
    let remote = |command: Option<&str>| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(command.expect("scp passes a remote command"));
        c
    };
    let track = |(command, script): (Option<String>, Script)| {
        let command = command.expect("a command");
        let mut t = ScpTracker::from_command(&command).expect("a legacy scp command");
        (command, describe_all(&run(&mut t, &script)))
    };
    let remote_dir = format!("host:{}/", dir.path("remote"));

    let (command, events) =
        track(relay(&dir, &scp_with(vec![dir.path("up.bin"), remote_dir.clone()]), &remote));
    assert_eq!(command, format!("scp -t {}/", dir.path("remote")));
    assert_eq!(
        events,
        [format!(
            "upload {} bytes=1048576 sha256={} complete",
            dir.path("remote/up.bin"),
            sha256sum(&dir.path("up.bin"))
        )]
    );

    let (command, events) = track(relay(
        &dir,
        &scp_with(vec![format!("host:{}", dir.path("remote/down.bin")), dir.path("local/")]),
        &remote,
    ));
    assert_eq!(command, format!("scp -f {}", dir.path("remote/down.bin")));
    assert_eq!(
        events,
        [format!(
            "download {} bytes=1048575 sha256={} complete",
            dir.path("remote/down.bin"),
            sha256sum(&dir.path("local/down.bin"))
        )]
    );

    let (_, events) =
        track(relay(&dir, &scp_with(vec!["-r".to_owned(), dir.path("tree"), remote_dir]), &remote));
    let mut events = events;
    events.sort();
    let mut expected = vec![
        format!(
            "upload {} bytes=5000 sha256={} complete",
            dir.path("remote/tree/x.bin"),
            sha256sum(&dir.path("remote/tree/x.bin"))
        ),
        format!(
            "upload {} bytes=2 sha256={} complete",
            dir.path("remote/tree/sub/y.txt"),
            sha256sum(&dir.path("tree/sub/y.txt"))
        ),
    ];
    expected.sort();
    assert_eq!(events, expected);
}
