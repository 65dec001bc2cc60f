//! The per-connection HTTP/2 state machine: both directions' frames in, [`Event`]s out.
//!
//! [`H2Decoder::feed_client`] takes every chunk the client sent (starting with the connection
//! preface) and [`H2Decoder::feed_server`] every chunk the primary sent, each right as the relay
//! passes it on. Neither ever holds bytes back or waits: each appends what the chunk completes
//! to `events` and returns. The client's side is decoded fully (frames, padding, field blocks,
//! HPACK, stream states); the primary's only as far as finding its frame boundaries and reading
//! its SETTINGS, RST_STREAM and GOAWAY frames, which decide what the client may send and which
//! requests the primary refused, unless [`H2Limits::decode_responses`] asks for its responses
//! too (`responses`: the primary's field blocks through a second HPACK decoder, its DATA).
//!
//! Order of feeding: a peer can only react to bytes it received, so feeding each chunk no later
//! than it is forwarded keeps the decoder's view causal. If the caller feeds one direction late
//! (the other peer already answered), the decoder may see, for example, an acknowledgement of
//! SETTINGS it has not seen yet; every such inconsistency ends in [`Event::Tunnel`], never in a
//! wrong request.

use std::ops::Range;

use http::Method;

use super::frame::{
    flags, read_u31, FrameHeader, FrameHeaderReader, FrameType, SmallBuf, CLIENT_PREFACE,
};
use super::hpack::HpackDecoder;
use super::request::{FieldList, RequestBuilder, RequestHead, SkipReason, TrailersBuilder};
use super::response::ResponseHead;
use super::settings::{SentSettings, SettingsValues};
use super::stream::{Liveness, OpenStream, StreamState, Streams};
use super::TunnelReason;

mod responses;

use responses::ResponseSide;

/// Streams followed for idleness per stream followed for its request ([`H2Limits::max_streams`]):
/// a stream lives on until its response ends, often long after its request did.
const LIVE_STREAMS_PER_OPEN: usize = 4;

/// An HTTP/2 stream identifier (31 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u32);

impl StreamId {
    pub fn new(id: u32) -> Self {
        Self(id & 0x7fff_ffff)
    }

    pub fn value(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An HTTP/2 error code (RFC 9113 section 7), as RST_STREAM and GOAWAY carry it; convert with
/// `h2::Reason::from(code.0)` where the h2 crate is at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub const NO_ERROR: Self = Self(0x0);
    pub const PROTOCOL_ERROR: Self = Self(0x1);
    pub const REFUSED_STREAM: Self = Self(0x7);
    pub const CANCEL: Self = Self(0x8);

    /// The RFC's name of the code, or `None` for a code it does not define.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES.get(self.0 as usize).copied()
    }
}

/// Which end of the connection sent a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Client,
    /// The primary.
    Server,
}

impl Peer {
    fn other(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

/// Bounds on what one connection's decoder may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Limits {
    /// Largest field block on the wire (HEADERS or trailers with their CONTINUATIONs), and largest
    /// decoded field section (32 + name + value per field); the HTTP/1.1 framer's
    /// `max_header_bytes` (`mirror.framing.max_header_bytes`).
    pub max_header_bytes: usize,
    /// Most streams with the client's side open (request reported, body or trailers to come).
    pub max_streams: usize,
    /// Largest HPACK dynamic table followed (at least 4096, the initial size), in each direction.
    pub max_table_size: usize,
    /// Decode the primary's responses too ([`Event::Response`] and the events after it). Off by
    /// default: the primary's side is then only framed, and costs nothing more.
    pub decode_responses: bool,
}

impl Default for H2Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_streams: 256,
            max_table_size: 64 * 1024,
            decode_responses: false,
        }
    }
}

