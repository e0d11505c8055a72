//! [`ScpTracker`]: observes one legacy `scp -t PATH` (upload) or `scp -f PATH` (download)
//! exec channel, the rcp protocol of `scp -O`: control lines, content of announced size, and
//! the receiver's acknowledgements.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};

use super::shell::shell_words;
use super::text::{Text, message};
use super::{Direction, FileTransfer, Note, Stream, TrackError, TransferEvent};

#[cfg(test)]
mod tests;

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

pub(super) fn basename(path: &[u8]) -> &[u8] {
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
