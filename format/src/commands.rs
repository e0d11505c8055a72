//! The commands a user submits in an interactive terminal session, as the user saw them.
//!
//! [`CommandTracker`] is fed the two byte streams of one PTY session: what the host wrote
//! ([`CommandTracker::output`]) and what the user typed ([`CommandTracker::input`]). It reports
//! each command line the user submitted **as it was displayed**, with the prompt stripped, so
//! tab completion, history recall (Up, Ctrl-R) and line editing come out as the user saw them.
//! It does no I/O and reads no clock: the caller stamps the commands it gets back.
//!
//! # How it works
//!
//! A headless [`vt100`] screen mirrors the session. Keystrokes never provide the text of a
//! command; they only mark three moments:
//!
//! - **Where the prompt ends.** The first keystroke of a new line (after a submitted line, or at
//!   session start) records the cursor position as the line's *anchor*, together with the text
//!   before it on its logical line: the prompt.
//! - **When the line is submitted**: Enter (`\r` or `\n`), or Ctrl-O (readline's
//!   operate-and-get-next, which also runs the line).
//! - **When it is abandoned**: Ctrl-C, or Ctrl-D on an empty line.
//!
//! **Echo lag.** Enter often arrives before the host has echoed the last characters typed (fast
//! typing, paste), so a submitted line is not read at Enter. It waits for the line feed with
//! which the host ends it: a line feed that moves the cursor to a new logical line (one from a
//! row that soft-wraps into the next does not count). While a line waits, output is handed to
//! the emulator up to each line feed and checked there, so the line is read before its
//! command's own output can scroll it away. With nothing waiting, output goes to the emulator
//! in one call and no screen text is read: that is the hot path.
//!
//! **Scrolling.** Anchors are kept in absolute rows. The emulator reports each row that scrolls
//! off the top of the main screen, and a resize shifts rows by as much as it moves the cursor.
//!
//! **Reading.** At that line feed the command is the text from the anchor to the end of the
//! ended logical line: soft-wrapped rows are joined without inserted spaces, and the result is
//! trimmed. The anchor is trusted only while its row still shows the same prompt before it and
//! belongs to the line that ended. Otherwise (Ctrl-L cleared the screen, completion listed
//! candidates and redrew the prompt lower down, a resize redrew the line), the ended line is
//! read instead: the text after a known prompt, else the text after readline's
//! `(reverse-i-search)` label, else the whole line, unless it is only a prompt.
//!
//! **Typed-ahead lines.** A line started while an earlier one still waits for its echo (a paste
//! of `ls\rpwd\r`, typing ahead of a slow host) cannot trust its anchor: the screen does not
//! show yet where it will start. It is matched to the first ended line that shows a known
//! prompt (the command is the text after it) or that ends with exactly the keys typed for it,
//! when those were plain characters; a blank typed-ahead line may be passed over. If the
//! tentative anchor of a waiting line turns out right (its row ends still showing its prompt),
//! the host has got to that line, so the lines before it were never echoed: they are dropped,
//! and one lost line cannot hold up the rest of the session.
//!
//! **Bracketed paste.** When the host asked for bracketed paste (bash 5.1 and later do), a
//! pasted newline does not submit: readline shows the paste over several rows and runs it all
//! at the next Enter. That line is one command, its rows joined with `\n`.
//!
//! **Full-screen programs.** Keystrokes while the alternate screen is active (vim, less, top)
//! are not commands; the command line that started the program is.
//!
//! **Shell integration (OSC 133).** A shell that prints the prompt marks (`ESC ] 133 ; A`
//! prompt start, `B` input start, `C` command start, `D` command end, each ended by BEL or
//! ST) makes the boundaries exact: the command is the screen text from where the cursor was at
//! B to the line the shell ended before C, whatever key accepted it (a custom `bind`, vi mode).
//! The heuristic stays the fallback and keeps running: its reading of a line begun after a B
//! mark is held until the C mark, which replaces it when the two agree; if they differ (the
//! shell redrew the line before C) both are reported, so marks can never hide what the screen
//! showed at the line feed; if no C comes (a shell printing only A and B), the held reading is
//! reported at the next prompt or at the end. At every A, B or D mark, lines still waiting for
//! an echo are dropped (input read with echo off by the last command). Between C and the next
//! prompt the heuristic alone reads lines: a program's input, and the shells nested in the
//! command (`su -`, `bash`, a second `ssh`), which may print no marks of their own.
//!
//! # Security
//!
//! Command text always comes from the screen, never from the keystrokes: what is typed with
//! echo off (a `sudo` password) is not shown, so it is never reported, and the [`Debug`] output
//! shows no keystrokes. Keystrokes are only compared with the screen to place a typed-ahead
//! line, and what is reported then is the screen's text. The commands are an index for
//! reviewers, not the evidence: the session recording is the record, and a user who wants to
//! keep a command out of this index can (see below).
//!
//! # Known limits (each pinned by a test)
//!
//! - A line read by a program other than the shell is a command of its own: REPL input
//!   (`>>> 1+1` gives `1+1`), each line of a here-document (`cat <<EOF`, `hello` and `EOF` are
//!   three commands), the answer to a `read` prompt typed with echo on.
//! - Only a bracketed paste is read as one multi-line command. A multi-row line that is not
//!   one (a history entry kept with its newlines under `shopt -s lithist`) gives its first row.
//! - A typed-ahead line that was edited (Tab, arrows) is placed by the prompt alone: if the
//!   prompt changed before it was echoed (`cd /var` earlier in the same paste), it is lost.
//! - A typed-ahead line that the host never echoes (a password read with echo off, input
//!   flushed by Ctrl-C) is dropped, at the latest when a later line is read. So is a
//!   typed-ahead line whose echo comes only after the user started another line at a prompt.
//! - Lines are submitted only by Enter, Ctrl-J, Ctrl-M and Ctrl-O. A line accepted by another
//!   key (a custom `bind`, vi-mode mappings) is not reported, unless the shell prints OSC 133
//!   marks.
//! - Commands typed inside tmux or screen, or any program using the alternate screen, are not
//!   seen. Text written into the line by something else (a background job, zsh's right prompt)
//!   is part of the command, as it was on the screen.
//! - A line begun before the shell drew its prompt (typed ahead of a slow shell) has no
//!   prompt at its anchor: at the line feed, a prompt seen before is stripped, but a new one
//!   (just set with `PS1=`) stays in the command, after the terminal driver's echo of the keys
//!   typed before it (`echbg-test# echo hi`).
//! - A command taller than the screen keeps only the rows still on it when it is read.
//! - The end of an echo is recognised by a line feed only. bash, zsh, fish and dash all end
//!   the accepted line with one; a shell that moved down by cursor addressing instead would
//!   leave lines waiting until the next line feed.
//! - At most 256 submitted lines wait for their echo; beyond that the oldest is dropped.
//! - In a shell with OSC 133 marks, a line typed ahead while a command runs is listed twice:
//!   once as the terminal driver echoed it, once between the B and C marks when the shell
//!   reads it.
//! - A screen put to sleep ([`CommandTracker::sleep`], after a quiet spell) forgets a scroll
//!   region and a saved cursor; the text, cursor, wraps, input modes and an escape sequence
//!   or character the output stopped in the middle of come back (a sequence longer than 256
//!   bytes comes back cut). A screen on the alternate screen is never put to sleep.
//!
//! # Cost
//!
//! Memory: the emulated screen is 32 bytes a cell while awake (320 KiB at 200x50); the
//! recording puts a quiet one to sleep, as the escape codes that redraw it (a few KiB).
//!
//! With no line waiting for its echo, [`CommandTracker::output`] only runs the emulator: 10 MiB
//! of `cat` output take as long as in `vt100` alone. While a typed-ahead line waits, every line
//! feed also reads one logical line of text, about doubling the time per byte.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU16;

/// How many submitted lines may wait for their echo; beyond this the oldest is dropped.
const MAX_PENDING: usize = 256;

/// Longest UTF-8 encoding of one character: bounds the typed bytes one screen cell shows.
const MAX_CHAR_BYTES: usize = 4;

/// Most bytes of an escape sequence cut off at the end of the output that are kept for a
/// screen put to sleep (see [`Unfinished`]); a longer one comes back cut to this length.
const MAX_UNFINISHED: usize = 256;

/// Prompts shorter than this (trimmed, in characters) are matched only at the start of a line:
/// `$`, `#` or `>` occur in commands and output too often to be searched for.
const SHORT_PROMPT: usize = 3;

/// Labels readline shows in place of the prompt during an incremental history search.
const SEARCH_LABELS: [&str; 4] =
    ["(reverse-i-search)`", "(failed reverse-i-search)`", "(i-search)`", "(failed i-search)`"];

/// Follows one interactive session and reports the command lines the user submits.
///
/// Feed it every chunk in the order it crossed the gateway: [`output`](Self::output) for bytes
/// from the host, [`input`](Self::input) for bytes from the user, [`resize`](Self::resize) for
/// window changes, and [`finish`](Self::finish) at the end. Each call returns the commands it
/// completed, oldest first.
pub struct CommandTracker {
    /// The emulated screen; a 1x1 stand-in while [`asleep`](Self::asleep) holds the real one.
    parser: vt100::Parser<ScrollCounter>,
    /// The screen as text and escape codes while the session is quiet (see
    /// [`sleep`](Self::sleep)).
    asleep: Option<Asleep>,
    /// The escape sequence or character the output stopped in the middle of: the emulator
    /// holds it in its parser, which a screen put to sleep loses.
    unfinished: Unfinished,
    keys: KeyDecoder,
    moves: MoveScanner,
    /// The line being typed, from its first keystroke to Enter.
    current: Option<Line>,
    /// Submitted lines waiting for the host to end their echo, oldest first.
    pending: VecDeque<Line>,
    /// The prompt (trimmed) before the last command read through its anchor.
    prompt: Option<String>,
    /// The last non-blank prompt (trimmed) seen at an anchor, command or not.
    last_anchor_prompt: Option<String>,
    /// Whether the host moved the cursor down a line since the last line was submitted.
    fed_since_submit: bool,
    /// Finds OSC 133 shell-integration marks in the output.
    marks: MarkScanner,
    /// Where the shell's input starts, from a B mark (OSC 133) until the C mark that ends it.
    input_mark: Option<Anchor>,
    /// Commands the screen heuristic read from lines begun after a B mark: the C mark replaces
    /// them with the exact text; a shell that never prints C gets them at its next prompt.
    held: Vec<String>,
}

/// A screen put to sleep: its size and `vt100`'s `state_formatted`, which redraws it.
struct Asleep {
    rows: NonZeroU16,
    cols: NonZeroU16,
    state: Box<[u8]>,
}

impl fmt::Debug for CommandTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rows, cols) = match &self.asleep {
            Some(a) => (a.rows, a.cols),
            None => self.screen().size(),
        };
        // Never the keystrokes: they may hold a password typed with echo off.
        f.debug_struct("CommandTracker")
            .field("rows", &rows)
            .field("cols", &cols)
            .field("typing", &self.current.is_some())
            .field("pending", &self.pending.len())
            .field("prompt", &self.prompt)
            .field("asleep", &self.asleep.is_some())
            .finish_non_exhaustive()
    }
}

impl CommandTracker {
    /// A tracker for a terminal of `rows` by `cols` (a zero is taken as 1; the emulated
    /// screen is capped at [`MAX_ROWS`] by [`MAX_COLS`]).
    #[must_use]
    pub fn new(rows: u16, cols: u16) -> Self {
        Self {
            // No scrollback: rows that scroll away are counted, never kept, so scrolling costs
            // no allocation on the hot path.
            parser: vt100::Parser::new_with_callbacks(
                rows_of(rows),
                cols_of(cols),
                0,
                ScrollCounter::default(),
            ),
            asleep: None,
            unfinished: Unfinished::default(),
            keys: KeyDecoder::default(),
            moves: MoveScanner::default(),
            current: None,
            pending: VecDeque::new(),
            prompt: None,
            last_anchor_prompt: None,
            fed_since_submit: false,
            marks: MarkScanner::default(),
            input_mark: None,
            held: Vec::new(),
        }
    }

    /// The session went quiet: keep the screen as the escape codes that redraw it (a few
    /// KiB at most, usually far less) instead of its grid of cells (32 bytes each, 320 KiB
    /// for 200x50), until the next call. Nothing the tracker reads is lost: the text, the
    /// cursor, soft wraps, attributes and the input modes (bracketed paste) come back as
    /// they were, and so does the count of rows scrolled away that anchors use. So does an
    /// escape sequence or UTF-8 character the output stopped in the middle of (a quiet
    /// spell can fall between two packets anywhere): the emulator wakes inside it, and the
    /// rest of it is not drawn as text. A scroll region and a saved cursor do not come back
    /// (`vt100` keeps them private); so a screen on the alternate screen (a full-screen
    /// program) is kept awake.
    pub fn sleep(&mut self) {
        if !self.can_sleep() {
            return;
        }
        let (rows, cols) = self.screen().size();
        let state = self.screen().state_formatted().into_bytes().into_boxed_slice();
        let scrolled = self.scrolled();
        self.parser = vt100::Parser::new_with_callbacks(
            non_zero(1),
            non_zero(1),
            0,
            ScrollCounter { scrolled },
        );
        self.asleep = Some(Asleep { rows, cols, state });
    }

    /// Whether the screen is asleep (see [`sleep`](Self::sleep)).
    #[must_use]
    pub fn is_asleep(&self) -> bool {
        self.asleep.is_some()
    }

    /// Whether [`sleep`](Self::sleep) would put the screen to sleep now.
    #[must_use]
    pub fn can_sleep(&self) -> bool {
        self.asleep.is_none() && !self.screen().alternate_screen()
    }

    /// Redraws a sleeping screen into a fresh emulator of its size.
    fn wake(&mut self) {
        if let Some(a) = self.asleep.take() {
            let scrolled = self.scrolled();
            self.parser =
                vt100::Parser::new_with_callbacks(a.rows, a.cols, 0, ScrollCounter::default());
            self.parser.process(&a.state);
            // Back inside the sequence the output stopped in, as the old parser was.
            self.parser.process(self.unfinished.bytes());
            // Redrawing writes rows in place; it scrolls nothing.
            self.parser.callbacks_mut().scrolled = scrolled;
        }
    }

