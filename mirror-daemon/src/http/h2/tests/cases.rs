//! Hand-written connections: every frame type, padding, CONTINUATION, stream states, resets,
//! GOAWAY, SETTINGS timing, HPACK tables, and each way out (skipped stream, tunnel).

use super::{decode_every_way, Seen};
use crate::http::h2::{H2Limits, Peer, SkipReason, TunnelReason, CLIENT_PREFACE};

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const PRIORITY: u8 = 0x2;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY_FLAG: u8 = 0x20;

pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub(super) fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = entries
        .iter()
        .flat_map(|(id, value)| [id.to_be_bytes().to_vec(), value.to_be_bytes().to_vec()].concat())
        .collect();
    frame(SETTINGS, 0, 0, &payload)
}

pub(super) fn settings_ack() -> Vec<u8> {
    frame(SETTINGS, ACK, 0, &[])
}

/// The client's preface and an empty SETTINGS frame.
pub(super) fn client_preface() -> Vec<u8> {
    [CLIENT_PREFACE.to_vec(), settings(&[])].concat()
}

pub(super) fn int(value: usize, prefix_bits: u8, pattern: u8) -> Vec<u8> {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        return vec![pattern | value as u8];
    }
    let mut out = vec![pattern | mask as u8];
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
    out
}

pub(super) fn string(bytes: &[u8]) -> Vec<u8> {
    [int(bytes.len(), 7, 0), bytes.to_vec()].concat()
}

/// A literal without indexing with a literal name.
pub(super) fn literal(name: &str, value: &str) -> Vec<u8> {
    [
        vec![0x00],
        string(name.as_bytes()),
        string(value.as_bytes()),
    ]
    .concat()
}

/// A literal with incremental indexing with a literal name.
pub(super) fn indexed_literal(name: &str, value: &str) -> Vec<u8> {
    [
        vec![0x40],
        string(name.as_bytes()),
        string(value.as_bytes()),
    ]
    .concat()
}

pub(super) fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    fields.iter().flat_map(|(n, v)| literal(n, v)).collect()
}

pub(super) fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", method),
        (":scheme", "http"),
        (":authority", "example.com"),
        (":path", path),
    ];
    fields.extend_from_slice(extra);
    block(&fields)
}

pub(super) fn request(
    stream: u32,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    end: bool,
) -> Seen {
    Seen::Request {
        stream,
        method: method.into(),
        scheme: "http".into(),
        authority: Some("example.com".into()),
        path: path.into(),
        fields: extra
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        end_stream: end,
    }
}

pub(super) fn data_seen(stream: u32, bytes: &[u8], end_stream: bool) -> Seen {
    Seen::Data {
        stream,
        bytes: bytes.to_vec(),
        end_stream,
    }
}

pub(super) fn client(bytes: Vec<u8>) -> (Peer, Vec<u8>) {
    (Peer::Client, bytes)
}

pub(super) fn server(bytes: Vec<u8>) -> (Peer, Vec<u8>) {
    (Peer::Server, bytes)
}

/// A connection: the client's preface, the primary's SETTINGS and its ACK, then `client_frames`
/// in one chunk.
pub(super) fn connection(client_frames: Vec<u8>) -> Vec<(Peer, Vec<u8>)> {
    vec![
        client(client_preface()),
        server([settings(&[]), settings_ack()].concat()),
        client([settings_ack(), client_frames].concat()),
    ]
}

pub(super) fn run(script: Vec<(Peer, Vec<u8>)>) -> Vec<Seen> {
    decode_every_way(H2Limits::default(), &script)
}

#[test]
fn get_without_body_is_one_request() {
    let frames = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("GET", "/a?b=c", &[]),
    );
    assert_eq!(
        run(connection(frames)),
        [request(1, "GET", "/a?b=c", &[], true)]
    );
}

