//! Response heads: parsing a complete head found by the shared head scanner, and deciding from
//! its status, its framing fields and the request it answers how its body is delimited (RFC 9112
//! section 6.3).
//!
//! The rules, strict where clients could read the answer differently:
//! - 1xx, 204 and 304 answers, answers to HEAD and 2xx answers to CONNECT have no body; their
//!   framing fields are not looked at;
//! - otherwise Content-Length together with Transfer-Encoding is refused (clients differ);
//! - Transfer-Encoding is a list of plain tokens over all its fields; `chunked` last means a
//!   chunked body, `chunked` anywhere else, an empty element, a parameter, or any
//!   Transfer-Encoding in an HTTP/1.0 answer is refused; without `chunked` the body runs until
//!   the primary closes;
//! - Content-Length is a list of `1*DIGIT` over all its fields; equal repeats are one length,
//!   different ones are refused;
//! - neither: the body runs until the primary closes.

use bytes::Bytes;

use super::{Expected, ResponseGiveUp};
use crate::http::head::{
    index_fields, is_tchar, list_elements, parse_decimal, with_field_storage, Field, RawHead, Span,
};

/// How the body of a framed answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body (HEAD, 1xx, 204, 304, CONNECT 2xx).
    None,
    /// Exactly this many body bytes follow the head.
    ContentLength(u64),
    /// A chunked body follows, ending with the last chunk and the trailer section.
    Chunked,
    /// The body is everything until the primary closes the connection.
    UntilClose,
}

/// A complete, validated response head; owns its raw bytes and indexes into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    head: RawHead,
    status: u16,
    version: u8,
    reason: Span,
    body: ResponseBody,
    keeps_connection_open: bool,
}

impl ResponseHead {
    /// The status code, 100 to 599.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase as sent (may be empty; may hold obs-text bytes).
    pub fn reason(&self) -> &[u8] {
        self.head.bytes(self.reason)
    }

    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The value of the first field called `name` (ASCII case-insensitive), without surrounding
    /// whitespace.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
    }

    /// All fields in the order they were sent, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.head.headers()
    }

    /// The head exactly as received: status line, fields and the blank line.
    pub fn raw(&self) -> &[u8] {
        &self.head.raw
    }

    /// The raw head as a cheaply cloneable buffer.
    pub fn raw_bytes(&self) -> Bytes {
        self.head.raw.clone()
    }

    /// How the body that follows is delimited.
    pub fn body(&self) -> ResponseBody {
        self.body
    }

    /// Whether the connection can carry another answer after this one: both the request and the
    /// answer let it persist (RFC 9112 section 9.3), the body does not run until close, and the
    /// answer does not switch protocols or open a tunnel. Interim heads say `true`.
    pub fn keeps_connection_open(&self) -> bool {
        self.keeps_connection_open
    }
}

/// What a head is, by its status and the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// 1xx other than 101: another head follows for the same request.
    Interim,
    /// The answer; its body follows as [`ResponseHead::body`] says.
    Final,
    /// The answer, after which the connection carries something else.
    Switch(ResponseGiveUp),
}

/// Parses a complete head of `field_count` fields (as collected by the head scanner) answering
/// `request`.
pub(super) fn parse(
    raw: Vec<u8>,
    field_count: usize,
    request: Expected,
) -> Result<(ResponseHead, Kind), ResponseGiveUp> {
    let parsed = with_field_storage(field_count, |storage| parse_into(&raw, storage, request))?;
    let head = ResponseHead {
        head: RawHead::new(raw, parsed.fields),
        status: parsed.status,
        version: parsed.version,
        reason: parsed.reason,
        body: parsed.body,
        keeps_connection_open: parsed.keeps_connection_open,
    };
    Ok((head, parsed.kind))
}

/// What [`parse`] found, before the head takes ownership of its bytes.
struct Parsed {
    status: u16,
    version: u8,
    reason: Span,
    fields: Vec<Field>,
    body: ResponseBody,
    keeps_connection_open: bool,
    kind: Kind,
}

