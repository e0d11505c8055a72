//! One session's recording: the asciicast file, the command tracker, the file-transfer
//! trackers, and the stream of session events to the database.
//!
//! Everything here is fed from the data path, so it only does cheap in-memory work and
//! buffered file appends; the database is written by a separate task fed through a bounded
//! queue, so a slow or absent database never stalls a keystroke (events that do not fit are
//! counted and dropped from the database only: the recording has them).
//!
//! Every byte of every channel is written to the file: a terminal's as `o`/`i` events, and
//! the raw bytes of a channel that carries no terminal (sftp, scp, forwarded connections) as
//! `d` events. Trackers (commands, transfers) summarise on top of the recording; what they
//! guess never removes a byte from it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use format::cast::{CastWriter, Header, Summary};
use format::commands::{CommandTracker, StdinLines};
use format::store::RecordingWriter;
use format::transfer::{Outcome, ScpTracker, SftpTracker, TransferEvent, reads_commands_on_stdin};
use russh::ChannelId;
use serde_json::{Value, json};
use shared::core::{RequestId, SessionEventKind, Timestamp};
use shared::ports::SessionEvent;
use tokio::sync::mpsc;

/// A recording writer that counts the bytes it writes ([`shared::telemetry::RECORDED_BYTES`]).
/// It sits under the asciicast writer's line buffer, so it counts once per flushed batch, not
/// per relayed packet.
pub struct Counted {
    inner: Box<dyn RecordingWriter>,
    bytes: metrics::Counter,
}

impl Counted {
    pub fn new(inner: Box<dyn RecordingWriter>) -> Self {
        Self { inner, bytes: metrics::counter!(shared::telemetry::RECORDED_BYTES) }
    }
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counted").field(&self.inner).finish()
    }
}

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.increment(u64::try_from(n).unwrap_or(u64::MAX));
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl RecordingWriter for Counted {
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
}

/// What kind of work a channel does, once the client said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    Shell,
    Exec(String),
    Subsystem(String),
}

/// A file-transfer observer for one channel.
#[derive(Debug)]
enum Transfer {
    Sftp(SftpTracker),
    Scp(ScpTracker),
}

#[derive(Debug, Default)]
struct ChannelState {
    pty: Option<(u16, u16)>,
    term: Option<String>,
    kind: Option<ChannelKind>,
    commands: Option<CommandTracker>,
    /// Lines fed to a shell on stdin with no terminal (`ssh gw bash < script.sh`).
    stdin_lines: Option<StdinLines>,
    transfer: Option<Transfer>,
    /// A forwarded connection (port, agent, X11): its bytes are not terminal output.
    tunnel: bool,
}

/// The recording of one session. Callers lock it briefly around each call.
#[derive(Debug)]
pub struct Recording {
    request_id: RequestId,
    /// The recording's name in the store.
    name: String,
    header_meta: Value,
    started: Instant,
    started_at: Timestamp,
    /// The file, created with the recording; the header goes in when the first channel starts.
    file: Option<Box<dyn RecordingWriter>>,
    /// Straight to the file: the writer keeps its own buffer and hands over whole lines.
    writer: Option<CastWriter<Box<dyn RecordingWriter>>>,
    channels: HashMap<ChannelId, ChannelState>,
    events: mpsc::Sender<SessionEvent>,
    /// Events the database queue had no room for (they are in the file).
    events_dropped: u64,
    record_input: bool,
    commands: u64,
    exit_status: Option<i64>,
    failed: Option<String>,
    /// Set by [`Recording::finish`]: nothing is recorded or reported after the end marker.
    finished: bool,
    /// Something was handed to the writer since the last [`Recording::tick`].
    unflushed: bool,
    /// When a terminal last moved (output, input, resize): its screen sleeps after
    /// [`SCREEN_QUIET`] without.
    active_at: Duration,
    /// In the shared flusher's list (see [`Recording::wants_ticks`]).
    scheduled: bool,
}

/// A terminal with no traffic for this long has its emulated screen put to sleep
/// ([`CommandTracker::sleep`]): an idle shell then costs a few KiB instead of its grid. A
/// pause this short falls mid-typing, or between two packets that split an escape sequence
/// or a UTF-8 character; the screen wakes as it was, inside that sequence too. (It was 10 s
/// for a while: a screen put to sleep mid-sequence woke outside it and drew the rest as
/// text. The flaky tab-completion test blamed on sleeping was the test typing before the
/// shell had drawn its prompt, and fails the same way with no sleep at all.)
pub const SCREEN_QUIET: Duration = Duration::from_secs(2);

