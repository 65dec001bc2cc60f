//! Why a connection stopped being framed as HTTP/1.1.
//!
//! The framer follows one rule: when the client's byte stream cannot be split into requests with
//! certainty, it stops describing it and the connection becomes an opaque tunnel (the bytes still
//! reach the primary untouched; only mirroring stops). Every cause is its own [`TunnelReason`] so
//! operators can see, per metric label, whether they are looking at TLS, an old client quirk or a
//! request-smuggling attempt.

/// The cause of a switch to tunnel mode; [`TunnelReason::as_str`] is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TunnelReason {
    // --- The stream is not HTTP/1.x at all.
    /// The first byte is a TLS handshake record (0x16), e.g. a ClientHello.
    #[error("stream starts with a tls handshake record")]
    Tls,
    /// The stream starts with the HTTP/2 connection preface `PRI * HTTP/2.0`.
    #[error("stream starts with the http/2 connection preface")]
    Http2,
    /// Some other protocol: the first byte cannot start a method, a control byte appears in the
    /// request line, or the request line does not end in an HTTP version.
    #[error("stream is not http/1.x")]
    NotHttp,

    // --- The request head is malformed or not of a kind we frame.
    /// httparse (or our stricter RFC 9112 checks: non-ASCII target, control bytes in the header
    /// section) rejected the head.
    #[error("request head does not parse")]
    ParseError,
    /// The request line names an HTTP version other than 1.0 or 1.1.
    #[error("unsupported http version")]
    UnsupportedVersion,
    /// An empty line (CRLF) came where a request line was expected. RFC 9112 section 2.2 lets a
    /// server skip it, but not every server does, so the request boundary is in doubt.
    #[error("empty line before a request line")]
    EmptyLineBeforeRequest,
    /// A CR not followed by LF, in the head, a chunk line or the trailers.
    #[error("bare cr where crlf is required")]
    BareCr,
    /// An LF not preceded by CR, in the head, a chunk line or the trailers.
    #[error("bare lf where crlf is required")]
    BareLf,
    /// A header or trailer line starts with whitespace (obsolete line folding, or whitespace
    /// between the request line and the first header).
    #[error("obsolete line folding")]
    ObsFold,
    /// Whitespace between a header (or trailer) field name and its colon.
    #[error("whitespace between field name and colon")]
    WhitespaceBeforeColon,
    /// The head grew past [`FramingLimits::max_header_bytes`](super::FramingLimits).
    #[error("request head exceeds the size limit")]
    HeaderSectionTooLarge,
    /// The head has more fields than [`FramingLimits::max_headers`](super::FramingLimits).
    #[error("request head exceeds the header count limit")]
    TooManyHeaders,

    // --- Requests after which the stream is no longer HTTP request framing.
    /// A CONNECT request: what follows is a tunnel by definition.
    #[error("connect request")]
    Connect,
    /// A request carrying `Upgrade` (WebSocket, ...): what follows may be another protocol.
    #[error("request carries an upgrade header")]
    Upgrade,
    /// `Upgrade: h2c`, HTTP/2 over an upgraded HTTP/1.1 connection (deprecated by RFC 9113):
    /// not decoded; prior knowledge (what gRPC uses) is.
    #[error("request asks to upgrade to h2c")]
    H2cUpgrade,
    /// Bytes after a request that closes the connection (HTTP/1.0 without keep-alive, or
    /// `Connection: close`); the primary will not read them as a request.
    #[error("data after a request that closes the connection")]
    DataAfterClose,
    /// More than one Host field: which one routes the request depends on the server.
    #[error("more than one host field")]
    DuplicateHost,

    // --- Ambiguous message body length (RFC 9112 sections 6.1 and 6.3).
    /// Content-Length and Transfer-Encoding in the same request (CL.TE / TE.CL).
    #[error("content-length together with transfer-encoding")]
    ContentLengthWithTransferEncoding,
    /// More than one Content-Length field, equal or not.
    #[error("more than one content-length field")]
    DuplicateContentLength,
    /// A Content-Length value that is not 1*DIGIT fitting in u64 (signs, lists, hex, spaces,
    /// empty, overflow).
    #[error("invalid content-length value")]
    InvalidContentLength,
    /// Transfer-Encoding in an HTTP/1.0 request (RFC 9112 section 6.1: the framing is faulty).
    #[error("transfer-encoding in an http/1.0 request")]
    TransferEncodingInHttp10,
    /// More than one Transfer-Encoding field.
    #[error("more than one transfer-encoding field")]
    DuplicateTransferEncoding,
    /// A Transfer-Encoding value that is not a clean list of tokens (empty, empty elements,
    /// quotes, parameters, embedded spaces).
    #[error("malformed transfer-encoding value")]
    InvalidTransferEncoding,
    /// The final transfer coding is not `chunked` (`gzip`, `identity`, `xchunked`,
    /// `chunked, identity`): RFC 9112 section 6.1 makes the length undeterminable.
    #[error("final transfer coding is not chunked")]
    TransferEncodingNotChunked,
    /// A well-formed list ending in `chunked` but with other codings before it (`gzip, chunked`,
    /// `chunked, chunked`): legal, rare and handled differently by servers, so not framed.
    #[error("transfer coding other than plain chunked")]
    UnsupportedTransferEncoding,
    /// A field name that some servers normalise into a framing header (`Content_Length`,
    /// `Transfer_Encoding`: CGI-style gateways map `_` and `-` to the same variable).
    #[error("field name that may alias a framing header")]
    AmbiguousFramingHeader,

    // --- Chunked body (RFC 9112 section 7.1).
    /// A chunk-size that is not 1 to 16 hex digits directly followed by `;` or CRLF.
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// A control byte inside a chunk extension.
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    /// Chunk data not followed by CRLF (the chunk is longer than its size says).
    #[error("chunk data not followed by crlf")]
    MissingChunkDataCrlf,
    /// A trailer line that is not `name: value`.
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The trailer section exceeds the header size or count limit.
    #[error("trailer section exceeds the limits")]
    TrailerSectionTooLarge,
}

