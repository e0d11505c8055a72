//! The reviewer's commands: `breakglass review`, `search`, `replay` and `recording bundle`.
//!
//! `replay` verifies the recording's signature before anything else and says so on its first
//! line; the recording's output then goes through `format::replay`'s sanitizer, so nothing
//! the session printed can act on the reviewer's terminal.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bot::client::Client;
use bot::http::views::SearchQuery;
use ed25519_dalek::VerifyingKey;
use format::integrity::{Expected, Sidecar, Verified};
use format::replay::{self, Control, Options, Start, Wake};

use crate::cli::{EXIT_FAILURE, EXIT_LOCAL, Failure};

/// `breakglass review [ID]`.
pub async fn review(c: &Client, id: Option<&str>, json: bool) -> Result<(), Failure> {
    let link = c.review_link(id).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&link).unwrap_or_default());
        return Ok(());
    }
    let expires = shared::core::Timestamp::from_unix(link.expires_at).rfc3339();
    outln!("{}", link.url);
    errln!("open it in your browser before {expires}; it works once and is yours alone");
    Ok(())
}

/// `breakglass search QUERY`.
pub async fn search(c: &Client, q: &SearchQuery, json: bool) -> Result<(), Failure> {
    let hits = c.search(q).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&hits).unwrap_or_default());
        return Ok(());
    }
    if hits.hits.is_empty() {
        outln!("no command contains {:?}", q.q);
        return Ok(());
    }
    for h in &hits.hits {
        let when = shared::core::Timestamp::from_unix(h.at).rfc3339();
        outln!(
            "{:<10} {:<20} {}@{}  +{}  {}\n           {}",
            replay::printable(&h.code),
            when,
            replay::printable(&h.requester),
            replay::printable(&h.host),
            clock(h.t),
            replay::printable(&h.command),
            replay::printable(&h.url)
        );
    }
    outln!("{} hit(s)", hits.hits.len());
    Ok(())
}

/// `breakglass recording bundle ID -o FILE`.
pub async fn bundle(c: &Client, id: &str, out: Option<&Path>) -> Result<(), Failure> {
    let bytes = c.bundle(id).await?;
    let safe: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let path =
        out.map_or_else(|| PathBuf::from(format!("{safe}-bundle.tar.gz")), Path::to_path_buf);
    std::fs::write(&path, &bytes)
        .map_err(|e| Failure::new(EXIT_LOCAL, format!("cannot write {}: {e}", path.display())))?;
    outln!(
        "wrote {} ({} bytes); verify it offline: tar xzf {} and follow its README.md",
        path.display(),
        bytes.len(),
        path.display()
    );
    Ok(())
}

fn clock(t: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small, >= 0
    let ms = (t.max(0.0) * 1000.0).round() as u64;
    let s = ms / 1000;
    format!("{}:{:02}.{}", s / 60, s % 60, ms % 1000 / 100)
}

/// What `replay` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct ReplayArgs {
    pub speed: f64,
    pub idle_max: Option<Duration>,
    pub at: Option<usize>,
    pub from: Option<Duration>,
    pub list_commands: bool,
}

/// A recording to replay and what its signature check said.
#[derive(Debug)]
pub struct Loaded {
    pub name: String,
    pub bytes: Vec<u8>,
    pub check: Result<Verified, String>,
    /// Where the key came from, for the first line.
    pub key_source: String,
}

/// Reads `file` and checks it against `FILE.sig` and `pins`.
pub fn load_file(file: &Path, pins: &[VerifyingKey], key_source: &str) -> Result<Loaded, Failure> {
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::new(EXIT_LOCAL, format!("cannot read {}: {e}", file.display())))?;
    let check = if pins.is_empty() {
        Err("no recording key to check it against (pass --key FILE or --config)".to_owned())
    } else {
        format::integrity::verify_file(file, pins).map_err(|e| e.to_string())
    };
    Ok(Loaded { name: file.display().to_string(), bytes, check, key_source: key_source.to_owned() })
}

