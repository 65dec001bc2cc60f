//! Framing the primary's answers with the daemon's `ResponseFramer`, chunk by chunk, while
//! checking every promise of its frame API; the result is in a normal form that does not depend
//! on the cuts (payload and chunking bytes copied out and merged).

use std::ops::Range;

use mirror_daemon::http::{
    response::{
        Expected, ResponseBody, ResponseFrame, ResponseFramer, ResponseGiveUp, ResponseHead,
    },
    FramingLimits,
};

/// What the framer is told besides the bytes: the requests announced before them, whether the
/// request stream went opaque after them, and whether the primary closed after the last byte.
#[derive(Debug, Clone)]
pub struct Setup {
    pub limits: FramingLimits,
    pub requests: Vec<Expected>,
    pub opaque: bool,
    pub eof: bool,
}

impl Setup {
    /// Reads a setup from the front of a raw stream (for `response_framer_chunks`): one byte
    /// `n`, then `n % 16` request bytes (bit 0 HEAD, bit 1 CONNECT, bit 2 Upgrade, bit 3 the
    /// request closes the connection); bits 5 and 6 of the input's flags are `opaque` and `eof`.
    /// Returns the setup and the rest of the stream.
    pub fn take(limits: FramingLimits, flags: u8, stream: &[u8]) -> (Self, &[u8]) {
        let (count, rest) = match stream.split_first() {
            Some((&count, rest)) => (usize::from(count % 16).min(rest.len()), rest),
            None => (0, stream),
        };
        let (requests, rest) = rest.split_at(count);
        let setup = Self {
            limits,
            requests: requests.iter().map(|&bits| request_of(bits)).collect(),
            opaque: flags & 0x20 != 0,
            eof: flags & 0x40 != 0,
        };
        (setup, rest)
    }
}

/// The request whose facts are the low four bits of `bits`.
pub fn request_of(bits: u8) -> Expected {
    Expected {
        head: bits & 1 != 0,
        connect: bits & 2 != 0,
        upgrade: bits & 4 != 0,
        keeps_connection_open: bits & 8 == 0,
    }
}

/// A frame with its bytes copied out of the chunk; adjacent pieces of one kind merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Interim(Box<Head>),
    Head(Box<Head>),
    Body(Vec<u8>),
    Chunking(Vec<u8>),
    End(bool),
    GiveUp(ResponseGiveUp),
}

/// What a [`ResponseHead`] says, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub raw: Vec<u8>,
    pub status: u16,
    pub version: u8,
    pub reason: Vec<u8>,
    pub body: ResponseBody,
    pub keeps_connection_open: bool,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Head {
    fn of(head: &ResponseHead) -> Self {
        Self {
            raw: head.raw().to_vec(),
            status: head.status(),
            version: head.version(),
            reason: head.reason().to_vec(),
            body: head.body(),
            keeps_connection_open: head.keeps_connection_open(),
            fields: head
                .headers()
                .map(|(name, value)| (name.as_bytes().to_vec(), value.to_vec()))
                .collect(),
        }
    }
}

/// Where the frame grammar `(Interim* Head (Body | Chunking)* End)* [Interim* [Head ...]]
/// [GiveUp]` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grammar {
    /// Between answers (after interim heads, maybe); `closed` after one that closes.
    Between {
        closed: bool,
    },
    /// Inside an answer with `body`, `seen` payload bytes so far.
    InAnswer {
        status: u16,
        body: ResponseBody,
        seen: u64,
        reusable: bool,
    },
    /// After the End of a 101 or a CONNECT 2xx: only its GiveUp may follow.
    Switched,
    Stopped,
}

/// Frames `chunks` with one framer per `setup` and returns the normal form; panics when a frame
/// breaks the API's promises. Returns the heap bytes the framer held at most between feeds too.
pub fn frame<'a>(setup: &Setup, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Event>, usize) {
    let mut framer = ResponseFramer::new(setup.limits);
    for request in &setup.requests {
        framer.expect(*request);
    }
    if setup.opaque {
        framer.requests_opaque();
    }
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut grammar = Grammar::Between { closed: false };
    let mut most_heap = 0;
    for chunk in chunks {
        out.clear();
        let stopped = framer.is_stopped();
        framer.feed(chunk, &mut out);
        assert!(!stopped || out.is_empty(), "frames after stopping: {out:?}");
        grammar = collect(&framer, &mut out, chunk, grammar, &mut events, setup.limits);
        let heap = framer.heap_bytes();
        most_heap = most_heap.max(heap);
        if framer.is_idle() {
            assert_eq!(heap, 0, "an idle framer holds heap memory");
            assert_eq!(grammar, Grammar::Between { closed: false });
        }
    }
    if setup.eof {
        out.clear();
        framer.finish(&mut out);
        grammar = collect(&framer, &mut out, &[], grammar, &mut events, setup.limits);
        assert!(framer.is_stopped(), "finish stops the framer");
        assert!(matches!(
            grammar,
            Grammar::Stopped | Grammar::Between { .. }
        ));
    }
    (events, most_heap)
}

