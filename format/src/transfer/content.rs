//! The content of one SFTP file in one direction: bytes counted and hashed in file-offset order.
//! In-order content is hashed straight from the input; content ahead of the contiguous prefix
//! is held (within the tracker's [`Budget`]) until it can be hashed, and holes, overlaps and
//! too many fragments cost the digest, with a [`Note`] saying why.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::Note;

/// Bytes of out-of-order content held by one tracker.
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) used: usize,
    pub(super) limit: usize,
}

impl Budget {
    fn take(&mut self, n: usize) -> bool {
        match self.used.checked_add(n) {
            Some(total) if total <= self.limit => {
                self.used = total;
                true
            }
            _ => false,
        }
    }

    fn give(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
    }
}

/// A piece of content past the contiguous prefix. While the digest is alive
/// it holds its bytes; afterwards only its extent (`data` empty).
#[derive(Debug)]
struct Piece {
    end: u64,
    data: Vec<u8>,
    reserved: usize,
}

/// The piece currently streaming in from one packet.
#[derive(Debug)]
enum Cur {
    Idle,
    /// At the end of the contiguous prefix: hashed straight from the input.
    Direct,
    /// Ahead of the prefix: copied until it can be hashed.
    Buffer {
        offset: u64,
        data: Vec<u8>,
        reserved: usize,
    },
    /// Digest already lost: only the extent is kept.
    Count {
        offset: u64,
        len: u64,
    },
}

#[derive(Debug)]
pub(super) struct Content {
    /// A READ or WRITE was sent for this direction.
    pub(super) requested: bool,
    bytes: u64,
    /// End of the contiguous run of content starting at offset 0.
    next: u64,
    hasher: Option<Sha256>,
    /// Why the digest was lost.
    loss: Option<Note>,
    /// Pieces past `next`, keyed by start; never overlapping, none at `next`.
    ahead: BTreeMap<u64, Piece>,
    /// Too many pieces: coverage no longer known.
    fragmented: bool,
    cur: Cur,
}

/// What a [`Content`] amounts to at the end.
#[derive(Debug)]
pub(super) struct Summary {
    pub(super) bytes: u64,
    pub(super) sha256: Option<[u8; 32]>,
    pub(super) notes: Vec<Note>,
    /// `Some(end)` when content covers exactly `0..end`.
    pub(super) contiguous_end: Option<u64>,
}

impl Content {
    pub(super) fn new() -> Self {
        Self {
            requested: false,
            bytes: 0,
            next: 0,
            hasher: Some(Sha256::new()),
            loss: None,
            ahead: BTreeMap::new(),
            fragmented: false,
            cur: Cur::Idle,
        }
    }

    pub(super) fn begin(&mut self, offset: u64, len: u32, budget: &mut Budget) {
        self.abort_piece(budget);
        self.requested = true;
        let len_usize = len as usize;
        self.cur = if self.hasher.is_none() {
            Cur::Count { offset, len: 0 }
        } else if offset == self.next {
            Cur::Direct
        } else if offset < self.next {
            self.lose(Note::Overlap { offset }, budget);
            Cur::Count { offset, len: 0 }
        } else if budget.take(len_usize) {
            Cur::Buffer { offset, data: Vec::with_capacity(len_usize), reserved: len_usize }
        } else {
            self.lose(Note::ReorderBufferFull { limit: budget.limit }, budget);
            Cur::Count { offset, len: 0 }
        };
    }

