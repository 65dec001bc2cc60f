//! HTTP/2 copies: each stream of a connection with prior knowledge (h2c, gRPC) is a request,
//! decoded beside the relay ([`crate::http::h2`]) and met by the same rules, sampling, limits and
//! edits as an HTTP/1.1 request: `:authority` stands for Host, `:path` for the target. A chosen
//! stream's copy ([`super::copy::build_h2_head`]) goes to its target as an HTTP/2 request of its
//! own ([`crate::shadow::H2Copy`]), with the stream's data and trailers; a stream that ends in
//! the same read goes complete, the others stream.
//!
//! The per-stream view lives here: for each open stream, the engine its request was decided
//! under and its copies, one per target. A stream the client or the primary resets, or that the
//! primary's GOAWAY says it will not process, abandons its copies; a client-streaming or
//! bidirectional call whose data passes a target's `max_body_bytes` cancels that copy
//! (`body_over_cap`). Memory: the decoder's bounds, plus per open stream its copies' handles;
//! body data is charged to the copy budget.
//!
//! Under a rule that compares answers, a sampled stream's copies carry a pair each, and the
//! primary's answer on the stream is captured from the decoder's response events
//! ([`super::h2answers`]). The decoder decodes responses only on a connection where a rule that
//! may match it compares (decided when the connection turns out to be HTTP/2): decoding them
//! costs a second HPACK table and the work of every response head, which connections that
//! compare nothing never pay. The primary's HPACK state cannot be picked up midway, so a
//! connection that started before a reload added comparing goes on uncompared.

use std::sync::Arc;

use bytes::Bytes;
use fnv::FnvHashMap;
use http::HeaderMap;
use tokio::sync::mpsc;

use super::{
    copy::{self, Authorities},
    h2answers::PrimaryStreams,
    tap::Context,
    Engine, BODY_CHANNEL_SLOTS,
};
use crate::{
    compare::{Protocol, RequestLine},
    http::h2::{Event, FieldList, H2Decoder, H2Limits, Peer, RequestHead, StreamId},
    shadow::{self, H2Chunk, H2Copy},
};

/// One target's copy of a stream.
enum StreamCopy {
    /// Made during the current read, not yet handed to its target.
    Starting {
        target: usize,
        head: Box<http::Request<()>>,
        body: Vec<Bytes>,
        sent: u64,
        compare: Option<shadow::Compared>,
    },
    /// Handed to its target; the rest of the body follows.
    Streaming {
        target: usize,
        rest: mpsc::Sender<H2Chunk>,
        sent: u64,
    },
}

impl StreamCopy {
    fn target(&self) -> usize {
        match self {
            Self::Starting { target, .. } | Self::Streaming { target, .. } => *target,
        }
    }
}

/// An open stream with copies.
struct Stream {
    engine: Arc<Engine>,
    copies: Vec<StreamCopy>,
}

/// The HTTP/2 side of a tap.
pub(super) struct Copies {
    decoder: H2Decoder,
    events: Vec<Event>,
    streams: FnvHashMap<u32, Stream>,
    /// The compared streams' answers (nothing unless a rule compares).
    answers: PrimaryStreams,
    /// The decoder reports the primary's answers: streams may be compared.
    decodes_responses: bool,
    /// The copies' `:authority`, rewritten once per connection.
    authorities: Authorities,
}

impl Copies {
    /// `decode_responses`: a rule that may match the connection compares answers.
    pub fn new(max_header_bytes: usize, decode_responses: bool) -> Self {
        Self {
            decoder: H2Decoder::new(H2Limits {
                max_header_bytes,
                decode_responses,
                ..H2Limits::default()
            }),
            events: Vec::new(),
            streams: FnvHashMap::default(),
            answers: PrimaryStreams::default(),
            decodes_responses: decode_responses,
            authorities: Authorities::default(),
        }
    }

    /// Describes `chunk` from the client. Returns true once the connection is a tunnel (counted).
    pub fn observe_client(&mut self, context: &mut Context, chunk: &[u8]) -> bool {
        let mut events = std::mem::take(&mut self.events);
        self.decoder.feed_client(chunk, &mut events);
        let tunnelled = self.handle(context, &mut events, chunk);
        self.events = events;
        self.submit_streaming();
        tunnelled
    }

    /// Describes `chunk` from the primary (its SETTINGS, resets and GOAWAY matter, and its
    /// answers when compared). Returns true once the connection is a tunnel (counted).
    pub fn observe_server(&mut self, context: &mut Context, chunk: &[u8]) -> bool {
        let mut events = std::mem::take(&mut self.events);
        self.decoder.feed_server(chunk, &mut events);
        let tunnelled = self.handle(context, &mut events, chunk);
        self.events = events;
        tunnelled
    }