impl TunnelReason {
    /// Every reason, for registering metric label values up front.
    pub const ALL: [TunnelReason; 31] = [
        Self::Tls,
        Self::Http2,
        Self::NotHttp,
        Self::ParseError,
        Self::UnsupportedVersion,
        Self::EmptyLineBeforeRequest,
        Self::BareCr,
        Self::BareLf,
        Self::ObsFold,
        Self::WhitespaceBeforeColon,
        Self::HeaderSectionTooLarge,
        Self::TooManyHeaders,
        Self::Connect,
        Self::Upgrade,
        Self::H2cUpgrade,
        Self::DataAfterClose,
        Self::DuplicateHost,
        Self::ContentLengthWithTransferEncoding,
        Self::DuplicateContentLength,
        Self::InvalidContentLength,
        Self::TransferEncodingInHttp10,
        Self::DuplicateTransferEncoding,
        Self::InvalidTransferEncoding,
        Self::TransferEncodingNotChunked,
        Self::UnsupportedTransferEncoding,
        Self::AmbiguousFramingHeader,
        Self::InvalidChunkSize,
        Self::InvalidChunkExtension,
        Self::MissingChunkDataCrlf,
        Self::InvalidTrailer,
        Self::TrailerSectionTooLarge,
    ];

    /// Stable snake_case label for metrics and logs; never renamed once released.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Http2 => "http2",
            Self::NotHttp => "not_http",
            Self::ParseError => "parse_error",
            Self::UnsupportedVersion => "unsupported_version",
            Self::EmptyLineBeforeRequest => "empty_line_before_request",
            Self::BareCr => "bare_cr",
            Self::BareLf => "bare_lf",
            Self::ObsFold => "obs_fold",
            Self::WhitespaceBeforeColon => "whitespace_before_colon",
            Self::HeaderSectionTooLarge => "header_section_too_large",
            Self::TooManyHeaders => "too_many_headers",
            Self::Connect => "connect",
            Self::Upgrade => "upgrade",
            Self::H2cUpgrade => "h2c_upgrade",
            Self::DataAfterClose => "data_after_close",
            Self::DuplicateHost => "duplicate_host",
            Self::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Self::DuplicateContentLength => "duplicate_content_length",
            Self::InvalidContentLength => "invalid_content_length",
            Self::TransferEncodingInHttp10 => "transfer_encoding_in_http10",
            Self::DuplicateTransferEncoding => "duplicate_transfer_encoding",
            Self::InvalidTransferEncoding => "invalid_transfer_encoding",
            Self::TransferEncodingNotChunked => "transfer_encoding_not_chunked",
            Self::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Self::AmbiguousFramingHeader => "ambiguous_framing_header",
            Self::InvalidChunkSize => "invalid_chunk_size",
            Self::InvalidChunkExtension => "invalid_chunk_extension",
            Self::MissingChunkDataCrlf => "missing_chunk_data_crlf",
            Self::InvalidTrailer => "invalid_trailer",
            Self::TrailerSectionTooLarge => "trailer_section_too_large",
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
        assert_labels(&labels, "");
    }

    #[test]
    fn messages_are_lowercase() {
        assert_lowercase_messages(TunnelReason::ALL);
    }
}
