//! asciicast v2 writer and reader for breakglass session recordings.
//!
//! The module is pure: it never reads a clock and never spawns anything. Every event carries
//! the time since session start (`Duration`, from the caller's monotonic clock), and output
//! goes to any [`std::io::Write`].
//!
//! # File format
//!
//! Line 1 is the v2 header. Our own metadata lives under the namespaced key `"breakglass"`,
//! which players ignore (checked with asciinema 2.4.0 and asciinema-player 3.18; asciinema 3
//! reads v2 headers without rejecting unknown keys):
//!
//! ```text
//! {"version":2,"width":80,"height":24,"timestamp":1700000000,"env":{"TERM":"xterm"},"breakglass":{..}}
//! [0.104213,"o","$ cat /bin/ls\r\n"]
//! [0.250000,"b","o:AP/+"]
//! [0.250000,"o","\u0000��"]
//! [0.300000,"b","e"]
//! [0.300000,"o","ls: cannot access 'x'\r\n"]
//! ```
//!
//! (The two U+FFFD are written as raw UTF-8; only `"`, `\`, C0 controls, U+2028 and U+2029
//! are escaped.)
//!
//! Each event is `[seconds_with_6_decimals, code, data]` on its own line. The standard codes
//! are `o` (output), `i` (input), `r` (resize, `"COLSxROWS"`) and `m` (marker).
//!
//! The annotation code `b` ([`ANNOTATION_CODE`]) is ours. It describes the event that
//! immediately follows it, which has the same time. Its data is one of:
//!
//! - `"o:<base64>"`: the next `o` event is output, and these are its exact raw bytes. The event
//!   itself shows lossy text.
//! - `"i:<base64>"`: the same for the next `i` event.
//! - `"e:<base64>"`: the next `o` event is stderr, and these are its exact raw bytes.
//! - `"e"`: the next `o` event is stderr, and its text is exactly the bytes.
//!
//! The code `d` ([`BINARY_CODE`]) is ours too: the raw bytes of a channel that does not carry a
//! terminal (a file transfer over sftp or scp, a forwarded connection). Its data is
//! `"<dir><channel>:<base64>"`, where `dir` is `i` (client to target) or `o` (target to
//! client), e.g. `"i3:aGVsbG8="`. Players skip it; audit keeps it ([`Cast::binary`]), so no
//! byte that reached the target is missing from the recording, whatever the channel carried.
//!
//! The codes are one character because asciinema 3 keeps only the first character of an unknown
//! code, and they are not `x`, which asciicast v3 uses for the exit status. Players show the `o`
//! event and skip the annotation. [`Cast::raw_stream`] rebuilds every
//! stream byte for byte. The annotation is written before its event, so if a crash cuts the file
//! between the two lines, the raw bytes survive.
//!
//! # Invariants
//!
//! - The writer only appends whole lines to its buffer and only hands whole buffers to the inner
//!   writer. A file cut short therefore parses up to its last complete line.
//! - UTF-8 sequences split across chunks are held back per stream (output, input, stderr) and
//!   completed by the next chunk. Bytes that are really invalid are shown lossily and also kept
//!   raw in an annotation.
//! - The writer hashes once: the SHA-256 of the file it writes ([`Summary::file_sha256`], the
//!   value the recording's signature binds). Each stream's raw bytes are a function of the
//!   file (annotations keep what lossy text cannot), so they need no digest of their own: a
//!   verifier rebuilds them from the verified file ([`Cast::raw_stream`],
//!   [`Cast::stream_digests`]). The writer counts each stream's raw bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// `maybe_flush` writes buffered lines once at least this much time has passed since the last flush.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Buffered bytes above which the next event flushes at once, whatever the time.
/// This bounds memory when the caller does not flush.
pub const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Event code of our annotation event. Players ignore it (see the module docs).
pub const ANNOTATION_CODE: &str = "b";

/// Event code of the raw bytes of a channel that carries no terminal (see the module docs).
pub const BINARY_CODE: &str = "d";

/// A recorded byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// PTY output or exec stdout: SSH channel data from the target.
    Output,
    /// Keystrokes from the client: SSH channel data towards the target.
    Input,
    /// Exec stderr: SSH extended data from the target. It is shown as `o`.
    Stderr,
}

impl Stream {
    /// All streams, in digest order.
    pub const ALL: [Stream; 3] = [Stream::Output, Stream::Input, Stream::Stderr];

    /// The asciicast event code that shows this stream.
    fn event_code(self) -> &'static str {
        match self {
            Stream::Output | Stream::Stderr => "o",
            Stream::Input => "i",
        }
    }

    /// Position in [`Stream::ALL`].
    fn index(self) -> usize {
        match self {
            Stream::Output => 0,
            Stream::Input => 1,
            Stream::Stderr => 2,
        }
    }

    /// The tag that names this stream in an annotation.
    fn tag(self) -> u8 {
        match self {
            Stream::Output => b'o',
            Stream::Input => b'i',
            Stream::Stderr => b'e',
        }
    }

    fn from_tag(tag: u8) -> Option<Stream> {
        match tag {
            b'o' => Some(Stream::Output),
            b'i' => Some(Stream::Input),
            b'e' => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// What the gateway writes under `"breakglass"` in a recording's header: the session's grant,
/// its bound fields, who approved it and with which key, and the certificate and recording key
/// of the session. Read back leniently ([`Header::breakglass`] stays JSON): recordings written
/// by older versions, or by hand, may carry other fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingMeta {
    pub grant_id: shared::core::RequestId,
    pub code: shared::core::GrantCode,
    pub requester: shared::core::PrincipalName,
    pub scope: shared::core::ScopeName,
    pub host: shared::core::HostName,
    pub login: shared::core::Login,
    pub reason: shared::core::Reason,
    pub approvers: Vec<shared::core::event::SessionApprover>,
    /// Hex SHA-256 of each approval signature, in the order the grant holds them.
    pub approval_signature_sha256: Vec<String>,
    pub not_after: shared::core::Timestamp,
    pub session_deadline: shared::core::Timestamp,
    /// The session certificate's serial (decimal).
    pub cert_serial: String,
    /// The key that signs this recording.
    pub gateway_recording_key: shared::core::KeyId,
}

impl RecordingMeta {
    /// The JSON object written (keys sorted, as every version wrote them).
    pub fn to_json(&self) -> serde_json::Value {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The asciicast v2 header, with the fields breakglass reads and writes.
///
/// On write, `None` fields are left out. On read, the whole header is also kept as JSON in
/// [`Cast::header_json`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Header {
    /// Initial terminal columns. asciinema 3 reads this as `u16`.
    pub width: u16,
    /// Initial terminal rows.
    pub height: u16,
    /// Unix time (seconds) of session start.
    pub timestamp: Option<u64>,
    /// `env.TERM`, as requested by the client's pty-req.
    pub term: Option<String>,
    /// `env.SHELL`, if known.
    pub shell: Option<String>,
    /// The exec command, for exec sessions.
    pub command: Option<String>,
    /// A title for players.
    pub title: Option<String>,
    /// Our metadata (grant id, requester, approvers, host, login, signature digests),
    /// written under the key `"breakglass"`.
    pub breakglass: Option<serde_json::Value>,
}

/// SHA-256 and length of one stream's raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDigest {
    /// SHA-256 of the bytes, in the order they were recorded.
    pub sha256: [u8; 32],
    /// How many bytes.
    pub bytes: u64,
}

impl StreamDigest {
    /// The digest as lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Digests of every stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    /// PTY output and exec stdout.
    pub output: StreamDigest,
    /// Client input.
    pub input: StreamDigest,
    /// Exec stderr.
    pub stderr: StreamDigest,
}

impl Digests {
    /// The digest of one stream.
    pub fn get(&self, stream: Stream) -> StreamDigest {
        match stream {
            Stream::Output => self.output,
            Stream::Input => self.input,
            Stream::Stderr => self.stderr,
        }
    }
}

/// Totals returned by [`CastWriter::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Raw bytes of output and stderr.
    pub bytes_out: u64,
    /// Raw bytes of input.
    pub bytes_in: u64,
    /// Event lines written, annotations included.
    pub events: u64,
    /// How many of `events` are `b` annotations.
    pub annotations: u64,
    /// Raw bytes of each stream, in [`Stream::ALL`] order (output, input, stderr); binary
    /// channels' bytes are not in these.
    pub stream_bytes: [u64; 3],
    /// Bytes handed to the inner writer, header included.
    pub file_bytes: u64,
    /// SHA-256 of everything handed to the inner writer. It equals
    /// `sha256_file_bytes(&file)` for a file written from the start, and is the value to sign.
    pub file_sha256: [u8; 32],
    /// Time of the last event (clamped to be monotonic).
    pub duration: Duration,
}

