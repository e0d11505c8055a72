//! Helpers shared by the trackers' unit tests: scripts of chunks per stream, one line per
//! event to write expectations in, and feeding a script whole, re-chunked or cut everywhere.

use sha2::{Digest, Sha256};
use test_util::Rng;

use super::{Outcome, Stream, TransferEvent};

pub(super) const C: Stream = Stream::ClientToServer;
pub(super) const S: Stream = Stream::ServerToClient;

pub(super) type Script = Vec<(Stream, Vec<u8>)>;

pub(super) fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(super) fn sha_hex(data: &[u8]) -> String {
    hex::encode(sha(data))
}

/// One line per event, the shape the expectations are written in.
pub(super) fn describe(event: &TransferEvent) -> String {
    match event {
        TransferEvent::SftpInit { version } => format!("init {version}"),
        TransferEvent::File(f) => {
            let sha = f.sha256_hex().unwrap_or_else(|| "none".to_owned());
            let done = if f.complete { "complete" } else { "incomplete" };
            let mut line =
                format!("{} {} bytes={} sha256={sha} {done}", f.direction, f.path, f.bytes);
            if !f.notes.is_empty() {
                let notes: Vec<String> = f.notes.iter().map(ToString::to_string).collect();
                line.push_str(&format!(" ({})", notes.join("; ")));
            }
            line
        }
        TransferEvent::Op(op) => {
            let mut line = format!("{} {}", op.op, op.path);
            if let Some(target) = &op.target {
                line.push_str(&format!(" -> {target}"));
            }
            if let Some(mode) = op.attrs.and_then(|a| a.permissions) {
                line.push_str(&format!(" mode={mode:o}"));
            }
            match &op.outcome {
                Outcome::Ok => line.push_str(" ok"),
                Outcome::Failed(s) => line.push_str(&format!(" failed: {s}")),
                Outcome::Unanswered => line.push_str(" unanswered"),
            }
            line
        }
        TransferEvent::ScpError { stream, fatal, message } => {
            format!("scp-error {stream} fatal={fatal} {message}")
        }
        TransferEvent::TrackingStopped { error } => format!("stopped: {error}"),
    }
}

pub(super) fn describe_all(events: &[TransferEvent]) -> Vec<String> {
    events.iter().map(describe).collect()
}

/// Both trackers, fed the same way.
pub(super) trait Tracker {
    fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<TransferEvent>;
    fn end(&mut self) -> Vec<TransferEvent>;
    fn memory(&self) -> usize;
}

pub(super) fn run(tracker: &mut dyn Tracker, script: &[(Stream, Vec<u8>)]) -> Vec<TransferEvent> {
    let mut events = Vec::new();
    for (stream, bytes) in script {
        events.extend(tracker.push(*stream, bytes));
    }
    events.extend(tracker.end());
    events
}

#[track_caller]
pub(super) fn check(actual: &[String], expected: &[&str]) {
    let actual: Vec<&str> = actual.iter().map(String::as_str).collect();
    assert_eq!(actual, expected);
}

/// Feeds a script cut into random chunks (streams keep their order
/// relative to each other).
pub(super) fn run_chunked(
    tracker: &mut dyn Tracker,
    script: &[(Stream, Vec<u8>)],
    rng: &mut Rng,
) -> Vec<TransferEvent> {
    let mut events = Vec::new();
    for (stream, bytes) in script {
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(64 * 1024));
            let (chunk, tail) = rest.split_at(n);
            events.extend(tracker.push(*stream, chunk));
            rest = tail;
        }
    }
    events.extend(tracker.end());
    events
}

/// Every way of cutting each message in two, and one byte at a time,
/// gives the same events as the whole messages.
#[track_caller]
pub(super) fn check_every_split(new: &dyn Fn() -> Box<dyn Tracker>, script: &[(Stream, Vec<u8>)]) {
    let whole = describe_all(&run(new().as_mut(), script));
    for (i, (stream, bytes)) in script.iter().enumerate() {
        for cut in 1..bytes.len() {
            let mut split: Script = script[..i].to_vec();
            split.push((*stream, bytes[..cut].to_vec()));
            split.push((*stream, bytes[cut..].to_vec()));
            split.extend_from_slice(&script[i + 1..]);
            let got = describe_all(&run(new().as_mut(), &split));
            assert_eq!(got, whole, "message {i} cut at {cut}");
        }
    }
    let bytewise: Script =
        script.iter().flat_map(|(s, b)| b.iter().map(move |&x| (*s, vec![x]))).collect();
    assert_eq!(describe_all(&run(new().as_mut(), &bytewise)), whole);
    // Consecutive messages of one stream in one chunk.
    let mut merged: Script = Vec::new();
    for (stream, bytes) in script {
        match merged.last_mut() {
            Some((s, b)) if s == stream => b.extend_from_slice(bytes),
            _ => merged.push((*stream, bytes.clone())),
        }
    }
    assert_eq!(describe_all(&run(new().as_mut(), &merged)), whole);
}
