//! A reference framer: the daemon's framing rules, applied to a whole buffer at once.
//!
//! It shares no code with the daemon and is written to be read, not to be fast: find the blank
//! line, split the head into lines, check each line against its grammar, count the framing
//! fields, then walk the body line by line. Its rules are the ones documented in
//! `mirror-daemon/src/http/` (RFC 9112, strictly):
//!
//! - a head is at most `max_header_bytes` long and has at most `max_headers` fields;
//! - every line ends in CRLF, with no other CR or LF and no control byte (HTAB aside) anywhere;
//! - the request line is `method SP target SP HTTP/1.0|HTTP/1.1`, the method a token, the target
//!   visible ASCII; no empty line before it;
//! - a field line is `token ":" value`, with no whitespace before the colon and none at the
//!   start of the line;
//! - CONNECT, any Upgrade field, more than one Host, a `Content_Length`/`Transfer_Encoding`
//!   alias, Content-Length with Transfer-Encoding, more than one of either, Transfer-Encoding in
//!   HTTP/1.0 or other than exactly `chunked`, a Content-Length other than `1*DIGIT` within u64:
//!   all refused;
//! - a chunked body is `1*16HEXDIG [";" ext] CRLF data CRLF`... `0 [";" ext] CRLF` then trailer
//!   lines `token ":" value CRLF` and CRLF, the trailer section (from after the last chunk line to
//!   the final CRLF) within the same limits as a head;
//! - nothing may follow a request that closes the connection (`Connection: close`, or HTTP/1.0
//!   without `keep-alive`).

use std::ops::Range;

use mirror_daemon::http::{BodyKind, FramingLimits};

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where the head is, request line to blank line.
    pub head: Range<usize>,
    /// Where the body is (chunked: size lines, data, trailers and all).
    pub body: Range<usize>,
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub version: u8,
    /// Names and values (without the whitespace around them), in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    pub kind: BodyKind,
    pub keeps_connection_open: bool,
}

/// How the input ends after the complete requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Right after the last request.
    Clean,
    /// Inside a head that has not ended yet.
    IncompleteHead,
    /// Inside the body of a request with a valid head; `Request::body` reaches to the end of the
    /// input.
    IncompleteBody(Box<Request>),
    /// The next request (head or body) breaks a rule.
    Reject(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    pub requests: Vec<Request>,
    pub end: End,
}

/// Frames `input` from the start.
pub fn parse(input: &[u8], limits: FramingLimits) -> Parse {
    parse_with(input, limits, true)
}

/// Frames `input`, a request copy: without limits, and an `Upgrade` field is not refused (the
/// daemon does not frame what follows one, but it does not make the framing ambiguous).
pub fn parse_copy(input: &[u8]) -> Parse {
    let unlimited = FramingLimits {
        max_header_bytes: usize::MAX,
        max_headers: usize::MAX,
    };
    parse_with(input, unlimited, false)
}

fn parse_with(input: &[u8], limits: FramingLimits, refuse_upgrade: bool) -> Parse {
    let mut requests = Vec::new();
    let mut at = 0;
    loop {
        if at == input.len() {
            return Parse {
                requests,
                end: End::Clean,
            };
        }
        if requests
            .last()
            .is_some_and(|r: &Request| !r.keeps_connection_open)
        {
            return Parse {
                requests,
                end: End::Reject("data after a request that closes the connection"),
            };
        }
        let end = match request(input, at, limits, refuse_upgrade) {
            Ok(Step::Complete(request)) => {
                at = request.body.end;
                requests.push(request);
                continue;
            }
            Ok(Step::IncompleteHead) => End::IncompleteHead,
            Ok(Step::IncompleteBody(request)) => End::IncompleteBody(Box::new(request)),
            Err(why) => End::Reject(why),
        };
        return Parse { requests, end };
    }
}

enum Step {
    Complete(Request),
    IncompleteHead,
    IncompleteBody(Request),
}