/// SHA-256 of a whole recording file.
pub fn sha256_file_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Length of the prefix of `bytes` made of complete (newline-terminated) lines.
///
/// asciinema-player rejects a file whose last line is cut off. Truncating a crashed recording to
/// this length gives a file that every player accepts, and [`parse`] reads it with
/// `truncated == false`.
pub fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Per-stream state: the held-back incomplete UTF-8 tail and the raw-byte count.
#[derive(Clone)]
struct StreamState {
    pending: [u8; 3],
    pending_len: usize,
    bytes: u64,
}

impl StreamState {
    fn new() -> Self {
        StreamState { pending: [0; 3], pending_len: 0, bytes: 0 }
    }

    fn take_pending(&mut self) -> ([u8; 3], usize) {
        let taken = (self.pending, self.pending_len);
        self.pending_len = 0;
        taken
    }

    /// Holds back `tail`, which `split_utf8` guarantees is at most 3 bytes.
    fn hold(&mut self, tail: &[u8]) {
        let len = tail.len().min(self.pending.len());
        self.pending[..len].copy_from_slice(&tail[..len]);
        self.pending_len = len;
    }
}

/// Streaming asciicast v2 writer.
///
/// Lines are built in an internal buffer and handed to `W` only as whole lines: by
/// [`maybe_flush`](Self::maybe_flush) (at most every [`FLUSH_INTERVAL`]), by
/// [`flush`](Self::flush), by [`finish`](Self::finish), and by any event that takes the buffer
/// past [`FLUSH_THRESHOLD`]. After a write to `W` fails, every later call fails too: the
/// recording is incomplete, and the session should end.
pub struct CastWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    output: StreamState,
    input: StreamState,
    stderr: StreamState,
    /// Reused to join a held-back tail with the next chunk.
    scratch: Vec<u8>,
    last_t: Duration,
    last_flush: Duration,
    events: u64,
    annotations: u64,
    /// Raw bytes of binary channels, client to target and target to client.
    binary_in: u64,
    binary_out: u64,
    file_bytes: u64,
    file_hash: Sha256,
    failed: bool,
}