#[test]
fn body_over_several_frames_excludes_padding() {
    let frames = [
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("POST", "/up", &[("content-length", "11")]),
        ),
        frame(DATA, 0, 1, b"hello "),
        frame(
            DATA,
            PADDED | END_STREAM,
            1,
            &[&[3u8][..], b"world", &[0, 0, 0]].concat(),
        ),
    ]
    .concat();
    assert_eq!(
        run(connection(frames)),
        [
            request(1, "POST", "/up", &[("content-length", "11")], false),
            data_seen(1, b"hello world", true),
        ]
    );
}

#[test]
fn empty_data_frame_ends_the_stream() {
    let frames = [
        frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/", &[])),
        frame(DATA, 0, 1, b"x"),
        frame(PING, 0, 0, &[0; 8]),
        frame(DATA, END_STREAM, 1, b""),
    ]
    .concat();
    assert_eq!(
        run(connection(frames)),
        [
            request(1, "POST", "/", &[], false),
            // The empty DATA frame's end is merged into the data before it.
            data_seen(1, b"x", true),
        ]
    );
}

#[test]
fn padded_prioritised_headers_with_continuations() {
    let whole = request_block("GET", "/c", &[("x-a", "1"), ("x-b", "2")]);
    let (first, rest) = whole.split_at(10);
    let (second, third) = rest.split_at(7);
    let headers_payload = [&[4u8][..], &[0, 0, 0, 1, 16], first, &[0; 4]].concat();
    let frames = [
        frame(
            HEADERS,
            PADDED | PRIORITY_FLAG | END_STREAM,
            3,
            &headers_payload,
        ),
        frame(CONTINUATION, 0, 3, second),
        frame(CONTINUATION, END_HEADERS, 3, third),
    ]
    .concat();
    assert_eq!(
        run(connection(frames)),
        [request(3, "GET", "/c", &[("x-a", "1"), ("x-b", "2")], true)]
    );
}

#[test]
fn trailers_end_the_request() {
    let frames = [
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("POST", "/svc/Method", &[("te", "trailers")]),
        ),
        frame(DATA, 0, 1, b"\0\0\0\0\x01x"),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &block(&[("grpc-status", "0")]),
        ),
    ]
    .concat();
    assert_eq!(
        run(connection(frames)),
        [
            request(1, "POST", "/svc/Method", &[("te", "trailers")], false),
            data_seen(1, b"\0\0\0\0\x01x", false),
            Seen::Trailers {
                stream: 1,
                fields: vec![("grpc-status".into(), b"0".to_vec())],
            },
        ]
    );
}

#[test]
fn control_and_unknown_frames_are_followed_and_ignored() {
    let frames = [
        frame(PING, 0, 0, &[1; 8]),
        frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
        frame(PRIORITY, 0, 7, &[0, 0, 0, 1, 200]),
        frame(0xfa, 0x3, 1, b"an extension"),
        settings(&[(0x1, 4096), (0x99, 1)]),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block("GET", "/", &[]),
        ),
        frame(WINDOW_UPDATE, 0, 1, &[0, 0, 1, 0]),
        frame(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0, b'b', b'y', b'e']),
    ]
    .concat();
    assert_eq!(
        run(connection(frames)),
        [
            request(1, "GET", "/", &[], true),
            Seen::GoAway {
                by: Peer::Client,
                last: 0,
                code: 0,
            },
        ]
    );
}

#[test]
fn resets_from_either_side_and_goaway_from_the_primary() {
    let script = vec![
        client(client_preface()),
        server([settings(&[]), settings_ack()].concat()),
        client(
            [
                settings_ack(),
                frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/1", &[])),
                frame(HEADERS, END_HEADERS, 3, &request_block("POST", "/3", &[])),
                frame(HEADERS, END_HEADERS, 5, &request_block("POST", "/5", &[])),
                frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]),
                frame(DATA, 0, 1, b"after reset: ignored"),
            ]
            .concat(),
        ),
        server(
            [
                frame(RST_STREAM, 0, 3, &[0, 0, 0, 7]),
                frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]),
            ]
            .concat(),
        ),
        client(
            [
                frame(DATA, END_STREAM, 5, b"above the goaway: ignored"),
                frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    7,
                    &request_block("GET", "/7", &[]),
                ),
            ]
            .concat(),
        ),
    ];
    assert_eq!(
        run(script),
        [
            request(1, "POST", "/1", &[], false),
            request(3, "POST", "/3", &[], false),
            request(5, "POST", "/5", &[], false),
            Seen::Reset {
                stream: 1,
                by: Peer::Client,
                code: 8,
            },
            Seen::Reset {
                stream: 3,
                by: Peer::Server,
                code: 7,
            },
            Seen::GoAway {
                by: Peer::Server,
                last: 3,
                code: 0,
            },
        ]
    );
}

