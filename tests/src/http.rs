//! Just enough HTTP/1.x for the tests: a GET client (admin endpoint, demo) and a request-head
//! reader for the fake primary.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use anyhow::{bail, Context, Result};

/// Largest request head or response the helpers accept.
const MAX_MESSAGE: usize = 4 << 20;

/// A parsed response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `GET path` as HTTP/1.0 with `Connection: close` and reads the response to EOF.
///
/// HTTP/1.0 keeps servers from answering with chunked encoding; chunked bodies are decoded anyway.
pub fn get(stream: &mut TcpStream, host: &str, path: &str) -> Result<Response> {
    let request = format!("GET {path} HTTP/1.0\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .take(MAX_MESSAGE as u64)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response to GET {path}"))?;
    parse_response(&raw)
}

/// Parses a complete response (head and body up to the connection's end).
pub fn parse_response(raw: &[u8]) -> Result<Response> {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        bail!(
            "response without a complete head: {:?}",
            String::from_utf8_lossy(raw)
        );
    };
    let head = std::str::from_utf8(&raw[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        bail!("bad status line {status_line:?}");
    };
    if !version.starts_with("HTTP/1.") {
        bail!("bad status line {status_line:?}");
    }
    let status = status
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = Response {
        status,
        headers,
        body: raw[head_end + 4..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body)?;
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().context("bad content-length")?;
        if response.body.len() < length {
            bail!(
                "body has {} of {length} bytes (content-length)",
                response.body.len()
            );
        }
        response.body.truncate(length);
    }
    Ok(response)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            bail!("truncated chunked body");
        };
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            bail!("truncated chunk");
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Reads a request head (up to the blank line) and returns it; the body, if any, is left unread.
pub fn read_request_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(head)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body_is_parsed() -> Result<()> {
        let response =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello")?;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x"), Some("y"));
        assert_eq!(response.text(), "hello");
        Ok(())
    }

    #[test]
    fn chunked_body_is_decoded() -> Result<()> {
        let response = parse_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=1\r\n!!!\r\n0\r\n\r\n",
        )?;
        assert_eq!(response.text(), "hello!!!");
        Ok(())
    }

    #[test]
    fn close_delimited_body_is_everything_after_the_head() -> Result<()> {
        let response = parse_response(b"HTTP/1.0 503 Service Unavailable\r\n\r\nnot ready")?;
        assert_eq!(response.status, 503);
        assert_eq!(response.text(), "not ready");
        Ok(())
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(parse_response(b"hello").is_err());
        assert!(parse_response(b"SSH-2.0 x\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
    }
}