impl<W: Write> fmt::Debug for CastWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CastWriter")
            .field("buffered", &self.buf.len())
            .field("last_t", &self.last_t)
            .field("last_flush", &self.last_flush)
            .field("events", &self.events)
            .field("file_bytes", &self.file_bytes)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<W: Write> CastWriter<W> {
    /// Writes the header line and flushes it at once, so the file is a valid, empty recording
    /// before the session starts.
    ///
    /// # Errors
    ///
    /// Fails if writing or flushing `out` fails. The gateway should then refuse the session:
    /// no recording, no access.
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut writer = CastWriter {
            out,
            // Grows with the first events; an idle interactive session keeps it small.
            buf: Vec::new(),
            output: StreamState::new(),
            input: StreamState::new(),
            stderr: StreamState::new(),
            scratch: Vec::new(),
            last_t: Duration::ZERO,
            last_flush: Duration::ZERO,
            events: 0,
            annotations: 0,
            binary_in: 0,
            binary_out: 0,
            file_bytes: 0,
            file_hash: Sha256::new(),
            failed: false,
        };
        writer.buf.extend_from_slice(header_line(header)?.as_bytes());
        writer.buf.push(b'\n');
        writer.write_out()?;
        Ok(writer)
    }

    /// Records PTY output (SSH channel data from the target).
    ///
    /// # Errors
    ///
    /// Fails if a size-triggered flush fails or an earlier write failed.
    pub fn output(&mut self, t: Duration, bytes: &[u8]) -> io::Result<()> {
        self.record(t, Stream::Output, bytes)
    }

    /// Records client input. Input may contain secrets typed at prompts: call this only if
    /// policy allows input recording.
    ///
    /// # Errors
    ///
    /// Fails if a size-triggered flush fails or an earlier write failed.
    pub fn input(&mut self, t: Duration, bytes: &[u8]) -> io::Result<()> {
        self.record(t, Stream::Input, bytes)
    }

    /// Records exec stdout. This is the same stream as [`output`](Self::output): both are SSH
    /// channel data, and a session is either a shell or an exec.
    ///
    /// # Errors
    ///
    /// Fails if a size-triggered flush fails or an earlier write failed.
    pub fn exec_stdout(&mut self, t: Duration, bytes: &[u8]) -> io::Result<()> {
        self.record(t, Stream::Output, bytes)
    }

    /// Records exec stderr (SSH extended data). Each chunk is an `o` event, so players show it
    /// as a terminal would, preceded by a `b` annotation `"e"` (or `"e:<base64>"`) that marks it
    /// as stderr. Its UTF-8 decoder is separate from stdout's.
    ///
    /// # Errors
    ///
    /// Fails if a size-triggered flush fails or an earlier write failed.
    pub fn exec_stderr(&mut self, t: Duration, bytes: &[u8]) -> io::Result<()> {
        self.record(t, Stream::Stderr, bytes)
    }

    /// Records the raw bytes of a channel that carries no terminal (a transfer, a forwarded
    /// connection) as one `d` event: `to_target` says the direction, `channel` which channel.
    /// Counted in the summary's byte totals, not in the terminal streams' digests.
    ///
    /// # Errors
    ///
    /// Fails if a size-triggered flush fails or an earlier write failed.
    pub fn binary(
        &mut self,
        t: Duration,
        to_target: bool,
        channel: u32,
        bytes: &[u8],
    ) -> io::Result<()> {
        self.ensure_usable()?;
        let t = self.advance(t);
        if bytes.is_empty() {
            return Ok(());
        }
        if to_target {
            self.binary_in += bytes.len() as u64;
        } else {
            self.binary_out += bytes.len() as u64;
        }
        let buf = &mut self.buf;
        buf.reserve(bytes.len() / 3 * 4 + 40);
        buf.push(b'[');
        push_time(buf, t);
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(BINARY_CODE.as_bytes());
        buf.extend_from_slice(b"\",\"");
        buf.push(if to_target { b'i' } else { b'o' });
        push_decimal(buf, u64::from(channel));
        buf.push(b':');
        push_base64(buf, bytes);
        buf.extend_from_slice(b"\"]\n");
        self.events += 1;
        self.after_event(t)
    }

    /// Records a terminal resize (`r`, `"COLSxROWS"`).
    ///
    /// # Errors
    ///
    /// Fails if a size-triggered flush fails or an earlier write failed.
    pub fn resize(&mut self, t: Duration, cols: u16, rows: u16) -> io::Result<()> {
        self.ensure_usable()?;
        let t = self.advance(t);
        let data = format!("{cols}x{rows}");
        self.push_event(t, "r", &data);
        self.after_event(t)
    }

    /// Records a marker (`m`) with a label, for example `"exec: ls -la"` or `"exit 0"`.
    ///
    /// # Errors
    ///
    /// Fails if a size-triggered flush fails or an earlier write failed.
    pub fn marker(&mut self, t: Duration, label: &str) -> io::Result<()> {
        self.ensure_usable()?;
        let t = self.advance(t);
        self.push_event(t, "m", label);
        self.after_event(t)
    }

    /// Hands buffered lines to the inner writer, then flushes it, if at least
    /// [`FLUSH_INTERVAL`] passed since the last flush. Returns whether it wrote.
    ///
    /// `now` uses the same clock as event times. Call it after events and on a timer.
    ///
    /// # Errors
    ///
    /// Fails if writing or flushing the inner writer fails, or an earlier write failed.
    pub fn maybe_flush(&mut self, now: Duration) -> io::Result<bool> {
        self.ensure_usable()?;
        if self.buf.is_empty() || now.saturating_sub(self.last_flush) < FLUSH_INTERVAL {
            return Ok(false);
        }
        self.write_out()?;
        self.last_flush = now;
        Ok(true)
    }

    /// Hands every buffered line to the inner writer and flushes it. Held-back partial UTF-8
    /// sequences stay held back: they are not lines yet.
    ///
    /// # Errors
    ///
    /// Fails if writing or flushing the inner writer fails, or an earlier write failed.
    pub fn flush(&mut self) -> io::Result<()> {
        self.ensure_usable()?;
        self.write_out()
    }

    /// The inner writer, for example to `sync_data` a file after [`flush`](Self::flush).
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Ends the recording at time `t`. Held-back incomplete UTF-8 tails are written (lossy in
    /// the event, exact in an annotation), and everything is flushed. No other event is added:
    /// the caller writes its own `exit` marker first.
    ///
    /// # Errors
    ///
    /// Fails if writing or flushing the inner writer fails, or an earlier write failed.
    pub fn finish(mut self, t: Duration) -> io::Result<(W, Summary)> {
        self.ensure_usable()?;
        let t = self.advance(t);
        for stream in Stream::ALL {
            let (pending, len) = self.state_mut(stream).take_pending();
            if len > 0 {
                self.emit(t, stream, &pending[..len], None);
            }
        }
        self.write_out()?;
        let stream_bytes = [self.output.bytes, self.input.bytes, self.stderr.bytes];
        let summary = Summary {
            bytes_out: self.output.bytes + self.stderr.bytes + self.binary_out,
            bytes_in: self.input.bytes + self.binary_in,
            events: self.events,
            annotations: self.annotations,
            stream_bytes,
            file_bytes: self.file_bytes,
            file_sha256: self.file_hash.finalize().into(),
            duration: self.last_t,
        };
        Ok((self.out, summary))
    }

    fn state_mut(&mut self, stream: Stream) -> &mut StreamState {
        match stream {
            Stream::Output => &mut self.output,
            Stream::Input => &mut self.input,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn ensure_usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "cast writer: an earlier write failed, the recording is incomplete",
            ));
        }
        Ok(())
    }

    /// Clamps `t` so event times never go backwards.
    fn advance(&mut self, t: Duration) -> Duration {
        self.last_t = self.last_t.max(t);
        self.last_t
    }

    fn record(&mut self, t: Duration, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        self.ensure_usable()?;
        let t = self.advance(t);
        if bytes.is_empty() {
            return Ok(());
        }
        let state = self.state_mut(stream);
        state.bytes += bytes.len() as u64;
        let (pending, pending_len) = state.take_pending();

        let mut scratch = std::mem::take(&mut self.scratch);
        let data: &[u8] = if pending_len == 0 {
            bytes
        } else {
            scratch.clear();
            scratch.extend_from_slice(&pending[..pending_len]);
            scratch.extend_from_slice(bytes);
            &scratch
        };
        let (end, text) = split_utf8(data);
        self.state_mut(stream).hold(&data[end..]);
        self.emit(t, stream, &data[..end], text);
        self.scratch = scratch;
        self.after_event(t)
    }

    /// Writes one decoded segment: `text` is `Some` when `seg` is valid UTF-8.
    fn emit(&mut self, t: Duration, stream: Stream, seg: &[u8], text: Option<&str>) {
        if seg.is_empty() {
            return;
        }
        match text {
            Some(text) => {
                if stream == Stream::Stderr {
                    self.push_annotation(t, stream, None);
                }
                self.push_event(t, stream.event_code(), text);
            }
            None => {
                self.push_annotation(t, stream, Some(seg));
                let lossy = String::from_utf8_lossy(seg);
                self.push_event(t, stream.event_code(), &lossy);
            }
        }
    }

    fn push_event(&mut self, t: Duration, code: &str, data: &str) {
        let buf = &mut self.buf;
        buf.reserve(data.len() + 24);
        buf.push(b'[');
        push_time(buf, t);
        buf.extend_from_slice(b",\"");
        escape_json_into(buf, code);
        buf.extend_from_slice(b"\",\"");
        escape_json_into(buf, data);
        buf.extend_from_slice(b"\"]\n");
        self.events += 1;
    }

    fn push_annotation(&mut self, t: Duration, stream: Stream, raw: Option<&[u8]>) {
        let buf = &mut self.buf;
        buf.push(b'[');
        push_time(buf, t);
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(ANNOTATION_CODE.as_bytes());
        buf.extend_from_slice(b"\",\"");
        buf.push(stream.tag());
        if let Some(raw) = raw {
            buf.push(b':');
            push_base64(buf, raw);
        }
        buf.extend_from_slice(b"\"]\n");
        self.events += 1;
        self.annotations += 1;
    }

    fn after_event(&mut self, t: Duration) -> io::Result<()> {
        if self.buf.len() >= FLUSH_THRESHOLD {
            self.write_out()?;
            self.last_flush = t;
        }
        Ok(())
    }

    /// Hands the whole buffer (whole lines only) to the inner writer and flushes it.
    fn write_out(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file_hash.update(&self.buf);
            if let Err(e) = self.out.write_all(&self.buf) {
                self.failed = true;
                return Err(e);
            }
            self.file_bytes += self.buf.len() as u64;
            self.buf.clear();
        }
        if let Err(e) = self.out.flush() {
            self.failed = true;
            return Err(e);
        }
        Ok(())
    }
}

/// Splits `data` into a segment to write now and an incomplete UTF-8 tail to hold back.
/// Returns the end of the segment and, if the segment is valid UTF-8, its text.
fn split_utf8(data: &[u8]) -> (usize, Option<&str>) {
    // Fast path (the common case): all valid, or valid but for a cut-off sequence at the end.
    // `from_utf8` checks a word at a time over ASCII.
    match std::str::from_utf8(data) {
        Ok(text) => return (data.len(), Some(text)),
        Err(e) if e.error_len().is_none() => {
            let end = e.valid_up_to();
            return (end, std::str::from_utf8(&data[..end]).ok());
        }
        Err(_) => {}
    }
    let mut chunks = data.utf8_chunks();
    let Some(first) = chunks.next() else {
        return (0, Some(""));
    };
    let invalid = first.invalid();
    if invalid.is_empty() {
        // The only chunk, and it is all valid.
        return (data.len(), Some(first.valid()));
    }
    if chunks.next().is_none() && is_incomplete_sequence(invalid) {
        return (data.len() - invalid.len(), Some(first.valid()));
    }
    (data.len() - incomplete_tail_len(data), None)
}

/// Whether `bytes` is the start of a valid multi-byte sequence that was cut short.
fn is_incomplete_sequence(bytes: &[u8]) -> bool {
    matches!(std::str::from_utf8(bytes), Err(e) if e.valid_up_to() == 0 && e.error_len().is_none())
}

/// Length of the incomplete sequence at the end of `data`, 0 if there is none.
fn incomplete_tail_len(data: &[u8]) -> usize {
    let n = data.len();
    for len in 1..=n.min(3) {
        let start = n - len;
        if data[start] & 0xC0 == 0x80 {
            continue; // continuation byte: the sequence starts further back
        }
        return if is_incomplete_sequence(&data[start..]) { len } else { 0 };
    }
    0
}

