//! Fuzzing entry points for the recording format's parsers of outside input: the asciicast reader,
//! the replay sanitizer, the SFTP and scp observers, and the command tracker (its key decoder
//! and the terminal emulation behind it).
//!
//! Each function takes arbitrary bytes and must never panic; where a property holds for every
//! input it is asserted. The cargo-fuzz targets in `fuzz/` call these, and the corpus test
//! (`bot/tests/fuzz_corpus.rs`) replays every checked-in corpus file through them on stable.
//!
//! # Input format of the stream targets
//!
//! `sftp`, `scp` and `commands` read their input as frames: one tag byte, a little-endian
//! `u16` length, then that many bytes (or fewer at the end of the input). The tag says which
//! way the bytes went; `fuzz/seeds.py` builds the checked-in seeds in this form.

use std::time::Duration;

use crate::cast::{self, CastWriter, Header, Stream};
use crate::commands::CommandTracker;
use crate::replay::{self, Sanitizer};
use crate::transfer::{ScpTracker, SftpLimits, SftpTracker};

/// The targets this crate owns.
pub const TARGETS: &[shared::fuzzing::Target] = &[
    ("cast", cast),
    ("sanitizer", sanitizer),
    ("sftp", sftp),
    ("scp", scp),
    ("commands", commands),
];

/// Splits `data` into (tag, bytes) frames (see the module docs).
pub fn frames(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = data.split_first()?;
        let len = match rest {
            [lo, hi, ..] => usize::from(u16::from_le_bytes([*lo, *hi])),
            _ => 0,
        };
        let body = rest.get(2..).unwrap_or_default();
        let (chunk, tail) = body.split_at(len.min(body.len()));
        data = tail;
        Some((tag, chunk))
    })
}

/// Fuzz target `cast`: a `.cast` file from disk (the reviewer's tools read files anyone with
/// the disk could have edited), through the reader and everything built on it.
///
/// # Panics
/// If `complete_len` cuts anywhere but after a newline, or if bytes written through the
/// [`CastWriter`] do not read back exactly.
pub fn cast(data: &[u8]) {
    let n = cast::complete_len(data);
    assert!(n <= data.len() && (n == 0 || data[n - 1] == b'\n'), "complete_len {n}");
    if let Ok(c) = cast::parse_bytes(data) {
        for s in [Stream::Output, Stream::Input, Stream::Stderr] {
            let _ = c.raw_stream(s);
        }
        let _ = c.stream_digests();
        let _ = c.output_text();
        for (_, label) in replay::commands(&c) {
            let _ = replay::printable(&label);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cast::parse(text);
    }
    // The same bytes as recorded output, input and stderr must read back byte for byte.
    let half = data.len() / 2;
    let written = (|| {
        let mut w =
            CastWriter::new(Vec::new(), &Header { width: 80, height: 24, ..Header::default() })?;
        w.output(Duration::from_millis(1), &data[..half])?;
        w.input(Duration::from_millis(2), data)?;
        w.output(Duration::from_millis(3), &data[half..])?;
        w.exec_stderr(Duration::from_millis(4), data)?;
        w.finish(Duration::from_millis(5))
    })();
    let Ok((file, _)) = written else { return };
    let back = cast::parse_bytes(&file).unwrap_or_else(|e| panic!("own file unreadable: {e}"));
    for s in [Stream::Output, Stream::Input, Stream::Stderr] {
        assert_eq!(back.raw_stream(s).ok().as_deref(), Some(data), "{s:?} round trip");
    }
}

/// Fuzz target `sanitizer`: recorded output, as replay writes it to the reviewer's terminal.
/// The first byte picks where the rest is split in two chunks.
///
/// # Panics
/// If splitting the stream changes the output, or if the output holds a control string
/// introducer (OSC, DCS, SOS, PM, APC) or any C1 control.
pub fn sanitizer(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let mut cut = usize::from(split) * text.len() / 255;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let (whole, _) = sanitize(&[&text]);
    let (split_out, _) = sanitize(&[&text[..cut], &text[cut..]]);
    assert_eq!(whole, split_out, "output depends on where the stream was split");
    for bad in ["\u{1b}]", "\u{1b}P", "\u{1b}X", "\u{1b}^", "\u{1b}_"] {
        assert!(!whole.contains(bad), "{bad:?} passed the sanitizer");
    }
    assert!(!whole.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)), "a C1 control passed");
}

fn sanitize(chunks: &[&str]) -> (String, u64) {
    let mut s = Sanitizer::new();
    let mut out = String::new();
    for c in chunks {
        s.filter(c, &mut out);
    }
    s.finish();
    (out, s.neutralised())
}

/// Small limits, so that the fuzzer reaches every limit quickly.
const FUZZ_SFTP_LIMITS: SftpLimits = SftpLimits {
    max_packet: 64 * 1024,
    reorder_buffer: 64 * 1024,
    max_open_files: 8,
    max_pending_requests: 16,
    max_fragments: 8,
};

/// Fuzz target `sftp`: an SFTP conversation; frames with an even tag went from the client,
/// odd ones from the server.
///
/// # Panics
/// If the tracker holds far more memory than its limits allow.
pub fn sftp(data: &[u8]) {
    let mut t = SftpTracker::with_limits(FUZZ_SFTP_LIMITS);
    for (tag, chunk) in frames(data) {
        let _ = if tag % 2 == 0 { t.client_to_server(chunk) } else { t.server_to_client(chunk) };
        assert!(t.buffered_bytes() <= 4 * 1024 * 1024, "{} bytes held", t.buffered_bytes());
    }
    let _ = t.finish();
}

/// Fuzz target `scp`: the exec command line up to the first newline, then the conversation
/// as frames (even tag: from the client, odd: from the server).
pub fn scp(data: &[u8]) {
    let (command, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some(mut t) = ScpTracker::from_command(command) else { return };
    for (tag, chunk) in frames(rest) {
        let _ = if tag % 2 == 0 { t.client_to_server(chunk) } else { t.server_to_client(chunk) };
    }
    let _ = t.finish();
}

/// Fuzz target `commands`: a PTY session through the command tracker. The first two bytes are
/// the terminal's rows and columns; then frames: tag 0 (mod 4) output from the host, 1 keys
/// from the user (the key decoder), 2 a resize to the frame's first two bytes, 3 a quiet spell
/// (the screen is put to sleep, as the gateway does after `SCREEN_QUIET`).
pub fn commands(data: &[u8]) {
    let (size, rest) = data.split_at(data.len().min(2));
    let dim = |i: usize| u16::from(size.get(i).copied().unwrap_or(24));
    let mut t = CommandTracker::new(dim(0), dim(1));
    for (tag, chunk) in frames(rest) {
        let _ = match tag % 4 {
            0 => t.output(chunk),
            1 => t.input(chunk),
            2 => {
                let d = |i: usize| u16::from(chunk.get(i).copied().unwrap_or(1));
                t.resize(d(0), d(1));
                Vec::new()
            }
            _ => {
                t.sleep();
                Vec::new()
            }
        };
    }
    let _ = t.finish();
}
