//! One flush timer for every recording of the gateway.
//!
//! A recording's writer buffers whole lines; they must reach the file within
//! [`FLUSH_INTERVAL`] (a crash loses at most that much). Instead of a timer per session
//! (1,000 idle sessions woke 10,000 times a second for nothing), a recording that has
//! something to write, or a terminal screen that could go to sleep, puts itself on the
//! [`Flusher`]'s list ([`Recording::wants_ticks`]); one task ticks the listed recordings every
//! [`FLUSH_INTERVAL`], and each leaves the list once it has nothing left to do. With every
//! session idle the list is empty and the task sleeps until the next write: idle sessions
//! cost no CPU.

use std::sync::{Arc, Mutex, Weak};

use format::cast::FLUSH_INTERVAL;
use tokio_util::sync::CancellationToken;

use crate::live::{Cutter, EndReason};
use crate::recording::Recording;

/// A listed recording, and the session's cutter (a write that fails cuts the session).
struct Entry {
    recording: Weak<Mutex<Recording>>,
    cutter: Weak<Cutter>,
}

/// The recordings waiting for a tick. Shared by every session of a gateway; [`run`] ticks it.
#[derive(Default)]
pub struct Flusher {
    list: Mutex<Vec<Entry>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").field("listed", &self.listed()).finish_non_exhaustive()
    }
}

impl Flusher {
    /// Lists `recording` for ticks (call it when [`Recording::wants_ticks`] said so, after
    /// releasing the recording's lock).
    pub fn schedule(&self, recording: &Arc<Mutex<Recording>>, cutter: &Arc<Cutter>) {
        let entry = Entry { recording: Arc::downgrade(recording), cutter: Arc::downgrade(cutter) };
        let first = match self.list.lock() {
            Ok(mut l) => {
                l.push(entry);
                l.len() == 1
            }
            Err(_) => false,
        };
        if first {
            // Stored as a permit if the task is not waiting yet: no wake-up is lost.
            self.wake.notify_one();
        }
    }

    /// How many recordings are listed.
    pub fn listed(&self) -> usize {
        self.list.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Ticks every listed recording once; keeps those that want more. A recording whose
    /// write failed has its session cut (nothing may be relayed unrecorded).
    fn tick_all(&self) {
        let listed = match self.list.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => return,
        };
        let mut kept = Vec::with_capacity(listed.len());
        for entry in listed {
            let Some(recording) = entry.recording.upgrade() else { continue };
            let (keep, failed) = match recording.lock() {
                Ok(mut r) => {
                    let keep = r.tick();
                    (keep, r.failure().is_some())
                }
                Err(_) => (false, true),
            };
            if failed {
                if let Some(cutter) = entry.cutter.upgrade()
                    && cutter.reason().is_none()
                {
                    cutter.cut_in_background(
                        EndReason::RecordingFailed,
                        "breakglass: the session recording failed; session closed".to_owned(),
                    );
                }
            } else if keep {
                kept.push(entry);
            }
        }
        if let Ok(mut l) = self.list.lock() {
            // Recordings listed while this tick ran stay listed too.
            l.extend(kept);
        }
    }
}

/// Ticks `flusher` every [`FLUSH_INTERVAL`] while anything is listed, and sleeps while
/// nothing is, until `stop`.
pub async fn run(flusher: Arc<Flusher>, stop: CancellationToken) {
    loop {
        if flusher.listed() == 0 {
            tokio::select! {
                () = stop.cancelled() => return,
                () = flusher.wake.notified() => {}
            }
        }
        // A recording listed now is flushed within one interval of its first buffered line.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(FLUSH_INTERVAL) => {}
        }
        flusher.tick_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::tests::channel;
    use crate::recording::{ChannelKind, SCREEN_QUIET};

    fn recording(dir: &std::path::Path) -> Arc<Mutex<Recording>> {
        let (r, rx) = crate::recording::tests::recording(dir);
        std::mem::forget(rx);
        Arc::new(Mutex::new(r))
    }

    /// Runs `f` on the recording and lists it when it asks, as `Live::record` does.
    fn record(flusher: &Flusher, rec: &Arc<Mutex<Recording>>, f: impl FnOnce(&mut Recording)) {
        let schedule = {
            let mut r = rec.lock().expect("lock");
            f(&mut r);
            r.wants_ticks()
        };
        if schedule {
            let entry = Entry { recording: Arc::downgrade(rec), cutter: Weak::new() };
            flusher.list.lock().expect("lock").push(entry);
            flusher.wake.notify_one();
        }
    }

    fn file_text(dir: &std::path::Path) -> String {
        std::fs::read_to_string(dir.join("s.cast")).unwrap_or_default()
    }

    #[tokio::test]
    async fn one_timer_writes_what_a_session_buffered_within_the_interval_then_lets_it_go() {
        let dir = tempfile::tempdir().expect("tmp");
        let flusher = Arc::new(Flusher::default());
        let stop = CancellationToken::new();
        tokio::spawn(run(flusher.clone(), stop.clone()));
        let rec = recording(dir.path());
        let ch = channel(1);
        record(&flusher, &rec, |r| r.start(ch, ChannelKind::Exec("cat".into())));
        record(&flusher, &rec, |r| r.output(ch, b"first words"));
        assert_eq!(flusher.listed(), 1, "listed once, however many writes");
        assert!(!file_text(dir.path()).contains("first words"), "still buffered");
        tokio::time::sleep(FLUSH_INTERVAL * 2).await;
        assert!(file_text(dir.path()).contains("first words"), "on disk within the interval");
        // Nothing left to write, and no terminal: off the list, so an idle session costs no
        // wake-ups.
        assert_eq!(flusher.listed(), 0);
        // The next write lists it again.
        record(&flusher, &rec, |r| r.output(ch, b"more words"));
        assert_eq!(flusher.listed(), 1);
        tokio::time::sleep(FLUSH_INTERVAL * 2).await;
        assert!(file_text(dir.path()).contains("more words"));
        assert_eq!(flusher.listed(), 0);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_quiet_terminal_has_its_screen_put_to_sleep_and_leaves_the_list() {
        let dir = tempfile::tempdir().expect("tmp");
        let flusher = Arc::new(Flusher::default());
        let stop = CancellationToken::new();
        tokio::spawn(run(flusher.clone(), stop.clone()));
        let rec = recording(dir.path());
        let ch = channel(1);
        record(&flusher, &rec, |r| r.pty(ch, "xterm", 200, 50));
        record(&flusher, &rec, |r| r.start(ch, ChannelKind::Shell));
        record(&flusher, &rec, |r| r.output(ch, b"root@db-1:~# "));
        tokio::time::sleep(FLUSH_INTERVAL * 3).await;
        // Written, but the screen is awake: still listed until the session is quiet.
        assert!(file_text(dir.path()).contains("root@db-1"));
        assert_eq!(flusher.listed(), 1);
        tokio::time::sleep(SCREEN_QUIET + FLUSH_INTERVAL * 3).await;
        assert_eq!(flusher.listed(), 0, "asleep and off the list");
        // Typing wakes it, and commands are still read.
        record(&flusher, &rec, |r| {
            r.input(ch, b"id\r");
            r.output(ch, b"id\r\nuid=0(root)\r\nroot@db-1:~# ");
        });
        assert_eq!(flusher.listed(), 1);
        let found = rec.lock().expect("lock").finish("end").map(|(_, _, commands)| commands);
        assert_eq!(found, Some(1), "the command typed after the sleep was read");
        stop.cancel();
    }
}