/// Appends `bytes` as standard base64 (padded) in place, with no allocation. The base64
/// alphabet needs no JSON escaping.
fn push_base64(buf: &mut Vec<u8>, bytes: &[u8]) {
    let start = buf.len();
    buf.resize(start + base64::encoded_len(bytes.len(), true).unwrap_or(0), 0);
    let written = BASE64.encode_slice(bytes, &mut buf[start..]).unwrap_or(0);
    buf.truncate(start + written);
}

/// Appends `n` in decimal, with no allocation.
fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends `t` as seconds with exactly 6 decimals (microseconds, truncated).
fn push_time(buf: &mut Vec<u8>, t: Duration) {
    push_decimal(buf, t.as_secs());
    buf.push(b'.');
    let mut micros = t.subsec_micros();
    let mut frac = [b'0'; 6];
    for d in frac.iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    buf.extend_from_slice(&frac);
}

/// Appends `s` JSON-escaped, without quotes. Escapes `"`, `\`, C0 controls, and U+2028/U+2029
/// (line separators for JavaScript and Python's `splitlines`). Everything else is copied.
fn escape_json_into(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip 32 plain bytes at a time (no control byte, `"`, `\` or 0xE2), then eight.
        if let Some(block) = bytes.get(i..i + ESCAPE_BLOCK)
            && !block_needs_escape(block)
        {
            i += ESCAPE_BLOCK;
            continue;
        }
        if let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if !needs_escape_swar(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let (escape, len): (&[u8], usize) = match b {
            b'"' => (b"\\\"", 1),
            b'\\' => (b"\\\\", 1),
            b'\n' => (b"\\n", 1),
            b'\r' => (b"\\r", 1),
            b'\t' => (b"\\t", 1),
            0x08 => (b"\\b", 1),
            0x0c => (b"\\f", 1),
            0x00..=0x1f => {
                buf.extend_from_slice(&bytes[start..i]);
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
                i += 1;
                start = i;
                continue;
            }
            0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA8) => {
                (b"\\u2028", 3)
            }
            0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA9) => {
                (b"\\u2029", 3)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.extend_from_slice(escape);
        i += len;
        start = i;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// Bytes [`escape_json_into`] checks at once before it looks closer.
const ESCAPE_BLOCK: usize = 32;

/// Whether any byte of `block` may need escaping: below 0x20, `"`, `\`, or 0xE2. Written
/// without early exit so that the compiler checks the block with vector instructions.
fn block_needs_escape(block: &[u8]) -> bool {
    block.iter().fold(false, |acc, &b| acc | (b < 0x20) | (b == b'"') | (b == b'\\') | (b == 0xE2))
}

/// Whether any of the eight bytes in `x` may need escaping: below 0x20, `"`, `\`, or 0xE2
/// (the lead byte of U+2028/U+2029). SWAR: each test sets the high bit of matching bytes.
fn needs_escape_swar(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |y: u64| y.wrapping_sub(ONES) & !y & HIGH;
    let below_0x20 = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    let quote = has_zero(x ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(x ^ (ONES * u64::from(b'\\')));
    let e2 = has_zero(x ^ (ONES * 0xE2));
    (below_0x20 | quote | backslash | e2) != 0
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    version: u8,
    width: u16,
    height: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "EnvOut::is_empty")]
    env: EnvOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    breakglass: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct EnvOut<'a> {
    #[serde(rename = "TERM", skip_serializing_if = "Option::is_none")]
    term: Option<&'a str>,
    #[serde(rename = "SHELL", skip_serializing_if = "Option::is_none")]
    shell: Option<&'a str>,
}

impl EnvOut<'_> {
    fn is_empty(&self) -> bool {
        self.term.is_none() && self.shell.is_none()
    }
}

/// The header as one JSON line, without the newline.
fn header_line(header: &Header) -> io::Result<String> {
    let out = HeaderOut {
        version: 2,
        width: header.width,
        height: header.height,
        timestamp: header.timestamp,
        command: header.command.as_deref(),
        title: header.title.as_deref(),
        env: EnvOut { term: header.term.as_deref(), shell: header.shell.as_deref() },
        breakglass: header.breakglass.as_ref(),
    };
    let line = serde_json::to_string(&out)?;
    // serde_json leaves U+2028/U+2029 raw. They can only occur inside strings, so this is safe.
    if line.contains(['\u{2028}', '\u{2029}']) {
        return Ok(line.replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029"));
    }
    Ok(line)
}

/// One event line of a parsed recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since session start.
    pub t: f64,
    /// Event code: `o`, `i`, `r`, `m`, `b` or any other.
    pub code: String,
    /// Event data.
    pub data: String,
}

/// A parsed recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Cast {
    /// The typed header.
    pub header: Header,
    /// The header line exactly as JSON, unknown keys included.
    pub header_json: serde_json::Value,
    /// Every complete event line, in file order. Event `k` (from 0) is on line `k + 2`.
    pub events: Vec<Event>,
    /// Whether the text ended with an incomplete line (a crash), which was ignored.
    pub truncated: bool,
}

/// Why a recording could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CastError {
    /// The text is empty.
    #[error("empty recording: no header line")]
    Empty,
    /// The first line has no newline, so the header may be cut short.
    #[error("line 1: header line is incomplete")]
    IncompleteHeader,
    /// The first line is not a valid asciicast v2 header.
    #[error("line 1: invalid asciicast v2 header: {reason}")]
    Header {
        /// What is wrong.
        reason: String,
    },
    /// A complete event line is malformed.
    #[error("line {line}: invalid event: {reason}")]
    Event {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A `b` annotation is malformed or not followed by the event it describes.
    #[error("line {line}: invalid annotation: {reason}")]
    Annotation {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct HeaderIn {
    version: u64,
    width: u16,
    height: u16,
    timestamp: Option<serde_json::Number>,
    command: Option<String>,
    title: Option<String>,
    env: Option<BTreeMap<String, Option<String>>>,
}

/// Reads an asciicast v2 recording.
///
/// Every newline-terminated line must be valid. An unterminated last line is what a crash
/// leaves behind: it is ignored, and `truncated` is set. Event times are not checked for order.
///
/// # Errors
///
/// [`CastError::Empty`] and [`CastError::IncompleteHeader`] when there is no complete header
/// line, [`CastError::Header`] for a bad header, and [`CastError::Event`], with the line number,
/// for any complete line that is not `[non-negative number, string, string]` (blank lines
/// included).
pub fn parse(text: &str) -> Result<Cast, CastError> {
    parse_bytes(text.as_bytes())
}

/// Reads an asciicast v2 recording from raw file bytes, as [`parse`] does.
///
/// A crash can cut a file inside a multi-byte character, so the ignored last line may be
/// invalid UTF-8. Complete lines must be valid UTF-8.
///
/// # Errors
///
/// As for [`parse`], plus [`CastError::Header`] or [`CastError::Event`] for a complete line
/// that is not valid UTF-8.
pub fn parse_bytes(bytes: &[u8]) -> Result<Cast, CastError> {
    let (body, tail) = bytes.split_at(complete_len(bytes));
    let truncated = !tail.is_empty();
    let body = std::str::from_utf8(body).map_err(|e| {
        let prefix = body.get(..e.valid_up_to()).unwrap_or_default();
        let line = 1 + prefix.iter().filter(|&&b| b == b'\n').count();
        let reason = format!("invalid UTF-8: {e}");
        if line == 1 { CastError::Header { reason } } else { CastError::Event { line, reason } }
    })?;
    let mut lines = body.split_terminator('\n');
    let Some(first) = lines.next() else {
        return Err(if truncated { CastError::IncompleteHeader } else { CastError::Empty });
    };
    let (header, header_json) = parse_header(first)?;
    let events = lines
        .enumerate()
        .map(|(idx, line)| parse_event(idx + 2, line))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Cast { header, header_json, events, truncated })
}

fn parse_header(line: &str) -> Result<(Header, serde_json::Value), CastError> {
    let bad = |reason: String| CastError::Header { reason };
    let json: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    let raw = HeaderIn::deserialize(&json).map_err(|e| bad(e.to_string()))?;
    if raw.version != 2 {
        return Err(bad(format!("version is {}, expected 2", raw.version)));
    }
    let timestamp = match raw.timestamp {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .ok_or_else(|| bad(format!("timestamp {n} is not a non-negative number")))?,
        ),
    };
    let mut env = raw.env.unwrap_or_default();
    let header = Header {
        width: raw.width,
        height: raw.height,
        timestamp,
        term: env.remove("TERM").flatten(),
        shell: env.remove("SHELL").flatten(),
        command: raw.command,
        title: raw.title,
        breakglass: json.get("breakglass").cloned(),
    };
    Ok((header, json))
}

