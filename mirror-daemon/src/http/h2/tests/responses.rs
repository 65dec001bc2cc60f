//! Hand-written connections for the primary's side with its responses decoded: heads, interim
//! heads, bodies, trailers and Trailers-Only answers, the primary's HPACK table (RFC 7541's
//! response examples, pushes, the client's table size), what stops a response being described,
//! and the primary's errors that end in a tunnel.

use super::cases::{
    block, client, client_preface, connection, frame, indexed_literal, int, request, request_block,
    server, settings, settings_ack, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS,
    PADDED, PRIORITY_FLAG, PUSH_PROMISE, RST_STREAM,
};
use super::{decode_every_way, Seen};
use crate::http::h2::hpack::tests::{hex, rfc7541_responses, RFC7541_C5, RFC7541_C6};
use crate::http::h2::{H2Decoder, H2Limits, Peer, SkipReason, TunnelReason, CLIENT_PREFACE};

const RESPONSES: H2Limits = H2Limits {
    max_header_bytes: 64 * 1024,
    max_streams: 256,
    max_table_size: 64 * 1024,
    decode_responses: true,
};

fn run(script: Vec<(Peer, Vec<u8>)>) -> Vec<Seen> {
    run_with(RESPONSES, script)
}

fn run_with(limits: H2Limits, script: Vec<(Peer, Vec<u8>)>) -> Vec<Seen> {
    let seen = decode_every_way(limits, &script);
    let off = H2Limits {
        decode_responses: false,
        ..limits
    };
    let without = decode_every_way(off, &script);
    assert!(
        !without.iter().any(Seen::is_response),
        "responses reported though not asked for"
    );
    seen
}

/// [`connection`] with the client's frames, then the primary's in one chunk.
fn exchange(client_frames: Vec<u8>, server_frames: Vec<u8>) -> Vec<(Peer, Vec<u8>)> {
    let mut script = connection(client_frames);
    script.push(server(server_frames));
    script
}

/// A GET without body opening `stream`.
pub(super) fn get(stream: u32) -> Vec<u8> {
    frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        stream,
        &request_block("GET", "/", &[]),
    )
}

fn get_seen(stream: u32) -> Seen {
    request(stream, "GET", "/", &[], true)
}

fn status_block(status: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut all = vec![(":status", status)];
    all.extend_from_slice(fields);
    block(&all)
}

