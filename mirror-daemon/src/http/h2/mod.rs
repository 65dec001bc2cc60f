//! HTTP/2 decoding of a connection with prior knowledge (h2c, what gRPC uses), for mirroring.
//!
//! The daemon relays an HTTP/2 connection byte for byte, as it does HTTP/1.1; this module only
//! describes the bytes already passed on. [`H2Decoder`] is fed the client's bytes
//! ([`H2Decoder::feed_client`], starting with the preface) and the primary's
//! ([`H2Decoder::feed_server`]), never blocks and never holds bytes back, and reports each
//! stream's request as [`Event`]s: head (pseudo-headers and fields, decoded), body data as ranges
//! of the chunk, trailers, resets, GOAWAY. The client's side is decoded fully (RFC 9113 frames,
//! padding, CONTINUATION, stream states; RFC 7541 HPACK with the dynamic table driven exactly as
//! the client's encoder drives it, within what the primary's SETTINGS allow); the primary's side
//! only for frame boundaries, SETTINGS, RST_STREAM and GOAWAY. Whatever cannot be followed with
//! certainty ends in [`Event::Tunnel`] with a [`TunnelReason`]: the connection then flows on
//! untouched and unmirrored.
//!
//! Opt-in ([`H2Limits::decode_responses`], off by default): the primary's responses to the
//! reported requests, for comparing them with a shadow's. The primary's field blocks then go
//! through a second HPACK decoder (its encoder's table, bounded by the client's
//! SETTINGS_HEADER_TABLE_SIZE with the same acknowledgement rules), and each reported request's
//! answer comes as [`Event::Interim`] heads (1xx), [`Event::Response`] (`:status` and fields;
//! for gRPC's Trailers-Only answers `grpc-status` is among them), [`Event::ResponseData`] ranges
//! and [`Event::ResponseTrailers`], or [`Event::ResponseSkipped`] when malformed. Events carry no
//! time: the caller stamps each with the moment it fed the chunk that completed it. Pushed
//! streams are decoded for the HPACK state only and never reported; responses on streams whose
//! request was not reported (or was skipped or reset) are not either. The primary's errors that
//! leave its side uncertain end in a tunnel (`h2_primary_*` reasons).
//!
//! Whatever is decoded, [`H2Decoder::is_idle`] says when the connection is at a point where
//! closing it loses nothing: every stream the client opened has ended in both directions, from
//! the frame headers' END_STREAM and RST_STREAM (and the primary's GOAWAY), and no frame is
//! half-read either way. A drain closes connections there.
//!
//! The path: `frame` reads frame headers (either direction), `settings` tracks each peer's
//! SETTINGS and their acknowledgements, `hpack` decodes field blocks (and says why it is ours),
//! `request` turns decoded fields into a checked [`RequestHead`], `response` into a checked
//! [`ResponseHead`], `stream` keeps the open streams, the awaited responses and which streams
//! live (for idleness), `decoder` is the
//! state machine (`decoder/responses` its primary's side when responses are decoded), `tunnel`
//! names the ways out.
//!
//! Memory per connection, with [`H2Limits`] `L` (defaults in brackets):
//! - HPACK: the dynamic table, at most the size the client's encoder set, itself at most
//!   `L.max_table_size` (64 KiB), as RFC 7541 counts it (32 + name + value per entry; each entry
//!   is one allocation of name and value, so the 32 bytes cover its bookkeeping). Huffman-decoded
//!   strings use a buffer that lives while one block is decoded.
//! - A field block in progress: at most `L.max_header_bytes` (64 KiB), freed when it is decoded.
//!   A larger block ends in a tunnel; a decoded section over the same limit skips the stream
//!   (HPACK references can make a small block decode huge: past the limit nothing is kept).
//! - Streams: 24 bytes per stream whose request is reported and whose client side is open, at
//!   most `L.max_streams` (256); nothing once none is open.
//! - Idleness: 8 bytes per stream the client opened that has not ended both ways, at most
//!   `4 x L.max_streams` (1024; past that, and after the primary's PUSH_PROMISE, the
//!   connection is never called idle); nothing once none lives.
//! - SETTINGS: up to 8 unacknowledged frames per peer, fixed size; a partial frame header or
//!   fixed-size payload part: a few bytes inline. No heap.
//! - Responses, only with `L.decode_responses` (otherwise one empty pointer): a second HPACK
//!   table, at most the size the primary's encoder set, itself at most the client's
//!   SETTINGS_HEADER_TABLE_SIZE and `L.max_table_size` (64 KiB), counted as above; the
//!   primary's field block in progress, at most `L.max_header_bytes` (64 KiB) on the wire (a
//!   larger one ends in a tunnel), freed when decoded; 24 bytes per response awaited or in
//!   progress (from its request's report to its end, reset or skip), at most `L.max_streams`
//!   (256; a request reported beyond that has its response skipped); nothing once none is
//!   awaited. Response bodies are never held: they are ranges of the fed chunk.
//!
//! Between frames with no field block in progress, the decoder holds no buffer but the HPACK
//! state (one table, or two with responses) and the open streams and awaited responses; an idle
//! connection (nothing open, nothing awaited) holds the tables only. Decoded requests and
//! responses are the caller's: their fields are at most `L.max_header_bytes` as RFC 9113 counts
//! them.
//!
//! Not followed: flow control (a client that overruns a window is answered by the primary with
//! RST_STREAM or GOAWAY, which are reported), priorities (checked for self-dependency only), the
//! primary's responses (skipped by length unless decoded) and pushes (skipped, or decoded for the
//! HPACK state only).

mod decoder;
mod frame;
mod hpack;
mod request;
mod response;
mod settings;
mod stream;
mod tunnel;

#[cfg(test)]
mod tests;

pub use decoder::{ErrorCode, Event, H2Decoder, H2Limits, Peer, StreamId};
pub use frame::CLIENT_PREFACE;
pub use request::{FieldList, RequestHead, SkipReason};
pub use response::ResponseHead;
pub use tunnel::TunnelReason;
