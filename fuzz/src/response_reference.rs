//! A reference framer for the primary's answers: the daemon's response framing rules, applied to
//! a whole buffer at once, in the style of [`reference`](crate::reference) (which it borrows its
//! line, field and chunked-body readers from; it shares no code with the daemon).
//!
//! Its rules (RFC 9112, strictly; see `mirror-daemon/src/http/response/`):
//! - a head is at most `max_header_bytes` long with at most `max_headers` fields, every line
//!   ends in CRLF with no other CR, LF or control byte (HTAB aside);
//! - the status line is `HTTP/1.0|HTTP/1.1 SP 3DIGIT [SP reason]`, the code 100 to 599, the
//!   reason of field-value bytes; field lines are `token ":" value`;
//! - each head answers the oldest request not answered yet; without one, it is refused (and
//!   once the request stream is opaque, any byte is); 1xx other than 101 are interim; 101
//!   answers an Upgrade request (else refused) and 2xx a CONNECT, and framing ends after them;
//! - no body for interim answers, HEAD, 204, 304; otherwise Content-Length with
//!   Transfer-Encoding, unequal or non-numeric lengths, codings that are not tokens, `chunked`
//!   other than once and last, or Transfer-Encoding in HTTP/1.0 are refused; `chunked` last
//!   means chunked, other codings or no length mean until close;
//! - the connection persists when the request and the answer let it (HTTP/1.1 without `close`,
//!   HTTP/1.0 with `keep-alive`) and the body does not run until close; nothing may follow an
//!   answer after which it does not;
//! - when the primary closes: a body until close ends there; a partial answer, or requests left
//!   unanswered on a persistent connection, are refused.

use std::ops::Range;

use mirror_daemon::http::{response::Expected, FramingLimits};

use crate::reference::{
    chunked_body, find, is_tchar, is_value_byte, parse_field_line, split_lines, trim_ows,
};

/// How an answer's body is delimited, as the reference reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A head, interim or final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub range: Range<usize>,
    pub status: u16,
    pub version: u8,
    pub reason: Vec<u8>,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub interims: Vec<Head>,
    pub head: Head,
    pub body: Body,
    /// The body's bytes on the wire (chunked: sizes, data, trailers and all).
    pub wire: Range<usize>,
    /// The body's payload (chunked: the chunk data).
    pub payload: Vec<u8>,
    pub reusable: bool,
}

/// How the input ends after the complete answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Right after the last answer, nothing more to say.
    Clean,
    /// The last answer switched the connection to another protocol or a tunnel.
    Switched,
    /// Inside a head (after any complete interim heads of the next answer).
    IncompleteHead,
    /// Inside the body of an answer with a valid head; its `wire` reaches the end of the input.
    IncompleteBody(Box<Answer>),
    /// What follows (or the way the input ends) breaks a rule.
    Reject(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    pub answers: Vec<Answer>,
    pub end: End,
}

/// Frames `input`, the primary's answers to `requests`; `opaque`: no more requests follow them;
/// `eof`: the primary closed after the input.
pub fn parse(
    input: &[u8],
    requests: &[Expected],
    opaque: bool,
    eof: bool,
    limits: FramingLimits,
) -> Parse {
    let mut answers: Vec<Answer> = Vec::new();
    let mut at = 0;
    let end = loop {
        if answers.last().is_some_and(|a| !a.reusable) {
            break if at < input.len() {
                End::Reject("data after an answer that closes the connection")
            } else {
                End::Clean
            };
        }
        let request = requests.get(answers.len()).copied();
        if at == input.len() {
            break if eof && request.is_some() {
                End::Reject("closed with requests unanswered")
            } else {
                End::Clean
            };
        }
        if request.is_none() && opaque {
            break End::Reject("answer to a request nobody framed");
        }
        match answer(input, at, request, eof, limits) {
            Ok(Step::Complete(answer)) => {
                at = answer.wire.end;
                answers.push(answer);
            }
            Ok(Step::Switched(answer)) => {
                answers.push(answer);
                break End::Switched;
            }
            Ok(Step::IncompleteHead) if eof => break End::Reject("closed inside a head"),
            Ok(Step::IncompleteHead) => break End::IncompleteHead,
            Ok(Step::IncompleteBody(_)) if eof => break End::Reject("closed inside a body"),
            Ok(Step::IncompleteBody(answer)) => break End::IncompleteBody(Box::new(answer)),
            Err(why) => break End::Reject(why),
        }
    };
    Parse { answers, end }
}

