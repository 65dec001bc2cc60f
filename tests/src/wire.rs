//! HTTP/1.1 messages as bytes on a wire: a buffered reader that takes one request or response at a
//! time off a keep-alive (or pipelined) stream and keeps every byte it consumed, so tests can
//! compare what was sent with what arrived byte for byte.
//!
//! Used by the recording servers ([`crate::recording`]) and the keep-alive client
//! ([`crate::client`]). Deliberately small and strict: heads must use CRLF, bodies are framed by
//! `Content-Length` or `Transfer-Encoding: chunked` (extensions and trailers allowed), responses
//! without either run to the end of the stream.

use std::io::{self, Read};

/// Largest head (request or response) the reader accepts.
pub const MAX_HEAD: usize = 256 * 1024;

/// A parsed request or response head; names keep their case, fields their order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The head exactly as received, first line to the blank line inclusive.
    pub raw: Vec<u8>,
    /// Request: method, target, version. Response: version, status code, reason.
    pub start: [String; 3],
    /// Fields in order, values without surrounding whitespace.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a complete head (ending in CRLF CRLF).
    pub fn parse(raw: &[u8]) -> io::Result<Head> {
        let text = std::str::from_utf8(raw).map_err(|_| invalid("head is not UTF-8"))?;
        let text = text
            .strip_suffix("\r\n\r\n")
            .ok_or_else(|| invalid("head does not end in CRLF CRLF"))?;
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let mut parts = first.splitn(3, ' ');
        let start = [
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        ];
        if start[0].is_empty() || start[1].is_empty() {
            return Err(invalid(&format!("bad first line {first:?}")));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
            if name.is_empty() || name.ends_with([' ', '\t']) {
                return Err(invalid(&format!("bad header name in {line:?}")));
            }
            headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
        }
        Ok(Head {
            raw: raw.to_vec(),
            start,
            headers,
        })
    }

    /// The first field of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether a comma-separated field (`Connection`, `Transfer-Encoding`) lists `token`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    /// How the body that follows is framed (for a request; responses use [`Head::response_body`]).
    pub fn request_body(&self) -> io::Result<Framing> {
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Framing::Chunked);
        }
        match self.header("content-length") {
            Some(length) => {
                Ok(Framing::Length(length.parse().map_err(|_| {
                    invalid(&format!("bad content-length {length:?}"))
                })?))
            }
            None => Ok(Framing::Length(0)),
        }
    }

    /// How the body of a response to a request with `method` is framed.
    pub fn response_body(&self, method: &str) -> io::Result<Framing> {
        let status = self.status();
        if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Ok(Framing::Length(0));
        }
        if self.has_token("transfer-encoding", "chunked") {
            return Ok(Framing::Chunked);
        }
        match self.header("content-length") {
            Some(length) => {
                Ok(Framing::Length(length.parse().map_err(|_| {
                    invalid(&format!("bad content-length {length:?}"))
                })?))
            }
            None => Ok(Framing::UntilEof),
        }
    }

    /// A response's status code (0 if the first line is not a response's).
    pub fn status(&self) -> u16 {
        self.start[1].parse().unwrap_or(0)
    }
}

/// The first field of that name (case-insensitive) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilEof,
}

/// A body as read: the wire bytes and the payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    /// Exactly as on the wire (for chunked: size lines, extensions, CRLFs and trailers included).
    pub raw: Vec<u8>,
    /// The payload (de-chunked).
    pub data: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

/// A buffered reader over one direction of a connection.
pub struct Reader<S> {
    stream: S,
    buffer: Vec<u8>,
    start: usize,
}

impl<S: Read> Reader<S> {
    pub fn new(stream: S) -> Self {
        Reader {
            stream,
            buffer: Vec::new(),
            start: 0,
        }
    }

