//! Watching a live session: `GET /review/s/{code}/live` is a Server-Sent Events stream in
//! the protocol of asciinema-player's `eventsource` driver, fed by following the gateway's
//! in-progress `.cast` file (the gateway flushes it every 100 ms).
//!
//! 1. one reset message `{"cols", "rows", "time", "init"}`: the terminal size, the recording's
//!    clock now, and the output so far (its last [`INIT_MAX`] bytes), so the viewer starts on
//!    the current screen;
//! 2. then every new output event as written in the file (`[t, "o", "data"]`, passed through
//!    unchanged: each line of the file is already one JSON array), and resizes rewritten as
//!    `[t, "r", {"cols", "rows"}]` (the driver hands them to the terminal as they are, and the
//!    file's `"100x30"` form crashes it); input, markers and annotations stay out;
//! 3. `event: done` when the session ends (the request leaves `active`) or the viewer's
//!    browser session stops being valid (expired, or no longer a reviewer), checked with the
//!    request's status about once a second.
//!
//! This works when the bot can read the gateway's recordings directory (`breakglass up`, or a
//! shared volume); otherwise the page says the session cannot be watched here.

use std::convert::Infallible;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use format::store::RecordingStore;
use shared::core::event::RecordingViewed;
use shared::core::{RequestRef, Status};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{ReviewError, Reviewer, audit_view, load_request, reviewer_of};
use crate::recordings::Recordings;
use crate::service::Deps;

/// Most output replayed into the viewer's screen at the start.
pub const INIT_MAX: usize = 512 * 1024;
/// How often the file is read for new events.
const POLL: Duration = Duration::from_millis(150);
/// How often the request's status is checked.
const STATUS_EVERY: u32 = 7;

