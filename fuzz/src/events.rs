//! Framing a stream with the daemon's `RequestFramer`, chunk by chunk, while checking every
//! promise of the frame API; the result is in a normal form that does not depend on the cuts.

use mirror_daemon::http::{
    BodyKind, Frame, FramingLimits, RequestFramer, RequestHead, TunnelReason,
};

/// A frame with its body bytes copied out of the chunk and adjacent body pieces merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Head(Box<Head>),
    Body(Vec<u8>),
    End,
    Tunnel(TunnelReason),
}

/// What a [`RequestHead`] says, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub raw: Vec<u8>,
    pub method: String,
    pub target: String,
    pub version: u8,
    pub body: BodyKind,
    pub keeps_connection_open: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The head itself, for building copies.
    pub head: RequestHead,
}

impl Head {
    fn of(head: RequestHead) -> Self {
        Self {
            raw: head.raw().to_vec(),
            method: head.method().to_owned(),
            target: head.target().to_owned(),
            version: head.version(),
            body: head.body(),
            keeps_connection_open: head.keeps_connection_open(),
            headers: head
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_vec()))
                .collect(),
            head,
        }
    }
}

/// Where the frame grammar `(Head Body* End)* [Head Body*] [Tunnel]` is.
#[derive(Debug, Clone, Copy)]
enum Grammar {
    /// Between requests (or before the first); `closed` after one that closes the connection.
    Between {
        closed: bool,
    },
    /// Inside a request whose body is `body`, with `seen` body bytes so far.
    InRequest {
        body: BodyKind,
        seen: u64,
        keeps_connection_open: bool,
    },
    Tunnel,
}

/// Frames `chunks` in order with one framer and returns the normal form; panics when a frame
/// breaks the API's promises (see the checks below).
pub fn frame<'a>(limits: FramingLimits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Event> {
    let mut framer = RequestFramer::new(limits);
    let mut events: Vec<Event> = Vec::new();
    let mut out = Vec::new();
    let mut grammar = Grammar::Between { closed: false };
    for chunk in chunks {
        let tunnel_before = framer.is_tunnel();
        out.clear();
        framer.feed(chunk, &mut out);
        assert!(
            !tunnel_before || out.is_empty(),
            "frames after the tunnel: {out:?}"
        );
        let frames = out.len();
        let mut body_floor = 0;
        for (i, frame) in out.drain(..).enumerate() {
            grammar = step(grammar, &frame, limits);
            match frame {
                Frame::Head(head) => {
                    check_head(&head, limits);
                    events.push(Event::Head(Box::new(Head::of(head))));
                }
                Frame::Body(range) => {
                    assert!(
                        !range.is_empty() && range.start >= body_floor && range.end <= chunk.len(),
                        "body range {range:?} after {body_floor} in a chunk of {} bytes",
                        chunk.len()
                    );
                    body_floor = range.end;
                    if let Grammar::InRequest { seen, body, .. } = &mut grammar {
                        *seen += range.len() as u64;
                        if let BodyKind::ContentLength(length) = body {
                            assert!(*seen <= *length, "more body than Content-Length {length}");
                        }
                    }
                    match events.last_mut() {
                        Some(Event::Body(bytes)) => bytes.extend_from_slice(&chunk[range]),
                        _ => events.push(Event::Body(chunk[range].to_vec())),
                    }
                }
                Frame::End => events.push(Event::End),
                Frame::Tunnel(reason) => {
                    assert_eq!(i + 1, frames, "the tunnel must be the last frame");
                    assert_eq!(framer.tunnel_reason(), Some(reason));
                    events.push(Event::Tunnel(reason));
                }
            }
        }
        assert_eq!(
            framer.is_tunnel(),
            matches!(grammar, Grammar::Tunnel),
            "is_tunnel() disagrees with the frames"
        );
        // A request without a body ends in the same feed as its head.
        if let Grammar::InRequest { body, .. } = grammar {
            assert!(
                !matches!(body, BodyKind::None | BodyKind::ContentLength(0)),
                "a request without a body was left open: {events:?}"
            );
        }
    }
    events
}