#[test]
fn dynamic_table_carries_fields_between_requests() {
    let first = [
        request_block("GET", "/", &[]),
        indexed_literal("x-session", "abc"),
    ]
    .concat();
    // 0xbe: index 62, the newest dynamic entry.
    let second = [request_block("GET", "/2", &[]), vec![0xbe]].concat();
    let frames = [
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &first),
        frame(HEADERS, END_HEADERS | END_STREAM, 3, &second),
    ]
    .concat();
    assert_eq!(
        run(connection(frames)),
        [
            request(1, "GET", "/", &[("x-session", "abc")], true),
            request(3, "GET", "/2", &[("x-session", "abc")], true),
        ]
    );
}

#[test]
fn malformed_requests_are_skipped_and_the_connection_goes_on() {
    let cases: Vec<(Vec<u8>, SkipReason)> = vec![
        (
            block(&[(":method", "GET"), (":scheme", "http")]),
            SkipReason::MissingPseudoHeader,
        ),
        (
            request_block("GET", "/", &[("X-Upper", "1")]),
            SkipReason::InvalidField,
        ),
        (
            request_block("GET", "/", &[("connection", "close")]),
            SkipReason::ConnectionSpecificField,
        ),
        (
            request_block("GET", "/", &[("te", "gzip")]),
            SkipReason::ConnectionSpecificField,
        ),
        (request_block("CONNECT", "/", &[]), SkipReason::Connect),
        (
            [
                request_block("GET", "/", &[("a", "b")]),
                literal(":path", "/late"),
            ]
            .concat(),
            SkipReason::InvalidPseudoHeader,
        ),
        (
            [request_block("GET", "/", &[]), literal(":status", "200")].concat(),
            SkipReason::InvalidPseudoHeader,
        ),
        (
            request_block("GET", "/", &[("content-length", "1x")]),
            SkipReason::InvalidContentLength,
        ),
        (
            request_block("GET", "/", &[("content-length", "5")]),
            SkipReason::ContentLengthMismatch,
        ),
    ];
    for (fields, reason) in cases {
        let frames = [
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &fields),
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                3,
                &request_block("GET", "/ok", &[]),
            ),
        ]
        .concat();
        assert_eq!(
            run(connection(frames)),
            [
                Seen::Skipped { stream: 1, reason },
                request(3, "GET", "/ok", &[], true)
            ],
            "{reason:?}"
        );
    }
}

#[test]
fn body_must_match_content_length_and_trailers_must_end_the_stream() {
    let head = request_block("POST", "/", &[("content-length", "4")]);
    let too_long = [
        frame(HEADERS, END_HEADERS, 1, &head),
        frame(DATA, END_STREAM, 1, b"12345"),
    ];
    let too_short = [
        frame(HEADERS, END_HEADERS, 1, &head),
        frame(DATA, END_STREAM, 1, b"123"),
    ];
    for frames in [too_long, too_short] {
        assert_eq!(
            run(connection(frames.concat())),
            [
                request(1, "POST", "/", &[("content-length", "4")], false),
                Seen::Skipped {
                    stream: 1,
                    reason: SkipReason::ContentLengthMismatch,
                },
            ]
        );
    }
    let frames = [
        frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/", &[])),
        frame(HEADERS, END_HEADERS, 1, &block(&[("x", "y")])),
        frame(HEADERS, END_HEADERS, 3, &request_block("POST", "/", &[])),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &block(&[(":path", "/")]),
        ),
    ];
    assert_eq!(
        run(connection(frames.concat())),
        [
            request(1, "POST", "/", &[], false),
            Seen::Skipped {
                stream: 1,
                reason: SkipReason::TrailersWithoutEndStream,
            },
            request(3, "POST", "/", &[], false),
            Seen::Skipped {
                stream: 3,
                reason: SkipReason::PseudoHeaderInTrailers,
            },
        ]
    );
}