    /// The client's window changed to `rows` by `cols` (a zero is taken as 1).
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.wake();
        let alternate = self.screen().alternate_screen();
        let before = self.screen().cursor_position().0;
        let scrolled = self.scrolled();
        self.parser.set_size(rows_of(rows), cols_of(cols));
        if alternate {
            // The main screen's cursor is hidden behind the alternate one, so how far its rows
            // moved is unknown: drop the anchors and let the lines be placed by their prompt.
            self.parser.callbacks_mut().scrolled = scrolled;
            for line in self.current.iter_mut().chain(self.pending.iter_mut()) {
                line.anchor = None;
            }
        } else {
            // Rows pushed off the top (shrinking) or pulled back in (growing) moved the cursor
            // by as much as they moved every other row.
            let after = self.screen().cursor_position().0;
            self.parser.callbacks_mut().scrolled =
                scrolled.saturating_add(i64::from(before) - i64::from(after));
        }
    }

    /// Bytes the host wrote to the terminal. Returns the commands whose echo they completed.
    #[must_use]
    pub fn output(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut commands = Vec::new();
        if bytes.is_empty() {
            return commands;
        }
        self.wake();
        self.unfinished.feed(bytes);
        let mut rest = bytes;
        while let Some((end, mark)) = self.marks.next_mark(rest) {
            let (head, tail) = rest.split_at(end);
            self.feed(head, &mut commands);
            self.mark(mark, &mut commands);
            rest = tail;
        }
        self.feed(rest, &mut commands);
        commands
    }

    /// Hands output to the emulator, reading waiting lines at each line feed that may end one.
    fn feed(&mut self, bytes: &[u8], commands: &mut Vec<String>) {
        let mut rest = bytes;
        while !self.pending.is_empty() {
            let Some((start, end)) = self.moves.next_move(rest) else { break };
            let (head, tail) = rest.split_at(end);
            let (text, movement) = head.split_at(start);
            rest = tail;
            self.parser.process(text);
            let before = self.cursor_row();
            self.parser.process(movement);
            if self.cursor_row() > before {
                self.fed_since_submit = true;
                if let Some(end_row) = self.ended_row() {
                    self.line_ended(end_row, commands);
                }
            }
        }
        self.parser.process(rest);
    }

    /// The host printed an OSC 133 mark (its bytes are already on the screen).
    fn mark(&mut self, mark: Mark, commands: &mut Vec<String>) {
        match mark {
            Mark::CommandStart => {
                let Some(anchor) = self.input_mark.take() else { return };
                // The exact command: the screen from the input's start to the line the shell
                // just ended. The heuristic's reading of the same keystrokes is dropped when it
                // agrees; when it does not (the shell redrew the line before its C mark), both
                // are reported, so marks can never hide what the heuristic saw.
                let held = std::mem::take(&mut self.held);
                self.pending.retain(|line| !line.marked);
                if self.current.as_ref().is_some_and(|line| line.marked) {
                    self.current = None;
                }
                let exact = self.read_marked(&anchor);
                commands.extend(held.into_iter().filter(|seen| Some(seen) != exact.as_ref()));
                commands.extend(exact);
            }
            Mark::PromptStart | Mark::InputStart | Mark::CommandEnd => {
                // A new prompt: the shell read no command since the B mark (a shell that
                // prints no C mark: the heuristic's reading stands), and any line still
                // waiting for its echo was never echoed (a password read with echo off).
                commands.append(&mut self.held);
                self.input_mark = None;
                self.pending.clear();
                self.current = None;
                if mark == Mark::InputStart {
                    self.input_mark = Some(self.anchor_at_cursor());
                }
            }
        }
    }

    /// The command between a B mark at `anchor` and the C mark now: from the anchor to the end
    /// of the last line the shell ended (the cursor's row, if it ended none).
    fn read_marked(&self, anchor: &Anchor) -> Option<String> {
        let screen = self.screen();
        let (cursor_row, cursor_col) = screen.cursor_position();
        let (row, col) = match u16::try_from(anchor.row - self.scrolled()) {
            Ok(row) => (row, anchor.col),
            // Scrolled off the top: what is left of the command starts at the top row.
            Err(_) => (0, 0),
        };
        let end = if cursor_row > row && cursor_col == 0 { cursor_row - 1 } else { cursor_row };
        if end < row {
            return None;
        }
        non_empty(clean(&text_to_end(screen, row, col, end)))
    }

    /// Bytes the user typed. Returns commands only when a new line shows that earlier ones
    /// will never be echoed (see the limits in the module documentation).
    #[must_use]
    pub fn input(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut commands = Vec::new();
        if bytes.is_empty() {
            return commands;
        }
        self.wake();
        for &byte in bytes {
            let paste_enabled = self.screen().bracketed_paste();
            if let Some(key) = self.keys.feed(byte, paste_enabled) {
                self.key(key, &mut commands);
            }
        }
        commands
    }

    /// The session ended. Returns the submitted lines still waiting for their echo, read as
    /// the screen shows them now; a line typed but never submitted is not a command.
    #[must_use]
    pub fn finish(&mut self) -> Vec<String> {
        self.wake();
        self.current = None;
        let mut commands = std::mem::take(&mut self.held);
        let pending: Vec<Line> = self.pending.drain(..).collect();
        for line in pending.iter().filter(|line| line.settled) {
            let command = self.read_now(line);
            self.emit(line.marked, command, &mut commands);
        }
        commands
    }

    /// A command the heuristic read for a line: held if the line began after a B mark (see
    /// [`held`](Self::held)), reported otherwise.
    fn emit(&mut self, marked: bool, command: Option<String>, commands: &mut Vec<String>) {
        let Some(command) = command else { return };
        if marked && self.input_mark.is_some() {
            self.held.push(command);
        } else {
            commands.push(command);
        }
    }

    fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// Rows that scrolled off the top of the main screen so far: a screen row plus this is an
    /// absolute row.
    fn scrolled(&self) -> i64 {
        self.parser.callbacks().scrolled
    }

    /// The cursor's absolute row.
    fn cursor_row(&self) -> i64 {
        self.scrolled().saturating_add(i64::from(self.screen().cursor_position().0))
    }

    /// After the cursor moved down: the last row of the logical line it left, unless it only
    /// moved within a soft-wrapped line or on the alternate screen.
    fn ended_row(&self) -> Option<u16> {
        let screen = self.screen();
        if screen.alternate_screen() {
            return None;
        }
        let end = screen.cursor_position().0.checked_sub(1)?;
        (!screen.row_wrapped(end)).then_some(end)
    }

    /// The host ended the logical line whose last row is `end_row`: it may be the echo of the
    /// oldest waiting line.
    fn line_ended(&mut self, end_row: u16, commands: &mut Vec<String>) {
        let Some(head) = self.pending.front_mut() else { return };
        if head.settled {
            head.ends_seen += 1;
            if head.ends_seen <= head.extra_lines {
                return;
            }
            if let Some(line) = self.pending.pop_front() {
                let command = self.read_ended(&line, end_row);
                self.emit(line.marked, command, commands);
            }
            return;
        }
        // Typed ahead. If a waiting line's own anchor is in the ended line, the host has got
        // to that line: the lines before it were never echoed (flushed, or shown in a way no
        // rule below recognises).
        let start = logical_start(self.screen(), end_row);
        if let Some(at) =
            self.pending.iter().position(|line| self.anchor_within(line, start, end_row).is_some())
        {
            let line = self.pending.drain(..=at).next_back();
            if let Some(line) = line
                && let Some(row) = self.anchor_within(&line, start, end_row)
            {
                let command = self.read_anchored(&line, row);
                self.emit(line.marked, command, commands);
            }
            return;
        }
        let whole = logical_line(self.screen(), end_row);
        let mut at = 0;
        while let Some(line) = self.pending.get(at) {
            if let Some(command) = self.match_typed_ahead(line, &whole) {
                let marked = line.marked;
                self.pending.drain(..=at);
                self.emit(marked, command, commands);
                return;
            }
            // Only a blank line may have gone by unrecognised (its prompt changed, say).
            if line.typed.as_deref() != Some(&[]) {
                return;
            }
            at += 1;
        }
    }

    /// The screen row of a typed-ahead line's anchor, if it is trusted, shows a non-blank
    /// prompt and lies within the logical line from `start` to `end_row`.
    fn anchor_within(&self, line: &Line, start: u16, end_row: u16) -> Option<u16> {
        let anchor = line.anchor.as_ref().filter(|anchor| !anchor.prompt.is_empty())?;
        self.anchor_row(anchor).filter(|row| (start..=end_row).contains(row))
    }

    /// Reads a line through its trusted anchor on `row`, and learns its prompt.
    fn read_anchored(&mut self, line: &Line, row: u16) -> Option<String> {
        let anchor = line.anchor.as_ref()?;
        let text = read_block(self.screen(), row, anchor.col, line.extra_lines);
        // Input read with echo off and no newline after it (bash's `read -s`) leaves the
        // shell's next prompt, and the line typed there, on the same row.
        if let Some(after) = self.after_leading_prompt(&text) {
            return non_empty(after);
        }
        if !text.is_empty() && !anchor.prompt.is_empty() {
            self.prompt = Some(anchor.prompt.clone());
        }
        non_empty(text)
    }

    /// Reads an anchored line at the line feed that ended its echo (`end_row`).
    fn read_ended(&mut self, line: &Line, end_row: u16) -> Option<String> {
        let start = logical_start(self.screen(), end_row);
        if let Some(anchor) = &line.anchor
            && let Some(row) = self.anchor_row(anchor)
            && (line.extra_lines > 0 || (start..=end_row).contains(&row))
        {
            if anchor.prompt.is_empty() {
                // Started away from any prompt: typed ahead while a command ran and echoed by
                // the terminal driver, before the shell printed its prompt after it.
                let whole = logical_line(self.screen(), end_row);
                if let Some(after) = self.after_known_prompt(&whole, None) {
                    return non_empty(after);
                }
            }
            return self.read_anchored(line, row);
        }
        let whole = logical_line(self.screen(), end_row);
        self.fallback(&whole, line.anchor.as_ref().map_or("", |anchor| anchor.prompt.as_str()))
    }

    /// Reads an anchored line from its anchor as the screen shows it now, without waiting for
    /// its echo to end (session end, or a line the host will never end).
    fn read_now(&self, line: &Line) -> Option<String> {
        let anchor = line.anchor.as_ref()?;
        let row = self.anchor_row(anchor)?;
        non_empty(read_block(self.screen(), row, anchor.col, line.extra_lines))
    }

    /// The anchor's screen row, if it is on the screen and still shows its prompt before it.
    fn anchor_row(&self, anchor: &Anchor) -> Option<u16> {
        let screen = self.screen();
        let row = u16::try_from(anchor.row.checked_sub(self.scrolled())?).ok()?;
        if row >= screen.size().0.get() {
            return None;
        }
        (text_before(screen, row, anchor.col).trim_end() == anchor.prompt).then_some(row)
    }

    /// The command in an ended line whose anchor can't be trusted.
    fn fallback(&self, whole: &str, own_prompt: &str) -> Option<String> {
        if let Some(after) = self.after_known_prompt(whole, Some(own_prompt)) {
            return non_empty(after);
        }
        if let Some(after) = after_search_label(whole) {
            return non_empty(after);
        }
        let text = clean(whole);
        if self.known_prompts(Some(own_prompt)).contains(&text.as_str()) {
            return None;
        }
        non_empty(text)
    }

    /// Whether the ended line `whole` is the echo of the typed-ahead `line`: `Some(command)`
    /// if so (`Some(None)` for an empty one), `None` to keep waiting.
    fn match_typed_ahead(&self, line: &Line, whole: &str) -> Option<Option<String>> {
        if let Some(after) = self.after_known_prompt(whole, None) {
            return Some(non_empty(after));
        }
        let no_prompt = self.known_prompts(None).is_empty();
        match &line.typed {
            Some(typed) => {
                let typed = String::from_utf8_lossy(typed);
                let typed = typed.trim();
                if typed.is_empty() {
                    no_prompt.then_some(None)
                } else {
                    whole.trim_end().ends_with(typed).then(|| Some(typed.to_owned()))
                }
            }
            None => no_prompt.then(|| non_empty(clean(whole))),
        }
    }

    /// Known prompts, trimmed and non-blank, the most trusted first.
    fn known_prompts<'a>(&'a self, own: Option<&'a str>) -> Vec<&'a str> {
        let mut prompts: Vec<&str> = Vec::with_capacity(3);
        for prompt in
            [own, self.prompt.as_deref(), self.last_anchor_prompt.as_deref()].into_iter().flatten()
        {
            if !prompt.is_empty() && !prompts.contains(&prompt) {
                prompts.push(prompt);
            }
        }
        prompts
    }

    /// The text after a known prompt (not a short one) that `text` starts with, cleaned.
    fn after_leading_prompt(&self, text: &str) -> Option<String> {
        self.known_prompts(None)
            .into_iter()
            .filter(|prompt| prompt.chars().count() >= SHORT_PROMPT)
            .find_map(|prompt| text.strip_prefix(prompt).map(clean))
    }

    /// The text after the first known prompt in `whole`, cleaned.
    fn after_known_prompt(&self, whole: &str, own: Option<&str>) -> Option<String> {
        self.known_prompts(own).into_iter().find_map(|prompt| {
            let at = if prompt.chars().count() < SHORT_PROMPT {
                whole.starts_with(prompt).then_some(0)
            } else {
                whole.find(prompt)
            }?;
            whole.get(at + prompt.len()..).map(clean)
        })
    }

    fn key(&mut self, key: Key, commands: &mut Vec<String>) {
        if self.screen().alternate_screen() {
            // A full-screen program has the keyboard: nothing typed there is a command line.
            self.current = None;
            return;
        }
        match key {
            Key::Enter => self.submit(commands),
            Key::EnterAndNext => {
                self.submit(commands);
                // readline shows the next history entry as the new line, with no keystroke:
                // a line already begun, to be placed by its prompt.
                self.current = Some(Line {
                    anchor: None,
                    settled: false,
                    typed: None,
                    extra_lines: 0,
                    ends_seen: 0,
                    marked: self.input_mark.is_some(),
                });
            }
            Key::Interrupt => self.current = None,
            Key::Eof => {
                if self.current.as_ref().is_some_and(|line| self.is_blank(line)) {
                    self.current = None;
                }
            }
            Key::Text(byte) => {
                let cap = self.max_typed();
                let line = self.line(commands);
                if let Some(typed) = &mut line.typed {
                    if typed.len() < cap {
                        typed.push(byte);
                    } else {
                        // More than the screen can show: it can never match an ended line.
                        line.typed = None;
                    }
                }
            }
            Key::Edit => self.line(commands).typed = None,
            Key::PasteStart => {
                self.line(commands);
            }
            Key::PasteBreak => {
                let line = self.line(commands);
                line.extra_lines += 1;
                line.typed = None;
            }
        }
    }

    /// The most bytes of a typed line worth keeping: the screen shows at most `rows × cols`
    /// characters of at most [`MAX_CHAR_BYTES`] bytes each, so longer typed text can never be
    /// the end of an ended line.
    fn max_typed(&self) -> usize {
        let (rows, cols) = self.screen().size();
        usize::from(rows.get()) * usize::from(cols.get()) * MAX_CHAR_BYTES
    }

    /// The line being typed, started by this keystroke if there is none.
    fn line(&mut self, commands: &mut Vec<String>) -> &mut Line {
        let line = match self.current.take() {
            Some(line) => line,
            None => self.start_line(commands),
        };
        self.current.insert(line)
    }

    fn start_line(&mut self, commands: &mut Vec<String>) -> Line {
        self.expire_stale(commands);
        let settled = self.pending.is_empty();
        let anchor = self.anchor_at_cursor();
        if settled && !anchor.prompt.is_empty() {
            self.last_anchor_prompt = Some(anchor.prompt.clone());
        }
        Line {
            anchor: Some(anchor),
            settled,
            typed: Some(Vec::new()),
            extra_lines: 0,
            ends_seen: 0,
            marked: self.input_mark.is_some(),
        }
    }

    fn anchor_at_cursor(&self) -> Anchor {
        let screen = self.screen();
        let (row, col) = screen.cursor_position();
        let cols = screen.size().1.get();
        let absolute = self.scrolled().saturating_add(i64::from(row));
        if col >= cols {
            // The prompt filled its last row: the line starts on the next one.
            let prompt = text_before(screen, row, cols).trim_end().to_owned();
            Anchor { row: absolute.saturating_add(1), col: 0, prompt }
        } else {
            let prompt = text_before(screen, row, col).trim_end().to_owned();
            Anchor { row: absolute, col, prompt }
        }
    }

    fn submit(&mut self, commands: &mut Vec<String>) {
        let line = match self.current.take() {
            Some(line) => line,
            None => {
                // An empty Enter matters only as a typed-ahead line: it will show a prompt of
                // its own, which must not be taken for the next line's echo.
                self.expire_stale(commands);
                if self.pending.is_empty() {
                    return;
                }
                Line {
                    anchor: None,
                    settled: false,
                    typed: Some(Vec::new()),
                    extra_lines: 0,
                    ends_seen: 0,
                    marked: self.input_mark.is_some(),
                }
            }
        };
        self.fed_since_submit = false;
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(line);
    }

    /// Before a new line starts: if the host went on to a new line since the last Enter and the
    /// cursor now sits right after a known prompt, the host is waiting for input, so the lines
    /// still waiting will never be echoed. Typed-ahead ones are dropped, a settled one (none
    /// normally: the line feed has read it) is read as shown.
    fn expire_stale(&mut self, commands: &mut Vec<String>) {
        if self.pending.is_empty() || !self.fed_since_submit {
            return;
        }
        let screen = self.screen();
        let (row, col) = screen.cursor_position();
        let before = text_before(screen, row, col);
        let before = before.trim_end();
        let at_prompt = self
            .known_prompts(None)
            .into_iter()
            .chain(
                self.pending
                    .iter()
                    .filter(|line| line.settled)
                    .filter_map(|line| Some(line.anchor.as_ref()?.prompt.as_str())),
            )
            .filter(|prompt| !prompt.is_empty())
            .any(|prompt| {
                if prompt.chars().count() < SHORT_PROMPT {
                    before == prompt
                } else {
                    before.ends_with(prompt)
                }
            });
        if !at_prompt {
            return;
        }
        let stale: Vec<Line> = self.pending.drain(..).collect();
        for line in stale.iter().filter(|line| line.settled) {
            let command = self.read_now(line);
            self.emit(line.marked, command, commands);
        }
    }

    /// Whether the line being typed shows nothing (for Ctrl-D, which ends input only then).
    fn is_blank(&self, line: &Line) -> bool {
        match &line.typed {
            Some(typed) => typed.is_empty(),
            None => line.anchor.as_ref().is_some_and(|anchor| {
                self.anchor_row(anchor).is_some_and(|row| {
                    read_block(self.screen(), row, anchor.col, line.extra_lines).is_empty()
                })
            }),
        }
    }
}