enum Step {
    Complete(Answer),
    Switched(Answer),
    IncompleteHead,
    IncompleteBody(Answer),
}

/// The answer (interim heads, head, body) starting at `input[start]`.
fn answer(
    input: &[u8],
    start: usize,
    request: Option<Expected>,
    eof: bool,
    limits: FramingLimits,
) -> Result<Step, &'static str> {
    let mut interims = Vec::new();
    let mut at = start;
    loop {
        let Some(head) = head(input, at, limits)? else {
            return Ok(Step::IncompleteHead);
        };
        let Some(request) = request else {
            return Err("an answer with no request expected");
        };
        at = head.range.end;
        let switched = match head.status {
            101 if request.upgrade => true,
            101 => return Err("101 without Upgrade"),
            100..=199 => {
                interims.push(head);
                continue;
            }
            200..=299 => request.connect,
            _ => false,
        };
        let body = if switched || request.head || head.status == 204 || head.status == 304 {
            Body::None
        } else {
            body_of(&head)?
        };
        let mut answer = Answer {
            reusable: !switched
                && request.keeps_connection_open
                && body != Body::UntilClose
                && persists(&head),
            interims,
            head,
            body,
            wire: at..at,
            payload: Vec::new(),
        };
        if switched {
            return Ok(Step::Switched(answer));
        }
        let rest = &input[at..];
        let complete = match body {
            Body::None => Some((0, Vec::new())),
            Body::Length(length) => usize::try_from(length)
                .ok()
                .filter(|length| *length <= rest.len())
                .map(|length| (length, rest[..length].to_vec())),
            Body::Chunked => chunked_body(rest, limits)?,
            Body::UntilClose => eof.then(|| (rest.len(), rest.to_vec())),
        };
        return Ok(match complete {
            Some((length, payload)) => {
                answer.wire.end = at + length;
                answer.payload = payload;
                Step::Complete(answer)
            }
            None => {
                answer.wire.end = input.len();
                Step::IncompleteBody(answer)
            }
        });
    }
}

/// The head starting at `input[start]`, `None` while incomplete.
fn head(input: &[u8], start: usize, limits: FramingLimits) -> Result<Option<Head>, &'static str> {
    let rest = &input[start..];
    let Some(blank) = find(rest, b"\r\n\r\n") else {
        return if rest.len() > limits.max_header_bytes {
            Err("head too large")
        } else {
            Ok(None)
        };
    };
    let head_len = blank + 4;
    if rest.starts_with(b"\r\n") {
        return Err("empty line before the status line");
    }
    if head_len > limits.max_header_bytes {
        return Err("head too large");
    }
    let mut lines = split_lines(&rest[..blank]);
    let status_line = lines.remove(0);
    if lines.len() > limits.max_headers {
        return Err("too many fields");
    }
    let (version, status, reason) = parse_status_line(status_line)?;
    let mut fields = Vec::new();
    for line in lines {
        fields.push(parse_field_line(line)?);
    }
    Ok(Some(Head {
        range: start..start + head_len,
        status,
        version,
        reason,
        fields,
    }))
}

fn parse_status_line(line: &[u8]) -> Result<(u8, u16, Vec<u8>), &'static str> {
    let version = match line.get(..9) {
        Some(b"HTTP/1.1 ") => 1,
        Some(b"HTTP/1.0 ") => 0,
        _ => return Err("status line does not start with HTTP/1.0 or HTTP/1.1 and a space"),
    };
    let code = line.get(9..12).ok_or("no status code")?;
    if !code.iter().all(u8::is_ascii_digit) {
        return Err("status code is not three digits");
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err("status code outside 100 to 599");
    }
    let reason = match &line[12..] {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return Err("status code not followed by a space"),
    };
    if !reason.iter().all(|b| is_value_byte(*b)) {
        return Err("control byte in the reason phrase");
    }
    Ok((version, status, reason.to_vec()))
}