/// Connections that end in a tunnel, with the requests reported before it.
#[test]
fn connection_errors_end_in_a_tunnel() {
    let get = |stream| {
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &request_block("GET", "/", &[]),
        )
    };
    let cases: Vec<(Vec<u8>, TunnelReason)> = vec![
        (
            frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]),
            TunnelReason::ClientPushPromise,
        ),
        (
            frame(DATA, 0, 1, &[0; 16385]),
            TunnelReason::ClientFrameTooLarge,
        ),
        (
            frame(HEADERS, END_HEADERS, 2, &request_block("GET", "/", &[])),
            TunnelReason::InvalidStreamId,
        ),
        (frame(DATA, 0, 9, b"x"), TunnelReason::IdleStream),
        (
            frame(RST_STREAM, 0, 9, &[0, 0, 0, 8]),
            TunnelReason::IdleStream,
        ),
        (
            frame(WINDOW_UPDATE, 0, 9, &[0, 0, 0, 1]),
            TunnelReason::IdleStream,
        ),
        (
            frame(CONTINUATION, END_HEADERS, 1, &[0x82]),
            TunnelReason::UnexpectedContinuation,
        ),
        (
            [frame(HEADERS, 0, 1, &[0x82]), frame(PING, 0, 0, &[0; 8])].concat(),
            TunnelReason::ContinuationExpected,
        ),
        (
            [
                frame(HEADERS, 0, 1, &[0x82]),
                frame(CONTINUATION, END_HEADERS, 3, &[0x84]),
            ]
            .concat(),
            TunnelReason::ContinuationExpected,
        ),
        (
            frame(PRIORITY, 0, 5, &[0, 0, 0, 5, 1]),
            TunnelReason::SelfDependency,
        ),
        (
            frame(
                HEADERS,
                PRIORITY_FLAG | END_HEADERS,
                1,
                &[&[0, 0, 0, 1, 9][..], &request_block("GET", "/", &[])].concat(),
            ),
            TunnelReason::SelfDependency,
        ),
        (
            frame(DATA, PADDED, 1, &[5, 1, 2]),
            TunnelReason::InvalidPadding,
        ),
        (frame(PING, 0, 0, &[0; 7]), TunnelReason::InvalidFrameLength),
        (frame(PING, 0, 1, &[0; 8]), TunnelReason::InvalidStreamId),
        (
            frame(WINDOW_UPDATE, 0, 0, &[0; 4]),
            TunnelReason::ZeroWindowIncrement,
        ),
        (
            frame(GOAWAY, 0, 0, &[0; 7]),
            TunnelReason::InvalidFrameLength,
        ),
        (
            frame(SETTINGS, 0, 0, &[0; 5]),
            TunnelReason::InvalidFrameLength,
        ),
        (settings(&[(0x2, 2)]), TunnelReason::InvalidSetting),
        (settings(&[(0x5, 100)]), TunnelReason::InvalidSetting),
        (settings_ack(), TunnelReason::UnexpectedSettingsAck),
        (
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x3f, 0xe1, 0x3f]),
            TunnelReason::HpackTableSizeOverSetting,
        ),
        (
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x82, 0x20]),
            TunnelReason::HpackMisplacedSizeUpdate,
        ),
        (
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0xff, 0x00]),
            TunnelReason::HpackInvalidIndex,
        ),
        (
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                3,
                &[0x00, 0x81, 0x00, 0x00],
            ),
            TunnelReason::HpackInvalidHuffman,
        ),
    ];
    for (frames, reason) in cases {
        let script = connection([get(1), frames].concat());
        // The opening request, then the tunnel; frames after it change nothing.
        let mut with_tail = script.clone();
        with_tail.push(client(get(31)));
        let seen = run(with_tail);
        assert_eq!(
            seen.last(),
            Some(&Seen::Tunnel(reason)),
            "{reason:?}: {seen:?}"
        );
        assert_eq!(
            seen.first(),
            Some(&request(1, "GET", "/", &[], true)),
            "{reason:?}"
        );
    }
}