/// Session events waiting for the database, per session, at most.
pub const EVENT_QUEUE: usize = 4096;

impl Recording {
    /// A recording written to `file`, which the store created as `name`
    /// ([`format::store::RecordingStore::create`]); its header is written once the first
    /// channel starts.
    pub fn new(
        request_id: RequestId,
        name: String,
        file: Box<dyn RecordingWriter>,
        header_meta: Value,
        started_at: Timestamp,
        events: mpsc::Sender<SessionEvent>,
        record_input: bool,
    ) -> Self {
        Self {
            request_id,
            name,
            header_meta,
            started: Instant::now(),
            started_at,
            file: Some(file),
            writer: None,
            channels: HashMap::new(),
            events,
            events_dropped: 0,
            record_input,
            commands: 0,
            exit_status: None,
            failed: None,
            finished: false,
            unflushed: false,
            active_at: Duration::ZERO,
            scheduled: false,
        }
    }

    /// The recording's name in the store.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Time since the session started: the recording's clock.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A write error, once one happened (the recording is then incomplete).
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn event(&mut self, kind: SessionEventKind, detail: Value) {
        if self.finished {
            return;
        }
        let offset = self.elapsed();
        let at = self.started_at.plus_secs(i64::try_from(offset.as_secs()).unwrap_or(0));
        let sent = self.events.try_send(SessionEvent {
            request_id: self.request_id,
            at,
            offset_ms: i64::try_from(offset.as_millis()).unwrap_or(i64::MAX),
            kind,
            detail,
        });
        if let Err(mpsc::error::TrySendError::Full(_)) = sent {
            if self.events_dropped == 0 {
                tracing::warn!(recording = %self.name, "session events arrive faster than the database takes them; the rest are in the recording only");
            }
            self.events_dropped += 1;
        }
    }

