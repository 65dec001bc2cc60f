//! Why an HTTP/2 connection stopped being decoded.
//!
//! The decoder follows the same rule as the HTTP/1.1 framer: the moment it cannot follow the
//! connection with certainty (a connection or compression error by either peer, a limit of ours,
//! an HPACK state it can no longer be sure of), it stops describing it for good and the connection
//! is an opaque tunnel (the bytes still flow untouched; only mirroring stops). Each cause is its
//! own [`TunnelReason`]; the labels all start with `h2_`, so they can share one metric family
//! with the HTTP/1.1 reasons (`crate::http::TunnelReason`).

/// The cause of a switch to tunnel mode; [`TunnelReason::as_str`] is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TunnelReason {
    // --- Not HTTP/2 with prior knowledge.
    /// The client's stream does not start with the 24-byte connection preface.
    #[error("client did not send the http/2 connection preface")]
    ClientPreface,
    /// The client's first frame after the preface is not SETTINGS (RFC 9113 section 3.4).
    #[error("client's first frame is not settings")]
    ClientFirstFrameNotSettings,
    /// The primary's first frame is not SETTINGS: it does not speak HTTP/2 (an HTTP/1.1 server
    /// answering the preface with a 400, for example).
    #[error("primary's first frame is not settings")]
    ServerFirstFrameNotSettings,

    // --- Frame-level connection errors (RFC 9113 sections 4 to 6).
    /// A client frame larger than the SETTINGS_MAX_FRAME_SIZE the primary allows.
    #[error("client frame exceeds the primary's max frame size")]
    ClientFrameTooLarge,
    /// A primary frame larger than the SETTINGS_MAX_FRAME_SIZE the client allows.
    #[error("primary frame exceeds the client's max frame size")]
    ServerFrameTooLarge,
    /// A frame whose length its type does not allow (RST_STREAM, PING, WINDOW_UPDATE, PRIORITY,
    /// GOAWAY, SETTINGS and its ACK), or a pad length, priority or promise that does not fit.
    #[error("frame length invalid for its type")]
    InvalidFrameLength,
    /// The pad length is not smaller than the payload that should hold it.
    #[error("padding exceeds the frame payload")]
    InvalidPadding,
    /// A frame on stream 0 that needs a stream, or on a stream that must be 0, or a client stream
    /// with an even identifier.
    #[error("frame on a stream its type does not allow")]
    InvalidStreamId,
    /// A client HEADERS frame opening a stream whose identifier is not above every earlier one.
    #[error("client stream identifier not increasing")]
    StreamIdNotIncreasing,
    /// DATA, RST_STREAM or WINDOW_UPDATE on a stream the client never opened (RFC 9113
    /// section 5.1: a connection error).
    #[error("frame on an idle stream")]
    IdleStream,
    /// A stream or HEADERS priority that depends on the stream itself: h2 resets such a stream
    /// without decoding its field block, so the primary's HPACK state is not certain any more.
    #[error("stream depends on itself")]
    SelfDependency,
    /// A frame other than CONTINUATION (or on another stream) inside a field block.
    #[error("continuation expected")]
    ContinuationExpected,
    /// CONTINUATION without a field block in progress.
    #[error("unexpected continuation")]
    UnexpectedContinuation,
    /// PUSH_PROMISE sent by a client (RFC 9113 section 8.4).
    #[error("push promise from the client")]
    ClientPushPromise,
    /// A SETTINGS value out of range (ENABLE_PUSH not 0 or 1, INITIAL_WINDOW_SIZE over 2^31-1,
    /// MAX_FRAME_SIZE outside 2^14..2^24-1), from either peer.
    #[error("invalid settings value")]
    InvalidSetting,
    /// More SETTINGS frames sent by one peer and not yet acknowledged than the decoder tracks.
    #[error("too many unacknowledged settings frames")]
    TooManyPendingSettings,
    /// A SETTINGS acknowledgement with nothing to acknowledge.
    #[error("settings ack without pending settings")]
    UnexpectedSettingsAck,
    /// WINDOW_UPDATE with an increment of 0.
    #[error("window update of zero")]
    ZeroWindowIncrement,

    // --- Limits of ours.
    /// A field block (HEADERS or trailers with their CONTINUATIONs) over
    /// [`H2Limits::max_header_bytes`](super::H2Limits) on the wire.
    #[error("field block exceeds the size limit")]
    HeaderBlockTooLarge,
    /// More streams with the client's side open than [`H2Limits::max_streams`](super::H2Limits).
    #[error("too many open streams")]
    TooManyStreams,

    // --- HPACK (RFC 7541): the dynamic table is not certain any more.
    /// A dynamic table size update above what the primary's SETTINGS_HEADER_TABLE_SIZE allows, or
    /// a table the client keeps above a size the primary lowered and the client acknowledged.
    #[error("hpack table size above the primary's setting")]
    HpackTableSizeOverSetting,
    /// A dynamic table larger than [`H2Limits::max_table_size`](super::H2Limits), though allowed.
    #[error("hpack table size above the decoder's limit")]
    HpackTableSizeOverLimit,
    /// A dynamic table size update after the first field of a block (RFC 7541 section 4.2).
    #[error("hpack table size update not at the start of a block")]
    HpackMisplacedSizeUpdate,
    /// An index into neither the static nor the dynamic table.
    #[error("hpack index out of the table")]
    HpackInvalidIndex,
    /// A Huffman-coded string that does not decode (RFC 7541 section 5.2).
    #[error("invalid hpack huffman code")]
    HpackInvalidHuffman,
    /// An integer longer than the decoder accepts, or an unknown representation.
    #[error("invalid hpack integer or representation")]
    HpackInvalidEncoding,
    /// The block ends inside a representation.
    #[error("hpack block truncated")]
    HpackTruncated,

    // --- The primary's side.
    /// A primary frame the client must treat as a connection error (wrong length or stream for
    /// RST_STREAM, GOAWAY or SETTINGS). When responses are decoded, also: HEADERS, DATA or
    /// PUSH_PROMISE on stream 0 or on a stream the client has not opened, DATA before the
    /// response head, a pad length or priority that does not fit or depends on its own stream,
    /// a promised stream that is not even, a frame other than CONTINUATION inside a field block
    /// or CONTINUATION outside one.
    #[error("primary sent an invalid frame")]
    ServerProtocolError,
    /// A field block of the primary over [`H2Limits::max_header_bytes`](super::H2Limits) on the
    /// wire (responses decoded).
    #[error("primary's field block exceeds the size limit")]
    ServerHeaderBlockTooLarge,
    /// The primary's HPACK table above what the client's SETTINGS_HEADER_TABLE_SIZE allows, or
    /// kept above a size the client lowered and the primary acknowledged (responses decoded).
    #[error("primary's hpack table size above the client's setting")]
    ServerHpackTableSizeOverSetting,
    /// The primary's HPACK table larger than [`H2Limits::max_table_size`](super::H2Limits),
    /// though the client allows it (responses decoded).
    #[error("primary's hpack table size above the decoder's limit")]
    ServerHpackTableSizeOverLimit,
    /// A field block of the primary that is not valid HPACK: an index out of the table, bad
    /// Huffman code, integer or representation, a misplaced size update, a truncated block
    /// (responses decoded).
    #[error("primary sent an invalid hpack block")]
    ServerHpackInvalid,
}

