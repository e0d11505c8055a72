//! Safe replay of recorded sessions: an escape-sequence sanitizer and a replay engine.
//!
//! A recording is untrusted. Whoever held the session controlled every byte of its output, and
//! replaying it writes those bytes to a reviewer's terminal: the place where the next approval
//! is typed. This module therefore does two things, both without I/O of its own:
//!
//! - [`Sanitizer`] is a streaming filter over recorded output. It keeps what only draws and
//!   removes everything that can act on the reviewer's terminal or make it answer back.
//! - [`play`] replays a parsed [`Cast`] through the sanitizer into any [`Write`], with the
//!   timing of the recording. Waiting and reading keys are one injected operation
//!   ([`Controls`]), so tests run instantly and the CLI implements it with its terminal library.
//!
//! # What the sanitizer keeps and drops
//!
//! | Input | Kept | Removed (counted in [`Sanitizer::neutralised`]) |
//! |---|---|---|
//! | Text | every printable character | |
//! | C0 controls | BS, HT, LF, VT, FF, CR, SO, SI | NUL, BEL, DEL silently; every other C0 (ENQ answers back) |
//! | C1 controls U+0080–U+009F | | each becomes U+FFFD, so an 8-bit CSI or OSC starts nothing |
//! | `ESC` + final | `7 8` (save/restore cursor), `D E H M` (index, next line, tab set, reverse index), `= >` (keypad), `N O n o \| } ~` (shifts), `6 9` | everything else, e.g. `ESC Z` (DECID answers back), `ESC \` |
//! | `ESC c` (RIS) | rewritten to leave the alternate screen, soft reset (DECSTR), clear | |
//! | `ESC` + intermediates | charset designations `ESC ( ) * + - . /` + final, `ESC # 3 4 5 6 8` | `ESC % …` (changes the encoding), `ESC SP …` (C1 transmission, conformance) |
//! | CSI, an allow-list | SGR `m` (any parameters); one count each (capped at [`MAX_PARAM`]): ICH `@`, cursor `A`–`G` `` ` `` `a` `d` `e`, tabs `I` `Z`, insert/delete lines `L M`, delete and erase characters `P X`, scroll `S T`, REP `b`; two positions each (capped): `H f`, margins `r`, `s` (or save cursor, no parameters); no parameters: restore cursor `u`, DECSTR `! p`; one of a few values: erase `J K` and `? J` `? K` with 0, 1 or 2, tab clear `g` 0 or 3, cursor shape `SP q` 0–6 | everything else: erase 3 (`CSI 3 J` clears the scrollback, where the replay's first line is), a kept kind with too many parameters or with sub-parameters (`:`), rectangle operations `$ r t v x z {`, DECSCA `" q`, column insert/delete `' } ~`, horizontal scrolling `SP @ A`. A count above [`MAX_PARAM`] is lowered to it (and counted) |
//! | CSI modes `h`/`l` | ANSI 4 (insert), 20 (newline); DEC private 1, 5, 6, 7, 12, 25, 45, 47, 66, 69, 95, 1007, 1047, 1048, 1049, 2004, 2026 | other modes: mouse (9, 1000–1006, 1015, 1016), focus (1004), column switching (3), keyboard lock (ANSI 2), local echo (ANSI 12), in-band resize or colour reports (2031, 2048), anything unknown. A mixed list keeps its allowed modes. |
//! | Other CSI | | everything else, among them DSR/CPR `n`, DA `c`, window ops `t`, DECRQM `$ p`, XTVERSION `> q`, DECREQTPARM `x`, media copy `i`, checksums `* y`, kitty keyboard `? u` `> u` `< u` `= u`, modifyOtherKeys `> m`, XTSAVE/XTRESTORE `? s` `? r` |
//! | Control strings | | all: OSC (titles, OSC 8 links, OSC 52 clipboard, colour queries), DCS (DECRQSS, XTGETTCAP, sixel), SOS, PM, APC. The link text of OSC 8 is kept. |
//! | Malformed | | a sequence cut by CAN, SUB, ESC or a non-ASCII character; parameters in the wrong place; a sequence longer than [`MAX_SEQUENCE`] bytes (the rest is dropped up to its final byte, never buffered) |
//!
//! A control string is dropped up to its terminator: BEL, ST (`ESC \`), 8-bit ST (U+009C),
//! CAN, SUB, or any `ESC`, which, as in terminals, ends the string and starts a new sequence.
//! Nothing of a string is buffered, whatever its length.
//!
//! BEL is dropped: a bell in a replay can only ring, flash, or raise an urgency hint on the
//! reviewer's desktop, and shells ring it on every failed completion.
//!
//! Architecture invariant: the sanitizer only ever writes printable characters, the kept C0
//! controls, and complete sequences from the "kept" column. It never writes part of a sequence,
//! so its output, read by any terminal, is a series of whole, allowed tokens
//! (`sanitize(sanitize(x)) == sanitize(x)`, tested).
//!
//! # Replay
//!
//! Only `o` events are written. `i` events (keystrokes, possibly secrets), `m` markers and our
//! `b` annotations are never written. `r` (resize) events are ignored: the reviewer's terminal
//! keeps its size, and a recording wider than it wraps (the CLI can compare
//! [`Header::width`](crate::cast::Header) with the terminal and warn).
//!
//! Timing follows asciinema: the delay before an output event is the recording time since the
//! previous output event (markers and input do not end an idle period), capped at
//! [`Options::idle_max`] and then divided by the speed. [`Start::At`] and [`Start::Command`]
//! write everything before the starting point at once and play in real time from there.
//!
//! # Wiring into a CLI
//!
//! - Put the terminal in raw mode so single keys arrive at once; map space to
//!   [`Control::TogglePause`], `.` to [`Control::Step`], `+`/`-` to
//!   [`Control::Faster`]/[`Control::Slower`], `q`, Esc and Ctrl-C (which raw mode delivers as a
//!   key) to [`Control::Quit`]. Ignore every other key and keep waiting until the deadline.
//! - Restore the terminal on every exit path, errors and panics included (a guard with `Drop`):
//!   leave raw mode, then write [`RESTORE_TERMINAL`], which undoes every mode the sanitizer lets
//!   through. The replay may have been quit inside the alternate screen, in a scroll region or
//!   with the cursor hidden.
//! - Labels from [`commands`] are untrusted text: print them through [`printable`].
//! - Write to a locked, buffered stdout: [`play`] flushes after each event.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use crate::cast::Cast;
use crate::transfer::is_invisible;

/// Longest escape or CSI sequence that is buffered, in bytes. A longer one is dropped, and the
/// rest of it is discarded as it arrives.
pub const MAX_SEQUENCE: usize = 4096;

/// What the CLI writes when a replay ends, however it ends, after leaving raw mode.
///
/// It undoes every mode the [`Sanitizer`] lets through: synchronized output, the alternate
/// screen, attributes and charsets (DECSTR), bracketed paste, application cursor keys and keypad,
/// cursor visibility, shape and blinking, wrap, origin, reverse video, left/right margins,
/// insert and newline modes, and the scroll region (set inside a cursor save/restore because
/// DECSTBM homes the cursor).
pub const RESTORE_TERMINAL: &str = concat!(
    "\x1b[?2026l",
    "\x1b[?1049l",
    "\x1b[!p",
    "\x1b[0m\x1b(B\x1b)B\x0f",
    "\x1b[?2004l\x1b[?1l\x1b>\x1b[?66l\x1b[?1007l",
    "\x1b[?25h\x1b[?12l\x1b[0 q",
    "\x1b[?7h\x1b[?6l\x1b[?5l\x1b[?45l\x1b[?69l\x1b[?95l",
    "\x1b[4l\x1b[20l",
    "\x1b7\x1b[r\x1b8",
);

/// What replaces `ESC c` (RIS, full reset): leave the alternate screen, soft reset, clear.
/// A full reset can also clear the reviewer's scrollback or reset the window.
const RIS_REPLACEMENT: &str = "\x1b[?1049l\x1b[!p\x1b[H\x1b[2J";

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';
const CAN: char = '\u{18}';
const SUB: char = '\u{1a}';
const DEL: char = '\u{7f}';
/// 8-bit ST, which some terminals accept to end a control string.
const ST_8BIT: char = '\u{9c}';
const REPLACEMENT: char = '\u{fffd}';

/// ANSI modes (`CSI Pm h`/`l`) that only change drawing: IRM and LNM.
const ANSI_MODES: &[u16] = &[4, 20];

/// DEC private modes (`CSI ? Pm h`/`l`) that only change drawing or the keys' encoding, all
/// undone by [`RESTORE_TERMINAL`].
const DEC_MODES: &[u16] =
    &[1, 5, 6, 7, 12, 25, 45, 47, 66, 69, 95, 1007, 1047, 1048, 1049, 2004, 2026];

/// Largest count or position a kept CSI sequence may carry (REP, ICH, DCH, ECH, IL, DL, SU,
/// SD, cursor movement and positions, scroll margins): a larger one is lowered to this, so a
/// recording cannot make the reviewer's terminal repeat a character two billion times.
pub const MAX_PARAM: u32 = 1000;