/// One fact about the connection, in the order the chunk completed them. Events carry no time:
/// each happened when the chunk that completed it was fed, which the caller can stamp.
///
/// The response events come only with [`H2Limits::decode_responses`], and only for streams
/// whose [`Event::Request`] was reported and not skipped or reset since: for each, any number
/// of [`Event::Interim`], then [`Event::Response`], then [`Event::ResponseData`] and at most one
/// [`Event::ResponseTrailers`] until one of them ends the stream; or [`Event::ResponseSkipped`]
/// at any point, after which nothing more comes for the response. A response is also abandoned
/// (without a further response event) by [`Event::Reset`] or [`Event::Skipped`] of its stream,
/// by the primary's [`Event::GoAway`] (above its last stream identifier, or any with an error
/// code), and by [`Event::Tunnel`]. The primary's pushed streams are not requests of the
/// client's: their field blocks (PUSH_PROMISE and the pushed responses) are decoded for the
/// HPACK state only, and nothing is reported of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client opened `stream` with a well-formed request. `end_stream`: no body follows.
    Request {
        stream: StreamId,
        head: Box<RequestHead>,
        end_stream: bool,
    },
    /// Body bytes of `stream`: `range` indexes the chunk just given to
    /// [`H2Decoder::feed_client`], padding excluded. Empty only when `end_stream` is set and the
    /// request ends after bytes reported earlier.
    Data {
        stream: StreamId,
        range: Range<usize>,
        end_stream: bool,
    },
    /// The request's trailer section; the request ends with it.
    Trailers {
        stream: StreamId,
        trailers: FieldList,
    },
    /// The decoder stops describing `stream`: its request is malformed (RFC 9113 section 8.1.1:
    /// the primary resets it) or of a kind not copied (CONNECT). A copy in progress is to be
    /// abandoned. The connection goes on being decoded.
    Skipped {
        stream: StreamId,
        reason: SkipReason,
    },
    /// RST_STREAM from `by` on a stream the client opened, whether or not its request was
    /// reported or complete: from the primary (REFUSED_STREAM, for example) it means the request
    /// may not have been processed. Nothing more comes for the stream.
    Reset {
        stream: StreamId,
        by: Peer,
        code: ErrorCode,
    },
    /// GOAWAY from `by`. From the primary: client streams above `last_stream_id` were not and
    /// will not be processed; copies of them are to be abandoned, and the decoder reports none.
    /// With a code other than NO_ERROR the primary is closing the connection: copies of every
    /// request not yet complete are to be abandoned too, and none is reported further.
    GoAway {
        by: Peer,
        last_stream_id: StreamId,
        code: ErrorCode,
    },
    /// The primary's interim (1xx) response head on `stream`; the final head is still to come.
    Interim {
        stream: StreamId,
        head: Box<ResponseHead>,
    },
    /// The primary's final response head on `stream`. `end_stream`: nothing follows (no body;
    /// for gRPC a Trailers-Only response, `grpc-status` among the head's fields).
    Response {
        stream: StreamId,
        head: Box<ResponseHead>,
        end_stream: bool,
    },
    /// Response body bytes of `stream`: `range` indexes the chunk just given to
    /// [`H2Decoder::feed_server`], padding excluded. Empty only when `end_stream` is set and the
    /// response ends after bytes reported earlier.
    ResponseData {
        stream: StreamId,
        range: Range<usize>,
        end_stream: bool,
    },
    /// The response's trailer section (gRPC's `grpc-status` and `grpc-message`); the response
    /// ends with it.
    ResponseTrailers {
        stream: StreamId,
        trailers: FieldList,
    },
    /// The decoder stops describing the response of `stream`: it is malformed (the client resets
    /// the stream), or over a limit of the decoder. The request's events are not affected.
    ResponseSkipped {
        stream: StreamId,
        reason: SkipReason,
    },
    /// From here on the connection is opaque; requests and responses without their end are
    /// abandoned. No event follows this one.
    Tunnel(TunnelReason),
}

/// Decodes one HTTP/2 connection, both directions, chunk by chunk.
#[derive(Debug)]
pub struct H2Decoder {
    limits: H2Limits,
    client: Reader,
    server: Reader,
    /// SETTINGS the client sent: they bound the primary's frames.
    client_settings: SentSettings,
    /// SETTINGS the primary sent: they bound the client's frames and HPACK encoder.
    server_settings: SentSettings,
    /// The client's HPACK state.
    requests: HpackDecoder,
    streams: Streams,
    /// Every stream the client opened, through both directions: whether the connection is idle.
    live: Liveness,
    /// The client's field block in progress (HEADERS without END_HEADERS so far).
    block: Option<Block<BlockKind>>,
    /// The primary's side when its responses are decoded.
    responses: Option<Box<ResponseSide>>,
    tunnel: Option<TunnelReason>,
}

/// Where one direction's byte stream is.
#[derive(Debug)]
struct Reader {
    stage: Stage,
    /// No frame has been read yet (the first must be SETTINGS).
    first_frame: bool,
    /// The SETTINGS frame being read: the values it leaves so far.
    settings: SettingsValues,
}

#[derive(Debug)]
enum Stage {
    /// The client's 24-byte preface, `matched` bytes of it so far.
    Preface {
        matched: usize,
    },
    Header(FrameHeaderReader),
    /// A fixed-size part of the payload, `left` payload bytes after it.
    Collect {
        frame: FrameHeader,
        buf: SmallBuf,
        left: u32,
    },
    /// DATA payload; reported when `report`.
    Data {
        frame: FrameHeader,
        report: bool,
        data_left: u32,
        padding_left: u32,
    },
    /// A field block fragment, appended to the sender's block.
    Fragment {
        frame: FrameHeader,
        left: u32,
        padding_left: u32,
    },
    /// Payload to pass over, then the frame ends.
    Skip {
        frame: FrameHeader,
        left: u32,
    },
}

/// What a client field block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    /// Opens the stream: a request head.
    Request,
    /// On an open stream: trailers.
    Trailers,
    /// On a closed stream, or one the primary will not process: decoded for the HPACK state only.
    Ignored,
}

