//! Generated streams: pipelines of valid requests with known framing, cut at random points.
//!
//! The generator builds each request's wire bytes and, alongside, the events it must frame as
//! (its ground truth): random methods, targets, fields with random optional whitespace, and bodies
//! delimited by Content-Length (with leading zeros) or chunked coding (random chunk sizes in
//! either hex case with leading zeros, extensions, last-chunk extensions, trailers). Optionally
//! the last request closes the connection and junk follows. A second property mutates such
//! streams and checks that whatever the framer makes of them does not depend on the cuts.

use super::{covered, frame_chunks, BodyKind, Event, FramingLimits, TunnelReason};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::FileFailurePersistence;

#[derive(Debug, Clone)]
struct Field {
    name: String,
    before: &'static str,
    value: Vec<u8>,
    after: &'static str,
}

impl Field {
    fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            before: " ",
            value: value.as_bytes().to_vec(),
            after: "",
        }
    }

    fn wire(&self) -> Vec<u8> {
        [
            self.name.as_bytes(),
            b":",
            self.before.as_bytes(),
            &self.value,
            self.after.as_bytes(),
            b"\r\n",
        ]
        .concat()
    }

    /// The value as the framer reports it: without the whitespace around it.
    fn trimmed(&self) -> Vec<u8> {
        let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
        let start = self
            .value
            .iter()
            .position(|b| !is_ows(b))
            .unwrap_or(self.value.len());
        let end = self
            .value
            .iter()
            .rposition(|b| !is_ows(b))
            .map_or(start, |i| i + 1);
        self.value[start..end].to_vec()
    }
}

#[derive(Debug, Clone)]
struct Chunk {
    data: Vec<u8>,
    zeros: usize,
    upper: bool,
    extension: String,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Length {
        bytes: Vec<u8>,
        zeros: usize,
        before: &'static str,
        after: &'static str,
    },
    Chunked {
        coding: &'static str,
        chunks: Vec<Chunk>,
        last_zeros: usize,
        last_extension: String,
        trailers: Vec<Field>,
    },
}

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    target: String,
    http10: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    host_at: Index,
    framing_at: Index,
    fields: Vec<Field>,
    body: Body,
}

/// A request's wire bytes and the events it must frame as.
struct Rendered {
    wire: Vec<u8>,
    events: Vec<Event>,
}

