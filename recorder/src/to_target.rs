//! Client to target, one writer task per channel, off the connection's loop.
//!
//! russh runs a connection on one loop that reads the client's packets and calls the handler.
//! If the handler waited there for the target's window, the loop would stop reading, so it
//! would stop taking the client's window adjustments, so output to the client would stop, so
//! the target would stop reading its input: a program that echoes what it reads (`cat`,
//! a `-R` echo service) deadlocked after a few MiB. So the handler only records a chunk and
//! queues it here, and a task per channel hands it to the target. Flow control moves to the
//! queue: the gateway runs russh with `manual_window_adjust` (the vendored patch, see
//! `vendor/russh/PATCHES.md`), and a chunk's bytes are granted back to the client only once
//! the target took them. A client that sends more than its window (it ignores flow control)
//! finds the queue over [`Relays::limit`], and its session is cut: memory stays bounded.
//!
//! Channel requests that must stay in order with the data (EOF, close, window changes,
//! signals) go through the same queue. Data for a channel the gateway opened towards the user
//! (remote, agent or X11 forwarding) can arrive before the gateway has its writer: it waits
//! here, counted against the same limit, and is recorded and queued when the writer arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use russh::client::Msg as ClientMsg;
use russh::{ChannelId, ChannelWriteHalf, Sig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One thing for the target, in the order the client sent it.
#[derive(Debug)]
pub enum Up {
    Data(Bytes),
    Extended(u32, Bytes),
    Eof,
    WindowChange { cols: u32, rows: u32, pix_width: u32, pix_height: u32 },
    Signal(Sig),
    Close,
}

impl Up {
    fn bytes(&self) -> usize {
        match self {
            Self::Data(b) | Self::Extended(_, b) => b.len(),
            _ => 0,
        }
    }
}

/// What became of something the client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    /// Queued for the target (or to wait for the channel's writer).
    Queued,
    /// The channel's writer is gone (the target side closed): dropped, and the client's
    /// window is the caller's to give back.
    Gone,
    /// Not recorded (the recording failed): dropped; the session is being cut.
    Unrecorded,
    /// The client sent more than its window allows: the session must be cut.
    Overrun,
}

#[derive(Debug)]
enum Slot {
    /// The gateway is still opening this channel's writer.
    Early {
        ops: Vec<Up>,
        bytes: usize,
    },
    Open(Writer),
}

#[derive(Clone, Debug)]
struct Writer {
    tx: mpsc::UnboundedSender<Up>,
    queued: Arc<AtomicUsize>,
}

/// The queues of one session's channels.
#[derive(Debug)]
pub struct Relays {
    slots: Mutex<HashMap<ChannelId, Slot>>,
    limit: usize,
}

/// The receiving end of one channel's queue, for [`write`].
#[derive(Debug)]
pub struct Queue {
    rx: mpsc::UnboundedReceiver<Up>,
    queued: Arc<AtomicUsize>,
}

impl Relays {
    /// Bytes one channel may have queued: the window the client was given, plus one packet.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self { slots: Mutex::new(HashMap::new()), limit }
    }

    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Opens channel `ch`'s queue; anything that arrived before is recorded (through
    /// `record`, in order) and queued first. Returns the end [`write`] drains.
    pub fn open(&self, ch: ChannelId, mut record: impl FnMut(&Up) -> bool) -> Queue {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer { tx, queued: queued.clone() };
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(Slot::Early { ops, .. }) = slots.remove(&ch) {
            for op in ops {
                if !record(&op) {
                    break;
                }
                queued.fetch_add(op.bytes(), Ordering::AcqRel);
                let _ = writer.tx.send(op);
            }
        }
        slots.insert(ch, Slot::Open(writer));
        Queue { rx, queued }
    }

    /// Routes `op` from the client on channel `ch`: once `record` took it (for data), to the
    /// channel's writer; before the writer exists, to wait for it.
    pub fn route(&self, ch: ChannelId, op: Up, record: impl FnOnce(&Up) -> bool) -> Routed {
        let n = op.bytes();
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match slots.entry(ch).or_insert_with(|| Slot::Early { ops: Vec::new(), bytes: 0 }) {
            Slot::Open(w) => {
                if w.tx.is_closed() {
                    return Routed::Gone;
                }
                if w.queued.load(Ordering::Acquire) + n > self.limit {
                    return Routed::Overrun;
                }
                if !record(&op) {
                    return Routed::Unrecorded;
                }
                w.queued.fetch_add(n, Ordering::AcqRel);
                match w.tx.send(op) {
                    Ok(()) => Routed::Queued,
                    Err(_) => {
                        w.queued.fetch_sub(n, Ordering::AcqRel);
                        Routed::Gone
                    }
                }
            }
            Slot::Early { ops, bytes } => {
                if *bytes + n > self.limit {
                    return Routed::Overrun;
                }
                *bytes += n;
                ops.push(op);
                Routed::Queued
            }
        }
    }

    /// The client closed channel `ch`: its queue is forgotten (the writer still drains what
    /// it holds). A writer that ended on its own (the target side closed) stays known, so
    /// what the client sends until it sees the close is dropped, never left waiting.
    pub fn forget(&self, ch: ChannelId) {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.remove(&ch);
    }

    /// The connection ended: every queue closes, and each writer ends once it handed the
    /// target what it still holds.
    pub fn close_all(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.clear();
    }

    /// Bytes queued on `ch` and not yet taken by the target.
    #[cfg(test)]
    fn queued(&self, ch: ChannelId) -> usize {
        let slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match slots.get(&ch) {
            Some(Slot::Open(w)) => w.queued.load(Ordering::Acquire),
            Some(Slot::Early { bytes, .. }) => *bytes,
            None => 0,
        }
    }
}