fn collect(
    framer: &ResponseFramer,
    out: &mut Vec<ResponseFrame>,
    chunk: &[u8],
    mut grammar: Grammar,
    events: &mut Vec<Event>,
    limits: FramingLimits,
) -> Grammar {
    let frames = out.len();
    let mut floor = 0;
    for (i, frame) in out.drain(..).enumerate() {
        grammar = step(grammar, &frame, limits);
        match frame {
            ResponseFrame::Interim(head) => events.push(Event::Interim(Box::new(Head::of(&head)))),
            ResponseFrame::Head(head) => events.push(Event::Head(Box::new(Head::of(&head)))),
            ResponseFrame::Body(range) | ResponseFrame::Chunking(range) if range.is_empty() => {
                panic!("an empty range {range:?}")
            }
            ResponseFrame::Body(range) => {
                let bytes = piece(chunk, range, &mut floor);
                if let Grammar::InAnswer { seen, body, .. } = &mut grammar {
                    *seen += bytes.len() as u64;
                    if let ResponseBody::ContentLength(length) = body {
                        assert!(
                            *seen <= *length,
                            "more payload than Content-Length {length}"
                        );
                    }
                }
                match events.last_mut() {
                    Some(Event::Body(body)) => body.extend_from_slice(bytes),
                    _ => events.push(Event::Body(bytes.to_vec())),
                }
            }
            ResponseFrame::Chunking(range) => {
                let bytes = piece(chunk, range, &mut floor);
                match events.last_mut() {
                    Some(Event::Chunking(coding)) => coding.extend_from_slice(bytes),
                    _ => events.push(Event::Chunking(bytes.to_vec())),
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
    assert_eq!(
        framer.give_up_reason().is_some(),
        matches!(events.last(), Some(Event::GiveUp(_))),
        "give_up_reason() disagrees with the frames"
    );
    assert_ne!(grammar, Grammar::Switched, "a 101 without its GiveUp");
    // An answer without a body ends in the same feed as its head.
    if let Grammar::InAnswer { body, .. } = grammar {
        assert!(
            !matches!(body, ResponseBody::None | ResponseBody::ContentLength(0)),
            "an answer without a body was left open"
        );
    }
    grammar
}

/// The bytes of a body range, checked to be in the chunk and after the previous one.
fn piece<'c>(chunk: &'c [u8], range: Range<usize>, floor: &mut usize) -> &'c [u8] {
    assert!(
        range.start >= *floor && range.end <= chunk.len(),
        "range {range:?} after {floor} in a chunk of {} bytes",
        chunk.len()
    );
    *floor = range.end;
    &chunk[range]
}

/// The grammar after `frame`.
fn step(grammar: Grammar, frame: &ResponseFrame, limits: FramingLimits) -> Grammar {
    match (grammar, frame) {
        (Grammar::Stopped, _) => panic!("{frame:?} after GiveUp"),
        (Grammar::Switched, ResponseFrame::GiveUp(reason)) => {
            assert_eq!(*reason, ResponseGiveUp::Upgrade);
            Grammar::Stopped
        }
        (Grammar::Switched, _) => panic!("{frame:?} after a 101"),
        (Grammar::Between { closed: true }, ResponseFrame::GiveUp(reason)) => {
            // ConnectTunnel only after a 2xx without body (checked against the requests by the
            // differential target).
            assert!(matches!(
                reason,
                ResponseGiveUp::DataAfterClose | ResponseGiveUp::ConnectTunnel
            ));
            Grammar::Stopped
        }
        (_, ResponseFrame::GiveUp(reason)) => {
            assert!(!matches!(
                reason,
                ResponseGiveUp::Upgrade | ResponseGiveUp::ConnectTunnel
            ));
            Grammar::Stopped
        }
        (Grammar::Between { closed: true }, _) => {
            panic!("{frame:?} after an answer that closes the connection")
        }
        (Grammar::Between { .. }, ResponseFrame::Interim(head)) => {
            check_head(head, limits);
            assert!(head.status() / 100 == 1 && head.status() != 101);
            assert_eq!(head.body(), ResponseBody::None);
            grammar
        }
        (Grammar::Between { .. }, ResponseFrame::Head(head)) => {
            check_head(head, limits);
            assert!(head.status() >= 200 || head.status() == 101);
            if head.body() == ResponseBody::UntilClose {
                assert!(!head.keeps_connection_open());
            }
            Grammar::InAnswer {
                status: head.status(),
                body: head.body(),
                seen: 0,
                reusable: head.keeps_connection_open(),
            }
        }
        (Grammar::Between { .. }, _) => panic!("{frame:?} outside an answer"),
        (Grammar::InAnswer { .. }, ResponseFrame::Interim(_) | ResponseFrame::Head(_)) => {
            panic!("a head inside an answer")
        }
        (Grammar::InAnswer { body, .. }, ResponseFrame::Body(_)) => {
            assert!(
                !matches!(body, ResponseBody::None | ResponseBody::ContentLength(0)),
                "payload in an answer without a body"
            );
            grammar
        }
        (Grammar::InAnswer { body, .. }, ResponseFrame::Chunking(_)) => {
            assert_eq!(
                body,
                ResponseBody::Chunked,
                "chunking outside a chunked body"
            );
            grammar
        }
        (
            Grammar::InAnswer {
                status,
                body,
                seen,
                reusable,
            },
            ResponseFrame::End { reusable: end },
        ) => {
            assert_eq!(reusable, *end, "End and the head disagree on reuse");
            if let ResponseBody::ContentLength(length) = body {
                assert_eq!(seen, length, "End before the Content-Length was reached");
            }
            if status == 101 {
                assert!(!reusable);
                return Grammar::Switched;
            }
            Grammar::Between { closed: !reusable }
        }
    }
}

/// What every head the framer reports must look like.
fn check_head(head: &ResponseHead, limits: FramingLimits) {
    let raw = head.raw();
    assert!(raw.len() <= limits.max_header_bytes);
    assert!(
        raw.ends_with(b"\r\n\r\n"),
        "head does not end with CRLFCRLF"
    );
    assert!((100..=599).contains(&head.status()));
    assert!(head.version() <= 1);
    assert!(head.headers().count() <= limits.max_headers);
    let status_line = [
        format!("HTTP/1.{} {}", head.version(), head.status()).as_bytes(),
        if head.reason().is_empty() { b"" } else { b" " },
        head.reason(),
    ]
    .concat();
    assert!(raw.starts_with(&status_line), "status line");
    for (name, value) in head.headers() {
        assert!(!name.is_empty() && name.bytes().all(crate::events::is_tchar));
        assert!(
            !value.starts_with(b" ") && !value.starts_with(b"\t"),
            "value not trimmed"
        );
        assert!(
            !value.ends_with(b" ") && !value.ends_with(b"\t"),
            "value not trimmed"
        );
    }
}

/// The bytes the events account for: heads, interim heads, payload and chunking, in order.
pub fn covered(events: &[Event]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events {
        match event {
            Event::Interim(head) | Event::Head(head) => bytes.extend_from_slice(&head.raw),
            Event::Body(piece) | Event::Chunking(piece) => bytes.extend_from_slice(piece),
            Event::End(_) | Event::GiveUp(_) => {}
        }
    }
    bytes
}

/// Checks that `events`, the framing of `input`, describe a prefix of it, and all of it but an
/// unfinished head unless the framer gave up.
pub fn check_coverage(events: &[Event], input: &[u8], limits: FramingLimits) {
    let covered = covered(events);
    assert!(
        input.starts_with(&covered),
        "the frames describe bytes that are not the input's"
    );
    if matches!(events.last(), Some(Event::GiveUp(_))) {
        return;
    }
    let rest = &input[covered.len()..];
    let between = matches!(
        events.last(),
        None | Some(Event::End(_) | Event::Interim(_))
    );
    crate::events::check_uncovered(rest, between, limits);
}

/// An answer the framer completed (Head to End), with its place in the stream.
#[derive(Debug, Clone)]
pub struct Completed<'a> {
    pub interims: Vec<&'a Head>,
    pub head: &'a Head,
    /// Where the final head starts.
    pub start: usize,
    /// The body's bytes on the wire.
    pub wire: Range<usize>,
    pub payload: Vec<u8>,
    pub reusable: bool,
}

/// An answer begun and not ended: its interim heads and its head, if that came.
#[derive(Debug, Clone)]
pub struct Open<'a> {
    pub interims: Vec<&'a Head>,
    pub head: Option<&'a Head>,
}