impl Request {
    fn render(&self, keeps_connection_open: bool) -> Rendered {
        // Transfer-Encoding is not allowed in HTTP/1.0, so chunked requests are 1.1.
        let version = u8::from(!self.http10 || matches!(self.body, Body::Chunked { .. }));
        let mut fields = self.fields.clone();
        fields.insert(
            self.host_at.index(fields.len() + 1),
            Field::new("Host", "example.com:8080"),
        );
        let (body_kind, body_wire) = match &self.body {
            Body::None => (BodyKind::None, Vec::new()),
            Body::Length {
                bytes,
                zeros,
                before,
                after,
            } => {
                let value = format!("{}{}", "0".repeat(*zeros), bytes.len());
                let field = Field {
                    before,
                    after,
                    ..Field::new("Content-Length", &value)
                };
                fields.insert(self.framing_at.index(fields.len() + 1), field);
                (BodyKind::ContentLength(bytes.len() as u64), bytes.clone())
            }
            Body::Chunked {
                coding,
                chunks,
                last_zeros,
                last_extension,
                trailers,
            } => {
                let field = Field::new("Transfer-Encoding", coding);
                fields.insert(self.framing_at.index(fields.len() + 1), field);
                let mut wire = Vec::new();
                for chunk in chunks {
                    let size = if chunk.upper {
                        format!("{:X}", chunk.data.len())
                    } else {
                        format!("{:x}", chunk.data.len())
                    };
                    wire.extend_from_slice("0".repeat(chunk.zeros).as_bytes());
                    wire.extend_from_slice(size.as_bytes());
                    wire.extend_from_slice(chunk.extension.as_bytes());
                    wire.extend_from_slice(b"\r\n");
                    wire.extend_from_slice(&chunk.data);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice("0".repeat(*last_zeros).as_bytes());
                wire.extend_from_slice(last_extension.as_bytes());
                wire.extend_from_slice(b"\r\n");
                for trailer in trailers {
                    wire.extend_from_slice(&trailer.wire());
                }
                wire.extend_from_slice(b"\r\n");
                (BodyKind::Chunked, wire)
            }
        };
        if self.expect_continue && body_kind != BodyKind::None {
            fields.push(Field::new("Expect", "100-continue"));
        }
        match (version, keeps_connection_open) {
            (1, true) if self.connection_keep_alive => {
                fields.push(Field::new("Connection", "keep-alive"))
            }
            (0, true) => fields.push(Field::new("Connection", "Keep-Alive")),
            (1, false) => fields.push(Field::new("Connection", "close")),
            _ => {}
        }

        let mut head = format!("{} {} HTTP/1.{version}\r\n", self.method, self.target).into_bytes();
        for field in &fields {
            head.extend_from_slice(&field.wire());
        }
        head.extend_from_slice(b"\r\n");

        let mut events = vec![Event::Head {
            method: self.method.to_owned(),
            target: self.target.clone(),
            version,
            body: body_kind,
            headers: fields
                .iter()
                .map(|field| (field.name.clone(), field.trimmed()))
                .collect(),
            raw: head.clone(),
        }];
        if !body_wire.is_empty() {
            events.push(Event::Body(body_wire.clone()));
        }
        events.push(Event::End);
        Rendered {
            wire: [head, body_wire].concat(),
            events,
        }
    }
}

/// A generated stream: requests, whether the last closes the connection, and junk after it.
#[derive(Debug, Clone)]
struct Pipeline {
    requests: Vec<Request>,
    last_closes: bool,
    junk: Vec<u8>,
}

impl Pipeline {
    /// The stream and its ground truth.
    fn render(&self) -> (Vec<u8>, Vec<Event>) {
        let mut wire = Vec::new();
        let mut events = Vec::new();
        for (i, request) in self.requests.iter().enumerate() {
            let last = i + 1 == self.requests.len();
            let rendered = request.render(!(last && self.last_closes));
            wire.extend_from_slice(&rendered.wire);
            events.extend(rendered.events);
        }
        if self.last_closes && !self.junk.is_empty() {
            wire.extend_from_slice(&self.junk);
            events.push(Event::Tunnel(TunnelReason::DataAfterClose));
        }
        (wire, events)
    }
}

fn optional_whitespace() -> impl Strategy<Value = &'static str> {
    select(vec!["", "", " ", "\t", "  ", " \t "])
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "Accept",
            "User-Agent",
            "Cookie",
            "Content-Type",
            "authorization"
        ])
        .prop_map(String::from),
        "X-[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
    ]
}

fn field_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => 0x21u8..=0x7e,
            1 => 0x80u8..=0xff,
            1 => Just(b' '),
            1 => Just(b'\t'),
        ],
        0..24,
    )
}

fn field() -> impl Strategy<Value = Field> {
    (
        field_name(),
        optional_whitespace(),
        field_value(),
        optional_whitespace(),
    )
        .prop_map(|(name, before, value, after)| Field {
            name,
            before,
            value,
            after,
        })
}

fn chunk_extension() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            ";[a-z]{1,6}",
            ";[a-z]{1,6}=[A-Za-z0-9.-]{1,6}",
            ";[a-z]{1,4}=\"[A-Za-z0-9 ;=,]{0,8}\"",
        ],
        0..3,
    )
    .prop_map(|extensions| extensions.concat())
}

