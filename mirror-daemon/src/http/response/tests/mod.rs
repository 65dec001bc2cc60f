//! Behaviour tests for the response framer as a whole (`cases`), and the harness they share:
//! every stream is framed whole, split in two at every byte boundary and fed byte by byte, and
//! all must describe it identically, keep the frame API's promises and cover a prefix of it.

mod cases;

use super::{Expected, ResponseBody, ResponseFrame, ResponseFramer, ResponseGiveUp};
use crate::http::tests::agree_on_every_cut;
use crate::http::FramingLimits;

/// A frame in a normal form that does not depend on the cuts: payload and chunking bytes copied
/// out of the chunk, adjacent pieces of the same kind merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    Interim(u16),
    Head {
        status: u16,
        body: ResponseBody,
        reusable: bool,
    },
    Body(Vec<u8>),
    Chunking(Vec<u8>),
    End(bool),
    GiveUp(ResponseGiveUp),
}

/// How a stream is framed: the requests announced before it, whether the request stream went
/// opaque after them, and whether the primary closed after the last byte.
#[derive(Debug, Clone, Copy)]
pub(super) struct Setup<'a> {
    pub limits: FramingLimits,
    pub expected: &'a [Expected],
    pub opaque: bool,
    pub eof: bool,
}

/// Frames `chunks` in order with one framer, checking the frame API's promises; returns the
/// events and the bytes they account for (heads, interim heads and bodies, in order).
pub(super) fn frame_chunks<'a>(
    setup: Setup<'_>,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Event>, Vec<u8>) {
    let mut framer = ResponseFramer::new(setup.limits);
    for request in setup.expected {
        framer.expect(*request);
    }
    if setup.opaque {
        framer.requests_opaque();
    }
    let mut events = Vec::new();
    let mut covered = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        out.clear();
        let stopped = framer.is_stopped();
        framer.feed(chunk, &mut out);
        assert!(!stopped || out.is_empty(), "frames after stopping: {out:?}");
        collect(&framer, &mut out, chunk, &mut events, &mut covered);
        if framer.is_idle() {
            assert_eq!(framer.heap_bytes(), 0, "an idle framer holds heap memory");
        }
        assert!(framer.heap_bytes() <= 2 * setup.limits.max_header_bytes + 64);
    }
    if setup.eof {
        out.clear();
        framer.finish(&mut out);
        collect(&framer, &mut out, &[], &mut events, &mut covered);
        assert!(framer.is_stopped(), "finish stops the framer");
    }
    (events, covered)
}

fn collect(
    framer: &ResponseFramer,
    out: &mut Vec<ResponseFrame>,
    chunk: &[u8],
    events: &mut Vec<Event>,
    covered: &mut Vec<u8>,
) {
    let frames = out.len();
    let mut floor = 0;
    for (i, frame) in out.drain(..).enumerate() {
        let piece = |range: &std::ops::Range<usize>, floor: &mut usize| {
            assert!(
                !range.is_empty() && range.start >= *floor && range.end <= chunk.len(),
                "range {range:?} after {floor} in a chunk of {}",
                chunk.len()
            );
            *floor = range.end;
            chunk[range.clone()].to_vec()
        };
        match frame {
            ResponseFrame::Interim(head) => {
                assert!((100..200).contains(&head.status()) && head.status() != 101);
                covered.extend_from_slice(head.raw());
                events.push(Event::Interim(head.status()));
            }
            ResponseFrame::Head(head) => {
                assert!(head.raw().ends_with(b"\r\n\r\n"));
                assert!(head
                    .raw()
                    .starts_with(format!("HTTP/1.{} ", head.version()).as_bytes()));
                covered.extend_from_slice(head.raw());
                events.push(Event::Head {
                    status: head.status(),
                    body: head.body(),
                    reusable: head.keeps_connection_open(),
                });
            }
            ResponseFrame::Body(range) => {
                let bytes = piece(&range, &mut floor);
                covered.extend_from_slice(&bytes);
                match events.last_mut() {
                    Some(Event::Body(body)) => body.extend_from_slice(&bytes),
                    _ => events.push(Event::Body(bytes)),
                }
            }
            ResponseFrame::Chunking(range) => {
                let bytes = piece(&range, &mut floor);
                covered.extend_from_slice(&bytes);
                match events.last_mut() {
                    Some(Event::Chunking(coding)) => coding.extend_from_slice(&bytes),
                    _ => events.push(Event::Chunking(bytes)),
                }
            }
            ResponseFrame::End { reusable } => events.push(Event::End(reusable)),
            ResponseFrame::GiveUp(reason) => {
                assert_eq!(i + 1, frames, "GiveUp must be the last frame");
                assert_eq!(framer.give_up_reason(), Some(reason));
                events.push(Event::GiveUp(reason));
            }
        }
    }
}

/// Frames `input` whole, split in two at every boundary and byte by byte; all must agree and
/// describe a prefix of the input. Returns the events of the whole input.
pub(super) fn frame_every_way(setup: Setup<'_>, input: &[u8]) -> Vec<Event> {
    let (whole, covered) =
        agree_on_every_cut(input, |chunks| frame_chunks(setup, chunks.iter().copied()));
    assert!(
        input.starts_with(&covered),
        "frames describe bytes that are not the input's"
    );
    whole
}

#[test]
fn ranges_index_the_chunk_just_fed() {
    let mut framer = ResponseFramer::new(FramingLimits::default());
    framer.expect(Expected::plain());
    let mut out = Vec::new();
    let chunk = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
    framer.feed(chunk, &mut out);
    assert!(
        matches!(&out[..], [ResponseFrame::Head(_), ResponseFrame::Body(range)] if &chunk[range.clone()] == b"hel")
    );
    out.clear();
    framer.feed(b"lo", &mut out);
    assert_eq!(
        out,
        [
            ResponseFrame::Body(0..2),
            ResponseFrame::End { reusable: true }
        ]
    );
    assert!(framer.is_idle());
}

