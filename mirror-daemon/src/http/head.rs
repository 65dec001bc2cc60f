//! Request heads: finding their end in a stream of arbitrary chunks, then parsing and validating.
//!
//! [`HeadScanner`] looks at each byte of a head once, as it arrives, and buffers only the head;
//! it also finds response heads (their status line checked instead of a request line), and
//! [`RawHead`] indexes the fields of either kind for `response`.
//! It rejects early what is not HTTP/1.x at all (TLS, the HTTP/2 preface, binary protocols) and
//! what RFC 9112 forbids in the line syntax even where httparse is lenient: a bare CR or LF, obs-fold,
//! whitespace before a colon, control bytes, and heads over the configured limits. When the blank
//! line arrives, [`parse`] hands the head to httparse and derives the body length from the framing
//! fields (RFC 9112 section 6), refusing every combination that servers could read differently.

use super::{FramingLimits, TunnelReason};
use bytes::Bytes;

/// How the body of a framed request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither Content-Length nor Transfer-Encoding (RFC 9112 section 6.3, rule 7).
    None,
    /// Exactly this many body bytes follow the head.
    ContentLength(u64),
    /// A chunked body follows, ending with the last chunk and the trailer section.
    Chunked,
}

/// A complete, validated request head; owns its raw bytes and indexes into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    head: RawHead,
    method: Span,
    target: Span,
    version: u8,
    body: BodyKind,
    keeps_connection_open: bool,
}

impl RequestHead {
    /// The method token, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.head.text(self.method)
    }

    /// The request-target exactly as sent (origin-form `/a?b`, absolute-form, or `*`).
    pub fn target(&self) -> &str {
        self.head.text(self.target)
    }

    /// The path of the target without the query (`/a` for `/a?b` and `http://h/a?b`; `/` when an
    /// absolute-form target has no path; `*` for the asterisk form).
    pub fn path(&self) -> &str {
        let target = self.target();
        let path_and_query = match target.find("://") {
            Some(scheme_end) => {
                let rest = &target[scheme_end + 3..];
                &rest[rest.find(['/', '?']).unwrap_or(rest.len())..]
            }
            None => target,
        };
        match path_and_query
            .split_once('?')
            .map_or(path_and_query, |(path, _)| path)
        {
            "" => "/",
            path => path,
        }
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

    /// The Host field (the framer guarantees there is at most one).
    pub fn host(&self) -> Option<&[u8]> {
        self.header("host")
    }

    /// The head exactly as received: request line, fields and the blank line.
    pub fn raw(&self) -> &[u8] {
        &self.head.raw
    }

    /// The raw head as a cheaply cloneable buffer, for building the shadow copy.
    pub fn raw_bytes(&self) -> Bytes {
        self.head.raw.clone()
    }

    /// How the body that follows is delimited.
    pub fn body(&self) -> BodyKind {
        self.body
    }

    /// Whether another request may follow this one on the connection (RFC 9112 section 9.3).
    pub fn keeps_connection_open(&self) -> bool {
        self.keeps_connection_open
    }
}

/// A head's bytes exactly as received and where its fields are in them; shared by request and
/// response heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHead {
    pub(crate) raw: Bytes,
    fields: Vec<Field>,
}

impl RawHead {
    /// A head of `raw` bytes whose fields are at `fields` (see [`index_fields`]).
    pub(crate) fn new(raw: Vec<u8>, fields: Vec<Field>) -> Self {
        Self {
            raw: Bytes::from(raw),
            fields,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.fields
            .iter()
            .map(|field| (self.text(field.name), self.bytes(field.value)))
    }

    pub(crate) fn bytes(&self, span: Span) -> &[u8] {
        self.raw.get(span.start..span.end).unwrap_or_default()
    }

    pub(crate) fn text(&self, span: Span) -> &str {
        // Methods, targets and names were checked to be ASCII when the head was parsed.
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }
}

/// A byte range in a head's raw bytes; `Copy`, unlike `Range<usize>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Span {
    /// Where `part`, a slice of `raw`, lies in it.
    pub(crate) fn of(raw: &[u8], part: &[u8]) -> Result<Self, TunnelReason> {
        let start = (part.as_ptr() as usize)
            .checked_sub(raw.as_ptr() as usize)
            .filter(|start| start + part.len() <= raw.len())
            .ok_or(TunnelReason::ParseError)?;
        Ok(Self {
            start,
            end: start + part.len(),
        })
    }
}

