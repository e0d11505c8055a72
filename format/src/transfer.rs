//! Passive file-transfer auditing for `sftp` and legacy `scp` channels.
//!
//! The gateway forwards every byte of a session channel unchanged; it also
//! hands each chunk, in arrival order, to one tracker per channel, which
//! reports what was transferred as [`TransferEvent`]s:
//!
//! - [`SftpTracker`] for the `sftp` subsystem (SFTP version 3, as OpenSSH
//!   speaks it, and what `scp` uses by default since OpenSSH 9.0);
//! - [`ScpTracker`] for the exec commands `scp -t PATH` / `scp -f PATH`
//!   (legacy `scp -O`, the rcp protocol).
//!
//! A tracker is a pure function of the bytes it is fed: it does no I/O, never
//! blocks, never changes or refuses anything, and never panics on any input.
//! When a stream stops making sense it reports [`TransferEvent::TrackingStopped`]
//! and ignores the rest of the channel, so a broken or hostile peer costs at
//! most a bounded amount of memory ([`SftpLimits`], and fixed bounds for scp).
//!
//! # Feeding order
//!
//! Feed each chunk to the tracker before forwarding it. Replies are then seen
//! after the requests that caused them, which both protocols rely on (SFTP
//! maps replies to requests by id; scp decides whether data follows a header
//! from the receiver's acknowledgement). Feed only channel data, not extended
//! (stderr) data.
//!
//! # Events
//!
//! - [`TransferEvent::File`]: one per file and direction, for SFTP when the
//!   server answers the CLOSE (or at [`SftpTracker::finish`]), for scp when
//!   the receiver acknowledges the content. `bytes` counts content bytes seen
//!   on the wire. `sha256`, when present, is the SHA-256 of exactly those
//!   bytes in file-offset order from offset 0; when `complete` is also true it
//!   is the digest of the whole file (what `sha256sum` prints). `sha256` is
//!   `None` when no content started (refused or unanswered open) or when the
//!   bytes do not form one run from offset 0 (hole, overlap, resumed
//!   transfer, reorder buffer exceeded); a [`Note`] then says why.
//!   `complete` means the transfer ended normally and every byte from offset
//!   0 to the end was seen. SFTP: CLOSE answered OK, no READ/WRITE failed,
//!   content is one run from 0, and for a download a READ was answered with
//!   EOF at its end. scp: the announced size arrived and both sides said OK.
//! - [`TransferEvent::Op`]: SFTP metadata operations (remove, rename, mkdir,
//!   rmdir, setstat, symlink, hardlink, server-side copy, ...), emitted when
//!   the server answers, with the outcome, or at `finish` as unanswered.
//! - [`TransferEvent::SftpInit`]: the version the client's INIT asked for.
//! - [`TransferEvent::ScpError`]: an scp error line not tied to a file (for
//!   example a source the remote scp could not open).
//! - [`TransferEvent::TrackingStopped`]: the tracker gave up on the channel;
//!   it is followed by incomplete events for everything in flight.
//!
//! An SFTP OPEN that fails emits a `File` event with no bytes, no digest,
//! `complete: false` and [`Note::OpenFailed`], so refused attempts are
//! audited. A file opened only to be the source or target of `copy-data`
//! emits no `File` event: the [`OpKind::CopyData`] operation reports it.

//! # Paths
//!
//! Paths and messages are untrusted bytes. They are rendered losslessly with
//! [`escape_bytes`]: valid UTF-8 is kept, `\` becomes `\\`, other bytes that
//! are not UTF-8 and ASCII control characters become `\xNN`, and invisible or
//! control Unicode characters become `\u{NNNN}`. Longer than 4096 bytes, a path
//! is cut and ends with `\[N more bytes]`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use sha2::{Digest, Sha256};

/// Largest SFTP packet OpenSSH accepts (`SFTP_MAX_MSG_LENGTH`, 256 KiB).
pub const SFTP_MAX_PACKET: u32 = 256 * 1024;

/// Longest path or handle kept in memory; longer ones are cut (paths) or not
/// tracked (handles: SFTP allows at most 256 bytes).
const MAX_TEXT: usize = 4096;
const MAX_MESSAGE: usize = 1024;
const MAX_HANDLE: usize = 256;

// SFTP v3 packet types (draft-ietf-secsh-filexfer-02).
const FXP_INIT: u8 = 1;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_SETSTAT: u8 = 9;
const FXP_FSETSTAT: u8 = 10;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_SYMLINK: u8 = 20;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;
const FXP_EXTENDED: u8 = 200;

const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;

const FXF_WRITE: u32 = 0x02;
const FXF_APPEND: u32 = 0x04;

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Which way a file's content went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to target host.
    Upload,
    /// Target host to client.
    Download,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Upload => "upload",
            Self::Download => "download",
        })
    }
}

/// One of the two byte streams of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Bytes the client sent.
    ClientToServer,
    /// Bytes the target host sent.
    ServerToClient,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientToServer => "client-to-server",
            Self::ServerToClient => "server-to-client",
        })
    }
}

/// What a tracker reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// The client's `SSH_FXP_INIT`, with the protocol version it asked for.
    SftpInit {
        /// Requested SFTP version (3 for OpenSSH).
        version: u32,
    },
    /// A file's content went one way.
    File(FileTransfer),
    /// An SFTP metadata operation, once answered (or at channel end).
    Op(FileOp),
    /// An scp error line not attached to a file event.
    ScpError {
        /// Who sent it.
        stream: Stream,
        /// `\x02` (the sender gives up) rather than `\x01`.
        fatal: bool,
        /// The message, escaped.
        message: String,
    },
    /// The tracker stopped observing this channel; bytes still flow.
    TrackingStopped {
        /// Why.
        error: TrackError,
    },
}

/// A file transfer, see the module documentation for the exact meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTransfer {
    /// Remote path, escaped with [`escape_bytes`] and cut after 4096 bytes (see the module
    /// documentation).
    pub path: String,
    /// Which way the content went.
    pub direction: Direction,
    /// Content bytes seen on the wire (repeats included).
    pub bytes: u64,
    /// SHA-256 of the `bytes` bytes in offset order from 0, if computable.
    pub sha256: Option<[u8; 32]>,
    /// The transfer ended normally and every byte of the file was seen.
    pub complete: bool,
    /// Why the transfer is incomplete or the digest missing, and caveats.
    pub notes: Vec<Note>,
}

impl FileTransfer {
    /// `sha256` as lower-case hex.
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.map(hex::encode)
    }
}

/// An SFTP metadata operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOp {
    /// What was asked.
    pub op: OpKind,
    /// The path acted on, escaped (see [`OpKind`] for which one).
    pub path: String,
    /// The second path, for operations that have one.
    pub target: Option<String>,
    /// Attributes sent with setstat-like operations and mkdir.
    pub attrs: Option<FileAttrs>,
    /// The server's answer.
    pub outcome: Outcome,
}

/// SFTP metadata operations that are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `SSH_FXP_REMOVE`: `path` removed.
    Remove,
    /// `SSH_FXP_RENAME`: `path` renamed to `target`.
    Rename,
    /// `posix-rename@openssh.com`: `path` renamed to `target`, replacing it.
    PosixRename,
    /// `SSH_FXP_MKDIR`: `path` created.
    Mkdir,
    /// `SSH_FXP_RMDIR`: `path` removed.
    Rmdir,
    /// `SSH_FXP_SETSTAT`: attributes of `path` changed.
    Setstat,
    /// `SSH_FXP_FSETSTAT`: attributes of the open file `path` changed.
    Fsetstat,
    /// `lsetstat@openssh.com`: attributes of `path` (not followed) changed.
    Lsetstat,
    /// `SSH_FXP_SYMLINK`: link `path` created, pointing at `target`.
    Symlink,
    /// `hardlink@openssh.com`: link `path` created to the existing `target`.
    Hardlink,
    /// `copy-data`: server-side copy from the open file `path` to `target`.
    CopyData,
}

impl OpKind {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Remove => "remove",
            Self::Rename => "rename",
            Self::PosixRename => "posix-rename",
            Self::Mkdir => "mkdir",
            Self::Rmdir => "rmdir",
            Self::Setstat => "setstat",
            Self::Fsetstat => "fsetstat",
            Self::Lsetstat => "lsetstat",
            Self::Symlink => "symlink",
            Self::Hardlink => "hardlink",
            Self::CopyData => "copy-data",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SFTP v3 file attributes, as far as they were sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileAttrs {
    /// New size (truncation).
    pub size: Option<u64>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Mode bits, including the file type bits if sent.
    pub permissions: Option<u32>,
    /// Access time, seconds since the epoch.
    pub atime: Option<u32>,
    /// Modification time, seconds since the epoch.
    pub mtime: Option<u32>,
}

/// How the server answered a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `SSH_FX_OK`.
    Ok,
    /// Any other status.
    Failed(SftpStatus),
    /// No answer before the channel ended or tracking stopped.
    Unanswered,
}

/// An `SSH_FXP_STATUS` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpStatus {
    /// Status code (`SSH_FX_*`).
    pub code: u32,
    /// The server's message, escaped.
    pub message: String,
}

impl SftpStatus {
    fn name(&self) -> &'static str {
        match self.code {
            0 => "ok",
            1 => "eof",
            2 => "no such file",
            3 => "permission denied",
            4 => "failure",
            5 => "bad message",
            6 => "no connection",
            7 => "connection lost",
            8 => "operation unsupported",
            _ => "unknown status",
        }
    }
}

