//! A stream's request head and trailers, as decoded from HPACK and checked against RFC 9113
//! section 8 (the rules that make a request malformed, which a server answers with a stream
//! error). The checks are at least those of the `h2` crate's server, so a request reported here
//! is one h2 would hand to its application (the fuzz target `h2_differential` holds us to it);
//! where the RFC asks more than h2 checks, it says so at the rule.
//!
//! Field names and values are `http::HeaderName` / `http::HeaderValue` in the order sent, so a
//! copy can be re-encoded by an HTTP/2 client without another parse. A section's values (and a
//! request's `:scheme`, `:authority` and `:path`) share one buffer: one allocation per section,
//! not one per value, and cloning one for a copy only counts a reference.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Uri};

/// Fields in the order they were sent (names lowercase, as HTTP/2 requires).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldList(Vec<(HeaderName, HeaderValue)>);

impl FieldList {
    /// The fields in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&HeaderName, &HeaderValue)> + '_ {
        self.0.iter().map(|(name, value)| (name, value))
    }

    /// The value of the first field called `name` (names are lowercase).
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0
            .iter()
            .find(|(field, _)| field.as_str().eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields as an `http::HeaderMap` (which groups repeated names together).
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.0.len());
        for (name, value) in &self.0 {
            map.append(name.clone(), value.clone());
        }
        map
    }

    /// Takes the fields out, in order.
    pub fn into_vec(self) -> Vec<(HeaderName, HeaderValue)> {
        self.0
    }
}

/// A well-formed request head of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    method: Method,
    scheme: Scheme,
    authority: Option<Authority>,
    path: PathAndQuery,
    fields: FieldList,
    content_length: Option<u64>,
}

impl RequestHead {
    /// `:method`.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// `:scheme`.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// `:authority`, when sent (a request may carry `host` instead, RFC 9113 section 8.3.1).
    pub fn authority(&self) -> Option<&Authority> {
        self.authority.as_ref()
    }

    /// `:path` as sent, query included (for gRPC `/package.Service/Method`).
    pub fn path_and_query(&self) -> &PathAndQuery {
        &self.path
    }

    /// The path without the query, as `http::RequestHead::path` gives it for HTTP/1.1.
    pub fn path(&self) -> &str {
        self.path.path()
    }

    /// `:authority`, or else the `host` field: the name rules match against.
    pub fn host(&self) -> Option<&str> {
        match &self.authority {
            Some(authority) => Some(authority.as_str()),
            None => self.fields.get("host").and_then(|v| v.to_str().ok()),
        }
    }

    /// The regular fields in the order sent.
    pub fn fields(&self) -> &FieldList {
        &self.fields
    }

    /// The value of the first field called `name`.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.fields.get(name)
    }

    /// The Content-Length, when sent (the body's DATA must add up to it).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The target as a URI: scheme, authority and path, or only the path without `:authority`.
    pub fn uri(&self) -> Uri {
        // Checked when the head was built; the path alone is the safe answer if it failed.
        self.try_uri()
            .unwrap_or_else(|_| Uri::from(self.path.clone()))
    }

    fn try_uri(&self) -> Result<Uri, http::uri::InvalidUriParts> {
        let mut parts = http::uri::Parts::default();
        if let Some(authority) = &self.authority {
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(authority.clone());
        }
        parts.path_and_query = Some(self.path.clone());
        Uri::from_parts(parts)
    }
}