fn owned(fields: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn response(stream: u32, status: u16, fields: &[(&str, &str)], end_stream: bool) -> Seen {
    Seen::Response {
        stream,
        status,
        fields: owned(fields),
        end_stream,
    }
}

fn body(stream: u32, bytes: &[u8], end_stream: bool) -> Seen {
    Seen::ResponseData {
        stream,
        bytes: bytes.to_vec(),
        end_stream,
    }
}

fn trailers(stream: u32, fields: &[(&str, &str)]) -> Seen {
    Seen::ResponseTrailers {
        stream,
        fields: owned(fields),
    }
}

fn skipped(stream: u32, reason: SkipReason) -> Seen {
    Seen::ResponseSkipped { stream, reason }
}

/// An indexed field (RFC 7541 section 6.1).
fn indexed(index: usize) -> Vec<u8> {
    int(index, 7, 0x80)
}

/// A dynamic table size update (RFC 7541 section 6.3).
fn size_update(size: usize) -> Vec<u8> {
    int(size, 5, 0x20)
}

/// RFC 7541 C.5 and C.6 through the primary's side: the client sets a 256-byte table, the
/// primary acknowledges it and says so in its first block, then answers three requests with
/// the RFC's blocks (entries are evicted on the way).
#[test]
fn rfc7541_response_examples_decode_through_the_primarys_side() {
    let expected: Vec<Seen> = [1, 3, 5]
        .map(get_seen)
        .into_iter()
        .chain(
            rfc7541_responses()
                .iter()
                .zip([1, 3, 5])
                .map(|(fields, stream)| {
                    let status = fields[0].1.parse().expect("status");
                    let rest: Vec<(&str, &str)> =
                        fields[1..].iter().map(|(n, v)| (&n[..], &v[..])).collect();
                    response(stream, status, &rest, true)
                }),
        )
        .collect();
    for blocks in [RFC7541_C5, RFC7541_C6] {
        let script = |first_prefix: Vec<u8>| {
            let answers: Vec<u8> = blocks
                .iter()
                .zip([1, 3, 5])
                .enumerate()
                .flat_map(|(i, (hex_block, stream))| {
                    let prefix = if i == 0 { first_prefix.clone() } else { vec![] };
                    let payload = [prefix, hex(hex_block)].concat();
                    frame(HEADERS, END_HEADERS | END_STREAM, stream, &payload)
                })
                .collect();
            vec![
                client([&CLIENT_PREFACE[..], &settings(&[(0x1, 256)])].concat()),
                server([settings(&[]), settings_ack()].concat()),
                client([settings_ack(), get(1), get(3), get(5)].concat()),
                server(answers),
            ]
        };
        assert_eq!(run(script(size_update(256))), expected);
        // The client's 256 was acknowledged: a block on the initial 4096-byte table is not
        // allowed any more.
        let mut refused = expected[..3].to_vec();
        refused.push(Seen::Tunnel(TunnelReason::ServerHpackTableSizeOverSetting));
        assert_eq!(run(script(vec![])), refused);
    }
}

#[test]
fn grpc_unary_call_has_head_padded_body_and_trailers() {
    let request_fields = [("content-type", "application/grpc"), ("te", "trailers")];
    let call = [
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block("POST", "/pkg.Svc/Get", &request_fields),
        ),
        frame(DATA, END_STREAM, 1, b"\0\0\0\0\x02hi"),
    ]
    .concat();
    let answer = [
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &status_block("200", &[("content-type", "application/grpc")]),
        ),
        frame(
            DATA,
            PADDED,
            1,
            &[&[2u8][..], b"\0\0\0\0\x03", &[0, 0]].concat(),
        ),
        frame(DATA, 0, 1, b"ok!"),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &block(&[("grpc-status", "0"), ("grpc-message", "")]),
        ),
    ]
    .concat();
    assert_eq!(
        run(exchange(call, answer)),
        [
            request(1, "POST", "/pkg.Svc/Get", &request_fields, false),
            Seen::Data {
                stream: 1,
                bytes: b"\0\0\0\0\x02hi".to_vec(),
                end_stream: true
            },
            response(1, 200, &[("content-type", "application/grpc")], false),
            body(1, b"\0\0\0\0\x03ok!", false),
            trailers(1, &[("grpc-status", "0"), ("grpc-message", "")]),
        ]
    );
}

#[test]
fn trailers_only_response_ends_with_its_head() {
    let fields = [
        ("content-type", "application/grpc"),
        ("grpc-status", "5"),
        ("grpc-message", "not found"),
    ];
    let answer = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &status_block("200", &fields),
    );
    assert_eq!(
        run(exchange(get(1), answer)),
        [get_seen(1), response(1, 200, &fields, true)]
    );
}

#[test]
fn interim_heads_come_before_the_final_one() {
    let answers = [
        frame(HEADERS, END_HEADERS, 1, &status_block("100", &[])),
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &status_block("103", &[("link", "</a.css>; rel=preload")]),
        ),
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &status_block("200", &[("content-length", "5")]),
        ),
        frame(DATA, END_STREAM, 1, b"hello"),
        // An interim head cannot end the stream.
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &status_block("100", &[]),
        ),
        frame(DATA, END_STREAM, 3, b"not described"),
    ]
    .concat();
    assert_eq!(
        run(exchange([get(1), get(3)].concat(), answers)),
        [
            get_seen(1),
            get_seen(3),
            Seen::Interim {
                stream: 1,
                status: 100,
                fields: vec![]
            },
            Seen::Interim {
                stream: 1,
                status: 103,
                fields: owned(&[("link", "</a.css>; rel=preload")])
            },
            response(1, 200, &[("content-length", "5")], false),
            body(1, b"hello", true),
            skipped(3, SkipReason::MalformedInterim),
        ]
    );
}