impl fmt::Display for SftpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Why a [`FileTransfer`] is incomplete or has no digest, and other caveats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The server refused the OPEN; nothing was transferred.
    OpenFailed(SftpStatus),
    /// The OPEN was never answered.
    OpenUnanswered,
    /// The server's handle is longer than SFTP allows, so the file was not
    /// followed.
    HandleTooLong {
        /// Handle length in bytes.
        len: usize,
    },
    /// A READ failed (first failure).
    ReadFailed {
        /// Offset of the failed READ.
        offset: u64,
        /// The server's answer.
        status: SftpStatus,
    },
    /// A WRITE failed (first failure).
    WriteFailed {
        /// Offset of the failed WRITE.
        offset: u64,
        /// The server's answer.
        status: SftpStatus,
    },
    /// The CLOSE failed.
    CloseFailed(SftpStatus),
    /// The CLOSE was never answered.
    CloseUnanswered,
    /// The channel ended with the file still open.
    NotClosed,
    /// A download closed before any READ was answered with EOF.
    NoEof,
    /// Opened in append mode: offsets are ignored by the server, so the file
    /// holds other bytes before these.
    Append,
    /// No byte at or after `offset` up to the next piece was seen: the
    /// transfer skipped it (resumed transfers start past 0) or the server
    /// never sent it. No digest.
    Hole {
        /// Start of the first missing range.
        offset: u64,
    },
    /// Two pieces of content overlapped at `offset`: no digest.
    Overlap {
        /// Where the later piece started.
        offset: u64,
    },
    /// Out-of-order pieces exceeded the reorder buffer: no digest.
    ReorderBufferFull {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Too many disjoint pieces to follow: no digest, completeness unknown.
    TooFragmented,
    /// Content was copied by the server (`copy-data`), not over the wire.
    ServerSideCopy,
    /// The tracker stopped before the transfer ended.
    TrackingStopped,
    /// scp: the receiver refused the file; nothing was transferred.
    ScpRefused {
        /// The receiver's message, escaped.
        message: String,
    },
    /// scp: the sender reported an error after the content (read error; the
    /// content is padding from there on).
    ScpSenderError {
        /// The sender's message, escaped.
        message: String,
    },
    /// scp: the receiver reported an error after the content (write error).
    ScpReceiverError {
        /// The receiver's message, escaped.
        message: String,
    },
    /// scp: fewer bytes than announced before the channel ended.
    ScpTruncated {
        /// Announced size.
        expected: u64,
    },
    /// scp: the last step was never acknowledged.
    ScpUnacknowledged,
    /// scp upload: the target may be an existing directory, in which case
    /// the file landed at `target/sent_name` rather than at `path`.
    ScpTargetMayBeDirectory {
        /// Name the client sent, escaped.
        sent_name: String,
    },
    /// scp download: the sent name matches no source argument; the path is
    /// a guess (first source's directory plus the name).
    ScpSourceGuessed,
    /// scp: the command line has shell syntax (`~`, `$`, globs); the path is
    /// as written, before the remote shell expanded it.
    ShellExpansion,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OpenFailed(s) => write!(f, "open failed: {s}"),
            Self::OpenUnanswered => f.write_str("open not answered"),
            Self::HandleTooLong { len } => write!(f, "{len}-byte handle not followed"),
            Self::ReadFailed { offset, status } => write!(f, "read at {offset} failed: {status}"),
            Self::WriteFailed { offset, status } => write!(f, "write at {offset} failed: {status}"),
            Self::CloseFailed(s) => write!(f, "close failed: {s}"),
            Self::CloseUnanswered => f.write_str("close not answered"),
            Self::NotClosed => f.write_str("channel ended with the file open"),
            Self::NoEof => f.write_str("closed before end of file"),
            Self::Append => f.write_str("append mode"),
            Self::Hole { offset } => write!(f, "bytes from offset {offset} not seen"),
            Self::Overlap { offset } => write!(f, "overlapping content at offset {offset}"),
            Self::ReorderBufferFull { limit } => {
                write!(f, "out-of-order content exceeded the {limit}-byte buffer")
            }
            Self::TooFragmented => f.write_str("too many disjoint pieces"),
            Self::ServerSideCopy => f.write_str("content copied on the server"),
            Self::TrackingStopped => f.write_str("tracking stopped"),
            Self::ScpRefused { message } => write!(f, "refused: {message}"),
            Self::ScpSenderError { message } => write!(f, "sender error: {message}"),
            Self::ScpReceiverError { message } => write!(f, "receiver error: {message}"),
            Self::ScpTruncated { expected } => write!(f, "ended before {expected} bytes"),
            Self::ScpUnacknowledged => f.write_str("not acknowledged"),
            Self::ScpTargetMayBeDirectory { sent_name } => {
                write!(f, "if the target is a directory, the file is in it as {sent_name}")
            }
            Self::ScpSourceGuessed => f.write_str("source path guessed"),
            Self::ShellExpansion => f.write_str("path subject to remote shell expansion"),
        }
    }
}

/// Why a tracker stopped observing a channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    /// An SFTP packet claims to be larger than the limit.
    #[error("{stream}: SFTP packet of {len} bytes exceeds the {max}-byte limit")]
    PacketTooLarge {
        /// Where.
        stream: Stream,
        /// Claimed length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// An SFTP packet with length 0 (no type byte).
    #[error("{stream}: empty SFTP packet")]
    EmptyPacket {
        /// Where.
        stream: Stream,
    },
    /// More files open at once than the limit.
    #[error("more than {max} open files")]
    TooManyOpenFiles {
        /// The limit.
        max: usize,
    },
    /// More unanswered requests than the limit.
    #[error("more than {max} unanswered requests")]
    TooManyRequests {
        /// The limit.
        max: usize,
    },
    /// scp: a byte that starts no known record.
    #[error("{stream}: unexpected byte {byte:#04x} in the scp stream")]
    ScpUnexpectedByte {
        /// Where.
        stream: Stream,
        /// The byte.
        byte: u8,
    },
    /// scp: a control line too long to be real.
    #[error("{stream}: scp control line longer than {max} bytes")]
    ScpLineTooLong {
        /// Where.
        stream: Stream,
        /// The limit.
        max: usize,
    },
    /// scp: a `C` or `D` line that does not parse.
    #[error("malformed scp control line {line:?}")]
    ScpBadLine {
        /// The line, escaped.
        line: String,
    },
    /// scp: the sender kept sending while an acknowledgement was due.
    #[error("more than {max} scp bytes sent ahead of an acknowledgement")]
    ScpNotWaiting {
        /// The limit.
        max: usize,
    },
    /// scp: directories nested deeper than the limit.
    #[error("scp directories nested deeper than {max}")]
    ScpTooDeep {
        /// The limit.
        max: usize,
    },
}

/// Memory bounds of an [`SftpTracker`]. Exceeding `max_packet`,
/// `max_open_files` or `max_pending_requests` stops tracking the channel;
/// exceeding `reorder_buffer` or `max_fragments` only costs that file its
/// digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SftpLimits {
    /// Largest packet length field accepted.
    pub max_packet: u32,
    /// Bytes of out-of-order content held, across all files of the channel.
    pub reorder_buffer: usize,
    /// Files open at once.
    pub max_open_files: usize,
    /// Requests waiting for an answer.
    pub max_pending_requests: usize,
    /// Disjoint pieces followed per file and direction.
    pub max_fragments: usize,
}

impl Default for SftpLimits {
    fn default() -> Self {
        Self {
            max_packet: SFTP_MAX_PACKET,
            // OpenSSH pipelines 64 requests of 32 KiB (2 MiB); the client picks WRITE
            // offsets, so it can fill this buffer on every channel.
            reorder_buffer: 8 * 1024 * 1024,
            max_open_files: 1024,
            max_pending_requests: 4096,
            max_fragments: 1024,
        }
    }
}

/// Renders untrusted bytes as a printable `String`, losslessly (see the module
/// documentation): the original bytes can always be recovered.
pub fn escape_bytes(raw: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(raw.len());
    let push_byte = |out: &mut String, b: u8| {
        out.push('\\');
        out.push('x');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    };
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_ascii_control() {
                // An ASCII char is one byte.
                push_byte(&mut out, c as u8);
            } else if c.is_control() || is_invisible(c) {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_byte(&mut out, b);
        }
    }
    out
}

/// Format characters that can hide or reorder text in a log viewer or terminal: bidirectional
/// marks, embeddings, overrides and isolates, zero-width characters, the soft hyphen, line and
/// paragraph separators, the BOM and interlinear annotation marks.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// Untrusted text kept in memory, cut at a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Text {
    raw: Vec<u8>,
    omitted: usize,
}

impl Text {
    fn new(raw: &[u8], max: usize) -> Self {
        let keep = raw.len().min(max);
        Self { raw: raw[..keep].to_vec(), omitted: raw.len() - keep }
    }

    fn path(raw: &[u8]) -> Self {
        Self::new(raw, MAX_TEXT)
    }

    fn render(&self) -> String {
        let mut s = escape_bytes(&self.raw);
        if self.omitted > 0 {
            s.push_str(&format!("\\[{} more bytes]", self.omitted));
        }
        s
    }
}

fn message(raw: &[u8]) -> String {
    Text::new(raw, MAX_MESSAGE).render()
}

/// Big-endian SSH wire reader over one packet.
#[derive(Debug)]
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    fn attrs(&mut self) -> Option<FileAttrs> {
        let flags = self.u32()?;
        let mut a = FileAttrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid = Some(self.u32()?);
            a.gid = Some(self.u32()?);
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.atime = Some(self.u32()?);
            a.mtime = Some(self.u32()?);
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.string()?;
                self.string()?;
            }
        }
        Some(a)
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_be_bytes(w)
}

// ---------------------------------------------------------------------------
// Content: bytes of one file in one direction, hashed in offset order.
// ---------------------------------------------------------------------------

/// Bytes of out-of-order content held by one tracker.
#[derive(Debug)]
struct Budget {
    used: usize,
    limit: usize,
}

impl Budget {
    fn take(&mut self, n: usize) -> bool {
        match self.used.checked_add(n) {
            Some(total) if total <= self.limit => {
                self.used = total;
                true
            }
            _ => false,
        }
    }

    fn give(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
    }
}

/// A piece of content past the contiguous prefix. While the digest is alive
/// it holds its bytes; afterwards only its extent (`data` empty).
#[derive(Debug)]
struct Piece {
    end: u64,
    data: Vec<u8>,
    reserved: usize,
}

/// The piece currently streaming in from one packet.
#[derive(Debug)]
enum Cur {
    Idle,
    /// At the end of the contiguous prefix: hashed straight from the input.
    Direct,
    /// Ahead of the prefix: copied until it can be hashed.
    Buffer {
        offset: u64,
        data: Vec<u8>,
        reserved: usize,
    },
    /// Digest already lost: only the extent is kept.
    Count {
        offset: u64,
        len: u64,
    },
}

#[derive(Debug)]
struct Content {
    /// A READ or WRITE was sent for this direction.
    requested: bool,
    bytes: u64,
    /// End of the contiguous run of content starting at offset 0.
    next: u64,
    hasher: Option<Sha256>,
    /// Why the digest was lost.
    loss: Option<Note>,
    /// Pieces past `next`, keyed by start; never overlapping, none at `next`.
    ahead: BTreeMap<u64, Piece>,
    /// Too many pieces: coverage no longer known.
    fragmented: bool,
    cur: Cur,
}

/// What a [`Content`] amounts to at the end.
#[derive(Debug)]
struct Summary {
    bytes: u64,
    sha256: Option<[u8; 32]>,
    notes: Vec<Note>,
    /// `Some(end)` when content covers exactly `0..end`.
    contiguous_end: Option<u64>,
}

impl Content {
    fn new() -> Self {
        Self {
            requested: false,
            bytes: 0,
            next: 0,
            hasher: Some(Sha256::new()),
            loss: None,
            ahead: BTreeMap::new(),
            fragmented: false,
            cur: Cur::Idle,
        }
    }

