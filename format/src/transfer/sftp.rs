//! [`SftpTracker`]: observes one `sftp` subsystem channel (SFTP version 3, as OpenSSH speaks
//! it). A framer per stream splits the bytes into packets across chunks; requests wait by id
//! for the server's answer; each open file's content goes to a [`Content`] per direction.

use std::collections::HashMap;

use super::content::{Budget, Content};
use super::text::{Text, message};
use super::{
    Direction, FileAttrs, FileOp, FileTransfer, Note, OpKind, Outcome, SftpLimits, SftpStatus,
    Stream, TrackError, TransferEvent,
};

#[cfg(test)]
mod tests;

/// Longest handle tracked (SFTP allows at most 256 bytes).
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

/// Big-endian SSH wire reader over one packet.
#[derive(Debug)]
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
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
