//! Feeding the transfer trackers in tests, through their public API only: scripts of chunks per
//! stream, one line per event to write expectations in, and feeding a script whole or cut into
//! random chunks. Included by path (one copy) in the crate's unit tests
//! (`src/transfer/testing.rs`) and in `tests/transfer_openssh.rs`; each uses what it needs.
#![allow(dead_code)]

use format::transfer::{Outcome, ScpTracker, SftpTracker, Stream, TransferEvent};
use test_util::Rng;

pub const C: Stream = Stream::ClientToServer;
pub const S: Stream = Stream::ServerToClient;

pub type Script = Vec<(Stream, Vec<u8>)>;

/// One line per event, the shape the expectations are written in.
pub fn describe(event: &TransferEvent) -> String {
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

pub fn describe_all(events: &[TransferEvent]) -> Vec<String> {
    events.iter().map(describe).collect()
}

/// Both trackers, fed the same way.
pub trait Feed {
    fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<TransferEvent>;
    fn end(&mut self) -> Vec<TransferEvent>;
}

impl Feed for SftpTracker {
    fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<TransferEvent> {
        match stream {
            Stream::ClientToServer => self.client_to_server(bytes),
            Stream::ServerToClient => self.server_to_client(bytes),
        }
    }
    fn end(&mut self) -> Vec<TransferEvent> {
        self.finish()
    }
}

impl Feed for ScpTracker {
    fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<TransferEvent> {
        match stream {
            Stream::ClientToServer => self.client_to_server(bytes),
            Stream::ServerToClient => self.server_to_client(bytes),
        }
    }
    fn end(&mut self) -> Vec<TransferEvent> {
        self.finish()
    }
}

pub fn run(tracker: &mut dyn Feed, script: &[(Stream, Vec<u8>)]) -> Vec<TransferEvent> {
    let mut events = Vec::new();
    for (stream, bytes) in script {
        events.extend(tracker.push(*stream, bytes));
    }
    events.extend(tracker.end());
    events
}

/// Feeds a script cut into random chunks (streams keep their order relative to each other).
pub fn run_chunked(
    tracker: &mut dyn Feed,
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