    fn begin(&mut self, offset: u64, len: u32, budget: &mut Budget) {
        self.abort_piece(budget);
        self.requested = true;
        let len_usize = len as usize;
        self.cur = if self.hasher.is_none() {
            Cur::Count { offset, len: 0 }
        } else if offset == self.next {
            Cur::Direct
        } else if offset < self.next {
            self.lose(Note::Overlap { offset }, budget);
            Cur::Count { offset, len: 0 }
        } else if budget.take(len_usize) {
            Cur::Buffer { offset, data: Vec::with_capacity(len_usize), reserved: len_usize }
        } else {
            self.lose(Note::ReorderBufferFull { limit: budget.limit }, budget);
            Cur::Count { offset, len: 0 }
        };
    }

    fn data(&mut self, bytes: &[u8]) {
        let n = bytes.len() as u64;
        self.bytes = self.bytes.saturating_add(n);
        match &mut self.cur {
            Cur::Direct => {
                if let Some(h) = &mut self.hasher {
                    h.update(bytes);
                }
                self.next = self.next.saturating_add(n);
            }
            Cur::Buffer { data, reserved, .. } => {
                let room = reserved.saturating_sub(data.len());
                data.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Cur::Count { len, .. } => *len = len.saturating_add(n),
            Cur::Idle => {}
        }
    }

    fn end(&mut self, budget: &mut Budget, max_fragments: usize) {
        match std::mem::replace(&mut self.cur, Cur::Idle) {
            Cur::Idle => {}
            Cur::Direct => self.drain(budget),
            Cur::Buffer { offset, data, reserved } => {
                let end = offset.saturating_add(data.len() as u64);
                if data.is_empty() {
                    budget.give(reserved);
                } else if self.hasher.is_none() || self.overlaps_ahead(offset, end) {
                    budget.give(reserved);
                    self.lose(Note::Overlap { offset }, budget);
                    self.add_extent(offset, end, budget, max_fragments);
                } else {
                    self.ahead.insert(offset, Piece { end, data, reserved });
                    self.check_fragments(budget, max_fragments);
                }
            }
            Cur::Count { offset, len } => {
                self.add_extent(offset, offset.saturating_add(len), budget, max_fragments);
            }
        }
    }

    /// Drops a piece cut short (channel end): the peer never completed it.
    fn abort_piece(&mut self, budget: &mut Budget) {
        if let Cur::Buffer { reserved, .. } = std::mem::replace(&mut self.cur, Cur::Idle) {
            budget.give(reserved);
        }
    }

    fn overlaps_ahead(&self, start: u64, end: u64) -> bool {
        let before = self.ahead.range(..=start).next_back().is_some_and(|(_, p)| p.end > start);
        let after = self.ahead.range(start..end).next().is_some();
        before || after
    }

    /// Hashes pieces that became contiguous.
    fn drain(&mut self, budget: &mut Budget) {
        while let Some(entry) = self.ahead.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let piece = entry.remove();
            budget.give(piece.reserved);
            if start < self.next {
                self.lose(Note::Overlap { offset: start }, budget);
            } else if let Some(h) = &mut self.hasher {
                h.update(&piece.data);
            }
            self.next = self.next.max(piece.end);
        }
    }

    /// Gives up the digest, keeping only the extents of pieces.
    fn lose(&mut self, why: Note, budget: &mut Budget) {
        if self.hasher.take().is_some() {
            self.loss = Some(why);
        }
        for piece in self.ahead.values_mut() {
            budget.give(piece.reserved);
            piece.reserved = 0;
            piece.data = Vec::new();
        }
    }

    /// Records that `start..end` was seen (digest already lost).
    fn add_extent(&mut self, start: u64, end: u64, budget: &mut Budget, max_fragments: usize) {
        if end <= start || end <= self.next || self.fragmented {
            return;
        }
        if start <= self.next {
            self.next = end;
            self.drain(budget);
            return;
        }
        let (mut start, mut end) = (start, end);
        if let Some((&s, p)) = self.ahead.range(..=start).next_back()
            && p.end >= start
        {
            start = s;
            end = end.max(p.end);
            self.ahead.remove(&s);
        }
        while let Some((&s, p)) = self.ahead.range(start..=end).next() {
            end = end.max(p.end);
            self.ahead.remove(&s);
        }
        self.ahead.insert(start, Piece { end, data: Vec::new(), reserved: 0 });
        self.check_fragments(budget, max_fragments);
    }

    fn check_fragments(&mut self, budget: &mut Budget, max_fragments: usize) {
        if self.ahead.len() > max_fragments {
            self.lose(Note::TooFragmented, budget);
            self.fragmented = true;
            self.ahead.clear();
        }
    }

    fn summary(mut self, budget: &mut Budget) -> Summary {
        self.abort_piece(budget);
        for piece in self.ahead.values() {
            budget.give(piece.reserved);
        }
        let mut notes = Vec::new();
        let contiguous = !self.fragmented && self.ahead.is_empty();
        if !contiguous && !self.fragmented {
            notes.push(Note::Hole { offset: self.next });
        }
        let sha256 = match (self.hasher, contiguous) {
            (Some(h), true) => Some(h.finalize().into()),
            _ => None,
        };
        notes.extend(self.loss);
        Summary {
            bytes: self.bytes,
            sha256,
            notes,
            contiguous_end: contiguous.then_some(self.next),
        }
    }

    fn heap_bytes(&self) -> usize {
        let cur = match &self.cur {
            Cur::Buffer { data, .. } => data.capacity(),
            _ => 0,
        };
        cur + self.ahead.len() * 64 + self.ahead.values().map(|p| p.data.capacity()).sum::<usize>()
    }
}

// ---------------------------------------------------------------------------
// SFTP
// ---------------------------------------------------------------------------

type FileId = u64;

/// A file between its HANDLE and the answer to its CLOSE.
#[derive(Debug)]
struct OpenFile {
    path: Text,
    pflags: u32,
    upload: Content,
    download: Content,
    write_error: Option<(u64, SftpStatus)>,
    read_error: Option<(u64, SftpStatus)>,
    /// Lowest offset a READ was answered with EOF at.
    eof_at: Option<u64>,
    /// End of the last DATA shorter than its READ asked for.
    short_end: Option<u64>,
    server_copy: bool,
}

/// How a file's life ended.
#[derive(Debug)]
enum End {
    Closed,
    CloseFailed(SftpStatus),
    CloseUnanswered,
    NotClosed,
    Stopped,
}

impl OpenFile {
    fn new(path: Text, pflags: u32) -> Self {
        Self {
            path,
            pflags,
            upload: Content::new(),
            download: Content::new(),
            write_error: None,
            read_error: None,
            eof_at: None,
            short_end: None,
            server_copy: false,
        }
    }

    fn content(&mut self, direction: Direction) -> &mut Content {
        match direction {
            Direction::Upload => &mut self.upload,
            Direction::Download => &mut self.download,
        }
    }

    fn into_events(self, end: End, budget: &mut Budget, out: &mut Vec<TransferEvent>) {
        let path = self.path.render();
        let upload_wanted = self.upload.requested || self.pflags & (FXF_WRITE | FXF_APPEND) != 0;
        let download_wanted = self.download.requested || !upload_wanted;
        let copy_only = self.server_copy && !self.upload.requested && !self.download.requested;
        let closed = matches!(end, End::Closed);
        let end_note = match end {
            End::Closed => None,
            End::CloseFailed(s) => Some(Note::CloseFailed(s)),
            End::CloseUnanswered => Some(Note::CloseUnanswered),
            End::NotClosed => Some(Note::NotClosed),
            End::Stopped => Some(Note::TrackingStopped),
        };
        let upload = self.upload.summary(budget);
        let download = self.download.summary(budget);
        if copy_only {
            // Reported by the copy-data operation; nothing crossed the wire.
            return;
        }
        if upload_wanted {
            let mut notes = Vec::new();
            let mut complete = closed && upload.contiguous_end.is_some();
            if let Some((offset, status)) = self.write_error.clone() {
                notes.push(Note::WriteFailed { offset, status });
                complete = false;
            }
            notes.extend(end_note.clone());
            if self.pflags & FXF_APPEND != 0 {
                notes.push(Note::Append);
            }
            if self.server_copy {
                notes.push(Note::ServerSideCopy);
                complete = false;
            }
            notes.extend(upload.notes);
            out.push(TransferEvent::File(FileTransfer {
                path: path.clone(),
                direction: Direction::Upload,
                bytes: upload.bytes,
                sha256: upload.sha256,
                complete,
                notes,
            }));
        }
        if download_wanted {
            let mut notes = Vec::new();
            let eof = match (download.contiguous_end, self.eof_at) {
                (Some(end), Some(eof)) => eof <= end || self.short_end == Some(end),
                _ => false,
            };
            let mut complete = closed && eof;
            if let Some((offset, status)) = self.read_error {
                notes.push(Note::ReadFailed { offset, status });
                complete = false;
            }
            if self.eof_at.is_none() || (!eof && download.contiguous_end.is_some()) {
                notes.push(Note::NoEof);
            }
            notes.extend(end_note);
            if self.server_copy {
                notes.push(Note::ServerSideCopy);
            }
            notes.extend(download.notes);
            out.push(TransferEvent::File(FileTransfer {
                path,
                direction: Direction::Download,
                bytes: download.bytes,
                sha256: download.sha256,
                complete,
                notes,
            }));
        }
    }

    fn heap_bytes(&self) -> usize {
        256 + self.path.raw.capacity() + self.upload.heap_bytes() + self.download.heap_bytes()
    }
}

/// A request waiting for its answer.
#[derive(Debug)]
enum Pending {
    Open { path: Text, pflags: u32 },
    Read { file: FileId, offset: u64, len: u32 },
    Write { file: FileId, offset: u64 },
    Close { file: FileId },
    Op(PendingOp),
}

#[derive(Debug)]
struct PendingOp {
    op: OpKind,
    path: String,
    target: Option<String>,
    attrs: Option<FileAttrs>,
}

impl PendingOp {
    fn event(self, outcome: Outcome) -> TransferEvent {
        TransferEvent::Op(FileOp {
            op: self.op,
            path: self.path,
            target: self.target,
            attrs: self.attrs,
            outcome,
        })
    }

    fn heap_bytes(&self) -> usize {
        64 + self.path.capacity() + self.target.as_ref().map_or(0, String::capacity)
    }
}

fn failed_open(path: &Text, pflags: u32, notes: Vec<Note>) -> TransferEvent {
    let direction = if pflags & (FXF_WRITE | FXF_APPEND) != 0 {
        Direction::Upload
    } else {
        Direction::Download
    };
    TransferEvent::File(FileTransfer {
        path: path.render(),
        direction,
        bytes: 0,
        sha256: None,
        complete: false,
        notes,
    })
}

