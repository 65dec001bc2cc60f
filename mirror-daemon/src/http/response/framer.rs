//! The per-connection state machine that describes the primary-to-client byte stream.
//!
//! [`ResponseFramer::feed`] is called with every chunk read from the primary, beside forwarding
//! that same chunk to the client unchanged; it never holds bytes back and never alters them, it
//! only appends [`ResponseFrame`]s saying where answers' heads, payload and ends are. Answers are
//! matched to the requests framed on the other direction, oldest first, which the caller
//! announces with [`ResponseFramer::expect`]. Heads are buffered while incomplete (up to
//! [`FramingLimits::max_header_bytes`]); bodies never are. The first time the stream cannot be
//! framed with certainty the framer reports [`ResponseFrame::GiveUp`] and ignores the rest.

use std::ops::Range;

use super::expected::Pending;
use super::head::{self, Kind};
use super::{Expected, ResponseBody, ResponseGiveUp, ResponseHead};
use crate::http::chunked::{ChunkedBody, Outcome};
use crate::http::head::{HeadScanner, Scan, StartLine};
use crate::http::FramingLimits;

/// One fact about the chunk given to [`ResponseFramer::feed`], in stream order.
///
/// An answer is `Interim* Head (Body | Chunking)* End`. Ranges index the chunk just fed and are
/// never empty; `Body` and `Chunking` ranges, in order, are exactly the body's bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseFrame {
    /// A complete 1xx head other than 101 (`100 Continue`, `103 Early Hints`): the answer to the
    /// oldest expected request is still to come.
    Interim(ResponseHead),
    /// The head of the answer to the oldest expected request; [`ResponseHead::body`] says what
    /// follows.
    Head(ResponseHead),
    /// Payload bytes: the whole body for Content-Length and close-delimited bodies, the chunk
    /// data (de-chunked) for chunked ones.
    Body(Range<usize>),
    /// Bytes of the chunked coding around the payload: chunk-size lines with their extensions,
    /// the CRLF after each chunk's data, the last chunk, the trailer section.
    Chunking(Range<usize>),
    /// The answer is complete; `reusable` says whether the connection may carry another one
    /// (the same as [`ResponseHead::keeps_connection_open`]).
    End { reusable: bool },
    /// Nothing more is framed on this connection. An answer whose `Head` came without an `End`
    /// is abandoned. After a 101 to an Upgrade request or a 2xx to CONNECT, the `Head` and `End`
    /// of that answer come first, then `GiveUp(Upgrade | ConnectTunnel)`.
    GiveUp(ResponseGiveUp),
}

/// Frames one primary-to-client HTTP/1.1 stream, chunk by chunk.
#[derive(Debug)]
pub struct ResponseFramer {
    limits: FramingLimits,
    state: State,
    pending: Pending,
    /// The request framer gave up: no request beyond those pending will be announced.
    requests_opaque: bool,
    /// A reason to give up found outside `feed` (in `expect`), reported by the next call that
    /// can report frames.
    deferred: Option<ResponseGiveUp>,
}

#[derive(Debug)]
enum State {
    /// Between answers, or inside a head.
    Head(HeadScanner),
    ContentLength {
        remaining: u64,
        reusable: bool,
    },
    Chunked {
        body: ChunkedBody,
        reusable: bool,
    },
    UntilClose,
    /// The last answer closes the connection; nothing may follow.
    Closed,
    /// Done: gave up (with the reason), or [`ResponseFramer::finish`] was called.
    Stopped(Option<ResponseGiveUp>),
}

impl ResponseFramer {
    pub fn new(limits: FramingLimits) -> Self {
        Self {
            limits,
            state: State::Head(HeadScanner::new(StartLine::Status)),
            pending: Pending::default(),
            requests_opaque: false,
            deferred: None,
        }
    }

