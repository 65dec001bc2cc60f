//! The primary's side of the state machine when its responses are decoded
//! ([`H2Limits::decode_responses`](super::H2Limits)).
//!
//! The primary's field blocks (HEADERS, PUSH_PROMISE and their CONTINUATIONs) go through a second
//! HPACK decoder that follows the primary's encoder, bounded by the client's
//! SETTINGS_HEADER_TABLE_SIZE with the same acknowledgement rules as the other direction
//! (`settings`). Every block is decoded, whatever its stream, so that the table stays certain;
//! only blocks on a stream in [`ById<AwaitedResponse>`] are reported, as interim or final heads
//! or trailers depending on the response's phase. Pushed streams (PUSH_PROMISE and the HEADERS
//! and DATA on even streams) are the primary's, not requests of the client's: decoded for the
//! table, reported never.

use super::{
    body_complete, padded, Block, Event, FrameHeader, FrameType, H2Decoder, Peer, Plan, SkipReason,
    StreamId, TunnelReason,
};
use crate::http::h2::frame::flags;
use crate::http::h2::hpack::HpackDecoder;
use crate::http::h2::request::TrailersBuilder;
use crate::http::h2::response::{ResponseBuilder, ResponseHead};
use crate::http::h2::stream::{AwaitedResponse, ById, ResponsePhase, StreamState};

/// What the primary's side holds beyond the framing: its HPACK state, the responses awaited and
/// its field block in progress.
#[derive(Debug)]
pub struct ResponseSide {
    hpack: HpackDecoder,
    pub(super) awaited: ById<AwaitedResponse>,
    pub(super) block: Option<Block<ResponseBlock>>,
}

/// What a field block of the primary's is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBlock {
    /// HEADERS on a stream the client opened: a head or trailers if the response is awaited,
    /// decoded for the table only otherwise.
    Answer,
    /// PUSH_PROMISE, or HEADERS of a pushed stream: decoded for the table only.
    Push,
}

impl ResponseSide {
    pub fn new(max_table_size: usize) -> Self {
        Self {
            hpack: HpackDecoder::new(max_table_size),
            awaited: ById::default(),
            block: None,
        }
    }

    /// The primary's GOAWAY: it answers no stream above `processed` (its last stream identifier,
    /// whatever the error code).
    pub fn goaway(&mut self, processed: u32) {
        self.awaited.retain(|id| id <= processed);
    }
}

/// The primary's HPACK errors, named as the primary's.
fn server_hpack_error(reason: TunnelReason) -> TunnelReason {
    match reason {
        TunnelReason::HpackTableSizeOverSetting => TunnelReason::ServerHpackTableSizeOverSetting,
        TunnelReason::HpackTableSizeOverLimit => TunnelReason::ServerHpackTableSizeOverLimit,
        _ => TunnelReason::ServerHpackInvalid,
    }
}