/// Hands channel `ch`'s queue to the target in order, giving the client's window back as the
/// target takes each chunk, until the client closes the channel, the target side fails, or
/// `stop` (the cut, or the end of the connection) fires.
pub async fn write(
    mut queue: Queue,
    ch: ChannelId,
    up: Arc<ChannelWriteHalf<ClientMsg>>,
    client: russh::server::Handle,
    cut: CancellationToken,
) {
    loop {
        let op = tokio::select! {
            biased;
            () = cut.cancelled() => break,
            op = queue.rx.recv() => match op { Some(op) => op, None => break },
        };
        // Nothing is relayed once the session is cut.
        if cut.is_cancelled() {
            break;
        }
        let n = op.bytes();
        let sent = match op {
            Up::Data(b) => up.data_bytes(b).await.is_ok(),
            Up::Extended(code, b) => up.extended_data_bytes(code, b).await.is_ok(),
            Up::Eof => up.eof().await.is_ok(),
            Up::WindowChange { cols, rows, pix_width, pix_height } => {
                up.window_change(cols, rows, pix_width, pix_height).await.is_ok()
            }
            Up::Signal(sig) => up.signal(sig).await.is_ok(),
            Up::Close => {
                let _ = up.close().await;
                false
            }
        };
        if n > 0 {
            queue.queued.fetch_sub(n, Ordering::AcqRel);
            // The target took it: the client may send that much more.
            let _ = client.window_consumed(ch, u32::try_from(n).unwrap_or(u32::MAX));
        }
        if !sent {
            break;
        }
    }
    // Whatever is still queued is dropped with the receiver; later sends find it closed.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::tests::channel;

    fn data(n: usize) -> Up {
        Up::Data(Bytes::from(vec![b'x'; n]))
    }

    #[test]
    fn a_client_past_its_window_is_an_overrun_and_nothing_past_it_is_queued() {
        let relays = Relays::new(100);
        let ch = channel(0);
        let _queue = relays.open(ch, |_| true);
        assert_eq!(relays.route(ch, data(60), |_| true), Routed::Queued);
        assert_eq!(relays.route(ch, data(40), |_| true), Routed::Queued);
        let mut recorded = false;
        assert_eq!(
            relays.route(ch, data(1), |_| {
                recorded = true;
                true
            }),
            Routed::Overrun
        );
        assert!(!recorded, "an overrun chunk is neither recorded nor queued");
        assert_eq!(relays.queued(ch), 100);
    }

    #[test]
    fn early_data_waits_for_the_writer_and_is_recorded_in_order_when_it_arrives() {
        let relays = Relays::new(100);
        let ch = channel(3);
        assert_eq!(relays.route(ch, data(10), |_| panic!("recorded early")), Routed::Queued);
        assert_eq!(relays.route(ch, Up::Eof, |_| true), Routed::Queued);
        assert_eq!(relays.route(ch, data(95), |_| true), Routed::Overrun);
        let mut seen = Vec::new();
        let mut queue = relays.open(ch, |op| {
            seen.push(op.bytes());
            true
        });
        assert_eq!(seen, [10, 0]);
        assert!(matches!(queue.rx.try_recv(), Ok(Up::Data(b)) if b.len() == 10));
        assert!(matches!(queue.rx.try_recv(), Ok(Up::Eof)));
    }

    #[test]
    fn a_closed_writer_is_gone_and_unrecorded_chunks_are_not_queued() {
        let relays = Relays::new(100);
        let ch = channel(1);
        let queue = relays.open(ch, |_| true);
        assert_eq!(relays.route(ch, data(5), |_| false), Routed::Unrecorded);
        assert_eq!(relays.queued(ch), 0);
        drop(queue);
        assert_eq!(relays.route(ch, data(5), |_| true), Routed::Gone);
    }
}