/// A field block in progress: HEADERS (or PUSH_PROMISE) and its CONTINUATIONs so far.
#[derive(Debug)]
struct Block<K> {
    stream: u32,
    kind: K,
    /// The HEADERS frame carried END_STREAM.
    end_stream: bool,
    bytes: Vec<u8>,
}

impl Reader {
    fn new(peer: Peer) -> Self {
        Self {
            stage: match peer {
                Peer::Client => Stage::Preface { matched: 0 },
                Peer::Server => Stage::Header(FrameHeaderReader::default()),
            },
            first_frame: true,
            settings: SettingsValues::default(),
        }
    }
}

/// How the payload of a frame is read, decided from its header.
enum Plan {
    /// Collect `n` bytes first (1 to 8).
    Collect(usize),
    Data {
        report: bool,
    },
    Fragment,
    Skip,
}

impl H2Decoder {
    pub fn new(limits: H2Limits) -> Self {
        Self {
            limits,
            client: Reader::new(Peer::Client),
            server: Reader::new(Peer::Server),
            client_settings: SentSettings::default(),
            server_settings: SentSettings::default(),
            requests: HpackDecoder::new(limits.max_table_size),
            streams: Streams::new(limits.max_streams),
            live: Liveness::new(limits.max_streams.saturating_mul(LIVE_STREAMS_PER_OPEN)),
            block: None,
            responses: limits
                .decode_responses
                .then(|| Box::new(ResponseSide::new(limits.max_table_size))),
            tunnel: None,
        }
    }

    /// Describes `chunk`, the next bytes the client sent (forwarded to the primary unchanged),
    /// by appending events to `events`; [`Event::Data`] ranges index `chunk`.
    pub fn feed_client(&mut self, chunk: &[u8], events: &mut Vec<Event>) {
        self.feed(Peer::Client, chunk, events);
    }

    /// Reads `chunk`, the next bytes the primary sent (forwarded to the client unchanged), for
    /// its SETTINGS, RST_STREAM and GOAWAY frames, and with [`H2Limits::decode_responses`] its
    /// responses; appends the events they cause ([`Event::ResponseData`] ranges index `chunk`).
    pub fn feed_server(&mut self, chunk: &[u8], events: &mut Vec<Event>) {
        self.feed(Peer::Server, chunk, events);
    }

    /// Why the decoder gave up, if it did.
    pub fn tunnel_reason(&self) -> Option<TunnelReason> {
        self.tunnel
    }

    pub fn is_tunnel(&self) -> bool {
        self.tunnel.is_some()
    }

    /// Streams whose request was reported and whose client side is open.
    pub fn open_streams(&self) -> usize {
        self.streams.open_count()
    }

    /// Responses reported requests still wait for or are receiving (0 unless responses are
    /// decoded).
    pub fn awaited_responses(&self) -> usize {
        self.responses.as_ref().map_or(0, |side| side.awaited.len())
    }

    /// Whether the connection is idle: every stream the client opened has ended both ways
    /// (END_STREAM from each peer, or RST_STREAM from either), nothing is half-read and the
    /// decoder still follows the connection. Closing it then loses no request or response.
    /// Never after a PUSH_PROMISE, nor while more than `4 x max_streams` streams lived at once.
    pub fn is_idle(&self) -> bool {
        self.tunnel.is_none() && self.live.is_idle() && self.is_between_frames()
    }

    /// Whether nothing is half-read: between frames in both directions, no field block in
    /// progress (the state in which the decoder holds no buffer but the HPACK tables).
    pub fn is_between_frames(&self) -> bool {
        let between = |reader: &Reader| matches!(&reader.stage, Stage::Header(header) if !header.is_partial());
        let no_response_block = self
            .responses
            .as_ref()
            .is_none_or(|side| side.block.is_none());
        self.block.is_none() && no_response_block && between(&self.client) && between(&self.server)
    }

    fn feed(&mut self, peer: Peer, chunk: &[u8], events: &mut Vec<Event>) {
        if self.tunnel.is_some() {
            return;
        }
        let first_event = events.len();
        let mut pos = 0;
        while pos < chunk.len() {
            match self.step(peer, chunk, pos, first_event, events) {
                Ok(consumed) => pos += consumed,
                Err(reason) => {
                    tracing::debug!(
                        reason = reason.as_str(),
                        side = ?peer,
                        "http/2 decoding gave up: {reason}"
                    );
                    self.tunnel = Some(reason);
                    // Nothing is described any more: let go of what can be let go.
                    self.block = None;
                    self.streams = Streams::new(0);
                    self.live = Liveness::new(0);
                    self.responses = None;
                    events.push(Event::Tunnel(reason));
                    return;
                }
            }
        }
    }

    fn reader(&mut self, peer: Peer) -> &mut Reader {
        match peer {
            Peer::Client => &mut self.client,
            Peer::Server => &mut self.server,
        }
    }

