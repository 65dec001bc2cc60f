//! What an answer's framing depends on, from the request it answers, and the queue of requests
//! awaiting their answers in order (HTTP/1.1 pipelining).
//!
//! The queue holds the usual depth (a request or a few in flight) inline, so expecting and
//! answering requests allocates nothing; deeper pipelines spill into a heap queue that is freed
//! as soon as it drains, and the depth is bounded by [`MAX_PENDING`].

use std::collections::VecDeque;

use crate::http::RequestHead;

/// Most requests that may await their answers at once; past it the framer gives up.
pub const MAX_PENDING: usize = 4096;

/// Requests awaiting their answers without touching the heap.
const INLINE: usize = 8;

/// The facts about a request that decide how its answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The request is HEAD: the answer has no body, whatever its framing fields say.
    pub head: bool,
    /// The request is CONNECT: a 2xx answer turns the connection into a tunnel.
    pub connect: bool,
    /// The request carries `Upgrade`: a `101` answer turns the connection into another
    /// protocol (without it, a `101` is an error).
    pub upgrade: bool,
    /// The request lets the connection persist (RFC 9112 section 9.3; see
    /// [`RequestHead::keeps_connection_open`]); if not, the primary closes after the answer.
    pub keeps_connection_open: bool,
}

impl Expected {
    /// A request like `GET` on a persistent connection: none of the special cases.
    pub const fn plain() -> Self {
        Self {
            head: false,
            connect: false,
            upgrade: false,
            keeps_connection_open: true,
        }
    }

    /// What the answer to `request`, framed on the client's direction, depends on.
    pub fn of(request: &RequestHead) -> Self {
        Self {
            head: request.method().eq_ignore_ascii_case("HEAD"),
            connect: request.method().eq_ignore_ascii_case("CONNECT"),
            upgrade: request.header("upgrade").is_some(),
            keeps_connection_open: request.keeps_connection_open(),
        }
    }
}

/// A first-in first-out queue of [`Expected`] requests.
#[derive(Debug)]
pub(super) struct Pending {
    /// The oldest requests, from `start`, `len` of them, wrapping around.
    inline: [Expected; INLINE],
    start: usize,
    len: usize,
    /// Newer requests once `inline` is full; empty (unallocated) otherwise.
    spill: VecDeque<Expected>,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            inline: [Expected::plain(); INLINE],
            start: 0,
            len: 0,
            spill: VecDeque::new(),
        }
    }
}

impl Pending {
    pub(super) fn len(&self) -> usize {
        self.len + self.spill.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest request.
    pub(super) fn front(&self) -> Option<Expected> {
        if self.len > 0 {
            Some(self.inline[self.start])
        } else {
            self.spill.front().copied()
        }
    }

    /// Adds the newest request; `false` (and nothing added) at [`MAX_PENDING`].
    pub(super) fn push(&mut self, request: Expected) -> bool {
        if self.len() >= MAX_PENDING {
            return false;
        }
        // Inline entries are always older than spilled ones, so a request goes inline only
        // while nothing has spilled.
        if self.len < INLINE && self.spill.is_empty() {
            self.inline[(self.start + self.len) % INLINE] = request;
            self.len += 1;
        } else {
            self.spill.push_back(request);
        }
        true
    }

    /// Removes the oldest request.
    pub(super) fn pop(&mut self) -> Option<Expected> {
        if self.len > 0 {
            let oldest = self.inline[self.start];
            self.start = (self.start + 1) % INLINE;
            self.len -= 1;
            return Some(oldest);
        }
        let oldest = self.spill.pop_front();
        if self.spill.is_empty() {
            // Free the spill queue: a framer between answers holds no heap memory.
            self.spill = VecDeque::new();
        }
        oldest
    }

    /// Heap bytes held (for tests of the memory bound).
    pub(super) fn heap_bytes(&self) -> usize {
        self.spill.capacity() * std::mem::size_of::<Expected>()
    }
}

#[cfg(test)]
mod tests {
    use super::{Expected, Pending, INLINE, MAX_PENDING};

    fn numbered(i: usize) -> Expected {
        Expected {
            head: i % 2 == 1,
            connect: i % 4 >= 2,
            upgrade: i % 8 >= 4,
            keeps_connection_open: i % 16 >= 8,
        }
    }

    #[test]
    fn requests_come_out_in_order_across_the_spill() {
        let mut pending = Pending::default();
        let mut next_in = 0;
        let mut next_out = 0;
        // Grow past the inline part, drain partly, grow again, drain all.
        for (push, pop) in [(INLINE + 5, 3), (7, 2), (1, INLINE + 8), (3, 3)] {
            for _ in 0..push {
                assert!(pending.push(numbered(next_in % 16)));
                next_in += 1;
            }
            for _ in 0..pop {
                assert_eq!(pending.front(), Some(numbered(next_out % 16)));
                assert_eq!(pending.pop(), Some(numbered(next_out % 16)));
                next_out += 1;
            }
            assert_eq!(pending.len(), next_in - next_out);
        }
        assert!(pending.is_empty());
        assert_eq!(pending.pop(), None);
        assert_eq!(
            pending.heap_bytes(),
            0,
            "a drained queue holds no heap memory"
        );
    }

    #[test]
    fn depth_is_bounded() {
        let mut pending = Pending::default();
        for _ in 0..MAX_PENDING {
            assert!(pending.push(Expected::plain()));
        }
        assert!(!pending.push(Expected::plain()));
        assert_eq!(pending.len(), MAX_PENDING);
    }
}