/// A command line from its first keystroke until it is read.
struct Line {
    /// Where the cursor was at the line's first keystroke.
    anchor: Option<Anchor>,
    /// Whether no earlier line was waiting for its echo then, so that the screen showed where
    /// this line starts. Otherwise the anchor is only a guess, used once the screen proves it.
    settled: bool,
    /// The bytes typed, while they were all plain characters and no more than the screen can
    /// show ([`CommandTracker::max_typed`]): only ever compared with the screen, never reported.
    typed: Option<Vec<u8>>,
    /// Line breaks inserted by a bracketed paste.
    extra_lines: usize,
    /// Line feeds that ended a logical line since the line was submitted.
    ends_seen: usize,
    /// Begun at a shell's input after a B mark (OSC 133): the C mark has the last word.
    marked: bool,
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Line")
            .field("anchor", &self.anchor)
            .field("settled", &self.settled)
            .field("extra_lines", &self.extra_lines)
            .field("ends_seen", &self.ends_seen)
            .field("marked", &self.marked)
            .finish_non_exhaustive()
    }
}

/// Where a line starts: the cursor when its first key was pressed.
#[derive(Debug, Clone)]
struct Anchor {
    /// Absolute row: screen row plus the rows scrolled off before.
    row: i64,
    col: u16,
    /// The text before the anchor on its logical line, trimmed at the end.
    prompt: String,
}

/// Counts the rows that scroll off the top of the main screen.
#[derive(Debug, Default)]
struct ScrollCounter {
    scrolled: i64,
}

impl vt100::Callbacks for ScrollCounter {
    fn on_scroll(&mut self, _row: vt100::capture::RowContents<'_>, alternate_screen: bool) {
        // With no scrollback, vt100 calls this for every row leaving the top of the screen.
        if !alternate_screen {
            self.scrolled = self.scrolled.saturating_add(1);
        }
    }
}

/// The escape sequence or UTF-8 character that the output so far ends in the middle of, as
/// the bytes that put a fresh emulator back into the same state. `vt100`'s parser keeps this
/// state privately and `state_formatted` cannot redraw it, so a screen put to sleep between
/// two packets that split a sequence (`ESC [ 1` | `3 C`) would wake in the ground state and
/// draw the rest as text (`3C` over the prompt). This follows `vte`'s state machine just far
/// enough to know where the last sequence ends, and costs one backward search for ESC per
/// chunk: any sequence before the last ESC is over.
#[derive(Debug, Default)]
struct Unfinished {
    state: Seq,
    /// The sequence from its ESC, or the character's bytes so far; at most
    /// [`MAX_UNFINISHED`]. Control characters executed inside a sequence are left out: the
    /// emulator has already run them.
    bytes: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Seq {
    #[default]
    Ground,
    /// Part of a multi-byte UTF-8 character.
    Char,
    /// After ESC.
    Escape,
    /// After ESC and intermediate bytes (`ESC (`).
    EscapeIntermediate,
    /// After `ESC [`.
    Csi,
    /// Inside an OSC string (`ESC ]`), ended by BEL or ST.
    Osc,
    /// After `ESC P`, before the final byte that starts the DCS string's data.
    Dcs,
    /// In a DCS string's data, ended by ST (C1 or `ESC \`).
    DcsData,
    /// Inside an SOS, PM or APC string, ended by ST.
    Str,
}

impl Unfinished {
    const ESC: u8 = 0x1b;

    /// The bytes that put a fresh emulator where the output left the current one.
    fn bytes(&self) -> &[u8] {
        if self.state == Seq::Ground { &[] } else { &self.bytes }
    }

    /// Follows output bytes the emulator was (or is about to be) given.
    fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        if let Some(at) = bytes.iter().rposition(|&b| b == Self::ESC) {
            self.begin(Seq::Escape, Self::ESC);
            rest = &bytes[at + 1..];
        }
        while self.state != Seq::Ground {
            let Some((&byte, tail)) = rest.split_first() else { return };
            if !self.step(byte) {
                break;
            }
            rest = tail;
        }
        // Plain text to the end (it holds no ESC): only a character cut at its end is left.
        if let Some(cut) = cut_char(rest) {
            self.begin(Seq::Char, cut[0]);
            self.bytes.extend_from_slice(&cut[1..]);
        }
    }

    fn begin(&mut self, state: Seq, first: u8) {
        self.state = state;
        self.bytes.clear();
        self.bytes.push(first);
    }

    fn keep(&mut self, byte: u8) {
        if self.bytes.len() < MAX_UNFINISHED {
            self.bytes.push(byte);
        }
    }

    fn then(&mut self, state: Seq, byte: u8) {
        self.state = state;
        self.keep(byte);
    }

    /// One byte after the start of a sequence or character, never ESC (`feed` starts from
    /// the last one). `false` if the byte is not part of it: it is plain text.
    fn step(&mut self, byte: u8) -> bool {
        match (self.state, byte) {
            (Seq::Ground, _) => return false,
            (Seq::Char, _) => {
                if byte & 0xc0 != 0x80 {
                    // Cut short: vte prints a replacement character and takes the byte afresh.
                    self.state = Seq::Ground;
                    return false;
                }
                self.keep(byte);
                if !matches!(std::str::from_utf8(&self.bytes), Err(e) if e.error_len().is_none()) {
                    self.state = Seq::Ground;
                }
            }
            // CAN and SUB cancel any sequence; BEL ends an OSC string, C1 ST a DCS one.
            (_, 0x18 | 0x1a) | (Seq::Osc, 0x07) | (Seq::DcsData, 0x9c) => self.state = Seq::Ground,
            (Seq::Osc, 0x20..) => self.keep(byte),
            // The emulator draws no string's data: the introducer and parameters are enough.
            (Seq::Osc | Seq::DcsData | Seq::Str, _) => {}
            // Other controls were executed in passing; DEL and high bytes are ignored.
            (_, 0x00..=0x1f | 0x7f..) => {}
            (Seq::Escape, b'[') => self.then(Seq::Csi, byte),
            (Seq::Escape, b']') => self.then(Seq::Osc, byte),
            (Seq::Escape, b'P') => self.then(Seq::Dcs, byte),
            (Seq::Escape, b'X' | b'^' | b'_') => self.then(Seq::Str, byte),
            (Seq::Escape | Seq::EscapeIntermediate, 0x20..=0x2f) => {
                self.then(Seq::EscapeIntermediate, byte);
            }
            (Seq::Csi | Seq::Dcs, 0x20..=0x3f) => self.keep(byte),
            (Seq::Dcs, _) => self.then(Seq::DcsData, byte),
            // A final byte: the sequence is over.
            (Seq::Escape | Seq::EscapeIntermediate | Seq::Csi, _) => self.state = Seq::Ground,
        }
        true
    }
}

/// A UTF-8 character cut off at the end of `text`: its bytes so far.
fn cut_char(text: &[u8]) -> Option<&[u8]> {
    let from = text.len().saturating_sub(MAX_CHAR_BYTES - 1);
    let start = (from..text.len()).rev().find(|&at| text[at] & 0xc0 != 0x80)?;
    let tail = &text[start..];
    matches!(std::str::from_utf8(tail), Err(e) if e.error_len().is_none()).then_some(tail)
}

/// Finds, in output, where the cursor may move down: a line feed, or a CSI sequence that moves
/// it down or to an absolute position (zsh leaves a line with `CSI B` when the row below
/// exists). Runs only while a line waits for its echo, so its state may be stale when a new
/// wait begins: at worst one such place is missed.
#[derive(Debug, Default)]
struct MoveScanner {
    state: MoveState,
}

#[derive(Debug, Default, Clone, Copy)]
enum MoveState {
    #[default]
    Ground,
    Escape,
    Csi,
}