    /// Handles `chunk[pos..]` as far as the current stage goes; returns the bytes taken (at
    /// least one).
    fn step(
        &mut self,
        peer: Peer,
        chunk: &[u8],
        pos: usize,
        first_event: usize,
        events: &mut Vec<Event>,
    ) -> Result<usize, TunnelReason> {
        let input = &chunk[pos..];
        let stage = std::mem::replace(
            &mut self.reader(peer).stage,
            Stage::Header(FrameHeaderReader::default()),
        );
        let (consumed, next) = match stage {
            Stage::Preface { matched } => {
                let want = &CLIENT_PREFACE[matched..];
                let taken = want.len().min(input.len());
                if input[..taken] != want[..taken] {
                    return Err(TunnelReason::ClientPreface);
                }
                let matched = matched + taken;
                let next = if matched == CLIENT_PREFACE.len() {
                    Stage::Header(FrameHeaderReader::default())
                } else {
                    Stage::Preface { matched }
                };
                (taken, next)
            }
            Stage::Header(mut reader) => {
                let (taken, header) = reader.push(input);
                let next = match header {
                    None => Stage::Header(reader),
                    Some(header) => self.begin_frame(peer, header, events)?,
                };
                (taken, next)
            }
            Stage::Collect {
                frame,
                mut buf,
                left,
            } => {
                let taken = buf.push(input);
                let next = if buf.is_complete() {
                    self.collected(peer, frame, buf.bytes(), left, events)?
                } else {
                    Stage::Collect { frame, buf, left }
                };
                (taken, next)
            }
            Stage::Data {
                frame,
                report,
                data_left,
                padding_left,
            } => {
                // The stream may have been reset or skipped since the frame began.
                let report = report && self.is_described(peer, frame.stream);
                if data_left > 0 {
                    let taken = input.len().min(data_left as usize);
                    if report {
                        events.push(data_event(
                            peer,
                            StreamId::new(frame.stream),
                            pos..pos + taken,
                            false,
                        ));
                    }
                    let stage = Stage::Data {
                        frame,
                        report,
                        data_left: data_left - taken as u32,
                        padding_left,
                    };
                    (taken, stage)
                } else {
                    let taken = input.len().min(padding_left as usize);
                    let stage = Stage::Data {
                        frame,
                        report,
                        data_left,
                        padding_left: padding_left - taken as u32,
                    };
                    (taken, stage)
                }
            }
            Stage::Fragment {
                frame,
                left,
                padding_left,
            } => {
                if left > 0 {
                    let taken = input.len().min(left as usize);
                    if let Some(bytes) = self.block_bytes(peer) {
                        bytes.extend_from_slice(&input[..taken]);
                    }
                    let stage = Stage::Fragment {
                        frame,
                        left: left - taken as u32,
                        padding_left,
                    };
                    (taken, stage)
                } else {
                    let taken = input.len().min(padding_left as usize);
                    let stage = Stage::Fragment {
                        frame,
                        left,
                        padding_left: padding_left - taken as u32,
                    };
                    (taken, stage)
                }
            }
            Stage::Skip { frame, left } => {
                let taken = input.len().min(left as usize);
                let stage = Stage::Skip {
                    frame,
                    left: left - taken as u32,
                };
                (taken, stage)
            }
        };
        let next = self.settle(peer, next, pos + consumed, first_event, events)?;
        self.reader(peer).stage = next;
        Ok(consumed)
    }

    /// Ends a frame whose payload is all read, so that a frame's effect never waits for the
    /// next chunk.
    fn settle(
        &mut self,
        peer: Peer,
        stage: Stage,
        pos: usize,
        first_event: usize,
        events: &mut Vec<Event>,
    ) -> Result<Stage, TunnelReason> {
        let done = match &stage {
            Stage::Data {
                frame,
                data_left: 0,
                padding_left: 0,
                report,
            } => {
                if *report && frame.has(flags::END_STREAM) && self.is_described(peer, frame.stream)
                {
                    self.end_data(peer, frame.stream, pos, first_event, events);
                }
                true
            }
            Stage::Fragment {
                frame,
                left: 0,
                padding_left: 0,
            } => {
                if frame.has(flags::END_HEADERS) {
                    match peer {
                        Peer::Client => self.end_block(events)?,
                        Peer::Server => self.end_response_block(events)?,
                    }
                }
                true
            }
            Stage::Skip { left: 0, .. } => true,
            _ => false,
        };
        Ok(if done {
            Stage::Header(FrameHeaderReader::default())
        } else {
            stage
        })
    }