fn chunk() -> impl Strategy<Value = Chunk> {
    (
        prop::collection::vec(any::<u8>(), 1..48),
        0usize..4,
        any::<bool>(),
        chunk_extension(),
    )
        .prop_map(|(data, zeros, upper, extension)| Chunk {
            data,
            zeros,
            upper,
            extension,
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::None),
        (
            prop::collection::vec(any::<u8>(), 0..96),
            0usize..3,
            optional_whitespace(),
            optional_whitespace()
        )
            .prop_map(|(bytes, zeros, before, after)| Body::Length {
                bytes,
                zeros,
                before,
                after
            }),
        (
            select(vec!["chunked", "Chunked", "CHUNKED"]),
            prop::collection::vec(chunk(), 0..5),
            1usize..4,
            chunk_extension(),
            prop::collection::vec(field(), 0..3),
        )
            .prop_map(|(coding, chunks, last_zeros, last_extension, trailers)| {
                Body::Chunked {
                    coding,
                    chunks,
                    last_zeros,
                    last_extension,
                    trailers,
                }
            }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        select(vec![
            "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "M-SEARCH",
        ]),
        "/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,24}(\\?[A-Za-z0-9=&/?%-]{0,16})?",
        prop::bool::weighted(0.2),
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<Index>(),
        any::<Index>(),
        prop::collection::vec(field(), 0..6),
        body(),
    )
        .prop_map(
            |(
                method,
                target,
                http10,
                connection_keep_alive,
                expect_continue,
                host_at,
                framing_at,
                fields,
                body,
            )| {
                Request {
                    method,
                    target,
                    http10,
                    connection_keep_alive,
                    expect_continue,
                    host_at,
                    framing_at,
                    fields,
                    body,
                }
            },
        )
}

fn pipeline() -> impl Strategy<Value = Pipeline> {
    (
        prop::collection::vec(request(), 1..6),
        prop::bool::weighted(0.3),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(requests, last_closes, junk)| Pipeline {
            requests,
            last_closes,
            junk,
        })
}

/// `input` cut at the given points.
fn cut<'a>(input: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([input.len()]) {
        pieces.push(&input[start..point]);
        start = point;
    }
    pieces
}

/// A change to a stream, with bytes that matter to framing.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Index, u8),
    Insert(Index, u8),
    Remove(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = || {
        select(vec![
            b'\r', b'\n', b' ', b'\t', b':', b';', b',', b'0', b'9', b'a', b'G', 0x00, 0x16, 0x80,
        ])
    };
    prop_oneof![
        (any::<Index>(), byte()).prop_map(|(at, byte)| Mutation::Replace(at, byte)),
        (any::<Index>(), byte()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Remove),
    ]
}

fn mutate(mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        match *mutation {
            Mutation::Replace(at, byte) if !input.is_empty() => {
                let at = at.index(input.len());
                input[at] = byte;
            }
            Mutation::Insert(at, byte) => input.insert(at.index(input.len() + 1), byte),
            Mutation::Remove(at) if !input.is_empty() => {
                input.remove(at.index(input.len()));
            }
            Mutation::Replace(..) | Mutation::Remove(_) => {}
        }
    }
    input
}

proptest! {
    // Failing seeds are kept next to this file (generated.regressions), inside the module.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_pipelines_frame_as_generated_however_cut(
        pipeline in pipeline(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let limits = FramingLimits::default();
        let (wire, truth) = pipeline.render();
        let whole = frame_chunks(limits, [&wire[..]]);
        prop_assert_eq!(&whole, &truth);
        prop_assert_eq!(&frame_chunks(limits, cut(&wire, &cuts)), &truth);
        prop_assert_eq!(&frame_chunks(limits, wire.chunks(1)), &truth);
        let junk = if truth.last() == Some(&Event::Tunnel(TunnelReason::DataAfterClose)) {
            pipeline.junk.len()
        } else {
            0
        };
        prop_assert_eq!(covered(&whole), &wire[..wire.len() - junk]);
    }

    #[test]
    fn mutated_pipelines_frame_the_same_however_cut(
        pipeline in pipeline(),
        mutations in prop::collection::vec(mutation(), 1..4),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let limits = FramingLimits::default();
        let input = mutate(pipeline.render().0, &mutations);
        let whole = frame_chunks(limits, [&input[..]]);
        prop_assert!(input.starts_with(&covered(&whole)));
        prop_assert_eq!(&frame_chunks(limits, cut(&input, &cuts)), &whole);
        prop_assert_eq!(&frame_chunks(limits, input.chunks(1)), &whole);
    }

    #[test]
    fn arbitrary_bytes_frame_the_same_however_cut(
        input in prop::collection::vec(any::<u8>(), 0..256),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let limits = FramingLimits::default();
        let whole = frame_chunks(limits, [&input[..]]);
        prop_assert!(input.starts_with(&covered(&whole)));
        prop_assert_eq!(&frame_chunks(limits, cut(&input, &cuts)), &whole);
    }
}