#[test]
fn padded_prioritised_head_with_continuations() {
    let head = status_block("200", &[("x-long", &"v".repeat(300)), ("x-b", "2")]);
    let (first, rest) = head.split_at(10);
    let (second, third) = rest.split_at(200);
    let answers = [
        frame(
            HEADERS,
            PADDED | PRIORITY_FLAG | END_STREAM,
            1,
            &[&[3u8][..], &[0, 0, 0, 0, 16], first, &[0, 0, 0]].concat(),
        ),
        frame(CONTINUATION, 0, 1, second),
        frame(CONTINUATION, END_HEADERS, 1, third),
    ]
    .concat();
    assert_eq!(
        run(exchange(get(1), answers)),
        [
            get_seen(1),
            response(1, 200, &[("x-long", &"v".repeat(300)), ("x-b", "2")], true)
        ]
    );
}

/// Blocks the decoder does not report still feed the primary's table: a response to a request
/// it skipped, a PUSH_PROMISE and the pushed response.
#[test]
fn unreported_and_pushed_blocks_keep_the_table() {
    let connect = frame(
        HEADERS,
        END_HEADERS,
        1,
        &block(&[(":method", "CONNECT"), (":authority", "example.com:443")]),
    );
    let answers = [
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &[status_block("200", &[]), indexed_literal("x-a", "1")].concat(),
        ),
        frame(DATA, 0, 1, b"tunnelled bytes"),
        frame(
            PUSH_PROMISE,
            END_HEADERS,
            3,
            &[
                &[0u8, 0, 0, 2][..],
                &request_block("GET", "/pushed", &[]),
                &indexed_literal("x-promise", "p"),
            ]
            .concat(),
        ),
        frame(
            HEADERS,
            END_HEADERS,
            2,
            &[status_block("200", &[]), indexed_literal("x-pushed", "q")].concat(),
        ),
        frame(DATA, END_STREAM, 2, b"pushed body"),
        // Newest first: x-pushed, x-promise, x-a.
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &[
                status_block("200", &[]),
                indexed(62),
                indexed(63),
                indexed(64),
            ]
            .concat(),
        ),
    ]
    .concat();
    assert_eq!(
        run(exchange([connect, get(3)].concat(), answers)),
        [
            Seen::Skipped {
                stream: 1,
                reason: SkipReason::Connect
            },
            get_seen(3),
            response(
                3,
                200,
                &[("x-pushed", "q"), ("x-promise", "p"), ("x-a", "1")],
                true
            ),
        ]
    );
}

#[test]
fn resets_and_skipped_requests_end_the_response() {
    let post = |stream| {
        frame(
            HEADERS,
            END_HEADERS,
            stream,
            &request_block("POST", "/", &[("content-length", "2")]),
        )
    };
    let head = |stream| frame(HEADERS, END_HEADERS, stream, &status_block("200", &[]));
    let script = vec![
        client(client_preface()),
        server([settings(&[]), settings_ack()].concat()),
        client([settings_ack(), post(1), post(3), post(5)].concat()),
        server([head(1), head(3), head(5)].concat()),
        // The client cancels 1; the primary resets 3; 5's body overruns its Content-Length.
        client(
            [
                frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]),
                frame(DATA, 0, 5, b"abc"),
            ]
            .concat(),
        ),
        server(
            [
                frame(RST_STREAM, 0, 3, &[0, 0, 0, 2]),
                frame(DATA, END_STREAM, 1, b"late"),
                frame(DATA, END_STREAM, 5, b"late"),
            ]
            .concat(),
        ),
    ];
    let post_seen = |stream| request(stream, "POST", "/", &[("content-length", "2")], false);
    assert_eq!(
        run(script),
        [
            post_seen(1),
            post_seen(3),
            post_seen(5),
            response(1, 200, &[], false),
            response(3, 200, &[], false),
            response(5, 200, &[], false),
            Seen::Reset {
                stream: 1,
                by: Peer::Client,
                code: 8
            },
            Seen::Skipped {
                stream: 5,
                reason: SkipReason::ContentLengthMismatch
            },
            Seen::Reset {
                stream: 3,
                by: Peer::Server,
                code: 2
            },
        ]
    );
}

