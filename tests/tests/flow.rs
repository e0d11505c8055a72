//! Flow control through the gateway with real OpenSSH at both ends: a stream that goes both
//! ways at once (a program that echoes what it reads) must never stall, because the gateway's
//! relay in one direction never waits on the other. (A client that ignores its window is in
//! `hostile.rs`.)

use std::io::{Read as _, Write as _};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::gateway::World;
use sha2::{Digest as _, Sha256};

const MIB: usize = 1024 * 1024;

/// Printable, not compressible by accident, the same every run.
fn payload(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut rng = test_util::Rng::new(0x9e37_79b9_7f4a_7c15);
    while out.len() < len {
        for b in rng.next_u64().to_le_bytes() {
            out.push(b'!' + b % 94);
        }
        if out.len() % 77 == 76 {
            out.push(b'\n');
        }
    }
    out.truncate(len);
    out
}

/// `ssh gw cat` fed 64 MiB while the echo is read back, concurrently: every byte comes
/// back, in order. Without flow control per channel this stalled after 25-32 MiB (the
/// handler waited for the target's window inside the connection's loop, so the client's
/// window adjustments for the echo were never read).
#[test]
fn a_stream_echoed_back_while_it_is_sent_arrives_whole() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let data = payload(64 * MIB);
    let want = Sha256::digest(&data);
    let mut child = w
        .ssh_cmd("alice", &code, &["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let sent = Arc::new(AtomicU64::new(0));
    let writer = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            for chunk in data.chunks(256 * 1024) {
                if stdin.write_all(chunk).is_err() {
                    return;
                }
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        })
    };
    let got = Arc::new(AtomicU64::new(0));
    let reader = {
        let got = got.clone();
        std::thread::spawn(move || {
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        hash.update(&buf[..n]);
                        if got.fetch_add(n as u64, Ordering::Relaxed) + n as u64
                            == (64 * MIB) as u64
                        {
                            break;
                        }
                    }
                }
            }
            hash.finalize()
        })
    };
    // A watchdog, not a speed limit: the stream fails only if it stops moving for 30 s.
    let mut last = (0, Instant::now());
    while got.load(Ordering::Relaxed) < (64 * MIB) as u64 {
        std::thread::sleep(Duration::from_millis(200));
        let now = got.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!(
                "the echo stalled: {} of 64 MiB sent, {} MiB echoed back, nothing moved for 30 s",
                sent.load(Ordering::Relaxed) / MIB as u64,
                now / MIB as u64
            );
        }
    }
    writer.join().expect("writer");
    let echoed = reader.join().expect("reader");
    assert_eq!(echoed, want, "the echo differs from what was sent");
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    // The session ends with a sealed recording that holds both directions.
    let rec = w.recording_of(&code, 30);
    let v = w.cli(&["recording", "verify", rec.to_str().expect("utf-8")]);
    assert_eq!(v.code, 0, "{}", v.all());
}

/// An honest client that sends faster than the target reads (here the target does not read
/// at all for 3 s) is held back by its window, not cut, and everything arrives: the window is
/// given back as the target takes the bytes, never on receipt. (Granted on receipt, the
/// gateway's queue would grow past the window and cut this honest client.)
#[test]
fn a_target_slower_than_the_client_gets_every_byte() {
    let w = World::start();
    let code = w.grant("db-1", None);
    let file = w.dir.path().join("upload");
    std::fs::write(&file, payload(32 * MIB)).expect("payload");
    let out = w
        .ssh_cmd("alice", &code, &["sleep 3; wc -c"])
        .stdin(std::fs::File::open(&file).expect("payload"))
        .output()
        .expect("ssh runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (32 * MIB).to_string(), "{err}");
    assert!(out.status.success(), "{err}");
}
