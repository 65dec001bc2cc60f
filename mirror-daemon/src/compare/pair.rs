//! Where the two answers to one compared copy meet: a [`Pair`], shared by the primary's side
//! (the relay's tap, which frames the primary's answers) and the shadow's (the sender that reads
//! the shadow's answer to the copy). Whichever side comes second has the pair judged and counted.
//!
//! Both sides run on the same worker, so the lock is never contended; it only makes the hand-off
//! safe for the sender's task. A pair whose shadow side never reports (the copy was refused by a
//! full queue, or dropped at shutdown) is never judged: its fate is counted in
//! `mirror_copies_total` instead. A pair whose primary side goes away without an answer is judged
//! `not_compared` (`no_answer`) by the tap, which always reports one.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::{
    answer::{Primary, RequestLine, Shadow},
    comparison::Comparison,
};
use crate::mirror::budget::Budget;

/// The two answers to one compared copy, as they come in.
#[derive(Debug)]
pub struct Pair {
    comparison: Arc<Comparison>,
    request: RequestLine,
    sides: Mutex<Sides>,
}

#[derive(Debug, Default)]
struct Sides {
    primary: Option<Primary>,
    shadow: Option<Shadow>,
}

impl Pair {
    pub fn new(comparison: Arc<Comparison>, request: RequestLine) -> Arc<Self> {
        Arc::new(Self {
            comparison,
            request,
            sides: Mutex::new(Sides::default()),
        })
    }

    /// Bytes of each side's body to keep (`max_body_bytes`).
    pub fn max_body_bytes(&self) -> usize {
        self.comparison.settings().max_body_bytes
    }

    /// Whether a header of the answers matters to the comparison, so that captures keep it.
    pub fn keeps_header(&self, name: &str) -> bool {
        self.comparison.settings().keeps_header(name)
    }

    /// Adds field `name: value` of an answer's head or trailers to `fields` (name in lower
    /// case) if the comparison reads it.
    pub fn keep_field(&self, fields: &mut Vec<(String, Bytes)>, name: &str, value: &[u8]) {
        if self.keeps_header(name) {
            fields.push((name.to_ascii_lowercase(), Bytes::copy_from_slice(value)));
        }
    }

    /// The primary's side is in (the first report counts).
    pub fn primary(&self, primary: Primary) {
        let met = {
            let sides = &mut *self.lock();
            meet(&mut sides.primary, &mut sides.shadow, primary)
        };
        if let Some((primary, shadow)) = met {
            self.comparison.record(&self.request, &primary, &shadow);
        }
    }

    /// The shadow's side is in (the first report counts).
    pub fn shadow(&self, shadow: Shadow) {
        let met = {
            let sides = &mut *self.lock();
            meet(&mut sides.shadow, &mut sides.primary, shadow)
        };
        if let Some((shadow, primary)) = met {
            self.comparison.record(&self.request, &primary, &shadow);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sides> {
        self.sides.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One side arrives with `value`: both, if the other side is in (then the pair is judged, outside
/// the lock), else `value` waits in `mine`. A side that already arrived keeps its first value.
fn meet<M, O>(mine: &mut Option<M>, other: &mut Option<O>, value: M) -> Option<(M, O)> {
    if mine.is_some() {
        return None;
    }
    match other.take() {
        Some(other) => Some((value, other)),
        None => {
            *mine = Some(value);
            None
        }
    }
}

/// A body being captured, up to a cap: the pieces as they arrive (each already a cheap buffer),
/// joined only when there is more than one.
#[derive(Debug, Default)]
pub struct BodyCapture {
    pieces: Vec<Bytes>,
    length: usize,
    over_cap: bool,
}

impl BodyCapture {
    /// Whether `more` bytes still fit under `cap`; past it the capture keeps nothing more and
    /// the body is `OverCap`.
    fn fits(&mut self, more: usize, cap: usize) -> bool {
        if self.over_cap {
            return false;
        }
        if self.length + more > cap {
            self.over_cap = true;
            self.pieces = Vec::new();
            return false;
        }
        true
    }

    /// Keeps a copy of `data`, the body's next bytes, charged to `budget`, while the body
    /// stays within `cap`. A body that finds no room in the budget is treated as over the cap:
    /// compared by status and headers only.
    pub fn keep(&mut self, data: &[u8], cap: usize, budget: &Arc<Budget>) {
        if data.is_empty() || !self.fits(data.len(), cap) {
            return;
        }
        match budget.copy(data) {
            Some(piece) => {
                self.length += piece.len();
                self.pieces.push(piece);
            }
            None => {
                self.over_cap = true;
                self.pieces = Vec::new();
            }
        }
    }

    /// The body as captured: `None` when it went over the cap, else its bytes, joined by `join`
    /// (which charges them) when they came in several pieces.
    pub fn finish(self, join: impl FnOnce(Vec<u8>) -> Option<Bytes>) -> Option<Bytes> {
        if self.over_cap {
            return None;
        }
        match self.pieces.len() {
            0 => Some(Bytes::new()),
            1 => self.pieces.into_iter().next(),
            _ => join(self.pieces.concat()),
        }
    }
}
