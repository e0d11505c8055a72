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
//!
//! # Layout
//!
//! - this file: the events and types both trackers report, and [`SftpLimits`];
//! - `text`: [`escape_bytes`] and the cut, escaped form paths and messages are kept in;
//! - `sftp`: [`SftpTracker`], its packet framer and wire reader;
//! - `content`: one SFTP file's content in one direction, hashed in offset order;
//! - `scp`: [`ScpTracker`], the rcp protocol and its command line;
//! - `shell`: simple shell command lines ([`reads_commands_on_stdin`]).
//!
//! Unit tests sit beside each tracker (`sftp/tests.rs`, `scp/tests.rs`, helpers in
//! `testing.rs`); `tests.rs` replays captured OpenSSH streams, and the crate's
//! `tests/transfer_openssh.rs` runs the real OpenSSH programs.

mod content;
mod scp;
mod sftp;
mod shell;
mod text;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use scp::ScpTracker;
pub use sftp::SftpTracker;
pub use shell::reads_commands_on_stdin;
pub use text::escape_bytes;
pub(crate) use text::is_invisible;

use std::fmt;

/// Largest SFTP packet OpenSSH accepts (`SFTP_MAX_MSG_LENGTH`, 256 KiB).
pub const SFTP_MAX_PACKET: u32 = 256 * 1024;

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