    /// Checks a frame header and decides how its payload is read.
    fn begin_frame(
        &mut self,
        peer: Peer,
        frame: FrameHeader,
        events: &mut Vec<Event>,
    ) -> Result<Stage, TunnelReason> {
        let reader = self.reader(peer);
        let first = std::mem::replace(&mut reader.first_frame, false);
        if first && (frame.kind != FrameType::Settings || frame.has(flags::ACK)) {
            return Err(match peer {
                Peer::Client => TunnelReason::ClientFirstFrameNotSettings,
                Peer::Server => TunnelReason::ServerFirstFrameNotSettings,
            });
        }
        let plan = match peer {
            Peer::Client => self.plan_client_frame(&frame, events)?,
            Peer::Server if self.responses.is_some() => self.plan_response_frame(&frame, events)?,
            Peer::Server => self.plan_server_frame(&frame)?,
        };
        self.live.frame(peer, &frame);
        if frame.kind == FrameType::Settings {
            if frame.has(flags::ACK) {
                // The sender applied the other peer's oldest pending SETTINGS.
                self.sent_by(peer.other()).acknowledged()?;
            } else {
                let latest = self.sent_by(peer).latest();
                if frame.length == 0 {
                    self.sent_by(peer).sent(latest)?;
                }
                self.reader(peer).settings = latest;
            }
        }
        Ok(match plan {
            Plan::Collect(n) => Stage::Collect {
                frame,
                buf: SmallBuf::new(n),
                left: frame.length - n as u32,
            },
            Plan::Data { report } => Stage::Data {
                frame,
                report,
                data_left: frame.length,
                padding_left: 0,
            },
            Plan::Fragment => {
                self.reserve_fragment(peer, frame.length)?;
                Stage::Fragment {
                    frame,
                    left: frame.length,
                    padding_left: 0,
                }
            }
            Plan::Skip => Stage::Skip {
                frame,
                left: frame.length,
            },
        })
    }

    fn sent_by(&mut self, peer: Peer) -> &mut SentSettings {
        match peer {
            Peer::Client => &mut self.client_settings,
            Peer::Server => &mut self.server_settings,
        }
    }

    fn plan_client_frame(
        &mut self,
        frame: &FrameHeader,
        events: &mut Vec<Event>,
    ) -> Result<Plan, TunnelReason> {
        if frame.length > self.server_settings.max_frame_size() {
            return Err(TunnelReason::ClientFrameTooLarge);
        }
        if let Some(block) = &self.block {
            if frame.kind != FrameType::Continuation || frame.stream != block.stream {
                return Err(TunnelReason::ContinuationExpected);
            }
        }
        let stream = frame.stream;
        let client_stream = stream != 0 && stream % 2 == 1;
        Ok(match frame.kind {
            FrameType::Data => {
                if !client_stream {
                    return Err(TunnelReason::InvalidStreamId);
                }
                let report = match self.streams.state(stream) {
                    StreamState::Idle => return Err(TunnelReason::IdleStream),
                    StreamState::Open => true,
                    StreamState::Closed => false,
                };
                if frame.has(flags::PADDED) {
                    return padded(frame, 1, TunnelReason::InvalidFrameLength);
                }
                let report = report && self.data_start(Peer::Client, frame, frame.length, events);
                Plan::Data { report }
            }
            FrameType::Headers => {
                if !client_stream {
                    return Err(TunnelReason::InvalidStreamId);
                }
                let kind = match self.streams.state(stream) {
                    StreamState::Idle => {
                        if self.streams.open(stream)? {
                            BlockKind::Request
                        } else {
                            // Above the primary's GOAWAY: it ignores the stream.
                            BlockKind::Ignored
                        }
                    }
                    StreamState::Open => BlockKind::Trailers,
                    StreamState::Closed => BlockKind::Ignored,
                };
                self.block = Some(Block {
                    stream,
                    kind,
                    end_stream: frame.has(flags::END_STREAM),
                    bytes: Vec::new(),
                });
                let prefix = usize::from(frame.has(flags::PADDED))
                    + if frame.has(flags::PRIORITY) { 5 } else { 0 };
                if prefix > 0 {
                    return padded(frame, prefix, TunnelReason::InvalidFrameLength);
                }
                Plan::Fragment
            }
            FrameType::Continuation => {
                if self.block.is_none() {
                    return Err(TunnelReason::UnexpectedContinuation);
                }
                Plan::Fragment
            }
            FrameType::Priority => {
                if stream == 0 {
                    return Err(TunnelReason::InvalidStreamId);
                }
                fixed(frame, 5)?
            }
            FrameType::RstStream => {
                if stream == 0 {
                    return Err(TunnelReason::InvalidStreamId);
                }
                if client_stream && self.streams.state(stream) == StreamState::Idle {
                    return Err(TunnelReason::IdleStream);
                }
                fixed(frame, 4)?
            }
            FrameType::Settings => settings_plan(frame, TunnelReason::InvalidFrameLength)
                .and_then(|plan| {
                    if stream != 0 {
                        Err(TunnelReason::InvalidStreamId)
                    } else {
                        Ok(plan)
                    }
                })?,
            FrameType::PushPromise => return Err(TunnelReason::ClientPushPromise),
            FrameType::Ping => {
                if stream != 0 {
                    return Err(TunnelReason::InvalidStreamId);
                }
                fixed(frame, 8)?
            }
            FrameType::GoAway => {
                if stream != 0 {
                    return Err(TunnelReason::InvalidStreamId);
                }
                if frame.length < 8 {
                    return Err(TunnelReason::InvalidFrameLength);
                }
                Plan::Collect(8)
            }
            FrameType::WindowUpdate => {
                if client_stream && self.streams.state(stream) == StreamState::Idle {
                    return Err(TunnelReason::IdleStream);
                }
                fixed(frame, 4)?
            }
            FrameType::Unknown(_) => Plan::Skip,
        })
    }

