//! The behaviour table: one test per stream of answers, named for what the framer makes of it.
//!
//! Each case gives the requests announced before the stream (`GET` = a plain request; `HEAD`,
//! `CONNECT`, `UPGRADE`, `CLOSE` = a request that closes the connection), whether the primary
//! closes after it (`eof`), and the expected frames; each is checked whole, split at every byte
//! boundary and byte by byte. The limits are small (512 bytes, 8 fields) so that the limit cases
//! stay short. References are to RFC 9112 unless said otherwise.

use super::{frame_every_way, Event, Expected, ResponseBody, ResponseGiveUp, Setup};
use crate::http::FramingLimits;
use ResponseGiveUp::*;

const LIMITS: FramingLimits = FramingLimits {
    max_header_bytes: 512,
    max_headers: 8,
};
const GET: Expected = Expected::plain();
const HEAD: Expected = Expected {
    head: true,
    ..Expected::plain()
};
const CONNECT: Expected = Expected {
    connect: true,
    ..Expected::plain()
};
const UPGRADE: Expected = Expected {
    upgrade: true,
    ..Expected::plain()
};
const CLOSE: Expected = Expected {
    keeps_connection_open: false,
    ..Expected::plain()
};
const NO_BODY: ResponseBody = ResponseBody::None;
const CHUNKED: ResponseBody = ResponseBody::Chunked;
const UNTIL_CLOSE: ResponseBody = ResponseBody::UntilClose;
const END: Event = Event::End(true);
const END_CLOSE: Event = Event::End(false);

fn head(status: u16, body: ResponseBody) -> Event {
    Event::Head {
        status,
        body,
        reusable: true,
    }
}

/// A head after which the connection closes.
fn last(status: u16, body: ResponseBody) -> Event {
    Event::Head {
        status,
        body,
        reusable: false,
    }
}

fn cl(length: u64) -> ResponseBody {
    ResponseBody::ContentLength(length)
}

fn body(bytes: &[u8]) -> Event {
    Event::Body(bytes.to_vec())
}

fn chunking(bytes: &[u8]) -> Event {
    Event::Chunking(bytes.to_vec())
}

fn give_up(reason: ResponseGiveUp) -> Event {
    Event::GiveUp(reason)
}

/// `HTTP/1.1 200 OK` with the given extra field lines, then `rest`.
fn ok(fields: &str, rest: &[u8]) -> Vec<u8> {
    [format!("HTTP/1.1 200 OK\r\n{fields}\r\n").as_bytes(), rest].concat()
}

fn check(expected: &[Expected], opaque: bool, eof: bool, input: &[u8], frames: &[Event]) {
    let setup = Setup {
        limits: LIMITS,
        expected,
        opaque,
        eof,
    };
    assert_eq!(
        frame_every_way(setup, input),
        frames,
        "input: {:?}",
        String::from_utf8_lossy(input)
    );
}

macro_rules! cases {
    ($($name:ident: [$($request:expr),*] $(+ $flag:ident)* $input:expr => [$($frame:expr),* $(,)?];)*) => {
        $(
            #[test]
            fn $name() {
                let flags: &[&str] = &[$(stringify!($flag)),*];
                let (opaque, eof) = (flags.contains(&"opaque"), flags.contains(&"eof"));
                check(&[$($request),*], opaque, eof, &$input[..], &[$($frame),*]);
            }
        )*
    };
}