#[test]
fn content_length_is_held_to_the_body_but_not_for_head_204_and_304() {
    let head_request = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        9,
        &request_block("HEAD", "/", &[]),
    );
    let head_request_again = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        11,
        &request_block("HEAD", "/", &[]),
    );
    let length = |n: &'static str| [("content-length", n)];
    let answers = [
        // Overrun.
        frame(HEADERS, END_HEADERS, 1, &status_block("200", &length("3"))),
        frame(DATA, END_STREAM, 1, b"abcd"),
        // Ended short, by the head and by trailers.
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &status_block("200", &length("5")),
        ),
        frame(HEADERS, END_HEADERS, 5, &status_block("200", &length("5"))),
        frame(DATA, 0, 5, b"abc"),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            5,
            &block(&[("x-t", "1")]),
        ),
        // 204 may announce a length it does not send, as a response to HEAD does.
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            7,
            &status_block("204", &length("5")),
        ),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            9,
            &status_block("200", &length("10")),
        ),
        // But an answer to HEAD has no body.
        frame(HEADERS, END_HEADERS, 11, &status_block("200", &length("1"))),
        frame(DATA, END_STREAM, 11, b"x"),
    ]
    .concat();
    let requests = [
        get(1),
        get(3),
        get(5),
        get(7),
        head_request,
        head_request_again,
    ]
    .concat();
    let head_seen = |stream| request(stream, "HEAD", "/", &[], true);
    assert_eq!(
        run(exchange(requests, answers)),
        [
            get_seen(1),
            get_seen(3),
            get_seen(5),
            get_seen(7),
            head_seen(9),
            head_seen(11),
            response(1, 200, &length("3"), false),
            skipped(1, SkipReason::ContentLengthMismatch),
            skipped(3, SkipReason::ContentLengthMismatch),
            response(5, 200, &length("5"), false),
            body(5, b"abc", false),
            skipped(5, SkipReason::ContentLengthMismatch),
            response(7, 204, &length("5"), true),
            response(9, 200, &length("10"), true),
            response(11, 200, &length("1"), false),
            skipped(11, SkipReason::ContentLengthMismatch),
        ]
    );
}

#[test]
fn malformed_heads_and_trailers_skip_the_response_only() {
    let answers = [
        frame(HEADERS, END_HEADERS, 1, &block(&[("x-a", "1")])),
        frame(HEADERS, END_HEADERS, 3, &status_block("2000", &[])),
        frame(
            HEADERS,
            END_HEADERS,
            5,
            &status_block("200", &[("connection", "close")]),
        ),
        frame(HEADERS, END_HEADERS, 7, &status_block("200", &[])),
        frame(HEADERS, END_HEADERS, 7, &block(&[("x-t", "1")])),
        frame(HEADERS, END_HEADERS, 9, &status_block("200", &[])),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            9,
            &status_block("200", &[]),
        ),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            11,
            &status_block("200", &[("x-after", "still decoded")]),
        ),
    ]
    .concat();
    let requests = [1, 3, 5, 7, 9, 11].map(get).concat();
    let mut expected: Vec<Seen> = [1, 3, 5, 7, 9, 11].map(get_seen).to_vec();
    expected.extend([
        skipped(1, SkipReason::MissingPseudoHeader),
        skipped(3, SkipReason::InvalidStatus),
        skipped(5, SkipReason::ConnectionSpecificField),
        response(7, 200, &[], false),
        skipped(7, SkipReason::TrailersWithoutEndStream),
        response(9, 200, &[], false),
        skipped(9, SkipReason::PseudoHeaderInTrailers),
        response(11, 200, &[("x-after", "still decoded")], true),
    ]);
    assert_eq!(run(exchange(requests, answers)), expected);
}