/// Where one field's name and value are in a head's raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    name: Span,
    value: Span,
}

/// Where the `fields` httparse found in `raw`, the buffer it parsed, are.
pub(crate) fn index_fields(
    raw: &[u8],
    fields: &[httparse::Header<'_>],
) -> Result<Vec<Field>, TunnelReason> {
    fields
        .iter()
        .map(|field| {
            Ok(Field {
                name: Span::of(raw, field.name.as_bytes())?,
                value: Span::of(raw, field.value)?,
            })
        })
        .collect()
}

/// Incremental search for the end of a head, with the line-level checks httparse does not make.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// Whether heads start with a request line or a status line.
    start_line: StartLine,
    /// Head bytes received so far (only while the head is incomplete).
    buf: Vec<u8>,
    /// The previous byte was a CR, so this one must be LF.
    after_cr: bool,
    /// Offset in the head where the current line starts.
    line_start: usize,
    /// Complete lines so far (the request line, then one per field).
    lines: usize,
    /// Where we are inside the current line.
    line: LinePart,
}

/// The first line of the heads a [`HeadScanner`] looks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartLine {
    /// `method SP target SP HTTP-version`: the client's direction.
    #[default]
    Request,
    /// `HTTP-version SP status-code [SP reason]`: the primary's direction.
    Status,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LinePart {
    #[default]
    RequestLine,
    FieldName,
    WhitespaceAfterName,
    FieldValue,
}

/// What [`HeadScanner::scan`] found in a chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// All of the chunk belongs to a head that is not complete yet.
    Incomplete,
    /// The head ends after this many bytes of the chunk; take it with [`HeadScanner::take`].
    Complete(usize),
}

enum ByteEvent {
    Nothing,
    RequestLineEnd,
    HeadEnd,
}

impl HeadScanner {
    /// A scanner for heads that start with `start_line`.
    pub(crate) fn new(start_line: StartLine) -> Self {
        Self {
            start_line,
            ..Self::default()
        }
    }

    /// Whether no byte of a head has arrived yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Heap bytes held for the partial head.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Scans `input`, the next bytes of the head, buffering the part that belongs to the head.
    pub(crate) fn scan(
        &mut self,
        input: &[u8],
        limits: &FramingLimits,
    ) -> Result<Scan, TunnelReason> {
        // `copied` is the first byte of `input` not yet appended to `buf`.
        let mut copied = 0;
        for (i, &byte) in input.iter().enumerate() {
            let pos = self.buf.len() + (i - copied);
            match self.scan_byte(byte, pos, limits)? {
                ByteEvent::Nothing => {}
                ByteEvent::RequestLineEnd => {
                    self.buf.extend_from_slice(&input[copied..=i]);
                    copied = i + 1;
                    let line = &self.buf[..self.buf.len() - 2];
                    match self.start_line {
                        StartLine::Request => check_request_line(line)?,
                        StartLine::Status => check_status_line(line)?,
                    }
                }
                ByteEvent::HeadEnd => {
                    self.buf.extend_from_slice(&input[copied..=i]);
                    return Ok(Scan::Complete(i + 1));
                }
            }
        }
        self.buf.extend_from_slice(&input[copied..]);
        Ok(Scan::Incomplete)
    }

    /// The complete head and its number of fields, leaving the scanner ready for the next head.
    pub(crate) fn take(&mut self) -> (Vec<u8>, usize) {
        let fields = self.lines.saturating_sub(1);
        let raw = std::mem::take(&mut self.buf);
        *self = Self::new(self.start_line);
        (raw, fields)
    }