#[test]
fn prefaces_must_be_http2() {
    let not_preface = vec![client(b"GET / HTTP/1.1\r\n\r\n".to_vec())];
    assert_eq!(
        run(not_preface),
        [Seen::Tunnel(TunnelReason::ClientPreface)]
    );
    let no_settings = vec![client(
        [CLIENT_PREFACE.to_vec(), frame(PING, 0, 0, &[0; 8])].concat(),
    )];
    assert_eq!(
        run(no_settings),
        [Seen::Tunnel(TunnelReason::ClientFirstFrameNotSettings)]
    );
    let http1_server = vec![
        client(client_preface()),
        server(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
    ];
    assert_eq!(
        run(http1_server),
        [Seen::Tunnel(TunnelReason::ServerFirstFrameNotSettings)]
    );
}

#[test]
fn larger_frames_are_allowed_once_the_primary_allows_them() {
    let big = vec![7u8; 20_000];
    let frames = [
        frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/", &[])),
        frame(DATA, END_STREAM, 1, &big),
    ]
    .concat();
    let script = [
        client(client_preface()),
        // Announced, not yet acknowledged: the client may already use it.
        server(settings(&[(0x5, 1 << 20)])),
        client(frames),
    ];
    let seen = super::decode_chunks(
        H2Limits::default(),
        script.iter().map(|(p, c)| (*p, &c[..])),
    );
    assert_eq!(
        seen,
        [
            request(1, "POST", "/", &[], false),
            data_seen(1, &big, true)
        ]
    );
}

#[test]
fn table_size_follows_settings_and_their_acknowledgement() {
    let get = |stream, prefix: &[u8]| {
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &[prefix, &request_block("GET", "/", &[])].concat(),
        )
    };
    // 8192 announced: usable before the acknowledgement.
    let script = vec![
        client(client_preface()),
        server(settings(&[(0x1, 8192)])),
        client([get(1, &[0x3f, 0xe1, 0x3f]), settings_ack(), get(3, &[])].concat()),
    ];
    assert_eq!(
        run(script),
        [
            request(1, "GET", "/", &[], true),
            request(3, "GET", "/", &[], true)
        ]
    );
    // Lowered to 0: before the acknowledgement the old size stands; after it, the client must
    // have shrunk its table.
    let lowered = |after_ack: Vec<u8>| {
        vec![
            client(client_preface()),
            server(settings(&[(0x1, 0)])),
            client([get(1, &[]), settings_ack(), after_ack].concat()),
        ]
    };
    assert_eq!(
        run(lowered(get(3, &[0x20]))),
        [
            request(1, "GET", "/", &[], true),
            request(3, "GET", "/", &[], true)
        ]
    );
    assert_eq!(
        run(lowered(get(3, &[]))),
        [
            request(1, "GET", "/", &[], true),
            Seen::Tunnel(TunnelReason::HpackTableSizeOverSetting)
        ]
    );
}