fn parse_into<'a>(
    raw: &'a [u8],
    storage: &mut [httparse::Header<'a>],
    request: Expected,
) -> Result<Parsed, ResponseGiveUp> {
    let mut response = httparse::Response::new(storage);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) if len == raw.len() => {}
        Err(httparse::Error::Version) => return Err(ResponseGiveUp::UnsupportedVersion),
        Ok(_) | Err(_) => return Err(ResponseGiveUp::MalformedHead),
    }
    let (Some(version), Some(status)) = (response.version, response.code) else {
        return Err(ResponseGiveUp::MalformedHead);
    };
    if !(100..=599).contains(&status) {
        return Err(ResponseGiveUp::MalformedHead);
    }
    let fields = response.headers;
    let kind = match status {
        101 if request.upgrade => Kind::Switch(ResponseGiveUp::Upgrade),
        101 => return Err(ResponseGiveUp::UnrequestedUpgrade),
        100..=199 => Kind::Interim,
        200..=299 if request.connect => Kind::Switch(ResponseGiveUp::ConnectTunnel),
        _ => Kind::Final,
    };
    let body = if kind != Kind::Final || request.head || status == 204 || status == 304 {
        ResponseBody::None
    } else {
        body_of(version, fields)?
    };
    let keeps_connection_open = match kind {
        Kind::Interim => true,
        Kind::Switch(_) => false,
        Kind::Final => {
            request.keeps_connection_open
                && body != ResponseBody::UntilClose
                && persists(version, fields)
        }
    };
    Ok(Parsed {
        status,
        version,
        reason: reason_of(raw),
        fields: index_fields(raw, fields).map_err(ResponseGiveUp::from_head)?,
        body,
        keeps_connection_open,
        kind,
    })
}

/// The body length from the framing fields, for an answer that may have a body.
fn body_of(version: u8, fields: &[httparse::Header<'_>]) -> Result<ResponseBody, ResponseGiveUp> {
    let mut length = None;
    let mut codings = 0;
    let mut chunked_last = false;
    for field in fields {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            for value in list_elements(field.value) {
                let value = parse_decimal(value).ok_or(ResponseGiveUp::InvalidContentLength)?;
                if length.is_some_and(|length| length != value) {
                    return Err(ResponseGiveUp::ConflictingLength);
                }
                length = Some(value);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if version == 0 {
                return Err(ResponseGiveUp::InvalidTransferEncoding);
            }
            for coding in list_elements(field.value) {
                if coding.is_empty() || !coding.iter().all(|b| is_tchar(*b)) {
                    return Err(ResponseGiveUp::InvalidTransferEncoding);
                }
                if chunked_last {
                    // `chunked` must be the final coding, applied once.
                    return Err(ResponseGiveUp::InvalidTransferEncoding);
                }
                codings += 1;
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        }
    }
    Ok(match (codings, length) {
        (0, Some(length)) => ResponseBody::ContentLength(length),
        (0, None) => ResponseBody::UntilClose,
        (_, Some(_)) => return Err(ResponseGiveUp::LengthWithTransferEncoding),
        (_, None) if chunked_last => ResponseBody::Chunked,
        (_, None) => ResponseBody::UntilClose,
    })
}

/// Whether the answer lets the connection persist: HTTP/1.1 unless `close`, HTTP/1.0 only with
/// `keep-alive` (RFC 9112 section 9.3).
fn persists(version: u8, fields: &[httparse::Header<'_>]) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for field in fields {
        if field.name.eq_ignore_ascii_case("connection") {
            for option in list_elements(field.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    !close && (version == 1 || keep_alive)
}

/// The reason phrase: the status line after `HTTP/1.x NNN ` (checked by the head scanner).
fn reason_of(raw: &[u8]) -> Span {
    const BEFORE_REASON: usize = b"HTTP/1.1 200 ".len();
    let line_end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    let start = BEFORE_REASON.min(line_end);
    Span {
        start,
        end: line_end,
    }
}