    fn scan_byte(
        &mut self,
        byte: u8,
        pos: usize,
        limits: &FramingLimits,
    ) -> Result<ByteEvent, TunnelReason> {
        if pos >= limits.max_header_bytes {
            return Err(TunnelReason::HeaderSectionTooLarge);
        }
        if self.after_cr {
            if byte != b'\n' {
                return Err(TunnelReason::BareCr);
            }
            self.after_cr = false;
            return self.end_line(pos, limits);
        }
        if pos == 0 {
            return match byte {
                0x16 => Err(TunnelReason::Tls),
                b'\r' => {
                    self.after_cr = true;
                    Ok(ByteEvent::Nothing)
                }
                b'\n' => Err(TunnelReason::BareLf),
                _ if is_tchar(byte) => Ok(ByteEvent::Nothing),
                _ => Err(TunnelReason::NotHttp),
            };
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                return Ok(ByteEvent::Nothing);
            }
            b'\n' => return Err(TunnelReason::BareLf),
            _ if is_control(byte) => {
                return Err(if self.lines == 0 {
                    TunnelReason::NotHttp
                } else {
                    TunnelReason::ParseError
                });
            }
            _ => {}
        }
        match (self.line, byte) {
            (LinePart::RequestLine | LinePart::FieldValue, _) => {}
            (LinePart::FieldName, b' ' | b'\t') if pos == self.line_start => {
                return Err(TunnelReason::ObsFold);
            }
            (LinePart::FieldName, b':') if pos == self.line_start => {
                return Err(TunnelReason::ParseError);
            }
            (LinePart::FieldName, b':') => self.line = LinePart::FieldValue,
            (LinePart::FieldName, b' ' | b'\t') => self.line = LinePart::WhitespaceAfterName,
            (LinePart::FieldName, _) if is_tchar(byte) => {}
            (LinePart::WhitespaceAfterName, b':') => {
                return Err(TunnelReason::WhitespaceBeforeColon);
            }
            (LinePart::WhitespaceAfterName, b' ' | b'\t') => {}
            (LinePart::FieldName | LinePart::WhitespaceAfterName, _) => {
                return Err(TunnelReason::ParseError);
            }
        }
        Ok(ByteEvent::Nothing)
    }

    /// Handles the LF of a CRLF at `pos`.
    fn end_line(&mut self, pos: usize, limits: &FramingLimits) -> Result<ByteEvent, TunnelReason> {
        let empty = pos - 1 == self.line_start;
        match self.line {
            LinePart::RequestLine if empty => return Err(TunnelReason::EmptyLineBeforeRequest),
            LinePart::FieldName if empty => return Ok(ByteEvent::HeadEnd),
            // A field line without a colon.
            LinePart::FieldName | LinePart::WhitespaceAfterName => {
                return Err(TunnelReason::ParseError)
            }
            LinePart::RequestLine | LinePart::FieldValue => {}
        }
        self.lines += 1;
        self.line_start = pos + 1;
        self.line = LinePart::FieldName;
        if self.lines > limits.max_headers.saturating_add(1) {
            return Err(TunnelReason::TooManyHeaders);
        }
        Ok(if self.lines == 1 {
            ByteEvent::RequestLineEnd
        } else {
            ByteEvent::Nothing
        })
    }
}

/// Classifies a complete request line (without CRLF) before any field arrives, so that other
/// protocols are recognised without waiting for a blank line they will never send.
fn check_request_line(line: &[u8]) -> Result<(), TunnelReason> {
    if line == b"PRI * HTTP/2.0" {
        return Err(TunnelReason::Http2);
    }
    let version_at = line
        .windows(6)
        .rposition(|window| window == b" HTTP/")
        .ok_or(TunnelReason::NotHttp)?;
    match &line[version_at + b" HTTP/".len()..] {
        b"1.1" | b"1.0" => Ok(()),
        version if version.iter().all(|b| b.is_ascii_digit() || *b == b'.') => {
            Err(TunnelReason::UnsupportedVersion)
        }
        _ => Err(TunnelReason::ParseError),
    }
}

