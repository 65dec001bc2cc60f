//! Behaviour tests for the framer as a whole: hand-written streams (`cases`) and generated
//! pipelines (`generated`). Every stream is framed whole, split at every byte boundary and fed
//! byte by byte, and all must describe it identically.

mod cases;
mod generated;

use super::{BodyKind, Frame, FramingLimits, RequestFramer, TunnelReason};

/// A frame with its body bytes copied out of the chunk, adjacent body pieces merged, so that
/// different chunkings of one stream compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    Head {
        method: String,
        target: String,
        version: u8,
        body: BodyKind,
        headers: Vec<(String, Vec<u8>)>,
        raw: Vec<u8>,
    },
    Body(Vec<u8>),
    End,
    Tunnel(TunnelReason),
}

/// Frames `chunks` in order with one framer, checking the invariants of the frame API.
pub(super) fn frame_chunks<'a>(
    limits: FramingLimits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Event> {
    let mut framer = RequestFramer::new(limits);
    let mut events: Vec<Event> = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        let tunnel_before = framer.is_tunnel();
        out.clear();
        framer.feed(chunk, &mut out);
        assert!(
            !tunnel_before || out.is_empty(),
            "frames after tunnel: {out:?}"
        );
        let mut body_floor = 0;
        let frames = out.len();
        for (i, frame) in out.drain(..).enumerate() {
            match frame {
                Frame::Head(head) => events.push(Event::Head {
                    method: head.method().to_owned(),
                    target: head.target().to_owned(),
                    version: head.version(),
                    body: head.body(),
                    headers: head
                        .headers()
                        .map(|(name, value)| (name.to_owned(), value.to_vec()))
                        .collect(),
                    raw: head.raw().to_vec(),
                }),
                Frame::Body(range) => {
                    assert!(
                        !range.is_empty() && range.start >= body_floor && range.end <= chunk.len(),
                        "body range {range:?} in a chunk of {} bytes",
                        chunk.len()
                    );
                    body_floor = range.end;
                    match events.last_mut() {
                        Some(Event::Body(bytes)) => bytes.extend_from_slice(&chunk[range]),
                        _ => events.push(Event::Body(chunk[range].to_vec())),
                    }
                }
                Frame::End => events.push(Event::End),
                Frame::Tunnel(reason) => {
                    assert!(framer.is_tunnel());
                    assert_eq!(framer.tunnel_reason(), Some(reason));
                    assert_eq!(i + 1, frames, "tunnel must be the last frame");
                    events.push(Event::Tunnel(reason));
                }
            }
        }
    }
    events
}

/// The bytes the events account for: each head's raw bytes and each body, in order.
pub(super) fn covered(events: &[Event]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events {
        match event {
            Event::Head { raw, .. } => bytes.extend_from_slice(raw),
            Event::Body(body) => bytes.extend_from_slice(body),
            Event::End | Event::Tunnel(_) => {}
        }
    }
    bytes
}

/// Frames `input` whole, split in two at every boundary and byte by byte; all must agree and
/// describe a prefix of the input. Returns the events of the whole input.
pub(super) fn frame_every_way(limits: FramingLimits, input: &[u8]) -> Vec<Event> {
    let whole = agree_on_every_cut(input, |chunks| frame_chunks(limits, chunks.iter().copied()));
    let covered = covered(&whole);
    assert!(
        input.starts_with(&covered),
        "frames describe bytes that are not the input's"
    );
    whole
}

