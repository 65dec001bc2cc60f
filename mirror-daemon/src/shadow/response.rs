//! Reading a shadow's response and throwing it away, to its exact end (RFC 9112 section 6.3).
//!
//! Interim 1xx responses (100 Continue, 103 Early Hints) are skipped, at most
//! [`MAX_INTERIM`] of them (a shadow that sends more is broken, and each costs a parse); the
//! final response's body
//! is drained by its framing: none (HEAD, 1xx, 204, 304), chunked, Content-Length, or until the
//! shadow closes. Memory is fixed: the head may use up to [`MAX_HEAD_BYTES`], the body is read
//! through one reused buffer. The answer says whether the connection can carry another copy.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    chunked::ChunkedDrain,
    error::{Failure, Phase, ProtocolError},
};

/// A response head beyond this is a protocol error.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Interim (1xx) heads before the final one, at most: servers send one or two (100 Continue,
/// 103 Early Hints); a shadow sending them without end would keep a copy's connection, and the
/// daemon's CPU, busy until the request timeout.
pub(super) const MAX_INTERIM: usize = 16;
const READ_CHUNK: usize = 16 * 1024;

/// The final response, read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Response {
    pub status: u16,
    /// The shadow keeps the connection open for another request (and, from
    /// [`read_response`], nothing more is pending on it).
    pub reusable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    status: u16,
    body: Body,
    keep_alive: bool,
}

/// What a comparison keeps of an answer while it is read (see `super::capture`); copies whose
/// answers are not compared have none and pay nothing for it.
pub(super) trait AnswerCapture {
    /// A head was parsed (interim heads too: the final one comes last).
    fn head(&mut self, status: u16);
    /// A field of the head just announced.
    fn field(&mut self, name: &str, value: &[u8]);
    /// Payload bytes of the final answer, in order.
    fn data(&mut self, data: &[u8]);
}

/// The capture again, for one more call (shortening the trait object's lifetime, which
/// `as_deref_mut` cannot).
fn reborrow<'a>(
    capture: &'a mut Option<&mut (dyn AnswerCapture + Send)>,
) -> Option<&'a mut (dyn AnswerCapture + Send)> {
    match capture {
        Some(capture) => Some(&mut **capture),
        None => None,
    }
}

/// Reads the final response to `is_head` (a HEAD request or not) and drains its body. The
/// connection is reusable only if nothing follows the response.
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "the entry point of the shadow_response fuzz target, which compiles this file as \
                  its own module (where it is used: `expect` would warn there)"
    )
)]
pub(super) async fn read_response<R: AsyncRead + Unpin>(
    io: &mut R,
    is_head: bool,
) -> Result<Response, Failure> {
    read_response_capturing(io, is_head, None).await
}

/// [`read_response`], keeping what a comparison needs of the answer in `capture`.
pub(super) async fn read_response_capturing<R: AsyncRead + Unpin>(
    io: &mut R,
    is_head: bool,
    capture: Option<&mut (dyn AnswerCapture + Send)>,
) -> Result<Response, Failure> {
    let mut buf = BytesMut::new();
    let response = read_next_response(io, &mut buf, is_head, capture).await?;
    Ok(Response {
        reusable: response.reusable && buf.is_empty(),
        ..response
    })
}

/// Reads the next final response of a connection whose bytes read so far and not yet used are in
/// `buf` (answers to pipelined copies follow each other there), and drains its body. Leaves in
/// `buf` whatever follows the response. `reusable` says whether the shadow keeps the connection
/// open after this response. With `capture`, what a comparison needs of the final answer is
/// kept there (the copies that are not compared pay nothing for it).
pub(super) async fn read_next_response<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    is_head: bool,
    mut capture: Option<&mut (dyn AnswerCapture + Send)>,
) -> Result<Response, Failure> {
    let mut interim = 0;
    let head = loop {
        let head = read_head(io, buf, is_head, reborrow(&mut capture)).await?;
        if head.status >= 200 || head.status == 101 {
            break head;
        }
        interim += 1;
        if interim > MAX_INTERIM {
            return Err(Failure::Protocol(ProtocolError::TooManyInterim(
                MAX_INTERIM,
            )));
        }
    };
    drain_body(io, buf, head.body, capture).await?;
    Ok(Response {
        status: head.status,
        reusable: head.keep_alive,
    })
}