    fn plan_server_frame(&mut self, frame: &FrameHeader) -> Result<Plan, TunnelReason> {
        if frame.length > self.client_settings.max_frame_size() {
            return Err(TunnelReason::ServerFrameTooLarge);
        }
        Ok(match frame.kind {
            FrameType::Settings => {
                if frame.stream != 0 {
                    return Err(TunnelReason::ServerProtocolError);
                }
                settings_plan(frame, TunnelReason::ServerProtocolError)?
            }
            FrameType::RstStream => {
                if frame.stream == 0 || frame.length != 4 {
                    return Err(TunnelReason::ServerProtocolError);
                }
                Plan::Collect(4)
            }
            FrameType::GoAway => {
                if frame.stream != 0 || frame.length < 8 {
                    return Err(TunnelReason::ServerProtocolError);
                }
                Plan::Collect(8)
            }
            _ => Plan::Skip,
        })
    }

    /// Starts the `data_len` data bytes of a DATA frame of `peer` on a described stream: counts
    /// them against the Content-Length (as h2 does, per frame, and at END_STREAM). Returns
    /// whether the stream is still described.
    fn data_start(
        &mut self,
        peer: Peer,
        frame: &FrameHeader,
        data_len: u32,
        events: &mut Vec<Event>,
    ) -> bool {
        let end_stream = frame.has(flags::END_STREAM);
        let remaining = match peer {
            Peer::Client => self
                .streams
                .get_mut(frame.stream)
                .map(|open| &mut open.content_remaining),
            Peer::Server => self.response_body(frame.stream),
        };
        let Some(remaining) = remaining else {
            return false;
        };
        let fits = count_data(remaining, data_len, end_stream);
        if !fits {
            let reason = SkipReason::ContentLengthMismatch;
            match peer {
                Peer::Client => self.skip_stream(frame.stream, reason, events),
                Peer::Server => self.skip_response(frame.stream, reason, events),
            }
        }
        fits
    }

    /// Whether `peer`'s side of `stream` is still described: the client's request, or the
    /// primary's response.
    fn is_described(&mut self, peer: Peer, stream: u32) -> bool {
        match peer {
            Peer::Client => self.streams.state(stream) == StreamState::Open,
            Peer::Server => self.response_body(stream).is_some(),
        }
    }

    /// The bytes of `peer`'s field block in progress.
    fn block_bytes(&mut self, peer: Peer) -> Option<&mut Vec<u8>> {
        match peer {
            Peer::Client => self.block.as_mut().map(|block| &mut block.bytes),
            Peer::Server => self
                .responses
                .as_mut()
                .and_then(|side| side.block.as_mut())
                .map(|block| &mut block.bytes),
        }
    }