/// Fetches a finished session's recording from the server and checks it against `pins`, or,
/// with none given, against the keys the server trusts (said so on the first line).
pub async fn load_remote(c: &Client, id: &str, pins: &[VerifyingKey]) -> Result<Loaded, Failure> {
    let d = c.recording(id).await?;
    let (pins, key_source) = if pins.is_empty() {
        let keys: Vec<VerifyingKey> = d
            .recording_keys
            .iter()
            .filter_map(|k| shared::core::approval::parse_public_key(k).ok())
            .collect();
        (keys, "the server's recording key (pin your own with --key)".to_owned())
    } else {
        (pins.to_vec(), "your pinned key".to_owned())
    };
    let bytes = d.cast.into_bytes();
    // What we asked for, whatever the server answers: the signature must bind that session.
    let expected = Expected {
        code: shared::core::GrantCode::parse(id).ok(),
        request_id: id.parse().ok(),
        by: "the session you asked for",
        ..Expected::default()
    };
    let check = serde_json::from_value::<Sidecar>(d.sidecar)
        .map_err(|e| format!("the signature sidecar does not parse: {e}"))
        .and_then(|side| {
            format::integrity::verify_bytes(&bytes, &side, &pins, &expected)
                .map_err(|e| e.to_string())
        });
    Ok(Loaded { name: format!("{} ({})", d.code, d.file), bytes, check, key_source })
}

/// Plays `loaded` on this terminal (or lists its commands).
pub fn play(loaded: &Loaded, args: &ReplayArgs) -> Result<(), Failure> {
    let mut err = std::io::stderr();
    // The first line: whether the recording is what the gateway signed. It is said again
    // last, however the replay ends: the recording's output cannot clear the scrollback, but
    // it can draw anything on the screen, a fake verdict included.
    let _ = writeln!(err, "{}", verdict(loaded, false));
    let result = play_checked(loaded, args, &mut err);
    let _ = writeln!(err, "\r\n{}", verdict(loaded, true));
    result
}

/// What the signature check said (red when it failed), before or `after` the replay.
fn verdict(loaded: &Loaded, after: bool) -> String {
    let then = if after { "what was shown" } else { "what follows" };
    match &loaded.check {
        Ok(v) => format!(
            "recording verified: {} is exactly what the gateway signed for session {} (request {}, {} to {}; key {}, checked against {})",
            replay::printable(&loaded.name),
            v.session.code,
            v.session.request_id,
            v.session.started_at.rfc3339(),
            v.session.ended_at.rfc3339(),
            v.key_id,
            loaded.key_source
        ),
        Err(why) => format!(
            "\x1b[1;31mWARNING: recording NOT VERIFIED: {}: {}\x1b[0m\n{then} may have been altered after the session",
            replay::printable(&loaded.name),
            replay::printable(why)
        ),
    }
}

fn play_checked(
    loaded: &Loaded,
    args: &ReplayArgs,
    err: &mut std::io::Stderr,
) -> Result<(), Failure> {
    let cast = format::cast::parse_bytes(&loaded.bytes).map_err(|e| {
        let why = e.to_string();
        Failure::new(
            EXIT_LOCAL,
            format!(
                "{} is not a recording: {}",
                replay::printable(&loaded.name),
                replay::printable(&why)
            ),
        )
    })?;
    let commands = replay::commands(&cast);
    if args.list_commands {
        if commands.is_empty() {
            outln!("no commands in this recording");
        }
        for (i, (t, label)) in commands.iter().enumerate() {
            outln!("{:>4}  +{:<9} {}", i + 1, clock(*t), replay::printable(label));
        }
        return Ok(());
    }
    let start = match (args.at, args.from) {
        (Some(n), _) => Start::Command(n),
        (None, Some(t)) => Start::At(t),
        (None, None) => Start::Beginning,
    };
    let options = Options { speed: args.speed, idle_max: args.idle_max, start };
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive {
        let _ =
            writeln!(err, "keys: space pause/resume, . step (paused), + faster, - slower, q quit");
    }
    let guard = TerminalGuard::enter(interactive);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = if interactive {
        replay::play(&cast, &options, &mut out, &mut keys)
    } else {
        replay::play(&cast, &options, &mut out, &mut |limit: Option<Duration>| {
            std::thread::sleep(limit.unwrap_or(replay::MAX_WAIT).min(Duration::from_secs(3600)));
            Ok(Wake::TimedOut)
        })
    };
    let _ = out.flush();
    drop(out);
    drop(guard);
    match result {
        Ok(r) => {
            let how = if r.reached_end { "ended" } else { "stopped" };
            let _ = writeln!(
                err,
                "\r\nreplay {how} at +{}: {} output event(s), {} escape sequence(s) neutralised",
                clock(r.position.as_secs_f64()),
                r.events_written,
                r.neutralised
            );
            Ok(())
        }
        Err(replay::PlayError::NoSuchCommand { requested, available }) => Err(Failure::new(
            EXIT_FAILURE,
            format!(
                "no command {requested}: the recording has {available} (list them with --commands)"
            ),
        )),
        Err(replay::PlayError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(Failure::output(&e))
        }
        Err(e) => Err(Failure::new(EXIT_FAILURE, e.to_string())),
    }
}