async fn read_head<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    is_head: bool,
    mut capture: Option<&mut (dyn AnswerCapture + Send)>,
) -> Result<Head, Failure> {
    // Parsed only once the bytes hold an end of head: re-parsing after every read would cost
    // quadratic CPU on a head trickled a byte at a time (a remote shadow could do that).
    let mut scanned: usize = 0;
    // httparse skips empty lines before a head, so a blank line among them ends nothing: the
    // end is looked for from the head's first byte only. (Fuzz finding 5: a parse triggered by
    // such a blank line saw more or fewer bytes depending on how they were split into reads.)
    let mut head_start = None;
    loop {
        if head_start.is_none() {
            head_start = buf[scanned..]
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .map(|i| scanned + i);
        }
        // The new bytes, with 3 before them: a CRLF CRLF may straddle two reads.
        let ended = head_start
            .is_some_and(|start| has_end_of_head(&buf[scanned.saturating_sub(3).max(start)..]));
        scanned = buf.len();
        if ended {
            if let Some((length, head)) =
                parse_head(buf, is_head, reborrow(&mut capture)).map_err(Failure::Protocol)?
            {
                buf.advance(length);
                return Ok(head);
            }
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(Failure::Protocol(ProtocolError::HeadTooLarge(
                MAX_HEAD_BYTES,
            )));
        }
        if read_more(io, buf, Phase::ReadingHead).await? == 0 {
            return Err(Failure::Closed(Phase::ReadingHead));
        }
    }
}

/// Whether `bytes` contain the blank line that ends a head (CRLF CRLF, or bare LF LF), looked
/// for in one pass that stops at the first: with the rest of a read after the head in `bytes`,
/// a search for CRLF CRLF through all of it before looking for LF LF cost time quadratic in the
/// number of heads in a read (fuzz finding 6: a shadow sending thousands of `1xx` heads ended
/// by bare LF LF).
fn has_end_of_head(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &byte)| {
        byte == b'\n' && (bytes[..i].ends_with(b"\n") || bytes[..i].ends_with(b"\r\n\r"))
    })
}

async fn drain_body<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    body: Body,
    mut capture: Option<&mut (dyn AnswerCapture + Send)>,
) -> Result<(), Failure> {
    match body {
        Body::None => Ok(()),
        Body::Length(mut left) => loop {
            let skip = left.min(buf.len() as u64);
            if let Some(capture) = reborrow(&mut capture) {
                capture.data(&buf[..skip as usize]);
            }
            buf.advance(skip as usize);
            left -= skip;
            if left == 0 {
                return Ok(());
            }
            if read_more(io, buf, Phase::ReadingBody).await? == 0 {
                return Err(Failure::Closed(Phase::ReadingBody));
            }
        },
        Body::Chunked => {
            let mut chunked = ChunkedDrain::default();
            loop {
                let (consumed, done) = match reborrow(&mut capture) {
                    Some(capture) => {
                        chunked.advance_reporting_data(buf, |data| capture.data(&buf[data]))
                    }
                    None => chunked.advance(buf),
                }
                .map_err(Failure::Protocol)?;
                buf.advance(consumed);
                if done {
                    return Ok(());
                }
                if read_more(io, buf, Phase::ReadingBody).await? == 0 {
                    return Err(Failure::Closed(Phase::ReadingBody));
                }
            }
        }
        Body::UntilClose => loop {
            if let Some(capture) = reborrow(&mut capture) {
                capture.data(buf);
            }
            buf.clear();
            if read_more(io, buf, Phase::ReadingBody).await? == 0 {
                return Ok(());
            }
        },
    }
}

async fn read_more<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    phase: Phase,
) -> Result<usize, Failure> {
    if buf.is_empty() {
        // Whatever was read before is consumed: reuse the space from the start.
        buf.clear();
    }
    buf.reserve(READ_CHUNK);
    io.read_buf(buf)
        .await
        .map_err(|source| Failure::Io { phase, source })
}

/// The head at the start of `buf` and its length, or `None` while it is incomplete.
fn parse_head(
    buf: &[u8],
    is_head: bool,
    capture: Option<&mut (dyn AnswerCapture + Send)>,
) -> Result<Option<(usize, Head)>, ProtocolError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response(&mut response, buf)
    {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ProtocolError::Head(e)),
    };
    // A complete parse always has a version and a three-digit code, though not a valid one.
    let status = response.code.unwrap_or_default();
    if !(100..=599).contains(&status) {
        return Err(ProtocolError::Status(status));
    }
    let http_1_1 = response.version == Some(1);
    if let Some(capture) = capture {
        capture.head(status);
        for header in response.headers.iter() {
            capture.field(header.name, header.value);
        }
    }

    let mut close = false;
    let mut keep_alive = false;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut content_length = None;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in tokens(header.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Chunked counts only as the last coding applied.
            if let Some(last) = tokens(header.value).last() {
                chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            for value in header.value.split(|b| *b == b',') {
                let length = parse_length(value.trim_ascii())?;
                if content_length.is_some_and(|l| l != length) {
                    return Err(ProtocolError::ContentLength);
                }
                content_length = Some(length);
            }
        }
    }

    let body = if is_head || status < 200 || status == 204 || status == 304 {
        Body::None
    } else if transfer_encoding {
        if chunked {
            Body::Chunked
        } else {
            Body::UntilClose
        }
    } else {
        content_length.map_or(Body::UntilClose, Body::Length)
    };
    // HTTP/1.1 keeps connections open unless told otherwise; HTTP/1.0 only when asked to.
    let keep_alive = !close
        && (http_1_1 || keep_alive)
        && status != 101
        && body != Body::UntilClose
        // Both framings at once smell of smuggling; RFC 9112 6.3 says close afterwards.
        && !(transfer_encoding && content_length.is_some());
    Ok(Some((
        length,
        Head {
            status,
            body,
            keep_alive,
        },
    )))
}