fn parse_event(line: usize, text: &str) -> Result<Event, CastError> {
    let bad = |reason: String| CastError::Event { line, reason };
    if text.is_empty() {
        return Err(bad("blank line".to_owned()));
    }
    let (t, code, data) =
        serde_json::from_str::<(f64, String, String)>(text).map_err(|e| bad(e.to_string()))?;
    if t < 0.0 {
        return Err(bad(format!("time {t} is negative")));
    }
    Ok(Event { t, code, data })
}

impl Cast {
    /// The exact raw bytes recorded for `stream`, rebuilt from `o`/`i` events and `b`
    /// annotations.
    ///
    /// # Errors
    ///
    /// [`CastError::Annotation`] if an annotation is malformed or not followed by an event of
    /// its stream.
    pub fn raw_stream(&self, stream: Stream) -> Result<Vec<u8>, CastError> {
        let mut out = Vec::new();
        self.for_each_segment(|s, bytes| {
            if s == stream {
                out.extend_from_slice(bytes);
            }
        })?;
        Ok(out)
    }

    /// SHA-256 and length of every stream's raw bytes, rebuilt from the file (the writer
    /// hashes only the file, whose signed digest covers these).
    ///
    /// # Errors
    ///
    /// As for [`raw_stream`](Self::raw_stream).
    pub fn stream_digests(&self) -> Result<Digests, CastError> {
        let mut hashers = [Sha256::new(), Sha256::new(), Sha256::new()];
        let mut bytes = [0u64; 3];
        self.for_each_segment(|stream, seg| {
            hashers[stream.index()].update(seg);
            bytes[stream.index()] += seg.len() as u64;
        })?;
        let [output, input, stderr] = [0, 1, 2].map(|i| StreamDigest {
            sha256: hashers[i].clone().finalize().into(),
            bytes: bytes[i],
        });
        Ok(Digests { output, input, stderr })
    }

    /// The raw bytes of the binary channels (`d` events), in order: those sent to the target
    /// (`to_target`) or those sent by it.
    ///
    /// # Errors
    ///
    /// [`CastError::Event`] for a `d` event that is not `<dir><channel>:<base64>`.
    pub fn binary(&self, to_target: bool) -> Result<Vec<u8>, CastError> {
        let mut out = Vec::new();
        for (idx, e) in self.events.iter().enumerate() {
            if e.code != BINARY_CODE {
                continue;
            }
            let bad = |reason: &str| CastError::Event { line: idx + 2, reason: reason.to_owned() };
            let (tag, b64) =
                e.data.split_once(':').ok_or_else(|| bad("binary data without ':'"))?;
            let dir = match tag.as_bytes().first() {
                Some(b'i') => true,
                Some(b'o') => false,
                _ => return Err(bad("binary data direction is not i or o")),
            };
            if !tag[1..].bytes().all(|b| b.is_ascii_digit()) || tag.len() < 2 {
                return Err(bad("binary data channel is not a number"));
            }
            if dir == to_target {
                let bytes = BASE64.decode(b64).map_err(|e| bad(&format!("bad base64: {e}")))?;
                out.extend_from_slice(&bytes);
            }
        }
        Ok(out)
    }

    /// The concatenated data of all `o` events: what `asciinema cat` prints.
    pub fn output_text(&self) -> String {
        self.events.iter().filter(|e| e.code == "o").map(|e| e.data.as_str()).collect()
    }

    /// Calls `f` with each segment of raw bytes, in order.
    fn for_each_segment(&self, mut f: impl FnMut(Stream, &[u8])) -> Result<(), CastError> {
        // The annotation waiting for its event: stream, raw bytes, line.
        let mut pending: Option<(Stream, Option<Vec<u8>>, usize)> = None;
        for (idx, event) in self.events.iter().enumerate() {
            let line = idx + 2;
            let bad = |reason: String| CastError::Annotation { line, reason };
            match event.code.as_str() {
                ANNOTATION_CODE => {
                    if let Some((_, _, at)) = pending {
                        return Err(bad(format!("annotation on line {at} has no event")));
                    }
                    let (stream, raw) = parse_annotation(&event.data).map_err(bad)?;
                    pending = Some((stream, raw, line));
                }
                code @ ("o" | "i") => {
                    let (stream, raw) = match pending.take() {
                        None if code == "o" => (Stream::Output, None),
                        None => (Stream::Input, None),
                        Some((stream, raw, at)) => {
                            if stream.event_code() != code {
                                return Err(bad(format!(
                                    "annotation on line {at} is followed by an {code:?} event"
                                )));
                            }
                            (stream, raw)
                        }
                    };
                    let bytes: &[u8] = match &raw {
                        Some(raw) => raw,
                        None => event.data.as_bytes(),
                    };
                    f(stream, bytes);
                }
                other => {
                    if let Some((_, _, at)) = pending {
                        return Err(bad(format!(
                            "annotation on line {at} is followed by an {other:?} event"
                        )));
                    }
                }
            }
        }
        // A crash may cut the file between an annotation and its event: the raw bytes still count.
        if let Some((stream, Some(raw), _)) = pending {
            f(stream, &raw);
        }
        Ok(())
    }
}

