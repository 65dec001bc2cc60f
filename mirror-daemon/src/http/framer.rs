//! The per-connection state machine that describes the client-to-primary byte stream.
//!
//! [`RequestFramer::feed`] is called with every chunk read from the client, right before (or
//! after) the caller forwards that same chunk to the primary unchanged. It never holds bytes
//! back and never alters them; it only appends [`Frame`]s saying where request heads, bodies and
//! request ends are, so the caller can assemble shadow copies. Request heads are buffered while
//! incomplete (up to [`FramingLimits::max_header_bytes`]); bodies never are, they are reported as
//! ranges of the chunk. The first time the stream cannot be framed with certainty the framer
//! reports [`Frame::Tunnel`] and ignores the rest of the connection.

use super::chunked::{ChunkedBody, Outcome};
use super::head::{self, HeadScanner, Scan};
use super::{BodyKind, RequestHead, TunnelReason};
use std::ops::Range;

/// Bounds on what a request head (and a chunked trailer section) may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingLimits {
    /// Largest head, request line to blank line inclusive; also bounds a trailer section.
    pub max_header_bytes: usize,
    /// Most fields in a head; also bounds the fields of a trailer section.
    pub max_headers: usize,
}

impl Default for FramingLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

/// One fact about the chunk given to [`RequestFramer::feed`], in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete request head; [`RequestHead::body`] says what follows.
    Head(RequestHead),
    /// Body bytes exactly as on the wire (for chunked bodies including size lines, chunk CRLFs
    /// and trailers), as a non-empty range of the chunk just fed.
    Body(Range<usize>),
    /// The current request, head and body, is complete.
    End,
    /// From here on the stream is opaque. A request whose [`Frame::Head`] came without a
    /// [`Frame::End`] is abandoned. No frame follows this one.
    Tunnel(TunnelReason),
}

/// Frames one client-to-primary HTTP/1.1 stream, chunk by chunk.
#[derive(Debug)]
pub struct RequestFramer {
    limits: FramingLimits,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Between requests, or inside a head.
    Head(HeadScanner),
    ContentLength {
        remaining: u64,
        keeps_connection_open: bool,
    },
    Chunked {
        body: ChunkedBody,
        keeps_connection_open: bool,
    },
    /// The last request closes the connection; nothing may follow.
    Closed,
    Tunnel(TunnelReason),
}

impl RequestFramer {
    pub fn new(limits: FramingLimits) -> Self {
        Self {
            limits,
            state: State::Head(HeadScanner::default()),
        }
    }

    /// Describes `chunk`, the next bytes the client sent (which the caller forwards to the
    /// primary unchanged, right now), by appending frames to `out`. Body ranges index `chunk`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Frame>) {
        let mut pos = 0;
        while pos < chunk.len() {
            match self.step(chunk, pos, out) {
                Ok(consumed) => pos += consumed,
                Err(reason) => {
                    tracing::debug!(reason = reason.as_str(), "http framing gave up: {reason}");
                    self.state = State::Tunnel(reason);
                    out.push(Frame::Tunnel(reason));
                    return;
                }
            }
        }
    }

    /// Whether the framer has given up on this connection.
    /// Whether the stream is between requests: the last one (if any) is complete and no byte of
    /// another has arrived.
    pub fn is_between_requests(&self) -> bool {
        matches!(&self.state, State::Head(scanner) if scanner.is_empty())
    }

    pub fn is_tunnel(&self) -> bool {
        matches!(self.state, State::Tunnel(_))
    }

    /// Why the framer gave up, if it did.
    pub fn tunnel_reason(&self) -> Option<TunnelReason> {
        match self.state {
            State::Tunnel(reason) => Some(reason),
            _ => None,
        }
    }

    /// Handles `chunk[pos..]` as far as the current state goes; returns how many bytes it took
    /// (at least one, unless in tunnel mode where the rest is skipped).
    fn step(
        &mut self,
        chunk: &[u8],
        pos: usize,
        out: &mut Vec<Frame>,
    ) -> Result<usize, TunnelReason> {
        let input = &chunk[pos..];
        match &mut self.state {
            State::Tunnel(_) => Ok(input.len()),
            State::Closed => Err(TunnelReason::DataAfterClose),
            State::Head(scanner) => match scanner.scan(input, &self.limits)? {
                Scan::Incomplete => Ok(input.len()),
                Scan::Complete(consumed) => {
                    let (raw, fields) = scanner.take();
                    let request = head::parse(raw, fields)?;
                    let keeps_connection_open = request.keeps_connection_open();
                    let body = request.body();
                    out.push(Frame::Head(request));
                    self.state = match body {
                        BodyKind::None | BodyKind::ContentLength(0) => {
                            Self::end_request(keeps_connection_open, out)
                        }
                        BodyKind::ContentLength(remaining) => State::ContentLength {
                            remaining,
                            keeps_connection_open,
                        },
                        BodyKind::Chunked => State::Chunked {
                            body: ChunkedBody::default(),
                            keeps_connection_open,
                        },
                    };
                    Ok(consumed)
                }
            },
            State::ContentLength {
                remaining,
                keeps_connection_open,
            } => {
                let taken = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                out.push(Frame::Body(pos..pos + taken));
                *remaining -= taken as u64;
                if *remaining == 0 {
                    let keeps_connection_open = *keeps_connection_open;
                    self.state = Self::end_request(keeps_connection_open, out);
                }
                Ok(taken)
            }
            State::Chunked {
                body,
                keeps_connection_open,
            } => {
                let advance = body.advance(input, &self.limits);
                if advance.consumed > 0 {
                    out.push(Frame::Body(pos..pos + advance.consumed));
                }
                match advance.outcome {
                    Outcome::NeedMore => {}
                    Outcome::Done => {
                        let keeps_connection_open = *keeps_connection_open;
                        self.state = Self::end_request(keeps_connection_open, out);
                    }
                    Outcome::Invalid(reason) => return Err(reason),
                }
                Ok(advance.consumed)
            }
        }
    }

    fn end_request(keeps_connection_open: bool, out: &mut Vec<Frame>) -> State {
        out.push(Frame::End);
        if keeps_connection_open {
            State::Head(HeadScanner::default())
        } else {
            State::Closed
        }
    }
}