/// Why the decoder stops describing one stream's request ([`Event::Skipped`](super::Event)) or
/// response ([`Event::ResponseSkipped`](super::Event)); the connection goes on being decoded.
/// The last three reasons are the response's only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SkipReason {
    /// CONNECT (and extended CONNECT with `:protocol`): a tunnel, not a request to copy.
    #[error("connect request")]
    Connect,
    /// `:method`, `:scheme` or `:path` is missing or empty; a response head without `:status`.
    #[error("required pseudo-header missing")]
    MissingPseudoHeader,
    /// A pseudo-header twice, after a regular field, or one that belongs to the other direction
    /// (`:status` in a request, a request's in a response; h2's client ignores the latter).
    #[error("misplaced or repeated pseudo-header")]
    InvalidPseudoHeader,
    /// `:scheme`, `:authority` or `:path` does not parse as a URI part.
    #[error("invalid request target")]
    InvalidTarget,
    /// A connection-specific field (`connection`, `keep-alive`, `proxy-connection`,
    /// `transfer-encoding`, `upgrade`) or `te` other than `trailers` (RFC 9113 section 8.2.2).
    #[error("connection-specific field")]
    ConnectionSpecificField,
    /// Content-Length that is not a number, or several that differ.
    #[error("invalid content-length")]
    InvalidContentLength,
    /// The DATA frames do not add up to the Content-Length (RFC 9113 section 8.1.1); a response
    /// head that ends the stream with a Content-Length above 0 (but for 204 and 304, as in h2),
    /// or body bytes answering a HEAD request.
    #[error("body length differs from content-length")]
    ContentLengthMismatch,
    /// A second field block that does not end the stream (RFC 9113 section 8.1).
    #[error("trailers without end of stream")]
    TrailersWithoutEndStream,
    /// A pseudo-header in a trailer section (RFC 9113 section 8.1). Stricter than h2, which
    /// drops them silently and delivers the request.
    #[error("pseudo-header in trailers")]
    PseudoHeaderInTrailers,
    /// A field name with uppercase letters or that is not a token, a value with bytes
    /// `http::HeaderValue` refuses (NUL, CR, LF, other controls), or a `:method` that is not a
    /// token (RFC 9113 section 8.2.1). h2 fails the whole connection on these.
    #[error("invalid field name or value")]
    InvalidField,
    /// The decoded field section is over `max_header_bytes` (32 + name + value per field);
    /// decoding goes on for the HPACK state, but nothing more is kept.
    #[error("field section exceeds the size limit")]
    HeaderListTooLarge,
    /// A response's `:status` that is not three digits from 100 to 999 (h2's client fails the
    /// connection on it).
    #[error("invalid response status")]
    InvalidStatus,
    /// An interim (1xx) response head that ends the stream, or carries a Content-Length (RFC
    /// 9113 section 8.1, RFC 9110 section 8.6).
    #[error("malformed interim response")]
    MalformedInterim,
    /// More responses awaited at once than [`H2Limits::max_streams`](super::H2Limits): the
    /// request is reported, its response is not followed.
    #[error("too many responses awaited")]
    TooManyResponses,
}

impl SkipReason {
    /// Every reason, for registering metric label values up front.
    pub const ALL: [SkipReason; 14] = [
        Self::Connect,
        Self::MissingPseudoHeader,
        Self::InvalidPseudoHeader,
        Self::InvalidTarget,
        Self::ConnectionSpecificField,
        Self::InvalidContentLength,
        Self::ContentLengthMismatch,
        Self::TrailersWithoutEndStream,
        Self::PseudoHeaderInTrailers,
        Self::InvalidField,
        Self::HeaderListTooLarge,
        Self::InvalidStatus,
        Self::MalformedInterim,
        Self::TooManyResponses,
    ];

    /// Stable snake_case label for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::MissingPseudoHeader => "missing_pseudo_header",
            Self::InvalidPseudoHeader => "invalid_pseudo_header",
            Self::InvalidTarget => "invalid_target",
            Self::ConnectionSpecificField => "connection_specific_field",
            Self::InvalidContentLength => "invalid_content_length",
            Self::ContentLengthMismatch => "content_length_mismatch",
            Self::TrailersWithoutEndStream => "trailers_without_end_stream",
            Self::PseudoHeaderInTrailers => "pseudo_header_in_trailers",
            Self::InvalidField => "invalid_field",
            Self::HeaderListTooLarge => "header_list_too_large",
            Self::InvalidStatus => "invalid_status",
            Self::MalformedInterim => "malformed_interim",
            Self::TooManyResponses => "too_many_responses",
        }
    }
}