#[test]
fn head_accessors_describe_the_answer() {
    let mut framer = ResponseFramer::new(FramingLimits::default());
    framer.expect(Expected::plain());
    let mut out = Vec::new();
    let input = b"HTTP/1.1 404 Not \xe9 Found\r\nContent-Type: text/plain\r\nX-A:\t1 2 \r\nx-a: 3\r\nContent-Length: 0\r\n\r\n";
    framer.feed(input, &mut out);
    let Some(ResponseFrame::Head(head)) = out.first() else {
        panic!("no head in {out:?}");
    };
    assert_eq!(head.status(), 404);
    assert_eq!(head.reason(), b"Not \xe9 Found");
    assert_eq!(head.version(), 1);
    assert_eq!(
        head.header("x-a"),
        Some(&b"1 2"[..]),
        "first of two, OWS trimmed"
    );
    assert_eq!(head.header("content-type"), Some(&b"text/plain"[..]));
    assert_eq!(head.header("missing"), None);
    assert_eq!(
        head.headers().map(|(name, _)| name).collect::<Vec<_>>(),
        ["Content-Type", "X-A", "x-a", "Content-Length"]
    );
    assert_eq!(head.raw(), input);
    assert_eq!(head.raw_bytes(), &input[..]);
    assert_eq!(head.body(), ResponseBody::ContentLength(0));
    assert!(head.keeps_connection_open());
    assert_eq!(out[1], ResponseFrame::End { reusable: true });
}

#[test]
fn a_status_line_without_reason_has_an_empty_one() {
    for line in [&b"HTTP/1.1 204"[..], b"HTTP/1.1 204 "] {
        let mut framer = ResponseFramer::new(FramingLimits::default());
        framer.expect(Expected::plain());
        let mut out = Vec::new();
        framer.feed(&[line, b"\r\n\r\n"].concat(), &mut out);
        let Some(ResponseFrame::Head(head)) = out.first() else {
            panic!("no head in {out:?}");
        };
        assert_eq!((head.status(), head.reason()), (204, &b""[..]));
    }
}

#[test]
fn expected_is_read_from_the_request_head() {
    let mut requests = crate::http::RequestFramer::new(FramingLimits::default());
    let mut frames = Vec::new();
    requests.feed(
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        &mut frames,
    );
    let expected: Vec<Expected> = frames
        .iter()
        .filter_map(|frame| match frame {
            crate::http::Frame::Head(head) => Some(Expected::of(head)),
            _ => None,
        })
        .collect();
    assert_eq!(
        expected,
        [
            Expected {
                head: true,
                ..Expected::plain()
            },
            Expected {
                keeps_connection_open: false,
                ..Expected::plain()
            }
        ]
    );
}

#[test]
fn idle_points_are_between_answers_with_nothing_pending() {
    let mut framer = ResponseFramer::new(FramingLimits::default());
    let mut out = Vec::new();
    assert!(framer.is_idle(), "a new connection is idle");
    framer.expect(Expected::plain());
    assert!(!framer.is_idle(), "a request awaits its answer");
    framer.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no", &mut out);
    assert!(!framer.is_idle(), "inside a body");
    framer.feed(b"k", &mut out);
    assert!(framer.is_idle(), "after a complete answer");
    framer.expect(Expected::plain());
    framer.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &mut out);
    assert!(!framer.is_idle(), "the primary closes after this one");
    assert_eq!(framer.pending_requests(), 0);
}

#[test]
fn a_partial_head_is_held_within_the_limit_and_freed_with_the_head() {
    let limits = FramingLimits {
        max_header_bytes: 256,
        max_headers: 8,
    };
    let mut framer = ResponseFramer::new(limits);
    framer.expect(Expected::plain());
    let mut out = Vec::new();
    framer.feed(b"HTTP/1.1 200 OK\r\nX: ", &mut out);
    assert!(framer.heap_bytes() > 0);
    framer.feed(b"y\r\nContent-Length: 0\r\n\r\n", &mut out);
    assert_eq!(framer.heap_bytes(), 0);
    framer.expect(Expected::plain());
    for _ in 0..300 {
        framer.feed(b"a", &mut out);
        assert!(framer.heap_bytes() <= 2 * limits.max_header_bytes);
    }
    assert_eq!(
        out.last(),
        Some(&ResponseFrame::GiveUp(ResponseGiveUp::HeadTooLarge))
    );
    assert_eq!(framer.heap_bytes(), 0);
}

#[test]
fn too_many_pending_requests_give_up_at_the_next_feed() {
    let mut framer = ResponseFramer::new(FramingLimits::default());
    for _ in 0..=super::MAX_PENDING {
        framer.expect(Expected::plain());
    }
    let mut out = Vec::new();
    framer.feed(b"", &mut out);
    assert_eq!(out, [ResponseFrame::GiveUp(ResponseGiveUp::TooManyPending)]);
}

#[test]
fn nothing_is_framed_after_finish() {
    let mut framer = ResponseFramer::new(FramingLimits::default());
    framer.expect(Expected::plain());
    let mut out = Vec::new();
    framer.finish(&mut out);
    assert_eq!(
        out,
        [ResponseFrame::GiveUp(ResponseGiveUp::RequestsUnanswered)]
    );
    out.clear();
    framer.feed(b"HTTP/1.1 200 OK\r\n\r\n", &mut out);
    framer.finish(&mut out);
    assert!(out.is_empty());
}