/// The answers in `events` that reached their End, and the answer left open (if any).
pub fn completed(events: &[Event]) -> (Vec<Completed<'_>>, Option<Open<'_>>) {
    let mut done = Vec::new();
    let mut at = 0;
    let mut interims = Vec::new();
    let mut current: Option<(&Head, usize, usize, Vec<u8>)> = None;
    for event in events {
        match event {
            Event::Interim(head) => {
                interims.push(&**head);
                at += head.raw.len();
            }
            Event::Head(head) => {
                current = Some((head, at, at + head.raw.len(), Vec::new()));
                at += head.raw.len();
            }
            Event::Body(bytes) => {
                at += bytes.len();
                if let Some((_, _, _, payload)) = &mut current {
                    payload.extend_from_slice(bytes);
                }
            }
            Event::Chunking(bytes) => at += bytes.len(),
            Event::End(reusable) => {
                let (head, start, body_start, payload) =
                    current.take().expect("End without a head");
                done.push(Completed {
                    interims: std::mem::take(&mut interims),
                    head,
                    start,
                    wire: body_start..at,
                    payload,
                    reusable: *reusable,
                });
            }
            Event::GiveUp(_) => break,
        }
    }
    let open = (!interims.is_empty() || current.is_some()).then(|| Open {
        interims,
        head: current.map(|(head, ..)| head),
    });
    (done, open)
}