/// What the builders (requests, responses, trailers) share: the fields so far, the section's size
/// against its limit, and the first reason to skip the stream.
#[derive(Debug)]
pub(super) struct Section {
    /// The regular fields so far: each name, and where its value lies in `values`.
    fields: Vec<(HeaderName, Range<usize>)>,
    /// The values kept so far, one after another (bounded by `max_size`, which counts them).
    values: BytesMut,
    /// RFC 9113 section 6.5.2 size so far (32 + name + value per field).
    size: usize,
    max_size: usize,
    error: Option<SkipReason>,
}

impl Section {
    pub(super) fn new(max_size: usize) -> Self {
        Self {
            fields: Vec::new(),
            values: BytesMut::new(),
            size: 0,
            max_size,
            error: None,
        }
    }

    /// Counts a field; false once the section has failed. Nothing is kept after that, so a block
    /// of table references that decodes huge (an HPACK "bomb") costs no memory.
    pub(super) fn admit(&mut self, name: &[u8], value: &[u8]) -> bool {
        if self.error.is_some() {
            return false;
        }
        self.size = self.size.saturating_add(32 + name.len() + value.len());
        if self.size > self.max_size {
            self.fail(SkipReason::HeaderListTooLarge);
            return false;
        }
        true
    }

    pub(super) fn fail(&mut self, reason: SkipReason) {
        self.error = Some(reason);
        self.fields = Vec::new();
        self.values = BytesMut::new();
    }

    /// Whether a regular field came already (pseudo-headers must come before).
    pub(super) fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Keeps `value` (admitted) in the section's buffer; returns where it lies.
    pub(super) fn keep(&mut self, value: &[u8]) -> Range<usize> {
        if self.values.capacity() == 0 {
            self.values.reserve(VALUES_CAPACITY);
        }
        let start = self.values.len();
        self.values.extend_from_slice(value);
        start..self.values.len()
    }

    /// Takes an admitted regular field, as HTTP/2 allows it (RFC 9113 section 8.2): a lowercase
    /// token name, a value `http::HeaderValue` accepts, and not connection-specific.
    ///
    /// gRPC's "true binary" metadata is the exception: a `-bin` value starting with a NUL byte is
    /// the raw value (a grpc-core extension two peers negotiate with SETTINGS 0xFE03, which the
    /// client saw in the primary's SETTINGS). It is kept base64-encoded, the form every gRPC peer
    /// takes: the copy goes over the daemon's own connection, which never negotiates the
    /// extension.
    pub(super) fn regular(&mut self, name: &[u8], value: &[u8]) -> Result<(), SkipReason> {
        // `from_lowercase` refuses uppercase, as HTTP/2 does, and accepts what h2's server
        // accepts (it is what h2 uses), which is a little more than `from_bytes` (`"`, for
        // example).
        let name = HeaderName::from_lowercase(name).map_err(|_| SkipReason::InvalidField)?;
        let range = match value.split_first() {
            Some((0, raw)) if name.as_str().ends_with("-bin") => {
                use base64::Engine as _;
                self.keep(
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .encode(raw)
                        .as_bytes(),
                )
            }
            _ if !value.iter().all(|&b| is_value_byte(b)) => return Err(SkipReason::InvalidField),
            _ => self.keep(value),
        };
        if is_connection_specific(&name, &self.values[range.clone()]) {
            return Err(SkipReason::ConnectionSpecificField);
        }
        self.fields.push((name, range));
        Ok(())
    }

    /// The fields in order, and the buffer of every value kept (to slice pseudo-headers from);
    /// or why the section failed.
    pub(super) fn finish(self) -> Result<(FieldList, Bytes), SkipReason> {
        if let Some(reason) = self.error {
            return Err(reason);
        }
        let values = self.values.freeze();
        let fields = self
            .fields
            .into_iter()
            .map(|(name, range)| {
                // Checked in `regular`; `from_maybe_shared` checks again and does not copy.
                let value = HeaderValue::from_maybe_shared(values.slice(range))
                    .map_err(|_| SkipReason::InvalidField)?;
                Ok((name, value))
            })
            .collect::<Result<_, SkipReason>>()?;
        Ok((FieldList(fields), values))
    }
}