/// Checks a complete status line (without CRLF): `HTTP/1.0` or `HTTP/1.1`, one SP, three digits,
/// then the end of the line or one SP and a reason phrase (RFC 9112 section 4).
fn check_status_line(line: &[u8]) -> Result<(), TunnelReason> {
    let Some(rest) = line.strip_prefix(b"HTTP/") else {
        return Err(TunnelReason::NotHttp);
    };
    let version_len = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    match &rest[..version_len] {
        b"1.1" | b"1.0" => {}
        version if version.iter().all(|b| b.is_ascii_digit() || *b == b'.') => {
            return Err(TunnelReason::UnsupportedVersion)
        }
        _ => return Err(TunnelReason::ParseError),
    }
    match &rest[version_len..] {
        [b' ', a, b, c, after @ ..]
            if [a, b, c].iter().all(|d| d.is_ascii_digit())
                && matches!(after.first(), None | Some(b' ')) =>
        {
            Ok(())
        }
        _ => Err(TunnelReason::ParseError),
    }
}

/// Runs `parse` with room for `field_count` httparse headers: on the stack for the usual heads.
pub(crate) fn with_field_storage<'a, R>(
    field_count: usize,
    parse: impl FnOnce(&mut [httparse::Header<'a>]) -> R,
) -> R {
    let mut on_stack = [httparse::EMPTY_HEADER; 32];
    if field_count <= on_stack.len() {
        parse(&mut on_stack[..field_count])
    } else {
        parse(&mut vec![httparse::EMPTY_HEADER; field_count])
    }
}

/// Parses a complete head (as collected by [`HeadScanner`]) and decides how its body is framed.
pub(crate) fn parse(raw: Vec<u8>, field_count: usize) -> Result<RequestHead, TunnelReason> {
    with_field_storage(field_count, |storage| parse_into(&raw, storage))
        .map(|parsed| parsed.into_head(raw))
}

/// What [`parse`] found in a request head, before the head takes ownership of its bytes.
struct ParsedRequest {
    method: Span,
    target: Span,
    version: u8,
    framing: Framing,
    fields: Vec<Field>,
}

fn parse_into<'a>(
    raw: &'a [u8],
    storage: &mut [httparse::Header<'a>],
) -> Result<ParsedRequest, TunnelReason> {
    let mut request = httparse::Request::new(storage);
    match request.parse(raw) {
        Ok(httparse::Status::Complete(len)) if len == raw.len() => {}
        Err(httparse::Error::Version) => return Err(TunnelReason::UnsupportedVersion),
        Ok(_) | Err(_) => return Err(TunnelReason::ParseError),
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(TunnelReason::ParseError);
    };
    // httparse admits UTF-8 in the target; RFC 9112 does not.
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TunnelReason::ParseError);
    }

    let framing = Framing::of(method, version, request.headers)?;
    Ok(ParsedRequest {
        method: Span::of(raw, method.as_bytes())?,
        target: Span::of(raw, target.as_bytes())?,
        version,
        framing,
        fields: index_fields(raw, request.headers)?,
    })
}

impl ParsedRequest {
    fn into_head(self, raw: Vec<u8>) -> RequestHead {
        RequestHead {
            head: RawHead::new(raw, self.fields),
            method: self.method,
            target: self.target,
            version: self.version,
            body: self.framing.body,
            keeps_connection_open: self.framing.keeps_connection_open,
        }
    }
}

/// What the framing-relevant fields of a head decide.
struct Framing {
    body: BodyKind,
    keeps_connection_open: bool,
}