#[test]
fn limits_end_in_a_tunnel_or_skip() {
    let limits = H2Limits {
        max_header_bytes: 200,
        max_streams: 2,
        max_table_size: 4096,
        ..H2Limits::default()
    };
    let script = |frames: Vec<u8>| connection(frames);
    let post = |stream| {
        frame(
            HEADERS,
            END_HEADERS,
            stream,
            &request_block("POST", "/", &[]),
        )
    };
    let seen = decode_every_way(limits, &script([post(1), post(3), post(5)].concat()));
    assert_eq!(
        seen.last(),
        Some(&Seen::Tunnel(TunnelReason::TooManyStreams))
    );

    let long = "v".repeat(300);
    let seen = decode_every_way(
        limits,
        &script(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block("GET", "/", &[("x", &long)]),
        )),
    );
    assert_eq!(seen, [Seen::Tunnel(TunnelReason::HeaderBlockTooLarge)]);

    // A small block that decodes large: a 150-byte entry referenced again and again.
    let entry = indexed_literal("x", &"v".repeat(100));
    let bomb = [request_block("GET", "/", &[]), entry, vec![0xbe; 20]].concat();
    let seen = decode_every_way(
        limits,
        &script(
            [
                frame(HEADERS, END_HEADERS | END_STREAM, 1, &bomb),
                frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    3,
                    &request_block("GET", "/", &[]),
                ),
            ]
            .concat(),
        ),
    );
    assert_eq!(
        seen,
        [
            Seen::Skipped {
                stream: 1,
                reason: SkipReason::HeaderListTooLarge,
            },
            request(3, "GET", "/", &[], true),
        ]
    );
}

#[test]
fn primary_reset_of_an_unopened_stream_is_not_followed() {
    let script = vec![
        client(client_preface()),
        server([settings(&[]), frame(RST_STREAM, 0, 1, &[0, 0, 0, 7])].concat()),
    ];
    assert_eq!(
        run(script),
        [Seen::Tunnel(TunnelReason::ServerProtocolError)]
    );
}

#[test]
fn goaway_with_an_error_abandons_every_open_request() {
    let script = vec![
        client(client_preface()),
        server(settings(&[])),
        client(frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("POST", "/", &[]),
        )),
        server(frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 1])),
        client(frame(DATA, END_STREAM, 1, b"too late")),
    ];
    assert_eq!(
        run(script),
        [
            request(1, "POST", "/", &[], false),
            Seen::GoAway {
                by: Peer::Server,
                last: 1,
                code: 1,
            },
        ]
    );
}

#[test]
fn between_frames_nothing_is_half_read() {
    let mut decoder = crate::http::h2::H2Decoder::new(H2Limits::default());
    let mut events = Vec::new();
    let headers = frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/", &[]));
    decoder.feed_client(&client_preface(), &mut events);
    decoder.feed_server(&settings(&[]), &mut events);
    decoder.feed_client(&headers[..headers.len() - 3], &mut events);
    assert!(!decoder.is_between_frames(), "a field block is in progress");
    decoder.feed_client(&headers[headers.len() - 3..], &mut events);
    assert!(decoder.is_between_frames());
    assert_eq!(decoder.open_streams(), 1);
    decoder.feed_client(&frame(DATA, END_STREAM, 1, b"x"), &mut events);
    assert!(decoder.is_between_frames());
    assert_eq!(decoder.open_streams(), 0);
    assert!(!decoder.is_tunnel());
}

/// Found by `h2_differential`: what h2's server accepts and refuses in names and targets.
#[test]
fn names_and_targets_are_judged_as_h2_judges_them() {
    let mut path = request_block("GET", "/ok", &[]);
    // `:path` of "/a#" then a byte that is not UTF-8: h2 fails the connection on it.
    let bad_path = [
        block(&[(":method", "GET"), (":scheme", "http")]),
        vec![0x00, 0x05],
        b":path".to_vec(),
        vec![0x04, b'/', b'a', b'#', 0xc5],
    ]
    .concat();
    path.extend(literal("x-a\"b", "1"));
    let frames = [
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &bad_path),
        frame(HEADERS, END_HEADERS | END_STREAM, 3, &path),
    ]
    .concat();
    assert_eq!(
        run(connection(frames)),
        [
            Seen::Skipped {
                stream: 1,
                reason: SkipReason::InvalidTarget,
            },
            request(3, "GET", "/ok", &[("x-a\"b", "1")], true),
        ]
    );
}