/// The request starting at `input[start]`.
fn request(
    input: &[u8],
    start: usize,
    limits: FramingLimits,
    refuse_upgrade: bool,
) -> Result<Step, &'static str> {
    let rest = &input[start..];
    let Some(blank) = find(rest, b"\r\n\r\n") else {
        return if rest.len() > limits.max_header_bytes {
            Err("head too large")
        } else {
            Ok(Step::IncompleteHead)
        };
    };
    let head_len = blank + 4;
    if rest.starts_with(b"\r\n") {
        return Err("empty line before the request line");
    }
    if head_len > limits.max_header_bytes {
        return Err("head too large");
    }
    let head = &rest[..head_len];
    let mut lines = split_lines(&head[..head.len() - 4]);
    let request_line = lines.remove(0);
    if lines.len() > limits.max_headers {
        return Err("too many fields");
    }
    let (method, target, version) = parse_request_line(request_line)?;
    let mut fields = Vec::new();
    for line in lines {
        fields.push(parse_field_line(line)?);
    }
    let (kind, keeps_connection_open) = framing(&method, version, &fields, refuse_upgrade)?;
    let body_start = start + head_len;
    let mut request = Request {
        head: start..body_start,
        body: body_start..body_start,
        method,
        target,
        version,
        fields,
        kind,
        keeps_connection_open,
    };
    let body_len = match kind {
        BodyKind::None => Some(0),
        BodyKind::ContentLength(length) => {
            let available = (input.len() - body_start) as u64;
            (length <= available).then_some(length as usize)
        }
        BodyKind::Chunked => chunked_length(&input[body_start..], limits)?,
    };
    Ok(match body_len {
        Some(len) => {
            request.body.end = body_start + len;
            Step::Complete(request)
        }
        None => {
            request.body.end = input.len();
            Step::IncompleteBody(request)
        }
    })
}

fn parse_request_line(line: &[u8]) -> Result<(Vec<u8>, Vec<u8>, u8), &'static str> {
    let parts: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Err("request line is not three words");
    };
    if method.is_empty() || !method.iter().all(|b| is_tchar(*b)) {
        return Err("method is not a token");
    }
    if target.is_empty() || !target.iter().all(u8::is_ascii_graphic) {
        return Err("target is not visible ASCII");
    }
    let version = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return Err("version is not HTTP/1.0 or HTTP/1.1"),
    };
    Ok((method.to_vec(), target.to_vec(), version))
}

/// `token ":" OWS value OWS`, returning the name and the value without the OWS.
pub fn parse_field_line(line: &[u8]) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return Err("field line without a colon");
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
        return Err("field name is not a token (or whitespace before the colon, or obs-fold)");
    }
    if !value.iter().all(|b| is_value_byte(*b)) {
        return Err("control byte in a field value");
    }
    Ok((name.to_vec(), trim_ows(value).to_vec()))
}

/// The body length and whether the connection stays open, from the framing fields.
fn framing(
    method: &[u8],
    version: u8,
    fields: &[(Vec<u8>, Vec<u8>)],
    refuse_upgrade: bool,
) -> Result<(BodyKind, bool), &'static str> {
    if method.eq_ignore_ascii_case(b"CONNECT") {
        return Err("CONNECT");
    }
    let named = |wanted: &str| -> Vec<&[u8]> {
        fields
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(wanted.as_bytes()))
            .map(|(_, value)| value.as_slice())
            .collect()
    };
    if refuse_upgrade && !named("upgrade").is_empty() {
        return Err("Upgrade");
    }
    if named("host").len() > 1 {
        return Err("more than one Host");
    }
    for (name, _) in fields {
        let normalised: Vec<u8> = name
            .iter()
            .map(|b| {
                if *b == b'_' {
                    b'-'
                } else {
                    b.to_ascii_lowercase()
                }
            })
            .collect();
        if name.contains(&b'_')
            && (normalised == b"content-length" || normalised == b"transfer-encoding")
        {
            return Err("field name aliasing a framing field");
        }
    }
    let lengths = named("content-length");
    let codings = named("transfer-encoding");
    let kind = match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => BodyKind::None,
        ([_, ..], [_, ..]) => return Err("Content-Length and Transfer-Encoding"),
        ([_, _, ..], []) => return Err("more than one Content-Length"),
        ([length], []) => {
            if length.is_empty() || !length.iter().all(u8::is_ascii_digit) {
                return Err("Content-Length is not 1*DIGIT");
            }
            // Leading zeros are allowed, and read the same everywhere.
            let significant = &length[length.iter().take_while(|b| **b == b'0').count()..];
            if significant.len() > 20 {
                return Err("Content-Length overflows");
            }
            let length: u128 = std::str::from_utf8(significant)
                .expect("digits")
                .parse()
                .unwrap_or(0);
            BodyKind::ContentLength(u64::try_from(length).map_err(|_| "Content-Length overflows")?)
        }
        ([], [coding]) => {
            if version == 0 {
                return Err("Transfer-Encoding in HTTP/1.0");
            }
            if !coding.eq_ignore_ascii_case(b"chunked") {
                return Err("Transfer-Encoding is not exactly chunked");
            }
            BodyKind::Chunked
        }
        ([], [_, _, ..]) => return Err("more than one Transfer-Encoding"),
    };
    let options: Vec<&[u8]> = named("connection")
        .into_iter()
        .flat_map(|value| value.split(|b| *b == b','))
        .map(trim_ows)
        .collect();
    let close = options.iter().any(|o| o.eq_ignore_ascii_case(b"close"));
    let keep_alive = options
        .iter()
        .any(|o| o.eq_ignore_ascii_case(b"keep-alive"));
    Ok((kind, !close && (version == 1 || keep_alive)))
}