/// Where the framer of one stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting the head of a packet.
    Head,
    /// Streaming the data of a WRITE or DATA, then skipping `trailing`.
    Data { left: u32, trailing: u32 },
    /// Skipping the rest of a packet nobody needs.
    Skip { left: u32 },
}

/// What to do with the head collected so far.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Collect this many head bytes in total.
    Need(usize),
    /// The head is a whole packet.
    Packet,
    /// The head ends where `len` data bytes start, followed by `trailing`.
    Data { len: u32, trailing: u32 },
    /// Skip the rest of the packet.
    Skip(u32),
}

/// Splits one stream into packets across chunks.
#[derive(Debug)]
struct Framer {
    stream: Stream,
    head: Vec<u8>,
    phase: Phase,
}

impl Framer {
    fn new(stream: Stream) -> Self {
        Self { stream, head: Vec::new(), phase: Phase::Head }
    }

    /// Decides, from the head collected so far, how much more to collect.
    fn classify(&self, max: u32) -> Result<Step, TrackError> {
        let head = &self.head;
        if head.len() < 5 {
            return Ok(Step::Need(5));
        }
        let len = be32(head);
        if len == 0 {
            return Err(TrackError::EmptyPacket { stream: self.stream });
        }
        if len > max {
            return Err(TrackError::PacketTooLarge { stream: self.stream, len, max });
        }
        let total = 4 + len as usize;
        let whole = if head.len() >= total { Step::Packet } else { Step::Need(total) };
        let typ = head[4];
        let prefix = match (self.stream, typ) {
            (Stream::ClientToServer, FXP_WRITE) => {
                // length, type, id, handle length
                if head.len() < 13 {
                    return Ok(if total < 13 { whole } else { Step::Need(13) });
                }
                // ... handle, offset, data length
                13usize.saturating_add(be32(&head[9..]) as usize).saturating_add(12)
            }
            (Stream::ServerToClient, FXP_DATA) => 13,
            (Stream::ClientToServer, t) if is_client_interesting(t) => return Ok(whole),
            (Stream::ServerToClient, FXP_STATUS | FXP_HANDLE) => return Ok(whole),
            _ => return Ok(Step::Skip((total - head.len()) as u32)),
        };
        if prefix > total {
            // Malformed: the packet parser will ignore it.
            return Ok(whole);
        }
        if head.len() < prefix {
            return Ok(Step::Need(prefix));
        }
        let dlen = be32(&head[prefix - 4..]);
        let room = (total - prefix) as u32;
        if dlen > room {
            // The server would reject this packet; it carries no content.
            return Ok(Step::Skip(room));
        }
        Ok(Step::Data { len: dlen, trailing: room - dlen })
    }
}

fn is_client_interesting(t: u8) -> bool {
    matches!(
        t,
        FXP_INIT
            | FXP_OPEN
            | FXP_CLOSE
            | FXP_READ
            | FXP_SETSTAT
            | FXP_FSETSTAT
            | FXP_REMOVE
            | FXP_MKDIR
            | FXP_RMDIR
            | FXP_RENAME
            | FXP_SYMLINK
            | FXP_EXTENDED
    )
}

/// Observes one `sftp` subsystem channel. See the module documentation.
///
/// Memory is bounded by [`SftpLimits`]: two packet heads of at most
/// `max_packet` bytes, the reorder buffer, and per open file or pending
/// request a path of at most 4 KiB and `max_fragments` small records.
/// In-order content (the normal case) is hashed straight from the chunks fed
/// in and never copied.
#[derive(Debug)]
pub struct SftpTracker {
    limits: SftpLimits,
    c2s: Framer,
    s2c: Framer,
    /// File the WRITE now streaming belongs to.
    upload_sink: Option<FileId>,
    /// File the DATA now streaming belongs to.
    download_sink: Option<FileId>,
    next_file: FileId,
    handles: HashMap<Vec<u8>, FileId>,
    files: HashMap<FileId, OpenFile>,
    pending: HashMap<u32, Pending>,
    budget: Budget,
    done: bool,
}

impl Default for SftpTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SftpTracker {
    /// A tracker with [`SftpLimits::default`].
    pub fn new() -> Self {
        Self::with_limits(SftpLimits::default())
    }

    /// A tracker with the given memory bounds.
    pub fn with_limits(limits: SftpLimits) -> Self {
        Self {
            limits,
            c2s: Framer::new(Stream::ClientToServer),
            s2c: Framer::new(Stream::ServerToClient),
            upload_sink: None,
            download_sink: None,
            next_file: 0,
            handles: HashMap::new(),
            files: HashMap::new(),
            pending: HashMap::new(),
            budget: Budget { used: 0, limit: limits.reorder_buffer },
            done: false,
        }
    }

    /// Feeds bytes the client sent.
    pub fn client_to_server(&mut self, bytes: &[u8]) -> Vec<TransferEvent> {
        let mut out = Vec::new();
        self.feed(Stream::ClientToServer, bytes, &mut out);
        out
    }

    /// Feeds bytes the target host sent.
    pub fn server_to_client(&mut self, bytes: &[u8]) -> Vec<TransferEvent> {
        let mut out = Vec::new();
        self.feed(Stream::ServerToClient, bytes, &mut out);
        out
    }

    /// Ends the channel: reports files still open and unanswered operations
    /// (all incomplete). Later calls report nothing.
    pub fn finish(&mut self) -> Vec<TransferEvent> {
        let mut out = Vec::new();
        if !self.done {
            self.flush(false, &mut out);
        }
        out
    }

    /// Approximate heap bytes held by this tracker, for metrics and tests.
    pub fn buffered_bytes(&self) -> usize {
        self.c2s.head.capacity()
            + self.s2c.head.capacity()
            + self.handles.keys().map(|h| 64 + h.capacity()).sum::<usize>()
            + self.files.values().map(OpenFile::heap_bytes).sum::<usize>()
            + self
                .pending
                .values()
                .map(|p| match p {
                    Pending::Open { path, .. } => 64 + path.raw.capacity(),
                    Pending::Op(op) => op.heap_bytes(),
                    _ => 64,
                })
                .sum::<usize>()
    }

    fn framer(&mut self, stream: Stream) -> &mut Framer {
        match stream {
            Stream::ClientToServer => &mut self.c2s,
            Stream::ServerToClient => &mut self.s2c,
        }
    }

    fn feed(&mut self, stream: Stream, mut input: &[u8], out: &mut Vec<TransferEvent>) {
        while !self.done {
            let phase = self.framer(stream).phase;
            match phase {
                Phase::Skip { left } => {
                    if input.is_empty() {
                        return;
                    }
                    let n = input.len().min(left as usize);
                    input = &input[n..];
                    let left = left - n as u32;
                    self.framer(stream).phase =
                        if left == 0 { Phase::Head } else { Phase::Skip { left } };
                }
                Phase::Data { left, trailing } => {
                    if input.is_empty() {
                        return;
                    }
                    let n = input.len().min(left as usize);
                    let (data, rest) = input.split_at(n);
                    input = rest;
                    self.content_bytes(stream, data);
                    let left = left - n as u32;
                    if left == 0 {
                        self.content_end(stream);
                        self.framer(stream).phase = after_data(trailing);
                    } else {
                        self.framer(stream).phase = Phase::Data { left, trailing };
                    }
                }
                Phase::Head => {
                    let max = self.limits.max_packet;
                    let step = match self.framer(stream).classify(max) {
                        Ok(step) => step,
                        Err(error) => return self.stop(error, out),
                    };
                    match step {
                        Step::Need(n) => {
                            if input.is_empty() {
                                return;
                            }
                            let framer = self.framer(stream);
                            let take = n.saturating_sub(framer.head.len()).min(input.len());
                            framer.head.extend_from_slice(&input[..take]);
                            input = &input[take..];
                        }
                        Step::Packet => {
                            let head = std::mem::take(&mut self.framer(stream).head);
                            match stream {
                                Stream::ClientToServer => self.client_packet(&head[4..], out),
                                Stream::ServerToClient => self.server_packet(&head[4..], out),
                            }
                            self.reuse_head(stream, head);
                        }
                        Step::Data { len, trailing } => {
                            let head = std::mem::take(&mut self.framer(stream).head);
                            match stream {
                                Stream::ClientToServer => self.write_start(&head, len, out),
                                Stream::ServerToClient => self.data_start(&head, len, out),
                            }
                            self.reuse_head(stream, head);
                            if len == 0 {
                                self.content_end(stream);
                                self.framer(stream).phase = after_data(trailing);
                            } else {
                                self.framer(stream).phase = Phase::Data { left: len, trailing };
                            }
                        }
                        Step::Skip(left) => {
                            let framer = self.framer(stream);
                            framer.head.clear();
                            if left > 0 {
                                framer.phase = Phase::Skip { left };
                            }
                        }
                    }
                }
            }
        }
    }

    /// Puts the head buffer back, keeping a small allocation for reuse.
    fn reuse_head(&mut self, stream: Stream, mut head: Vec<u8>) {
        if self.done {
            return;
        }
        head.clear();
        head.shrink_to(4096);
        self.framer(stream).head = head;
    }

    fn sink(&mut self, stream: Stream) -> (Option<FileId>, Direction) {
        match stream {
            Stream::ClientToServer => (self.upload_sink, Direction::Upload),
            Stream::ServerToClient => (self.download_sink, Direction::Download),
        }
    }

    fn content_bytes(&mut self, stream: Stream, data: &[u8]) {
        if let (Some(id), direction) = self.sink(stream)
            && let Some(file) = self.files.get_mut(&id)
        {
            file.content(direction).data(data);
        }
    }

    fn content_end(&mut self, stream: Stream) {
        if let (Some(id), direction) = self.sink(stream)
            && let Some(file) = self.files.get_mut(&id)
        {
            file.content(direction).end(&mut self.budget, self.limits.max_fragments);
        }
        match stream {
            Stream::ClientToServer => self.upload_sink = None,
            Stream::ServerToClient => self.download_sink = None,
        }
    }

    /// The head of a WRITE: length, type, id, handle, offset, data length.
    fn write_start(&mut self, head: &[u8], len: u32, out: &mut Vec<TransferEvent>) {
        self.upload_sink = None;
        let mut r = Reader(&head[5..]);
        let (Some(id), Some(handle), Some(offset)) = (r.u32(), r.string(), r.u64()) else {
            return;
        };
        let Some(&file) = self.handles.get(handle) else {
            return;
        };
        self.add_pending(id, Pending::Write { file, offset }, out);
        if let Some(f) = self.files.get_mut(&file) {
            f.upload.begin(offset, len, &mut self.budget);
            self.upload_sink = Some(file);
        }
    }