    /// The underlying stream (to write on it, when it is a socket).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// Consumes and returns the buffered bytes.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buffer[self.start..].to_vec();
        self.buffer.clear();
        self.start = 0;
        rest
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > 1 << 20 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(read) => {
                    self.buffer.extend_from_slice(&chunk[..read]);
                    return Ok(read);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Reads a head. `Ok(None)` when the stream ends cleanly before its first byte; the bytes
    /// of a head cut short are appended to `partial` before the error is returned.
    pub fn read_head(&mut self, partial: &mut Vec<u8>) -> io::Result<Option<Head>> {
        loop {
            let window = &self.buffer[self.start..];
            if let Some(at) = find(window, b"\r\n\r\n") {
                let end = self.start + at + 4;
                let raw = self.buffer[self.start..end].to_vec();
                self.start = end;
                return Head::parse(&raw).map(Some);
            }
            if window.len() > MAX_HEAD {
                return Err(invalid("head too large"));
            }
            if self.fill()? == 0 {
                if self.start == self.buffer.len() {
                    return Ok(None);
                }
                partial.extend_from_slice(&self.buffer[self.start..]);
                self.start = self.buffer.len();
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads a body of `framing` into `body` (which keeps what arrived if the stream breaks off).
    pub fn read_body(&mut self, framing: Framing, body: &mut Body) -> io::Result<()> {
        match framing {
            Framing::Length(length) => {
                let mut left = usize::try_from(length).map_err(|_| invalid("body too large"))?;
                body.raw.reserve(left.min(64 << 20));
                while left > 0 {
                    let taken = self.take_up_to(left, &mut body.raw)?;
                    left -= taken;
                }
                body.data.clone_from(&body.raw);
                Ok(())
            }
            Framing::UntilEof => {
                loop {
                    let available = self.buffer.len() - self.start;
                    if available > 0 {
                        self.take_up_to(available, &mut body.raw)?;
                    } else if self.fill()? == 0 {
                        break;
                    }
                }
                body.data.clone_from(&body.raw);
                Ok(())
            }
            Framing::Chunked => self.read_chunked(body),
        }
    }

    fn read_chunked(&mut self, body: &mut Body) -> io::Result<()> {
        loop {
            let line = self.read_line(&mut body.raw)?;
            let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
            let size_text = std::str::from_utf8(size_text)
                .map_err(|_| invalid("chunk size is not text"))?
                .trim_matches([' ', '\t']);
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(&format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                loop {
                    let trailer = self.read_line(&mut body.raw)?;
                    if trailer.is_empty() {
                        return Ok(());
                    }
                    let text = String::from_utf8_lossy(&trailer);
                    let (name, value) = text
                        .split_once(':')
                        .ok_or_else(|| invalid(&format!("bad trailer {text:?}")))?;
                    body.trailers
                        .push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
                }
            }
            let mut left = size;
            while left > 0 {
                let before = body.raw.len();
                let taken = self.take_up_to(left, &mut body.raw)?;
                body.data.extend_from_slice(&body.raw[before..]);
                left -= taken;
            }
            if !self.read_line(&mut body.raw)?.is_empty() {
                return Err(invalid("chunk data longer than its size"));
            }
        }
    }

    /// Reads one CRLF-terminated line, appending it (CRLF included) to `raw`; returns it without
    /// the CRLF.
    fn read_line(&mut self, raw: &mut Vec<u8>) -> io::Result<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buffer[self.start..], b"\r\n") {
                let end = self.start + at + 2;
                raw.extend_from_slice(&self.buffer[self.start..end]);
                let line = self.buffer[self.start..end - 2].to_vec();
                self.start = end;
                return Ok(line);
            }
            if self.buffer.len() - self.start > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                raw.extend_from_slice(&self.buffer[self.start..]);
                self.start = self.buffer.len();
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Moves up to `wanted` bytes (at least one) into `sink`, reading when the buffer is empty.
    fn take_up_to(&mut self, wanted: usize, sink: &mut Vec<u8>) -> io::Result<usize> {
        if self.start == self.buffer.len() && self.fill()? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let taken = wanted.min(self.buffer.len() - self.start);
        sink.extend_from_slice(&self.buffer[self.start..self.start + taken]);
        self.start += taken;
        Ok(taken)
    }
}

/// A response read off a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub head: Head,
    pub body: Body,
}

impl Response {
    /// Head and body exactly as received.
    pub fn raw(&self) -> Vec<u8> {
        [self.head.raw.as_slice(), &self.body.raw].concat()
    }

    pub fn status(&self) -> u16 {
        self.head.status()
    }
}

/// Reads one response to a request with `method` (an interim 1xx response is returned as such).
pub fn read_response<S: Read>(reader: &mut Reader<S>, method: &str) -> io::Result<Response> {
    let mut partial = Vec::new();
    let head = reader
        .read_head(&mut partial)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
    if !head.start[0].starts_with("HTTP/1.") || head.status() == 0 {
        return Err(invalid(&format!("not a response: {:?}", head.start)));
    }
    let mut body = Body::default();
    reader.read_body(head.response_body(method)?, &mut body)?;
    Ok(Response { head, body })
}

/// Decodes a complete chunked body (size lines, extensions and trailers allowed).
pub fn dechunk(raw: &[u8]) -> io::Result<Body> {
    let mut reader = Reader::new(raw);
    let mut body = Body::default();
    reader.read_body(Framing::Chunked, &mut body)?;
    if !reader.buffered().is_empty() {
        return Err(invalid("bytes after the chunked body"));
    }
    Ok(body)
}

/// 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3): a cheap, fixed digest
/// for comparing large bodies, and the function the daemon documents for consistent sampling.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, like a socket.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    const PIPELINE: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=\"q\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n";

    #[test]
    fn pipelined_requests_are_read_in_order_with_their_raw_bytes() -> io::Result<()> {
        for piece in [1, 3, 7, 4096] {
            let mut reader = Reader::new(Trickle(PIPELINE, piece));
            let mut seen = Vec::new();
            let mut partial = Vec::new();
            while let Some(head) = reader.read_head(&mut partial)? {
                let mut body = Body::default();
                reader.read_body(head.request_body()?, &mut body)?;
                seen.extend_from_slice(&head.raw);
                seen.extend_from_slice(&body.raw);
                if head.start[1] == "/c" {
                    assert_eq!(body.data, b"hello world");
                    assert_eq!(body.trailers, vec![("X-Sum".into(), "11".into())]);
                }
            }
            assert_eq!(seen, PIPELINE, "piece {piece}");
            assert!(partial.is_empty());
        }
        Ok(())
    }

    #[test]
    fn a_request_cut_short_keeps_what_arrived() -> io::Result<()> {
        let cut = b"POST /b HTTP/1.1\r\nContent-Length: 10\r\n\r\nhel";
        let mut reader = Reader::new(&cut[..]);
        let mut partial = Vec::new();
        let head = reader.read_head(&mut partial)?.expect("a head");
        let mut body = Body::default();
        let error = reader
            .read_body(head.request_body()?, &mut body)
            .expect_err("cut short");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(body.raw, b"hel");

        let mut reader = Reader::new(&b"GET / HTTP/1.1\r\nHo"[..]);
        assert!(reader.read_head(&mut partial).is_err());
        assert_eq!(partial, b"GET / HTTP/1.1\r\nHo");
        Ok(())
    }

    #[test]
    fn responses_are_framed_by_status_method_length_and_chunks() -> io::Result<()> {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
            HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n\
            HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
            HTTP/1.0 200 OK\r\n\r\nto the end";
        let mut reader = Reader::new(&wire[..]);
        assert_eq!(read_response(&mut reader, "POST")?.status(), 100);
        assert_eq!(read_response(&mut reader, "POST")?.body.data, b"ok");
        assert!(read_response(&mut reader, "HEAD")?.body.raw.is_empty());
        assert_eq!(read_response(&mut reader, "GET")?.body.data, b"hi");
        assert_eq!(read_response(&mut reader, "GET")?.body.data, b"to the end");
        Ok(())
    }

    #[test]
    fn heads_keep_field_order_and_case() -> io::Result<()> {
        let head = Head::parse(b"GET /x?y HTTP/1.1\r\nHost: a:80\r\nX-Case:  KeepMe \r\n\r\n")?;
        assert_eq!(head.start, ["GET", "/x?y", "HTTP/1.1"].map(String::from));
        assert_eq!(
            head.headers,
            vec![
                ("Host".to_owned(), "a:80".to_owned()),
                ("X-Case".to_owned(), "KeepMe".to_owned())
            ]
        );
        assert!(Head::parse(b"GET / HTTP/1.1\r\nBad Name : x\r\n\r\n").is_err());
        Ok(())
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