/// The length of the chunked body at the start of `body`; `None` when it has not ended yet.
fn chunked_length(body: &[u8], limits: FramingLimits) -> Result<Option<usize>, &'static str> {
    Ok(chunked_body(body, limits)?.map(|(length, _)| length))
}

/// The length and the payload (the chunk data, concatenated) of the chunked body at the start of
/// `body`; `None` when it has not ended yet.
pub fn chunked_body(
    body: &[u8],
    limits: FramingLimits,
) -> Result<Option<(usize, Vec<u8>)>, &'static str> {
    let mut payload = Vec::new();
    let mut at = 0;
    loop {
        // The chunk-size line.
        let Some(line_len) = find(&body[at..], b"\r\n") else {
            return partial(valid_size_line_prefix(&body[at..]), "bad chunk-size line");
        };
        let size = parse_size_line(&body[at..at + line_len])?;
        at += line_len + 2;
        if size == 0 {
            break;
        }
        // The data and its CRLF.
        let Some(after_data) = usize::try_from(size).ok().and_then(|s| at.checked_add(s)) else {
            return Ok(None);
        };
        if after_data > body.len() {
            return Ok(None);
        }
        payload.extend_from_slice(&body[at..after_data]);
        at = after_data;
        let crlf = &body[at..body.len().min(at + 2)];
        if !b"\r\n".starts_with(crlf) {
            return Err("chunk data not followed by CRLF");
        }
        if crlf.len() < 2 {
            return Ok(None);
        }
        at += 2;
    }
    // The trailer section, up to and including the final CRLF.
    let trailers_start = at;
    let mut fields = 0;
    loop {
        let Some(line_len) = find(&body[at..], b"\r\n") else {
            let partial_ok = valid_trailer_line_prefix(&body[at..]);
            if body.len() - trailers_start > limits.max_header_bytes {
                return Err("trailer section too large");
            }
            if body.get(at).is_some_and(|b| is_tchar(*b)) && fields + 1 > limits.max_headers {
                return Err("too many trailer fields");
            }
            return partial(partial_ok, "bad trailer line");
        };
        let line = &body[at..at + line_len];
        at += line_len + 2;
        if at - trailers_start > limits.max_header_bytes {
            return Err("trailer section too large");
        }
        if line.is_empty() {
            return Ok(Some((at, payload)));
        }
        parse_field_line(line).map_err(|_| "bad trailer line")?;
        fields += 1;
        if fields > limits.max_headers {
            return Err("too many trailer fields");
        }
    }
}

fn partial<T>(valid_so_far: bool, why: &'static str) -> Result<Option<T>, &'static str> {
    if valid_so_far {
        Ok(None)
    } else {
        Err(why)
    }
}

/// `1*16HEXDIG [";" ext]` where the extension has no control byte but HTAB.
fn parse_size_line(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err("chunk size is not 1 to 16 hex digits");
    }
    match line.get(digits) {
        None => {}
        Some(b';') if line[digits + 1..].iter().all(|b| is_value_byte(*b)) => {}
        Some(_) => return Err("bad byte after the chunk size"),
    }
    let digits = std::str::from_utf8(&line[..digits]).expect("hex digits");
    Ok(u64::from_str_radix(digits, 16).expect("at most 16 hex digits"))
}

/// Whether `partial` (the end of the input, no CRLF in it) can still become a chunk-size line.
/// This mirrors what a byte-at-a-time reader can know: where the line cannot be valid any more.
fn valid_size_line_prefix(partial: &[u8]) -> bool {
    let line = partial.strip_suffix(b"\r").unwrap_or(partial);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > 16 || line.contains(&b'\r') || line.contains(&b'\n') {
        return false;
    }
    match line.get(digits) {
        None => digits > 0 || line.len() == partial.len(),
        Some(b';') => digits > 0 && line[digits + 1..].iter().all(|b| is_value_byte(*b)),
        Some(_) => false,
    }
}

