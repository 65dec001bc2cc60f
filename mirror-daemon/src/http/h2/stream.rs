//! The client's streams as the request decoder needs them (RFC 9113 section 5.1).
//!
//! Only streams whose request the decoder reported and whose client side is still open are kept
//! ([`OpenStream`], a few bytes each, at most `max_streams`); everything else follows from two
//! numbers. A stream above the highest identifier the client opened is idle; one at or below it
//! that is not kept is closed (ended, reset, skipped, or never used: opening a stream closes the
//! idle ones below it), and frames on it are ignored, which is what a server does after its own
//! RST_STREAM and never makes the decoder report anything. After the primary's GOAWAY, streams
//! above its last stream identifier are not processed by it, so they are not reported either.

use super::TunnelReason;

/// A stream whose request was reported and whose body (or trailers) may still come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenStream {
    pub id: u32,
    /// Body bytes the Content-Length still announces, when one was sent.
    pub content_remaining: Option<u64>,
}

/// What the decoder knows of a client stream identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Not opened yet.
    Idle,
    /// Reported, client side open.
    Open,
    /// Anything else: frames on it are ignored.
    Closed,
}

/// The client streams of one connection.
#[derive(Debug)]
pub struct Streams {
    /// Ascending by id (streams open in increasing order).
    open: Vec<OpenStream>,
    /// The highest identifier the client has opened; 0 before the first.
    last_opened: u32,
    /// The last stream identifier of the primary's GOAWAY, if it sent one.
    server_last: Option<u32>,
    max_open: usize,
}

impl Streams {
    pub fn new(max_open: usize) -> Self {
        Self {
            open: Vec::new(),
            last_opened: 0,
            server_last: None,
            max_open,
        }
    }

    /// The state of client stream `id` (odd, non-zero).
    pub fn state(&self, id: u32) -> StreamState {
        if id > self.last_opened {
            StreamState::Idle
        } else if self.position(id).is_ok() {
            StreamState::Open
        } else {
            StreamState::Closed
        }
    }

    /// The client opens `id` with a HEADERS frame; returns whether the primary will process it
    /// (false after a GOAWAY that excludes it).
    pub fn open(&mut self, id: u32) -> Result<bool, TunnelReason> {
        if id <= self.last_opened {
            return Err(TunnelReason::StreamIdNotIncreasing);
        }
        self.last_opened = id;
        Ok(self.server_last.is_none_or(|last| id <= last))
    }

    /// Keeps a reported stream whose client side stays open.
    pub fn insert(&mut self, stream: OpenStream) -> Result<(), TunnelReason> {
        if self.open.len() >= self.max_open {
            return Err(TunnelReason::TooManyStreams);
        }
        match self.position(stream.id) {
            Ok(_) => {}
            Err(at) => self.open.insert(at, stream),
        }
        Ok(())
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut OpenStream> {
        let at = self.position(id).ok()?;
        self.open.get_mut(at)
    }

    /// Forgets `id`; returns whether it was open.
    pub fn close(&mut self, id: u32) -> bool {
        match self.position(id) {
            Ok(at) => {
                self.open.remove(at);
                if self.open.is_empty() {
                    // An idle connection keeps no per-stream allocation.
                    self.open = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The primary's GOAWAY: streams above `last` will not be processed; they are closed.
    pub fn server_goaway(&mut self, last: u32) {
        self.server_last = Some(self.server_last.map_or(last, |earlier| earlier.min(last)));
        self.open.retain(|stream| stream.id <= last);
        if self.open.is_empty() {
            self.open = Vec::new();
        }
    }

    /// Streams kept open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    fn position(&self, id: u32) -> Result<usize, usize> {
        self.open.binary_search_by_key(&id, |stream| stream.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: u32) -> OpenStream {
        OpenStream {
            id,
            content_remaining: None,
        }
    }

    #[test]
    fn states_follow_ids_and_the_open_set() {
        let mut streams = Streams::new(2);
        assert_eq!(streams.state(1), StreamState::Idle);
        assert_eq!(streams.open(3), Ok(true));
        assert_eq!(
            streams.state(1),
            StreamState::Closed,
            "skipped ids are closed"
        );
        assert_eq!(streams.state(3), StreamState::Closed, "not reported yet");
        streams.insert(open(3)).expect("room");
        assert_eq!(streams.state(3), StreamState::Open);
        assert_eq!(streams.state(5), StreamState::Idle);
        assert_eq!(streams.open(3), Err(TunnelReason::StreamIdNotIncreasing));
        assert!(streams.close(3));
        assert!(!streams.close(3));
        assert_eq!(streams.state(3), StreamState::Closed);
    }

    #[test]
    fn open_streams_are_bounded() {
        let mut streams = Streams::new(2);
        for id in [1, 3] {
            streams.open(id).expect("increasing");
            streams.insert(open(id)).expect("room");
        }
        streams.open(5).expect("increasing");
        assert_eq!(streams.insert(open(5)), Err(TunnelReason::TooManyStreams));
        assert_eq!(streams.open_count(), 2);
    }

    #[test]
    fn goaway_closes_streams_above_its_last_id() {
        let mut streams = Streams::new(8);
        for id in [1, 3, 5] {
            streams.open(id).expect("increasing");
            streams.insert(open(id)).expect("room");
        }
        streams.server_goaway(3);
        assert_eq!(streams.state(5), StreamState::Closed);
        assert_eq!(streams.state(3), StreamState::Open);
        assert_eq!(streams.open(7), Ok(false), "not processed after goaway");
        streams.server_goaway(9);
        assert_eq!(
            streams.open(9),
            Ok(false),
            "a later goaway cannot raise the limit"
        );
    }
}