impl MoveScanner {
    /// The next place in `bytes` where the cursor may move down, as the range of the line feed
    /// or sequence (a sequence begun in an earlier chunk starts at 0).
    fn next_move(&mut self, bytes: &[u8]) -> Option<(usize, usize)> {
        let mut start = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            match (self.state, byte) {
                // A line feed moves the cursor even inside an escape sequence.
                (_, b'\n' | 0x0b | 0x0c) => return Some((at, at + 1)),
                (_, 0x1b) => {
                    self.state = MoveState::Escape;
                    start = at;
                }
                // CAN and SUB cancel a sequence.
                (_, 0x18 | 0x1a) => self.state = MoveState::Ground,
                (MoveState::Escape, b'[') => self.state = MoveState::Csi,
                (MoveState::Escape, _) => self.state = MoveState::Ground,
                (MoveState::Csi, 0x40..=0x7e) => {
                    self.state = MoveState::Ground;
                    if matches!(byte, b'B' | b'E' | b'H' | b'f' | b'd') {
                        return Some((start, at + 1));
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// The OSC 133 shell-integration marks (`ESC ] 133 ; X …` ended by BEL or ST) the tracker
/// uses; the others (`E`, `P`, …) and any parameters are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// `A`: the prompt starts.
    PromptStart,
    /// `B`: the prompt ends, the user's input starts.
    InputStart,
    /// `C`: the input was accepted, the command starts.
    CommandStart,
    /// `D`: the command ended.
    CommandEnd,
}

/// Finds OSC 133 marks in output, across chunk boundaries.
#[derive(Debug, Default)]
struct MarkScanner {
    state: MarkState,
}

#[derive(Debug, Default, Clone, Copy)]
enum MarkState {
    #[default]
    Ground,
    Escape,
    /// Inside `ESC ]`, with how many bytes of `133;` matched so far.
    Osc(usize),
    /// After `ESC ] 133;`: the mark's letter is next.
    Letter,
    /// In the mark's parameters, until BEL or ST; `None` for a letter the tracker ignores.
    Params(Option<Mark>),
    ParamsEscape(Option<Mark>),
}

impl MarkScanner {
    /// The next mark in `bytes`: the index just past its terminator, and the mark.
    fn next_mark(&mut self, bytes: &[u8]) -> Option<(usize, Mark)> {
        const PREFIX: &[u8] = b"133;";
        for (at, &byte) in bytes.iter().enumerate() {
            self.state = match (self.state, byte) {
                // CAN and SUB cancel a sequence; ESC starts a new one (or is ST's first byte).
                (_, 0x18 | 0x1a) => MarkState::Ground,
                (MarkState::Params(mark), 0x1b) => MarkState::ParamsEscape(mark),
                (MarkState::ParamsEscape(mark), b'\\') | (MarkState::Params(mark), 0x07) => {
                    self.state = MarkState::Ground;
                    match mark {
                        Some(mark) => return Some((at + 1, mark)),
                        None => continue,
                    }
                }
                (_, 0x1b) => MarkState::Escape,
                // An ESC that was not ST's first byte starts a sequence of its own.
                (MarkState::Escape | MarkState::ParamsEscape(_), b']') => MarkState::Osc(0),
                (MarkState::Osc(n), _) if PREFIX.get(n) == Some(&byte) => {
                    if n + 1 == PREFIX.len() {
                        MarkState::Letter
                    } else {
                        MarkState::Osc(n + 1)
                    }
                }
                (MarkState::Letter, _) => MarkState::Params(match byte {
                    b'A' => Some(Mark::PromptStart),
                    b'B' => Some(Mark::InputStart),
                    b'C' => Some(Mark::CommandStart),
                    b'D' => Some(Mark::CommandEnd),
                    _ => None,
                }),
                // A BEL ends the string however far it got.
                (MarkState::Params(mark), _) if byte >= 0x20 => MarkState::Params(mark),
                _ => MarkState::Ground,
            };
        }
        None
    }
}

/// What a keystroke means for the line being typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// A plain character (one byte of it).
    Text(u8),
    /// Anything that edits, moves or recalls: arrows, Tab, Backspace, Ctrl-R, Alt-x.
    Edit,
    /// Enter or Ctrl-J: the line is submitted.
    Enter,
    /// Ctrl-O: the line is submitted and the next history entry shown as the new line.
    EnterAndNext,
    /// Ctrl-C: the line is abandoned.
    Interrupt,
    /// Ctrl-D: end of input on an empty line, delete otherwise.
    Eof,
    /// The start of a bracketed paste.
    PasteStart,
    /// A newline inside a bracketed paste: inserted into the line, not submitted.
    PasteBreak,
}

/// Splits the user's byte stream into keys, across chunk boundaries.
#[derive(Debug, Default)]
struct KeyDecoder {
    state: KeyState,
}

#[derive(Debug, Default, Clone, Copy)]
enum KeyState {
    #[default]
    Ground,
    Escape,
    /// Inside `ESC [`, with the numeric parameter while it is a single number.
    Csi(Option<u32>),
    /// After `ESC O` (cursor keys in application mode, F1-F4).
    Ss3,
    /// Inside an OSC, DCS, APC or PM string (a terminal's answer to a query), until ST or BEL.
    Str,
    StrEscape,
    Paste,
    PasteEscape,
    PasteCsi(Option<u32>),
}

impl KeyDecoder {
    /// Feeds one byte; `paste_enabled` is whether the host asked for bracketed paste.
    fn feed(&mut self, byte: u8, paste_enabled: bool) -> Option<Key> {
        match self.state {
            KeyState::Ground => self.ground(byte),
            KeyState::Escape => match byte {
                b'[' => self.then(KeyState::Csi(Some(0)), None),
                b'O' => self.then(KeyState::Ss3, None),
                b']' | b'P' | b'_' | b'^' => self.then(KeyState::Str, None),
                // Alt-Escape: stay ready for what follows.
                0x1b => Some(Key::Edit),
                // Alt-x.
                _ => self.then(KeyState::Ground, Some(Key::Edit)),
            },
            KeyState::Csi(param) => match byte {
                b'0'..=b'9' => self.then(KeyState::Csi(push_digit(param, byte)), None),
                0x20..=0x3f => self.then(KeyState::Csi(None), None),
                0x40..=0x7e => {
                    self.state = KeyState::Ground;
                    match (byte, param) {
                        (b'~', Some(200)) if paste_enabled => {
                            self.then(KeyState::Paste, Some(Key::PasteStart))
                        }
                        // Focus in and out reports: no key was pressed.
                        (b'I' | b'O', Some(0)) => None,
                        _ => Some(Key::Edit),
                    }
                }
                // A broken sequence: take the byte as a key of its own.
                _ => {
                    self.state = KeyState::Ground;
                    self.ground(byte)
                }
            },
            KeyState::Ss3 => {
                self.state = KeyState::Ground;
                if (0x20..=0x7e).contains(&byte) { Some(Key::Edit) } else { self.ground(byte) }
            }
            KeyState::Str => match byte {
                0x07 => self.then(KeyState::Ground, None),
                0x1b => self.then(KeyState::StrEscape, None),
                _ => None,
            },
            KeyState::StrEscape => {
                let next = if byte == b'\\' { KeyState::Ground } else { KeyState::Str };
                self.then(next, None)
            }
            KeyState::Paste => match byte {
                0x1b => self.then(KeyState::PasteEscape, None),
                b'\r' | b'\n' => Some(Key::PasteBreak),
                0x00..=0x1f | 0x7f => Some(Key::Edit),
                _ => Some(Key::Text(byte)),
            },
            KeyState::PasteEscape => {
                let next = if byte == b'[' { KeyState::PasteCsi(Some(0)) } else { KeyState::Paste };
                self.then(next, None)
            }
            KeyState::PasteCsi(param) => match byte {
                b'0'..=b'9' => self.then(KeyState::PasteCsi(push_digit(param, byte)), None),
                0x20..=0x3f => self.then(KeyState::PasteCsi(None), None),
                b'~' if param == Some(201) => self.then(KeyState::Ground, None),
                _ => self.then(KeyState::Paste, None),
            },
        }
    }

    fn ground(&mut self, byte: u8) -> Option<Key> {
        match byte {
            0x1b => self.then(KeyState::Escape, None),
            b'\r' | b'\n' => Some(Key::Enter),
            0x0f => Some(Key::EnterAndNext),
            0x03 => Some(Key::Interrupt),
            0x04 => Some(Key::Eof),
            0x00..=0x1f | 0x7f => Some(Key::Edit),
            _ => Some(Key::Text(byte)),
        }
    }

    fn then(&mut self, state: KeyState, key: Option<Key>) -> Option<Key> {
        self.state = state;
        key
    }
}

fn push_digit(param: Option<u32>, digit: u8) -> Option<u32> {
    param?.checked_mul(10)?.checked_add(u32::from(digit - b'0'))
}

fn non_zero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

/// The emulated screen is at most this many rows, whatever the client asks for: the grid
/// costs memory per cell, and a client may ask for 10000x10000. A taller terminal only moves
/// where lines are read from; every byte is still recorded.
pub const MAX_ROWS: u16 = 200;
/// The emulated screen is at most this many columns (see [`MAX_ROWS`]).
pub const MAX_COLS: u16 = 500;

fn rows_of(n: u16) -> NonZeroU16 {
    non_zero(n.min(MAX_ROWS))
}

fn cols_of(n: u16) -> NonZeroU16 {
    non_zero(n.min(MAX_COLS))
}

/// The first row of the logical line that `row` belongs to.
fn logical_start(screen: &vt100::Screen, row: u16) -> u16 {
    let mut start = row;
    while start > 0 && screen.row_wrapped(start - 1) {
        start -= 1;
    }
    start
}

/// The last row of the logical line that `row` belongs to.
fn logical_end(screen: &vt100::Screen, row: u16) -> u16 {
    let rows = screen.size().0.get();
    let mut end = row;
    while end + 1 < rows && screen.row_wrapped(end) {
        end += 1;
    }
    end
}

/// The text from (`row`, `col`) to the end of `end_row`, with a `\n` where a row does not wrap
/// into the next. `col` may be past the last column.
fn text_to_end(screen: &vt100::Screen, row: u16, col: u16, end_row: u16) -> String {
    let cols = screen.size().1.get();
    screen.contents_between(row, col.min(cols), end_row, cols)
}

/// The text of the logical line that `row` belongs to, from its start up to (`row`, `col`).
fn text_before(screen: &vt100::Screen, row: u16, col: u16) -> String {
    let cols = screen.size().1.get();
    screen.contents_between(logical_start(screen, row), 0, row, col.min(cols))
}

/// The whole logical line that ends on `end_row`.
fn logical_line(screen: &vt100::Screen, end_row: u16) -> String {
    text_to_end(screen, logical_start(screen, end_row), 0, end_row)
}

/// The command from (`row`, `col`) to the end of its logical line and of `extra_lines` more
/// logical lines, cleaned.
fn read_block(screen: &vt100::Screen, row: u16, col: u16, extra_lines: usize) -> String {
    let rows = screen.size().0.get();
    let mut end = logical_end(screen, row);
    for _ in 0..extra_lines {
        if end + 1 >= rows {
            break;
        }
        end = logical_end(screen, end + 1);
    }
    clean(&text_to_end(screen, row, col, end))
}

/// The text after readline's incremental search label, if `whole` shows one.
fn after_search_label(whole: &str) -> Option<String> {
    let shown = whole.trim_start();
    let rest = SEARCH_LABELS.iter().find_map(|label| shown.strip_prefix(label))?;
    let (_pattern, command) = rest.split_once("': ")?;
    Some(clean(command))
}

/// Trailing blanks off every line, blank lines dropped, blanks trimmed at both ends.
fn clean(text: &str) -> String {
    let lines: Vec<&str> =
        text.lines().map(str::trim_end).filter(|line| !line.trim().is_empty()).collect();
    lines.join("\n").trim().to_owned()
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// The longest line [`StdinLines`] keeps, in characters (longer ones end in `…`).
pub const MAX_STDIN_LINE: usize = 1024;

/// Lines written to a shell's standard input with no terminal (`ssh gw bash < script.sh`,
/// `ssh gw sh -s`): each non-empty line is a command the shell will read. Data the script's
/// own commands read from stdin is listed too: this is an index of the input, not a parse.
/// Blanks before a line's text are not kept, so padding cannot fill the kept part and leave
/// the command out; a line cut short always shows, ending in `…`.
#[derive(Debug, Default)]
pub struct StdinLines {
    line: Vec<u8>,
    /// The current line passed [`MAX_STDIN_LINE`]: the rest of it is dropped.
    cut: bool,
}

impl StdinLines {
    /// Feeds bytes the user sent; returns the lines they completed.
    pub fn input(&mut self, data: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &b in data {
            if b == b'\n' {
                done.extend(self.take());
            } else if self.line.is_empty() && b.is_ascii_whitespace() {
                // Leading blanks: dropped, never counted against the kept length.
            } else if self.line.len() < MAX_STDIN_LINE * MAX_CHAR_BYTES {
                self.line.push(b);
            } else {
                self.cut = true;
            }
        }
        done
    }

    /// The last line, if the input ended without a newline.
    pub fn finish(&mut self) -> Vec<String> {
        self.take().into_iter().collect()
    }

    fn take(&mut self) -> Option<String> {
        let raw = std::mem::take(&mut self.line);
        let cut = std::mem::take(&mut self.cut);
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim_end_matches('\r').trim();
        if text.is_empty() && !cut {
            return None;
        }
        let mut line: String = text.chars().take(MAX_STDIN_LINE).collect();
        if cut || text.chars().count() > MAX_STDIN_LINE {
            line.push('…');
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Padding before a line fed on stdin cannot push its command out of the kept part, and a
    /// line cut short is listed (ending in `…`) whatever it holds.
    #[test]
    fn a_padded_or_overlong_stdin_line_still_shows() {
        let mut lines = StdinLines::default();
        let padded = format!("{}rm -rf /tmp/x\n", " \t".repeat(5000));
        assert_eq!(lines.input(padded.as_bytes()), ["rm -rf /tmp/x"]);
        // Blanks that are not ASCII (U+0085, two bytes) fill the kept part exactly: the line
        // still shows, as cut.
        let wide = format!("{}rm -rf /tmp/x\n", "\u{85}".repeat(5000));
        let got = lines.input(wide.as_bytes());
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].ends_with('…'), "{got:?}");
        // Blank lines are still not commands.
        assert!(lines.input(b"   \n\n\t\r\n").is_empty());
    }

    #[test]
    fn a_huge_terminal_is_emulated_at_a_bounded_size() {
        // 10000x10000 would be a 100-million-cell grid (gigabytes): the screen is capped.
        let size = |t: &CommandTracker| {
            let (rows, cols) = t.screen().size();
            (rows.get(), cols.get())
        };
        let mut tracker = CommandTracker::new(10_000, 10_000);
        assert_eq!(size(&tracker), (MAX_ROWS, MAX_COLS));
        tracker.resize(u16::MAX, u16::MAX);
        assert_eq!(size(&tracker), (MAX_ROWS, MAX_COLS));
        tracker.resize(30, 100);
        assert_eq!(size(&tracker), (30, 100));
        // It still reads commands.
        let _ = tracker.output(b"\x1b[?2004hroot@db-1:~# ");
        let mut found = Vec::new();
        for b in b"echo hi\r" {
            found.extend(tracker.input(&[*b]));
            found.extend(tracker.output(if *b == b'\r' {
                b"\r\n"
            } else {
                std::slice::from_ref(b)
            }));
        }
        found.extend(tracker.output(b"hi\r\n\x1b[?2004hroot@db-1:~# "));
        assert_eq!(found, ["echo hi"]);
    }

    #[test]
    fn a_quiet_screen_sleeps_small_and_wakes_as_it_was() {
        let mut tracker = CommandTracker::new(MAX_ROWS, MAX_COLS);
        let _ = tracker.output(b"\x1b[?2004hroot@db-1:~# ");
        let _ = tracker.input(b"e");
        let _ = tracker.output(b"e");
        let before = tracker.screen().contents();
        let cursor = tracker.screen().cursor_position();
        tracker.sleep();
        assert!(tracker.is_asleep());
        // What it keeps is the drawn text, not a 500x200 grid of 32-byte cells (3.2 MB).
        let kept = tracker.asleep.as_ref().map_or(0, |a| a.state.len());
        assert!(kept < 4096, "{kept} bytes kept");
        assert_eq!(tracker.screen().size(), (non_zero(1), non_zero(1)));
        let mut found = tracker.input(b"cho hi");
        found.extend(tracker.output(b"cho hi"));
        assert!(!tracker.is_asleep(), "woken by the keystrokes");
        found.extend(tracker.input(b"\r"));
        found.extend(tracker.output(b"\r\nhi\r\n"));
        assert_eq!(found, ["echo hi"]);
        assert_eq!(tracker.screen().size(), (rows_of(MAX_ROWS), cols_of(MAX_COLS)));
        assert!(before.starts_with("root@db-1:~# e") && cursor == (0, 14));
        // A full-screen program keeps its screen awake (the main screen behind it would be
        // lost).
        let _ = tracker.output(b"\x1b[?1049h");
        tracker.sleep();
        assert!(!tracker.is_asleep());
    }

    /// A quiet spell can fall between any two packets, even inside an escape sequence or a
    /// UTF-8 character: the screen put to sleep there wakes inside it, with nothing of it
    /// drawn as text and no control character inside it run twice.
    #[test]
    fn a_screen_asleep_mid_sequence_wakes_inside_it() {
        let cuts: [(&str, &[u8], &[u8]); 8] = [
            ("a cursor move (readline's redraw)", b"ls -la\r\x1b[1", b"3Cls -la\x1b[K"),
            ("a line feed inside a cursor move", b"\x1b[1\n", b"3Cx"),
            ("a colour", b"\x1b[01;3", b"2mgreen\x1b[0m"),
            ("a title", b"\x1b]0;root@db", b"-1: ~\x07echo"),
            ("a title ended by ST", b"\x1b]0;root@db-1\x1b", b"\\echo"),
            ("a charset", b"\x1b(", b"Becho"),
            ("a DCS string", b"\x1bP1$r0", b"m\x1b\\echo"),
            // `é` is C3 A9 and `✓` E2 9C 93.
            ("a UTF-8 character", b"echo caf\xc3", b"\xa9 \xe2\x9c\x93"),
        ];
        for (what, head, tail) in cuts {
            let mut awake = CommandTracker::new(24, 80);
            let mut asleep = CommandTracker::new(24, 80);
            for t in [&mut awake, &mut asleep] {
                let _ = t.output(PROMPT.as_bytes());
                let _ = t.output(head);
            }
            asleep.sleep();
            assert!(asleep.is_asleep(), "{what}");
            for t in [&mut awake, &mut asleep] {
                let _ = t.output(tail);
            }
            // The text with its attributes, and where the cursor is.
            let shown = |t: &CommandTracker| t.screen().contents_formatted();
            assert_eq!(shown(&asleep), shown(&awake), "{what}");
            assert_eq!(
                asleep.screen().cursor_position(),
                awake.screen().cursor_position(),
                "{what}"
            );
        }
    }

    /// bash's prompt, with the bracketed-paste switch it writes before each prompt.
    const PROMPT: &str = "\x1b[?2004hroot@db-1:~# ";
    /// What bash writes when a line is accepted: newline, bracketed paste off.
    const ACCEPT: &str = "\r\n\x1b[?2004l\r";

    /// One step of a scripted session.
    #[derive(Debug, Clone, Copy)]
    enum Step<'a> {
        /// Bytes from the host.
        Out(&'a str),
        /// Keystrokes, with no echo.
        Keys(&'a str),
        /// Plain characters typed one at a time, each echoed by the host as readline does.
        Type(&'a str),
        /// The client's window changed.
        Resize(u16, u16),
    }
    use Step::{Keys, Out, Resize, Type};

    #[derive(Debug, Clone)]
    enum Event {
        Out(Vec<u8>),
        In(Vec<u8>),
        Resize(u16, u16),
    }

    fn events(steps: &[Step<'_>]) -> Vec<Event> {
        let mut events = Vec::new();
        for step in steps {
            match *step {
                Out(bytes) => events.push(Event::Out(bytes.as_bytes().to_vec())),
                Keys(bytes) => events.push(Event::In(bytes.as_bytes().to_vec())),
                Type(text) => {
                    for ch in text.chars() {
                        let ch = ch.to_string().into_bytes();
                        events.push(Event::In(ch.clone()));
                        events.push(Event::Out(ch));
                    }
                }
                Resize(rows, cols) => events.push(Event::Resize(rows, cols)),
            }
        }
        events
    }

    /// Feeds the events to a fresh tracker and returns every command, `finish` included.
    fn feed(rows: u16, cols: u16, events: &[Event]) -> Vec<String> {
        let mut tracker = CommandTracker::new(rows, cols);
        let mut commands = Vec::new();
        for event in events {
            match event {
                Event::Out(bytes) => commands.extend(tracker.output(bytes)),
                Event::In(bytes) => commands.extend(tracker.input(bytes)),
                Event::Resize(rows, cols) => tracker.resize(*rows, *cols),
            }
        }
        commands.extend(tracker.finish());
        commands
    }

    /// Consecutive output chunks joined into one, as a slower reader would get them.
    fn merged(events: &[Event]) -> Vec<Event> {
        let mut merged: Vec<Event> = Vec::new();
        for event in events {
            match (merged.last_mut(), event) {
                (Some(Event::Out(last)), Event::Out(bytes)) => last.extend_from_slice(bytes),
                _ => merged.push(event.clone()),
            }
        }
        merged
    }

    /// Every chunk split into single bytes.
    fn bytewise(events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .flat_map(|event| match event {
                Event::Out(bytes) => bytes.iter().map(|b| Event::Out(vec![*b])).collect(),
                Event::In(bytes) => bytes.iter().map(|b| Event::In(vec![*b])).collect(),
                Event::Resize(..) => vec![event.clone()],
            })
            .collect()
    }

    /// Like [`feed`], with the screen put to sleep after every event, as a quiet session's is.
    fn feed_sleeping(rows: u16, cols: u16, events: &[Event]) -> Vec<String> {
        let mut tracker = CommandTracker::new(rows, cols);
        let mut commands = Vec::new();
        for event in events {
            match event {
                Event::Out(bytes) => commands.extend(tracker.output(bytes)),
                Event::In(bytes) => commands.extend(tracker.input(bytes)),
                Event::Resize(rows, cols) => tracker.resize(*rows, *cols),
            }
            tracker.sleep();
        }
        commands.extend(tracker.finish());
        commands
    }

    /// Runs the events as given, with output merged, byte by byte, and with the screen put
    /// to sleep after every event and after every byte (so at every point a quiet spell can
    /// fall, even inside an escape sequence or a UTF-8 character): all five must agree.
    #[track_caller]
    fn run_events(rows: u16, cols: u16, events: &[Event]) -> Vec<String> {
        let commands = feed(rows, cols, events);
        assert_eq!(feed_sleeping(rows, cols, events), commands, "asleep after every event");
        assert_eq!(
            feed_sleeping(rows, cols, &bytewise(events)),
            commands,
            "asleep after every byte"
        );
        assert_eq!(feed(rows, cols, &merged(events)), commands, "output merged into one chunk");
        assert_eq!(feed(rows, cols, &bytewise(events)), commands, "fed byte by byte");
        commands
    }

    #[track_caller]
    fn check(rows: u16, cols: u16, steps: &[Step<'_>], expected: &[&str]) {
        assert_eq!(run_events(rows, cols, &events(steps)), expected);
    }

    #[test]
    fn plain_command_without_its_prompt() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("ls -la"),
                Keys("\r"),
                Out(ACCEPT),
                Out("total 0\r\n"),
                Out(PROMPT),
            ],
            &["ls -la"],
        );
    }

    #[test]
    fn colored_prompt_is_stripped() {
        let prompt = "\x1b[?2004h\x1b[01;32mroot@db-1\x1b[00m:\x1b[01;34m~\x1b[00m# ";
        check(24, 80, &[Out(prompt), Type("uptime"), Keys("\r"), Out(ACCEPT)], &["uptime"]);
    }

    #[test]
    fn tab_completion_is_read_as_completed() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("sys"),
                Keys("\t"),
                Out("temctl "),
                Type("status"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\u{25cf} db-1\r\n    State: running\r\n"),
                Out(PROMPT),
            ],
            &["systemctl status"],
        );
    }

    #[test]
    fn completion_listing_redraws_the_line_lower_down() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("systemd-c"),
                Keys("\t"),
                Out("\x07"),
                Keys("\t"),
                Out("\r\nsystemd-cat     systemd-cgls\r\nsystemd-cgtop   systemd-creds\r\n"),
                Out("root@db-1:~# systemd-c"),
                Type("at --version"),
                Keys("\r"),
                Out(ACCEPT),
                Out("systemd 252\r\n"),
            ],
            &["systemd-cat --version"],
        );
    }