// Every way of delimiting a body (section 6.3).
cases! {
    content_length_body_is_framed:
        [GET] b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        => [head(200, cl(5)), body(b"hello"), END];
    content_length_zero_ends_with_the_head:
        [GET] ok("Content-Length: 0\r\n", b"") => [head(200, cl(0)), END];
    content_length_with_leading_zeros_and_whitespace_is_decimal:
        [GET] ok("Content-Length:  005 \t\r\n", b"hello") => [head(200, cl(5)), body(b"hello"), END];
    equal_content_lengths_are_one_length:
        [GET] ok("Content-Length: 3, 3\r\nContent-Length: 003\r\n", b"abc")
        => [head(200, cl(3)), body(b"abc"), END];
    an_answer_inside_a_content_length_body_is_body:
        [GET, GET] ok("Content-Length: 19\r\n", b"HTTP/1.1 200 OK\r\n\r\n")
        => [head(200, cl(19)), body(b"HTTP/1.1 200 OK\r\n\r\n"), END];
    chunked_payload_and_coding_are_told_apart:
        [GET] ok("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"5\r\n"), body(b"hello"), chunking(b"\r\n6\r\n"),
            body(b" world"), chunking(b"\r\n0\r\n\r\n"), END];
    chunk_extensions_and_trailers_are_coding:
        [GET] ok("Transfer-Encoding: chunked\r\n",
                 b"5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"5;name=value;q=\"a b\"\r\n"), body(b"hello"),
            chunking(b"\r\n0;last\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n"), END];
    chunk_sizes_take_any_hex_case_and_leading_zeros:
        [GET] ok("Transfer-Encoding: chunked\r\n", b"00A\r\n0123456789\r\n0000\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"00A\r\n"), body(b"0123456789"), chunking(b"\r\n0000\r\n\r\n"), END];
    chunk_data_is_skipped_by_length_not_searched:
        [GET] ok("Transfer-Encoding: chunked\r\n", b"5\r\n0\r\n\r\n\r\n0\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"5\r\n"), body(b"0\r\n\r\n"), chunking(b"\r\n0\r\n\r\n"), END];
    chunked_as_the_last_of_several_codings_is_chunked:
        [GET] ok("Transfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n", b"1\r\nz\r\n0\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"1\r\n"), body(b"z"), chunking(b"\r\n0\r\n\r\n"), END];
    transfer_coding_without_chunked_runs_until_close:
        [GET] + eof ok("Transfer-Encoding: gzip\r\n", b"\x1f\x8b")
        => [last(200, UNTIL_CLOSE), body(b"\x1f\x8b"), END_CLOSE];
    no_length_runs_until_close:
        [GET] + eof ok("", b"all of this\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
        => [last(200, UNTIL_CLOSE), body(b"all of this\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), END_CLOSE];
    close_delimited_body_ends_only_at_eof:
        [GET] ok("", b"abc") => [last(200, UNTIL_CLOSE), body(b"abc")];
    close_delimited_empty_body_ends_at_eof:
        [GET] + eof ok("", b"") => [last(200, UNTIL_CLOSE), END_CLOSE];
}

// Answers without a body, whatever their fields say.
cases! {
    head_answer_has_no_body:
        [HEAD, GET] b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
        => [head(200, NO_BODY), END, head(200, cl(1)), body(b"x"), END];
    head_answer_with_chunked_has_no_body:
        [HEAD] ok("Transfer-Encoding: chunked\r\n", b"") => [head(200, NO_BODY), END];
    no_content_has_no_body:
        [GET] b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n" => [head(204, NO_BODY), END];
    not_modified_has_no_body:
        [GET] b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n" => [head(304, NO_BODY), END];
    framing_fields_of_an_answer_without_body_are_not_read:
        [HEAD] ok("Content-Length: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n", b"")
        => [head(200, NO_BODY), END];
}

// Interim answers (RFC 9110 section 15.2): they do not answer the request.
cases! {
    continue_then_final_answer:
        [GET] b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        => [Event::Interim(100), head(201, cl(2)), body(b"ok"), END];
    early_hints_with_fields_then_final_answer:
        [GET] b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nContent-Length: 9\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        => [Event::Interim(103), Event::Interim(100), head(204, NO_BODY), END];
    interim_answers_do_not_consume_the_request:
        [GET, HEAD] b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"
        => [Event::Interim(100), head(200, cl(1)), body(b"x"), END, Event::Interim(102), head(200, NO_BODY), END];
    interim_answer_without_request_gives_up:
        [] b"HTTP/1.1 100 Continue\r\n\r\n" => [give_up(ResponseBeforeRequest)];
}

// Answers after which the connection is another protocol.
cases! {
    switching_protocols_after_upgrade_ends_framing:
        [UPGRADE] b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"
        => [last(101, NO_BODY), END_CLOSE, give_up(Upgrade)];
    declined_upgrade_is_an_ordinary_answer:
        [UPGRADE, GET] b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nnoHTTP/1.1 204 No Content\r\n\r\n"
        => [head(200, cl(2)), body(b"no"), END, head(204, NO_BODY), END];
    switching_protocols_without_upgrade_gives_up:
        [GET] b"HTTP/1.1 101 Switching Protocols\r\n\r\n" => [give_up(UnrequestedUpgrade)];
    connect_success_opens_a_tunnel:
        [CONNECT] b"HTTP/1.1 200 Connection Established\r\nContent-Length: 5\r\n\r\n\x16\x03\x01"
        => [last(200, NO_BODY), END_CLOSE, give_up(ConnectTunnel)];
    refused_connect_is_an_ordinary_answer:
        [CONNECT, GET] b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\ndeniHTTP/1.1 204 No Content\r\n\r\n"
        => [head(407, cl(4)), body(b"deni"), END, head(204, NO_BODY), END];
}

// Pipelining and persistence (section 9).
cases! {
    pipelined_answers_of_every_kind_frame_in_order:
        [GET, HEAD, GET, GET] b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
          HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n\
          HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n\
          HTTP/1.1 304 Not Modified\r\n\r\n"
        => [head(200, cl(3)), body(b"abc"), END, head(200, NO_BODY), END,
            Event::Interim(100), head(200, CHUNKED), chunking(b"3\r\n"), body(b"xyz"), chunking(b"\r\n0\r\n\r\n"), END,
            head(304, NO_BODY), END];
    connection_close_ends_the_stream:
        [GET, GET] b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n"
        => [last(200, cl(1)), body(b"x"), END_CLOSE, give_up(DataAfterClose)];
    a_request_that_closes_makes_its_answer_the_last:
        [CLOSE, GET] b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxH"
        => [last(200, cl(1)), body(b"x"), END_CLOSE, give_up(DataAfterClose)];
    http10_answer_closes_unless_keep_alive:
        [GET] b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx" => [last(200, cl(1)), body(b"x"), END_CLOSE];
    http10_answer_with_keep_alive_persists:
        [GET, GET] b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nxHTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        => [head(200, cl(1)), body(b"x"), END, head(204, NO_BODY), END];
    incomplete_head_frames_nothing_yet:
        [GET] b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n" => [];
    incomplete_body_frames_head_and_what_arrived:
        [GET] ok("Content-Length: 10\r\n", b"hello") => [head(200, cl(10)), body(b"hello")];
    content_length_of_u64_max_is_accepted:
        [GET] ok("Content-Length: 18446744073709551615\r\n", b"abc")
        => [head(200, cl(u64::MAX)), body(b"abc")];
}

// The primary closing the connection.
cases! {
    eof_between_answers_is_clean:
        [GET] + eof ok("Content-Length: 1\r\n", b"x") => [head(200, cl(1)), body(b"x"), END];
    eof_inside_a_body_cuts_the_answer_off:
        [GET] + eof ok("Content-Length: 3\r\n", b"x") => [head(200, cl(3)), body(b"x"), give_up(AnswerCutOff)];
    eof_inside_a_chunked_body_cuts_the_answer_off:
        [GET] + eof ok("Transfer-Encoding: chunked\r\n", b"1\r\nx\r\n")
        => [head(200, CHUNKED), chunking(b"1\r\n"), body(b"x"), chunking(b"\r\n"), give_up(AnswerCutOff)];
    eof_inside_a_head_cuts_the_answer_off:
        [GET] + eof b"HTTP/1.1 200 OK\r\n" => [give_up(AnswerCutOff)];
    eof_with_requests_unanswered_says_so:
        [GET, GET] + eof ok("Content-Length: 0\r\n", b"") => [head(200, cl(0)), END, give_up(RequestsUnanswered)];
    eof_after_a_closing_answer_is_clean:
        [GET, GET] + eof ok("Connection: close\r\nContent-Length: 0\r\n", b"") => [last(200, cl(0)), END_CLOSE];
}

// Requests the request framer could not frame.
cases! {
    answers_to_framed_requests_come_before_the_opaque_rest:
        [GET] + opaque ok("Content-Length: 1\r\n", b"xHTTP/1.1 101 Switching Protocols\r\n\r\n")
        => [head(200, cl(1)), body(b"x"), END, give_up(RequestStreamOpaque)];
    opaque_request_stream_with_nothing_expected_gives_up_at_once:
        [] + opaque b"H" => [give_up(RequestStreamOpaque)];
    answer_before_its_request_gives_up:
        [] ok("Content-Length: 0\r\n", b"") => [give_up(ResponseBeforeRequest)];
    unsolicited_timeout_answer_gives_up:
        [GET] b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n"
        => [head(200, cl(0)), END, give_up(ResponseBeforeRequest)];
}

// Heads that are not framed.
cases! {
    other_protocol_gives_up:
        [GET] b"SSH-2.0-OpenSSH_9.2\r\n" => [give_up(NotHttp)];
    tls_record_gives_up_at_once:
        [GET] b"\x16\x03\x01\x00" => [give_up(NotHttp)];
    http2_status_line_is_unsupported:
        [GET] b"HTTP/2.0 200 OK\r\n\r\n" => [give_up(UnsupportedVersion)];
    http09_style_version_is_unsupported:
        [GET] b"HTTP/1.2 200 OK\r\n\r\n" => [give_up(UnsupportedVersion)];
    status_out_of_range_gives_up:
        [GET] b"HTTP/1.1 600 Nope\r\n\r\n" => [give_up(MalformedHead)];
    status_below_100_gives_up:
        [GET] b"HTTP/1.1 099 Nope\r\n\r\n" => [give_up(MalformedHead)];
    two_digit_status_gives_up:
        [GET] b"HTTP/1.1 20 OK\r\n\r\n" => [give_up(MalformedHead)];
    status_glued_to_reason_gives_up:
        [GET] b"HTTP/1.1 200OK\r\n\r\n" => [give_up(MalformedHead)];
    two_spaces_after_version_give_up:
        [GET] b"HTTP/1.1  200 OK\r\n\r\n" => [give_up(MalformedHead)];
    bare_lf_in_head_gives_up:
        [GET] b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n" => [give_up(MalformedHead)];
    bare_cr_in_head_gives_up:
        [GET] b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n" => [give_up(MalformedHead)];
    obs_fold_gives_up:
        [GET] ok("X: a\r\n b\r\n", b"") => [give_up(MalformedHead)];
    whitespace_before_colon_gives_up:
        [GET] ok("Content-Length : 0\r\n", b"") => [give_up(MalformedHead)];
    empty_line_before_status_line_gives_up:
        [GET] b"\r\nHTTP/1.1 200 OK\r\n\r\n" => [give_up(MalformedHead)];
    head_over_the_byte_limit_gives_up:
        [GET] ok(&format!("X: {}\r\n", "a".repeat(512)), b"") => [give_up(HeadTooLarge)];
    head_over_the_field_limit_gives_up:
        [GET] ok(&"X: a\r\n".repeat(9), b"") => [give_up(HeadTooLarge)];
}

// Bodies whose length is in doubt (section 6.3, RFC 9110 section 8.6).
cases! {
    conflicting_content_lengths_give_up:
        [GET] ok("Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd") => [give_up(ConflictingLength)];
    conflicting_content_length_list_gives_up:
        [GET] ok("Content-Length: 3, 4\r\n", b"abcd") => [give_up(ConflictingLength)];
    signed_content_length_gives_up:
        [GET] ok("Content-Length: +3\r\n", b"abc") => [give_up(InvalidContentLength)];
    empty_content_length_element_gives_up:
        [GET] ok("Content-Length: 3,\r\n", b"abc") => [give_up(InvalidContentLength)];
    overflowing_content_length_gives_up:
        [GET] ok("Content-Length: 18446744073709551616\r\n", b"") => [give_up(InvalidContentLength)];
    content_length_with_transfer_encoding_gives_up:
        [GET] ok("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")
        => [give_up(LengthWithTransferEncoding)];
    chunked_before_another_coding_gives_up:
        [GET] ok("Transfer-Encoding: chunked, gzip\r\n", b"") => [give_up(InvalidTransferEncoding)];
    chunked_twice_gives_up:
        [GET] ok("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"") => [give_up(InvalidTransferEncoding)];
    empty_coding_gives_up:
        [GET] ok("Transfer-Encoding: chunked,\r\n", b"") => [give_up(InvalidTransferEncoding)];
    coding_parameter_gives_up:
        [GET] ok("Transfer-Encoding: chunked;q=1\r\n", b"") => [give_up(InvalidTransferEncoding)];
    transfer_encoding_in_http10_gives_up:
        [GET] b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" => [give_up(InvalidTransferEncoding)];
}

// Chunked bodies that break the grammar (section 7.1).
cases! {
    chunk_size_with_whitespace_gives_up:
        [GET] ok("Transfer-Encoding: chunked\r\n", b"5 \r\nhello\r\n0\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"5"), give_up(BadChunk)];
    chunk_longer_than_its_size_gives_up:
        [GET] ok("Transfer-Encoding: chunked\r\n", b"3\r\nhello\r\n0\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"3\r\n"), body(b"hel"), give_up(BadChunk)];
    bare_lf_after_chunk_size_gives_up:
        [GET] ok("Transfer-Encoding: chunked\r\n", b"3\nabc\r\n0\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"3"), give_up(BadChunk)];
    malformed_trailer_gives_up:
        [GET] ok("Transfer-Encoding: chunked\r\n", b"0\r\nno colon\r\n\r\n")
        => [head(200, CHUNKED), chunking(b"0\r\nno "), give_up(BadChunk)];
    trailers_over_the_limit_give_up:
        [GET] ok("Transfer-Encoding: chunked\r\n", format!("0\r\n{}", "T: v\r\n".repeat(9)).as_bytes())
        => [head(200, CHUNKED), chunking(format!("0\r\n{}", "T: v\r\n".repeat(8)).as_bytes()), give_up(TrailersTooLarge)];
}
