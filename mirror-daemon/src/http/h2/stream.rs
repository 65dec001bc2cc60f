//! The client's streams as the decoder needs them (RFC 9113 section 5.1), and the responses it
//! waits for.
//!
//! Only streams whose request the decoder reported and whose client side is still open are kept
//! ([`OpenStream`], a few bytes each, at most `max_streams`); everything else follows from two
//! numbers. A stream above the highest identifier the client opened is idle; one at or below it
//! that is not kept is closed (ended, reset, skipped, or never used: opening a stream closes the
//! idle ones below it), and frames on it are ignored, which is what a server does after its own
//! RST_STREAM and never makes the decoder report anything. After the primary's GOAWAY, streams
//! above its last stream identifier are not processed by it, so they are not reported either.
//!
//! When the primary's responses are decoded, each reported request whose response has not ended
//! is kept as an [`AwaitedResponse`] (a few bytes, at most `max_streams`), from the request's
//! report to the response's end, reset or skip; a response on any other stream is not described.
//!
//! Apart from what is reported, [`Liveness`] follows every stream the client opens through both
//! directions from frame headers alone (END_STREAM, RST_STREAM, the primary's GOAWAY), for
//! saying when the connection is idle: no stream open either way, so that closing it loses no
//! request or response.

use super::decoder::Peer;
use super::frame::{flags, FrameHeader, FrameType};
use super::TunnelReason;

/// Per-stream entries, ascending by stream identifier (streams open in increasing order, so an
/// insert is an append in practice); an empty set holds no allocation.
#[derive(Debug)]
pub struct ById<T> {
    items: Vec<T>,
}

/// An entry of a [`ById`] set.
pub trait StreamEntry {
    fn stream_id(&self) -> u32;
}

impl<T: StreamEntry> Default for ById<T> {
    fn default() -> Self {
        Self { items: Vec::new() }
    }
}

impl<T: StreamEntry> ById<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.position(id).is_ok()
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        let at = self.position(id).ok()?;
        self.items.get_mut(at)
    }

    /// Adds `item`, unless an entry of its stream is there already.
    pub fn insert(&mut self, item: T) {
        if let Err(at) = self.position(item.stream_id()) {
            self.items.insert(at, item);
        }
    }

    /// Takes the entry of `id` out.
    pub fn remove(&mut self, id: u32) -> Option<T> {
        let at = self.position(id).ok()?;
        let item = self.items.remove(at);
        self.release_if_empty();
        Some(item)
    }

    /// Keeps the entries of streams for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.items.retain(|item| keep(item.stream_id()));
        self.release_if_empty();
    }

    fn release_if_empty(&mut self) {
        if self.items.is_empty() {
            // An idle connection keeps no per-stream allocation.
            self.items = Vec::new();
        }
    }

    fn position(&self, id: u32) -> Result<usize, usize> {
        self.items.binary_search_by_key(&id, StreamEntry::stream_id)
    }
}

/// A stream whose request was reported and whose body (or trailers) may still come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenStream {
    pub id: u32,
    /// Body bytes the Content-Length still announces, when one was sent.
    pub content_remaining: Option<u64>,
}

impl StreamEntry for OpenStream {
    fn stream_id(&self) -> u32 {
        self.id
    }
}

/// A reported request whose response has not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwaitedResponse {
    pub id: u32,
    /// The request is HEAD: its response has no body, whatever its Content-Length says.
    pub head_request: bool,
    pub phase: ResponsePhase,
}

impl StreamEntry for AwaitedResponse {
    fn stream_id(&self) -> u32 {
        self.id
    }
}

/// How far a response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsePhase {
    /// No final head yet (interim 1xx heads may have come).
    Head,
    /// The final head was reported; body or trailers may still come. `content_remaining`: body
    /// bytes its Content-Length still announces (0 after a HEAD request).
    Body { content_remaining: Option<u64> },
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
    open: ById<OpenStream>,
    /// The highest identifier the client has opened; 0 before the first.
    last_opened: u32,
    /// The last stream identifier of the primary's GOAWAY, if it sent one.
    server_last: Option<u32>,
    max_open: usize,
}

impl Streams {
    pub fn new(max_open: usize) -> Self {
        Self {
            open: ById::default(),
            last_opened: 0,
            server_last: None,
            max_open,
        }
    }