/// The first reservation of a section's value buffer, enough for a typical gRPC request's values
/// (it grows as needed, up to `max_header_bytes`).
const VALUES_CAPACITY: usize = 256;

/// A byte `http::HeaderValue` accepts in a value: visible ASCII, space, tab, and obs-text.
fn is_value_byte(b: u8) -> bool {
    (b >= 32 && b != 127) || b == b'\t'
}

/// Collects a request's decoded fields, checking them as they come.
#[derive(Debug)]
pub struct RequestBuilder {
    method: Option<Method>,
    /// Where `:scheme`, `:authority` and `:path` lie in the section's buffer.
    scheme: Option<Range<usize>>,
    authority: Option<Range<usize>>,
    path: Option<Range<usize>>,
    protocol: bool,
    section: Section,
}

impl RequestBuilder {
    /// A builder for a field section of at most `max_list_size` bytes (32 + name + value each).
    pub fn new(max_list_size: usize) -> Self {
        Self {
            method: None,
            scheme: None,
            authority: None,
            path: None,
            protocol: false,
            section: Section::new(max_list_size),
        }
    }

    /// Takes the next decoded field.
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.section.admit(name, value) {
            if let Err(reason) = self.take(name, value) {
                self.section.fail(reason);
            }
        }
    }

    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), SkipReason> {
        let Some(pseudo) = name.strip_prefix(b":") else {
            return self.section.regular(name, value);
        };
        if self.section.has_fields() {
            return Err(SkipReason::InvalidPseudoHeader);
        }
        let slot = match pseudo {
            b"method" => {
                if self.method.is_some() {
                    return Err(SkipReason::InvalidPseudoHeader);
                }
                self.method =
                    Some(Method::from_bytes(value).map_err(|_| SkipReason::InvalidField)?);
                return Ok(());
            }
            b"protocol" => {
                if std::mem::replace(&mut self.protocol, true) {
                    return Err(SkipReason::InvalidPseudoHeader);
                }
                return Ok(());
            }
            b"scheme" => &mut self.scheme,
            b"authority" => &mut self.authority,
            b"path" => &mut self.path,
            // `:status` belongs to responses; anything else is unknown (RFC 9113 section 8.3).
            _ => return Err(SkipReason::InvalidPseudoHeader),
        };
        if slot.is_some() {
            return Err(SkipReason::InvalidPseudoHeader);
        }
        // h2 requires UTF-8 here (and fails the connection without it); `http`'s URI parts
        // would not check the bytes after a `#`.
        if std::str::from_utf8(value).is_err() {
            return Err(SkipReason::InvalidTarget);
        }
        *slot = Some(self.section.keep(value));
        Ok(())
    }

    /// The request head, or why the stream is not one to describe. `end_stream`: the HEADERS
    /// frame ended the stream.
    pub fn finish(self, end_stream: bool) -> Result<RequestHead, SkipReason> {
        let (fields, values) = self.section.finish()?;
        let method = self.method.ok_or(SkipReason::MissingPseudoHeader)?;
        if method == Method::CONNECT || self.protocol {
            return Err(SkipReason::Connect);
        }
        let scheme = self.scheme.ok_or(SkipReason::MissingPseudoHeader)?;
        let scheme = Scheme::try_from(&values[scheme]).map_err(|_| SkipReason::InvalidTarget)?;
        let path = self.path.ok_or(SkipReason::MissingPseudoHeader)?;
        if path.is_empty() {
            return Err(SkipReason::MissingPseudoHeader);
        }
        let path = PathAndQuery::from_maybe_shared(values.slice(path))
            .map_err(|_| SkipReason::InvalidTarget)?;
        let authority = self
            .authority
            .map(|authority| Authority::from_maybe_shared(values.slice(authority)))
            .transpose()
            .map_err(|_| SkipReason::InvalidTarget)?;
        let content_length = content_length(&fields)?;
        if end_stream && content_length.is_some_and(|length| length > 0) {
            return Err(SkipReason::ContentLengthMismatch);
        }
        let head = RequestHead {
            method,
            scheme,
            authority,
            path,
            fields,
            content_length,
        };
        // h2's server builds this URI and resets the stream when it cannot.
        head.try_uri().map_err(|_| SkipReason::InvalidTarget)?;
        Ok(head)
    }
}