#[test]
fn goaway_from_the_primary_drops_the_responses_above_its_last_stream() {
    let head = |stream| {
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &status_block("200", &[]),
        )
    };
    let answers = [
        frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]),
        head(1),
        head(3),
    ]
    .concat();
    assert_eq!(
        run(exchange([get(1), get(3)].concat(), answers)),
        [
            get_seen(1),
            get_seen(3),
            Seen::GoAway {
                by: Peer::Server,
                last: 1,
                code: 0
            },
            response(1, 200, &[], true),
        ]
    );
    // With an error code too: streams up to the last may still be answered (RFC 9113 section
    // 6.8), and h2's client takes those answers (fuzz finding 7, h2_differential).
    let closing = [frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 2]), head(1)].concat();
    assert_eq!(
        run(exchange(get(1), closing)),
        [
            get_seen(1),
            Seen::GoAway {
                by: Peer::Server,
                last: 3,
                code: 2
            },
            response(1, 200, &[], true),
        ]
    );
}

/// The client's SETTINGS_HEADER_TABLE_SIZE bounds the primary's table: before its
/// acknowledgement the old size stands, after it the primary must have shrunk its table.
#[test]
fn client_table_size_change_binds_the_primary_after_its_acknowledgement() {
    let answer = |stream, prefix: Vec<u8>| {
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &[
                prefix,
                status_block("200", &[]),
                indexed_literal("x-a", "1"),
            ]
            .concat(),
        )
    };
    let script = |after_ack: Vec<u8>| {
        vec![
            client(client_preface()),
            server([settings(&[]), settings_ack()].concat()),
            client([settings_ack(), get(1), settings(&[(0x1, 0)]), get(3)].concat()),
            // Not acknowledged yet: the 4096-byte table still stands.
            server(answer(1, vec![])),
            server([settings_ack(), after_ack].concat()),
        ]
    };
    let reported = vec![
        get_seen(1),
        get_seen(3),
        response(1, 200, &[("x-a", "1")], true),
    ];
    let mut shrunk = reported.clone();
    shrunk.push(response(3, 200, &[("x-a", "1")], true));
    assert_eq!(run(script(answer(3, size_update(0)))), shrunk);
    let mut refused = reported;
    refused.push(Seen::Tunnel(TunnelReason::ServerHpackTableSizeOverSetting));
    assert_eq!(run(script(answer(3, vec![]))), refused);
    // A size update above the client's setting.
    let over = [frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &[size_update(8192), status_block("200", &[])].concat(),
    )]
    .concat();
    assert_eq!(
        run(exchange(get(1), over)),
        [
            get_seen(1),
            Seen::Tunnel(TunnelReason::ServerHpackTableSizeOverSetting)
        ]
    );
}

#[test]
fn primary_errors_end_in_a_tunnel() {
    let head = frame(HEADERS, END_HEADERS, 1, &status_block("200", &[]));
    let cases: Vec<(Vec<u8>, TunnelReason)> = vec![
        (frame(DATA, 0, 1, b"x"), TunnelReason::ServerProtocolError),
        (
            frame(HEADERS, END_HEADERS, 5, &status_block("200", &[])),
            TunnelReason::ServerProtocolError,
        ),
        (
            frame(HEADERS, END_HEADERS, 0, &status_block("200", &[])),
            TunnelReason::ServerProtocolError,
        ),
        (
            [
                frame(HEADERS, 0, 1, &status_block("200", &[])),
                frame(DATA, 0, 1, b"x"),
            ]
            .concat(),
            TunnelReason::ServerProtocolError,
        ),
        (
            frame(CONTINUATION, END_HEADERS, 1, &[]),
            TunnelReason::ServerProtocolError,
        ),
        (
            frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 3]),
            TunnelReason::ServerProtocolError,
        ),
        (
            frame(DATA, PADDED, 1, &[]),
            TunnelReason::ServerProtocolError,
        ),
        (
            frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 1, &[0, 0, 0, 1, 16]),
            TunnelReason::ServerProtocolError,
        ),
        (
            frame(HEADERS, END_HEADERS, 1, &indexed(70)),
            TunnelReason::ServerHpackInvalid,
        ),
        (
            frame(HEADERS, END_HEADERS, 1, &[0x40, 0x05, b'a']),
            TunnelReason::ServerHpackInvalid,
        ),
    ];
    for (answers, reason) in cases {
        assert_eq!(
            run(exchange(get(1), answers)),
            [get_seen(1), Seen::Tunnel(reason)],
            "{reason:?}"
        );
    }
    // Padding longer than the frame, after the head.
    assert_eq!(
        run(exchange(
            get(1),
            [head, frame(DATA, PADDED, 1, &[5, 0])].concat()
        )),
        [
            get_seen(1),
            response(1, 200, &[], false),
            Seen::Tunnel(TunnelReason::ServerProtocolError)
        ]
    );
}