    /// Whether the recording was finished: later calls record nothing.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn io<T>(&mut self, r: std::io::Result<T>) {
        self.unflushed = true;
        if let Err(e) = r
            && self.failed.is_none()
        {
            tracing::error!(recording = %self.name, error = %e, "recording write failed");
            self.failed = Some(e.to_string());
        }
    }

    /// A forwarded connection the scope allows opens on `ch` (a port forward, a use of the
    /// user's agent, an X11 client): recorded as a marker `label` and a `forward` event with
    /// `detail`; the bytes it carries are written as raw `d` events, out of the terminal's.
    pub fn forward(&mut self, ch: ChannelId, label: &str, detail: Value) {
        if self.finished {
            return;
        }
        let t = self.elapsed();
        self.channels.entry(ch).or_default().tunnel = true;
        self.ensure_file();
        if let Some(w) = self.writer.as_mut() {
            let r = w.marker(t, label);
            self.io(r);
        }
        self.event(SessionEventKind::Forward, detail);
    }

    /// Records a PTY request for `ch`.
    pub fn pty(&mut self, ch: ChannelId, term: &str, cols: u32, rows: u32) {
        let size = (clamp(cols, 80), clamp(rows, 24));
        let st = self.channels.entry(ch).or_default();
        st.pty = Some(size);
        st.term = Some(term.to_owned());
        if let Some(w) = self.writer.as_mut() {
            let t = self.started.elapsed();
            let r = w.resize(t, size.0, size.1);
            self.io(r);
        }
    }

    /// The channel starts a shell, an exec or a subsystem. Opens the file on the first one.
    pub fn start(&mut self, ch: ChannelId, kind: ChannelKind) {
        let t = self.elapsed();
        let st = self.channels.entry(ch).or_default();
        let (cols, rows) = st.pty.unwrap_or((80, 24));
        let term = st.term.clone();
        match &kind {
            // Whatever started it (a login shell, `ssh -t gw bash -i`, `ssh -t gw sudo -i`), a
            // channel with a terminal is read for commands: what the user typed is on screen.
            ChannelKind::Shell | ChannelKind::Exec(_) if st.pty.is_some() => {
                st.commands = Some(CommandTracker::new(rows, cols))
            }
            // scp never asks for a terminal: an exec with one is interactive, whatever the
            // program is called.
            ChannelKind::Exec(cmd) if st.pty.is_none() => {
                st.transfer = ScpTracker::from_command(cmd).map(Transfer::Scp);
                if st.transfer.is_none() && reads_commands_on_stdin(cmd) {
                    st.stdin_lines = Some(StdinLines::default());
                }
            }
            ChannelKind::Subsystem(name) if name == "sftp" => {
                st.transfer = Some(Transfer::Sftp(SftpTracker::new()))
            }
            _ => {}
        }
        st.kind = Some(kind.clone());
        if self.writer.is_none() {
            let command = match &kind {
                ChannelKind::Exec(c) => Some(c.clone()),
                ChannelKind::Subsystem(s) => Some(format!("subsystem {s}")),
                ChannelKind::Shell => None,
            };
            self.open_file(cols, rows, term, command);
        }
        let (label, kind_name, detail) = match &kind {
            ChannelKind::Shell => ("shell".to_owned(), SessionEventKind::Shell, json!({})),
            ChannelKind::Exec(c) => {
                (format!("exec: {c}"), SessionEventKind::Exec, json!({ "command": c }))
            }
            ChannelKind::Subsystem(s) => {
                (format!("subsystem: {s}"), SessionEventKind::Subsystem, json!({ "name": s }))
            }
        };
        if let Some(w) = self.writer.as_mut() {
            let r = w.marker(t, &label);
            self.io(r);
        }
        if matches!(kind, ChannelKind::Exec(_)) {
            self.commands += 1;
        }
        self.event(kind_name, detail);
    }

    /// Opens the file with a default header if no channel started one yet: bytes that arrive
    /// first (a forwarded connection with no shell, data before the exec) are still written.
    fn ensure_file(&mut self) {
        if self.writer.is_none() && self.file.is_some() && self.failed.is_none() {
            // The size of a terminal already asked for, if any (pty-req comes before env).
            let (size, term) = self
                .channels
                .values()
                .find_map(|st| st.pty.map(|p| (p, st.term.clone())))
                .unwrap_or(((80, 24), None));
            self.open_file(size.0, size.1, term, None);
        }
    }

    /// Creates the file and writes the header (the first channel's terminal size).
    fn open_file(&mut self, cols: u16, rows: u16, term: Option<String>, command: Option<String>) {
        let header = Header {
            width: cols,
            height: rows,
            timestamp: u64::try_from(self.started_at.unix()).ok(),
            term,
            shell: None,
            command,
            title: self.header_meta["code"].as_str().map(|c| format!("breakglass {c}")),
            breakglass: Some(self.header_meta.clone()),
        };
        let opened = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("the recording file was already used"))
            .and_then(|f| CastWriter::new(f, &header));
        match opened {
            Ok(w) => self.writer = Some(w),
            Err(e) => self.io::<()>(Err(e)),
        }
    }

    /// Bytes the user sent on `ch`.
    pub fn input(&mut self, ch: ChannelId, data: &[u8]) {
        if self.finished {
            return;
        }
        let t = self.elapsed();
        self.active_at = t;
        let mut found = Vec::new();
        let mut from_stdin = Vec::new();
        let mut transfers = Vec::new();
        let mut binary = false;
        if let Some(st) = self.channels.get_mut(&ch) {
            if let Some(c) = st.commands.as_mut() {
                found = c.input(data);
            }
            if let Some(l) = st.stdin_lines.as_mut() {
                from_stdin = l.input(data);
            }
            match st.transfer.as_mut() {
                Some(Transfer::Sftp(s)) => transfers = s.client_to_server(data),
                Some(Transfer::Scp(s)) => transfers = s.client_to_server(data),
                None => {}
            }
            binary = st.transfer.is_some() || st.tunnel;
        }
        // Transfers and forwarded connections keep their raw bytes (`d`); terminals and plain
        // execs their text (`i`).
        self.ensure_file();
        if self.record_input
            && let Some(w) = self.writer.as_mut()
        {
            let r = if binary { w.binary(t, true, ch.number(), data) } else { w.input(t, data) };
            self.io(r);
        }
        self.commands_found(t, found, None);
        self.commands_found(t, from_stdin, Some("stdin"));
        self.transfers_found(ch, t, transfers);
    }

    /// Extended data the user sent on `ch` (rare: no OpenSSH client sends it). Kept raw.
    pub fn input_extended(&mut self, ch: ChannelId, code: u32, data: &[u8]) {
        if self.finished {
            return;
        }
        let t = self.elapsed();
        self.ensure_file();
        if let Some(w) = self.writer.as_mut() {
            let r = w
                .marker(t, &format!("client extended data ({code}), {} bytes", data.len()))
                .and_then(|()| w.binary(t, true, ch.number(), data));
            self.io(r);
        }
    }

    /// Bytes the target sent on `ch` (stdout).
    pub fn output(&mut self, ch: ChannelId, data: &[u8]) {
        if self.finished {
            return;
        }
        let t = self.elapsed();
        self.active_at = t;
        let mut found = Vec::new();
        let mut transfers = Vec::new();
        let mut pty = true;
        let mut binary = false;
        if let Some(st) = self.channels.get_mut(&ch) {
            pty = st.pty.is_some();
            if let Some(c) = st.commands.as_mut() {
                found = c.output(data);
            }
            match st.transfer.as_mut() {
                Some(Transfer::Sftp(s)) => transfers = s.server_to_client(data),
                Some(Transfer::Scp(s)) => transfers = s.server_to_client(data),
                None => {}
            }
            binary = st.transfer.is_some() || st.tunnel;
        }
        self.ensure_file();
        if let Some(w) = self.writer.as_mut() {
            let r = if binary {
                w.binary(t, false, ch.number(), data)
            } else if pty {
                w.output(t, data)
            } else {
                w.exec_stdout(t, data)
            };
            self.io(r);
        }
        self.commands_found(t, found, None);
        self.transfers_found(ch, t, transfers);
    }

    /// Bytes the target sent on `ch`'s stderr.
    pub fn stderr(&mut self, _ch: ChannelId, data: &[u8]) {
        if self.finished {
            return;
        }
        let t = self.elapsed();
        self.ensure_file();
        if let Some(w) = self.writer.as_mut() {
            let r = w.exec_stderr(t, data);
            self.io(r);
        }
    }

    pub fn resize(&mut self, ch: ChannelId, cols: u32, rows: u32) {
        if self.finished {
            return;
        }
        let t = self.elapsed();
        self.active_at = t;
        let (c, r) = (clamp(cols, 80), clamp(rows, 24));
        if let Some(st) = self.channels.get_mut(&ch) {
            st.pty = Some((c, r));
            if let Some(tr) = st.commands.as_mut() {
                tr.resize(r, c);
            }
        }
        if let Some(w) = self.writer.as_mut() {
            let res = w.resize(t, c, r);
            self.io(res);
        }
    }

    /// The target reported a channel's exit status. Its trackers stay on until it closes
    /// ([`Recording::channel_done`]): with a terminal, OpenSSH may send the status before the
    /// last output it read from the pty (the echo of the `exit` just typed, say), and a command
    /// on that output must still be found.
    pub fn exit_status(&mut self, status: u32) {
        if self.finished {
            return;
        }
        self.exit_status = Some(i64::from(status));
        let t = self.elapsed();
        if let Some(w) = self.writer.as_mut() {
            let r = w.marker(t, &format!("exit {status}"));
            self.io(r);
        }
    }

    /// Something worth a marker and a session event (a refused forward, an agent request).
    pub fn note(&mut self, kind: SessionEventKind, label: &str, detail: Value) {
        if self.finished {
            return;
        }
        let t = self.elapsed();
        self.ensure_file();
        if let Some(w) = self.writer.as_mut() {
            let r = w.marker(t, label);
            self.io(r);
        }
        self.event(kind, detail);
    }

    /// A channel closed: anything its trackers still hold is reported.
    pub fn channel_done(&mut self, ch: ChannelId) {
        if self.finished {
            return;
        }
        let t = self.elapsed();
        let Some(st) = self.channels.get_mut(&ch) else { return };
        let found = st.commands.as_mut().map(CommandTracker::finish).unwrap_or_default();
        let from_stdin = st.stdin_lines.as_mut().map(StdinLines::finish).unwrap_or_default();
        let transfers = match st.transfer.as_mut() {
            Some(Transfer::Sftp(s)) => s.finish(),
            Some(Transfer::Scp(s)) => s.finish(),
            None => Vec::new(),
        };
        st.commands = None;
        st.stdin_lines = None;
        st.transfer = None;
        self.commands_found(t, found, None);
        self.commands_found(t, from_stdin, Some("stdin"));
        self.transfers_found(ch, t, transfers);
    }

    /// Commands read off a terminal (`source` none) or lines a shell read on stdin
    /// (`Some("stdin")`): a marker in the recording and a `command` event each.
    fn commands_found(&mut self, t: Duration, found: Vec<String>, source: Option<&str>) {
        for cmd in found {
            self.commands += 1;
            if let Some(w) = self.writer.as_mut() {
                let r = w.marker(t, &command_label(&cmd));
                self.io(r);
            }
            let mut detail = json!({ "command": cmd });
            if let Some(source) = source {
                detail["source"] = source.into();
            }
            self.event(SessionEventKind::Command, detail);
        }
    }

    fn transfers_found(&mut self, ch: ChannelId, t: Duration, found: Vec<TransferEvent>) {
        // A tracker that gave up has nothing more to say about the channel: from then on its
        // bytes are recorded as text, so a replay shows them (a program that only looked like
        // scp, or an scp that broke).
        if found.iter().any(|e| matches!(e, TransferEvent::TrackingStopped { .. }))
            && let Some(st) = self.channels.get_mut(&ch)
        {
            st.transfer = None;
        }
        for ev in found {
            let (label, detail) = describe(&ev);
            if let Some(w) = self.writer.as_mut() {
                let r = w.marker(t, &label);
                self.io(r);
            }
            self.event(SessionEventKind::Transfer, detail);
        }
    }

    /// Whether the recording needs [`Recording::tick`] calls and is not in the shared
    /// flusher's list yet: lines wait in the writer's buffer, or a terminal's screen is awake
    /// and could sleep. `true` once, until a tick takes it off the list; the caller then puts
    /// it there ([`crate::flush::Flusher::schedule`]).
    pub fn wants_ticks(&mut self) -> bool {
        if self.scheduled || self.finished {
            return false;
        }
        self.scheduled = self.unflushed || self.screens_can_sleep();
        self.scheduled
    }

    /// Whether some terminal's screen is awake and could sleep.
    fn screens_can_sleep(&self) -> bool {
        self.channels.values().any(|st| st.commands.as_ref().is_some_and(CommandTracker::can_sleep))
    }

    /// The shared flusher's tick (every [`format::cast::FLUSH_INTERVAL`] while listed): writes
    /// the buffered lines to the file, and puts the screens of a session quiet for
    /// [`SCREEN_QUIET`] to sleep. Returns whether it stays in the list (it is taken off when
    /// nothing is left to do, and comes back with the next write).
    pub fn tick(&mut self) -> bool {
        if self.finished {
            self.scheduled = false;
            return false;
        }
        if self.unflushed {
            if let Some(w) = self.writer.as_mut() {
                let r = w.flush();
                self.io(r);
            }
            self.unflushed = false;
        }
        if self.elapsed().saturating_sub(self.active_at) >= SCREEN_QUIET {
            for st in self.channels.values_mut() {
                if let Some(c) = st.commands.as_mut() {
                    c.sleep();
                }
            }
        }
        self.scheduled = self.failed.is_none() && self.screens_can_sleep();
        self.scheduled
    }

    /// Ends the recording: a final marker, every buffer written and synced to disk. A session
    /// that never started a channel still gets a (short) recording. Returns the summary, the
    /// last exit status and the number of commands (`None` if the file cannot be written).
    pub fn finish(&mut self, end_label: &str) -> Option<(Summary, Option<i64>, u64)> {
        if self.finished {
            return None;
        }
        if self.writer.is_none() && self.failed.is_none() {
            self.open_file(80, 24, None, None);
        }
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        for ch in ids {
            self.channel_done(ch);
        }
        let t = self.elapsed();
        // From here on nothing is recorded or reported: whatever a tracker found is above.
        self.finished = true;
        if self.events_dropped > 0 {
            tracing::warn!(recording = %self.name, dropped = self.events_dropped, "session events kept in the recording only");
        }
        let mut w = self.writer.take()?;
        let r = w.marker(t, end_label);
        self.io(r);
        match w.finish(t) {
            Ok((mut file, summary)) => {
                let synced = file.sync();
                self.io(synced);
                Some((summary, self.exit_status, self.commands))
            }
            Err(e) => {
                self.io::<()>(Err(e));
                None
            }
        }
    }
}