/// Collects a trailer section.
#[derive(Debug)]
pub struct TrailersBuilder {
    section: Section,
}

impl TrailersBuilder {
    pub fn new(max_list_size: usize) -> Self {
        Self {
            section: Section::new(max_list_size),
        }
    }

    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        if !self.section.admit(name, value) {
            return;
        }
        let taken = if name.starts_with(b":") {
            Err(SkipReason::PseudoHeaderInTrailers)
        } else {
            self.section.regular(name, value)
        };
        if let Err(reason) = taken {
            self.section.fail(reason);
        }
    }

    pub fn finish(self) -> Result<FieldList, SkipReason> {
        self.section.finish().map(|(fields, _)| fields)
    }
}

/// RFC 9113 section 8.2.2 (h2 checks the same names).
fn is_connection_specific(name: &HeaderName, value: &[u8]) -> bool {
    *name == CONNECTION
        || *name == http::header::TRANSFER_ENCODING
        || *name == http::header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || (*name == TE && value != b"trailers")
}

/// Every Content-Length must be digits (at most 19) and all must agree. As in h2, an empty value
/// reads as 0 (RFC 9110 asks for at least one digit; h2 is what decides here, see the fuzz
/// target `h2_differential`).
pub(super) fn content_length(fields: &FieldList) -> Result<Option<u64>, SkipReason> {
    let mut length = None;
    for (name, value) in fields.iter() {
        if *name != CONTENT_LENGTH {
            continue;
        }
        let bytes = value.as_bytes();
        if bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(SkipReason::InvalidContentLength);
        }
        let parsed = bytes
            .iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
        match length {
            Some(first) if first != parsed => return Err(SkipReason::InvalidContentLength),
            _ => length = Some(parsed),
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::{SkipReason, TrailersBuilder};
    use crate::http::label_checks::{assert_labels, assert_lowercase_messages};

    #[test]
    fn grpc_true_binary_metadata_is_kept_base64_encoded_and_other_nuls_are_invalid() {
        let mut builder = TrailersBuilder::new(4096);
        builder.field(b"x-trace-bin", b"\0\0\x01\xfe\xff");
        builder.field(b"x-plain-bin", b"AAH+/w");
        builder.field(b"x-other", b"\ttab and obs-text \x80\xff");
        let fields = builder.finish().expect("valid");
        let fields: Vec<(&str, &[u8])> = fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        assert_eq!(
            fields,
            [
                ("x-trace-bin", &b"AAH+/w"[..]),
                ("x-plain-bin", b"AAH+/w"),
                ("x-other", b"\ttab and obs-text \x80\xff"),
            ]
        );
        for value in [&b"\0\x01"[..], b"a\x7f", b"line\nbreak", b"\x1f"] {
            let mut builder = TrailersBuilder::new(4096);
            builder.field(b"x-trace", value);
            assert_eq!(
                builder.finish(),
                Err(SkipReason::InvalidField),
                "{value:?}: a NUL is only the true-binary marker of a -bin field, and controls \
                 other than tab are invalid"
            );
        }
    }

    #[test]
    fn skip_labels_are_unique_snake_case() {
        let labels: Vec<&str> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_labels(&labels, "");
        assert_lowercase_messages(SkipReason::ALL);
    }
}
