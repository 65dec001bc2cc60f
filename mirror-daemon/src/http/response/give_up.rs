//! Why the primary's answers on a connection stopped being framed.
//!
//! The response framer follows the request framer's rule: when the answer stream cannot be split
//! into answers with certainty, it stops describing it (the bytes still reach the client
//! untouched; only what is built on the frames, comparison or closing at an idle point, stops on
//! that connection). Every cause is its own [`ResponseGiveUp`], a stable metric label.

use crate::http::TunnelReason;

/// The cause of giving up on a connection's answers; [`ResponseGiveUp::as_str`] is a stable
/// metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ResponseGiveUp {
    // --- Answers that do not match the requests.
    /// A head arrived while no request was expected: an unsolicited answer (e.g. `408` on an
    /// idle connection), or the relay saw the answer before the request that caused it.
    #[error("primary answered with no request expected")]
    ResponseBeforeRequest,
    /// Bytes after an answer that closes the connection.
    #[error("primary sent data after an answer that closes the connection")]
    DataAfterClose,
    /// Bytes after the answers to every framed request, once the request stream had become
    /// opaque (the request framer gave up): they answer requests nobody framed.
    #[error("primary answered a request the request framer did not frame")]
    RequestStreamOpaque,
    /// More requests were expected at once than the framer keeps track of.
    #[error("too many pipelined requests awaiting their answers")]
    TooManyPending,

    // --- The head is not one we frame.
    /// The stream does not start with `HTTP/` (TLS, another protocol).
    #[error("primary's answer is not http/1.x")]
    NotHttp,
    /// The status line names an HTTP version other than 1.0 or 1.1.
    #[error("primary's answer has an unsupported http version")]
    UnsupportedVersion,
    /// A status line or field line breaks RFC 9112 (bare CR or LF, obs-fold, whitespace before a
    /// colon, control bytes, a status code outside 100 to 599, ...).
    #[error("primary's answer head is malformed")]
    MalformedHead,
    /// The head exceeds `max_header_bytes` or `max_headers`.
    #[error("primary's answer head exceeds the size or field count limit")]
    HeadTooLarge,

    // --- The body length is in doubt (RFC 9112 section 6.3).
    /// A Content-Length value that is not a list of `1*DIGIT` within u64.
    #[error("primary's answer has an invalid content-length")]
    InvalidContentLength,
    /// Content-Length values that differ.
    #[error("primary's answer has conflicting content-length values")]
    ConflictingLength,
    /// Content-Length together with Transfer-Encoding: clients may read either.
    #[error("primary's answer has content-length together with transfer-encoding")]
    LengthWithTransferEncoding,
    /// A Transfer-Encoding that is not a clean list of tokens with `chunked` at most once and
    /// last, or one in an HTTP/1.0 answer.
    #[error("primary's answer has an invalid transfer-encoding")]
    InvalidTransferEncoding,
    /// The chunked body breaks the grammar (size line, extension, data CRLF, trailer line).
    #[error("primary's chunked body is malformed")]
    BadChunk,
    /// The trailer section exceeds the head limits.
    #[error("primary's trailer section exceeds the limits")]
    TrailersTooLarge,

    // --- The connection stops carrying HTTP/1.1 answers.
    /// `101 Switching Protocols` to a request with Upgrade: another protocol follows.
    #[error("primary switched protocols")]
    Upgrade,
    /// `101` to a request without Upgrade (RFC 9110 section 15.2.2 forbids it).
    #[error("primary switched protocols unasked")]
    UnrequestedUpgrade,
    /// A 2xx answer to CONNECT: a tunnel follows.
    #[error("primary opened a connect tunnel")]
    ConnectTunnel,

    // --- The primary closed the connection.
    /// The primary closed inside an answer (head or body not complete).
    #[error("primary closed the connection inside an answer")]
    AnswerCutOff,
    /// The primary closed between answers while requests still awaited theirs.
    #[error("primary closed the connection with requests unanswered")]
    RequestsUnanswered,
}

impl ResponseGiveUp {
    /// Every reason, for registering metric label values up front.
    pub const ALL: [ResponseGiveUp; 19] = [
        Self::ResponseBeforeRequest,
        Self::DataAfterClose,
        Self::RequestStreamOpaque,
        Self::TooManyPending,
        Self::NotHttp,
        Self::UnsupportedVersion,
        Self::MalformedHead,
        Self::HeadTooLarge,
        Self::InvalidContentLength,
        Self::ConflictingLength,
        Self::LengthWithTransferEncoding,
        Self::InvalidTransferEncoding,
        Self::BadChunk,
        Self::TrailersTooLarge,
        Self::Upgrade,
        Self::UnrequestedUpgrade,
        Self::ConnectTunnel,
        Self::AnswerCutOff,
        Self::RequestsUnanswered,
    ];

    /// Stable snake_case label for metrics and logs; never renamed once released.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ResponseBeforeRequest => "response_before_request",
            Self::DataAfterClose => "data_after_close",
            Self::RequestStreamOpaque => "request_stream_opaque",
            Self::TooManyPending => "too_many_pending",
            Self::NotHttp => "not_http",
            Self::UnsupportedVersion => "unsupported_version",
            Self::MalformedHead => "malformed_head",
            Self::HeadTooLarge => "head_too_large",
            Self::InvalidContentLength => "invalid_content_length",
            Self::ConflictingLength => "conflicting_length",
            Self::LengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Self::InvalidTransferEncoding => "invalid_transfer_encoding",
            Self::BadChunk => "bad_chunk",
            Self::TrailersTooLarge => "trailers_too_large",
            Self::Upgrade => "upgrade",
            Self::UnrequestedUpgrade => "unrequested_upgrade",
            Self::ConnectTunnel => "connect_tunnel",
            Self::AnswerCutOff => "answer_cut_off",
            Self::RequestsUnanswered => "requests_unanswered",
        }
    }

    /// The reason for an error of the shared head scanner or field parser.
    pub(crate) fn from_head(reason: TunnelReason) -> Self {
        match reason {
            TunnelReason::Tls | TunnelReason::Http2 | TunnelReason::NotHttp => Self::NotHttp,
            TunnelReason::UnsupportedVersion => Self::UnsupportedVersion,
            TunnelReason::HeaderSectionTooLarge | TunnelReason::TooManyHeaders => {
                Self::HeadTooLarge
            }
            _ => Self::MalformedHead,
        }
    }

    /// The reason for an error of the shared chunked body walker.
    pub(crate) fn from_chunk(reason: TunnelReason) -> Self {
        match reason {
            TunnelReason::TrailerSectionTooLarge => Self::TrailersTooLarge,
            _ => Self::BadChunk,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ResponseGiveUp;
    use std::collections::HashSet;

    #[test]
    fn labels_are_unique_snake_case_and_messages_lowercase() {
        let labels: HashSet<&str> = ResponseGiveUp::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), ResponseGiveUp::ALL.len());
        for reason in ResponseGiveUp::ALL {
            let label = reason.as_str();
            assert!(
                label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{label} is not snake_case"
            );
            let message = reason.to_string();
            assert_eq!(message, message.to_lowercase(), "{reason:?}");
        }
    }
}