#[test]
fn limits_skip_responses_or_end_in_a_tunnel() {
    let limits = H2Limits {
        max_header_bytes: 200,
        max_streams: 2,
        ..RESPONSES
    };
    // Two responses awaited at most: the third request's is not followed.
    let answers = [1, 3, 5]
        .map(|stream| {
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                stream,
                &status_block("200", &[]),
            )
        })
        .concat();
    assert_eq!(
        run_with(limits, exchange([get(1), get(3), get(5)].concat(), answers)),
        [
            get_seen(1),
            get_seen(3),
            get_seen(5),
            skipped(5, SkipReason::TooManyResponses),
            response(1, 200, &[], true),
            response(3, 200, &[], true),
        ]
    );
    // A block that decodes beyond the limit skips the response; one beyond it on the wire is
    // a tunnel.
    let big_decoded = [
        status_block("200", &[]),
        indexed_literal("x-a", &"a".repeat(100)),
        indexed(62),
    ]
    .concat();
    assert!(big_decoded.len() < 200);
    let answers = [
        frame(HEADERS, END_HEADERS | END_STREAM, 1, &big_decoded),
        frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &status_block("200", &[("x-b", &"b".repeat(200))]),
        ),
    ]
    .concat();
    assert_eq!(
        run_with(limits, exchange([get(1), get(3)].concat(), answers)),
        [
            get_seen(1),
            get_seen(3),
            skipped(1, SkipReason::HeaderListTooLarge),
            Seen::Tunnel(TunnelReason::ServerHeaderBlockTooLarge),
        ]
    );
}

/// Nothing is kept for a response once it ended; an idle connection holds only its tables.
#[test]
fn response_state_lives_only_while_a_response_is_in_progress() {
    let mut decoder = H2Decoder::new(RESPONSES);
    let mut events = Vec::new();
    decoder.feed_client(&client_preface(), &mut events);
    decoder.feed_server(&[settings(&[]), settings_ack()].concat(), &mut events);
    decoder.feed_client(&[settings_ack(), get(1), get(3)].concat(), &mut events);
    assert_eq!(decoder.awaited_responses(), 2);
    let head = frame(HEADERS, END_HEADERS, 1, &status_block("200", &[]));
    decoder.feed_server(&head[..head.len() - 1], &mut events);
    assert!(!decoder.is_between_frames(), "a field block is in progress");
    decoder.feed_server(&head[head.len() - 1..], &mut events);
    assert!(decoder.is_between_frames());
    decoder.feed_server(&frame(DATA, END_STREAM, 1, b"done"), &mut events);
    assert_eq!(decoder.awaited_responses(), 1);
    decoder.feed_client(&frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]), &mut events);
    assert_eq!(decoder.awaited_responses(), 0);
    assert!(decoder.is_between_frames());
    assert!(!decoder.is_tunnel(), "{events:?}");
    assert_eq!(
        H2Decoder::new(H2Limits::default()).awaited_responses(),
        0,
        "off by default"
    );
}
