//! What is compared: the two answers to one request, as plain data that either protocol fills in.
//!
//! The lead side of a pair is the primary's answer, observed beside the relay; the other is the
//! shadow's, read by the shadow sender, or the reason it has none. An HTTP/1.1 answer gives its
//! status line, header fields, body and chunked trailers; an HTTP/2 one its `:status`, fields, DATA
//! and trailers, and for gRPC the `grpc-status` it ended with (from the trailers, or from the
//! headers of a trailers-only answer).

use std::time::Duration;

use bytes::Bytes;

/// One side's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The final status (never 1xx: interim answers are not the answer).
    pub status: u16,
    /// Header fields in order; names in lower case (HTTP/2's already are).
    pub headers: Vec<(String, Bytes)>,
    pub body: AnswerBody,
    /// Trailer fields (chunked trailers, HTTP/2 trailers), names in lower case.
    pub trailers: Vec<(String, Bytes)>,
    /// gRPC answers: the `grpc-status` code they ended with.
    pub grpc_status: Option<u32>,
    /// From the end of the request to the answer's head.
    pub to_head: Duration,
    /// From the end of the request to the answer's end.
    pub to_end: Duration,
}

/// An answer's body as the capture kept it.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerBody {
    /// The whole body as sent (still content-coded), no longer than the rule's `max_body_bytes`.
    Complete(Bytes),
    /// The body was read to its end but is longer than `max_body_bytes`; it was not kept.
    OverCap,
    /// The body broke off (the connection closed or was reset, the stream was reset).
    CutOff,
}

impl Answer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Every value of `name`, headers first, then trailers: gRPC sends `grpc-message` either way.
    pub(super) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.headers
            .iter()
            .chain(&self.trailers)
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Whether the answer reached its end, so that `to_end` is a latency.
    pub(super) fn ended(&self) -> bool {
        !matches!(self.body, AnswerBody::CutOff)
    }
}

/// The primary's side of a pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Primary {
    Answered(Answer),
    /// The answer stream of the connection could not be framed with certainty: comparison
    /// stopped on that connection (the relay went on byte-exact).
    Stopped,
    /// The connection ended (or the stream was reset) before the answer's head.
    NoAnswer,
}

/// The shadow's side of a pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Shadow {
    Answered(Answer),
    /// The copy failed on its way: the shadow sender's error kind (`timeout`, `reset`,
    /// `connect`, `refused`, ...), as in `mirror_shadow_errors_total{kind}`.
    Failed(&'static str),
}

/// The protocol of the request, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
        }
    }
}

/// The request a pair answers, as the report and the log show it: `GET /api/orders/7 HTTP/1.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    text: String,
}

/// The longest request target kept, in characters.
pub const MAX_TARGET_CHARS: usize = 200;

impl RequestLine {
    /// `target` is the path and query (HTTP/2: `:path`); it is cut to [`MAX_TARGET_CHARS`], and
    /// the values of query parameters that look like credentials (`token`, `key`, `secret`,
    /// `password`, `signature`, `auth`, `session`) are replaced by `[redacted]`.
    pub fn new(method: &str, target: &str, protocol: Protocol) -> Self {
        use super::excerpt::{push_truncated, redact_query};
        // One allocation per pair: every compared request has one.
        let target = redact_query(target);
        let protocol = protocol.as_str();
        let kept = target.len().min(4 * MAX_TARGET_CHARS) + method.len().min(64);
        let mut text = String::with_capacity(kept + protocol.len() + 8);
        push_truncated(&mut text, method, 16);
        text.push(' ');
        push_truncated(&mut text, &target, MAX_TARGET_CHARS);
        text.push(' ');
        text.push_str(protocol);
        Self { text }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for RequestLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