impl H2Decoder {
    /// Checks a frame header of the primary and decides how its payload is read, with its
    /// responses decoded.
    pub(super) fn plan_response_frame(
        &mut self,
        frame: &FrameHeader,
        events: &mut Vec<Event>,
    ) -> Result<Plan, TunnelReason> {
        const INVALID: TunnelReason = TunnelReason::ServerProtocolError;
        if frame.length > self.client_settings.max_frame_size() {
            return Err(TunnelReason::ServerFrameTooLarge);
        }
        let stream = frame.stream;
        let block_stream = self.response_side().block.as_ref().map(|b| b.stream);
        if let Some(block_stream) = block_stream {
            if frame.kind != FrameType::Continuation || stream != block_stream {
                return Err(INVALID);
            }
        }
        let client_stream = stream % 2 == 1;
        let carries_stream = matches!(
            frame.kind,
            FrameType::Data | FrameType::Headers | FrameType::PushPromise
        );
        if carries_stream
            && (stream == 0 || client_stream && self.streams.state(stream) == StreamState::Idle)
        {
            // The primary cannot answer a stream the client has not opened (or the caller fed
            // its bytes before the client's): either way, not to be followed.
            return Err(INVALID);
        }
        Ok(match frame.kind {
            FrameType::Data => {
                if self.response_phase(stream) == Some(ResponsePhase::Head) {
                    // h2's client fails the connection on it.
                    return Err(INVALID);
                }
                if frame.has(flags::PADDED) {
                    return padded(frame, 1, INVALID);
                }
                let report = self.data_start(Peer::Server, frame, frame.length, events);
                Plan::Data { report }
            }
            FrameType::Headers => {
                let kind = if client_stream {
                    ResponseBlock::Answer
                } else {
                    ResponseBlock::Push
                };
                self.start_response_block(stream, kind, frame.has(flags::END_STREAM));
                let prefix = usize::from(frame.has(flags::PADDED))
                    + if frame.has(flags::PRIORITY) { 5 } else { 0 };
                if prefix > 0 {
                    return padded(frame, prefix, INVALID);
                }
                Plan::Fragment
            }
            FrameType::PushPromise => {
                if !client_stream {
                    return Err(INVALID);
                }
                self.start_response_block(stream, ResponseBlock::Push, false);
                // The pad length, then the promised stream.
                return padded(frame, usize::from(frame.has(flags::PADDED)) + 4, INVALID);
            }
            FrameType::Continuation => {
                if block_stream.is_none() {
                    return Err(INVALID);
                }
                Plan::Fragment
            }
            _ => self.plan_server_frame(frame)?,
        })
    }

    fn start_response_block(&mut self, stream: u32, kind: ResponseBlock, end_stream: bool) {
        self.response_side().block = Some(Block {
            stream,
            kind,
            end_stream,
            bytes: Vec::new(),
        });
    }

    /// The primary's field block is complete: decode it and report what it is.
    pub(super) fn end_response_block(
        &mut self,
        events: &mut Vec<Event>,
    ) -> Result<(), TunnelReason> {
        let allowed = self.client_settings.max_header_table_size() as usize;
        let max = self.limits.max_header_bytes;
        let side = self.response_side();
        let Some(block) = side.block.take() else {
            return Ok(());
        };
        let phase = match block.kind {
            ResponseBlock::Push => None,
            ResponseBlock::Answer => side.awaited.get_mut(block.stream).map(|a| a.phase),
        };
        match phase {
            None => side
                .hpack
                .decode(&block.bytes, allowed, &mut |_, _| {})
                .map_err(server_hpack_error)?,
            Some(ResponsePhase::Head) => {
                let mut builder = ResponseBuilder::new(max);
                side.hpack
                    .decode(&block.bytes, allowed, &mut |name, value| {
                        builder.field(name, value)
                    })
                    .map_err(server_hpack_error)?;
                match builder.finish() {
                    Ok(head) => self.response_head(block.stream, head, block.end_stream, events),
                    Err(reason) => self.skip_response(block.stream, reason, events),
                }
            }
            Some(ResponsePhase::Body { content_remaining }) => {
                let mut builder = TrailersBuilder::new(max);
                side.hpack
                    .decode(&block.bytes, allowed, &mut |name, value| {
                        builder.field(name, value)
                    })
                    .map_err(server_hpack_error)?;
                let result = if !block.end_stream {
                    Err(SkipReason::TrailersWithoutEndStream)
                } else if !body_complete(content_remaining) {
                    Err(SkipReason::ContentLengthMismatch)
                } else {
                    builder.finish()
                };
                match result {
                    Ok(trailers) => {
                        self.forget_response(block.stream);
                        events.push(Event::ResponseTrailers {
                            stream: StreamId::new(block.stream),
                            trailers,
                        });
                    }
                    Err(reason) => self.skip_response(block.stream, reason, events),
                }
            }
        }
        Ok(())
    }