    /// Announces the next request sent to the primary (in the order the client sent them),
    /// before or after its answer's first bytes arrive but before its answer's head is complete.
    /// Ignored once the framer has stopped, after a closing answer, or after
    /// [`requests_opaque`](Self::requests_opaque). Past [`MAX_PENDING`](super::MAX_PENDING)
    /// unanswered requests the framer gives up (reported by the next `feed` or `finish`).
    pub fn expect(&mut self, request: Expected) {
        if self.requests_opaque || matches!(self.state, State::Stopped(_) | State::Closed) {
            return;
        }
        if !self.pending.push(request) {
            self.deferred.get_or_insert(ResponseGiveUp::TooManyPending);
        }
    }

    /// Says that the request framer gave up: answers to the requests expected so far are still
    /// framed; any byte after them makes the framer give up with
    /// [`ResponseGiveUp::RequestStreamOpaque`].
    pub fn requests_opaque(&mut self) {
        self.requests_opaque = true;
    }

    /// Describes `chunk`, the next bytes the primary sent (which the caller forwards to the
    /// client unchanged), by appending frames to `out`. Ranges index `chunk`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<ResponseFrame>) {
        if let Some(reason) = self.deferred.take() {
            return self.give_up(reason, out);
        }
        let mut pos = 0;
        while pos < chunk.len() {
            match self.step(chunk, pos, out) {
                Ok(consumed) => pos += consumed,
                Err(reason) => return self.give_up(reason, out),
            }
        }
    }

    /// The primary closed the connection: ends a close-delimited body (`End`), or gives up when
    /// an answer was cut off or requests were left unanswered. Nothing is framed after it.
    pub fn finish(&mut self, out: &mut Vec<ResponseFrame>) {
        if let Some(reason) = self.deferred.take() {
            return self.give_up(reason, out);
        }
        let cut_off = match &self.state {
            State::Stopped(_) => return,
            State::Closed => None,
            State::UntilClose => {
                out.push(ResponseFrame::End { reusable: false });
                None
            }
            State::Head(scanner) if scanner.is_empty() => {
                (!self.pending.is_empty()).then_some(ResponseGiveUp::RequestsUnanswered)
            }
            State::Head(_) | State::ContentLength { .. } | State::Chunked { .. } => {
                Some(ResponseGiveUp::AnswerCutOff)
            }
        };
        match cut_off {
            Some(reason) => self.give_up(reason, out),
            None => self.state = State::Stopped(None),
        }
    }

    /// Whether the connection is at an idle point: every expected request has its complete
    /// answer, the last one left the connection reusable, and no byte of another has arrived.
    /// (Whether the client has begun another request is the request framer's to say.)
    pub fn is_idle(&self) -> bool {
        matches!(&self.state, State::Head(scanner) if scanner.is_empty())
            && self.pending.is_empty()
            && !self.requests_opaque
            && self.deferred.is_none()
    }

    /// Why the framer gave up, if it did.
    pub fn give_up_reason(&self) -> Option<ResponseGiveUp> {
        match self.state {
            State::Stopped(reason) => reason,
            _ => None,
        }
    }

    /// Whether nothing more will be framed (gave up, or finished).
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, State::Stopped(_))
    }

    /// Requests announced with [`expect`](Self::expect) whose answer's head has not arrived.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Heap bytes the framer holds: the partial head, and the queue of deep pipelines.
    pub fn heap_bytes(&self) -> usize {
        let head = match &self.state {
            State::Head(scanner) => scanner.capacity(),
            _ => 0,
        };
        head + self.pending.heap_bytes()
    }

    fn give_up(&mut self, reason: ResponseGiveUp, out: &mut Vec<ResponseFrame>) {
        tracing::debug!(
            reason = reason.as_str(),
            "http response framing gave up: {reason}"
        );
        self.state = State::Stopped(Some(reason));
        out.push(ResponseFrame::GiveUp(reason));
    }

    /// Handles `chunk[pos..]` as far as the current state goes; returns how many bytes it took
    /// (at least one, unless stopped, where the rest is skipped).
    fn step(
        &mut self,
        chunk: &[u8],
        pos: usize,
        out: &mut Vec<ResponseFrame>,
    ) -> Result<usize, ResponseGiveUp> {
        let input = &chunk[pos..];
        match &mut self.state {
            State::Stopped(_) => Ok(input.len()),
            State::Closed => Err(ResponseGiveUp::DataAfterClose),
            State::Head(scanner) => {
                if scanner.is_empty() && self.pending.is_empty() && self.requests_opaque {
                    return Err(ResponseGiveUp::RequestStreamOpaque);
                }
                let consumed = match scanner
                    .scan(input, &self.limits)
                    .map_err(ResponseGiveUp::from_head)?
                {
                    Scan::Incomplete => return Ok(input.len()),
                    Scan::Complete(consumed) => consumed,
                };
                let (raw, fields) = scanner.take();
                let request = match self.pending.front() {
                    Some(request) => request,
                    None if self.requests_opaque => {
                        return Err(ResponseGiveUp::RequestStreamOpaque)
                    }
                    None => return Err(ResponseGiveUp::ResponseBeforeRequest),
                };
                let (head, kind) = head::parse(raw, fields, request)?;
                self.answer(head, kind, out)?;
                Ok(consumed)
            }
            State::ContentLength {
                remaining,
                reusable,
            } => {
                let taken = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                out.push(ResponseFrame::Body(pos..pos + taken));
                *remaining -= taken as u64;
                if *remaining == 0 {
                    let reusable = *reusable;
                    self.end(reusable, out);
                }
                Ok(taken)
            }
            State::Chunked { body, reusable } => {
                // Chunk data is Body, the bytes between data are Chunking.
                let mut framed = 0;
                let advance = body.advance_reporting_data(input, &self.limits, |data| {
                    if data.start > framed {
                        out.push(ResponseFrame::Chunking(pos + framed..pos + data.start));
                    }
                    out.push(ResponseFrame::Body(pos + data.start..pos + data.end));
                    framed = data.end;
                });
                if advance.consumed > framed {
                    out.push(ResponseFrame::Chunking(
                        pos + framed..pos + advance.consumed,
                    ));
                }
                match advance.outcome {
                    Outcome::NeedMore => {}
                    Outcome::Done => {
                        let reusable = *reusable;
                        self.end(reusable, out);
                    }
                    Outcome::Invalid(reason) => return Err(ResponseGiveUp::from_chunk(reason)),
                }
                Ok(advance.consumed)
            }
            State::UntilClose => {
                out.push(ResponseFrame::Body(pos..chunk.len()));
                Ok(input.len())
            }
        }
    }

    /// Reports a complete head and moves to its body.
    fn answer(
        &mut self,
        head: ResponseHead,
        kind: Kind,
        out: &mut Vec<ResponseFrame>,
    ) -> Result<(), ResponseGiveUp> {
        if kind == Kind::Interim {
            out.push(ResponseFrame::Interim(head));
            return Ok(());
        }
        self.pending.pop();
        let body = head.body();
        let reusable = head.keeps_connection_open();
        out.push(ResponseFrame::Head(head));
        if let Kind::Switch(reason) = kind {
            out.push(ResponseFrame::End { reusable: false });
            return Err(reason);
        }
        match body {
            ResponseBody::None | ResponseBody::ContentLength(0) => self.end(reusable, out),
            ResponseBody::ContentLength(remaining) => {
                self.state = State::ContentLength {
                    remaining,
                    reusable,
                }
            }
            ResponseBody::Chunked => {
                self.state = State::Chunked {
                    body: ChunkedBody::default(),
                    reusable,
                }
            }
            ResponseBody::UntilClose => self.state = State::UntilClose,
        }
        Ok(())
    }

    fn end(&mut self, reusable: bool, out: &mut Vec<ResponseFrame>) {
        out.push(ResponseFrame::End { reusable });
        self.state = if reusable {
            State::Head(HeadScanner::new(StartLine::Status))
        } else {
            State::Closed
        };
    }
}