/// The marker label of a command: the command itself, unless it starts like a marker the
/// gateway writes (`exit 0`, `upload x; rm -rf /`, `shell;id`), which a replay would take for
/// one and leave out of the command list: then it gets `command: ` in front. So no typed or
/// fed line can hide among the gateway's own markers.
fn command_label(cmd: &str) -> Cow<'_, str> {
    if format::replay::is_command(cmd) {
        Cow::Borrowed(cmd)
    } else {
        Cow::Owned(format!("command: {cmd}"))
    }
}

/// A terminal dimension as asciicast and the emulator take it; 0 (a client that does not
/// know its size, e.g. `ssh -tt` from a pipe) means the usual `default`.
fn clamp(v: u32, default: u16) -> u16 {
    if v == 0 { default } else { u16::try_from(v.min(10_000)).unwrap_or(default) }
}

/// A marker label and the database detail for a transfer event.
fn describe(ev: &TransferEvent) -> (String, Value) {
    match ev {
        TransferEvent::File(f) => {
            let notes: Vec<String> = f.notes.iter().map(ToString::to_string).collect();
            (
                format!(
                    "{} {} ({} bytes{})",
                    f.direction,
                    f.path,
                    f.bytes,
                    if f.complete { "" } else { ", incomplete" }
                ),
                json!({
                    "path": f.path, "direction": f.direction.to_string(), "bytes": f.bytes,
                    "sha256": f.sha256_hex(), "complete": f.complete, "notes": notes,
                }),
            )
        }
        TransferEvent::Op(op) => {
            let outcome = match &op.outcome {
                Outcome::Ok => "ok".to_owned(),
                Outcome::Failed(st) => format!("failed: {st}"),
                Outcome::Unanswered => "unanswered".to_owned(),
            };
            let label = match &op.target {
                Some(t) => format!("{} {} -> {t} ({outcome})", op.op, op.path),
                None => format!("{} {} ({outcome})", op.op, op.path),
            };
            (
                label,
                json!({ "op": op.op.as_str(), "path": op.path, "target": op.target, "outcome": outcome }),
            )
        }
        TransferEvent::SftpInit { version } => {
            (format!("sftp version {version}"), json!({ "op": "sftp_init", "version": version }))
        }
        TransferEvent::ScpError { stream, fatal, message } => (
            format!("scp error ({stream}): {message}"),
            json!({ "op": "scp_error", "stream": stream.to_string(), "fatal": fatal, "message": message }),
        ),
        TransferEvent::TrackingStopped { error } => (
            format!("transfer tracking stopped: {error}"),
            json!({ "op": "tracking_stopped", "error": error.to_string() }),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use format::store::{LocalFolder, RecordingStore as _};
    use russh::keys::ssh_encoding::Decode as _;

    use super::*;

    /// Channel `n`, as russh names it (shared with the other unit tests of the crate).
    pub(crate) fn channel(n: u32) -> ChannelId {
        let bytes = n.to_be_bytes();
        ChannelId::decode(&mut &bytes[..]).expect("a channel id")
    }

    /// A recording of grant bg-000001 into `dir/s.cast`, and the receiver of its events.
    pub(crate) fn recording(dir: &Path) -> (Recording, mpsc::Receiver<SessionEvent>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let file = LocalFolder::new(dir).create("s.cast").expect("recording");
        let r = Recording::new(
            "00000000-0000-0000-0000-000000000001".parse().expect("an id"),
            "s.cast".to_owned(),
            file,
            json!({ "code": "bg-000001" }),
            Timestamp::from_unix(1_700_000_000),
            tx,
            true,
        );
        (r, rx)
    }

    fn cast_of(dir: &Path) -> format::cast::Cast {
        format::cast::parse_bytes(&std::fs::read(dir.join("s.cast")).expect("file"))
            .expect("parses")
    }

    #[test]
    fn the_last_command_is_written_before_the_end_marker_and_nothing_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut r, mut events) = recording(dir.path());
        let ch = channel(0);
        r.pty(ch, "xterm", 80, 24);
        r.start(ch, ChannelKind::Shell);
        r.output(ch, b"\x1b[?2004hroot@db-1:~# ");
        // `exit` typed and echoed, its Enter sent, but the shell never answered: the tracker
        // still holds the command when the session ends.
        for b in b"exit" {
            r.input(ch, &[*b]);
            r.output(ch, &[*b]);
        }
        r.input(ch, b"\r");
        assert!(r.finish("session ended: closed").is_some());
        // Late bytes from a relay task: neither recorded nor reported.
        r.output(ch, b"\r\nlogout\r\n");
        r.note(SessionEventKind::Forward, "late note", json!({}));
        let cast = cast_of(dir.path());
        let markers: Vec<&str> =
            cast.events.iter().filter(|e| e.code == "m").map(|e| e.data.as_str()).collect();
        assert_eq!(markers.last(), Some(&"session ended: closed"), "{markers:?}");
        assert!(markers.contains(&"exit"), "the command is before the end: {markers:?}");
        assert!(!cast.output_text().contains("logout"));
        let mut kinds = Vec::new();
        while let Ok(e) = events.try_recv() {
            kinds.push((e.kind, e.detail));
        }
        assert!(
            kinds.iter().any(|(k, d)| *k == SessionEventKind::Command && d["command"] == "exit"),
            "{kinds:?}"
        );
        assert!(
            kinds.iter().all(|(k, _)| *k != SessionEventKind::Forward),
            "nothing reported after the end: {kinds:?}"
        );
    }

    /// With a terminal, OpenSSH may report the exit status before the last output it read from
    /// the pty: the echo of the `exit` just typed comes after it, and the command is still found.
    #[test]
    fn a_command_echoed_after_the_exit_status_is_still_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut r, mut events) = recording(dir.path());
        let ch = channel(0);
        r.pty(ch, "xterm", 80, 24);
        r.start(ch, ChannelKind::Shell);
        r.output(ch, b"\x1b[?2004hroot@db-1:~# ");
        r.input(ch, b"exit\r");
        r.exit_status(0);
        r.output(ch, b"exit\r\n\x1b[?2004l\rlogout\r\n");
        r.channel_done(ch);
        assert!(r.finish("session ended: closed").is_some());
        let mut commands = Vec::new();
        while let Ok(e) = events.try_recv() {
            if e.kind == SessionEventKind::Command {
                commands.push(e.detail["command"].as_str().unwrap_or_default().to_owned());
            }
        }
        assert_eq!(commands, ["exit"]);
    }

    #[test]
    fn a_program_that_only_looks_like_scp_is_recorded_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut r, _events) = recording(dir.path());
        let ch = channel(0);
        r.start(ch, ChannelKind::Exec("./scp -t .".into()));
        r.input(ch, b"echo MARK-1; id\n");
        r.output(ch, b"MARK-1\nuid=0(root)\n");
        let other = channel(1);
        // An sftp channel's bytes, and a forwarded connection's, are kept raw.
        r.start(other, ChannelKind::Subsystem("sftp".into()));
        r.input(other, b"\x00\x00\x00\x05\x01\x00\x00\x00\x03");
        let tunnel = channel(2);
        r.forward(tunnel, "port forwarding to db:5432", json!({}));
        r.output(tunnel, b"tunnelled-bytes");
        assert!(r.finish("session ended: closed").is_some());
        let cast = cast_of(dir.path());
        let mut all = cast.raw_stream(format::cast::Stream::Input).expect("input");
        all.extend(cast.raw_stream(format::cast::Stream::Output).expect("output"));
        all.extend(cast.binary(true).expect("binary in"));
        all.extend(cast.binary(false).expect("binary out"));
        let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
        for needle in [
            &b"echo MARK-1; id"[..],
            b"uid=0(root)",
            b"\x00\x00\x00\x05\x01\x00\x00\x00\x03",
            b"tunnelled-bytes",
        ] {
            assert!(has(needle), "{:?} is in the recording", String::from_utf8_lossy(needle));
        }
        // The terminal stream shows what a terminal would; raw channels stay out of it.
        assert!(!cast.output_text().contains("tunnelled-bytes"));
    }

    #[test]
    fn an_exec_with_a_terminal_is_never_a_transfer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut r, _events) = recording(dir.path());
        let ch = channel(0);
        r.pty(ch, "xterm", 80, 24);
        r.start(ch, ChannelKind::Exec("scp -t /tmp".into()));
        r.output(ch, b"$ interactive\r\n");
        assert!(r.finish("session ended: closed").is_some());
        assert!(cast_of(dir.path()).output_text().contains("$ interactive"));
    }

    /// `ssh -t gw bash -i`: an exec with a terminal is an interactive shell, read for commands
    /// off the screen like a login shell; without a terminal the same shell's commands are
    /// the lines it reads on stdin.
    #[test]
    fn an_exec_with_a_terminal_is_read_for_commands() {
        let typed = |pty: bool| {
            let dir = tempfile::tempdir().expect("tempdir");
            let (mut r, mut events) = recording(dir.path());
            let ch = channel(0);
            if pty {
                r.pty(ch, "xterm", 80, 24);
            }
            r.start(ch, ChannelKind::Exec("bash -i".into()));
            r.output(ch, b"root@db-1:~# ");
            for b in b"id -u" {
                r.input(ch, &[*b]);
                r.output(ch, &[*b]);
            }
            r.input(ch, b"\r");
            r.output(ch, b"\r\n0\r\nroot@db-1:~# ");
            assert!(r.finish("session ended: closed").is_some());
            let mut commands = Vec::new();
            while let Ok(e) = events.try_recv() {
                if e.kind == SessionEventKind::Command {
                    let command = e.detail["command"].as_str().unwrap_or_default().to_owned();
                    commands.push((command, e.detail["source"].as_str().map(str::to_owned)));
                }
            }
            commands
        };
        assert_eq!(typed(true), [("id -u".to_owned(), None)]);
        assert_eq!(typed(false), [("id -u".to_owned(), Some("stdin".to_owned()))]);
    }

    /// `ssh gw bash < script.sh`: each line the shell reads on stdin is a command, marked as
    /// from stdin, before the end marker even without a last newline; other programs' input
    /// is not indexed.
    #[test]
    fn lines_fed_to_a_shell_on_stdin_are_commands() {
        let fed = |program: &str| {
            let dir = tempfile::tempdir().expect("tempdir");
            let (mut r, mut events) = recording(dir.path());
            let ch = channel(0);
            r.start(ch, ChannelKind::Exec(program.into()));
            r.input(ch, b"echo one\n\n  uname -a\r\nrm -rf /tmp/x");
            assert!(r.finish("session ended: closed").is_some());
            let mut commands = Vec::new();
            while let Ok(e) = events.try_recv() {
                if e.kind == SessionEventKind::Command {
                    assert_eq!(e.detail["source"], "stdin");
                    commands.push(e.detail["command"].as_str().unwrap_or_default().to_owned());
                }
            }
            let markers: Vec<String> = cast_of(dir.path())
                .events
                .iter()
                .filter(|e| e.code == "m")
                .map(|e| e.data.clone())
                .collect();
            (commands, markers)
        };
        let (commands, markers) = fed("bash -s");
        assert_eq!(commands, ["echo one", "uname -a", "rm -rf /tmp/x"]);
        let end = markers.iter().position(|m| m == "session ended: closed").expect("end");
        assert!(markers[..end].contains(&"rm -rf /tmp/x".to_owned()), "{markers:?}");
        assert!(fed("cat > notes.txt").0.is_empty());
        assert!(fed("bash -c 'read x'").0.is_empty());
    }

    /// A command that starts like one of the gateway's own markers (`exit 0`, `upload …`,
    /// `shell;…`, `session ended…`), typed at a terminal or fed on stdin, is still listed by
    /// `replay --commands`: its marker says `command: ` first. The database keeps it as typed.
    #[test]
    fn a_command_shaped_like_a_gateway_marker_is_still_a_command_in_the_replay() {
        let sneaky = [
            "exit 0",
            "upload x; rm -rf /tmp/x",
            "shell;id",
            "session ended: closed; id",
            "exec: true; id",
        ];
        let listed = |pty: bool| {
            let dir = tempfile::tempdir().expect("tempdir");
            let (mut r, mut events) = recording(dir.path());
            let ch = channel(0);
            if pty {
                r.pty(ch, "xterm", 80, 24);
                r.start(ch, ChannelKind::Shell);
                r.output(ch, b"root@db-1:~# ");
                for cmd in sneaky {
                    for b in cmd.as_bytes() {
                        r.input(ch, &[*b]);
                        r.output(ch, &[*b]);
                    }
                    r.input(ch, b"\r");
                    r.output(ch, b"\r\nroot@db-1:~# ");
                }
            } else {
                r.start(ch, ChannelKind::Exec("bash -s".into()));
                r.input(ch, format!("{}\n", sneaky.join("\n")).as_bytes());
            }
            assert!(r.finish("session ended: closed").is_some());
            let mut stored = Vec::new();
            while let Ok(e) = events.try_recv() {
                if e.kind == SessionEventKind::Command {
                    stored.push(e.detail["command"].as_str().unwrap_or_default().to_owned());
                }
            }
            assert_eq!(stored, sneaky, "the database keeps the commands as typed");
            format::replay::commands(&cast_of(dir.path()))
                .into_iter()
                .map(|(_, label)| label)
                .filter(|label| !label.starts_with("exec: ") && label != "shell")
                .collect::<Vec<_>>()
        };
        let expected: Vec<String> = sneaky.iter().map(|c| format!("command: {c}")).collect();
        assert_eq!(listed(true), expected, "typed at a terminal");
        assert_eq!(listed(false), expected, "fed on stdin");
        // An ordinary command's marker is the command itself.
        assert_eq!(command_label("ls -la"), "ls -la");
    }
}