/// The values of the fields called `name`, split into list elements.
fn elements<'a>(head: &'a Head, name: &str) -> Vec<&'a [u8]> {
    head.fields
        .iter()
        .filter(|(field, _)| field.eq_ignore_ascii_case(name.as_bytes()))
        .flat_map(|(_, value)| value.split(|b| *b == b','))
        .map(trim_ows)
        .collect()
}

fn body_of(head: &Head) -> Result<Body, &'static str> {
    let lengths = elements(head, "content-length");
    let codings = elements(head, "transfer-encoding");
    let mut length = None;
    for value in &lengths {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err("Content-Length is not a list of 1*DIGIT");
        }
        let significant = &value[value.iter().take_while(|b| **b == b'0').count()..];
        if significant.len() > 20 {
            return Err("Content-Length overflows");
        }
        let value: u128 = std::str::from_utf8(significant)
            .expect("digits")
            .parse()
            .unwrap_or(0);
        let value = u64::try_from(value).map_err(|_| "Content-Length overflows")?;
        if length.is_some_and(|length| length != value) {
            return Err("Content-Length values differ");
        }
        length = Some(value);
    }
    if codings.is_empty() {
        return Ok(length.map_or(Body::UntilClose, Body::Length));
    }
    if length.is_some() {
        return Err("Content-Length and Transfer-Encoding");
    }
    if head.version == 0 {
        return Err("Transfer-Encoding in HTTP/1.0");
    }
    if codings
        .iter()
        .any(|coding| coding.is_empty() || !coding.iter().all(|b| is_tchar(*b)))
    {
        return Err("a transfer coding is not a token");
    }
    let chunked: Vec<bool> = codings
        .iter()
        .map(|coding| coding.eq_ignore_ascii_case(b"chunked"))
        .collect();
    match chunked.iter().filter(|c| **c).count() {
        0 => Ok(Body::UntilClose),
        1 if chunked.last() == Some(&true) => Ok(Body::Chunked),
        _ => Err("chunked is not the last coding, or not the only chunked"),
    }
}

fn persists(head: &Head) -> bool {
    let options = elements(head, "connection");
    let close = options.iter().any(|o| o.eq_ignore_ascii_case(b"close"));
    let keep_alive = options
        .iter()
        .any(|o| o.eq_ignore_ascii_case(b"keep-alive"));
    !close && (head.version == 1 || keep_alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Expected = Expected::plain();

    fn ends(input: &[u8], requests: &[Expected], eof: bool) -> (usize, End) {
        let parse = parse(input, requests, false, eof, FramingLimits::default());
        (parse.answers.len(), parse.end)
    }

    #[test]
    fn answers_of_every_body_kind() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabcHTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;x\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 200 OK\r\n\r\nrest";
        let parse = parse(input, &[GET; 3], false, true, FramingLimits::default());
        assert_eq!(parse.end, End::Clean);
        let bodies: Vec<_> = parse.answers.iter().map(|a| a.body).collect();
        assert_eq!(bodies, [Body::Length(3), Body::Chunked, Body::UntilClose]);
        assert_eq!(parse.answers[0].interims.len(), 1);
        assert_eq!(parse.answers[1].payload, b"abcd");
        assert_eq!(parse.answers[2].payload, b"rest");
        assert!(!parse.answers[2].reusable);
    }

    #[test]
    fn doubtful_answers_are_refused() {
        for input in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 600 OK\r\n\r\n",
            b"HTTP/1.1 200\tOK\r\n\r\n",
        ] {
            assert!(
                matches!(ends(input, &[GET], false), (0, End::Reject(_))),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn answers_need_their_requests() {
        let input = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(matches!(ends(input, &[], false), (0, End::Reject(_))));
        assert_eq!(ends(input, &[GET], false), (1, End::Clean));
        assert!(matches!(
            ends(input, &[GET, GET], true),
            (1, End::Reject(_))
        ));
        assert_eq!(ends(b"HTTP/1.1 204", &[], false), (0, End::IncompleteHead));
    }
}