/// The grammar after `frame`.
fn step(grammar: Grammar, frame: &Frame, limits: FramingLimits) -> Grammar {
    match (grammar, frame) {
        (Grammar::Tunnel, _) => panic!("{frame:?} after the tunnel"),
        (_, Frame::Tunnel(reason)) => {
            if let Grammar::Between { closed: true } = grammar {
                assert_eq!(*reason, TunnelReason::DataAfterClose);
            }
            Grammar::Tunnel
        }
        (Grammar::Between { closed: false }, Frame::Head(head)) => {
            assert!(head.raw().len() <= limits.max_header_bytes);
            Grammar::InRequest {
                body: head.body(),
                seen: 0,
                keeps_connection_open: head.keeps_connection_open(),
            }
        }
        (Grammar::Between { closed: true }, _) => {
            panic!("{frame:?} after a request that closes the connection")
        }
        (Grammar::Between { .. }, _) => panic!("{frame:?} outside a request"),
        (Grammar::InRequest { .. }, Frame::Head(_)) => panic!("a head inside a request"),
        (Grammar::InRequest { body, .. }, Frame::Body(_)) => {
            assert!(
                !matches!(body, BodyKind::None | BodyKind::ContentLength(0)),
                "body bytes in a request without a body"
            );
            grammar
        }
        (
            Grammar::InRequest {
                body,
                seen,
                keeps_connection_open,
            },
            Frame::End,
        ) => {
            if let BodyKind::ContentLength(length) = body {
                assert_eq!(seen, length, "End before the Content-Length was reached");
            }
            Grammar::Between {
                closed: !keeps_connection_open,
            }
        }
    }
}

/// What every head the framer reports must look like.
fn check_head(head: &RequestHead, limits: FramingLimits) {
    let raw = head.raw();
    assert!(
        raw.ends_with(b"\r\n\r\n"),
        "head does not end with CRLFCRLF"
    );
    assert!(raw.starts_with(head.method().as_bytes()));
    assert!(!head.method().is_empty() && head.method().bytes().all(is_tchar));
    assert!(!head.target().is_empty() && head.target().bytes().all(|b| b.is_ascii_graphic()));
    assert!(head.version() <= 1);
    assert!(head.headers().count() <= limits.max_headers);
    let request_line = format!(
        "{} {} HTTP/1.{}\r\n",
        head.method(),
        head.target(),
        head.version()
    );
    assert!(raw.starts_with(request_line.as_bytes()), "request line");
    for (name, value) in head.headers() {
        assert!(
            !name.is_empty() && name.bytes().all(is_tchar),
            "field name {name:?}"
        );
        assert!(
            !value.starts_with(b" ") && !value.starts_with(b"\t"),
            "value not trimmed"
        );
        assert!(
            !value.ends_with(b" ") && !value.ends_with(b"\t"),
            "value not trimmed"
        );
    }
    assert_eq!(
        head.host(),
        head.headers()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v)
    );
}

/// The bytes the events account for: each head's raw bytes and each body, in order.
pub fn covered(events: &[Event]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events {
        match event {
            Event::Head(head) => bytes.extend_from_slice(&head.raw),
            Event::Body(body) => bytes.extend_from_slice(body),
            Event::End | Event::Tunnel(_) => {}
        }
    }
    bytes
}

/// Checks that `events`, the framing of `input`, account for it: they describe a prefix of it,
/// and unless the framer gave up, all of it save an incomplete head.
pub fn check_coverage(events: &[Event], input: &[u8], limits: FramingLimits) {
    let covered = covered(events);
    assert!(
        input.starts_with(&covered),
        "the frames describe bytes that are not the input's"
    );
    let tunnel = matches!(events.last(), Some(Event::Tunnel(_)));
    if tunnel {
        return;
    }
    let rest = &input[covered.len()..];
    check_uncovered(
        rest,
        matches!(events.last(), None | Some(Event::End)),
        limits,
    );
}

/// Checks the bytes no frame describes, at the end of a stream the framer did not give up on:
/// `between` messages, at most an unfinished head; inside one, nothing.
pub fn check_uncovered(rest: &[u8], between: bool, limits: FramingLimits) {
    if between {
        assert!(
            rest.len() <= limits.max_header_bytes,
            "{} bytes of head held without giving up",
            rest.len()
        );
        assert!(
            !rest.windows(4).any(|w| w == b"\r\n\r\n"),
            "a complete head was not reported"
        );
    } else {
        assert!(rest.is_empty(), "body bytes were not reported");
    }
}

/// A request the framer completed (head to End), with its place in the stream.
#[derive(Debug, Clone)]
pub struct Completed<'a> {
    pub head: &'a Head,
    pub start: usize,
    pub body: std::ops::Range<usize>,
}

/// The requests in `events` that reached their End, with their offsets.
pub fn completed(events: &[Event]) -> Vec<Completed<'_>> {
    let mut done = Vec::new();
    let mut at = 0;
    let mut current: Option<(&Head, usize, usize)> = None;
    for event in events {
        match event {
            Event::Head(head) => {
                current = Some((head, at, at + head.raw.len()));
                at += head.raw.len();
            }
            Event::Body(bytes) => at += bytes.len(),
            Event::End => {
                let (head, start, body_start) = current.take().expect("End without a head");
                done.push(Completed {
                    head,
                    start,
                    body: body_start..at,
                });
            }
            Event::Tunnel(_) => break,
        }
    }
    done
}

/// `tchar` of RFC 9110 section 5.6.2.
pub fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