pub(super) async fn stream(
    State(deps): State<Deps>,
    State(recordings): State<Arc<Recordings>>,
    Reviewer(who, session): Reviewer,
    Path(code): Path<String>,
) -> Result<Response, ReviewError> {
    let req = load_request(&deps, &code).await?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    if req.status != Status::Active {
        // Over already: the page should load the recording instead.
        let _ = tx.send(Ok(Event::default().event("done").data("ended"))).await;
        drop(tx);
        return Ok(Sse::new(ReceiverStream::new(rx)).into_response());
    }
    let recordings = recordings.folder();
    let file = live_file(recordings.as_ref(), &req.code.to_string()).ok_or_else(|| {
        ReviewError::NotFound(format!("{code} (its live recording is not on this server)"))
    })?;
    audit_view(&deps, &who, Some(req.id), RecordingViewed::Live).await?;
    let id = req.id;
    tokio::spawn(async move {
        if let Err(e) = follow(&deps, id, &session, &recordings, &file, &tx).await {
            tracing::warn!(error = %e, file = %file, "live view stopped");
            let _ = tx.send(Ok(Event::default().data(r#"{"state":"offline"}"#))).await;
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response())
}

/// The newest `{code}-*.cast` in the recordings store: the session being recorded.
pub fn live_file(recordings: &dyn RecordingStore, code: &str) -> Option<String> {
    recordings.newest_of(code)
}

/// Recording `name` from byte `offset` on, as far as it is written now.
async fn read_from(
    recordings: &Arc<dyn RecordingStore>,
    name: &str,
    offset: u64,
) -> std::io::Result<Vec<u8>> {
    let (recordings, name) = (recordings.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        recordings.read_from(&name, offset)?.read_to_end(&mut out)?;
        Ok(out)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Sends the reset message, then new events until the session ends, the viewer leaves, or the
/// viewer's browser session stops being valid (expired, or no longer a reviewer).
async fn follow(
    deps: &Deps,
    id: shared::core::RequestId,
    viewer: &[u8; 32],
    recordings: &Arc<dyn RecordingStore>,
    name: &str,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
) -> anyhow::Result<()> {
    let buf = read_from(recordings, name, 0).await?;
    // Only whole lines; keep the rest for the next read.
    let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut pos = whole as u64;
    let text = String::from_utf8_lossy(&buf[..whole]);
    let mut lines = text.lines();
    let header: serde_json::Value =
        serde_json::from_str(lines.next().unwrap_or_default()).unwrap_or_default();
    let mut cols = header["width"].as_u64().unwrap_or(80);
    let mut rows = header["height"].as_u64().unwrap_or(24);
    let mut init = String::new();
    let mut time = 0.0;
    for line in lines {
        if let Ok(serde_json::Value::Array(ev)) = serde_json::from_str(line) {
            time = ev.first().and_then(serde_json::Value::as_f64).unwrap_or(time);
            let data = ev.get(2).and_then(|d| d.as_str()).unwrap_or_default();
            match ev.get(1).and_then(|c| c.as_str()) {
                Some("o") => init.push_str(data),
                Some("r") => {
                    if let Some((c, r)) = size(data) {
                        (cols, rows) = (c, r);
                    }
                }
                _ => {}
            }
        }
    }
    if init.len() > INIT_MAX {
        let mut cut = init.len() - INIT_MAX;
        while !init.is_char_boundary(cut) {
            cut += 1;
        }
        init.drain(..cut);
    }
    let reset = serde_json::json!({ "cols": cols, "rows": rows, "time": time, "init": init });
    if tx.send(Ok(Event::default().data(reset.to_string()))).await.is_err() {
        return Ok(());
    }
    let mut carry: Vec<u8> = Vec::new();
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(POLL).await;
        if tx.is_closed() {
            return Ok(()); // the viewer left
        }
        let more = read_from(recordings, name, pos).await?;
        pos += more.len() as u64;
        carry.extend_from_slice(&more);
        if let Some(end) = carry.iter().rposition(|b| *b == b'\n') {
            let ready: Vec<u8> = carry.drain(..=end).collect();
            for line in String::from_utf8_lossy(&ready).lines() {
                // Output and resizes only; markers and input stay out of the viewer's screen.
                let Some(message) = for_viewer(line) else { continue };
                if tx.send(Ok(Event::default().data(message))).await.is_err() {
                    return Ok(());
                }
            }
        }
        ticks += 1;
        if ticks.is_multiple_of(STATUS_EVERY) {
            let req = deps.store.get_request(&RequestRef::Id(id)).await?;
            if req.status != Status::Active || reviewer_of(deps, viewer).await.is_err() {
                let _ = tx.send(Ok(Event::default().event("done").data("ended"))).await;
                return Ok(());
            }
        }
    }
}

/// `"100x30"` as (cols, rows).
fn size(data: &str) -> Option<(u64, u64)> {
    let (c, r) = data.split_once('x')?;
    Some((c.trim().parse().ok()?, r.trim().parse().ok()?))
}

/// What the viewer gets for one line of the file: output as is, resizes in the driver's
/// form, nothing else.
fn for_viewer(line: &str) -> Option<String> {
    let ev: serde_json::Value = serde_json::from_str(line).ok()?;
    match ev.get(1)?.as_str()? {
        "o" => Some(line.to_owned()),
        "r" => {
            let (cols, rows) = size(ev.get(2)?.as_str()?)?;
            Some(serde_json::json!([ev.get(0)?, "r", { "cols": cols, "rows": rows }]).to_string())
        }
        _ => None,
    }
}

/// The in-progress recording as a live viewer may download it (the player's "watch from the
/// start"): the header, then whole lines of output (`o`), resizes (`r`) and markers (`m`)
/// only. Keystrokes (`i`) and annotations (`b`, which can carry raw input bytes) stay out, as
/// does a line that does not parse or is cut short.
pub fn output_only(cast: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cast.len());
    let mut lines = cast.split_inclusive(|b| *b == b'\n').filter(|l| l.ends_with(b"\n"));
    if let Some(header) = lines.next() {
        out.extend_from_slice(header);
    }
    for line in lines {
        let keep = serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|ev| {
            matches!(ev.get(1).and_then(serde_json::Value::as_str), Some("o" | "r" | "m"))
        });
        if keep {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{for_viewer, output_only};

    #[test]
    fn a_live_download_has_output_resizes_and_markers_only() {
        let cast = concat!(
            "{\"version\":2,\"width\":80,\"height\":24}\n",
            "[0.1,\"o\",\"Password: \"]\n",
            "[0.2,\"b\",\"i:aHVudGVyMg0=\"]\n",
            "[0.2,\"i\",\"hunter2\\r\"]\n",
            "[0.3,\"r\",\"100x30\"]\n",
            "[0.4,\"m\",\"ls\"]\n",
            "not json\n",
            "[0.5,\"i\",\"cut sho",
        );
        let got = String::from_utf8(output_only(cast.as_bytes())).expect("utf-8");
        assert_eq!(
            got,
            concat!(
                "{\"version\":2,\"width\":80,\"height\":24}\n",
                "[0.1,\"o\",\"Password: \"]\n",
                "[0.3,\"r\",\"100x30\"]\n",
                "[0.4,\"m\",\"ls\"]\n",
            )
        );
    }

    #[test]
    fn viewers_get_output_and_resizes_in_the_drivers_form_only() {
        assert_eq!(for_viewer(r#"[1.5,"o","hi\r\n"]"#).as_deref(), Some(r#"[1.5,"o","hi\r\n"]"#));
        assert_eq!(
            for_viewer(r#"[2.0,"r","100x30"]"#).as_deref(),
            Some(r#"[2.0,"r",{"cols":100,"rows":30}]"#)
        );
        assert_eq!(for_viewer(r#"[2.5,"i","secret\r"]"#), None, "keystrokes never go out");
        assert_eq!(for_viewer(r#"[3.0,"m","ls"]"#), None);
        assert_eq!(for_viewer(r#"[3.0,"r","garbage"]"#), None);
        assert_eq!(for_viewer("not json"), None);
    }
}