/// Parses annotation data: `o|i|e`, optionally followed by `:` and base64 raw bytes.
fn parse_annotation(data: &str) -> Result<(Stream, Option<Vec<u8>>), String> {
    let bytes = data.as_bytes();
    let stream = bytes
        .first()
        .and_then(|&tag| Stream::from_tag(tag))
        .ok_or_else(|| format!("unknown stream in {data:?}"))?;
    match &data[1..] {
        "" => Ok((stream, None)),
        rest => {
            let b64 = rest.strip_prefix(':').ok_or_else(|| format!("expected ':' in {data:?}"))?;
            let raw = BASE64.decode(b64).map_err(|e| format!("bad base64: {e}"))?;
            Ok((stream, Some(raw)))
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Output => "output",
            Stream::Input => "input",
            Stream::Stderr => "stderr",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_util::Rng;

    #[test]
    fn the_block_scan_never_misses_a_byte_to_escape() {
        for pos in 0..ESCAPE_BLOCK {
            for b in 0..=255u8 {
                let mut block = [b'a'; ESCAPE_BLOCK];
                block[pos] = b;
                let naive = b < 0x20 || b == b'"' || b == b'\\' || b == 0xE2;
                assert_eq!(block_needs_escape(&block), naive, "byte {b:#04x} at {pos}");
            }
        }
    }

    #[test]
    fn the_word_at_a_time_scan_never_misses_a_byte_to_escape() {
        let naive =
            |w: [u8; 8]| w.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0xE2);
        let mut rng = Rng::new(Rng::SEED);
        for _ in 0..200_000 {
            let x = rng.next_u64();
            let mut w = x.to_le_bytes();
            // Bias towards the interesting bytes.
            let k = (x >> 59) as usize & 7;
            w[k] = [b'"', b'\\', 0xE2, 0x1F, 0x20, b'!', 0x7F, 0x80][(x >> 56) as usize & 7];
            if naive(w) {
                assert!(needs_escape_swar(u64::from_le_bytes(w)), "missed {w:?}");
            }
        }
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn metadata() -> serde_json::Value {
        serde_json::json!({
            "grant": "g-7f3a",
            "requester": "alice",
            "approvers": ["bob", "carol"],
            "host": "db1.internal",
            "login": "postgres",
            "approval_sha256": ["00ff", "a1b2"],
        })
    }

    fn header() -> Header {
        Header {
            width: 80,
            height: 24,
            timestamp: Some(1_700_000_000),
            term: Some("xterm-256color".to_owned()),
            shell: Some("/bin/bash".to_owned()),
            command: None,
            title: Some("break-glass db1".to_owned()),
            breakglass: Some(metadata()),
        }
    }

    /// Runs `f` on a writer over a `Vec`, finishes at `end`, returns the file and summary.
    fn record(
        end: Duration,
        f: impl FnOnce(&mut CastWriter<Vec<u8>>) -> io::Result<()>,
    ) -> Result<(Vec<u8>, Summary), Box<dyn std::error::Error>> {
        let mut w = CastWriter::new(Vec::new(), &header())?;
        f(&mut w)?;
        Ok(w.finish(end)?)
    }

    /// Concatenated data of events with `code`.
    fn text_of(cast: &Cast, code: &str) -> String {
        cast.events.iter().filter(|e| e.code == code).map(|e| e.data.as_str()).collect()
    }

    fn micros(t: f64) -> u64 {
        (t * 1e6).round() as u64
    }

    fn write_stream(
        w: &mut CastWriter<Vec<u8>>,
        stream: Stream,
        t: Duration,
        bytes: &[u8],
    ) -> io::Result<()> {
        match stream {
            Stream::Output => w.output(t, bytes),
            Stream::Input => w.input(t, bytes),
            Stream::Stderr => w.exec_stderr(t, bytes),
        }
    }

    #[test]
    fn round_trip_every_event_kind() -> TestResult {
        let (file, summary) = record(ms(700), |w| {
            w.output(ms(100), b"hello\r\n")?;
            w.input(ms(200), b"ls\r")?;
            w.resize(ms(300), 100, 30)?;
            w.marker(ms(400), "exec: ls")?;
            w.exec_stderr(ms(500), b"warn\n")?;
            w.exec_stdout(ms(600), &[0xff, b'a'])?;
            w.marker(ms(650), "exit 0")
        })?;
        let cast = parse_bytes(&file)?;

        assert_eq!(cast.header, header());
        assert_eq!(cast.header_json["breakglass"], metadata());
        assert!(!cast.truncated);
        let got: Vec<(u64, &str, &str)> =
            cast.events.iter().map(|e| (micros(e.t), e.code.as_str(), e.data.as_str())).collect();
        let want = vec![
            (100_000, "o", "hello\r\n"),
            (200_000, "i", "ls\r"),
            (300_000, "r", "100x30"),
            (400_000, "m", "exec: ls"),
            (500_000, "b", "e"),
            (500_000, "o", "warn\n"),
            (600_000, "b", "o:/2E="),
            (600_000, "o", "\u{FFFD}a"),
            (650_000, "m", "exit 0"),
        ];
        assert_eq!(got, want);
        assert!(cast.events.windows(2).all(|p| p[0].t <= p[1].t), "times are monotonic");
        for line in std::str::from_utf8(&file)?.lines().skip(1) {
            let (secs, rest) = line[1..].split_once('.').ok_or("no decimal point")?;
            assert!(secs.bytes().all(|b| b.is_ascii_digit()), "{line}");
            assert!(rest.as_bytes()[..6].iter().all(u8::is_ascii_digit), "{line}");
            assert_eq!(rest.as_bytes()[6], b',', "exactly 6 decimals: {line}");
        }
        assert_eq!(cast.raw_stream(Stream::Output)?, b"hello\r\n\xffa");
        assert_eq!(cast.raw_stream(Stream::Input)?, b"ls\r");
        assert_eq!(cast.raw_stream(Stream::Stderr)?, b"warn\n");
        let digests = cast.stream_digests()?;
        assert_eq!(digests.output.sha256, sha256_file_bytes(b"hello\r\n\xffa"));
        assert_eq!(
            [digests.output.bytes, digests.input.bytes, digests.stderr.bytes],
            summary.stream_bytes
        );
        Ok(())
    }

    #[test]
    fn times_have_six_decimals_and_never_go_back() -> TestResult {
        let (file, summary) = record(Duration::ZERO, |w| {
            w.output(Duration::new(3, 123_456_789), b"a")?;
            w.output(Duration::ZERO, b"b")?;
            w.output(Duration::from_secs(12_345), b"c")
        })?;
        let text = String::from_utf8(file)?;
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [r#"[3.123456,"o","a"]"#, r#"[3.123456,"o","b"]"#, r#"[12345.000000,"o","c"]"#]
        );
        assert_eq!(summary.duration, Duration::from_secs(12_345));
        Ok(())
    }

    #[test]
    fn header_has_breakglass_key_and_skips_missing_fields() -> TestResult {
        let (file, _) = record(Duration::ZERO, |_| Ok(()))?;
        let text = String::from_utf8(file)?;
        assert_eq!(
            text,
            concat!(
                r#"{"version":2,"width":80,"height":24,"timestamp":1700000000,"#,
                r#""title":"break-glass db1","env":{"TERM":"xterm-256color","SHELL":"/bin/bash"},"#,
                r#""breakglass":{"approval_sha256":["00ff","a1b2"],"approvers":["bob","carol"],"#,
                r#""grant":"g-7f3a","host":"db1.internal","login":"postgres","requester":"alice"}}"#,
                "\n"
            )
        );
        let bare = Header { width: 80, height: 24, ..Header::default() };
        let (out, _) = CastWriter::new(Vec::new(), &bare)?.finish(Duration::ZERO)?;
        assert_eq!(out, b"{\"version\":2,\"width\":80,\"height\":24}\n");
        assert_eq!(parse_bytes(&out)?.header, bare);
        Ok(())
    }

    #[test]
    fn utf8_split_at_any_point_decodes_without_replacement() -> TestResult {
        let text = "héllo € 😀 ok";
        let bytes = text.as_bytes();
        for stream in Stream::ALL {
            let code = stream.event_code();
            let mut chunkings: Vec<Vec<&[u8]>> = vec![bytes.chunks(1).collect()];
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    chunkings.push(vec![&bytes[..i], &bytes[i..j], &bytes[j..]]);
                }
            }
            let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
            for _ in 0..200 {
                chunkings.push(rng.chunks(bytes, 4));
            }
            for chunks in &chunkings {
                let (file, summary) = record(ms(999), |w| {
                    for (k, chunk) in chunks.iter().enumerate() {
                        write_stream(w, stream, ms(k as u64), chunk)?;
                    }
                    Ok(())
                })?;
                let cast = parse_bytes(&file)?;
                assert_eq!(text_of(&cast, code), text, "{stream} {chunks:?}");
                assert_eq!(cast.raw_stream(stream)?, bytes);
                let raw_annotations = cast.events.iter().filter(|e| e.code == "b" && e.data != "e");
                assert_eq!(raw_annotations.count(), 0, "valid text needs no raw copy");
                assert_eq!(cast.stream_digests()?.get(stream).sha256, sha256_file_bytes(bytes));
                assert_eq!(summary.stream_bytes[stream.index()], bytes.len() as u64);
            }
        }
        Ok(())
    }

    #[test]
    fn binary_exec_stdout_survives_byte_for_byte() -> TestResult {
        let mut rng = Rng::new(42);
        let mut input: Vec<u8> = (0..20_000).map(|_| rng.next_u64() as u8).collect();
        input[..4].copy_from_slice(b"\x7fELF");
        input[100..110].fill(0); // NULs
        input.extend_from_slice("tail € ok".as_bytes());
        input.extend_from_slice(&[0xE2, 0x82]); // ends inside a sequence: held back until finish
        let chunks = rng.chunks(&input, 700);
        let (file, summary) = record(ms(5000), |w| {
            for (k, chunk) in chunks.iter().enumerate() {
                w.exec_stdout(ms(k as u64), chunk)?;
            }
            Ok(())
        })?;
        let cast = parse_bytes(&file)?;
        assert_eq!(cast.raw_stream(Stream::Output)?, input);
        assert_eq!(cast.stream_digests()?.output.sha256, sha256_file_bytes(&input));
        assert_eq!(summary.stream_bytes[0], input.len() as u64);
        assert_eq!(cast.stream_digests()?.output.bytes, input.len() as u64);
        assert!(summary.annotations > 0);
        assert!(cast.output_text().contains('\u{FFFD}'), "players see something");
        assert!(cast.output_text().contains("tail € ok"));
        Ok(())
    }

    #[test]
    fn invalid_input_bytes_are_kept_raw() -> TestResult {
        let typed = b"\x1b[A\xff\xfesecret\r";
        let (file, summary) = record(ms(10), |w| w.input(ms(1), typed))?;
        let cast = parse_bytes(&file)?;
        assert_eq!(cast.events[0].code, "b");
        assert!(cast.events[0].data.starts_with("i:"));
        assert_eq!(cast.events[1].code, "i");
        assert_eq!(cast.raw_stream(Stream::Input)?, typed);
        assert_eq!(cast.raw_stream(Stream::Output)?, b"");
        assert_eq!(summary.bytes_in, typed.len() as u64);
        assert_eq!(summary.bytes_out, 0);
        Ok(())
    }

    #[test]
    fn stdout_and_stderr_decode_separately() -> TestResult {
        // "€" = E2 82 AC on stdout and "é" = C3 A9 on stderr, split and interleaved.
        let (file, summary) = record(ms(10), |w| {
            w.exec_stdout(ms(1), &[0xE2])?;
            w.exec_stderr(ms(2), &[0xC3])?;
            w.exec_stdout(ms(3), &[0x82, 0xAC])?;
            w.exec_stderr(ms(4), &[0xA9])
        })?;
        let cast = parse_bytes(&file)?;
        assert_eq!(cast.output_text(), "€é");
        assert_eq!(cast.raw_stream(Stream::Output)?, "€".as_bytes());
        assert_eq!(cast.raw_stream(Stream::Stderr)?, "é".as_bytes());
        let codes: Vec<(&str, &str)> =
            cast.events.iter().map(|e| (e.code.as_str(), e.data.as_str())).collect();
        assert_eq!(codes, [("o", "€"), ("b", "e"), ("o", "é")]);
        assert_eq!(cast.stream_digests()?.stderr.sha256, sha256_file_bytes("é".as_bytes()));
        assert_eq!(summary.bytes_out, 5);
        Ok(())
    }

    #[test]
    fn finish_writes_the_held_back_tail() -> TestResult {
        let mut w = CastWriter::new(Vec::new(), &header())?;
        w.output(ms(1), b"ok\xE2\x82")?;
        w.flush()?;
        let before = parse_bytes(w.get_ref())?;
        assert_eq!(before.output_text(), "ok", "the incomplete tail is held back");
        let (file, summary) = w.finish(ms(2))?;
        let cast = parse_bytes(&file)?;
        let last: Vec<(&str, &str)> =
            cast.events.iter().map(|e| (e.code.as_str(), e.data.as_str())).collect();
        assert_eq!(last, [("o", "ok"), ("b", "o:4oI="), ("o", "\u{FFFD}")]);
        assert_eq!(cast.raw_stream(Stream::Output)?, b"ok\xE2\x82");
        assert_eq!(summary.stream_bytes[0], 4);
        Ok(())
    }

    #[test]
    fn crash_at_any_byte_parses_the_complete_lines() -> TestResult {
        let (file, _) = record(ms(900), |w| {
            w.output(ms(1), "prompt € ".as_bytes())?;
            w.exec_stdout(ms(2), b"\x00\xff\xfe bin")?;
            w.exec_stderr(ms(3), "erreur é\n".as_bytes())?;
            w.marker(ms(4), "line\u{2028}sep")?;
            w.resize(ms(5), 120, 40)
        })?;
        let full = parse_bytes(&file)?;
        let header_len =
            complete_len(&file[..=file.iter().position(|&b| b == b'\n').ok_or("no nl")?]);
        for cut in 0..=file.len() {
            let prefix = &file[..cut];
            let result = parse_bytes(prefix);
            if cut < header_len {
                let want = if cut == 0 { CastError::Empty } else { CastError::IncompleteHeader };
                assert_eq!(result, Err(want), "cut at {cut}");
                continue;
            }
            let cast = result.map_err(|e| format!("cut at {cut}: {e}"))?;
            let lines = prefix.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(cast.events, full.events[..lines - 1], "cut at {cut}");
            assert_eq!(cast.truncated, cut != complete_len(prefix), "cut at {cut}");
            assert_eq!(cast.header, full.header);
            cast.raw_stream(Stream::Output)?;
        }
        Ok(())
    }

    /// Records each `write` call as it arrives, and counts flushes.
    #[derive(Debug, Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn flushes_only_whole_lines_and_only_after_the_interval() -> TestResult {
        let mut w = CastWriter::new(Recorder::default(), &header())?;
        assert_eq!(w.get_ref().writes.len(), 1, "the header is written at once");
        for k in 0..10 {
            // "€" split across two calls: the held-back half must not leak a partial line.
            w.output(ms(k * 10), &[b'a', 0xE2, 0x82])?;
            w.output(ms(k * 10 + 5), &[0xAC, b'\n'])?;
            assert!(!w.maybe_flush(ms(k * 10 + 5))?);
        }
        assert!(!w.maybe_flush(ms(99))?);
        assert_eq!(w.get_ref().writes.len(), 1, "nothing before 100 ms");
        assert!(w.maybe_flush(ms(100))?);
        assert_eq!(w.get_ref().writes.len(), 2);
        assert_eq!(w.get_ref().writes[1].iter().filter(|&&b| b == b'\n').count(), 20);

        w.output(ms(150), b"late")?;
        assert!(!w.maybe_flush(ms(150))?);
        assert!(!w.maybe_flush(ms(199))?);
        assert!(w.maybe_flush(ms(200))?);
        assert!(!w.maybe_flush(ms(400))?, "nothing buffered, nothing written");
        w.output(ms(401), b"idle, then output")?;
        assert!(w.maybe_flush(ms(401))?, "first output after an idle period goes out at once");

        let (rec, _) = w.finish(ms(500))?;
        assert!(rec.writes.iter().all(|chunk| chunk.ends_with(b"\n")), "whole lines only");
        assert!(rec.writes[1..].iter().all(|chunk| chunk.starts_with(b"[")));
        assert!(rec.flushes >= rec.writes.len());
        let cast = parse_bytes(&rec.writes.concat())?;
        assert_eq!(cast.output_text(), "a€\n".repeat(10) + "lateidle, then output");
        Ok(())
    }

    #[test]
    fn large_bursts_flush_at_the_threshold_in_whole_lines() -> TestResult {
        let mut w = CastWriter::new(Recorder::default(), &header())?;
        let chunk = [b'x'; 1000];
        for k in 0..300 {
            w.output(ms(k / 100), &chunk)?;
        }
        let writes = &w.get_ref().writes;
        assert!(writes.len() >= 4, "the buffer is bounded without maybe_flush");
        for chunk in &writes[1..] {
            assert!(chunk.starts_with(b"[") && chunk.ends_with(b"\n"));
            assert!(chunk.len() < FLUSH_THRESHOLD + 1100);
        }
        Ok(())
    }

    #[test]
    fn escaping_keeps_each_event_on_one_line() -> TestResult {
        let nasty =
            "q\"b\\s\u{1b}[31mred\u{1b}[0m\r\n\t\u{0}\u{7}\u{8}\u{c}\u{1f}\u{7f}\u{2028}\u{2029}/é";
        let mut h = header();
        h.title = Some(format!("title {nasty}"));
        let mut w = CastWriter::new(Vec::new(), &h)?;
        w.output(ms(1), nasty.as_bytes())?;
        w.input(ms(2), nasty.as_bytes())?;
        w.marker(ms(3), nasty)?;
        let (file, _) = w.finish(ms(4))?;
        assert_eq!(file.iter().filter(|&&b| b == b'\n').count(), 4, "header + 3 events");
        assert!(file.iter().all(|&b| b >= 0x20 || b == b'\n'), "no raw control bytes");
        let text = std::str::from_utf8(&file)?;
        assert!(!text.contains(['\u{2028}', '\u{2029}', '\r']));
        let cast = parse(text)?;
        assert_eq!(cast.header.title, h.title);
        assert!(cast.events.iter().all(|e| e.data == nasty));

        // Every char below 0x80 and random strings agree with serde_json's reading.
        let mut rng = Rng::new(7);
        let mut samples: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        for _ in 0..500 {
            let len = rng.below(16);
            let pick =
                ['a', '"', '\\', '\n', '\u{0}', '\u{1b}', 'é', '€', '😀', '\u{2028}', '\u{e2}'];
            samples.push((0..len).map(|_| pick[rng.below(pick.len())]).collect());
        }
        for s in samples {
            let mut buf = vec![b'"'];
            escape_json_into(&mut buf, &s);
            buf.push(b'"');
            assert_eq!(serde_json::from_slice::<String>(&buf)?, s);
        }
        Ok(())
    }

    #[test]
    fn summary_matches_the_file() -> TestResult {
        let (file, summary) = record(ms(50), |w| {
            w.output(ms(1), b"abc")?;
            w.input(ms(2), b"\xff")?;
            w.exec_stderr(ms(3), b"err")?;
            w.marker(ms(4), "exit 1")
        })?;
        assert_eq!(summary.file_sha256, sha256_file_bytes(&file));
        assert_eq!(summary.file_bytes, file.len() as u64);
        let cast = parse_bytes(&file)?;
        assert_eq!(summary.events, cast.events.len() as u64);
        assert_eq!(summary.annotations, 2);
        assert_eq!((summary.bytes_out, summary.bytes_in), (6, 1));
        assert_eq!(summary.duration, ms(50));
        assert_eq!(cast.stream_digests()?.input.hex(), hex::encode(sha256_file_bytes(b"\xff")));
        Ok(())
    }

    #[test]
    fn parse_errors_name_the_line() {
        let h = r#"{"version":2,"width":80,"height":24}"#;
        let event_err = |text: &str| match parse(text) {
            Err(CastError::Event { line, .. }) => Some(line),
            _ => None,
        };
        assert_eq!(parse(""), Err(CastError::Empty));
        assert_eq!(parse(r#"{"version":2,"#), Err(CastError::IncompleteHeader));
        assert!(matches!(
            parse("{\"version\":1,\"width\":1,\"height\":1}\n"),
            Err(CastError::Header { .. })
        ));
        assert!(matches!(parse("{\"version\":2}\n"), Err(CastError::Header { .. })));
        assert!(matches!(parse("[1.0,\"o\",\"x\"]\n"), Err(CastError::Header { .. })));
        assert_eq!(event_err(&format!("{h}\n[0.1,\"o\",\"x\"]\nnot json\n")), Some(3));
        assert_eq!(event_err(&format!("{h}\n[1.0,\"o\"]\n")), Some(2));
        assert_eq!(event_err(&format!("{h}\n[1.0,\"o\",\"x\",4]\n")), Some(2));
        assert_eq!(event_err(&format!("{h}\n[1.0,\"o\",7]\n")), Some(2));
        assert_eq!(event_err(&format!("{h}\n[-1.0,\"o\",\"x\"]\n")), Some(2));
        assert!(matches!(
            parse(&format!("{h}\n[1.0,\"o\",\"x\"]\n\n[2.0,\"o\",\"y\"]\n")),
            Err(CastError::Event { line: 3, reason }) if reason == "blank line"
        ));
        assert_eq!(event_err(&format!("{h}\n[1.0,\"o\",\"x\"] trailing\n")), Some(2));
        let mut bytes = format!("{h}\n[1.0,\"o\",\"x\"]\n[2.0,\"o\",\"").into_bytes();
        bytes.extend_from_slice(b"\xff\"]\n");
        assert!(matches!(parse_bytes(&bytes), Err(CastError::Event { line: 3, .. })));
        // The same garbage as an unterminated last line is a crash tail, not an error.
        let cast = parse_bytes(&bytes[..bytes.len() - 1]);
        assert!(matches!(cast, Ok(Cast { truncated: true, ref events, .. }) if events.len() == 1));
    }

    #[test]
    fn bad_annotations_are_reported() -> TestResult {
        let h = r#"{"version":2,"width":80,"height":24}"#;
        let annotation_line = |body: &str| -> Result<Option<usize>, CastError> {
            let cast = parse(&format!("{h}\n{body}"))?;
            Ok(match cast.raw_stream(Stream::Output) {
                Err(CastError::Annotation { line, .. }) => Some(line),
                _ => None,
            })
        };
        assert_eq!(annotation_line("[1,\"b\",\"o:AA==\"]\n[1,\"m\",\"\"]\n")?, Some(3));
        assert_eq!(annotation_line("[1,\"b\",\"o:AA==\"]\n[1,\"i\",\"x\"]\n")?, Some(3));
        assert_eq!(annotation_line("[1,\"b\",\"i\"]\n[1,\"o\",\"x\"]\n")?, Some(3));
        assert_eq!(annotation_line("[1,\"b\",\"e\"]\n[1,\"b\",\"e\"]\n")?, Some(3));
        assert_eq!(annotation_line("[1,\"o\",\"x\"]\n[1,\"b\",\"z\"]\n")?, Some(3));
        assert_eq!(annotation_line("[1,\"b\",\"o:***\"]\n[1,\"o\",\"x\"]\n")?, Some(2));
        assert_eq!(annotation_line("[1,\"b\",\"oAA==\"]\n[1,\"o\",\"x\"]\n")?, Some(2));
        assert_eq!(annotation_line("[1,\"b\",\"e\"]\n[1,\"o\",\"x\"]\n[1,\"r\",\"1x1\"]\n")?, None);
        // An annotation cut off from its event by a crash still contributes its raw bytes.
        let cast = parse(&format!("{h}\n[1,\"o\",\"a\"]\n[1,\"b\",\"o:/w==\"]\n"))?;
        assert_eq!(cast.raw_stream(Stream::Output)?, b"a\xff");
        Ok(())
    }

    /// Accepts `limit` bytes, then fails every call.
    #[derive(Debug)]
    struct Failing {
        limit: usize,
        written: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written + buf.len() > self.limit {
                return Err(io::Error::other("disk full"));
            }
            self.written += buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_fails_every_later_call() -> TestResult {
        assert!(CastWriter::new(Failing { limit: 10, written: 0 }, &header()).is_err());
        let mut w = CastWriter::new(Failing { limit: 1000, written: 0 }, &header())?;
        w.output(ms(1), &[b'x'; 2000])?;
        assert!(w.maybe_flush(ms(200)).is_err());
        assert!(w.output(ms(201), b"more").is_err());
        assert!(w.marker(ms(202), "exit").is_err());
        assert!(w.flush().is_err());
        assert!(w.finish(ms(203)).is_err());
        Ok(())
    }

    #[test]
    fn complete_len_cuts_after_the_last_newline() {
        assert_eq!(complete_len(b""), 0);
        assert_eq!(complete_len(b"abc"), 0);
        assert_eq!(complete_len(b"a\nb"), 2);
        assert_eq!(complete_len(b"a\nb\n"), 4);
    }
}
