//! Plays recordings made by the writer with the real asciinema 2.4 CLI
//! (`pip install asciinema==2.4.0`): the `"breakglass"` header key and the `b` annotations
//! must not disturb `asciinema cat` or `asciinema play`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use format::cast::{CastWriter, Header, Stream, complete_len, parse_bytes};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const INSTALL: &str = "asciinema 2.4.0 is required for this test: pip install asciinema==2.4.0";

/// Runs `asciinema ARGS`, after checking that asciinema 2.4 is what is installed.
fn asciinema(args: &[&str]) -> Result<Output, String> {
    let version = Command::new("asciinema")
        .arg("--version")
        .output()
        .map_err(|e| format!("{INSTALL} (running `asciinema --version` failed: {e})"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if !version.starts_with("asciinema 2.4") {
        return Err(format!("{INSTALL} (found {version:?})"));
    }
    Command::new("asciinema")
        .args(args)
        .env("PYTHONIOENCODING", "utf-8")
        .output()
        .map_err(|e| format!("running asciinema {args:?}: {e}"))
}

/// Writes a recording with every event kind, a split UTF-8 sequence, binary exec output,
/// stderr and awkward characters. Returns the exact text `asciinema cat` should print.
fn write_sample(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let header = Header {
        width: 80,
        height: 24,
        timestamp: Some(1_700_000_000),
        term: Some("xterm-256color".to_owned()),
        shell: Some("/bin/bash".to_owned()),
        command: Some("cat /bin/ls".to_owned()),
        title: Some("breakglass sample".to_owned()),
        breakglass: Some(serde_json::json!({
            "grant": "g-1", "requester": "alice", "approvers": ["bob"],
            "host": "db1", "login": "root", "approval_sha256": ["00ff"],
        })),
    };
    let ms = Duration::from_millis;
    let mut w = CastWriter::new(std::fs::File::create(path)?, &header)?;
    let price = "price: 5 €\r\n".as_bytes();
    w.output(ms(10), "\u{1b}[1;31mred\u{1b}[0m 'q\"uote' \\ back\r\n".as_bytes())?;
    w.output(ms(20), &price[..11])?; // splits "€"
    w.output(ms(30), &price[11..])?;
    w.input(ms(40), b"cat /bin/ls\r")?;
    w.resize(ms(50), 100, 30)?;
    w.marker(ms(60), "exec: cat /bin/ls")?;
    w.exec_stdout(ms(70), b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe binary\r\n")?;
    w.exec_stderr(ms(80), "stderr: é\u{2028}done\r\n".as_bytes())?;
    // A transfer channel's raw bytes: kept, and skipped by players.
    w.binary(ms(85), true, 3, b"\x00\x00\x00\x05\x01sftp upload")?;
    w.binary(ms(86), false, 3, b"\x00\x00\x00\x05\x02\xff")?;
    w.maybe_flush(ms(80))?;
    w.marker(ms(90), "exit 0")?;
    w.finish(ms(100))?;
    Ok(concat!(
        "\u{1b}[1;31mred\u{1b}[0m 'q\"uote' \\ back\r\n",
        "price: 5 €\r\n",
        "\u{7f}ELF\u{2}\u{1}\u{1}\u{0}\u{0}\u{FFFD}\u{FFFD} binary\r\n",
        "stderr: é\u{2028}done\r\n",
    )
    .to_owned())
}

#[test]
fn asciinema_cat_prints_the_recorded_output() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.cast");
    let expected = write_sample(&path)?;

    let out = asciinema(&["cat", path.to_str().ok_or("path")?])?;
    assert!(out.status.success(), "asciinema cat failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout)?, expected);

    let cast = parse_bytes(&std::fs::read(&path)?)?;
    assert_eq!(cast.output_text(), expected, "our reader agrees with asciinema");
    assert!(cast.events.iter().any(|e| e.code == "b"), "the sample has annotations");
    assert_eq!(cast.binary(true)?, b"\x00\x00\x00\x05\x01sftp upload");
    assert_eq!(cast.binary(false)?, b"\x00\x00\x00\x05\x02\xff");
    assert_eq!(
        cast.raw_stream(Stream::Output)?,
        b"\x1b[1;31mred\x1b[0m 'q\"uote' \\ back\r\nprice: 5 \xe2\x82\xac\r\n\
          \x7fELF\x02\x01\x01\x00\x00\xff\xfe binary\r\n"
    );
    Ok(())
}

#[test]
fn asciinema_play_under_a_pty_shows_the_output() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.cast");
    let expected = write_sample(&path)?;
    asciinema(&["--version"])?;

    // `asciinema play` wants a terminal: run it inside a pseudo-terminal with util-linux `script`.
    let play = format!("asciinema play -s 1000 -i 0.1 '{}'", path.display());
    let out = Command::new("script")
        .args(["-qec", &play, "/dev/null"])
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running `script` (apt-get install bsdutils): {e}"))?;
    assert!(
        out.status.success(),
        "asciinema play failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The pty turns "\n" into "\r\n": "\r\r\n" is "\r\n" from the recording.
    let shown = String::from_utf8(out.stdout)?.replace("\r\r\n", "\r\n");
    assert_eq!(shown, expected);
    Ok(())
}

#[test]
fn a_crash_tail_breaks_asciinema_until_cut_at_complete_len() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.cast");
    write_sample(&path)?;
    let file = std::fs::read(&path)?;
    let crashed = &file[..file.len() - 5];
    let crashed_path = dir.path().join("crashed.cast");
    std::fs::write(&crashed_path, crashed)?;

    let cast = parse_bytes(crashed)?;
    assert!(cast.truncated);
    let out = asciinema(&["cat", crashed_path.to_str().ok_or("path")?])?;
    assert!(!out.status.success(), "asciinema 2.4 fails on a cut-off last line");

    std::fs::write(&crashed_path, &crashed[..complete_len(crashed)])?;
    let out = asciinema(&["cat", crashed_path.to_str().ok_or("path")?])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout)?, cast.output_text());
    Ok(())
}