    /// The head of a DATA: length, type, id, data length.
    fn data_start(&mut self, head: &[u8], len: u32, out: &mut Vec<TransferEvent>) {
        self.download_sink = None;
        let id = be32(&head[5..]);
        match self.pending.remove(&id) {
            Some(Pending::Read { file, offset, len: asked }) => {
                if let Some(f) = self.files.get_mut(&file) {
                    if len < asked {
                        f.short_end = Some(offset.saturating_add(u64::from(len)));
                    }
                    f.download.begin(offset, len, &mut self.budget);
                    self.download_sink = Some(file);
                }
            }
            Some(other) => self.abandon(other, false, out),
            None => {}
        }
    }

    fn client_packet(&mut self, packet: &[u8], out: &mut Vec<TransferEvent>) {
        let Some((&typ, body)) = packet.split_first() else {
            return;
        };
        let mut r = Reader(body);
        if typ == FXP_INIT {
            if let Some(version) = r.u32() {
                out.push(TransferEvent::SftpInit { version });
            }
            return;
        }
        // A request that does not parse is ignored: the server rejects it too.
        let _ = self.client_request(typ, r, out);
    }

    fn client_request(
        &mut self,
        typ: u8,
        mut r: Reader<'_>,
        out: &mut Vec<TransferEvent>,
    ) -> Option<()> {
        let id = r.u32()?;
        let op = |op: OpKind, path: &[u8], target: Option<&[u8]>, attrs: Option<FileAttrs>| {
            Pending::Op(PendingOp {
                op,
                path: Text::path(path).render(),
                target: target.map(|t| Text::path(t).render()),
                attrs,
            })
        };
        let pending = match typ {
            FXP_OPEN => {
                let path = Text::path(r.string()?);
                let pflags = r.u32()?;
                Pending::Open { path, pflags }
            }
            FXP_CLOSE => {
                let file = self.handles.remove(r.string()?)?;
                Pending::Close { file }
            }
            FXP_READ => {
                let handle = r.string()?;
                let offset = r.u64()?;
                let len = r.u32()?;
                let file = *self.handles.get(handle)?;
                if let Some(f) = self.files.get_mut(&file) {
                    f.download.requested = true;
                }
                Pending::Read { file, offset, len }
            }
            FXP_SETSTAT => {
                let path = r.string()?;
                op(OpKind::Setstat, path, None, r.attrs())
            }
            FXP_FSETSTAT => {
                let path = self.handle_path(r.string()?);
                Pending::Op(PendingOp {
                    op: OpKind::Fsetstat,
                    path,
                    target: None,
                    attrs: r.attrs(),
                })
            }
            FXP_REMOVE => op(OpKind::Remove, r.string()?, None, None),
            FXP_RMDIR => op(OpKind::Rmdir, r.string()?, None, None),
            FXP_MKDIR => {
                let path = r.string()?;
                op(OpKind::Mkdir, path, None, r.attrs())
            }
            FXP_RENAME => op(OpKind::Rename, r.string()?, Some(r.string()?), None),
            FXP_SYMLINK => {
                // OpenSSH sends the link's target first, then the link.
                let target = r.string()?;
                op(OpKind::Symlink, r.string()?, Some(target), None)
            }
            FXP_EXTENDED => match r.string()? {
                b"posix-rename@openssh.com" => {
                    op(OpKind::PosixRename, r.string()?, Some(r.string()?), None)
                }
                b"hardlink@openssh.com" => {
                    let existing = r.string()?;
                    op(OpKind::Hardlink, r.string()?, Some(existing), None)
                }
                b"lsetstat@openssh.com" => {
                    let path = r.string()?;
                    op(OpKind::Lsetstat, path, None, r.attrs())
                }
                b"copy-data" => {
                    let from = r.string()?;
                    r.u64()?;
                    r.u64()?;
                    let to = r.string()?;
                    for handle in [from, to] {
                        if let Some(f) =
                            self.handles.get(handle).and_then(|id| self.files.get_mut(id))
                        {
                            f.server_copy = true;
                        }
                    }
                    Pending::Op(PendingOp {
                        op: OpKind::CopyData,
                        path: self.handle_path(from),
                        target: Some(self.handle_path(to)),
                        attrs: None,
                    })
                }
                _ => return None,
            },
            _ => return None,
        };
        self.add_pending(id, pending, out);
        Some(())
    }

    fn handle_path(&self, handle: &[u8]) -> String {
        match self.handles.get(handle).and_then(|id| self.files.get(id)) {
            Some(f) => f.path.render(),
            None => format!(
                "\\[unknown handle {}]",
                hex::encode(&handle[..handle.len().min(MAX_HANDLE)])
            ),
        }
    }

    fn add_pending(&mut self, id: u32, pending: Pending, out: &mut Vec<TransferEvent>) {
        if !self.pending.contains_key(&id) && self.pending.len() >= self.limits.max_pending_requests
        {
            let max = self.limits.max_pending_requests;
            return self.stop(TrackError::TooManyRequests { max }, out);
        }
        if let Some(old) = self.pending.insert(id, pending) {
            // A reused id: the old request will never be answered.
            self.abandon(old, false, out);
        }
    }

    fn server_packet(&mut self, packet: &[u8], out: &mut Vec<TransferEvent>) {
        let Some((&typ, body)) = packet.split_first() else {
            return;
        };
        let mut r = Reader(body);
        match typ {
            FXP_STATUS => {
                let (Some(id), Some(code)) = (r.u32(), r.u32()) else {
                    return;
                };
                let message = message(r.string().unwrap_or_default());
                self.on_status(id, SftpStatus { code, message }, out);
            }
            FXP_HANDLE => {
                if let (Some(id), Some(handle)) = (r.u32(), r.string()) {
                    self.on_handle(id, handle, out);
                }
            }
            _ => {}
        }
    }

    fn on_handle(&mut self, id: u32, handle: &[u8], out: &mut Vec<TransferEvent>) {
        let pending = match self.pending.remove(&id) {
            Some(Pending::Open { path, pflags }) => (path, pflags),
            Some(other) => return self.abandon(other, false, out),
            None => return,
        };
        let (path, pflags) = pending;
        if handle.len() > MAX_HANDLE {
            let notes = vec![Note::HandleTooLong { len: handle.len() }];
            return out.push(failed_open(&path, pflags, notes));
        }
        if self.files.len() >= self.limits.max_open_files {
            let max = self.limits.max_open_files;
            self.pending.insert(id, Pending::Open { path, pflags });
            return self.stop(TrackError::TooManyOpenFiles { max }, out);
        }
        let file = self.next_file;
        self.next_file += 1;
        self.files.insert(file, OpenFile::new(path, pflags));
        if let Some(old) = self.handles.insert(handle.to_vec(), file)
            && let Some(f) = self.files.remove(&old)
        {
            // The server reused a handle we never saw closed.
            f.into_events(End::NotClosed, &mut self.budget, out);
        }
    }

    fn on_status(&mut self, id: u32, status: SftpStatus, out: &mut Vec<TransferEvent>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        let ok = status.code == FX_OK;
        match pending {
            Pending::Open { path, pflags } => {
                out.push(failed_open(&path, pflags, vec![Note::OpenFailed(status)]));
            }
            Pending::Read { file, offset, .. } => {
                if let Some(f) = self.files.get_mut(&file) {
                    if status.code == FX_EOF {
                        f.eof_at = Some(f.eof_at.map_or(offset, |e| e.min(offset)));
                    } else if f.read_error.is_none() {
                        f.read_error = Some((offset, status));
                    }
                }
            }
            Pending::Write { file, offset } => {
                if let Some(f) = self.files.get_mut(&file)
                    && !ok
                    && f.write_error.is_none()
                {
                    f.write_error = Some((offset, status));
                }
            }
            Pending::Close { file } => {
                if let Some(f) = self.files.remove(&file) {
                    let end = if ok { End::Closed } else { End::CloseFailed(status) };
                    f.into_events(end, &mut self.budget, out);
                }
            }
            Pending::Op(op) => {
                let outcome = if ok { Outcome::Ok } else { Outcome::Failed(status) };
                out.push(op.event(outcome));
            }
        }
    }

    /// Reports a request that will never be answered.
    fn abandon(&mut self, pending: Pending, stopped: bool, out: &mut Vec<TransferEvent>) {
        match pending {
            Pending::Open { path, pflags } => {
                let mut notes = vec![Note::OpenUnanswered];
                if stopped {
                    notes.push(Note::TrackingStopped);
                }
                out.push(failed_open(&path, pflags, notes));
            }
            Pending::Close { file } => {
                if let Some(f) = self.files.remove(&file) {
                    let end = if stopped { End::Stopped } else { End::CloseUnanswered };
                    f.into_events(end, &mut self.budget, out);
                }
            }
            Pending::Op(op) => out.push(op.event(Outcome::Unanswered)),
            Pending::Read { .. } | Pending::Write { .. } => {}
        }
    }

    /// Reports everything still in flight and goes quiet.
    fn flush(&mut self, stopped: bool, out: &mut Vec<TransferEvent>) {
        self.done = true;
        // A packet cut off by the end of the channel never reached its peer.
        for file in self.files.values_mut() {
            file.upload.abort_piece(&mut self.budget);
            file.download.abort_piece(&mut self.budget);
        }
        let mut ids: Vec<u32> = self.pending.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                self.abandon(p, stopped, out);
            }
        }
        let mut files: Vec<FileId> = self.files.keys().copied().collect();
        files.sort_unstable();
        let end = || {
            if stopped { End::Stopped } else { End::NotClosed }
        };
        for id in files {
            if let Some(f) = self.files.remove(&id) {
                f.into_events(end(), &mut self.budget, out);
            }
        }
        self.handles = HashMap::new();
        self.c2s.head = Vec::new();
        self.s2c.head = Vec::new();
    }

    fn stop(&mut self, error: TrackError, out: &mut Vec<TransferEvent>) {
        out.push(TransferEvent::TrackingStopped { error });
        self.flush(true, out);
    }
}

fn after_data(trailing: u32) -> Phase {
    if trailing == 0 { Phase::Head } else { Phase::Skip { left: trailing } }
}

// ---------------------------------------------------------------------------
// Legacy scp (rcp protocol)
// ---------------------------------------------------------------------------

/// Longest scp control or error line (OpenSSH reads them into 2 KiB).
const SCP_MAX_LINE: usize = 8192;
/// Sender bytes held while an acknowledgement is due.
const SCP_MAX_HELD: usize = 256 * 1024;
/// Deepest directory nesting followed.
const SCP_MAX_DEPTH: usize = 256;