    /// The state of client stream `id` (odd, non-zero).
    pub fn state(&self, id: u32) -> StreamState {
        if id > self.last_opened {
            StreamState::Idle
        } else if self.open.contains(id) {
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
        self.open.insert(stream);
        Ok(())
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut OpenStream> {
        self.open.get_mut(id)
    }

    /// Forgets `id`; returns whether it was open.
    pub fn close(&mut self, id: u32) -> bool {
        self.open.remove(id).is_some()
    }

    /// The primary's GOAWAY: streams above `last` will not be processed; they are closed.
    pub fn server_goaway(&mut self, last: u32) {
        self.server_last = Some(self.server_last.map_or(last, |earlier| earlier.min(last)));
        self.open.retain(|id| id <= last);
    }

    /// Streams kept open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// A stream the client opened, while either of its sides is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LiveStream {
    id: u32,
    client_open: bool,
    server_open: bool,
}

impl StreamEntry for LiveStream {
    fn stream_id(&self) -> u32 {
        self.id
    }
}

/// Whether any stream of the connection is under way in either direction, from frame headers
/// alone, whatever the decoder reports of them: a stream lives from the client's HEADERS opening
/// it until END_STREAM has passed both ways or either peer reset it, or the primary's GOAWAY
/// says it will not process it. At most `max_live` streams are followed (8 bytes each); beyond
/// that, or once the primary pushes (a promised stream's identifier is in the payload, not
/// followed here), whether the connection is idle is unknown from then on, and it never is.
#[derive(Debug)]
pub struct Liveness {
    streams: ById<LiveStream>,
    /// The highest identifier the client has opened; 0 before the first.
    last_opened: u32,
    /// The last stream identifier the primary will process after its GOAWAY, if it sent one.
    server_last: Option<u32>,
    /// The primary's field block is not complete: CONTINUATION frames are still to come.
    server_block: bool,
    /// Idleness can no longer be told.
    lost: bool,
    max_live: usize,
}

impl Liveness {
    pub fn new(max_live: usize) -> Self {
        Self {
            streams: ById::default(),
            last_opened: 0,
            server_last: None,
            server_block: false,
            lost: false,
            max_live,
        }
    }

    /// Follows a frame header of `peer` the decoder accepted.
    pub fn frame(&mut self, peer: Peer, frame: &FrameHeader) {
        let id = frame.stream;
        let end_stream = frame.has(flags::END_STREAM);
        match (peer, frame.kind) {
            (_, FrameType::RstStream) => {
                self.streams.remove(id);
            }
            (Peer::Client, FrameType::Headers) if id % 2 == 1 && id > self.last_opened => {
                self.last_opened = id;
                if self.server_last.is_some_and(|last| id > last) {
                    // Not processed by the primary: nothing of it comes back.
                } else if self.streams.len() >= self.max_live {
                    self.lost = true;
                } else {
                    self.streams.insert(LiveStream {
                        id,
                        client_open: !end_stream,
                        server_open: true,
                    });
                }
            }
            (_, FrameType::Headers | FrameType::Data) if end_stream => self.end(peer, id),
            (Peer::Server, FrameType::PushPromise) => self.lost = true,
            _ => {}
        }
        if peer == Peer::Server
            && matches!(
                frame.kind,
                FrameType::Headers | FrameType::PushPromise | FrameType::Continuation
            )
        {
            self.server_block = !frame.has(flags::END_HEADERS);
        }
    }

    /// The primary's GOAWAY: streams above `processed` will get nothing more from it.
    pub fn server_goaway(&mut self, processed: u32) {
        self.server_last = Some(
            self.server_last
                .map_or(processed, |earlier| earlier.min(processed)),
        );
        self.streams.retain(|id| id <= processed);
    }

    /// Whether no stream is under way in either direction and no field block of the primary's
    /// is in progress (the client's is the decoder's to know).
    pub fn is_idle(&self) -> bool {
        !self.lost && !self.server_block && self.streams.len() == 0
    }

    fn end(&mut self, peer: Peer, id: u32) {
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        match peer {
            Peer::Client => stream.client_open = false,
            Peer::Server => stream.server_open = false,
        }
        if !stream.client_open && !stream.server_open {
            self.streams.remove(id);
        }
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

    /// The sizes `mod.rs` states for the per-stream state.
    #[test]
    fn per_stream_state_is_24_bytes() {
        assert_eq!(std::mem::size_of::<OpenStream>(), 24);
        assert_eq!(std::mem::size_of::<AwaitedResponse>(), 24);
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