    #[test]
    fn history_recall_is_read_as_redrawn() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("ls -la"),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                Type("systemctl status nginx"),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                // Up twice: the second redraw backs up over the longer line and erases the rest.
                Keys("\x1b[A"),
                Out("systemctl status nginx"),
                Keys("\x1b[A"),
                Out(&"\x08".repeat(22)),
                Out("ls -la\x1b[K"),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                // Up in application cursor mode, redrawn with cursor movements.
                Out("\x1b[?1h"),
                Keys("\x1bOA"),
                Out("ls -la"),
                Keys("\x1bOA"),
                Out("\r\x1b[13Csystemctl status nginx\x1b[K"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["ls -la", "systemctl status nginx", "ls -la", "systemctl status nginx"],
        );
    }

    /// Ctrl-R as bash 5.2 draws it (bytes from a real session): the search label replaces the
    /// prompt while searching; on Enter readline deletes the label, writes the prompt back in
    /// front of the accepted line and then the newline, so the line is read through its anchor.
    #[test]
    fn reverse_search_is_read_as_accepted() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("systemctl --version"),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                Type("ls -la"),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                Keys("\x12"),
                Out("\r(reverse-i-search)`': "),
                Keys("s"),
                Out("\x08\x08\x08s': l\x1b[7ms\x1b[27m -la\x08\x08\x08\x08\x08"),
                Keys("y"),
                Out("\x08\x08\x08\x08y': \x1b[7msy\x1b[27mstemctl --version"),
                Out(&"\x08".repeat(19)),
                Keys("s"),
                Out("\x08\x08\x08\x1b[1@s': \x1b[7msys\x1b[27m\x08\x08\x08"),
                Keys("\r"),
                Out("\r\x1b[12Proot@db-1:~# sys\x08\x08\x08"),
                Out(ACCEPT),
                Out("systemd 252\r\n"),
            ],
            &["systemctl --version", "ls -la", "systemctl --version"],
        );
    }

    /// A shell that ends the line while the search label is still shown: the text after the
    /// label is the command.
    #[test]
    fn reverse_search_label_left_on_screen() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("\x12"),
                Out("\r(reverse-i-search)`': "),
                Keys("df"),
                Out("\x08\x08\x08df': df -h\x08\x08\x08\x08\x08"),
                Keys("\r"),
                Out("\r\n"),
            ],
            &["df -h"],
        );
    }

    #[test]
    fn editing_is_read_as_displayed() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("echo hllo"),
                Keys("\x1b[D\x1b[D\x1b[D"),
                Out("\x08\x08\x08"),
                Keys("e"),
                Out("ello\x08\x08\x08"),
                Keys("\x05"),
                Out("\x1b[C\x1b[C\x1b[C"),
                Type("x"),
                Keys("\x7f"),
                Out("\x08\x1b[K"),
                Keys("\r"),
                Out(ACCEPT),
                Out("hello\r\n"),
                Out(PROMPT),
                Type("rm -rf /tmp/nothing"),
                Keys("\x15"),
                Out("\r\x1b[13C\x1b[K"),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["echo hello", "pwd"],
        );
    }

    /// readline at the right margin: it writes one character past it (the terminal wraps),
    /// returns to the start of the new row and goes on.
    #[test]
    fn long_command_wrapping_over_rows_is_read_whole() {
        let long = format!("echo {} {}", "a".repeat(30), "b".repeat(30));
        check(
            24,
            40,
            &[
                Out(PROMPT),
                Type(&long[..26]),
                Keys(&long[26..27]),
                Out(&format!("{} \r", &long[26..27])),
                Type(&long[27..]),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &[long.as_str()],
        );
    }

    /// Enter with the cursor on the first row of a wrapped line (after Ctrl-A): readline moves
    /// down with a line feed inside the line before ending it (bytes from a real session).
    #[test]
    fn wrapped_line_submitted_from_its_first_row() {
        let long = format!("echo {}", "a".repeat(90));
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys(&long),
                Out(&long[..68]),
                Out("\r"),
                Out(&long[67..]),
                Keys("\x01"),
                Out("\x1b[A\rroot@db-1:~# "),
                Keys("\r"),
                Out("\r\n\r\r\n\x1b[?2004l\r"),
                Out(&format!("{}\r\n", "a".repeat(90))),
            ],
            &[long.as_str()],
        );
    }

    #[test]
    fn ctrl_c_and_empty_enter_are_not_commands() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("badcmd"),
                Keys("\x03"),
                Out("^C\x1b[?2004l\r\x1b[?2004h\x1b[?2004l\r\r\n"),
                Out(PROMPT),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                Type("   "),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
            ],
            &[],
        );
    }

    #[test]
    fn full_screen_programs_keep_their_keystrokes() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("vim notes.txt"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b[?1049h\x1b[1;24r\x1b[H\x1b[2Jone\r\ntwo\r\n~\r\n\x1b[24;1H\"notes.txt\""),
                Keys("dd"),
                Out("\x1b[Htwo\x1b[K\r\n~\x1b[K"),
                Keys(":wq\r"),
                Out("\x1b[24;1H:wq\r\n"),
                Out("\x1b[?1049l"),
                Out(PROMPT),
                Type("less /etc/passwd"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b[?1049h\x1b[?1h\x1b=\rroot:x:0:0:root:/root:/bin/bash\r\n:"),
                Keys("/nologin\r"),
                Out("\r\x1b[Kdaemon:x:1:1::/usr/sbin/nologin\r\n:"),
                Keys("q"),
                Out("\r\x1b[K\x1b[?1l\x1b>\x1b[?1049l"),
                Out(PROMPT),
                Type("ls"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["vim notes.txt", "less /etc/passwd", "ls"],
        );
    }

    #[test]
    fn a_changed_prompt_is_stripped() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("cd /var"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b[?2004hroot@db-1:/var# "),
                Type("ls -d log"),
                Keys("\r"),
                Out(ACCEPT),
                Out("log\r\n"),
                Out("\x1b[?2004hroot@db-1:/var# "),
            ],
            &["cd /var", "ls -d log"],
        );
    }

    #[test]
    fn resize_mid_line_and_between_commands() {
        let mut steps = vec![Out(PROMPT)];
        // Fill the screen so that growing pulls blank rows in above (vt100 remembers the
        // rows that scrolled away) and shrinking pushes rows out.
        for _ in 0..30 {
            steps.extend([Type("true"), Keys("\r"), Out(ACCEPT), Out(PROMPT)]);
        }
        let wide = format!("echo narrow {}", "c".repeat(60));
        steps.extend([
            Type("echo resized"),
            Resize(30, 100),
            Out("\r\x1b[K\rroot@db-1:~# echo resized"),
            Keys("\r"),
            Out(ACCEPT),
            Out("resized\r\n"),
            Out(PROMPT),
            Resize(10, 60),
            Out("\r\x1b[K\rroot@db-1:~# "),
            Type(&wide[..46]),
            Keys("c"),
            Out("c \r"),
            Type(&wide[47..]),
            Keys("\r"),
            Out(ACCEPT),
        ]);
        let mut expected = vec!["true"; 30];
        expected.extend(["echo resized", wide.as_str()]);
        check(24, 80, &steps, &expected);
    }

    #[test]
    fn resize_inside_a_full_screen_program() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("top"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b[?1049h\x1b[H\x1b[2Jtop - 10:00:00\r\n"),
                Resize(40, 120),
                Keys("q"),
                Out("\x1b[?1049l"),
                Out("\r\n"),
                Out(PROMPT),
                Type("w"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["top", "w"],
        );
    }

    /// Enter arrives before the host echoed the last characters: the line waits for the echo.
    #[test]
    fn echo_lag() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("ls"),
                Keys(" -la\r"),
                Out(" -l"),
                Out("a"),
                Out(ACCEPT),
                Out("total 0\r\n"),
                Out(PROMPT),
            ],
            &["ls -la"],
        );
    }

    #[test]
    fn two_lines_pasted_at_once() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("echo one\recho two\r"),
                Out("echo one"),
                Out(ACCEPT),
                Out("one\r\n"),
                Out(PROMPT),
                Out("echo two"),
                Out(ACCEPT),
                Out("two\r\n"),
                Out(PROMPT),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["echo one", "echo two", "pwd"],
        );
    }

    /// The same paste where the second command changes the prompt and the third was typed
    /// with a blank line in between.
    #[test]
    fn pasted_lines_across_a_prompt_change() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("cd /var\r\rls -d log\r"),
                Out("cd /var"),
                Out(ACCEPT),
                Out("\x1b[?2004hroot@db-1:/var# "),
                Out(ACCEPT),
                Out("\x1b[?2004hroot@db-1:/var# ls -d log"),
                Out(ACCEPT),
                Out("log\r\n\x1b[?2004hroot@db-1:/var# "),
            ],
            &["cd /var", "ls -d log"],
        );
    }

    /// A bracketed paste of two lines (bytes from bash 5.2): readline shows both rows and
    /// runs them at the next Enter, so they are one command.
    #[test]
    fn bracketed_paste_of_two_lines_is_one_command() {
        let paste = [
            Keys("\x1b[200~echo three\recho four\x1b[201~"),
            Out("\x1b[7mecho three\x1b[27m\r\n\r\x1b[7mecho four\x1b[27m"),
            Keys("\r"),
            Out("\x1b[A\x1b[C\x1b[C\x1b[C\x1b[Cecho three\r\n\recho four\r\n\x1b[?2004l\r"),
            Out("three\r\nfour\r\n"),
            Out(PROMPT),
        ];
        let mut steps = vec![Out(PROMPT)];
        steps.extend(paste);
        check(24, 80, &steps, &["echo three\necho four"]);
        // At the bottom of the screen, so every line feed scrolls.
        let mut steps = vec![Out(PROMPT)];
        for _ in 0..30 {
            steps.extend([Type("true"), Keys("\r"), Out(ACCEPT), Out(PROMPT)]);
        }
        steps.extend(paste);
        let mut expected = vec!["true"; 30];
        expected.push("echo three\necho four");
        check(24, 80, &steps, &expected);
    }

    /// A paste ending in a newline, and one with `\r\n` line ends (real bash 5.2 bytes), the
    /// second sent together with Enter so that Enter arrives before any echo.
    #[test]
    fn bracketed_paste_with_trailing_newline_and_crlf() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("\x1b[200~echo three\recho four\r\x1b[201~"),
                Out("\x1b[7mecho three\x1b[27m\r\n\r\x1b[7mecho four\x1b[27m\r\n\r"),
                Keys("\r"),
                Out("\x1b[A\x1b[Aroot@db-1:~# echo three\r\n\recho four\r\n\r\x1b[A\r\n"),
                Out("\x1b[?2004l\rthree\r\nfour\r\n"),
                Out(PROMPT),
                Keys("\x1b[200~echo a\r\necho b\x1b[201~\r"),
                Out("\x1b[7mecho a\x1b[27m\r\n\r\n\r\x1b[7mecho b\x1b[27m"),
                Out("\x1b[A\x1b[Ab-1:~# echo a\r\n\r\n\recho b\r\n\x1b[?2004l\ra\r\nb\r\n"),
                Out(PROMPT),
            ],
            &["echo three\necho four", "echo a\necho b"],
        );
    }

    /// A paste with no line break keeps at most a screenful of keystrokes: longer text could
    /// never be matched with the screen, so the line is then placed by its prompt alone.
    #[test]
    fn typed_keys_are_capped_at_a_screenful() {
        let mut tracker = CommandTracker::new(2, 10);
        let mut commands = tracker.output(PROMPT.as_bytes());
        let typed =
            |t: &CommandTracker| t.current.as_ref().map(|line| line.typed.as_ref().map(Vec::len));
        let cap = 2 * 10 * MAX_CHAR_BYTES;
        commands.extend(tracker.input(&vec![b'a'; cap]));
        assert_eq!(typed(&tracker), Some(Some(cap)), "up to the cap, the keys are kept");
        commands.extend(tracker.input(&vec![b'a'; 1 << 20]));
        assert_eq!(typed(&tracker), Some(None), "past it, they are given up, not grown");
        assert!(commands.is_empty());
    }

    #[test]
    fn password_typed_with_echo_off_is_never_reported() {
        let sudo = "[sudo] password for root: ";
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("sudo ls"),
                Keys("\r"),
                Out(ACCEPT),
                Out(sudo),
                Keys("hunter2"),
                Keys("\r"),
                Out("\r\n"),
                Out("notes.txt\r\n"),
                Out(PROMPT),
                // Typed ahead of the prompt, password included.
                Keys("sudo -k ls\rhunter2\r"),
                Out("sudo -k ls"),
                Out(ACCEPT),
                Out(sudo),
                Out("\r\n"),
                Out("hunter2.txt\r\n"),
                Out(PROMPT),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
                Out("/root\r\n"),
                Out(PROMPT),
                // A wrong password, the session ends at the prompt.
                Type("sudo id"),
                Keys("\r"),
                Out(ACCEPT),
                Out(sudo),
                Keys("hunter2\r"),
                Out("\r\nSorry, try again.\r\n"),
                Out(sudo),
                Keys("hunter3"),
            ],
            &["sudo ls", "sudo -k ls", "pwd", "sudo id"],
        );
    }

    /// bash's `read -s` prints no newline after the silent input: the next prompt, and the
    /// next command, are drawn on the password prompt's row.
    #[test]
    fn silent_read_without_a_newline() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("read -s -p 'Token: ' t"),
                Keys("\r"),
                Out(ACCEPT),
                Out("Token: "),
                Keys("s3cret\r"),
                Out(PROMPT),
                Type("ls"),
                Keys("\r"),
                Out(ACCEPT),
                Out("notes.txt\r\n"),
                Out(PROMPT),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["read -s -p 'Token: ' t", "ls", "pwd"],
        );
    }

    #[test]
    fn output_scrolling_the_line_away_in_the_same_chunk() {
        let output: String = (0..40).map(|i| format!("line {i}\r\n")).collect();
        let long = format!("echo {}", "x".repeat(50));
        let mut steps = vec![Out(PROMPT)];
        for _ in 0..10 {
            steps.extend([Type("true"), Keys("\r"), Out(ACCEPT), Out(PROMPT)]);
        }
        let accept_and_output = format!("{ACCEPT}{output}{PROMPT}");
        steps.extend([
            Type(&long[..26]),
            Keys("x"),
            Out("x \r"),
            Type(&long[27..]),
            Keys("\r"),
            Out(&accept_and_output),
            Type("seq 40"),
            Keys("\r"),
            Out(&accept_and_output),
        ]);
        let mut expected = vec!["true"; 10];
        expected.extend([long.as_str(), "seq 40"]);
        check(10, 40, &steps, &expected);
    }

    #[test]
    fn ctrl_l_redraws_the_line_at_the_top() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("true"),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                Type("ls"),
                Keys("\x0c"),
                Out("\x1b[H\x1b[2Jroot@db-1:~# ls"),
                Type(" /"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["true", "ls /"],
        );
    }

    /// Typed while a command runs: the terminal driver echoes the keys, the shell then prints
    /// its prompt after them and echoes them again.
    #[test]
    fn typed_ahead_while_a_command_runs() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("sleep 5"),
                Keys("\r"),
                Out(ACCEPT),
                Keys("ls"),
                Out("ls"),
                Out(PROMPT),
                Out("ls"),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                Type("sleep 5"),
                Keys("\r"),
                Out(ACCEPT),
                Keys("pwd\r"),
                Out("pwd\r\n"),
                Out(PROMPT),
                Out("pwd"),
                Out(ACCEPT),
                Out("/root\r\n"),
                Out(PROMPT),
            ],
            &["sleep 5", "ls", "sleep 5", "pwd"],
        );
    }

    #[test]
    fn ctrl_d_ends_only_an_empty_line() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("python3 -q"),
                Keys("\r"),
                Out(ACCEPT),
                Out(">>> "),
                Keys("\x04"),
                Out("\r\n"),
                Out(PROMPT),
                // On a line with text, Ctrl-D deletes (here: nothing under the cursor).
                Type("id"),
                Keys("\x04"),
                Out("\x07"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["python3 -q", "id"],
        );
    }

    #[test]
    fn ctrl_o_submits_too() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("uname"),
                Keys("\x0f"),
                Out(ACCEPT),
                Out("Linux\r\n"),
                Out(PROMPT),
                Out("uname"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["uname", "uname"],
        );
    }

    #[test]
    fn finish_reads_a_line_whose_echo_never_ended() {
        check(24, 80, &[Out(PROMPT), Type("reboot"), Keys("\r")], &["reboot"]);
        check(24, 80, &[Out(PROMPT), Type("half typed")], &[]);
    }

    #[test]
    fn terminal_answers_and_focus_reports_are_not_keystrokes() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("\x1b]11;rgb:0000/0000/0000\x1b\\\x1b[I"),
                Out("\r\n"),
                Out("late output\r\n"),
                Out(PROMPT),
                Type("ls"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["ls"],
        );
    }

    /// Limit: input read by a REPL is reported, each line as a command of its own.
    #[test]
    fn limit_repl_lines_are_commands() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("python3 -q"),
                Keys("\r"),
                Out(ACCEPT),
                Out(">>> "),
                Type("1+1"),
                Keys("\r"),
                Out("\r\n2\r\n>>> "),
                Type("exit()"),
                Keys("\r"),
                Out("\r\n"),
                Out(PROMPT),
            ],
            &["python3 -q", "1+1", "exit()"],
        );
    }

    /// A typed-ahead line that never matches (edited, and the paste changed the prompt beyond
    /// recognition) does not block the lines after it: the next line's own anchor shows up in
    /// the line the host ends, which proves the host has moved past the lost one.
    #[test]
    fn lost_typed_ahead_line_does_not_block_later_lines() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("PS1='db1 %% '\rls\t\r"),
                Out("PS1='db1 %% '"),
                Out(ACCEPT),
                Out("\x1b[?2004hdb1 % ls "),
                Out(ACCEPT),
                Out("log  tmp\r\n"),
                Out("\x1b[?2004hdb1 % "),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
                Out("/root\r\n"),
                Out("\x1b[?2004hdb1 % "),
                Type("id"),
                Keys("\r"),
                Out(ACCEPT),
                Out("uid=0(root)\r\n"),
                Out("\x1b[?2004hdb1 % "),
            ],
            &["PS1='db1 %% '", "pwd", "id"],
        );
    }

    #[test]
    fn five_pasted_lines_with_output_between() {
        let mut steps = vec![Out(PROMPT), Keys("true\recho a b\rcd /tmp\rls\rdate\r")];
        steps.extend([Out("true"), Out(ACCEPT), Out(PROMPT), Out("echo a b"), Out(ACCEPT)]);
        steps.extend([Out("a b\r\n"), Out(PROMPT), Out("cd /tmp"), Out(ACCEPT)]);
        steps.extend([Out("\x1b[?2004hroot@db-1:/tmp# ls"), Out(ACCEPT), Out("x.log\r\n")]);
        steps.extend([Out("\x1b[?2004hroot@db-1:/tmp# date"), Out(ACCEPT), Out("Mon\r\n")]);
        check(24, 80, &steps, &["true", "echo a b", "cd /tmp", "ls", "date"]);
    }

    /// Up and Enter sent together: the redraw and the newline come after both keys.
    #[test]
    fn history_recall_submitted_before_its_redraw() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("uptime"),
                Keys("\r"),
                Out(ACCEPT),
                Out(" 10:00:00 up 1 day\r\n"),
                Out(PROMPT),
                Keys("\x1b[A\r"),
                Out("\x07"),
                Out("uptime"),
                Out(ACCEPT),
            ],
            &["uptime", "uptime"],
        );
    }

    /// Output between Enter and its lagging echo (here a bell) does not make the tracker give
    /// up on the line when the next one is typed at once.
    #[test]
    fn stray_output_before_a_lagging_echo() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("ls\r"),
                Out("\x07"),
                Keys("pwd\r"),
                Out("ls"),
                Out(ACCEPT),
                Out("notes.txt\r\n"),
                Out(PROMPT),
                Out("pwd"),
                Out(ACCEPT),
            ],
            &["ls", "pwd"],
        );
    }

    #[test]
    fn wide_characters() {
        check(
            24,
            20,
            &[
                Out(PROMPT),
                Type("echo \u{65e5}\u{672c}\u{8a9e} caf\u{e9}"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["echo \u{65e5}\u{672c}\u{8a9e} caf\u{e9}"],
        );
    }

    /// The prompt ends on the last column: the line starts at the beginning of the next row.
    #[test]
    fn prompt_filling_its_row() {
        let prompt = format!("\x1b[?2004h{}# ", "p".repeat(18));
        check(
            24,
            20,
            &[Out(&prompt), Keys("l"), Out("l\r\x1b[Kl"), Type("s /etc"), Keys("\r"), Out(ACCEPT)],
            &["ls /etc"],
        );
    }

    /// Limit: a command taller than the screen keeps only the rows still on the screen.
    #[test]
    fn limit_command_taller_than_the_screen() {
        let long = format!("echo {}", "x".repeat(95));
        check(
            3,
            20,
            &[Out(PROMPT), Keys(&long), Out(&long), Keys("\r"), Out(ACCEPT)],
            // 113 characters on 20 columns: the last 33 are on the two rows left above the
            // cursor once the newline scrolled the screen.
            &[&long[long.len() - 33..]],
        );
    }

    /// zsh's incremental search shows its status on the row below the line; on Enter zsh
    /// clears that row, goes back up, and leaves the line with a cursor-down sequence instead
    /// of a line feed (bytes from zsh 5.9).
    #[test]
    fn line_left_with_cursor_down() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("ls -la"),
                Keys("\r"),
                Out(ACCEPT),
                Out(PROMPT),
                Keys("\x12"),
                Out("\r\r\nbck-i-search: _\x1b[K\x1b[A\x08\x08"),
                Keys("s"),
                Out("l\x1b[4ms\x1b[24m -la\x1b[1B\x08\x08\x08\x08\x08s_\x1b[A\x08\x08"),
                Keys("\r"),
                Out("\x1b[24ms\x1b[1B\r\x1b[K\x1b[A\x1b[13C"),
                Out("\x1b[?1l\x1b>"),
                Out("\x1b[?2004l\x1b[1B\r"),
                Out("total 0\r\n"),
                Out(PROMPT),
            ],
            &["ls -la", "ls -la"],
        );
    }

    /// Limit: a here-document is one command per line typed.
    #[test]
    fn limit_here_document_lines_are_commands() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("cat <<EOF"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b[?2004h> "),
                Type("hello"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b[?2004h> "),
                Type("EOF"),
                Keys("\r"),
                Out(ACCEPT),
                Out("hello\r\n"),
                Out(PROMPT),
            ],
            &["cat <<EOF", "hello", "EOF"],
        );
    }

    /// Limit: a line accepted by a key other than Enter, Ctrl-J, Ctrl-M or Ctrl-O (here Alt-j
    /// bound to accept-line) is not reported; the next line is.
    #[test]
    fn limit_other_accept_keys_are_not_seen() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Type("id"),
                Keys("\x1bj"),
                Out(ACCEPT),
                Out("uid=0(root)\r\n"),
                Out(PROMPT),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["pwd"],
        );
    }

    /// Limit: an edited typed-ahead line shown after a prompt change is lost; the line typed
    /// after it, at the new prompt, is read again.
    #[test]
    fn limit_edited_typed_ahead_line_after_prompt_change() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("cd /var\rls\t\r"),
                Out("cd /var"),
                Out(ACCEPT),
                Out("\x1b[?2004hroot@db-1:/var# ls "),
                Out(ACCEPT),
                Out("log  tmp\r\n"),
                Out("\x1b[?2004hroot@db-1:/var# "),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["cd /var", "pwd"],
        );
    }

    /// Limit: a typed-ahead line that the host flushed (Ctrl-C while a command runs) is
    /// dropped when the next line starts at a prompt.
    #[test]
    fn limit_flushed_typed_ahead_line_is_dropped() {
        check(
            24,
            80,
            &[
                Out(PROMPT),
                Keys("sleep 9\rls\r\x03"),
                Out("sleep 9"),
                Out(ACCEPT),
                Out("^C\r\n"),
                Out(PROMPT),
                Type("id"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["sleep 9", "id"],
        );
    }

    /// Limit: keys typed right after `export PS1=…` ran, before bash drew the new prompt (bytes
    /// from a real bash 5.2 under a PTY, the shell slowed by `PROMPT_COMMAND='sleep 0.3'` as
    /// on a loaded host). The driver echoes `ech`, bash draws its prompt after it and readline
    /// shows `ech` again; the new prompt is not known yet, so it stays in the command. This is
    /// one way `an_interactive_shell_records_commands_as_the_user_saw_them` fails on a loaded
    /// host (its wait for `bg-test# ` is met by the echo of the `export` line), whether or not
    /// the screen sleeps.
    #[test]
    fn limit_keys_typed_before_a_new_prompt_is_drawn() {
        let events = parse_fixture(
            r#"
o"\x1b[?2004hroot@vm:~# " i"export PS1='bg-test# '\x0d"
o"export PS1='bg-test# '\x0d\x0a\x1b[?2004l\x0d" i"ech" o"ech" o"\x1b[?2004hbg-test# " o"ech"
i"\x09" o"o " i"tab-$((6*7))\x0d" o"tab-$((6*7))\x0d\x0a\x1b[?2004l\x0d" o"tab-42\x0d\x0a"
"#,
        );
        assert_eq!(
            run_events(24, 80, &events),
            ["export PS1='bg-test# '", "echbg-test# echo tab-$((6*7))"]
        );
    }

    /// Limit: output written into the line while it is typed becomes part of it.
    #[test]
    fn limit_background_output_inside_the_line() {
        check(
            24,
            80,
            &[Out(PROMPT), Type("ls"), Out("[1]+  Done"), Type(" /"), Keys("\r"), Out(ACCEPT)],
            &["ls[1]+  Done /"],
        );
    }

    #[test]
    fn debug_shows_no_keystrokes() {
        let mut tracker = CommandTracker::new(24, 80);
        let _ = tracker.output(b"[sudo] password for root: ");
        let _ = tracker.input(b"hunter2");
        let shown = format!("{tracker:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("104, 117"), "{shown}");
    }

    /// Arbitrary bytes, sizes and resizes: never a panic, and commands are trimmed and
    /// non-empty.
    #[test]
    fn garbage_never_panics() {
        let mut rng = test_util::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        let alphabet: &[u8] =
            b"\x1b[?1049hl;0123456789ABCDHJKPr\r\n\x08\x7f\x03\x04\x0f\t az~\xc3\xa9\xe2\x94";
        for _ in 0..200 {
            let mut tracker = CommandTracker::new(0, 0);
            let mut commands = Vec::new();
            for _ in 0..200 {
                let len = usize::try_from(next() % 64).unwrap_or(0);
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        let at = usize::try_from(next()).unwrap_or(0) % alphabet.len();
                        alphabet.get(at).copied().unwrap_or(b' ')
                    })
                    .collect();
                match next() % 10 {
                    0..=5 => commands.extend(tracker.output(&bytes)),
                    6..=8 => commands.extend(tracker.input(&bytes)),
                    _ => tracker.resize(
                        u16::try_from(next() % 50).unwrap_or(1),
                        u16::try_from(next() % 200).unwrap_or(1),
                    ),
                }
            }
            commands.extend(tracker.finish());
            for command in commands {
                assert!(!command.is_empty());
                assert_eq!(command.trim(), command);
            }
        }
    }

    /// bash with shell integration: D (last status) and A before the prompt, B after it, as
    /// `PS1='\[\e]133;D;$?\a\e]133;A\a\]osc$ \[\e]133;B\a\]'` draws it.
    const MARKED_PROMPT: &str = "\x1b]133;D;0\x07\x1b]133;A\x07\x1b[?2004hosc$ \x1b]133;B\x07";
    /// The C mark, from `PS0='\e]133;C\a'`, printed once the line is accepted.
    const MARK_C: &str = "\x1b]133;C\x07";

    #[test]
    fn osc_133_marks_bound_the_command() {
        check(
            24,
            80,
            &[
                Out(MARKED_PROMPT),
                Type("ls -la"),
                Keys("\r"),
                Out(ACCEPT),
                Out(MARK_C),
                Out("total 0\r\n"),
                Out(MARKED_PROMPT),
                // ST instead of BEL, and a C mark with parameters.
                Out("\x1b]133;B\x1b\\"),
                Type("uptime"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b]133;C;cmdline=uptime\x1b\\"),
                Out(MARKED_PROMPT),
                // Ctrl-C: no C mark, no command.
                Type("badcmd"),
                Keys("\x03"),
                Out("^C\r\n"),
                Out(MARKED_PROMPT),
            ],
            &["ls -la", "uptime"],
        );
    }

    /// The limit of `limit_other_accept_keys_are_not_seen` is gone where the shell prints marks:
    /// the C mark says the line was accepted, whatever the key.
    #[test]
    fn osc_133_a_line_accepted_by_any_key() {
        check(
            24,
            80,
            &[
                Out(MARKED_PROMPT),
                Type("echo hi"),
                Keys("\x14"),
                Out(ACCEPT),
                Out(MARK_C),
                Out("hi\r\n"),
                Out(MARKED_PROMPT),
                Keys("\x1b[200~echo three\recho four\x1b[201~"),
                Out("echo three\r\necho four"),
                Keys("\r"),
                Out("\r\n\x1b[?2004l\r"),
                Out(MARK_C),
            ],
            &["echo hi", "echo three\necho four"],
        );
    }

    /// Input read by a command after its C mark with echo off is never a command: not the
    /// password, and not the prompt drawn after it on the same row.
    #[test]
    fn osc_133_password_after_the_c_mark_is_never_a_command() {
        check(
            24,
            80,
            &[
                Out(MARKED_PROMPT),
                Type("read -s -p 'Token: ' t"),
                Keys("\r"),
                Out(ACCEPT),
                Out(MARK_C),
                Out("Token: "),
                Keys("s3cret\r"),
                Out(MARKED_PROMPT),
                Type("sudo ls"),
                Keys("\r"),
                Out(ACCEPT),
                Out(MARK_C),
                Out("[sudo] password for root: "),
                Keys("hunter2\r"),
                Out("\r\nnotes.txt\r\n"),
                Out(MARKED_PROMPT),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
                Out(MARK_C),
                Out("/root\r\n"),
                Out(MARKED_PROMPT),
                // Typed ahead of the prompt, password included.
                Keys("sudo -k ls\rhunter2\r"),
                Out("sudo -k ls"),
                Out(ACCEPT),
                Out(MARK_C),
                Out("[sudo] password for root: "),
                Out("\r\n"),
                Out(MARKED_PROMPT),
            ],
            &["read -s -p 'Token: ' t", "sudo ls", "pwd", "sudo -k ls"],
        );
    }

    /// `su -` from a shell with marks: the inner shell prints none, so its commands are read by
    /// the heuristic, and the outer shell's marks take over again after it.
    #[test]
    fn osc_133_nested_shell_without_marks_falls_back_to_the_screen() {
        check(
            24,
            80,
            &[
                Out(MARKED_PROMPT),
                Type("su -"),
                Keys("\r"),
                Out(ACCEPT),
                Out(MARK_C),
                Out(PROMPT),
                Type("id -u"),
                Keys("\r"),
                Out(ACCEPT),
                Out("0\r\n"),
                Out(PROMPT),
                Type("exit"),
                Keys("\r"),
                Out(ACCEPT),
                Out("logout\r\n"),
                Out(MARKED_PROMPT),
                Type("echo back"),
                Keys("\r"),
                Out(ACCEPT),
                Out(MARK_C),
            ],
            &["su -", "id -u", "exit", "echo back"],
        );
    }

    /// A shell that prints A and B but no C (no PS0): the heuristic's reading stands, reported
    /// at the next prompt or at the end.
    #[test]
    fn osc_133_without_a_c_mark_keeps_the_heuristic() {
        check(
            24,
            80,
            &[
                Out(MARKED_PROMPT),
                Type("ls"),
                Keys("\r"),
                Out(ACCEPT),
                Out("notes.txt\r\n"),
                Out(MARKED_PROMPT),
                Type("pwd"),
                Keys("\r"),
                Out(ACCEPT),
            ],
            &["ls", "pwd"],
        );
    }

    /// Marks cannot hide a command: a PS0 that erases or rewrites the line before its C mark
    /// leaves what the heuristic read at the line feed in the index.
    #[test]
    fn osc_133_a_line_redrawn_before_its_c_mark_is_still_reported() {
        check(
            24,
            80,
            &[
                Out(MARKED_PROMPT),
                Type("rm -rf /tmp/x"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b[A\x1b[2K"),
                Out(MARK_C),
                Out(MARKED_PROMPT),
                Type("rm -rf /tmp/y"),
                Keys("\r"),
                Out(ACCEPT),
                Out("\x1b[A\r\x1b[2Kosc$ ls\r\n"),
                Out(MARK_C),
            ],
            &["rm -rf /tmp/x", "rm -rf /tmp/y", "ls"],
        );
    }

    #[test]
    fn limit_osc_133_typed_ahead_during_a_command_is_listed_twice() {
        check(
            24,
            80,
            &[
                Out(MARKED_PROMPT),
                Type("sleep 1"),
                Keys("\r"),
                Out(ACCEPT),
                Out(MARK_C),
                Keys("ls\r"),
                Out("ls\r\n"),
                Out(MARKED_PROMPT),
                Out("ls"),
                Out(ACCEPT),
                Out(MARK_C),
                Out("notes.txt\r\n"),
            ],
            &["sleep 1", "ls", "ls"],
        );
    }

    /// Other OSC strings, other 133 letters and broken marks are not marks.
    #[test]
    fn osc_133_scanner_finds_only_whole_marks() {
        let mut scanner = MarkScanner::default();
        let stream = b"\x1b]0;title\x07\x1b]133;P;k=i\x07\x1b]1337;A\x07\x1b]133;\x18A\x07\
            \x1b]133;A\x07x\x1b]133;B\x1b\\\x1b]133;C\x1b]133;D;0\x07";
        let mut rest: &[u8] = stream;
        let mut found = Vec::new();
        while let Some((end, mark)) = scanner.next_mark(rest) {
            found.push(mark);
            rest = &rest[end..];
        }
        // The C mark is cut by the next ESC: ESC `]` is no ST.
        assert_eq!(found, [Mark::PromptStart, Mark::InputStart, Mark::CommandEnd]);
    }

    fn parse_fixture(text: &str) -> Vec<Event> {
        let mut events = Vec::new();
        let mut rest = text.trim_start();
        while let Some(tag) = rest.chars().next() {
            rest = &rest[1..];
            if tag == 'r' {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let (size, tail) = rest.split_at(end);
                let (rows, cols) = size.split_once('x').expect("resize is r<rows>x<cols>");
                events
                    .push(Event::Resize(rows.parse().expect("rows"), cols.parse().expect("cols")));
                rest = tail.trim_start();
                continue;
            }
            let body = rest.strip_prefix('"').expect("a quoted chunk after the tag");
            let end = body.find('"').expect("the closing quote");
            let mut bytes = Vec::new();
            let mut chars = body[..end].bytes();
            while let Some(b) = chars.next() {
                if b != b'\\' {
                    bytes.push(b);
                } else if chars.clone().next() == Some(b'\\') {
                    chars.next();
                    bytes.push(b'\\');
                } else {
                    let hex: Vec<u8> = chars.by_ref().skip(1).take(2).collect();
                    let hex = std::str::from_utf8(&hex).expect("ascii escape");
                    bytes.push(u8::from_str_radix(hex, 16).expect("\\xNN escape"));
                }
            }
            events.push(match tag {
                'o' => Event::Out(bytes),
                'i' => Event::In(bytes),
                other => panic!("unknown tag {other}"),
            });
            rest = body[end + 1..].trim_start();
        }
        events
    }

    /// A real bash 5.2 session under a PTY, 24x80 (output chunks as read from the PTY
    /// master). Recorded by driving `bash -i` from Python's `pty` module: typed characters
    /// with a pause after each, Tab completion, Up twice, Ctrl-R, editing, Ctrl-U, Ctrl-C, an
    /// empty Enter, a wrapped line, cd, a password read with echo off, a completion listing,
    /// two lines in one write, a bracketed paste, less, vim, python3, two resizes, a
    /// here-document, then Ctrl-D.
    #[test]
    fn real_bash_session() {
        let events = parse_fixture(REAL_SESSION);
        let long = format!("echo {} {}", "a".repeat(50), "b".repeat(50));
        let narrow = format!("echo narrow {}", "c".repeat(60));
        let expected = [
            "ls -la",
            "systemctl --version",
            "ls -la",
            "systemctl --version",
            "echo hello",
            "pwd",
            long.as_str(),
            "cd /var",
            "ls -d log",
            "cd",
            "read -s -p '[sudo] password for root: ' pw; echo",
            "systemd-cat --version",
            "echo one",
            "echo two",
            "echo three\necho four",
            "less notes.txt",
            "vim -u NONE new.txt",
            "python3 -q",
            "1+1",
            "exit()",
            "echo resized",
            narrow.as_str(),
            "cat <<EOF",
            "hello",
            "EOF",
        ];
        assert_eq!(run_events(24, 80, &events), expected);
    }

    /// A real zsh 5.9 session under a PTY, 24x80, recorded the same way (`PROMPT='%n@db-1:%~%# '`,
    /// no completion system, emacs keys). zsh draws differently from bash: it marks a missing
    /// final newline before each prompt (PROMPT_SP), echoes a line's first key twice, shows
    /// the search status on the row below the line, and leaves a line with `CSI B` when the
    /// row below exists.
    #[test]
    fn real_zsh_session() {
        let events = parse_fixture(REAL_ZSH_SESSION);
        let long = format!("echo {} {}", "a".repeat(50), "b".repeat(50));
        let expected = [
            "ls",
            "systemctl --version",
            "ls",
            "systemctl --version",
            "echo hello",
            long.as_str(),
            "cd /var",
            "cd",
            "read -s '?[sudo] password for root: ' pw; echo",
            "systemd-cat",
            "echo one",
            "echo two",
            "echo three\necho four",
            "echo resized",
        ];
        assert_eq!(run_events(24, 80, &events), expected);
    }

    /// The recorded session (format: see `parse_fixture`): `o"..."` host output, `i"..."`
    /// keystrokes, `r<rows>x<cols>` a resize; `\\`, `\x22` and `\xNN` escapes.
    const REAL_SESSION: &str = r#"
o"\x1b[?2004hroot@db-1:~# " i"l" o"l" i"s" o"s" i" " o" " i"-" o"-" i"l" o"l" i"a" o"a" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"total 12\x0d\x0adrwxr-xr-x 2 root root 4096 Nov 23 02:37 .\x0d\x0adrwxr-xr-x 3 root root 4096 Nov 23 02:37 ..\x0d\x0a-rw-r--r-- 1 root root   14 Nov 23 02:37 notes.txt\x0d\x0a" o"\x1b[?2004h" o"root@db-1:~# " i"s" o"s" i"y" o"y" i"s" o"s" i"t" o"t" i"e" o"e" i"m" o"m" i"c" o"c" i"\x09" o"tl " i"-" o"-" i"-" o"-" i"v" o"v" i"e" o"e" i"r" o"r" i"s" o"s" i"i" o"i" i"o" o"o" i"n" o"n" i"\x0d"
o"\x0d\x0a" o"\x1b[?2004l\x0d" o"systemd 252 (252.38-1~deb12u1)\x0d\x0a+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT -GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT +QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"\x1b[A" o"systemctl --version" i"\x1b[A" o"\x0d\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[Cls -la\x1b[K" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"total 12\x0d\x0a" o"drwxr-xr-x 2 root root 4096 Nov 23 02:37 .\x0d\x0adrwxr-xr-x 3 root root 4096 Nov 23 02:37 ..\x0d\x0a-rw-r--r-- 1 root root   14 Nov 23 02:37 notes.txt\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"\x12" o"\x0d(reverse-i-search)`': " i"s" o"\x08\x08\x08s': l\x1b[7ms\x1b[27m -la\x08\x08\x08\x08\x08" i"y" o"\x08\x08\x08\x08y': \x1b[7msy\x1b[27mstemctl --version\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08" i"s" o"\x08\x08\x08\x1b[1@s': \x1b[7msys\x1b[27m\x08\x08\x08" i"\x0d"
o"\x0d\x1b[12Proot@db-1:~# sys\x08\x08\x08\x0d\x0a\x1b[?2004l\x0d" o"systemd 252 (252.38-1~deb12u1)\x0d\x0a+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT -GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT +QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified\x0d\x0a" o"\x1b[?2004h" o"root@db-1:~# " i"e" o"e" i"c" o"c" i"h" o"h" i"o" o"o" i" " o" " i"h" o"h" i"l" o"l" i"l" o"l" i"o" o"o" i"\x1b[D" o"\x08" i"\x1b[D" o"\x08" i"\x1b[D" o"\x08" i"e" o"ello\x08\x08\x08" i"\x05" o"\x1b[C\x1b[C\x1b[C" i"x" o"x" i"\x7f" o"\x08\x1b[K" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0dhello\x0d\x0a\x1b[?2004hroot@db-1:~# " i"r" o"r" i"m" o"m" i" " o" " i"-" o"-" i"r" o"r" i"f" o"f" i" " o" " i"/" o"/" i"t" o"t" i"m" o"m" i"p" o"p" i"/" o"/" i"n" o"n" i"o" o"o" i"t" o"t" i"h" o"h" i"i" o"i" i"n" o"n" i"g" o"g" i"\x15" o"\x0d\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[K" i"p" o"p" i"w" o"w" i"d" o"d" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d/tmp/bgcap/root\x0d\x0a\x1b[?2004h" o"root@db-1:~# " i"b" o"b" i"a" o"a" i"d" o"d" i"c" o"c" i"m" o"m" i"d" o"d" i"\x03"
o"^C\x1b[?2004l\x0d\x1b[?2004h\x1b[?2004l\x0d\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d\x1b[?2004hroot@db-1:~# " i"e" o"e" i"c" o"c" i"h" o"h" i"o" o"o" i" " o" " i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i" " o" " i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b \x0d" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0daaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"c" o"c" i"d" o"d" i" " o" " i"/" o"/" i"v" o"v" i"a" o"a" i"r" o"r" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"\x1b[?2004hroot@db-1:/var# " i"l" o"l" i"s" o"s" i" " o" " i"-" o"-" i"d" o"d" i" " o" " i"l" o"l" i"o" o"o" i"g" o"g" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"log\x0d\x0a" o"\x1b[?2004hroot@db-1:/var# " i"c" o"c" i"d" o"d" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"\x1b[?2004hroot@db-1:~# " i"r" o"r" i"e" o"e" i"a" o"a" i"d" o"d" i" " o" " i"-" o"-" i"s" o"s" i" " o" " i"-" o"-" i"p" o"p" i" " o" " i"'" o"'" i"[" o"[" i"s" o"s" i"u" o"u" i"d" o"d" i"o" o"o" i"]" o"]" i" " o" " i"p" o"p" i"a" o"a" i"s" o"s" i"s" o"s" i"w" o"w" i"o" o"o" i"r" o"r" i"d" o"d" i" " o" " i"f" o"f" i"o" o"o" i"r" o"r" i" " o" " i"r" o"r" i"o" o"o" i"o" o"o" i"t" o"t" i":" o":" i" " o" " i"'" o"'" i" " o" " i"p" o"p" i"w" o"w" i";" o";" i" " o" " i"e" o"e" i"c" o"c" i"h" o"h" i"o" o"o" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d[sudo] password for root: " i"h" i"u" i"n" i"t" i"e" i"r" i"2" i"\x0d"
o"\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"s" o"s" i"y" o"y" i"s" o"s" i"t" o"t" i"e" o"e" i"m" o"m" i"d" o"d" i"-" o"-" i"c" o"c" i"\x09" o"\x07" i"\x09" o"\x0d\x0asystemd-cat          systemd-cgtop        systemd-cryptenroll\x0d\x0asystemd-cgls         systemd-creds        \x0d\x0aroot@db-1:~# systemd-c" i"a" o"a" i"t" o"t" i" " o" " i"-" o"-" i"-" o"-" i"v" o"v" i"e" o"e" i"r" o"r" i"s" o"s" i"i" o"i" i"o" o"o" i"n" o"n" i"\x0d"
o"\x0d\x0a" o"\x1b[?2004l\x0d" o"systemd 252 (252.38-1~deb12u1)\x0d\x0a+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT -GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT +QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"echo one\x0decho two\x0d"
o"echo one\x0d\x0a\x1b[?2004l\x0done\x0d\x0a\x1b[?2004hroot@db-1:~# echo two\x0d\x0a\x1b[?2004l\x0dtwo\x0d\x0a\x1b[?2004hroot@db-1:~# " i"\x1b[200~echo three\x0decho four\x1b[201~"
o"\x1b[7mecho three\x1b[27m\x0d\x0a\x0d\x1b[7mecho four\x1b[27m" i"\x0d"
o"\x1b[A\x1b[C\x1b[C\x1b[C\x1b[Cecho three\x0d\x0a\x0decho four\x0d\x0a\x1b[?2004l\x0d" o"three\x0d\x0a" o"four\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"l" o"l" i"e" o"e" i"s" o"s" i"s" o"s" i" " o" " i"n" o"n" i"o" o"o" i"t" o"t" i"e" o"e" i"s" o"s" i"." o"." i"t" o"t" i"x" o"x" i"t" o"t" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"\x1b[?1049h\x1b[22;0;0t\x1b[?1h\x1b=\x0done\x0d\x0atwo\x0d\x0athree\x0d\x0a\x1b[7mnotes.txt (END)\x1b[27m\x1b[K" i"j" o"\x0d\x1b[K\x07\x0d\x1b[K\x1b[7m(END)\x1b[27m\x1b[K" i"q" o"\x0d\x1b[K\x1b[?1l\x1b>\x1b[?1049l\x1b[23;0;0t" o"\x1b[?2004hroot@db-1:~# " i"v" o"v" i"i" o"i" i"m" o"m" i" " o" " i"-" o"-" i"u" o"u" i" " o" " i"N" o"N" i"O" o"O" i"N" o"N" i"E" o"E" i" " o" " i"n" o"n" i"e" o"e" i"w" o"w" i"." o"." i"t" o"t" i"x" o"x" i"t" o"t" i"\x0d"
o"\x0d\x0a" o"\x1b[?2004l\x0d" o"\x1b[?1049h\x1b[22;0;0t\x1b[>4;2m\x1b[?1h\x1b=\x1b[?2004h\x1b[1;24r\x1b[?12h\x1b[?12l\x1b[22;2t\x1b[22;1t" o"\x1b[27m\x1b[23m\x1b[29m\x1b[m\x1b[H\x1b[2J\x1b[?25l\x1b[24;1H\x22new.txt\x22 [New File]" o"\x1b[2;1H\x1b[1m\x1b[34m~                                                                               \x1b[3;1H~                                                                               \x1b[4;1H~                                                                               \x1b[5;1H~                                                                               \x1b[6;1H~                                                                               \x1b[7;1H~                                                                               \x1b[8;1H~                                                                               \x1b[9;1H~                                                                               \x1b[10;1H~                                                                               \x1b[11;1H~                                                                               \x1b[12;1H~                                                                               \x1b[13;1H~                                                                               \x1b[14;1H~                                                                               \x1b[15;1H~                                                                               \x1b[16;1H~                                                                               \x1b[17;1H~                                                                               \x1b[18;1H~                                                                               \x1b[19;1H~                                                                               \x1b[20;1H~                                                                               \x1b[21;1H~                                                                               \x1b[22;1H~                                                                               \x1b[23;1H~                                                                               \x1b[1;1H\x1b[?25h\x1b[?4m" i"ihello\x1b" o"\x1b[?2004l\x1b[>4;m\x1b[?2004h\x1b[>4;2m\x1b[?25l\x1b[mhello\x08\x1b[?25h\x1b[?4m" i":" o"\x1b[?25l\x1b[24;1H\x1b[K\x1b[24;1H:\x1b[?25h" i"q" o"q" i"!" o"!" i"\x0d"
o"\x0d\x1b[?25l\x1b[?2004l\x1b[>4;m\x1b[23;2t\x1b[23;1t\x1b[24;1H\x1b[K\x1b[24;1H\x1b[?2004l\x1b[?1l\x1b>\x1b[?1049l\x1b[23;0;0t\x1b[?25h\x1b[>4;m" o"\x1b[?2004h" o"root@db-1:~# " i"p" o"p" i"y" o"y" i"t" o"t" i"h" o"h" i"o" o"o" i"n" o"n" i"3" o"3" i" " o" " i"-" o"-" i"q" o"q" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o">>> " i"1" o"1" i"+" o"+" i"1" o"1" i"\x0d"
o"\x0d\x0a" o"2\x0d\x0a" o">>> " i"e" o"e" i"x" o"x" i"i" o"i" i"t" o"t" i"(" o"(" i")" o")" i"\x0d"
o"\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"e" o"e" i"c" o"c" i"h" o"h" i"o" o"o" i" " o" " i"r" o"r" i"e" o"e" i"s" o"s" i"i" o"i" i"z" o"z" i"e" o"e" i"d" o"d" r30x100 o"\x0d\x1b[K\x0droot@db-1:~# echo resized" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0dresized\x0d\x0a\x1b[?2004hroot@db-1:~# " r24x60 o"\x0d\x1b[K\x0droot@db-1:~# " i"e" o"e" i"c" o"c" i"h" o"h" i"o" o"o" i" " o" " i"n" o"n" i"a" o"a" i"r" o"r" i"r" o"r" i"o" o"o" i"w" o"w" i" " o" " i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c \x0d" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"c" o"c" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"narrow cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"c" o"c" i"a" o"a" i"t" o"t" i" " o" " i"<" o"<" i"<" o"<" i"E" o"E" i"O" o"O" i"F" o"F" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"\x1b[?2004h" o"> " i"h" o"h" i"e" o"e" i"l" o"l" i"l" o"l" i"o" o"o" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d\x1b[?2004h> " i"E" o"E" i"O" o"O" i"F" o"F" i"\x0d"
o"\x0d\x0a\x1b[?2004l\x0d" o"hello\x0d\x0a" o"\x1b[?2004hroot@db-1:~# " i"\x04"
o"\x1b[?2004l\x0d\x0d\x0a" o"exit\x0d\x0a"
"#;

    /// The zsh session, in the same format.
    const REAL_ZSH_SESSION: &str = r#"
o"\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"l" o"l" i"s" o"\x08ls" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0a" o"notes.txt\x0d\x0a" o"\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d" o"\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"s" o"s" i"y" o"\x08sy" i"s" o"s" i"t" o"t" i"e" o"e" i"m" o"m" i"c" o"c" i"\x09" o"tl\x1b[1m \x1b[0m" i"-" o"\x08\x1b[0m -" i"-" o"-" i"v" o"v" i"e" o"e" i"r" o"r" i"s" o"s" i"i" o"i" i"o" o"o" i"n" o"n" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0a" o"systemd 252 (252.38-1~deb12u1)\x0d\x0a+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT -GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT +QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified\x0d\x0a" o"\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d" o"\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K" o"\x1b[?1h\x1b=\x1b[?2004h" i"\x1b[A" o"systemctl --version" i"\x1b[A" o"\x1b[19Dls                 \x1b[17D" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0anotes.txt\x0d\x0a" o"\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d" o"\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K" o"\x1b[?1h\x1b=" o"\x1b[?2004h" i"\x12" o"\x0d\x0d\x0abck-i-search: _\x1b[K\x1b[A\x08\x08" i"s" o"l\x1b[4ms\x1b[24m\x1b[1B\x08s_\x1b[A\x08\x08" i"y" o"\x08\x1b[4ms\x1b[4my\x1b[24mstemctl --version\x1b[1B\x1b[17Dy_\x1b[A\x08\x08\x08\x08" i"s" o"\x1b[4ms\x1b[4my\x1b[4ms\x1b[24m\x1b[1Bs_\x1b[A\x08\x08\x08\x08\x08" i"\x0d"
o"\x1b[24ms\x1b[24my\x1b[24ms\x1b[1B\x0d\x1b[K\x1b[A\x1b[13C\x1b[?1l\x1b>\x1b[?2004l\x1b[1B\x0d" o"systemd 252 (252.38-1~deb12u1)\x0d\x0a+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT -GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT +QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified\x0d\x0a" o"\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"e" o"e" i"c" o"\x08ec" i"h" o"h" i"o" o"o" i" " o" " i"h" o"h" i"l" o"l" i"l" o"l" i"o" o"o" i"\x1b[D" o"\x08" i"\x1b[D" o"\x08" i"\x1b[D" o"\x08" i"e" o"ello\x08\x08\x08" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0ahello\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"e" o"e" i"c" o"\x08ec" i"h" o"h" i"o" o"o" i" " o" " i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i"a" o"a" i" " o" " i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b \x0d\x1b[K" i"b" o"b" i"b" o"\x0dbb" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"b" o"b" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"c" o"c" i"d" o"\x08cd" i" " o" " i"/" o"/" i"v" o"v" i"a" o"a" i"r" o"r" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:/var# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"c" o"c" i"d" o"\x08cd" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"r" o"r" i"e" o"\x08re" i"a" o"a" i"d" o"d" i" " o" " i"-" o"-" i"s" o"s" i" " o" " i"'" o"'" i"?" o"?" i"[" o"[" i"s" o"s" i"u" o"u" i"d" o"d" i"o" o"o" i"]" o"]" i" " o" " i"p" o"p" i"a" o"a" i"s" o"s" i"s" o"s" i"w" o"w" i"o" o"o" i"r" o"r" i"d" o"d" i" " o" " i"f" o"f" i"o" o"o" i"r" o"r" i" " o" " i"r" o"r" i"o" o"o" i"o" o"o" i"t" o"t" i":" o":" i" " o" " i"'" o"'" i" " o" " i"p" o"p" i"w" o"w" i";" o";" i" " o" " i"e" o"e" i"c" o"c" i"h" o"h" i"o" o"o" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0a[sudo] password for root: " i"h" i"u" i"n" i"t" i"e" i"r" i"2" i"\x0d"
o"\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"s" o"s" i"y" o"\x08sy" i"s" o"s" i"t" o"t" i"e" o"e" i"m" o"m" i"d" o"d" i"-" o"-" i"c" o"c" i"\x09" o"\x07\x0d\x0d\x0a\x1b[Jsystemd-cat          systemd-cgtop        systemd-cryptenroll\x0d\x0asystemd-cgls         systemd-creds        \x1b[A\x1b[A\x1b[0m\x1b[27m\x1b[24m\x0d\x1b[13Csystemd-c\x1b[K" i"\x09" o"\x07at" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0a\x1b[J" o"\x1b[0;1;31mFailed to create stream fd: No such file or directory\x1b[0m\x0d\x0d\x0a" o"\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d" o"\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# " o"\x1b[K" o"\x1b[?1h\x1b=" o"\x1b[?2004h" i"echo one\x0decho two\x0d"
o"e\x08echo one\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0aone\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004he\x08echo two\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0atwo\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"\x1b[200~echo three\x0decho four\x1b[201~"
o"\x1b[7mecho three\x1b[27m\x0d\x0d\x0a\x1b[7mecho four\x1b[27m\x1b[K" i"\x0d"
o"\x1b[A\x1b[4C\x1b[27me\x1b[27mc\x1b[27mh\x1b[27mo\x1b[27m \x1b[27mt\x1b[27mh\x1b[27mr\x1b[27me\x1b[27me\x1b[1B\x0d\x1b[27me\x1b[27mc\x1b[27mh\x1b[27mo\x1b[27m \x1b[27mf\x1b[27mo\x1b[27mu\x1b[27mr\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0athree\x0d\x0afour\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                               \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"e" o"e" i"c" o"\x08ec" i"h" o"h" i"o" o"o" i" " o" " i"r" o"r" i"e" o"e" i"s" o"s" i"i" o"i" i"z" o"z" i"e" o"e" i"d" o"d" r30x100 o"\x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# echo resized" i"\x0d"
o"\x1b[?1l\x1b>\x1b[?2004l\x0d\x0d\x0aresized\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                                                   \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"b" o"b" i"a" o"\x08ba" i"d" o"d" i"c" o"c" i"m" o"m" i"d" o"d" i"\x03"
o"\x1b[?2004l\x0d\x0d\x0a\x1b[1m\x1b[7m#\x1b[27m\x1b[1m\x1b[0m                                                                                                   \x0d \x0d\x0d\x1b[0m\x1b[27m\x1b[24m\x1b[Jroot@db-1:~# \x1b[K\x1b[?1h\x1b=\x1b[?2004h" i"\x04"
o"\x1b[?2004l\x0d\x0d\x0a"
"#;
}