/// Runs `frame` on `input` whole, split in two at every boundary and byte by byte; all runs must
/// give the same result, which is returned.
pub(crate) fn agree_on_every_cut<T: PartialEq + std::fmt::Debug>(
    input: &[u8],
    frame: impl Fn(&[&[u8]]) -> T,
) -> T {
    let whole = frame(&[input]);
    for split in 0..=input.len() {
        let (first, second) = input.split_at(split);
        assert_eq!(frame(&[first, second]), whole, "split at byte {split}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(frame(&bytes), whole, "fed byte by byte");
    whole
}

#[test]
fn empty_chunks_change_nothing() {
    let limits = FramingLimits::default();
    let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let chunks: [&[u8]; 4] = [b"", &input[..5], b"", &input[5..]];
    assert_eq!(
        frame_chunks(limits, chunks),
        frame_chunks(limits, [&input[..]])
    );
}

#[test]
fn tunnel_ignores_everything_after_it() {
    let mut framer = RequestFramer::new(FramingLimits::default());
    let mut out = Vec::new();
    framer.feed(b"\x16\x03\x01\x00\x05", &mut out);
    assert_eq!(out, [Frame::Tunnel(TunnelReason::Tls)]);
    out.clear();
    framer.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &mut out);
    assert!(out.is_empty());
    assert_eq!(framer.tunnel_reason(), Some(TunnelReason::Tls));
}

#[test]
fn body_ranges_index_the_chunk_just_fed() {
    let mut framer = RequestFramer::new(FramingLimits::default());
    let mut out = Vec::new();
    let chunk = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel";
    framer.feed(chunk, &mut out);
    assert!(
        matches!(&out[..], [Frame::Head(_), Frame::Body(range)] if &chunk[range.clone()] == b"hel")
    );
    out.clear();
    framer.feed(b"loGET", &mut out);
    assert_eq!(out, [Frame::Body(0..2), Frame::End]);
    assert!(!framer.is_tunnel());
}

#[test]
fn head_helpers_describe_the_request() {
    let mut framer = RequestFramer::new(FramingLimits::default());
    let mut out = Vec::new();
    let input = b"PUT http://Example.com:8080/a/b?c=d HTTP/1.1\r\nhOST: Example.com:8080\r\nX-A:\t1 2 \r\nx-a: 3\r\nConnection: keep-alive, close\r\n\r\n";
    framer.feed(input, &mut out);
    let Some(Frame::Head(head)) = out.first() else {
        panic!("no head in {out:?}");
    };
    assert_eq!(head.method(), "PUT");
    assert_eq!(head.target(), "http://Example.com:8080/a/b?c=d");
    assert_eq!(head.path(), "/a/b");
    assert_eq!(head.version(), 1);
    assert_eq!(head.host(), Some(&b"Example.com:8080"[..]));
    assert_eq!(
        head.header("x-a"),
        Some(&b"1 2"[..]),
        "first of two, OWS trimmed"
    );
    assert_eq!(head.header("missing"), None);
    assert_eq!(
        head.headers().map(|(name, _)| name).collect::<Vec<_>>(),
        ["hOST", "X-A", "x-a", "Connection"]
    );
    assert_eq!(head.raw(), input);
    assert_eq!(head.raw_bytes(), &input[..]);
    assert_eq!(head.body(), BodyKind::None);
    assert!(!head.keeps_connection_open());
}

#[test]
fn path_strips_query_and_authority() {
    let path_of = |target: &str| {
        let mut framer = RequestFramer::new(FramingLimits::default());
        let mut out = Vec::new();
        framer.feed(
            format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            &mut out,
        );
        match out.first() {
            Some(Frame::Head(head)) => head.path().to_owned(),
            other => panic!("{target}: {other:?}"),
        }
    };
    assert_eq!(path_of("/"), "/");
    assert_eq!(path_of("/a?b=/c"), "/a");
    assert_eq!(path_of("/?"), "/");
    assert_eq!(path_of("http://h"), "/");
    assert_eq!(path_of("http://h?q"), "/");
    assert_eq!(path_of("https://h:1/x/y?q"), "/x/y");
    assert_eq!(path_of("*"), "*");
}

#[test]
fn default_limits_are_64_kib_and_100_fields() {
    let limits = FramingLimits::default();
    assert_eq!((limits.max_header_bytes, limits.max_headers), (65536, 100));
}
