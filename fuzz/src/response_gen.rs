//! A structure-aware generator for `response_framer_differential`: pipelines of mostly valid
//! answers to announced requests (HEAD, CONNECT, Upgrade, closing ones among them), with interim
//! heads, statuses that have no body or switch protocols, framing fields in the spellings that
//! matter, Content-Length, chunked (extensions, trailers) and close-delimited bodies, then
//! mutated at a few byte positions. It reuses the request generator's fields, bodies and
//! mutations (`gen`), so both targets cover the same framing variants.

use arbitrary::Arbitrary;
use mirror_daemon::http::{response::Expected, FramingLimits};

use crate::{
    answers::{request_of, Setup},
    gen::{apply, Body, Field, Mutation, Name, Value, Whitespace},
};

/// One input of `response_framer_differential`.
#[derive(Debug, Arbitrary)]
pub struct Case {
    pub answers: Vec<Answer>,
    /// Raw bytes after the last answer.
    pub trailing: Vec<u8>,
    pub mutations: Vec<Mutation>,
    /// Requests announced beyond the answers (`% 3`), or, when negative, fewer than answers.
    pub extra_requests: i8,
    /// The request stream goes opaque after the announced requests.
    pub opaque: bool,
    /// The primary closes after the stream.
    pub eof: bool,
    /// Chunk lengths for feeding the stream (see `input::chunks`).
    pub schedule: Vec<u8>,
    /// `max_header_bytes = 128 + 4 * .0`, `max_headers = 1 + .1 % 16`; default limits if `None`.
    pub small_limits: Option<(u8, u8)>,
}

#[derive(Debug, Arbitrary)]
pub struct Answer {
    /// The request answered: bit 0 HEAD, bit 1 CONNECT, bit 2 Upgrade, bit 3 it closes; mostly
    /// plain (the bits count only with bit 7 set).
    pub request: u8,
    pub interims: Vec<Interim>,
    pub version: Version,
    pub status: Status,
    pub reason: Reason,
    pub fields: Vec<Field>,
    pub body: Body,
    /// Add the field that frames `body` (Content-Length or Transfer-Encoding: chunked).
    pub framed: bool,
}

#[derive(Debug, Arbitrary)]
pub struct Interim {
    pub status: u8,
    pub fields: Vec<(Name, Vec<u8>)>,
}

#[derive(Debug, Arbitrary)]
pub enum Version {
    Http11,
    Http10,
    Other(u8, u8),
}

#[derive(Debug, Arbitrary)]
pub enum Status {
    Ok,
    Created,
    NoContent,
    NotModified,
    NotFound,
    ServerError,
    SwitchingProtocols,
    Continue,
    Other(u16),
}

#[derive(Debug, Arbitrary)]
pub enum Reason {
    Text,
    Empty,
    /// No space after the code.
    None,
    ObsText,
    Raw(Vec<u8>),
}

impl Case {
    /// The stream: every answer written out, the trailing bytes, then the mutations applied.
    pub fn stream(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for answer in &self.answers {
            answer.write(&mut out);
        }
        out.extend_from_slice(&self.trailing);
        apply(&self.mutations, &mut out);
        out
    }

    /// The requests announced and the rest of the framer's setup.
    pub fn setup(&self) -> Setup {
        let mut requests: Vec<Expected> = self
            .answers
            .iter()
            .map(|answer| {
                if answer.request & 0x80 != 0 {
                    request_of(answer.request)
                } else {
                    Expected::plain()
                }
            })
            .collect();
        let extra = usize::from(self.extra_requests.unsigned_abs() % 3);
        if self.extra_requests >= 0 {
            requests.extend(std::iter::repeat_n(Expected::plain(), extra));
        } else {
            requests.truncate(requests.len().saturating_sub(extra));
        }
        Setup {
            limits: self
                .small_limits
                .map_or(FramingLimits::default(), |(bytes, fields)| FramingLimits {
                    max_header_bytes: 128 + 4 * usize::from(bytes),
                    max_headers: 1 + usize::from(fields % 16),
                }),
            requests,
            opaque: self.opaque,
            eof: self.eof,
        }
    }
}

impl Answer {
    fn write(&self, out: &mut Vec<u8>) {
        for interim in &self.interims {
            let status = 100 + u16::from(interim.status % 4);
            let status = if status == 101 { 103 } else { status };
            out.extend_from_slice(format!("HTTP/1.1 {status} Interim\r\n").as_bytes());
            for (name, value) in &interim.fields {
                out.extend_from_slice(name.text().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        let body = self.body.bytes();
        let version = match self.version {
            Version::Http11 => "HTTP/1.1".to_owned(),
            Version::Http10 => "HTTP/1.0".to_owned(),
            Version::Other(major, minor) => format!("HTTP/{}.{}", major % 10, minor % 10),
        };
        let status = match self.status {
            Status::Ok => 200,
            Status::Created => 201,
            Status::NoContent => 204,
            Status::NotModified => 304,
            Status::NotFound => 404,
            Status::ServerError => 503,
            Status::SwitchingProtocols => 101,
            Status::Continue => 100,
            Status::Other(code) => code % 1000,
        };
        out.extend_from_slice(format!("{version} {status:03}").as_bytes());
        match &self.reason {
            Reason::Text => out.extend_from_slice(b" OK"),
            Reason::Empty => out.push(b' '),
            Reason::None => {}
            Reason::ObsText => out.extend_from_slice(b" Caf\xc3\xa9\tok"),
            Reason::Raw(raw) => {
                out.push(b' ');
                out.extend_from_slice(raw);
            }
        }
        out.extend_from_slice(b"\r\n");
        let framing = match (&self.body, self.framed) {
            (_, false) => None,
            (Body::Chunked(_), true) => Some(Field {
                name: Name::TransferEncoding,
                value: Value::Chunked(0),
                before: Whitespace::Space,
                after: Whitespace::None,
            }),
            (_, true) => Some(Field {
                name: Name::ContentLength,
                value: Value::Length,
                before: Whitespace::Space,
                after: Whitespace::None,
            }),
        };
        for field in self.fields.iter().chain(&framing) {
            field.write(body.len(), out);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
    }
}