    /// Whether every stream the client opened has ended both ways and no frame is half-read:
    /// closing the connection loses nothing ([`H2Decoder::is_idle`]).
    pub fn is_idle(&self) -> bool {
        self.decoder.is_idle()
    }

    /// Acts on `events`; `chunk` is what was fed (the client's for request data, the primary's
    /// for response data).
    fn handle(&mut self, context: &mut Context, events: &mut Vec<Event>, chunk: &[u8]) -> bool {
        let mut tunnelled = false;
        for event in events.drain(..) {
            match event {
                Event::Request {
                    stream,
                    head,
                    end_stream,
                } => {
                    self.start(context, stream, &head);
                    if end_stream {
                        self.finish(stream, None);
                    }
                }
                Event::Data {
                    stream,
                    range,
                    end_stream,
                } => {
                    self.data(stream, chunk.get(range).unwrap_or_default());
                    if end_stream {
                        self.finish(stream, None);
                    }
                }
                Event::Trailers { stream, trailers } => {
                    self.finish(stream, Some(trailers.to_header_map()));
                }
                Event::Skipped { stream, reason } => {
                    context.count_skipped(reason.as_str());
                    self.abandon(stream.value());
                    self.answers.gone(stream.value());
                }
                Event::Reset { stream, .. } => {
                    self.abandon(stream.value());
                    self.answers.gone(stream.value());
                }
                Event::GoAway {
                    by,
                    last_stream_id,
                    code,
                } => {
                    let closing = code.0 != 0;
                    let above = |id: u32| by == Peer::Server && id > last_stream_id.value();
                    let gone: Vec<u32> = self
                        .streams
                        .keys()
                        .copied()
                        .filter(|&id| closing || above(id))
                        .collect();
                    for id in gone {
                        self.abandon(id);
                    }
                    // The decoder abandons responses on the primary's GOAWAY only.
                    if by == Peer::Server {
                        self.answers.go_away(last_stream_id.value(), closing);
                    }
                }
                // The primary's answers: reported only when a rule compares; looked at only
                // while a compared stream awaits one.
                _ if self.answers.is_empty() && !matches!(event, Event::Tunnel(_)) => {}
                Event::Interim { .. } => {}
                Event::Response {
                    stream,
                    head,
                    end_stream,
                } => self.answers.response(
                    stream.value(),
                    head.status().as_u16(),
                    fields(head.fields()),
                    end_stream,
                ),
                Event::ResponseData {
                    stream,
                    range,
                    end_stream,
                } => self.answers.data(
                    stream.value(),
                    chunk.get(range).unwrap_or_default(),
                    end_stream,
                ),
                Event::ResponseTrailers { stream, trailers } => {
                    self.answers.trailers(stream.value(), fields(&trailers));
                }
                Event::ResponseSkipped { stream, .. } => self.answers.not_followed(stream.value()),
                Event::Tunnel(reason) => {
                    let ids: Vec<u32> = self.streams.keys().copied().collect();
                    for id in ids {
                        self.abandon(id);
                    }
                    self.answers.stop();
                    context.count_tunnel(reason.as_str());
                    tunnelled = true;
                }
            }
        }
        tunnelled
    }

    fn start(&mut self, context: &mut Context, stream: StreamId, head: &RequestHead) {
        self.abandon(stream.value());
        let Some(engine) = context.refresh_engine() else {
            return;
        };
        let no_host = head.host().is_none_or(str::is_empty);
        let Some((rule, chosen)) =
            engine.choose_under_rule(&context.rules, head, no_host, head.content_length())
        else {
            return;
        };
        // Without the primary's answers (a reload added comparing after the connection began)
        // nothing is compared.
        let compared = if self.decodes_responses {
            engine.pairs(rule, &chosen, || {
                RequestLine::new(
                    head.method().as_str(),
                    head.path_and_query().as_str(),
                    Protocol::Http2,
                )
            })
        } else {
            Vec::new()
        };
        let mut copies = Vec::with_capacity(chosen.len());
        let mut pairs = Vec::new();
        for (i, index) in chosen.into_iter().enumerate() {
            let target = &engine.targets[index];
            match copy::build_h2_head(head, &target.edits, &mut self.authorities) {
                Some(head) => copies.push(StreamCopy::Starting {
                    target: index,
                    head: Box::new(head),
                    body: Vec::new(),
                    sent: 0,
                    compare: compared.get(i).cloned().flatten().map(|pair| {
                        pairs.push(pair.clone());
                        shadow::Compared {
                            pair,
                            budget: engine.budget.clone(),
                        }
                    }),
                }),
                // Edits that make no valid request (an added field the http crate refuses).
                None => {
                    target.outcomes.abandoned.inc();
                }
            }
        }
        self.answers
            .compare(stream.value(), pairs, engine.budget.clone());
        if !copies.is_empty() {
            self.streams
                .insert(stream.value(), Stream { engine, copies });
        }
    }