impl TunnelReason {
    /// Every reason, for registering metric label values up front.
    pub const ALL: [TunnelReason; 32] = [
        Self::ClientPreface,
        Self::ClientFirstFrameNotSettings,
        Self::ServerFirstFrameNotSettings,
        Self::ClientFrameTooLarge,
        Self::ServerFrameTooLarge,
        Self::InvalidFrameLength,
        Self::InvalidPadding,
        Self::InvalidStreamId,
        Self::StreamIdNotIncreasing,
        Self::IdleStream,
        Self::SelfDependency,
        Self::ContinuationExpected,
        Self::UnexpectedContinuation,
        Self::ClientPushPromise,
        Self::InvalidSetting,
        Self::TooManyPendingSettings,
        Self::UnexpectedSettingsAck,
        Self::ZeroWindowIncrement,
        Self::HeaderBlockTooLarge,
        Self::TooManyStreams,
        Self::HpackTableSizeOverSetting,
        Self::HpackTableSizeOverLimit,
        Self::HpackMisplacedSizeUpdate,
        Self::HpackInvalidIndex,
        Self::HpackInvalidHuffman,
        Self::HpackInvalidEncoding,
        Self::HpackTruncated,
        Self::ServerProtocolError,
        Self::ServerHeaderBlockTooLarge,
        Self::ServerHpackTableSizeOverSetting,
        Self::ServerHpackTableSizeOverLimit,
        Self::ServerHpackInvalid,
    ];