/// Whether `partial` (no CRLF in it) can still become a trailer line or the final CRLF, as far
/// as a byte-at-a-time reader can tell (whitespace after a name may yet be followed by more
/// whitespace, so it is not known to be wrong until the next other byte).
fn valid_trailer_line_prefix(partial: &[u8]) -> bool {
    let (line, cr) = match partial.strip_suffix(b"\r") {
        Some(line) => (line, true),
        None => (partial, false),
    };
    if line.contains(&b'\r') || line.contains(&b'\n') {
        return false;
    }
    let name = line.iter().take_while(|b| is_tchar(**b)).count();
    let rest = &line[name..];
    match rest.first() {
        // `name` alone, or nothing: a CR is fine only on the empty line.
        None => !cr || line.is_empty(),
        Some(b':') => name > 0 && rest[1..].iter().all(|b| is_value_byte(*b)),
        Some(b' ' | b'\t') => name > 0 && !cr && rest.iter().all(|b| *b == b' ' || *b == b'\t'),
        Some(_) => false,
    }
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The lines of `text`, split at CRLF; a line may still hold a bare CR or LF.
pub fn split_lines(text: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(end) = find(rest, b"\r\n") {
        lines.push(&rest[..end]);
        rest = &rest[end + 2..];
    }
    lines.push(rest);
    lines
}

pub fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A byte allowed in a field value or chunk extension: HTAB, SP, visible ASCII, obs-text.
pub fn is_value_byte(byte: u8) -> bool {
    byte == b'\t' || (byte >= 0x20 && byte != 0x7f)
}

pub fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(input: &[u8]) -> (usize, End) {
        let parse = parse(input, FramingLimits::default());
        (parse.requests.len(), parse.end)
    }

    #[test]
    fn pipelines_of_every_body_kind() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /u HTTP/1.1\r\nContent-Length: 003\r\n\r\nabcPUT / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        let parse = parse(input, FramingLimits::default());
        assert_eq!(parse.end, End::Clean);
        let kinds: Vec<_> = parse.requests.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                BodyKind::None,
                BodyKind::ContentLength(3),
                BodyKind::Chunked
            ]
        );
        assert_eq!(parse.requests[2].body.end, input.len());
        assert_eq!(&input[parse.requests[1].body.clone()], b"abc");
    }

    #[test]
    fn content_length_may_have_any_number_of_leading_zeros() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 0000000000000000000000000000018446744073709551615\r\n\r\n";
        let parse = parse(input, FramingLimits::default());
        assert_eq!(parse.requests.len(), 0);
        assert!(
            matches!(&parse.end, End::IncompleteBody(r) if r.kind == BodyKind::ContentLength(u64::MAX))
        );
        let over = b"POST / HTTP/1.1\r\nContent-Length: 018446744073709551616\r\n\r\n";
        assert!(matches!(ends(over), (0, End::Reject(_))));
    }

    #[test]
    fn smuggling_patterns_are_refused() {
        for input in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent_Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(ends(input), (0 | 1, End::Reject(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(input),
                ends(input)
            );
        }
    }

    #[test]
    fn incomplete_inputs_are_told_apart_from_invalid_ones() {
        assert_eq!(ends(b"GET / HTTP/1.1\r\nHost"), (0, End::IncompleteHead));
        let partial_body = |body: &[u8]| {
            let input = [
                &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                body,
            ]
            .concat();
            matches!(ends(&input), (0, End::IncompleteBody(_)))
        };
        for body in [
            &b""[..],
            b"5",
            b"5;a=b\r",
            b"5\r\nhel",
            b"5\r\nhello\r",
            b"0\r\nX",
            b"0\r\nX  ",
            b"0\r\nX: 1\r",
            b"0\r\n\r",
        ] {
            assert!(partial_body(body), "{:?}", String::from_utf8_lossy(body));
        }
        for body in [
            &b"g"[..],
            b"5\n",
            b"5\r\nhelloX",
            b"0\r\nX \r",
            b"0\r\nX:\x01",
        ] {
            assert!(!partial_body(body), "{:?}", String::from_utf8_lossy(body));
        }
    }
}