/// The comma-separated tokens of a header value, trimmed, empty ones left out.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn parse_length(digits: &[u8]) -> Result<u64, ProtocolError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ProtocolError::ContentLength);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(ProtocolError::ContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one response from `wire` (as a non-HEAD request's answer, unless `is_head`) in
    /// 3-byte pieces; returns it and the bytes left unread.
    async fn read(wire: &[u8], is_head: bool) -> (Result<Response, Failure>, usize) {
        let mut io = Pieces {
            wire: wire.to_vec(),
            at: 0,
        };
        let response = read_response(&mut io, is_head).await;
        (response, io.left())
    }

    /// Hands out `wire` a few bytes per read, then EOF.
    struct Pieces {
        wire: Vec<u8>,
        at: usize,
    }

    impl Pieces {
        fn left(&self) -> usize {
            self.wire.len() - self.at
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let end = (self.at + 3).min(self.wire.len());
            buf.put_slice(&self.wire[self.at..end]);
            self.at = end;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn ok(status: u16, reusable: bool) -> Response {
        Response { status, reusable }
    }

    #[tokio::test]
    async fn every_body_framing_is_read_to_its_end() {
        let cases: [(&str, &[u8], bool, Response); 9] = [
            (
                "content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                false,
                ok(200, true),
            ),
            (
                "chunked with trailers",
                b"HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
                false,
                ok(201, true),
            ),
            (
                "until close",
                b"HTTP/1.1 200 OK\r\n\r\nall of this until EOF",
                false,
                ok(200, false),
            ),
            (
                "HEAD",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
                true,
                ok(200, true),
            ),
            ("204", b"HTTP/1.1 204 No Content\r\n\r\n", false, ok(204, true)),
            (
                "304",
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
                false,
                ok(304, true),
            ),
            (
                "interim responses",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
                false,
                ok(404, true),
            ),
            (
                "HTTP/1.0 keep-alive",
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
                false,
                ok(200, true),
            ),
            (
                "unknown coding",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nbytes until close",
                false,
                ok(200, false),
            ),
        ];
        for (name, wire, is_head, expected) in cases {
            let (response, left) = read(wire, is_head).await;
            assert_eq!(response.ok(), Some(expected), "{name}");
            assert_eq!(left, 0, "{name}: all of the response was read");
        }
    }

    #[tokio::test]
    async fn connection_close_and_plain_http_1_0_are_not_reused() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        ] {
            let (response, _) = read(wire, false).await;
            let response = response.expect("a valid response");
            assert!(!response.reusable, "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[tokio::test]
    async fn bytes_after_the_response_make_the_connection_unusable() {
        let (response, _) = read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
            false,
        )
        .await;
        assert_eq!(response.ok(), Some(ok(200, false)));
    }

    #[tokio::test]
    async fn malformed_and_truncated_responses_fail() {
        let cases: [(&[u8], &str); 7] = [
            (b"HTTP/1.1 abc\r\n\r\n", "malformed response"),
            (
                b"HTTP/1.1 099 Nothing\r\n\r\n",
                "malformed response: status 099 is not 100 to 599",
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed response"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n",
                "malformed response: invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "malformed response: invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "connection closed by the shadow while reading the response body",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-",
                "connection closed by the shadow while reading the response head",
            ),
        ];
        for (wire, message) in cases {
            let (response, _) = read(wire, false).await;
            let error = response.expect_err("not a complete response");
            assert!(error.to_string().starts_with(message), "{error}");
        }
    }

    /// Fuzz finding 5 (found by `shadow_response`; inputs `\n\n\r\nHTTP/1.1 2 \n00 OK\r\n`
    /// and `HTTP/1.1 100 \n\n\n\n...`): a blank line among the empty lines before a head made
    /// the reader parse early, so a malformed head read whole failed as malformed, and read in
    /// pieces as closed. Both must be read alike.
    #[tokio::test]
    async fn empty_lines_before_a_head_end_nothing_however_split() {
        for wire in [
            &b"\n\n\r\nHTTP/1.1 2 \n00 OK\r\n"[..],
            b"HTTP/1.1 100 \n\n\n\n\n\n\n\nHTTP/1.1 200 OK\r\nX\x00: y",
            b"\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        ] {
            let mut whole = Whole(Some(wire));
            let whole = read_response(&mut whole, false).await;
            let (pieces, _) = read(wire, false).await;
            assert_eq!(
                format!("{whole:?}"),
                format!("{pieces:?}"),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    /// Fuzz finding 6 (found by `shadow_response` as a slow input: interim heads ended by bare
    /// LF LF, repeated for 320 KiB): each head made the reader search the rest of the read for
    /// CRLF CRLF before finding its LF LF. The speed is the fuzz target's to watch (libFuzzer
    /// reports inputs slower than 10 s); this checks that such a stream still reads right, up
    /// to the most interim heads a shadow may send.
    #[tokio::test]
    async fn many_interim_heads_in_one_read_are_each_skipped() {
        let mut wire = b"HTTP/1.1 100 Continue\n\n".repeat(MAX_INTERIM);
        wire.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        let (response, left) = read(&wire, false).await;
        assert_eq!((response.ok(), left), (Some(ok(204, true)), 0));
    }

    /// A shadow sending interim heads without end is cut off at the first one too many, not
    /// parsed until the request timeout.
    #[tokio::test]
    async fn more_interim_heads_than_the_bound_are_a_protocol_error() {
        let mut wire = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n".repeat(MAX_INTERIM + 1);
        wire.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        let (response, _) = read(&wire, false).await;
        assert_eq!(
            response.err().map(|e| e.to_string()),
            Some(format!(
                "malformed response: more than {MAX_INTERIM} interim (1xx) responses before the final one"
            ))
        );
    }

    #[test]
    fn the_end_of_a_head_is_either_blank_line() {
        for (bytes, ended) in [
            (&b"a\r\n\r\nb"[..], true),
            (b"a\n\nb", true),
            (b"\n\n", true),
            (b"\r\n\r\n", true),
            (b"a\r\n\nb", true),
            (b"a\r\n\r", false),
            (b"a\n\r\n", false),
            (b"a\r\r\n", false),
            (b"", false),
            (b"\n", false),
        ] {
            assert_eq!(has_end_of_head(bytes), ended, "{bytes:?}");
        }
    }

    /// Hands out the wire in one read, then EOF.
    struct Whole<'a>(Option<&'a [u8]>);

    impl AsyncRead for Whole<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(wire) = self.0.take() {
                buf.put_slice(wire);
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn an_endless_head_is_cut_off() {
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        while wire.len() <= MAX_HEAD_BYTES {
            wire.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let (response, _) = read(&wire, false).await;
        assert!(
            matches!(response, Err(Failure::Protocol(_))),
            "{response:?}"
        );
    }

    /// Records what a capture is told.
    #[derive(Debug, Default)]
    struct Recorded {
        statuses: Vec<u16>,
        fields: Vec<String>,
        body: Vec<u8>,
    }

    impl AnswerCapture for Recorded {
        fn head(&mut self, status: u16) {
            self.statuses.push(status);
            self.fields.clear();
        }

        fn field(&mut self, name: &str, _: &[u8]) {
            self.fields.push(name.to_string());
        }

        fn data(&mut self, data: &[u8]) {
            self.body.extend_from_slice(data);
        }
    }

    #[tokio::test]
    async fn a_captured_answer_gives_its_payload_in_every_framing() {
        let cases: [(&[u8], bool, &[u8]); 5] = [
            (
                b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                false,
                b"hello",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
                false,
                b"hello world",
            ),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end", false, b"to the end"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, b""),
            (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, b""),
        ];
        for (wire, is_head, payload) in cases {
            // Three bytes a read: heads, sizes and data straddle reads everywhere.
            let mut io = Pieces {
                wire: wire.to_vec(),
                at: 0,
            };
            let mut recorded = Recorded::default();
            let mut buf = BytesMut::new();
            let response = read_next_response(&mut io, &mut buf, is_head, Some(&mut recorded))
                .await
                .expect("answer");
            assert_eq!(recorded.body, payload, "{}", String::from_utf8_lossy(wire));
            assert_eq!(recorded.statuses.last(), Some(&response.status));
            assert!(
                !recorded.fields.iter().any(|f| f == "X-Interim"),
                "an interim head's fields are not the answer's"
            );
        }
    }
}