    pub(super) fn data(&mut self, bytes: &[u8]) {
        let n = bytes.len() as u64;
        self.bytes = self.bytes.saturating_add(n);
        match &mut self.cur {
            Cur::Direct => {
                if let Some(h) = &mut self.hasher {
                    h.update(bytes);
                }
                self.next = self.next.saturating_add(n);
            }
            Cur::Buffer { data, reserved, .. } => {
                let room = reserved.saturating_sub(data.len());
                data.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Cur::Count { len, .. } => *len = len.saturating_add(n),
            Cur::Idle => {}
        }
    }

    pub(super) fn end(&mut self, budget: &mut Budget, max_fragments: usize) {
        match std::mem::replace(&mut self.cur, Cur::Idle) {
            Cur::Idle => {}
            Cur::Direct => self.drain(budget),
            Cur::Buffer { offset, data, reserved } => {
                let end = offset.saturating_add(data.len() as u64);
                if data.is_empty() {
                    budget.give(reserved);
                } else if self.hasher.is_none() || self.overlaps_ahead(offset, end) {
                    budget.give(reserved);
                    self.lose(Note::Overlap { offset }, budget);
                    self.add_extent(offset, end, budget, max_fragments);
                } else {
                    self.ahead.insert(offset, Piece { end, data, reserved });
                    self.check_fragments(budget, max_fragments);
                }
            }
            Cur::Count { offset, len } => {
                self.add_extent(offset, offset.saturating_add(len), budget, max_fragments);
            }
        }
    }

    /// Drops a piece cut short (channel end): the peer never completed it.
    pub(super) fn abort_piece(&mut self, budget: &mut Budget) {
        if let Cur::Buffer { reserved, .. } = std::mem::replace(&mut self.cur, Cur::Idle) {
            budget.give(reserved);
        }
    }

    fn overlaps_ahead(&self, start: u64, end: u64) -> bool {
        let before = self.ahead.range(..=start).next_back().is_some_and(|(_, p)| p.end > start);
        let after = self.ahead.range(start..end).next().is_some();
        before || after
    }

    /// Hashes pieces that became contiguous.
    fn drain(&mut self, budget: &mut Budget) {
        while let Some(entry) = self.ahead.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let piece = entry.remove();
            budget.give(piece.reserved);
            if start < self.next {
                self.lose(Note::Overlap { offset: start }, budget);
            } else if let Some(h) = &mut self.hasher {
                h.update(&piece.data);
            }
            self.next = self.next.max(piece.end);
        }
    }

    /// Gives up the digest, keeping only the extents of pieces.
    fn lose(&mut self, why: Note, budget: &mut Budget) {
        if self.hasher.take().is_some() {
            self.loss = Some(why);
        }
        for piece in self.ahead.values_mut() {
            budget.give(piece.reserved);
            piece.reserved = 0;
            piece.data = Vec::new();
        }
    }

    /// Records that `start..end` was seen (digest already lost).
    fn add_extent(&mut self, start: u64, end: u64, budget: &mut Budget, max_fragments: usize) {
        if end <= start || end <= self.next || self.fragmented {
            return;
        }
        if start <= self.next {
            self.next = end;
            self.drain(budget);
            return;
        }
        let (mut start, mut end) = (start, end);
        if let Some((&s, p)) = self.ahead.range(..=start).next_back()
            && p.end >= start
        {
            start = s;
            end = end.max(p.end);
            self.ahead.remove(&s);
        }
        while let Some((&s, p)) = self.ahead.range(start..=end).next() {
            end = end.max(p.end);
            self.ahead.remove(&s);
        }
        self.ahead.insert(start, Piece { end, data: Vec::new(), reserved: 0 });
        self.check_fragments(budget, max_fragments);
    }

    fn check_fragments(&mut self, budget: &mut Budget, max_fragments: usize) {
        if self.ahead.len() > max_fragments {
            self.lose(Note::TooFragmented, budget);
            self.fragmented = true;
            self.ahead.clear();
        }
    }

    pub(super) fn summary(mut self, budget: &mut Budget) -> Summary {
        self.abort_piece(budget);
        for piece in self.ahead.values() {
            budget.give(piece.reserved);
        }
        let mut notes = Vec::new();
        let contiguous = !self.fragmented && self.ahead.is_empty();
        if !contiguous && !self.fragmented {
            notes.push(Note::Hole { offset: self.next });
        }
        let sha256 = match (self.hasher, contiguous) {
            (Some(h), true) => Some(h.finalize().into()),
            _ => None,
        };
        notes.extend(self.loss);
        Summary {
            bytes: self.bytes,
            sha256,
            notes,
            contiguous_end: contiguous.then_some(self.next),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let cur = match &self.cur {
            Cur::Buffer { data, .. } => data.capacity(),
            _ => 0,
        };
        cur + self.ahead.len() * 64 + self.ahead.values().map(|p| p.data.capacity()).sum::<usize>()
    }
}