impl Framing {
    fn of(
        method: &str,
        version: u8,
        headers: &[httparse::Header<'_>],
    ) -> Result<Self, TunnelReason> {
        if method.eq_ignore_ascii_case("CONNECT") {
            return Err(TunnelReason::Connect);
        }
        let mut content_length = None;
        let mut content_lengths = 0;
        let mut transfer_encoding = None;
        let mut transfer_encodings = 0;
        let mut hosts = 0;
        let mut close = false;
        let mut keep_alive = false;
        for header in headers {
            let name = header.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                content_lengths += 1;
                content_length.get_or_insert(header.value);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                transfer_encodings += 1;
                transfer_encoding.get_or_insert(header.value);
            } else if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                let h2c = list_elements(header.value).any(|p| p.eq_ignore_ascii_case(b"h2c"));
                return Err(if h2c {
                    TunnelReason::H2cUpgrade
                } else {
                    TunnelReason::Upgrade
                });
            } else if name.eq_ignore_ascii_case(b"connection") {
                for option in list_elements(header.value) {
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if aliases(name, b"content-length") || aliases(name, b"transfer-encoding") {
                return Err(TunnelReason::AmbiguousFramingHeader);
            }
        }
        if hosts > 1 {
            return Err(TunnelReason::DuplicateHost);
        }
        let body = match (transfer_encoding, content_length) {
            (Some(_), Some(_)) => return Err(TunnelReason::ContentLengthWithTransferEncoding),
            (Some(_), None) if version == 0 => return Err(TunnelReason::TransferEncodingInHttp10),
            (Some(_), None) if transfer_encodings > 1 => {
                return Err(TunnelReason::DuplicateTransferEncoding)
            }
            (Some(codings), None) => {
                check_transfer_codings(codings)?;
                BodyKind::Chunked
            }
            (None, Some(_)) if content_lengths > 1 => {
                return Err(TunnelReason::DuplicateContentLength)
            }
            (None, Some(length)) => BodyKind::ContentLength(parse_content_length(length)?),
            (None, None) => BodyKind::None,
        };
        let keeps_connection_open = !close && (version == 1 || keep_alive);
        Ok(Self {
            body,
            keeps_connection_open,
        })
    }
}

/// Accepts exactly one transfer coding, `chunked` (any case, OWS around it already trimmed).
fn check_transfer_codings(value: &[u8]) -> Result<(), TunnelReason> {
    let mut codings = 0;
    let mut last_is_chunked = false;
    for coding in list_elements(value) {
        if coding.is_empty() || !coding.iter().all(|b| is_tchar(*b)) {
            return Err(TunnelReason::InvalidTransferEncoding);
        }
        codings += 1;
        last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
    }
    match (last_is_chunked, codings) {
        (false, _) => Err(TunnelReason::TransferEncodingNotChunked),
        (true, 1) => Ok(()),
        (true, _) => Err(TunnelReason::UnsupportedTransferEncoding),
    }
}

/// `1*DIGIT` that fits in u64; leading zeros are allowed by the grammar and read the same everywhere.
fn parse_content_length(value: &[u8]) -> Result<u64, TunnelReason> {
    parse_decimal(value).ok_or(TunnelReason::InvalidContentLength)
}

/// `1*DIGIT` that fits in u64, or `None`.
pub(crate) fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |length, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        length.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Elements of a comma-separated field value with the OWS around each trimmed.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|element| {
        let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
        let start = element
            .iter()
            .position(|b| !is_ows(b))
            .unwrap_or(element.len());
        let end = element
            .iter()
            .rposition(|b| !is_ows(b))
            .map_or(start, |i| i + 1);
        &element[start..end]
    })
}

/// Whether `name` is not `framing_name` but some server could map it to it (`_` for `-`).
fn aliases(name: &[u8], framing_name: &[u8]) -> bool {
    name.len() == framing_name.len()
        && name.contains(&b'_')
        && name
            .iter()
            .zip(framing_name)
            .all(|(a, b)| a.eq_ignore_ascii_case(b) || (*a == b'_' && *b == b'-'))
}

/// `tchar` of RFC 9110 section 5.6.2: the characters of methods, field names and codings.
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Control bytes other than HTAB; never valid in a head (CR and LF are handled as line ends).
pub(crate) fn is_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}