/// What the sender waits for the receiver to acknowledge.
#[derive(Debug)]
enum Await {
    /// The receiver's first `\0`.
    Ready,
    /// A `T` line.
    Time,
    /// A `C` line: an OK lets the content follow.
    Header,
    /// The content and the sender's status byte.
    Content,
    /// A `D` line.
    Dir(Vec<u8>),
    /// An `E` line.
    End,
}

#[derive(Debug)]
enum SendState {
    /// Collecting a control or error line (empty: at a record boundary).
    Line(Vec<u8>),
    /// Content bytes still to come.
    Data { left: u64 },
    /// The status byte after the content.
    Status,
    /// An error line after the content.
    StatusLine(Vec<u8>),
}

#[derive(Debug)]
enum RecvState {
    Idle,
    Line { fatal: bool, buf: Vec<u8> },
}

#[derive(Debug)]
struct ScpFile {
    path: Text,
    notes: Vec<Note>,
    size: u64,
    bytes: u64,
    hasher: Sha256,
    /// The receiver accepted the header, so content followed.
    started: bool,
    sender_error: Option<String>,
}

/// Observes one legacy `scp -t` (upload) or `scp -f` (download) exec channel.
///
/// Memory is bounded: control lines of at most 8 KiB, 256 KiB of bytes held
/// while an acknowledgement is due (none with a real scp; in a buffer of at
/// most twice that), 256 directory levels. Content is hashed straight from the
/// chunks fed in.
#[derive(Debug)]
pub struct ScpTracker {
    direction: Direction,
    /// `-d`: the target must be a directory.
    target_dir: bool,
    /// The path arguments (target for `-t`, sources for `-f`), unquoted.
    args: Vec<Vec<u8>>,
    shell_expansion: bool,
    send: SendState,
    recv: RecvState,
    /// Sender bytes that arrived while an acknowledgement was due, from `held_from` on (the
    /// bytes before it were used and are dropped when they outnumber the rest).
    held: Vec<u8>,
    held_from: usize,
    /// Bytes moved to drop used held bytes, to prove that costs linear time.
    #[cfg(test)]
    held_moved: usize,
    awaiting: VecDeque<Await>,
    /// Names of the directories entered (`D` lines acknowledged).
    dirs: Vec<Vec<u8>>,
    file: Option<ScpFile>,
    done: bool,
}