/// The CSI sequences a replay keeps, by what their parameters may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csi {
    /// SGR: any parameters, sub-parameters included.
    Any,
    /// At most this many counts or positions, each capped at [`MAX_PARAM`].
    Counts(usize),
    /// Exactly one parameter (empty is 0), one of these.
    OneOf(&'static [u64]),
    /// Mode lists: only these modes are kept.
    Modes(&'static [u16]),
}

/// The allow-list of CSI sequences: `private` is the `<`–`?` prefix, `intermediates` the
/// bytes before the final byte `last`. `None`: dropped.
fn csi_kind(private: Option<char>, intermediates: &str, last: char) -> Option<Csi> {
    Some(match (private, intermediates, last) {
        (None, "", 'm') => Csi::Any,
        // ICH, cursor up/down/forward/back, next/previous line, column, tab forward, insert
        // and delete lines, delete characters, scroll up, erase characters, tab back,
        // column/row absolute and relative, REP; one count each. SD (`T`) only with one:
        // more make it xterm's highlight mouse tracking.
        (
            None,
            "",
            '@' | 'A' | 'B' | 'C' | 'D' | 'E' | 'F' | 'G' | 'I' | 'L' | 'M' | 'P' | 'S' | 'T' | 'X'
            | 'Z' | '`' | 'a' | 'b' | 'd' | 'e',
        ) => Csi::Counts(1),
        // Cursor position, scroll margins (top/bottom; left/right, or save cursor without).
        (None, "", 'H' | 'f' | 'r' | 's') => Csi::Counts(2),
        (None, "", 'u') | (None, "!", 'p') => Csi::Counts(0),
        // Erase in display and line, selective or not; never 3 (clear the scrollback).
        (None | Some('?'), "", 'J' | 'K') => Csi::OneOf(&[0, 1, 2]),
        (None, "", 'g') => Csi::OneOf(&[0, 3]),
        (None, " ", 'q') => Csi::OneOf(&[0, 1, 2, 3, 4, 5, 6]),
        (None, "", 'h' | 'l') => Csi::Modes(ANSI_MODES),
        (Some('?'), "", 'h' | 'l') => Csi::Modes(DEC_MODES),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Text.
    Ground,
    /// After `ESC`; the buffer holds `ESC` and any intermediates.
    Escape,
    /// In a CSI; the buffer holds `ESC [` and what followed.
    Csi,
    /// Discarding the rest of an overlong sequence up to its final byte.
    Ignore {
        /// A CSI (final byte `@`–`~`) rather than an escape sequence (final byte `0`–`~`).
        csi: bool,
    },
    /// Discarding a control string (OSC, DCS, SOS, PM, APC) up to its terminator.
    Str {
        /// The previous character was `ESC`.
        esc: bool,
    },
}

/// Streaming filter that neutralises escape sequences in recorded terminal output.
///
/// Feed the output in order, chunk by chunk, to [`filter`](Self::filter): sequences may be split
/// anywhere between chunks. An incomplete sequence is held back (at most [`MAX_SEQUENCE`] bytes)
/// until it completes; [`finish`](Self::finish) drops it at the end of the stream. See the
/// module docs for what is kept.
///
/// # Security
///
/// The output, written to a terminal, can only draw: it cannot set the clipboard, titles,
/// hyperlinks, colours or window geometry, cannot make the terminal send anything back, and
/// cannot change the terminal's encoding. Modes it does let through are undone by
/// [`RESTORE_TERMINAL`].
#[derive(Debug, Clone)]
pub struct Sanitizer {
    state: State,
    /// The pending escape or CSI sequence: ASCII, at most [`MAX_SEQUENCE`] bytes.
    buf: String,
    neutralised: u64,
}

impl Default for Sanitizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Sanitizer {
    /// A sanitizer at the start of a stream.
    pub fn new() -> Self {
        Sanitizer { state: State::Ground, buf: String::new(), neutralised: 0 }
    }

    /// Appends the safe part of `input` to `out`.
    pub fn filter(&mut self, input: &str, out: &mut String) {
        out.reserve(input.len());
        for c in input.chars() {
            self.feed(c, out);
        }
    }

    /// Ends the stream: an incomplete sequence still held back is dropped (and counted).
    /// The sanitizer is then ready for a new stream, and keeps its count.
    pub fn finish(&mut self) {
        if matches!(self.state, State::Escape | State::Csi) {
            self.neutralised += 1;
        }
        self.buf.clear();
        self.state = State::Ground;
    }

    /// How many sequences, strings and control characters were removed or replaced so far.
    /// NUL, BEL and DEL are dropped without being counted; a rewritten `ESC c` is not counted.
    pub fn neutralised(&self) -> u64 {
        self.neutralised
    }

    fn feed(&mut self, c: char, out: &mut String) {
        match self.state {
            State::Ground => self.ground(c, out),
            State::Escape => self.escape(c, out),
            State::Csi => self.csi(c, out),
            State::Ignore { csi } => self.ignore(c, csi, out),
            State::Str { esc } => self.string(c, esc, out),
        }
    }

    fn ground(&mut self, c: char, out: &mut String) {
        match c {
            ESC => self.start_escape(),
            '\0'..='\u{1f}' | DEL => self.control(c, out),
            '\u{80}'..='\u{9f}' => {
                out.push(REPLACEMENT);
                self.neutralised += 1;
            }
            _ => out.push(c),
        }
    }

    /// A C0 control or DEL, in text or inside a sequence (where terminals execute it too).
    /// ESC, CAN and SUB inside sequences are handled by the caller.
    fn control(&mut self, c: char, out: &mut String) {
        match c {
            '\u{8}' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | '\u{e}' | '\u{f}' => out.push(c),
            '\0' | BEL | DEL => {}
            _ => self.neutralised += 1,
        }
    }

    fn start_escape(&mut self) {
        self.buf.clear();
        self.buf.push(ESC);
        self.state = State::Escape;
    }

    /// Drops the pending sequence.
    fn abort(&mut self) {
        self.neutralised += 1;
        self.buf.clear();
        self.state = State::Ground;
    }

    /// Buffers one more byte of the pending sequence, or gives up on it if it is too long.
    fn push_bounded(&mut self, c: char, csi: bool) {
        if self.buf.len() >= MAX_SEQUENCE {
            self.abort();
            self.state = State::Ignore { csi };
        } else {
            self.buf.push(c);
        }
    }

    fn escape(&mut self, c: char, out: &mut String) {
        let bare = self.buf.len() == 1;
        match c {
            ESC => {
                self.abort();
                self.start_escape();
            }
            CAN | SUB => self.abort(),
            '\0'..='\u{1f}' | DEL => self.control(c, out),
            ' '..='/' => self.push_bounded(c, false),
            '[' if bare => {
                self.buf.push(c);
                self.state = State::Csi;
            }
            ']' | 'P' | 'X' | '^' | '_' if bare => {
                self.abort();
                self.state = State::Str { esc: false };
            }
            '0'..='~' => {
                self.state = State::Ground;
                let seq = std::mem::take(&mut self.buf);
                self.escape_dispatch(&seq, c, out);
                self.buf = seq;
                self.buf.clear();
            }
            _ => {
                self.abort();
                self.ground(c, out);
            }
        }
    }

    /// A complete escape sequence: `seq` is `ESC` and its intermediates.
    fn escape_dispatch(&mut self, seq: &str, last: char, out: &mut String) {
        let intermediates = seq.get(1..).unwrap_or_default();
        let mut rest = intermediates.chars();
        let keep = match (rest.next(), rest.as_str()) {
            (None, _) if last == 'c' => {
                out.push_str(RIS_REPLACEMENT);
                return;
            }
            (None, _) => matches!(
                last,
                '6' | '7'
                    | '8'
                    | '9'
                    | '='
                    | '>'
                    | 'D'
                    | 'E'
                    | 'H'
                    | 'M'
                    | 'N'
                    | 'O'
                    | 'n'
                    | 'o'
                    | '|'
                    | '}'
                    | '~'
            ),
            (Some('(' | ')' | '*' | '+' | '-' | '.' | '/'), more) => {
                more.is_empty() || matches!(more, "!" | "\"" | "%" | "&")
            }
            (Some('#'), "") => matches!(last, '3' | '4' | '5' | '6' | '8'),
            _ => false,
        };
        if keep {
            out.push_str(seq);
            out.push(last);
        } else {
            self.neutralised += 1;
        }
    }

    fn csi(&mut self, c: char, out: &mut String) {
        match c {
            ESC => {
                self.abort();
                self.start_escape();
            }
            CAN | SUB => self.abort(),
            '\0'..='\u{1f}' | DEL => self.control(c, out),
            ' '..='?' => self.push_bounded(c, true),
            '@'..='~' => {
                self.state = State::Ground;
                let seq = std::mem::take(&mut self.buf);
                self.csi_dispatch(&seq, c, out);
                self.buf = seq;
                self.buf.clear();
            }
            _ => {
                self.abort();
                self.ground(c, out);
            }
        }
    }

    /// A complete CSI sequence: `seq` is `ESC [` and what followed, `last` its final byte.
    ///
    /// An allow-list: only the kinds in [`csi_kind`] are written, each with the parameters
    /// its kind allows; counts and positions above [`MAX_PARAM`] are lowered to it.
    fn csi_dispatch(&mut self, seq: &str, last: char, out: &mut String) {
        let body = seq.get(2..).unwrap_or_default();
        let (private, body) = match body.chars().next() {
            Some(p @ '<'..='?') => (Some(p), body.get(1..).unwrap_or_default()),
            _ => (None, body),
        };
        let split = body.find(|c: char| matches!(c, ' '..='/')).unwrap_or(body.len());
        let (params, intermediates) = body.split_at(split);
        let well_formed = !params.contains(|c: char| matches!(c, '<'..='?'))
            && intermediates.chars().all(|c| matches!(c, ' '..='/'));
        let Some(kind) = csi_kind(private, intermediates, last).filter(|_| well_formed) else {
            self.neutralised += 1;
            return;
        };
        // Outside SGR, parameters are plain numbers: no sub-parameters (`:`).
        let numbers = !params.contains(':');
        let list: Vec<&str> = params.split(';').collect();
        let count = if params.is_empty() { 0 } else { list.len() };
        let value = |p: &str| -> u64 {
            p.chars().fold(0u64, |v, c| {
                v.saturating_mul(10).saturating_add(u64::from(c.to_digit(10).unwrap_or(0)))
            })
        };
        let rebuilt = |out: &mut String, kept: &[String]| {
            out.push_str("\x1b[");
            out.extend(private);
            out.push_str(&kept.join(";"));
            out.push_str(intermediates);
            out.push(last);
        };
        match kind {
            Csi::Any => {
                out.push_str(seq);
                out.push(last);
            }
            Csi::Counts(most) if numbers && count <= most => {
                let capped: Vec<String> = list
                    .iter()
                    .map(|p| {
                        if value(p) > u64::from(MAX_PARAM) {
                            MAX_PARAM.to_string()
                        } else {
                            (*p).to_owned()
                        }
                    })
                    .collect();
                if capped.iter().zip(&list).all(|(a, b)| a == b) {
                    out.push_str(seq);
                    out.push(last);
                } else {
                    self.neutralised += 1;
                    rebuilt(out, &capped);
                }
            }
            Csi::OneOf(allowed)
                if numbers && list.len() == 1 && allowed.contains(&value(params)) =>
            {
                out.push_str(seq);
                out.push(last);
            }
            Csi::Modes(allowed) if numbers => {
                let kept: Vec<String> = list
                    .iter()
                    .filter(|p| p.parse::<u16>().is_ok_and(|m| allowed.contains(&m)))
                    .map(|p| (*p).to_owned())
                    .collect();
                if kept.len() == list.len() {
                    out.push_str(seq);
                    out.push(last);
                    return;
                }
                self.neutralised += 1;
                if !kept.is_empty() {
                    rebuilt(out, &kept);
                }
            }
            _ => self.neutralised += 1,
        }
    }

    fn ignore(&mut self, c: char, csi: bool, out: &mut String) {
        match c {
            ESC => self.start_escape(),
            CAN | SUB => self.state = State::Ground,
            '\0'..='\u{1f}' | DEL => self.control(c, out),
            '@'..='~' => self.state = State::Ground,
            '0'..='?' if !csi => self.state = State::Ground,
            ' '..='?' => {}
            _ => {
                self.state = State::Ground;
                self.ground(c, out);
            }
        }
    }

    fn string(&mut self, c: char, esc: bool, out: &mut String) {
        if esc {
            if c == '\\' {
                self.state = State::Ground;
            } else {
                // As in terminals, an ESC ends the string and starts a sequence.
                self.start_escape();
                self.escape(c, out);
            }
            return;
        }
        match c {
            ESC => self.state = State::Str { esc: true },
            BEL | CAN | SUB | ST_8BIT => self.state = State::Ground,
            _ => {}
        }
    }
}

/// `s` with control characters (C0, DEL, C1) and invisible or reordering format characters
/// (bidirectional marks and overrides, zero-width characters, as in [`escape_bytes`]) shown as
/// `\u{…}` escapes, so untrusted text such as a command label can be printed to a terminal.
///
/// [`escape_bytes`]: crate::transfer::escape_bytes
pub fn printable(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || is_invisible(c);
    if !s.contains(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Prefixes of the markers the gateway writes that are not commands. `shell` must be followed
/// by something other than a letter, digit, `-`, `_` or `.`, so `shellcheck` is a command.
pub const NON_COMMAND_PREFIXES: &[&str] = &[
    "exec: ",
    "subsystem: ",
    "exit ",
    "session ended",
    "upload ",
    "download ",
    "sftp version",
    "scp error",
    "transfer tracking stopped",
    "agent forwarding",
    "X11 forwarding",
    "remote forwarding",
    "remote socket forwarding",
    "port forwarding to",
    "socket forwarding to",
    "killed by",
    "env request: ",
    "signal request: ",
    "client extended data",
    "channel refused: ",
];

/// Whether a marker label is a command the user submitted.
///
/// A label is a command unless it is empty or starts with a [`NON_COMMAND_PREFIXES`] entry
/// or with the word `shell`. SFTP operation markers (`remove …`, `mkdir …`) are therefore
/// listed as commands: they cannot be told apart from the same commands typed at a shell.
pub fn is_command(label: &str) -> bool {
    let shell = label.strip_prefix("shell").is_some_and(|rest| {
        !rest.starts_with(|c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
    !label.trim().is_empty() && !shell && !NON_COMMAND_PREFIXES.iter().any(|p| label.starts_with(p))
}

/// Indices in `cast.events` of the command markers, in file order.
fn command_indices(cast: &Cast) -> Vec<usize> {
    cast.events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.code == "m" && is_command(&e.data))
        .map(|(i, _)| i)
        .collect()
}

/// The commands of a recording, in order: (seconds since session start, label). The first is
/// command 1 for [`Start::Command`]. Labels are untrusted: print them through [`printable`].
pub fn commands(cast: &Cast) -> Vec<(f64, String)> {
    command_indices(cast)
        .into_iter()
        .map(|i| (cast.events[i].t, cast.events[i].data.clone()))
        .collect()
}

/// Slowest speed [`play`] accepts, and the floor of [`Control::Slower`].
pub const MIN_SPEED: f64 = 1.0 / 64.0;
/// Fastest speed [`play`] accepts, and the ceiling of [`Control::Faster`].
pub const MAX_SPEED: f64 = 1024.0;
/// Longest single wait [`play`] asks for. Longer gaps (without `idle_max`) are cut to this, so
/// a deadline computed as `Instant::now() + wait` cannot overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Playback speed: 2.0 is twice as fast. Must be within [`MIN_SPEED`]..=[`MAX_SPEED`].
    pub speed: f64,
    /// Longest pause between two output events, in recording time (before dividing by the
    /// speed), like asciinema's `idle_time_limit`. `None`: no limit.
    pub idle_max: Option<Duration>,
    /// Where real-time playback starts.
    pub start: Start,
}

impl Default for Options {
    fn default() -> Self {
        Options { speed: 1.0, idle_max: None, start: Start::Beginning }
    }
}

/// Where real-time playback starts. Everything before it is written at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At time zero.
    Beginning,
    /// At this time since session start: events before the first event at or after it are
    /// written at once.
    At(Duration),
    /// At the marker of this command, 1-based, as listed by [`commands`]: every event before
    /// the marker in the file is written at once.
    Command(usize),
}

/// A key the reviewer pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Pause, or resume where the pause began.
    TogglePause,
    /// While paused: write the next output event at once and stay paused. Ignored while playing.
    Step,
    /// Stop the replay.
    Quit,
    /// Double the speed (up to [`MAX_SPEED`]), also during the current wait.
    Faster,
    /// Halve the speed (down to [`MIN_SPEED`]), also during the current wait.
    Slower,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The whole time passed without a control.
    TimedOut,
    /// A control arrived.
    Control {
        /// The control.
        control: Control,
        /// How long the wait had lasted when it arrived (real time).
        waited: Duration,
    },
}

/// Waiting and reading keys: the player's only contact with time and the keyboard.
///
/// Implemented for every `FnMut(Option<Duration>) -> io::Result<Wake>`.
pub trait Controls {
    /// Waits until `limit` has passed or a control arrives, whichever is first.
    /// `Some(Duration::ZERO)` only polls. `None` (while paused) waits for a control only: a
    /// [`Wake::TimedOut`] then just makes the player ask again.
    ///
    /// # Errors
    ///
    /// Reading the keyboard failed; the replay stops with this error.
    fn wait(&mut self, limit: Option<Duration>) -> io::Result<Wake>;
}

impl<F> Controls for F
where
    F: FnMut(Option<Duration>) -> io::Result<Wake>,
{
    fn wait(&mut self, limit: Option<Duration>) -> io::Result<Wake> {
        self(limit)
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Output events played, fast-forwarded ones included (also those sanitised to nothing).
    pub events_written: u64,
    /// Sequences and control characters the sanitizer removed ([`Sanitizer::neutralised`]).
    pub neutralised: u64,
    /// Whether every event was played (false after [`Control::Quit`]).
    pub reached_end: bool,
    /// Recording time of the last event played, or the starting point: where to resume with
    /// [`Start::At`].
    pub position: Duration,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    /// The speed is not a number within [`MIN_SPEED`]..=[`MAX_SPEED`].
    #[error("speed {0} is out of range: use a value from 1/64 to 1024")]
    Speed(f64),
    /// [`Start::Command`] names a command the recording does not have.
    #[error("no command {requested}: the recording has {available} command(s)")]
    NoSuchCommand {
        /// The 1-based command asked for.
        requested: usize,
        /// How many commands there are.
        available: usize,
    },
    /// Writing the output or waiting for keys failed.
    #[error("replay I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// Replays the output of `cast` into `out`, sanitised, with the recording's timing.
///
/// The output before the starting point is written at once; then each output event is written
/// after its delay (see the module docs), flushing `out` after each. Between events `controls`
/// is asked to wait, and the controls it returns pause, step, change speed or quit.
///
/// # Errors
///
/// [`PlayError::Speed`] and [`PlayError::NoSuchCommand`] before anything is written;
/// [`PlayError::Io`] if writing to `out` or waiting fails.
///
/// # Security
///
/// Only `o` events are written, and only through one [`Sanitizer`] for the whole stream.
/// Keystrokes (`i`) are never written.
pub fn play<W, C>(
    cast: &Cast,
    options: &Options,
    out: &mut W,
    controls: &mut C,
) -> Result<Report, PlayError>
where
    W: Write + ?Sized,
    C: Controls + ?Sized,
{
    let mut speed = options.speed;
    if !(MIN_SPEED..=MAX_SPEED).contains(&speed) {
        return Err(PlayError::Speed(speed));
    }
    let (first, base) = start_point(cast, options.start)?;
    let (skipped, live) = cast.events.split_at(first);

    let mut sanitizer = Sanitizer::new();
    let mut text = String::new();
    let mut report =
        Report { events_written: 0, neutralised: 0, reached_end: false, position: seconds(base) };
    let mut position = base;
    for event in skipped.iter().filter(|e| e.code == "o") {
        sanitizer.filter(&event.data, &mut text);
        report.events_written += 1;
    }
    if !text.is_empty() {
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }

    let mut previous = base;
    let mut paused = false;
    for event in live.iter().filter(|e| e.code == "o") {
        let mut remaining = gap(event.t - previous, options.idle_max);
        loop {
            let limit = if paused { None } else { Some(seconds(remaining / speed)) };
            let (control, waited) = match controls.wait(limit)? {
                Wake::TimedOut if paused => continue,
                Wake::TimedOut => break,
                Wake::Control { control, waited } => (control, waited),
            };
            if !paused {
                remaining = (remaining - waited.as_secs_f64() * speed).max(0.0);
            }
            match control {
                Control::Quit => {
                    report.neutralised = sanitizer.neutralised();
                    return Ok(report);
                }
                Control::TogglePause => paused = !paused,
                Control::Step if paused => break,
                Control::Step => {}
                Control::Faster => speed = (speed * 2.0).min(MAX_SPEED),
                Control::Slower => speed = (speed / 2.0).max(MIN_SPEED),
            }
        }
        text.clear();
        sanitizer.filter(&event.data, &mut text);
        if !text.is_empty() {
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        report.events_written += 1;
        previous = previous.max(event.t);
        position = position.max(event.t);
        report.position = seconds(position);
    }
    sanitizer.finish();
    report.neutralised = sanitizer.neutralised();
    report.reached_end = true;
    Ok(report)
}

/// The index of the first event to play in real time, and the recording time it starts from.
fn start_point(cast: &Cast, start: Start) -> Result<(usize, f64), PlayError> {
    match start {
        Start::Beginning => Ok((0, 0.0)),
        Start::At(at) => {
            let at = at.as_secs_f64();
            let first = cast.events.iter().position(|e| e.t >= at).unwrap_or(cast.events.len());
            Ok((first, at))
        }
        Start::Command(n) => {
            let indices = command_indices(cast);
            let index = n
                .checked_sub(1)
                .and_then(|k| indices.get(k))
                .copied()
                .ok_or(PlayError::NoSuchCommand { requested: n, available: indices.len() })?;
            Ok((index, cast.events[index].t))
        }
    }
}

/// Recording seconds to wait for a time difference `dt`: never negative, capped at `idle_max`.
fn gap(dt: f64, idle_max: Option<Duration>) -> f64 {
    let dt = dt.max(0.0);
    match idle_max {
        Some(max) => dt.min(max.as_secs_f64()),
        None => dt,
    }
}

/// `secs` as a `Duration`, within zero..=[`MAX_WAIT`].
fn seconds(secs: f64) -> Duration {
    if secs > 0.0 {
        Duration::try_from_secs_f64(secs).map_or(MAX_WAIT, |d| d.min(MAX_WAIT))
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cast;
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::error::Error;
    use std::rc::Rc;
    use test_util::Rng;

    type TestResult = Result<(), Box<dyn Error>>;

    /// Sanitises `input` in one call.
    fn clean(input: &str) -> (String, u64) {
        let mut s = Sanitizer::new();
        let mut out = String::new();
        s.filter(input, &mut out);
        s.finish();
        (out, s.neutralised())
    }

    /// Sanitises `input` fed in the given chunks.
    fn clean_chunks<'a>(chunks: impl IntoIterator<Item = &'a str>) -> (String, u64) {
        let mut s = Sanitizer::new();
        let mut out = String::new();
        for chunk in chunks {
            s.filter(chunk, &mut out);
            assert!(s.buf.len() <= MAX_SEQUENCE, "buffer bounded");
        }
        s.finish();
        (out, s.neutralised())
    }

    /// `input` sanitises to `want` with `count` neutralised, however it is split: at every
    /// char boundary (every byte of an escape sequence) into two chunks, and one char at a time.
    #[track_caller]
    fn check(input: &str, want: &str, count: u64) {
        let whole = clean(input);
        assert_eq!(whole, (want.to_owned(), count), "input {input:?}");
        for cut in (0..=input.len()).filter(|&i| input.is_char_boundary(i)) {
            let (a, b) = input.split_at(cut);
            assert_eq!(clean_chunks([a, b]), whole, "input {input:?} cut at {cut}");
        }
        let chars: Vec<String> = input.chars().map(String::from).collect();
        assert_eq!(clean_chunks(chars.iter().map(String::as_str)), whole, "one char at a time");
    }

    #[test]
    fn osc_strings_are_dropped_with_every_terminator() {
        let cases = [
            "\x1b]52;c;ZWNobyBwd25lZA==\x07",
            "\x1b]52;c;ZWNobyBwd25lZA==\x1b\\",
            "\x1b]52;c;?\x07",
            "\x1b]0;user@host: ~\x07",
            "\x1b]1;icon\x1b\\",
            "\x1b]2;title\x07",
            "\x1b]4;1;?\x07",
            "\x1b]10;?\x1b\\",
            "\x1b]11;rgb:0000/0000/0000\x07",
            "\x1b]7;file://host/tmp\x07",
            "\x1b]1337;SetUserVar=x=eQ==\x07",
            "\x1b]0;t\u{9c}",
            "\x1b]0;cancelled\x18",
            "\x1b]0;substituted\x1a",
            "\x1b]0;tïtle € 😀\x07",
        ];
        for osc in cases {
            check(&format!("a{osc}b"), "ab", 1);
        }
        // OSC 8: the link goes, its text stays.
        check(
            "see \x1b]8;id=1;https://evil.example/x\x1b\\the docs\x1b]8;;\x1b\\ now",
            "see the docs now",
            2,
        );
    }

    #[test]
    fn an_esc_ends_a_string_and_starts_a_sequence() {
        check("\x1b]0;title\x1b[31mred\x1b[0m", "\x1b[31mred\x1b[0m", 1);
        check("\x1b]0;title\x1b\x1b[1mB", "\x1b[1mB", 2);
        check("\x1bP$q m\x1b7x", "\x1b7x", 1);
    }

    #[test]
    fn dcs_sos_pm_apc_are_dropped() {
        let cases = [
            "\x1bP$qm\x1b\\",
            "\x1bP$q\"p\x1b\\",
            "\x1bP+q544e;636f6c6f7273\x1b\\",
            "\x1bP1$r0m\x1b\\",
            "\x1bPq#0;2;0;0;0#1!20~-\x1b\\",
            "\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\",
            "\x1bXsos\x1b\\",
            "\x1b^privacy message\x1b\\",
            "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\",
        ];
        for s in cases {
            let (out, n) = clean(&format!("a{s}b"));
            assert!(out.starts_with('a') && out.ends_with('b'), "{s:?} -> {out:?}");
            assert!(!out.contains("\x1bP") && !out.contains(['X', '^', '_', 'q']), "{s:?}");
            assert!(n >= 1, "{s:?}");
        }
        check("a\x1bP$qm\x1b\\b", "ab", 1);
        check("a\x1b_Gi=1;AAAA\x1b\\b\x1b^pm\x1b\\c\x1bXsos\x07d", "abcd", 3);
        // The tmux passthrough: its inner ESC ends the DCS, the inner OSC is dropped as well,
        // and the closing ST is a stray ST.
        check("a\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\b", "ab", 4);
    }

    #[test]
    fn answerback_and_window_csi_are_dropped() {
        let cases = [
            "\x1b[5n",
            "\x1b[6n",
            "\x1b[?6n",
            "\x1b[?15n",
            "\x1b[?996n",
            "\x1b[c",
            "\x1b[0c",
            "\x1b[>c",
            "\x1b[>0c",
            "\x1b[=c",
            "\x1b[21t",
            "\x1b[14t",
            "\x1b[18t",
            "\x1b[22;0;0t",
            "\x1b[8;100;300t",
            "\x1b[3;0;0t",
            "\x1b[9;1t",
            "\x1b[?2004$p",
            "\x1b[12$p",
            "\x1b[>q",
            "\x1b[>0q",
            "\x1b[x",
            "\x1b[1x",
            "\x1b[?u",
            "\x1b[>1u",
            "\x1b[<u",
            "\x1b[=1;1u",
            "\x1b[>4;2m",
            "\x1b[?4m",
            "\x1b[5i",
            "\x1b[?1000s",
            "\x1b[?1000r",
            "\x1b[1;1;1;1;1;1*y",
            "\x1b[2h",
            "\x1b[12l",
            "\x1b[?1000h",
            "\x1b[?1002h",
            "\x1b[?1003h",
            "\x1b[?1004h",
            "\x1b[?1006h",
            "\x1b[?1015h",
            "\x1b[?9h",
            "\x1b[?3h",
            "\x1b[?2031h",
            "\x1b[?2048h",
            "\x1b[?h",
            "\x1b[1;2;3;4;5T",
            "\x1b[62;1\"p",
            "\x1b[#R",
            "\x1b[1?5h",
            "\x1b[1 2m",
            "\x1bZ",
            "\x1b%G",
            "\x1b%@",
            "\x1b G",
            "\x1b L",
            "\x1b\\",
            "\x1b$(C",
            "\x05",
        ];
        for seq in cases {
            check(&format!("a{seq}b"), "ab", 1);
        }
    }

    #[test]
    fn mode_lists_keep_only_allowed_modes() {
        check("\x1b[?1049;1000;1006h", "\x1b[?1049h", 1);
        check("\x1b[?1000;25l", "\x1b[?25l", 1);
        check("\x1b[?1000;1006h", "", 1);
        check("\x1b[2;4h", "\x1b[4h", 1);
        check("\x1b[?1049;1h\x1b[?1l", "\x1b[?1049;1h\x1b[?1l", 0);
    }

    #[test]
    fn c1_controls_become_replacement_characters() {
        check("a\u{9b}31mb", "a\u{fffd}31mb", 1);
        check("a\u{9d}52;c;eA==\x07b", "a\u{fffd}52;c;eA==b", 1);
        check("\u{90}$qm\u{9c}", "\u{fffd}$qm\u{fffd}", 2);
        check("\u{85}\u{84}\u{9f}", "\u{fffd}\u{fffd}\u{fffd}", 3);
        // A C1 or any other non-ASCII character cuts a pending sequence.
        check("\x1b[\u{9b}6n", "\u{fffd}6n", 2);
        check("\x1b[31é", "é", 1);
        check("\x1b(€", "€", 1);
        // Characters just outside the C1 range are text.
        check("\u{7e}\u{a0}\u{ff}", "\u{7e}\u{a0}\u{ff}", 0);
    }

    #[test]
    fn c0_controls() {
        check("a\x08\t\n\x0b\x0c\r\x0e\x0fb", "a\x08\t\n\x0b\x0c\r\x0e\x0fb", 0);
        check("a\x00\x07\x7fb", "ab", 0);
        check("a\x05\x01\x18\x1a\x1cb", "ab", 5);
        // Controls inside a sequence act as they would in a terminal, and the sequence goes on.
        check("\x1b[3\r1m", "\r\x1b[31m", 0);
        check("\x1b[3\x056n", "", 2);
        // CAN and SUB cancel it.
        check("\x1b[31\x18m", "m", 1);
        check("\x1b(\x1aB", "B", 1);
    }

    #[test]
    fn drawing_sequences_pass_unchanged() {
        let keep = [
            "\x1b[m",
            "\x1b[0m",
            "\x1b[1;4;5;7;9;31;42m",
            "\x1b[38;5;208m",
            "\x1b[48;2;10;20;30m",
            "\x1b[38:2::10:20:30m",
            "\x1b[4:3m",
            "\x1b[A\x1b[2B\x1b[3C\x1b[4D\x1b[E\x1b[F\x1b[10G",
            "\x1b[H\x1b[5;10H\x1b[5;10f\x1b[7d\x1b[3`\x1b[2a\x1b[e",
            "\x1b[J\x1b[0J\x1b[1J\x1b[2J\x1b[K\x1b[1K\x1b[2K\x1b[?2J\x1b[?1K",
            "\x1b[5X\x1b[2@\x1b[2P\x1b[3L\x1b[3M\x1b[2S\x1b[2T\x1b[I\x1b[Z\x1b[3b",
            "\x1b[1;20r\x1b[r\x1b[s\x1b[u\x1b[5;60s",
            "\x1b[g\x1b[3g",
            "\x1b[2 q\x1b[ q\x1b[6 q",
            "\x1b[!p",
            "\x1b[1000b\x1b[1000;1000H\x1b[0999X",
            "\x1b[?1h\x1b[?1l\x1b[?5h\x1b[?6h\x1b[?7l\x1b[?12h\x1b[?25l\x1b[?25h",
            "\x1b[?45h\x1b[?47h\x1b[?47l\x1b[?66h\x1b[?69h\x1b[?95h\x1b[?1007h",
            "\x1b[?1047h\x1b[?1048h\x1b[?1049h\x1b[?1049l\x1b[?2004h\x1b[?2026h\x1b[?2026l",
            "\x1b[4h\x1b[4l\x1b[20h",
            "\x1b7\x1b8\x1bM\x1bD\x1bE\x1bH\x1b=\x1b>\x1bN\x1bO\x1bn\x1bo\x1b|\x1b}\x1b~",
            "\x1b(B\x1b(0\x1b)0\x1b*A\x1b+B\x1b-A\x1b.A\x1b/A\x1b(%5\x1b(\"?",
            "\x1b#8\x1b#3\x1b#4\x1b#5\x1b#6",
            "plain text, ünïcödé, 中文, emoji 😀, box ┌─┐",
        ];
        for seq in keep {
            check(&format!("a{seq}b"), &format!("a{seq}b"), 0);
        }
    }

    /// Counts and positions above `MAX_PARAM` are lowered to it; what is not on the allow-list,
    /// or has parameters its kind does not take, is dropped.
    #[test]
    fn counts_are_capped_and_only_listed_sequences_pass() {
        let capped = [
            ("\x1b[2000000000b", "\x1b[1000b"),
            ("\x1b[99999999999999999999999b", "\x1b[1000b"),
            ("\x1b[1001@", "\x1b[1000@"),
            ("\x1b[5000P", "\x1b[1000P"),
            ("\x1b[5000X", "\x1b[1000X"),
            ("\x1b[5000L", "\x1b[1000L"),
            ("\x1b[5000M", "\x1b[1000M"),
            ("\x1b[5000S", "\x1b[1000S"),
            ("\x1b[5000T", "\x1b[1000T"),
            ("\x1b[5000A", "\x1b[1000A"),
            ("\x1b[5000C", "\x1b[1000C"),
            ("\x1b[5000I", "\x1b[1000I"),
            ("\x1b[5000`", "\x1b[1000`"),
            ("\x1b[5000;7H", "\x1b[1000;7H"),
            ("\x1b[;70000f", "\x1b[;1000f"),
            ("\x1b[1;65535r", "\x1b[1;1000r"),
            ("\x1b[3;4000s", "\x1b[3;1000s"),
        ];
        for (input, want) in capped {
            check(&format!("x{input}y"), &format!("x{want}y"), 1);
        }
        let dropped = [
            // Clear the scrollback: what would erase the replay's first line.
            "\x1b[3J",
            "\x1b[?3J",
            "\x1b[2;3J",
            "\x1b[3;2J",
            "\x1b[4K",
            "\x1b[1;2K",
            "\x1b[5g",
            "\x1b[7 q",
            // Rectangle operations, DECSCA, horizontal scrolling, column insert and delete.
            "\x1b[1;1;5;5;7$r",
            "\x1b[1;1;5;5$z",
            "\x1b[1;1;24;80;1;1;1;1$v",
            "\x1b[69;1;1;24;80$x",
            "\x1b[1;1;5;5;7$t",
            "\x1b[1;1;5;5${",
            "\x1b[1\"q",
            "\x1b[2'}",
            "\x1b[2'~",
            "\x1b[1 @",
            "\x1b[1 A",
            // Too many parameters, or sub-parameters outside SGR.
            "\x1b[1;2A",
            "\x1b[1;2;3H",
            "\x1b[1:2H",
            "\x1b[5u",
            "\x1b[1!p",
            "\x1b[?25:1h",
        ];
        for seq in dropped {
            check(&format!("a{seq}b"), "ab", 1);
        }
    }

    #[test]
    fn full_reset_is_rewritten() {
        check("a\x1bcb", &format!("a{RIS_REPLACEMENT}b"), 0);
    }

    /// What less and vim write to a terminal (captured with `script`, TERM=xterm-256color).
    #[test]
    fn pager_and_editor_sessions() {
        let less = "\x1b[?1049h\x1b[?1h\x1b=\rline one\r\nline \x1b[1mtwo\x1b[0m\r\n\x1b[7m(END)\
                    \x1b[27m\x1b[K\r\x1b[K\x1b[?1l\x1b>\x1b[?1049l";
        check(less, less, 0);
        let vim_drawing = "\x1b[?1049h\x1b[?1h\x1b=\x1b[H\x1b[2J\x1b[?2004h\x1b[1;24r\
                           \x1b[?12h\x1b[?12l\x1b[2 q\x1b[?25l\x1b[24;1H\"x.txt\" 1L, 6C\
                           \x1b[1;1H\x1b[38;5;130m  1 \x1b[mhello\r\n\x1b[94m~ \x1b[m\
                           \x1b[24;63H1,1\x1b[11CAll\x1b[1;5H\x1b[?25h\x1b[?2026h\x1b[?2026l\
                           \x1b[24;1H\x1b[?2004l\x1b[?1l\x1b>\x1b[?1049l\x1b[0 q";
        check(vim_drawing, vim_drawing, 0);
        // vim's start-up queries around the drawing: all of them go, the drawing stays.
        let vim_queries = format!(
            "\x1b[22;0;0t{}\x1b[>4;2m\x1b[?u\x1b[?12$p\x1bP+q436f\x1b\\\x1b]10;?\x07\
             \x1b]11;?\x07\x1b[>c\x1b[23;0;0t\x1b[>4;m",
            &vim_drawing[..30]
        );
        check(&vim_queries, &vim_drawing[..30], 10);
    }

    #[test]
    fn overlong_sequences_are_dropped_without_buffering() {
        let long_csi = format!("a\x1b[{}mb", "1;".repeat(3000));
        check(&long_csi, "ab", 1);
        let long_esc = format!("a\x1b{}Bb", "(".repeat(5000));
        check(&long_esc, "ab", 1);
        // A sequence of exactly MAX_SEQUENCE bytes is still read.
        let fits = format!("\x1b[{}m", "0".repeat(MAX_SEQUENCE - 2));
        check(&fits, &fits, 0);
        let too_long = format!("\x1b[{}m", "0".repeat(MAX_SEQUENCE - 1));
        check(&too_long, "", 1);
        // A long string is discarded as it arrives; the text after it is kept.
        let mut s = Sanitizer::new();
        let mut out = String::new();
        s.filter("x\x1b]52;c;", &mut out);
        let chunk = "QUFB".repeat(16 * 1024);
        for _ in 0..64 {
            s.filter(&chunk, &mut out);
        }
        assert!(s.buf.capacity() <= MAX_SEQUENCE + 8, "nothing of a string is buffered");
        s.filter("\x07y", &mut out);
        assert_eq!((out.as_str(), s.neutralised()), ("xy", 1));
    }

    #[test]
    fn an_incomplete_sequence_at_the_end_is_dropped() {
        for tail in ["\x1b", "\x1b[", "\x1b[3", "\x1b(", "\x1b]0;ti", "\x1bP$q"] {
            let (out, n) = clean(&format!("ok{tail}"));
            assert_eq!((out.as_str(), n), ("ok", 1), "{tail:?}");
        }
    }

    #[test]
    fn output_is_a_fixed_point_with_nothing_dangerous() {
        let pieces = [
            "a",
            "é",
            "😀",
            "\x1b",
            "[",
            "]",
            "P",
            "_",
            "^",
            "X",
            "\\",
            "?",
            ">",
            "=",
            "<",
            "1",
            "6",
            ";",
            "n",
            "c",
            "t",
            "h",
            "l",
            "m",
            "q",
            "$",
            " ",
            "\x07",
            "\x18",
            "\x05",
            "\r\n",
            "\u{9b}",
            "\u{9d}",
            "\u{9c}",
            "\x1b[",
            "\x1b]52;c;",
            "\x1bP",
            "\x1b[?",
            "1049",
            "1000",
            "(",
            "#",
            "%",
            "\x1bc",
            "3J",
            "99999",
            "b",
            "$",
            "'",
        ];
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let len = rng.below(40);
            let input: String = (0..len).map(|_| pieces[rng.below(pieces.len())]).collect();
            let (out, _) = clean(&input);
            assert_eq!(clean(&out), (out.clone(), 0), "input {input:?}");
            assert!(!out.contains(|c| ('\u{80}'..='\u{9f}').contains(&c)), "{input:?}");
            for bad in ["\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX", "\x1bZ", "\x05", "\x07"] {
                assert!(!out.contains(bad), "{bad:?} in {out:?} from {input:?}");
            }
            let cut = rng.below(input.len() + 1);
            if input.is_char_boundary(cut) {
                let (a, b) = input.split_at(cut);
                assert_eq!(clean_chunks([a, b]), clean(&input), "{input:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn restore_undoes_every_mode_let_through() -> TestResult {
        assert_eq!(clean(RESTORE_TERMINAL), (RESTORE_TERMINAL.to_owned(), 0));
        let mut term = terminal(8, 40)?;
        term.process(b"\x1b[?1049h\x1b[?25l\x1b[?2004h\x1b[?1h\x1b=\x1b[4 q\x1b[1;31m");
        let screen = term.screen();
        assert!(screen.alternate_screen() && screen.hide_cursor() && screen.bracketed_paste());
        assert!(screen.application_cursor() && screen.application_keypad() && screen.bold());
        term.process(RESTORE_TERMINAL.as_bytes());
        let screen = term.screen();
        assert!(!screen.alternate_screen() && !screen.hide_cursor() && !screen.bracketed_paste());
        assert!(!screen.application_cursor() && !screen.application_keypad() && !screen.bold());
        assert_eq!(screen.cursor_style(), vt100::CursorStyle::Default);
        assert_eq!(screen.fgcolor(), vt100::Color::Default);
        Ok(())
    }

    #[test]
    fn printable_escapes_controls() {
        assert!(matches!(printable("ls -la é"), Cow::Borrowed("ls -la é")));
        assert_eq!(
            printable("a\x1b]52;c;x\x07\u{9b}\u{202e}b"),
            "a\\u{1b}]52;c;x\\u{7}\\u{9b}\\u{202e}b"
        );
    }

    #[test]
    fn printable_escapes_what_transfer_paths_escape() {
        // Bidi marks, the Arabic letter mark, zero-width characters, the soft hyphen, line
        // separators, the BOM: each can hide or reorder what a reviewer reads.
        for c in ['\u{200e}', '\u{200f}', '\u{061c}', '\u{200b}', '\u{200d}', '\u{00ad}']
            .into_iter()
            .chain(['\u{2028}', '\u{2066}', '\u{2069}', '\u{feff}', '\u{fff9}'])
        {
            assert_eq!(printable(&format!("rm{c}x")), format!("rm\\u{{{:x}}}x", u32::from(c)));
        }
        // The same set as transfer paths, over all of Unicode's format-character blocks.
        for c in ('\u{80}'..='\u{2fff}').chain('\u{fe00}'..='\u{ffff}') {
            let escaped = printable(&c.to_string()) != c.to_string();
            let by_transfer =
                crate::transfer::escape_bytes(c.to_string().as_bytes()) != c.to_string();
            assert_eq!(escaped, by_transfer, "U+{:04X}", u32::from(c));
        }
    }

    // ---- player ----------------------------------------------------------------------------

    /// A recording with these `(time, code, data)` events, written as JSON and parsed back.
    fn cast_of(events: &[(f64, &str, &str)]) -> Result<Cast, Box<dyn Error>> {
        let mut text = String::from("{\"version\":2,\"width\":40,\"height\":8}\n");
        for event in events {
            text.push_str(&serde_json::to_string(event)?);
            text.push('\n');
        }
        Ok(cast::parse(&text)?)
    }

    /// Virtual time, shared by the script and the writer.
    type Clock = Rc<Cell<Duration>>;

    /// Collects each write with the virtual time it happened at.
    struct Screen {
        clock: Clock,
        writes: Vec<(Duration, Vec<u8>)>,
    }

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.push((self.clock.get(), buf.to_vec()));
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        fn bytes(&self) -> Vec<u8> {
            self.writes.iter().flat_map(|(_, b)| b.iter().copied()).collect()
        }

        fn text(&self) -> Result<String, Box<dyn Error>> {
            Ok(String::from_utf8(self.bytes())?)
        }

        /// The writes as (milliseconds, text).
        fn timeline(&self) -> Vec<(u128, String)> {
            self.writes
                .iter()
                .map(|(t, b)| (t.as_millis(), String::from_utf8_lossy(b).into_owned()))
                .collect()
        }
    }

    /// Scripted keys at virtual times; records every wait it is asked for.
    struct Script {
        clock: Clock,
        keys: VecDeque<(Duration, Control)>,
        waits: Vec<Option<Duration>>,
    }

    impl Controls for Script {
        fn wait(&mut self, limit: Option<Duration>) -> io::Result<Wake> {
            self.waits.push(limit);
            let now = self.clock.get();
            if let Some(&(at, control)) = self.keys.front()
                && limit.is_none_or(|l| at <= now + l)
            {
                self.keys.pop_front();
                let at = at.max(now);
                self.clock.set(at);
                return Ok(Wake::Control { control, waited: at - now });
            }
            let limit = limit.ok_or_else(|| io::Error::other("paused with no key left"))?;
            self.clock.set(now + limit);
            Ok(Wake::TimedOut)
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Plays `cast` with scripted `keys` (virtual milliseconds).
    fn run(
        cast: &Cast,
        options: Options,
        keys: &[(u64, Control)],
    ) -> Result<(Report, Screen, Vec<Option<Duration>>), PlayError> {
        let clock = Clock::default();
        let mut screen = Screen { clock: clock.clone(), writes: Vec::new() };
        let mut script = Script {
            clock,
            keys: keys.iter().map(|&(t, c)| (ms(t), c)).collect(),
            waits: Vec::new(),
        };
        let report = play(cast, &options, &mut screen, &mut script)?;
        Ok((report, screen, script.waits))
    }

    /// Waits rounded to microseconds (the conversion from `f64` seconds is not exact).
    fn micros(waits: &[Option<Duration>]) -> Vec<Option<u128>> {
        waits.iter().map(|w| w.map(|d| (d.as_nanos() + 500) / 1000)).collect()
    }

    /// Records everything a terminal would do besides drawing.
    #[derive(Debug, Default)]
    struct Seen(Vec<String>);

    impl vt100::Callbacks for Seen {
        fn audible_bell(&mut self, _: &mut vt100::Screen) {
            self.0.push("bell".to_owned());
        }
        fn visual_bell(&mut self, _: &mut vt100::Screen) {
            self.0.push("visual bell".to_owned());
        }
        fn resize(&mut self, _: &mut vt100::Screen, request: (u16, u16)) {
            self.0.push(format!("resize {request:?}"));
        }
        fn set_window_icon_name(&mut self, _: &mut vt100::Screen, name: &[u8]) {
            self.0.push(format!("icon {name:?}"));
        }
        fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
            self.0.push(format!("title {title:?}"));
        }
        fn copy_to_clipboard(&mut self, _: &mut vt100::Screen, _: &[u8], data: &[u8]) {
            self.0.push(format!("clipboard {data:?}"));
        }
        fn paste_from_clipboard(&mut self, _: &mut vt100::Screen, _: &[u8]) {
            self.0.push("paste".to_owned());
        }
        fn unhandled_char(&mut self, _: &mut vt100::Screen, c: char) {
            if c != REPLACEMENT {
                self.0.push(format!("char {c:?}"));
            }
        }
        fn unhandled_control(&mut self, _: &mut vt100::Screen, b: u8) {
            self.0.push(format!("control {b:#x}"));
        }
        fn unhandled_escape(
            &mut self,
            _: &mut vt100::Screen,
            i1: Option<u8>,
            _: Option<u8>,
            b: u8,
        ) {
            self.0.push(format!("escape {i1:?} {:?}", char::from(b)));
        }
        fn unhandled_csi(
            &mut self,
            _: &mut vt100::Screen,
            i1: Option<u8>,
            _: Option<u8>,
            params: &[&[u16]],
            c: char,
        ) {
            self.0.push(format!("csi {i1:?} {params:?} {c:?}"));
        }
        fn unhandled_osc(&mut self, _: &mut vt100::Screen, params: &[&[u8]]) {
            self.0.push(format!("osc {params:?}"));
        }
    }

    fn terminal(rows: u16, cols: u16) -> Result<vt100::Parser<Seen>, Box<dyn Error>> {
        let rows = std::num::NonZeroU16::new(rows).ok_or("rows")?;
        let cols = std::num::NonZeroU16::new(cols).ok_or("cols")?;
        Ok(vt100::Parser::new_with_callbacks(rows, cols, 0, Seen::default()))
    }

    #[test]
    fn a_hostile_recording_replays_as_text_only() -> TestResult {
        let cast = cast_of(&[
            (0.1, "o", "one \x1b]52;c;ZWNobyBwd25lZA==\x07two "),
            (0.2, "o", "\x1b[21tthree \x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\ "),
            (0.3, "o", "\x1bP$q m\x1b\\four \x1b[c\x1b[>c\x1b[6n\x1b[5nfive "),
            (0.4, "i", "\x1b[6n typed secret"),
            (0.5, "o", "\x1b[32msix\x1b[0m \u{9b}31m seven\x1b]0;pwned\x07\r\n"),
            (0.6, "m", "\x1b]52;c;bWFya2Vy\x07"),
            (0.7, "r", "200x100"),
            (0.8, "o", "eight \x1b]"),
            (0.9, "o", "52;c;c3BsaXQ=\x07nine\x1b[2"),
            (1.0, "o", "1tten"),
        ])?;
        let (report, screen, _) = run(&cast, Options::default(), &[])?;
        let text = screen.text()?;
        for word in ["one", "two", "three", "link", "four", "five", "six", "seven", "nine", "ten"] {
            assert!(text.contains(word), "{word} missing from {text:?}");
        }
        for bad in [
            "\x1b]", "\x1bP", "52;", "21t", "[c", ">c", "6n", "5n", "$q", "\u{9b}", "secret",
            "pwned", "200x100", "evil",
        ] {
            assert!(!text.contains(bad), "{bad:?} in {text:?}");
        }
        assert_eq!(
            report,
            Report { events_written: 7, neutralised: 13, reached_end: true, position: ms(1000) }
        );
        let mut term = terminal(8, 80)?;
        term.process(text.as_bytes());
        assert_eq!(term.callbacks().0, Vec::<String>::new(), "the terminal only drew");
        // vt100 does not draw U+FFFD.
        assert!(term.screen().contents().contains("six 31m seven\neight nine"), "{text:?}");
        Ok(())
    }

    #[test]
    fn delays_follow_the_recording_speed_and_idle_limit() -> TestResult {
        let cast = cast_of(&[
            (0.5, "o", "a"),
            (1.0, "o", "b"),
            (1.0, "m", "ls"),
            (1.25, "o", "c"),
            (11.25, "r", "100x30"),
            (21.25, "o", "d"),
            (21.0, "o", "e"),
            (22.0, "i", "x"),
            (23.0, "o", "f"),
        ])?;
        let (report, screen, waits) = run(&cast, Options::default(), &[])?;
        let s = |v: u128| Some(v * 1000);
        assert_eq!(micros(&waits), [s(500), s(500), s(250), s(20_000), s(0), s(1750)]);
        assert_eq!(screen.text()?, "abcdef");
        assert!(report.reached_end);
        assert_eq!(report.position, Duration::from_secs(23));

        let fast =
            Options { speed: 2.0, idle_max: Some(Duration::from_secs(2)), ..Options::default() };
        let (_, screen, waits) = run(&cast, fast, &[])?;
        assert_eq!(micros(&waits), [s(250), s(250), s(125), s(1000), s(0), s(875)]);
        assert_eq!(
            screen.timeline(),
            [(250, "a"), (500, "b"), (625, "c"), (1625, "d"), (1625, "e"), (2500, "f")]
                .map(|(t, c)| (t, c.to_owned()))
        );

        let slow = Options { speed: 0.5, idle_max: Some(ms(100)), ..Options::default() };
        let (_, _, waits) = run(&cast, slow, &[])?;
        assert_eq!(micros(&waits), [s(200), s(200), s(200), s(200), s(0), s(200)]);
        Ok(())
    }

    /// A shell session: a coloured prompt that also sets the title, two commands.
    fn shell_session() -> Result<Cast, Box<dyn Error>> {
        let prompt = "\x1b]0;alice@db1: ~\x07\x1b[1;32malice@db1\x1b[0m:\x1b[1;34m~\x1b[0m$ ";
        cast_of(&[
            (0.0, "m", "shell"),
            (0.1, "o", prompt),
            (1.0, "i", "ls\r"),
            (1.0, "o", "ls\r\n"),
            (1.0, "m", "ls"),
            (1.1, "o", "\x1b[0m\x1b[01;34mbackups\x1b[0m  notes.txt\r\n"),
            (1.2, "o", prompt),
            (3.0, "i", "cat notes.txt\r"),
            (3.0, "o", "cat notes.txt\r\n"),
            (3.0, "m", "cat notes.txt"),
            (3.5, "o", "rotate the keys\r\n"),
            (3.6, "o", prompt),
            (5.0, "o", "logout\r\n"),
            (5.1, "m", "exit 0"),
        ])
    }

    #[test]
    fn commands_skip_gateway_markers() -> TestResult {
        let cast = shell_session()?;
        assert_eq!(commands(&cast), [(1.0, "ls".to_owned()), (3.0, "cat notes.txt".to_owned())]);
        for label in [
            "shell",
            "shell (pty xterm 80x24)",
            "exec: uptime",
            "subsystem: sftp",
            "exit 0",
            "session ended by signal",
            "upload /srv/a bytes=1 sha256=00 complete",
            "download /srv/b bytes=1 sha256=00 complete",
            "sftp version 3",
            "scp error fatal",
            "transfer tracking stopped: bad packet",
            "agent forwarding refused",
            "agent forwarding on",
            "agent forwarding used on the target",
            "X11 forwarding refused",
            "X11 forwarding: connection from 127.0.0.1:40000",
            "remote forwarding of 0.0.0.0:80 refused",
            "remote forwarding: connection to 127.0.0.1:8080",
            "remote socket forwarding of /run/x refused",
            "port forwarding to db:5432 refused",
            "socket forwarding to /run/x refused",
            "killed by alice",
            "",
            "  ",
        ] {
            assert!(!is_command(label), "{label:?}");
        }
        for label in
            ["shellcheck x.sh", "shell-x", "ls", "exit", "mkdir /srv/x", "sudo -i", "uploads"]
        {
            assert!(is_command(label), "{label:?}");
        }
        Ok(())
    }

    #[test]
    fn starting_at_a_command_fast_forwards_to_its_screen() -> TestResult {
        let cast = shell_session()?;
        let options = Options { start: Start::Command(2), ..Options::default() };
        let (report, screen, waits) = run(&cast, options, &[])?;

        // One write at time zero holds everything before the marker of `cat notes.txt`.
        let (at, first) = screen.writes.first().ok_or("nothing written")?;
        assert_eq!(*at, Duration::ZERO);
        assert!(screen.writes[1..].iter().all(|(t, _)| *t > Duration::ZERO));
        let mut replayed = terminal(8, 40)?;
        replayed.process(first);
        let mut recorded = terminal(8, 40)?;
        let marker = cast.events.iter().position(|e| e.data == "cat notes.txt" && e.code == "m");
        for event in &cast.events[..marker.ok_or("no marker")?] {
            if event.code == "o" {
                recorded.process(event.data.as_bytes());
            }
        }
        assert_eq!(replayed.screen().contents_formatted(), recorded.screen().contents_formatted());
        assert_eq!(
            replayed.screen().contents(),
            "alice@db1:~$ ls\nbackups  notes.txt\nalice@db1:~$ cat notes.txt"
        );
        assert_eq!(replayed.callbacks().0, Vec::<String>::new());

        // Then real time from the marker (3.0): 3.5, 3.6, 5.0.
        let s = |v: u128| Some(v * 1000);
        assert_eq!(micros(&waits), [s(500), s(100), s(1400)]);
        assert_eq!(
            screen.timeline()[1..].iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [500, 600, 2000]
        );
        assert_eq!(report.events_written, 8);
        assert_eq!(report.neutralised, 3, "three titles");

        // The whole replay ends on the recording's last screen.
        replayed.process(&screen.bytes()[first.len()..]);
        let mut full = terminal(8, 40)?;
        full.process(cast.output_text().as_bytes());
        assert_eq!(replayed.screen().contents_formatted(), full.screen().contents_formatted());

        let at = Options { start: Start::At(ms(3200)), ..Options::default() };
        let (_, screen, waits) = run(&cast, at, &[])?;
        assert_eq!(micros(&waits), [s(300), s(100), s(1400)]);
        assert!(screen.text()?.starts_with("\x1b[1;32malice"));
        assert!(screen.writes[0].1.ends_with(b"cat notes.txt\r\n"));

        let past_end = Options { start: Start::At(Duration::from_secs(99)), ..Options::default() };
        let (report, screen, waits) = run(&cast, past_end, &[])?;
        assert!(waits.is_empty() && report.reached_end && report.events_written == 8);
        assert!(screen.text()?.ends_with("logout\r\n"));
        Ok(())
    }

    #[test]
    fn bad_options_are_refused_before_writing() -> TestResult {
        let cast = shell_session()?;
        for n in [0, 3] {
            let options = Options { start: Start::Command(n), ..Options::default() };
            let err = run(&cast, options, &[]).err();
            assert!(
                matches!(err, Some(PlayError::NoSuchCommand { requested, available: 2 }) if requested == n),
                "{err:?}"
            );
        }
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY, 1.0 / 128.0, 2048.0] {
            let options = Options { speed, ..Options::default() };
            assert!(matches!(run(&cast, options, &[]), Err(PlayError::Speed(_))), "{speed}");
        }
        Ok(())
    }

    fn ticks() -> Result<Cast, Box<dyn Error>> {
        cast_of(&[
            (1.0, "o", "1"),
            (2.0, "o", "2"),
            (2.5, "m", "ls"),
            (3.0, "o", "3"),
            (4.0, "o", "4"),
            (5.0, "o", "5"),
            (6.0, "o", "6"),
        ])
    }

    #[test]
    fn pause_step_and_quit() -> TestResult {
        use Control::*;
        let cast = ticks()?;
        // Pause half-way to "2", step twice, resume, quit half-way to "4". Step while playing
        // is ignored.
        let keys = [(500, Step), (1500, TogglePause), (10_000, Step), (15_000, Step)];
        let keys = [&keys[..], &[(20_000, TogglePause), (20_500, Quit)]].concat();
        let (report, screen, waits) = run(&cast, Options::default(), &keys)?;
        assert_eq!(
            screen.timeline(),
            [(1000, "1"), (10_000, "2"), (15_000, "3")].map(|(t, c)| (t, c.to_owned()))
        );
        let s = |v: u128| Some(v * 1000);
        assert_eq!(micros(&waits), [s(1000), s(500), s(1000), None, None, None, s(1000)]);
        assert_eq!(
            report,
            Report { events_written: 3, neutralised: 0, reached_end: false, position: ms(3000) }
        );

        // A pause keeps what was left of the wait.
        let keys = [(1500, TogglePause), (5000, TogglePause)];
        let (report, screen, waits) = run(&cast, Options::default(), &keys)?;
        assert_eq!(micros(&waits)[..4], [s(1000), s(1000), None, s(500)]);
        assert_eq!(screen.timeline()[1], (5500, "2".to_owned()));
        assert!(report.reached_end);

        // Quit while paused.
        let (report, screen, _) =
            run(&cast, Options::default(), &[(1500, TogglePause), (9000, Quit)])?;
        assert_eq!(screen.text()?, "1");
        assert!(!report.reached_end);
        Ok(())
    }

    #[test]
    fn speed_changes_apply_to_the_current_wait() -> TestResult {
        use Control::*;
        let cast = cast_of(&[(4.0, "o", "a"), (8.0, "o", "b"), (9.0, "o", "c")])?;
        // 1 s into the 4 s wait for "a", double: 3 s of recording left at 2x is 1.5 s.
        // 0.1 s into the wait for "b" (4 s at 2x), halve: 3.8 s left at 1x; 0.4 s later, halve
        // again: 3.4 s left at 0.5x. 0.2 s into the wait for "c" (1 s at 0.5x), double.
        let keys = [(1000, Faster), (2600, Slower), (3000, Slower), (10_000, Faster)];
        let (_, screen, waits) = run(&cast, Options::default(), &keys)?;
        let s = |v: u128| Some(v * 1000);
        assert_eq!(micros(&waits), [s(4000), s(1500), s(2000), s(3800), s(6800), s(2000), s(900)]);
        assert_eq!(
            screen.timeline(),
            [(2500, "a"), (9800, "b"), (10_900, "c")].map(|(t, c)| (t, c.to_owned()))
        );
        // Speed stays within bounds.
        let fast = Options { speed: MAX_SPEED, ..Options::default() };
        let (_, _, waits) = run(&cast, fast, &[(0, Faster)])?;
        assert_eq!(micros(&waits)[1], Some(3906), "4 s at 1024x, not 2048x");
        Ok(())
    }

    #[test]
    fn io_errors_stop_the_replay() -> TestResult {
        let cast = ticks()?;
        let mut out = Vec::new();
        let mut failing =
            |_: Option<Duration>| -> io::Result<Wake> { Err(io::Error::other("tty gone")) };
        let result = play(&cast, &Options::default(), &mut out, &mut failing);
        assert!(matches!(result, Err(PlayError::Io(e)) if e.to_string() == "tty gone"));
        let mut instant = |_: Option<Duration>| -> io::Result<Wake> { Ok(Wake::TimedOut) };
        let report = play(&cast, &Options::default(), &mut out, &mut instant)?;
        assert_eq!(out, b"123456");
        assert!(report.reached_end);
        Ok(())
    }
}