    fn data(&mut self, stream: StreamId, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let Some(Stream { engine, copies }) = self.streams.get_mut(&stream.value()) else {
            return;
        };
        let targets = &engine.targets;
        // One buffer, shared by every target's copy.
        let Some(data) = engine.budget.copy(data) else {
            for copy in copies.drain(..) {
                targets[copy.target()].outcomes.body_backpressure.inc();
            }
            return;
        };
        copies.retain_mut(|copy| {
            let target = &targets[copy.target()];
            match copy {
                StreamCopy::Starting { body, sent, .. } => {
                    *sent += data.len() as u64;
                    if *sent > target.max_body_bytes {
                        target.outcomes.body_over_cap.inc();
                        return false;
                    }
                    body.push(data.clone());
                    true
                }
                StreamCopy::Streaming { rest, sent, .. } => {
                    *sent += data.len() as u64;
                    if *sent > target.max_body_bytes {
                        // The shadow's stream is cancelled when the channel ends without its end.
                        target.outcomes.body_over_cap.inc();
                        return false;
                    }
                    // Keep one slot free so that the end always fits.
                    if rest.capacity() <= 1 {
                        target.outcomes.body_backpressure.inc();
                        return false;
                    }
                    if rest.try_send(H2Chunk::Data(data.clone())).is_err() {
                        target.outcomes.abandoned.inc();
                        return false;
                    }
                    true
                }
            }
        });
    }

    /// The stream's request is complete (with `trailers`, if it had some).
    fn finish(&mut self, stream: StreamId, trailers: Option<HeaderMap>) {
        self.answers.request_ended(stream.value());
        let Some(Stream { engine, copies }) = self.streams.remove(&stream.value()) else {
            return;
        };
        for copy in copies {
            let outcomes = &engine.targets[copy.target()].outcomes;
            match copy {
                StreamCopy::Starting {
                    target,
                    head,
                    body,
                    compare,
                    ..
                } => submit(
                    &engine.targets[target].sender,
                    outcomes,
                    H2Copy {
                        head: *head,
                        body_ready: body,
                        trailers: trailers.clone(),
                        rest: None,
                        compare,
                    },
                ),
                StreamCopy::Streaming { rest, .. } => {
                    let end = match &trailers {
                        Some(trailers) => H2Chunk::Trailers(trailers.clone()),
                        None => H2Chunk::End,
                    };
                    match rest.try_send(end) {
                        Ok(()) => outcomes.mirrored.inc(),
                        Err(_) => outcomes.abandoned.inc(),
                    };
                }
            }
        }
    }

    /// Hands the copies of streams still arriving to their targets, with what came of their
    /// data so far; the rest follows through a channel.
    fn submit_streaming(&mut self) {
        for Stream { engine, copies } in self.streams.values_mut() {
            let mut kept = Vec::with_capacity(copies.len());
            for copy in copies.drain(..) {
                let StreamCopy::Starting {
                    target,
                    head,
                    body,
                    sent,
                    compare,
                } = copy
                else {
                    kept.push(copy);
                    continue;
                };
                let (tx, rx) = mpsc::channel(BODY_CHANNEL_SLOTS);
                let t = &engine.targets[target];
                let copy = H2Copy {
                    head: *head,
                    body_ready: body,
                    trailers: None,
                    rest: Some(rx),
                    compare,
                };
                match t.sender.try_submit_h2(copy) {
                    Ok(()) => kept.push(StreamCopy::Streaming {
                        target,
                        rest: tx,
                        sent,
                    }),
                    Err(shadow::Rejected::QueueFull) => {
                        t.outcomes.queue_full.inc();
                    }
                    Err(shadow::Rejected::Closed) => {
                        t.outcomes.abandoned.inc();
                    }
                }
            }
            *copies = kept;
        }
        self.streams.retain(|_, stream| !stream.copies.is_empty());
    }

    /// Abandons the copies of stream `id` (a streaming one's channel ends without its end, so
    /// its stream to the shadow is cancelled).
    fn abandon(&mut self, id: u32) {
        if let Some(Stream { engine, copies }) = self.streams.remove(&id) {
            for copy in copies {
                engine.targets[copy.target()].outcomes.abandoned.inc();
            }
        }
    }
}

/// A decoded field section as the answers' capture takes it.
fn fields(fields: &FieldList) -> impl Iterator<Item = (&str, &[u8])> {
    fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
}

/// Submits a complete copy, counting its outcome.
fn submit(sender: &shadow::Target, outcomes: &super::Outcomes, copy: H2Copy) {
    match sender.try_submit_h2(copy) {
        Ok(()) => outcomes.mirrored.inc(),
        Err(shadow::Rejected::QueueFull) => outcomes.queue_full.inc(),
        Err(shadow::Rejected::Closed) => outcomes.abandoned.inc(),
    };
}

impl Drop for Copies {
    fn drop(&mut self) {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.abandon(id);
        }
    }
}