impl ScpTracker {
    /// A tracker for an exec command, if it is a legacy scp server command
    /// (`scp [-r] [-p] [-d] [-v] -t PATH` or `... -f PATH...`).
    ///
    /// # Security
    ///
    /// The command is split like a POSIX shell would (quotes, backslashes),
    /// but nothing is expanded: paths with `~`, `$` or globs are reported as
    /// written, with [`Note::ShellExpansion`]. Commands with shell operators
    /// (`;`, `|`, `&`, redirections, command substitution) are not scp
    /// commands for this purpose: `None`.
    pub fn from_command(command: impl AsRef<[u8]>) -> Option<Self> {
        let (words, shell_expansion) = shell_words(command.as_ref())?;
        let mut words = words.into_iter();
        let program = words.next()?;
        if basename(&program) != b"scp" {
            return None;
        }
        let (mut to, mut from, mut target_dir) = (false, false, false);
        let mut args = Vec::new();
        let mut options = true;
        while let Some(word) = words.next() {
            if !options || word.len() < 2 || word[0] != b'-' {
                // BSD getopt, as OpenSSH uses: options end at the first operand.
                options = false;
                args.push(word);
                continue;
            }
            if word == b"--" {
                options = false;
                continue;
            }
            for (i, &flag) in word.iter().enumerate().skip(1) {
                match flag {
                    b't' => to = true,
                    b'f' => from = true,
                    b'd' => target_dir = true,
                    b'r' | b'p' | b'v' | b'q' | b'1' | b'2' | b'3' | b'4' | b'6' | b'A' | b'B'
                    | b'C' | b'O' | b'R' | b's' | b'T' => {}
                    b'c' | b'D' | b'F' | b'i' | b'J' | b'l' | b'o' | b'P' | b'S' | b'X' => {
                        // Takes an argument: the rest of the word or the next word.
                        if i + 1 == word.len() {
                            words.next()?;
                        }
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let direction = match (to, from) {
            (true, false) if args.len() == 1 => Direction::Upload,
            (false, true) if !args.is_empty() => Direction::Download,
            _ => return None,
        };
        Some(Self {
            direction,
            target_dir,
            args,
            shell_expansion,
            send: SendState::Line(Vec::new()),
            recv: RecvState::Idle,
            held: Vec::new(),
            held_from: 0,
            #[cfg(test)]
            held_moved: 0,
            awaiting: VecDeque::from([Await::Ready]),
            dirs: Vec::new(),
            file: None,
            done: false,
        })
    }

    /// `Upload` for `scp -t`, `Download` for `scp -f`.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Feeds bytes the client sent.
    pub fn client_to_server(&mut self, bytes: &[u8]) -> Vec<TransferEvent> {
        let mut out = Vec::new();
        match self.direction {
            Direction::Upload => self.feed_sender(bytes, &mut out),
            Direction::Download => self.feed_receiver(bytes, &mut out),
        }
        out
    }

    /// Feeds bytes the target host sent.
    pub fn server_to_client(&mut self, bytes: &[u8]) -> Vec<TransferEvent> {
        let mut out = Vec::new();
        match self.direction {
            Direction::Upload => self.feed_receiver(bytes, &mut out),
            Direction::Download => self.feed_sender(bytes, &mut out),
        }
        out
    }

    /// Ends the channel: reports a file in progress (incomplete). Later calls
    /// report nothing.
    pub fn finish(&mut self) -> Vec<TransferEvent> {
        let mut out = Vec::new();
        if !self.done {
            let note = match self.send {
                SendState::Data { .. } => {
                    self.file.as_ref().map(|f| Note::ScpTruncated { expected: f.size })
                }
                _ => Some(Note::ScpUnacknowledged),
            };
            self.close(note, &mut out);
        }
        out
    }

    fn sender_stream(&self) -> Stream {
        match self.direction {
            Direction::Upload => Stream::ClientToServer,
            Direction::Download => Stream::ServerToClient,
        }
    }

    fn receiver_stream(&self) -> Stream {
        match self.direction {
            Direction::Upload => Stream::ServerToClient,
            Direction::Download => Stream::ClientToServer,
        }
    }

    fn close(&mut self, note: Option<Note>, out: &mut Vec<TransferEvent>) {
        self.done = true;
        if let Some(f) = self.file.take() {
            self.file_event(f, note, out);
        }
        self.held = Vec::new();
        self.held_from = 0;
        self.dirs = Vec::new();
        self.awaiting.clear();
        self.send = SendState::Line(Vec::new());
        self.recv = RecvState::Idle;
    }

    fn stop(&mut self, error: TrackError, out: &mut Vec<TransferEvent>) {
        out.push(TransferEvent::TrackingStopped { error });
        self.close(Some(Note::TrackingStopped), out);
    }

    /// Emits the event for a file; `problem` makes it incomplete.
    fn file_event(&self, f: ScpFile, problem: Option<Note>, out: &mut Vec<TransferEvent>) {
        let mut notes = f.notes;
        let mut complete = f.bytes == f.size && problem.is_none();
        if let Some(message) = f.sender_error {
            notes.push(Note::ScpSenderError { message });
            complete = false;
        }
        notes.extend(problem);
        out.push(TransferEvent::File(FileTransfer {
            path: f.path.render(),
            direction: self.direction,
            bytes: f.bytes,
            sha256: f.started.then(|| f.hasher.finalize().into()),
            complete,
            notes,
        }));
    }

    fn feed_sender(&mut self, input: &[u8], out: &mut Vec<TransferEvent>) {
        if self.done {
            return;
        }
        if self.held_len() == 0 && self.awaiting.is_empty() {
            let used = self.run_sender(input, out);
            self.hold(&input[used..], out);
        } else {
            self.hold(input, out);
        }
    }

    fn hold(&mut self, bytes: &[u8], out: &mut Vec<TransferEvent>) {
        if self.done || bytes.is_empty() {
            return;
        }
        if self.held_len() + bytes.len() > SCP_MAX_HELD {
            let max = SCP_MAX_HELD;
            return self.stop(TrackError::ScpNotWaiting { max }, out);
        }
        // `use_held` keeps the used prefix shorter than the rest, so this stays within twice
        // the bound, as a plain `Vec` of at most the bound would.
        let need = self.held.len() + bytes.len();
        if need > self.held.capacity() {
            let cap = (2 * self.held.capacity()).min(2 * SCP_MAX_HELD).max(need);
            self.held.reserve_exact(cap - self.held.len());
        }
        self.held.extend_from_slice(bytes);
    }

    /// Held bytes not used yet.
    fn held_len(&self) -> usize {
        self.held.len() - self.held_from
    }

    /// Marks `used` more held bytes as used. The used prefix is dropped only once it is at
    /// least as long as what remains, so each byte moved is paid for by a used byte dropped:
    /// one acknowledgement per line of a long run held costs no copy of the whole run.
    fn use_held(&mut self, used: usize) {
        self.held_from += used;
        let left = self.held_len();
        if left == 0 {
            self.held.clear();
            self.held_from = 0;
        } else if self.held_from >= left {
            self.held.drain(..self.held_from);
            self.held_from = 0;
            #[cfg(test)]
            {
                self.held_moved += left;
            }
        }
    }

    /// Interprets sender bytes until an acknowledgement is due; returns how
    /// many were used.
    fn run_sender(&mut self, input: &[u8], out: &mut Vec<TransferEvent>) -> usize {
        let mut pos = 0;
        while pos < input.len() && self.awaiting.is_empty() && !self.done {
            let rest = &input[pos..];
            match std::mem::replace(&mut self.send, SendState::Line(Vec::new())) {
                SendState::Line(mut buf) => {
                    if buf.is_empty() && !matches!(rest[0], b'C' | b'D' | b'E' | b'T' | 1 | 2) {
                        let stream = self.sender_stream();
                        let byte = rest[0];
                        self.stop(TrackError::ScpUnexpectedByte { stream, byte }, out);
                        break;
                    }
                    match read_line(&mut buf, rest) {
                        LineRead::Done(used) => {
                            pos += used;
                            self.on_line(&buf, out);
                        }
                        LineRead::More => {
                            pos = input.len();
                            self.send = SendState::Line(buf);
                        }
                        LineRead::TooLong => self.line_too_long(self.sender_stream(), out),
                    }
                }
                SendState::Data { left } => {
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if let Some(f) = &mut self.file {
                        f.hasher.update(&rest[..n]);
                        f.bytes += n as u64;
                    }
                    pos += n;
                    let left = left - n as u64;
                    self.send =
                        if left == 0 { SendState::Status } else { SendState::Data { left } };
                }
                SendState::Status => match rest[0] {
                    0 => {
                        pos += 1;
                        self.awaiting.push_back(Await::Content);
                    }
                    1 | 2 => {
                        pos += 1;
                        self.send = SendState::StatusLine(Vec::new());
                    }
                    byte => {
                        let stream = self.sender_stream();
                        self.stop(TrackError::ScpUnexpectedByte { stream, byte }, out);
                    }
                },
                SendState::StatusLine(mut buf) => match read_line(&mut buf, rest) {
                    LineRead::Done(used) => {
                        pos += used;
                        if let Some(f) = &mut self.file {
                            f.sender_error = Some(message(&buf));
                        }
                        self.awaiting.push_back(Await::Content);
                    }
                    LineRead::More => {
                        pos = input.len();
                        self.send = SendState::StatusLine(buf);
                    }
                    LineRead::TooLong => self.line_too_long(self.sender_stream(), out),
                },
            }
        }
        pos
    }

    fn line_too_long(&mut self, stream: Stream, out: &mut Vec<TransferEvent>) {
        let max = SCP_MAX_LINE;
        self.stop(TrackError::ScpLineTooLong { stream, max }, out);
    }

    /// A complete sender line, without its newline.
    fn on_line(&mut self, line: &[u8], out: &mut Vec<TransferEvent>) {
        let Some((&kind, rest)) = line.split_first() else {
            return;
        };
        match kind {
            b'T' => self.awaiting.push_back(Await::Time),
            b'E' => self.awaiting.push_back(Await::End),
            b'C' | b'D' => {
                let Some((size, name)) = parse_entry(rest) else {
                    let line = message(line);
                    return self.stop(TrackError::ScpBadLine { line }, out);
                };
                if kind == b'D' {
                    self.awaiting.push_back(Await::Dir(name.to_vec()));
                } else {
                    let (path, notes) = self.entry_path(name);
                    self.file = Some(ScpFile {
                        path: Text::path(&path),
                        notes,
                        size,
                        bytes: 0,
                        hasher: Sha256::new(),
                        started: false,
                        sender_error: None,
                    });
                    self.awaiting.push_back(Await::Header);
                }
            }
            _ => out.push(TransferEvent::ScpError {
                stream: self.sender_stream(),
                fatal: kind == 2,
                message: message(rest),
            }),
        }
    }

    fn feed_receiver(&mut self, input: &[u8], out: &mut Vec<TransferEvent>) {
        let mut rest = input;
        while let Some((&byte, tail)) = rest.split_first() {
            if self.done {
                return;
            }
            match &mut self.recv {
                RecvState::Idle => match byte {
                    0 => self.on_response(None, out),
                    1 | 2 => {
                        self.recv = RecvState::Line { fatal: byte == 2, buf: Vec::new() };
                    }
                    byte => {
                        let stream = self.receiver_stream();
                        return self.stop(TrackError::ScpUnexpectedByte { stream, byte }, out);
                    }
                },
                RecvState::Line { fatal, buf } => {
                    let fatal = *fatal;
                    match read_line(buf, rest) {
                        LineRead::Done(used) => {
                            let text = message(buf);
                            self.recv = RecvState::Idle;
                            rest = &rest[used..];
                            self.on_response(Some((fatal, text)), out);
                            continue;
                        }
                        LineRead::More => return,
                        LineRead::TooLong => {
                            return self.line_too_long(self.receiver_stream(), out);
                        }
                    }
                }
            }
            rest = tail;
        }
    }

    /// The receiver's `\0` (`None`) or error line.
    fn on_response(&mut self, error: Option<(bool, String)>, out: &mut Vec<TransferEvent>) {
        let stream = self.receiver_stream();
        let report = |out: &mut Vec<TransferEvent>, error: Option<(bool, String)>| {
            if let Some((fatal, message)) = error {
                out.push(TransferEvent::ScpError { stream, fatal, message });
            }
        };
        match self.awaiting.pop_front() {
            None | Some(Await::Ready | Await::Time) => report(out, error),
            Some(Await::Header) => match error {
                None => {
                    let size = match &mut self.file {
                        Some(f) => {
                            f.started = true;
                            f.size
                        }
                        None => 0,
                    };
                    self.send =
                        if size == 0 { SendState::Status } else { SendState::Data { left: size } };
                }
                Some((_, message)) => {
                    if let Some(f) = self.file.take() {
                        let mut notes = f.notes;
                        notes.push(Note::ScpRefused { message });
                        out.push(TransferEvent::File(FileTransfer {
                            path: f.path.render(),
                            direction: self.direction,
                            bytes: 0,
                            sha256: None,
                            complete: false,
                            notes,
                        }));
                    }
                }
            },
            Some(Await::Content) => {
                if let Some(f) = self.file.take() {
                    let problem = error.map(|(_, message)| Note::ScpReceiverError { message });
                    self.file_event(f, problem, out);
                }
            }
            Some(Await::Dir(name)) => {
                if error.is_some() {
                    report(out, error);
                } else if self.dirs.len() >= SCP_MAX_DEPTH {
                    let max = SCP_MAX_DEPTH;
                    return self.stop(TrackError::ScpTooDeep { max }, out);
                } else {
                    self.dirs.push(name);
                }
            }
            Some(Await::End) => {
                self.dirs.pop();
                report(out, error);
            }
        }
        if self.awaiting.is_empty() && self.held_len() > 0 && !self.done {
            let held = std::mem::take(&mut self.held);
            let used = self.run_sender(&held[self.held_from..], out);
            if !self.done {
                self.held = held;
                self.use_held(used);
            }
        }
    }

    /// The remote path of an entry named `name` in the current directory.
    fn entry_path(&self, name: &[u8]) -> (Vec<u8>, Vec<Note>) {
        let top = self.dirs.first().map_or(name, Vec::as_slice);
        let (mut path, mut notes) = self.top_path(top);
        if let Some((_, inner)) = self.dirs.split_first() {
            for dir in inner {
                path = join(&path, dir);
            }
            path = join(&path, name);
        }
        if self.shell_expansion {
            notes.push(Note::ShellExpansion);
        }
        (path, notes)
    }

    /// Where a top-level entry lands (upload) or came from (download).
    fn top_path(&self, name: &[u8]) -> (Vec<u8>, Vec<Note>) {
        match self.direction {
            Direction::Upload => {
                let target = self.args.first().map_or(&b"."[..], Vec::as_slice);
                if self.target_dir || names_directory(target) {
                    (join(target, name), Vec::new())
                } else if basename(target) == name {
                    (target.to_vec(), Vec::new())
                } else {
                    // scp renames the file to the target, unless the target is
                    // an existing directory, which only the remote side knows.
                    let sent_name = Text::path(name).render();
                    let note = Note::ScpTargetMayBeDirectory { sent_name };
                    (target.to_vec(), vec![note])
                }
            }
            Direction::Download => {
                if let Some(source) = self.args.iter().find(|a| basename(a) == name) {
                    return (source.clone(), Vec::new());
                }
                let globbed = self.args.iter().find(|a| has_glob(basename(a)));
                match globbed {
                    Some(source) => (join(parent(source), name), Vec::new()),
                    None => {
                        let first = self.args.first().map_or(&b""[..], Vec::as_slice);
                        (join(parent(first), name), vec![Note::ScpSourceGuessed])
                    }
                }
            }
        }
    }
}

/// How far [`read_line`] got.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// The line is complete; this many input bytes were used.
    Done(usize),
    /// All input was used and the line goes on.
    More,
    /// The line exceeds [`SCP_MAX_LINE`].
    TooLong,
}

/// Appends input up to a newline to `buf` (the newline is used, not kept).
fn read_line(buf: &mut Vec<u8>, input: &[u8]) -> LineRead {
    let end = input.iter().position(|&b| b == b'\n');
    let part = &input[..end.unwrap_or(input.len())];
    if buf.len() + part.len() > SCP_MAX_LINE {
        return LineRead::TooLong;
    }
    buf.extend_from_slice(part);
    match end {
        Some(i) => LineRead::Done(i + 1),
        None => LineRead::More,
    }
}

/// Parses `MODE SIZE NAME` after the `C` or `D` of a control line.
fn parse_entry(rest: &[u8]) -> Option<(u64, &[u8])> {
    let mut parts = rest.splitn(3, |&b| b == b' ');
    let mode = parts.next()?;
    let size = parts.next()?;
    let name = parts.next()?;
    let octal = |b: &u8| (b'0'..=b'7').contains(b);
    if mode.is_empty() || mode.len() > 8 || !mode.iter().all(octal) || name.is_empty() {
        return None;
    }
    if size.is_empty() || !size.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(size).ok()?.parse().ok()?;
    Some((size, name))
}

fn trim_slashes(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

fn basename(path: &[u8]) -> &[u8] {
    let path = trim_slashes(path);
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) if path.len() > 1 => &path[i + 1..],
        _ => path,
    }
}

fn parent(path: &[u8]) -> &[u8] {
    let path = trim_slashes(path);
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => &path[..i],
        None => b"",
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.is_empty() && !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Whether a target certainly names a directory.
fn names_directory(target: &[u8]) -> bool {
    matches!(target, b"" | b"." | b".." | b"~")
        || target.ends_with(b"/")
        || target.ends_with(b"/.")
        || target.ends_with(b"/..")
}

fn has_glob(name: &[u8]) -> bool {
    name.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Shells whose standard input, with no terminal, is a script of commands.
const STDIN_SHELLS: [&[u8]; 7] = [b"sh", b"bash", b"dash", b"zsh", b"ksh", b"mksh", b"ash"];

/// Whether `command` starts a shell that reads its commands from standard input: `bash`,
/// `sh -s`, `bash -x`, `zsh -l`, but not `bash -c '…'` (commands in the argument) or
/// `bash script.sh` (commands in a file). A guess from the command line: it only adds an
/// index of the lines, never removes a byte from the recording.
pub fn reads_commands_on_stdin(command: impl AsRef<[u8]>) -> bool {
    let Some((words, _)) = shell_words(command.as_ref()) else { return false };
    let mut words = words.into_iter();
    let Some(program) = words.next() else { return false };
    if !STDIN_SHELLS.contains(&basename(&program)) {
        return false;
    }
    for word in words {
        if word == b"--" || word == b"-" {
            return true;
        }
        if word.starts_with(b"--") {
            continue; // --norc, --login, --posix…
        }
        match word.strip_prefix(b"-").or_else(|| word.strip_prefix(b"+")) {
            Some(flags) if flags.contains(&b'c') => return false,
            Some(flags) if flags.contains(&b's') => return true,
            Some(_) => {}
            None => return false, // a script file
        }
    }
    true
}

/// Splits a simple shell command into words, undoing quoting. Returns whether
/// the shell would expand something (`~`, `$`, globs, braces), or `None` for
/// anything beyond a simple command.
fn shell_words(command: &[u8]) -> Option<(Vec<Vec<u8>>, bool)> {
    let mut words = Vec::new();
    let mut word: Option<Vec<u8>> = None;
    let mut expands = false;
    let mut i = 0;
    while i < command.len() {
        let b = command[i];
        i += 1;
        match b {
            b' ' | b'\t' => words.extend(word.take()),
            b'\'' => {
                let len = command[i..].iter().position(|&c| c == b'\'')?;
                word.get_or_insert_with(Vec::new).extend_from_slice(&command[i..i + len]);
                i += len + 1;
            }
            b'"' => {
                let w = word.get_or_insert_with(Vec::new);
                loop {
                    let c = *command.get(i)?;
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => match *command.get(i)? {
                            e @ (b'$' | b'`' | b'"' | b'\\') => {
                                w.push(e);
                                i += 1;
                            }
                            b'\n' => i += 1,
                            _ => w.push(b'\\'),
                        },
                        b'`' => return None,
                        b'$' => {
                            if command.get(i) == Some(&b'(') {
                                return None;
                            }
                            expands = true;
                            w.push(c);
                        }
                        _ => w.push(c),
                    }
                }
            }
            b'\\' => {
                let c = *command.get(i)?;
                i += 1;
                if c != b'\n' {
                    word.get_or_insert_with(Vec::new).push(c);
                }
            }
            b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'`' | b'\n' => return None,
            b'#' if word.is_none() => break,
            b'$' if command.get(i) == Some(&b'(') => return None,
            _ => {
                let starts = word.is_none();
                if matches!(b, b'$' | b'*' | b'?' | b'[' | b'{') || (b == b'~' && starts) {
                    expands = true;
                }
                word.get_or_insert_with(Vec::new).push(b);
            }
        }
    }
    words.extend(word);
    Some((words, expands))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_util::Rng;

    #[test]
    fn shells_reading_commands_on_stdin_are_told_apart() {
        for yes in
            ["bash", "sh -s", "/bin/bash -x", "zsh -l", "bash --norc", "sh -s arg1 arg2", "dash -"]
        {
            assert!(reads_commands_on_stdin(yes), "{yes}");
        }
        for no in [
            "bash -c 'id'",
            "sh -xc id",
            "bash script.sh",
            "python3",
            "scp -t /tmp",
            "cat",
            "./bash-like",
        ] {
            assert!(!reads_commands_on_stdin(no), "{no}");
        }
    }

    use std::fs;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    const C: Stream = Stream::ClientToServer;
    const S: Stream = Stream::ServerToClient;

    type Script = Vec<(Stream, Vec<u8>)>;

    // --- helpers ----------------------------------------------------------

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn sha_hex(data: &[u8]) -> String {
        hex::encode(sha(data))
    }

    /// One line per event, the shape the expectations are written in.
    fn describe(event: &TransferEvent) -> String {
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

    fn describe_all(events: &[TransferEvent]) -> Vec<String> {
        events.iter().map(describe).collect()
    }

    /// Both trackers, fed the same way.
    trait Tracker {
        fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<TransferEvent>;
        fn end(&mut self) -> Vec<TransferEvent>;
        fn memory(&self) -> usize;
    }

    impl Tracker for SftpTracker {
        fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<TransferEvent> {
            match stream {
                C => self.client_to_server(bytes),
                S => self.server_to_client(bytes),
            }
        }
        fn end(&mut self) -> Vec<TransferEvent> {
            self.finish()
        }
        fn memory(&self) -> usize {
            self.buffered_bytes()
        }
    }

    impl Tracker for ScpTracker {
        fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<TransferEvent> {
            match stream {
                C => self.client_to_server(bytes),
                S => self.server_to_client(bytes),
            }
        }
        fn end(&mut self) -> Vec<TransferEvent> {
            self.finish()
        }
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

    fn run(tracker: &mut dyn Tracker, script: &[(Stream, Vec<u8>)]) -> Vec<TransferEvent> {
        let mut events = Vec::new();
        for (stream, bytes) in script {
            events.extend(tracker.push(*stream, bytes));
        }
        events.extend(tracker.end());
        events
    }

    fn sftp(script: &[(Stream, Vec<u8>)]) -> Vec<String> {
        describe_all(&run(&mut SftpTracker::new(), script))
    }

    fn scp(command: &str, script: &[(Stream, Vec<u8>)]) -> Vec<String> {
        let mut tracker = ScpTracker::from_command(command).expect("an scp command");
        describe_all(&run(&mut tracker, script))
    }

    #[track_caller]
    fn check(actual: &[String], expected: &[&str]) {
        let actual: Vec<&str> = actual.iter().map(String::as_str).collect();
        assert_eq!(actual, expected);
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

    /// Feeds a script cut into random chunks (streams keep their order
    /// relative to each other).
    fn run_chunked(
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
    fn check_every_split(new: &dyn Fn() -> Box<dyn Tracker>, script: &[(Stream, Vec<u8>)]) {
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
        let close_answer = script
            .iter()
            .position(|(s, b)| *s == S && *b == status(4, 0))
            .expect("the close answer");
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
        check(
            &events,
            &[&format!("download /srv/f bytes=16 sha256={} complete", sha_hex(content))],
        );
        assert_eq!(t.budget.used, 0, "reorder buffer released");
    }

    /// An upload whose first chunk comes after `ahead` more chunks of `chunk` bytes, with the
    /// default limits.
    fn upload_first_chunk_last(chunk: usize, ahead: usize) -> (Vec<String>, Vec<u8>) {
        let content: Vec<u8> = (0..chunk * (ahead + 1)).map(|i| (i % 251) as u8).collect();
        let mut script: Script = vec![(C, open(1, b"/srv/f", WRITE)), (S, handle(1, H0))];
        let mut ids = Vec::new();
        for (i, piece) in content.chunks(chunk).enumerate().skip(1).chain([(0, &content[..chunk])])
        {
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
        check(
            &events,
            &[&format!("upload /srv/f bytes={len} sha256={} complete", sha_hex(&content))],
        );
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
            (
                C,
                W::default().u32(1).s(b"/srv/d").u32(ATTR_PERMISSIONS).u32(0o755).packet(FXP_MKDIR),
            ),
            (S, status(1, 0)),
            (C, path_op(FXP_RMDIR, 2, b"/srv/d")),
            (S, status(2, 0)),
            (C, path_op(FXP_REMOVE, 3, b"/srv/x")),
            (S, status(3, 2)),
            (C, two_paths(FXP_RENAME, 4, b"/srv/a", b"/srv/b")),
            (S, status(4, 0)),
            (C, extended(5, b"posix-rename@openssh.com", W::default().s(b"/srv/b").s(b"/srv/c"))),
            (S, status(5, 0)),
            (
                C,
                W::default()
                    .u32(6)
                    .s(b"/srv/c")
                    .u32(ATTR_PERMISSIONS)
                    .u32(0o4755)
                    .packet(FXP_SETSTAT),
            ),
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
        check(
            &sftp(&[(S, vec![0, 0, 0, 0, 0])]),
            &["stopped: server-to-client: empty SFTP packet"],
        );
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
        check(
            &sftp(&script),
            &[&format!("upload /srv/t bytes=3 sha256={} complete", sha_hex(b"abc"))],
        );
    }

    #[test]
    fn sftp_request_limits_stop_tracking() {
        let limits =
            SftpLimits { max_pending_requests: 3, max_open_files: 1, ..SftpLimits::default() };
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

    /// Inverse of [`escape_bytes`], to prove it loses nothing.
    fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            match b[i + 1] {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                }
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("ascii");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 4;
                }
                b'u' => {
                    let end = i + b[i..].iter().position(|&c| c == b'}').expect("}");
                    let hex = std::str::from_utf8(&b[i + 3..end]).expect("ascii");
                    let c =
                        char::from_u32(u32::from_str_radix(hex, 16).expect("hex")).expect("char");
                    out.extend_from_slice(c.to_string().as_bytes());
                    i = end + 1;
                }
                other => panic!("unknown escape {other}"),
            }
        }
        out
    }

    #[test]
    fn escape_round_trips_random_bytes_and_prints_no_controls() {
        let mut rng = Rng::new(42);
        let mut cases: Vec<Vec<u8>> = vec![
            b"plain/path".to_vec(),
            "caf\u{e9}/\u{202e}/\u{200b}/\u{85}".as_bytes().to_vec(),
            b"\\x41".to_vec(),
        ];
        for _ in 0..2000 {
            let n = rng.below(40);
            let mut bytes = rng.bytes(n);
            if rng.below(2) == 0 {
                // Bias towards valid multi-byte UTF-8.
                bytes.extend_from_slice("\u{e9}\u{2066}\u{1f600}".as_bytes());
            }
            cases.push(bytes);
        }
        for raw in cases {
            let shown = escape_bytes(&raw);
            assert_eq!(unescape(&shown), raw, "{shown}");
            assert!(!shown.chars().any(|c| c.is_control() || is_invisible(c)), "{shown:?}");
        }
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

    // --- scp ----------------------------------------------------------------

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
        assert_eq!(
            parsed("scp -f /var/log/*.log"),
            Some((down, s(&["/var/log/*.log"]), false, true))
        );
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
        let line =
            |path: &str| format!("upload {path} bytes=5 sha256={} complete", sha_hex(b"hello"));
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
        let expected =
            format!("download /etc/hostname bytes=3 sha256={} complete", sha_hex(b"ab\n"));
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
                &format!(
                    "upload {} bytes=0 sha256=none incomplete (refused: scp: denied)",
                    cut("g")
                ),
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
            check_every_split(
                &|| Box::new(ScpTracker::from_command(command).expect("scp")),
                &script,
            );
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

    // --- real OpenSSH streams: fixtures ---------------------------------------

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
            let rechunked =
                describe_all(&run_chunked(new().as_mut(), &script, &mut Rng::new(seed)));
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

    // --- real OpenSSH streams: captured now, 1 MiB ----------------------------

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
            if record.send((stream, buf[..n].to_vec())).is_err() || to.write_all(&buf[..n]).is_err()
            {
                break;
            }
        }
    }

    fn accept(
        listener: &TcpListener,
        client: &mut std::process::Child,
        dir: &TempDir,
    ) -> TcpStream {
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
        let rechunked =
            describe_all(&run_chunked(&mut SftpTracker::new(), &script, &mut Rng::new(9)));
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

        let (_, events) = track(relay(
            &dir,
            &scp_with(vec!["-r".to_owned(), dir.path("tree"), remote_dir]),
            &remote,
        ));
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
}