/// Waits for keys in raw mode: the replay's controls.
fn keys(limit: Option<Duration>) -> std::io::Result<Wake> {
    use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    let started = Instant::now();
    let deadline = limit.map(|l| started + l);
    loop {
        let left = deadline
            .map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
        if !event::poll(left)? {
            if deadline.is_some() {
                return Ok(Wake::TimedOut);
            }
            continue;
        }
        let Event::Key(k) = event::read()? else { continue };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let control = match k.code {
            KeyCode::Char(' ') => Control::TogglePause,
            KeyCode::Char('.') => Control::Step,
            KeyCode::Char('+' | '=') => Control::Faster,
            KeyCode::Char('-') => Control::Slower,
            KeyCode::Char('q') | KeyCode::Esc => Control::Quit,
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Control::Quit,
            _ => continue,
        };
        return Ok(Wake::Control { control, waited: started.elapsed() });
    }
}

/// Raw mode while replaying; restores the terminal on every exit path, panics included.
struct TerminalGuard {
    raw: bool,
}

impl TerminalGuard {
    fn enter(interactive: bool) -> Self {
        let raw = interactive && crossterm::terminal::enable_raw_mode().is_ok();
        Self { raw }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.raw {
            let _ = crossterm::terminal::disable_raw_mode();
        }
        let mut out = std::io::stdout();
        let _ = out.write_all(replay::RESTORE_TERMINAL.as_bytes());
        let _ = out.flush();
    }
}

/// `--from 90`, `--from 1:30`, `--from 1:02:03.5` or `--from 90s`.
pub fn parse_time(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a time: use seconds (90), M:SS (1:30) or H:MM:SS");
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(d);
    }
    let mut secs = 0.0_f64;
    for part in s.split(':') {
        let v: f64 = part.parse().map_err(|_| bad())?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad());
        }
        secs = secs * 60.0 + v;
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// The longest pause a replay keeps (`None`: every pause as recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleMax(pub Option<Duration>);

/// `--idle-max 2s`, or `off` for no cap.
pub fn parse_idle(s: &str) -> Result<IdleMax, String> {
    if matches!(s, "off" | "none") {
        return Ok(IdleMax(None));
    }
    parse_time(s).map(|d| IdleMax(Some(d)))
}

/// `--speed 2`, `--speed 0.5`.
pub fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (replay::MIN_SPEED..=replay::MAX_SPEED).contains(&v) {
        Ok(v)
    } else {
        Err(format!("speed {s} is out of range: use a value from 1/64 to 1024"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form() {
        assert_eq!(parse_time("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_time("1:30"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_time("1:02:03.5"), Ok(Duration::from_millis(3_723_500)));
        assert_eq!(parse_time("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_time("soon").is_err());
        assert!(parse_time("-3").is_err());
        assert_eq!(parse_idle("off"), Ok(IdleMax(None)));
        assert_eq!(parse_idle("2s"), Ok(IdleMax(Some(Duration::from_secs(2)))));
        assert!(parse_speed("0").is_err());
        assert!(parse_speed("2000").is_err());
        assert_eq!(parse_speed("2"), Ok(2.0));
    }
}