    /// Stable snake_case label for metrics and logs; never renamed once released.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientPreface => "h2_client_preface",
            Self::ClientFirstFrameNotSettings => "h2_client_first_frame_not_settings",
            Self::ServerFirstFrameNotSettings => "h2_primary_first_frame_not_settings",
            Self::ClientFrameTooLarge => "h2_client_frame_too_large",
            Self::ServerFrameTooLarge => "h2_primary_frame_too_large",
            Self::InvalidFrameLength => "h2_invalid_frame_length",
            Self::InvalidPadding => "h2_invalid_padding",
            Self::InvalidStreamId => "h2_invalid_stream_id",
            Self::StreamIdNotIncreasing => "h2_stream_id_not_increasing",
            Self::IdleStream => "h2_idle_stream",
            Self::SelfDependency => "h2_self_dependency",
            Self::ContinuationExpected => "h2_continuation_expected",
            Self::UnexpectedContinuation => "h2_unexpected_continuation",
            Self::ClientPushPromise => "h2_client_push_promise",
            Self::InvalidSetting => "h2_invalid_setting",
            Self::TooManyPendingSettings => "h2_too_many_pending_settings",
            Self::UnexpectedSettingsAck => "h2_unexpected_settings_ack",
            Self::ZeroWindowIncrement => "h2_zero_window_increment",
            Self::HeaderBlockTooLarge => "h2_header_block_too_large",
            Self::TooManyStreams => "h2_too_many_streams",
            Self::HpackTableSizeOverSetting => "h2_hpack_table_size_over_setting",
            Self::HpackTableSizeOverLimit => "h2_hpack_table_size_over_limit",
            Self::HpackMisplacedSizeUpdate => "h2_hpack_misplaced_size_update",
            Self::HpackInvalidIndex => "h2_hpack_invalid_index",
            Self::HpackInvalidHuffman => "h2_hpack_invalid_huffman",
            Self::HpackInvalidEncoding => "h2_hpack_invalid_encoding",
            Self::HpackTruncated => "h2_hpack_truncated",
            Self::ServerProtocolError => "h2_primary_protocol_error",
            Self::ServerHeaderBlockTooLarge => "h2_primary_header_block_too_large",
            Self::ServerHpackTableSizeOverSetting => "h2_primary_hpack_table_size_over_setting",
            Self::ServerHpackTableSizeOverLimit => "h2_primary_hpack_table_size_over_limit",
            Self::ServerHpackInvalid => "h2_primary_hpack_invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TunnelReason;
    use crate::http::label_checks::{assert_labels, assert_lowercase_messages};

    #[test]
    fn labels_are_unique_snake_case() {
        let labels: Vec<&str> = TunnelReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_labels(&labels, "h2_");
    }

    #[test]
    fn messages_are_lowercase() {
        assert_lowercase_messages(TunnelReason::ALL);
    }
}