    /// A well-formed head on an awaited response: interim, or the final one.
    fn response_head(
        &mut self,
        stream: u32,
        head: ResponseHead,
        end_stream: bool,
        events: &mut Vec<Event>,
    ) {
        let id = StreamId::new(stream);
        let status = head.status();
        if status.is_informational() {
            if end_stream {
                self.skip_response(stream, SkipReason::MalformedInterim, events);
            } else {
                events.push(Event::Interim {
                    stream: id,
                    head: Box::new(head),
                });
            }
            return;
        }
        let Some(awaited) = self.response_side().awaited.get_mut(stream) else {
            return;
        };
        // The body a HEAD request is answered with is empty, whatever Content-Length says.
        let content_remaining = if awaited.head_request {
            Some(0)
        } else {
            head.content_length()
        };
        awaited.phase = ResponsePhase::Body { content_remaining };
        // As h2's client: 204 and 304 may announce a length they do not send.
        let bodyless_status = status.as_u16() == 204 || status.as_u16() == 304;
        if end_stream && !bodyless_status && !body_complete(content_remaining) {
            self.skip_response(stream, SkipReason::ContentLengthMismatch, events);
            return;
        }
        if end_stream {
            self.forget_response(stream);
        }
        events.push(Event::Response {
            stream: id,
            head: Box::new(head),
            end_stream,
        });
    }

    /// The request of `stream` was just reported: its response is awaited, if there is room.
    pub(super) fn await_response(
        &mut self,
        stream: u32,
        head_request: bool,
        events: &mut Vec<Event>,
    ) {
        let max = self.limits.max_streams;
        let Some(side) = &mut self.responses else {
            return;
        };
        if side.awaited.len() >= max {
            events.push(Event::ResponseSkipped {
                stream: StreamId::new(stream),
                reason: SkipReason::TooManyResponses,
            });
            return;
        }
        side.awaited.insert(AwaitedResponse {
            id: stream,
            head_request,
            phase: ResponsePhase::Head,
        });
    }

    /// Stops following the response of `stream` (ended, reset, or its request skipped).
    pub(super) fn forget_response(&mut self, stream: u32) {
        if let Some(side) = &mut self.responses {
            side.awaited.remove(stream);
        }
    }

    /// Stops describing the response of `stream` and says why.
    pub(super) fn skip_response(
        &mut self,
        stream: u32,
        reason: SkipReason,
        events: &mut Vec<Event>,
    ) {
        self.forget_response(stream);
        events.push(Event::ResponseSkipped {
            stream: StreamId::new(stream),
            reason,
        });
    }

    /// The body bytes the Content-Length of `stream`'s response still announces, when its final
    /// head was reported and its end is still to come.
    pub(super) fn response_body(&mut self, stream: u32) -> Option<&mut Option<u64>> {
        match &mut self.responses.as_mut()?.awaited.get_mut(stream)?.phase {
            ResponsePhase::Body { content_remaining } => Some(content_remaining),
            ResponsePhase::Head => None,
        }
    }

    fn response_phase(&mut self, stream: u32) -> Option<ResponsePhase> {
        Some(self.responses.as_mut()?.awaited.get_mut(stream)?.phase)
    }

    /// The primary's side. Only called while responses are decoded (frames are planned here
    /// and field blocks started only then), so it never has to be made.
    fn response_side(&mut self) -> &mut ResponseSide {
        self.responses
            .get_or_insert_with(|| Box::new(ResponseSide::new(self.limits.max_table_size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_errors_of_the_primary_are_named_as_its_own() {
        assert_eq!(
            server_hpack_error(TunnelReason::HpackTableSizeOverSetting),
            TunnelReason::ServerHpackTableSizeOverSetting
        );
        assert_eq!(
            server_hpack_error(TunnelReason::HpackTableSizeOverLimit),
            TunnelReason::ServerHpackTableSizeOverLimit
        );
        assert_eq!(
            server_hpack_error(TunnelReason::HpackInvalidHuffman),
            TunnelReason::ServerHpackInvalid
        );
    }

    #[test]
    fn goaway_drops_the_responses_it_excludes() {
        let mut side = ResponseSide::new(4096);
        for id in [1, 3, 5] {
            side.awaited.insert(AwaitedResponse {
                id,
                head_request: false,
                phase: ResponsePhase::Head,
            });
        }
        side.goaway(3);
        assert_eq!(side.awaited.len(), 2);
        side.goaway(0);
        assert_eq!(side.awaited.len(), 0);
    }
}
