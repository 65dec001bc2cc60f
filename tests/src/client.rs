//! A keep-alive HTTP/1.1 client for the pods: requests built as exact bytes, responses read one
//! at a time off the connection with their raw bytes, so they can be compared with
//! [`crate::primary::expected_response`] byte for byte.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::node::Pod;
use crate::primary;
use crate::wire::{self, Reader, Response};

/// A request, kept as the bytes it puts on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    body: Vec<u8>,
    payload: Vec<u8>,
}

impl Request {
    /// `method target HTTP/1.1` with no fields yet.
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// `GET target` with `Host: host`.
    pub fn get(host: &str, target: &str) -> Request {
        Request::new("GET", target).header("Host", host)
    }

    /// `POST target` with `Host: host` and a `Content-Length` body.
    pub fn post(host: &str, target: &str, body: &[u8]) -> Request {
        Request::new("POST", target).header("Host", host).body(body)
    }

    /// Appends a field.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Appends `Content-Length` and sets the body.
    pub fn body(mut self, body: &[u8]) -> Request {
        self = self.header("Content-Length", &body.len().to_string());
        self.body = body.to_vec();
        self.payload = body.to_vec();
        self
    }

    /// Appends `Transfer-Encoding: chunked` and a body of `chunks` (data and extension, e.g.
    /// `";name=value"` or `""`), then the last chunk and `trailers`.
    pub fn chunked(mut self, chunks: &[(&[u8], &str)], trailers: &[(&str, &str)]) -> Request {
        self = self.header("Transfer-Encoding", "chunked");
        let mut body = Vec::new();
        let mut payload = Vec::new();
        for (data, extension) in chunks {
            body.extend_from_slice(format!("{:x}{extension}\r\n", data.len()).as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
            payload.extend_from_slice(data);
        }
        body.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            body.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        self.body = body;
        self.payload = payload;
        self
    }

    /// The head's bytes.
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// The body as on the wire (chunked framing included).
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body's payload (de-chunked).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Head and body.
    pub fn to_bytes(&self) -> Vec<u8> {
        [self.head_bytes(), self.body.clone()].concat()
    }

    /// The first field of that name (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        wire::header(&self.headers, name)
    }

    /// Whether the request asks to close the connection.
    pub fn closes(&self) -> bool {
        self.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && value
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
    }

    /// What the recording primary answers to it.
    pub fn expected_response(&self) -> Vec<u8> {
        primary::expected_response(&self.method, &self.target, &self.payload, self.closes())
    }
}

/// A client connection from a pod.
pub struct Client {
    reader: Reader<TcpStream>,
}

impl Client {
    /// Connects from `pod` to `destination`.
    pub fn connect(pod: &Pod, destination: SocketAddr) -> Result<Client> {
        Ok(Client::from_stream(pod.connect(destination)?))
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        Client {
            reader: Reader::new(stream),
        }
    }

    /// The socket (to write raw bytes, shut down, set timeouts).
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    /// Bytes received after the last response read (e.g. after a `101`), consumed.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.reader.take_buffered()
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream()
            .write_all(bytes)
            .context("writing to the connection")
    }

    /// Reads the next response (to a request with `method`).
    pub fn read_response(&mut self, method: &str) -> Result<Response> {
        wire::read_response(&mut self.reader, method)
            .with_context(|| format!("reading the response to a {method}"))
    }

    /// Sends `request` and reads its final response; with `Expect: 100-continue` the body goes
    /// only after `100 Continue` arrived, and the interim response is prepended to the returned
    /// raw bytes. Returns the response bytes and how long the exchange took.
    pub fn exchange(&mut self, request: &Request) -> Result<(Vec<u8>, Duration)> {
        let started = Instant::now();
        let expects_continue = request
            .header_value("expect")
            .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
        let mut raw = Vec::new();
        if expects_continue {
            self.send(&request.head_bytes())?;
            let interim = self.read_response(&request.method)?;
            if interim.status() != 100 {
                bail!("expected 100 Continue, got {:?}", interim.head.start);
            }
            raw.extend_from_slice(&interim.raw());
            self.send(request.body_bytes())?;
        } else {
            self.send(&request.to_bytes())?;
        }
        let response = self.read_response(&request.method)?;
        raw.extend_from_slice(&response.raw());
        Ok((raw, started.elapsed()))
    }

    /// [`Client::exchange`], then checks the bytes against the primary's deterministic answer.
    pub fn exchange_checked(&mut self, request: &Request) -> Result<Duration> {
        let (raw, took) = self.exchange(request)?;
        let mut expected = Vec::new();
        if request
            .header_value("expect")
            .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"))
        {
            expected.extend_from_slice(primary::CONTINUE_RESPONSE);
        }
        expected.extend_from_slice(&request.expected_response());
        if raw != expected {
            bail!(
                "{} {}: the response differs from the primary's at byte {:?}:\n got      {:?}\n expected {:?}",
                request.method,
                request.target,
                crate::tcp::first_difference(&raw, &expected),
                String::from_utf8_lossy(&raw),
                String::from_utf8_lossy(&expected)
            );
        }
        Ok(took)
    }
}