    /// Handles a collected fixed-size part of a payload.
    fn collected(
        &mut self,
        peer: Peer,
        frame: FrameHeader,
        bytes: &[u8],
        left: u32,
        events: &mut Vec<Event>,
    ) -> Result<Stage, TunnelReason> {
        let skip_rest = Stage::Skip { frame, left };
        match (peer, frame.kind) {
            (_, FrameType::Data) => {
                let padding = u32::from(bytes[0]);
                if padding > left {
                    return Err(protocol_error(peer, TunnelReason::InvalidPadding));
                }
                let data_len = left - padding;
                let report = self.is_described(peer, frame.stream)
                    && self.data_start(peer, &frame, data_len, events);
                Ok(Stage::Data {
                    frame,
                    report,
                    data_left: data_len,
                    padding_left: padding,
                })
            }
            (_, FrameType::Headers | FrameType::PushPromise) => {
                let mut rest = bytes;
                let mut padding = 0;
                if frame.has(flags::PADDED) {
                    padding = u32::from(rest[0]);
                    rest = &rest[1..];
                }
                if frame.kind == FrameType::Headers && frame.has(flags::PRIORITY) {
                    let dependency = read_u31(&[rest[0], rest[1], rest[2], rest[3]]);
                    if dependency == frame.stream {
                        return Err(protocol_error(peer, TunnelReason::SelfDependency));
                    }
                }
                if frame.kind == FrameType::PushPromise {
                    // Only the primary's frames get here (a client's is refused when planned).
                    let promised = read_u31(&[rest[0], rest[1], rest[2], rest[3]]);
                    if promised == 0 || promised % 2 == 1 {
                        return Err(TunnelReason::ServerProtocolError);
                    }
                }
                if padding > left {
                    return Err(protocol_error(peer, TunnelReason::InvalidPadding));
                }
                let fragment = left - padding;
                self.reserve_fragment(peer, fragment)?;
                Ok(Stage::Fragment {
                    frame,
                    left: fragment,
                    padding_left: padding,
                })
            }
            (_, FrameType::Settings) => {
                let reader = self.reader(peer);
                reader.settings.apply(bytes)?;
                if left == 0 {
                    let values = reader.settings;
                    self.sent_by(peer).sent(values)?;
                    Ok(skip_rest)
                } else {
                    Ok(Stage::Collect {
                        frame,
                        buf: SmallBuf::new(6),
                        left: left - 6,
                    })
                }
            }
            (Peer::Client, FrameType::Priority) => {
                let dependency = read_u31(&[bytes[0], bytes[1], bytes[2], bytes[3]]);
                if dependency == frame.stream {
                    return Err(TunnelReason::SelfDependency);
                }
                Ok(skip_rest)
            }
            (_, FrameType::RstStream) => {
                let code = ErrorCode(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
                self.reset(peer, frame.stream, code, events)?;
                Ok(skip_rest)
            }
            (_, FrameType::GoAway) => {
                let last = read_u31(&[bytes[0], bytes[1], bytes[2], bytes[3]]);
                let code = ErrorCode(u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
                if peer == Peer::Server {
                    // With an error code the primary is closing the connection: nothing still
                    // open will be processed to its end.
                    let processed = if code == ErrorCode::NO_ERROR { last } else { 0 };
                    self.streams.server_goaway(processed);
                    self.live.server_goaway(processed);
                    // Its answers to streams up to `last` may still come whatever the code
                    // (RFC 9113 section 6.8), and h2's client takes them: they are still followed.
                    if let Some(side) = &mut self.responses {
                        side.goaway(last);
                    }
                    if let Some(block) = &mut self.block {
                        if block.kind == BlockKind::Request && block.stream > processed {
                            block.kind = BlockKind::Ignored;
                        }
                    }
                }
                events.push(Event::GoAway {
                    by: peer,
                    last_stream_id: StreamId::new(last),
                    code,
                });
                Ok(skip_rest)
            }
            (Peer::Client, FrameType::WindowUpdate) => {
                if read_u31(&[bytes[0], bytes[1], bytes[2], bytes[3]]) == 0 {
                    return Err(TunnelReason::ZeroWindowIncrement);
                }
                Ok(skip_rest)
            }
            // PING: nothing to follow.
            _ => Ok(skip_rest),
        }
    }

    /// RST_STREAM from `peer` on `stream`.
    fn reset(
        &mut self,
        peer: Peer,
        stream: u32,
        code: ErrorCode,
        events: &mut Vec<Event>,
    ) -> Result<(), TunnelReason> {
        if stream.is_multiple_of(2) {
            // A pushed stream: no request of the client's.
            return Ok(());
        }
        if self.streams.state(stream) == StreamState::Idle {
            // The client's side was checked when the frame began. The primary cannot reset a
            // stream it has not seen opened: either it misbehaves or the caller fed its bytes
            // before the client's; the decoder cannot tell which, so it stops.
            return Err(TunnelReason::ServerProtocolError);
        }
        self.streams.close(stream);
        self.forget_response(stream);
        if let Some(block) = &mut self.block {
            if block.stream == stream {
                block.kind = BlockKind::Ignored;
            }
        }
        events.push(Event::Reset {
            stream: StreamId::new(stream),
            by: peer,
            code,
        });
        Ok(())
    }

    /// Checks a fragment of `len` bytes fits `peer`'s block limit, and makes room for it.
    fn reserve_fragment(&mut self, peer: Peer, len: u32) -> Result<(), TunnelReason> {
        let limit = self.limits.max_header_bytes;
        let too_large = match peer {
            Peer::Client => TunnelReason::HeaderBlockTooLarge,
            Peer::Server => TunnelReason::ServerHeaderBlockTooLarge,
        };
        if let Some(bytes) = self.block_bytes(peer) {
            let total = bytes.len().saturating_add(len as usize);
            if total > limit {
                return Err(too_large);
            }
            bytes.reserve(len as usize);
        }
        Ok(())
    }

    /// A described stream's DATA frame with END_STREAM from `peer` is all read: the request (or
    /// the response) is complete.
    fn end_data(
        &mut self,
        peer: Peer,
        stream: u32,
        pos: usize,
        first_event: usize,
        events: &mut Vec<Event>,
    ) {
        match peer {
            Peer::Client => {
                self.streams.close(stream);
            }
            Peer::Server => self.forget_response(stream),
        }
        let id = StreamId::new(stream);
        // Mark the data just reported from this chunk as the last, when it is the last event;
        // otherwise say so with an empty piece.
        if events.len() > first_event {
            if let Some(
                Event::Data {
                    stream: last_stream,
                    end_stream,
                    ..
                }
                | Event::ResponseData {
                    stream: last_stream,
                    end_stream,
                    ..
                },
            ) = events.last_mut()
            {
                // Events of one feed are all of one peer's chunk.
                if *last_stream == id {
                    *end_stream = true;
                    return;
                }
            }
        }
        events.push(data_event(peer, id, pos..pos, true));
    }

    /// Stops describing `stream` and says why.
    fn skip_stream(&mut self, stream: u32, reason: SkipReason, events: &mut Vec<Event>) {
        self.streams.close(stream);
        self.forget_response(stream);
        events.push(Event::Skipped {
            stream: StreamId::new(stream),
            reason,
        });
    }

    /// The client's field block is complete: decode it and report what it is.
    fn end_block(&mut self, events: &mut Vec<Event>) -> Result<(), TunnelReason> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let allowed = self.server_settings.max_header_table_size() as usize;
        let max = self.limits.max_header_bytes;
        let id = StreamId::new(block.stream);
        match block.kind {
            BlockKind::Ignored => {
                self.requests
                    .decode(&block.bytes, allowed, &mut |_, _| {})?;
            }
            BlockKind::Request => {
                let mut builder = RequestBuilder::new(max);
                self.requests
                    .decode(&block.bytes, allowed, &mut |name, value| {
                        builder.field(name, value)
                    })?;
                match builder.finish(block.end_stream) {
                    Ok(head) => {
                        if !block.end_stream {
                            self.streams.insert(OpenStream {
                                id: block.stream,
                                content_remaining: head.content_length(),
                            })?;
                        }
                        let head_request = *head.method() == Method::HEAD;
                        events.push(Event::Request {
                            stream: id,
                            head: Box::new(head),
                            end_stream: block.end_stream,
                        });
                        self.await_response(block.stream, head_request, events);
                    }
                    Err(reason) => events.push(Event::Skipped { stream: id, reason }),
                }
            }
            BlockKind::Trailers => {
                let mut builder = TrailersBuilder::new(max);
                self.requests
                    .decode(&block.bytes, allowed, &mut |name, value| {
                        builder.field(name, value)
                    })?;
                let remaining = self
                    .streams
                    .get_mut(block.stream)
                    .and_then(|open| open.content_remaining);
                let result = if !block.end_stream {
                    Err(SkipReason::TrailersWithoutEndStream)
                } else if remaining.is_some_and(|left| left > 0) {
                    Err(SkipReason::ContentLengthMismatch)
                } else {
                    builder.finish()
                };
                self.streams.close(block.stream);
                match result {
                    Ok(trailers) => events.push(Event::Trailers {
                        stream: id,
                        trailers,
                    }),
                    Err(reason) => self.skip_stream(block.stream, reason, events),
                }
            }
        }
        Ok(())
    }
}

/// A DATA, HEADERS or PUSH_PROMISE frame with a `prefix` (pad length, priority, promised
/// stream) to collect first; `invalid` when the frame is too short for it.
fn padded(frame: &FrameHeader, prefix: usize, invalid: TunnelReason) -> Result<Plan, TunnelReason> {
    if (frame.length as usize) < prefix {
        return Err(invalid);
    }
    Ok(Plan::Collect(prefix))
}

/// Counts `data_len` body bytes against the Content-Length's `remaining` bytes, if one was sent;
/// false when they overrun it or the body ends (`end_stream`) short of it.
fn count_data(remaining: &mut Option<u64>, data_len: u32, end_stream: bool) -> bool {
    match remaining {
        None => true,
        Some(remaining) => match remaining.checked_sub(u64::from(data_len)) {
            Some(rest) if !end_stream || rest == 0 => {
                *remaining = rest;
                true
            }
            _ => false,
        },
    }
}

/// Whether a body may end here: no Content-Length, or all the bytes it announced were counted.
fn body_complete(remaining: Option<u64>) -> bool {
    remaining.is_none_or(|left| left == 0)
}

/// A body piece of `peer`'s side.
fn data_event(peer: Peer, stream: StreamId, range: Range<usize>, end_stream: bool) -> Event {
    match peer {
        Peer::Client => Event::Data {
            stream,
            range,
            end_stream,
        },
        Peer::Server => Event::ResponseData {
            stream,
            range,
            end_stream,
        },
    }
}

/// The primary's framing errors all end in one reason; the client's are told apart.
fn protocol_error(peer: Peer, client_reason: TunnelReason) -> TunnelReason {
    match peer {
        Peer::Client => client_reason,
        Peer::Server => TunnelReason::ServerProtocolError,
    }
}

/// A frame whose payload must be exactly `len` bytes.
fn fixed(frame: &FrameHeader, len: u32) -> Result<Plan, TunnelReason> {
    if frame.length != len {
        return Err(TunnelReason::InvalidFrameLength);
    }
    Ok(Plan::Collect(len as usize))
}

/// SETTINGS: an ACK is empty, other frames hold 6-byte entries.
fn settings_plan(frame: &FrameHeader, invalid: TunnelReason) -> Result<Plan, TunnelReason> {
    if frame.has(flags::ACK) {
        return if frame.length == 0 {
            Ok(Plan::Skip)
        } else {
            Err(invalid)
        };
    }
    if !frame.length.is_multiple_of(6) {
        return Err(invalid);
    }
    Ok(if frame.length == 0 {
        Plan::Skip
    } else {
        Plan::Collect(6)
    })
}
