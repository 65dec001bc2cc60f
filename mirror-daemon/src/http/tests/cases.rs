//! The behaviour table: one test per stream, named for what the framer does with it.
//!
//! Each case lists the expected frames (heads by method, target and body kind; bodies as the
//! bytes they cover; ends; the tunnel reason) and is checked whole, split at every byte boundary
//! and byte by byte. The limits are small (512 bytes, 8 fields) so that the limit cases stay
//! short. References are to RFC 9112 unless said otherwise.

use super::{frame_every_way, BodyKind, Event, FramingLimits, TunnelReason};
use TunnelReason::*;

const LIMITS: FramingLimits = FramingLimits {
    max_header_bytes: 512,
    max_headers: 8,
};
const NO_BODY: BodyKind = BodyKind::None;
const CHUNKED: BodyKind = BodyKind::Chunked;
const END: Brief = Brief::End;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Brief {
    Head(String, String, BodyKind),
    Body(Vec<u8>),
    End,
    Tunnel(TunnelReason),
}

fn head(method: &str, target: &str, body: BodyKind) -> Brief {
    Brief::Head(method.to_owned(), target.to_owned(), body)
}

fn cl(length: u64) -> BodyKind {
    BodyKind::ContentLength(length)
}

fn body(bytes: &[u8]) -> Brief {
    Brief::Body(bytes.to_vec())
}

fn tunnel(reason: TunnelReason) -> Brief {
    Brief::Tunnel(reason)
}

/// `POST /` with `Host` and the given extra field lines, then `rest`.
fn post(fields: &str, rest: &[u8]) -> Vec<u8> {
    [
        format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").as_bytes(),
        rest,
    ]
    .concat()
}

/// A chunked `POST /` whose body bytes are `body`.
fn chunked(body: &[u8]) -> Vec<u8> {
    post("Transfer-Encoding: chunked\r\n", body)
}

/// `GET /` with a field `X` padded so the whole head is `len` bytes.
fn head_of_len(len: usize) -> Vec<u8> {
    let start = b"GET / HTTP/1.1\r\nHost: a\r\nX: ";
    let padding = len - start.len() - 4;
    [&start[..], &vec![b'a'; padding], b"\r\n\r\n"].concat()
}

/// `GET /` with `count` fields.
fn head_with_fields(count: usize) -> Vec<u8> {
    let fields: String = (0..count).map(|i| format!("F{i}: v\r\n")).collect();
    format!("GET / HTTP/1.1\r\n{fields}\r\n").into_bytes()
}

fn check(input: &[u8], expected: &[Brief]) {
    let expected: Vec<Brief> = expected
        .iter()
        .filter(|frame| !matches!(frame, Brief::Body(bytes) if bytes.is_empty()))
        .cloned()
        .collect();
    let actual: Vec<Brief> = frame_every_way(LIMITS, input)
        .into_iter()
        .map(|event| match event {
            Event::Head {
                method,
                target,
                body,
                ..
            } => Brief::Head(method, target, body),
            Event::Body(bytes) => Brief::Body(bytes),
            Event::End => Brief::End,
            Event::Tunnel(reason) => Brief::Tunnel(reason),
        })
        .collect();
    assert_eq!(
        actual,
        expected,
        "input: {:?}",
        String::from_utf8_lossy(input)
    );
}

macro_rules! cases {
    ($($name:ident: $input:expr => [$($frame:expr),* $(,)?];)*) => {
        $(
            #[test]
            fn $name() {
                check(&$input[..], &[$($frame),*]);
            }
        )*
    };
}

// Requests that frame: keep-alive, pipelining, each way of delimiting a body.
cases! {
    request_without_body_frames_head_and_end:
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" => [head("GET", "/", NO_BODY), END];
    content_length_body_is_framed:
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        => [head("POST", "/upload", cl(5)), body(b"hello"), END];
    content_length_zero_ends_with_the_head:
        post("Content-Length: 0\r\n", b"") => [head("POST", "/", cl(0)), END];
    keep_alive_requests_frame_one_after_another:
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        => [head("GET", "/a", NO_BODY), END, head("GET", "/b", NO_BODY), END];
    pipelined_requests_with_every_body_kind_frame_in_order:
        b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
          POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
        => [head("POST", "/1", cl(3)), body(b"abc"), END,
            head("POST", "/2", CHUNKED), body(b"3\r\nxyz\r\n0\r\n\r\n"), END,
            head("GET", "/3", NO_BODY), END];
    request_inside_a_content_length_body_is_body:
        post("Content-Length: 32\r\n", b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
        => [head("POST", "/", cl(32)), body(b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"), END];
    incomplete_head_frames_nothing_yet:
        b"GET / HTTP/1.1\r\nHost: a\r\n" => [];
    incomplete_body_frames_head_and_what_arrived:
        post("Content-Length: 10\r\n", b"hello") => [head("POST", "/", cl(10)), body(b"hello")];
    chunked_body_is_framed_as_on_the_wire:
        chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        => [head("POST", "/", CHUNKED), body(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), END];
    chunk_sizes_take_any_hex_case_and_leading_zeros:
        chunked(b"a\r\n0123456789\r\n00B\r\nabcdefghijk\r\n0000\r\n\r\n")
        => [head("POST", "/", CHUNKED), body(b"a\r\n0123456789\r\n00B\r\nabcdefghijk\r\n0000\r\n\r\n"), END];
    chunk_extensions_are_framed_as_body:
        chunked(b"5;name=value;flag;q=\"a b;c\"\r\nhello\r\n0;last=1\r\n\r\n")
        => [head("POST", "/", CHUNKED), body(b"5;name=value;flag;q=\"a b;c\"\r\nhello\r\n0;last=1\r\n\r\n"), END];
    chunked_trailers_are_framed_as_body:
        chunked(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\nX-Tab:\tv w\r\n\r\n")
        => [head("POST", "/", CHUNKED), body(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\nX-Tab:\tv w\r\n\r\n"), END];
    chunk_data_is_skipped_by_length_not_searched:
        chunked(b"9\r\n0\r\n\r\nGET \r\n0\r\n\r\n")
        => [head("POST", "/", CHUNKED), body(b"9\r\n0\r\n\r\nGET \r\n0\r\n\r\n"), END];
    chunked_body_on_get_is_framed:
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        => [head("GET", "/", CHUNKED), body(b"0\r\n\r\n"), END];
    transfer_coding_name_is_case_insensitive:
        post("Transfer-Encoding: ChUnKeD\r\n", b"0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\n\r\n"), END];
    // RFC 9110 5.5: OWS = *( SP / HTAB ) around a field value; every conforming parser strips it.
    tab_before_chunked_is_optional_whitespace:
        post("Transfer-Encoding:\tchunked\r\n", b"0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\n\r\n"), END];
    whitespace_after_chunked_is_optional_whitespace:
        post("Transfer-Encoding: chunked \t\r\n", b"0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\n\r\n"), END];
    no_whitespace_after_colon_is_valid:
        post("Transfer-Encoding:chunked\r\n", b"0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\n\r\n"), END];
    expect_100_continue_frames_like_any_request_with_a_body:
        post("Expect: 100-continue\r\nContent-Length: 2\r\n", b"okGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        => [head("POST", "/", cl(2)), body(b"ok"), END, head("GET", "/", NO_BODY), END];
    expect_100_continue_with_chunked_body_frames:
        post("Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n", b"2\r\nok\r\n0\r\n\r\n")
        => [head("POST", "/", CHUNKED), body(b"2\r\nok\r\n0\r\n\r\n"), END];
    // CL.0: Content-Length frames a GET body too (section 6.3); a primary that ignores it is
    // non-conforming, and the framer follows the RFC rather than guess which servers do.
    content_length_on_get_frames_a_body:
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 34\r\n\r\nGET /hopefully404 HTTP/1.1\r\nFoo: x\
          GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        => [head("GET", "/", cl(34)), body(b"GET /hopefully404 HTTP/1.1\r\nFoo: x"), END,
            head("GET", "/", NO_BODY), END];
    head_request_without_length_has_no_body:
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" => [head("HEAD", "/", NO_BODY), END];
    asterisk_target_is_framed:
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" => [head("OPTIONS", "*", NO_BODY), END];
    absolute_form_target_is_framed:
        b"GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"
        => [head("GET", "http://example.com/x?y", NO_BODY), END];
    request_without_host_is_framed:
        b"GET / HTTP/1.1\r\n\r\n" => [head("GET", "/", NO_BODY), END];
    obs_text_in_a_field_value_is_accepted:
        b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n" => [head("GET", "/", NO_BODY), END];
    content_length_with_leading_zeros_is_decimal:
        post("Content-Length: 005\r\n", b"hello") => [head("POST", "/", cl(5)), body(b"hello"), END];
    content_length_with_surrounding_whitespace_is_accepted:
        post("Content-Length:  5 \t\r\n", b"hello") => [head("POST", "/", cl(5)), body(b"hello"), END];
    content_length_of_u64_max_is_accepted:
        post("Content-Length: 18446744073709551615\r\n", b"abc") => [head("POST", "/", cl(u64::MAX)), body(b"abc")];
    chunk_size_of_sixteen_hex_digits_is_accepted:
        chunked(b"FFFFFFFFFFFFFFFF\r\nabc") => [head("POST", "/", CHUNKED), body(b"FFFFFFFFFFFFFFFF\r\nabc")];
}

// Connection persistence (section 9.3).
cases! {
    http10_request_without_keep_alive_is_framed:
        b"GET / HTTP/1.0\r\n\r\n" => [head("GET", "/", NO_BODY), END];
    http10_content_length_body_is_framed:
        b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nok" => [head("POST", "/", cl(2)), body(b"ok"), END];
    request_after_http10_without_keep_alive_tunnels:
        b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n" => [head("GET", "/", NO_BODY), END, tunnel(DataAfterClose)];
    http10_keep_alive_allows_another_request:
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"
        => [head("GET", "/a", NO_BODY), END, head("GET", "/b", NO_BODY), END];
    request_after_connection_close_tunnels:
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        => [head("GET", "/a", NO_BODY), END, tunnel(DataAfterClose)];
    close_among_other_connection_options_closes:
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n\r\n"
        => [head("GET", "/", NO_BODY), END, tunnel(DataAfterClose)];
    close_in_a_second_connection_field_closes:
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\nX"
        => [head("GET", "/", NO_BODY), END, tunnel(DataAfterClose)];
    body_of_a_closing_request_is_framed_before_the_close:
        post("Connection: close\r\nContent-Length: 2\r\n", b"okX")
        => [head("POST", "/", cl(2)), body(b"ok"), END, tunnel(DataAfterClose)];
    empty_line_after_a_body_tunnels:
        post("Content-Length: 5\r\n", b"hello\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        => [head("POST", "/", cl(5)), body(b"hello"), END, tunnel(EmptyLineBeforeRequest)];
    empty_line_before_the_first_request_tunnels:
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n" => [tunnel(EmptyLineBeforeRequest)];
}

// Streams that are not HTTP/1.x.
cases! {
    tls_client_hello_tunnels:
        [0x16, 0x03, 0x01, 0x00, 0xf1, 0x01, 0x00, 0x00, 0xed, 0x03, 0x03] => [tunnel(Tls)];
    tls_after_a_request_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\x16\x03\x01\x00" => [head("GET", "/", NO_BODY), END, tunnel(Tls)];
    http2_preface_tunnels:
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00" => [tunnel(Http2)];
    http2_preface_is_recognised_at_its_first_line:
        b"PRI * HTTP/2.0\r\n" => [tunnel(Http2)];
    postgres_startup_tunnels:
        [0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f] => [tunnel(NotHttp)];
    redis_command_tunnels:
        b"*1\r\n$4\r\nPING\r\n" => [tunnel(NotHttp)];
    ssh_banner_tunnels:
        b"SSH-2.0-OpenSSH_9.6\r\n" => [tunnel(NotHttp)];
    http09_request_tunnels:
        b"GET /\r\n" => [tunnel(NotHttp)];
    lowercase_http_version_tunnels:
        b"GET / http/1.1\r\nHost: a\r\n\r\n" => [tunnel(NotHttp)];
    nul_in_request_line_tunnels:
        b"GET /\x00 HTTP/1.1\r\n" => [tunnel(NotHttp)];
    http12_tunnels:
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n" => [tunnel(UnsupportedVersion)];
    http20_request_line_tunnels:
        b"GET / HTTP/2.0\r\n" => [tunnel(UnsupportedVersion)];
    http09_version_tunnels:
        b"GET / HTTP/0.9\r\n" => [tunnel(UnsupportedVersion)];
    malformed_version_tunnels:
        b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n" => [tunnel(ParseError)];
    space_after_version_tunnels:
        b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n" => [tunnel(ParseError)];
    double_space_in_request_line_tunnels:
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n" => [tunnel(ParseError)];
    tab_in_request_line_tunnels:
        b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n" => [tunnel(ParseError)];
    non_token_method_tunnels:
        b"GE(T / HTTP/1.1\r\nHost: a\r\n\r\n" => [tunnel(ParseError)];
    non_ascii_target_tunnels:
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n" => [tunnel(ParseError)];
}

// Line syntax of the head (sections 2.2, 5.1, 5.2).
cases! {
    bare_lf_line_endings_tunnel:
        b"GET / HTTP/1.1\nHost: a\n\n" => [tunnel(BareLf)];
    bare_lf_ending_a_field_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\n\r\n" => [tunnel(BareLf)];
    bare_lf_hiding_a_transfer_encoding_tunnels:
        post("X: X\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"0\r\n\r\n") => [tunnel(BareLf)];
    bare_cr_in_a_field_value_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n" => [tunnel(BareCr)];
    bare_cr_hiding_a_transfer_encoding_tunnels:
        post("X: X\rTransfer-Encoding: chunked\r\n", b"0\r\n\r\n") => [tunnel(BareCr)];
    bare_cr_in_request_line_tunnels:
        b"GET /\r HTTP/1.1\r\n" => [tunnel(BareCr)];
    cr_cr_lf_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n" => [tunnel(BareCr)];
    obs_fold_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n" => [tunnel(ObsFold)];
    obs_fold_with_tab_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n" => [tunnel(ObsFold)];
    leading_space_before_transfer_encoding_is_obs_fold:
        post("Content-Length: 5\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n") => [tunnel(ObsFold)];
    whitespace_before_the_first_field_tunnels:
        b"GET / HTTP/1.1\r\n Host: a\r\n\r\n" => [tunnel(ObsFold)];
    space_before_colon_in_transfer_encoding_tunnels:
        post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n") => [tunnel(WhitespaceBeforeColon)];
    tab_before_colon_in_content_length_tunnels:
        post("Content-Length\t: 5\r\n", b"hello") => [tunnel(WhitespaceBeforeColon)];
    space_inside_a_field_name_tunnels:
        post("Transfer Encoding: chunked\r\n", b"0\r\n\r\n") => [tunnel(ParseError)];
    field_without_colon_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n" => [tunnel(ParseError)];
    field_with_empty_name_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n" => [tunnel(ParseError)];
    non_token_field_name_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n" => [tunnel(ParseError)];
    nul_in_a_field_name_tunnels:
        post("Transfer-Encoding\x00: chunked\r\n", b"0\r\n\r\n") => [tunnel(ParseError)];
    nul_in_a_field_value_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n" => [tunnel(ParseError)];
    del_in_a_field_value_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n" => [tunnel(ParseError)];
    vertical_tab_before_chunked_tunnels:
        post("Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n") => [tunnel(ParseError)];
    form_feed_after_chunked_tunnels:
        post("Transfer-Encoding: chunked\x0c\r\n", b"0\r\n\r\n") => [tunnel(ParseError)];
    head_at_the_size_limit_is_framed:
        head_of_len(512) => [head("GET", "/", NO_BODY), END];
    head_over_the_size_limit_tunnels:
        head_of_len(513) => [tunnel(HeaderSectionTooLarge)];
    endless_head_tunnels_at_the_size_limit:
        [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 600]].concat() => [tunnel(HeaderSectionTooLarge)];
    head_at_the_field_count_limit_is_framed:
        head_with_fields(8) => [head("GET", "/", NO_BODY), END];
    head_over_the_field_count_limit_tunnels:
        head_with_fields(9) => [tunnel(TooManyHeaders)];
}

// Requests after which the stream is something else, and routing ambiguity.
cases! {
    connect_tunnels:
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01" => [tunnel(Connect)];
    websocket_upgrade_tunnels:
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85"
        => [tunnel(Upgrade)];
    h2c_upgrade_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        => [tunnel(H2cUpgrade)];
    upgrade_field_without_connection_option_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nupgrade: foo\r\n\r\n" => [tunnel(Upgrade)];
    duplicate_host_tunnels:
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => [tunnel(DuplicateHost)];
}

// Message body length (sections 6.1 and 6.3) and the request smuggling patterns built on it.
cases! {
    content_length_then_transfer_encoding_tunnels: // CL.TE
        post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG")
        => [tunnel(ContentLengthWithTransferEncoding)];
    transfer_encoding_then_content_length_tunnels: // TE.CL
        post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"8\r\nSMUGGLED\r\n0\r\n\r\n")
        => [tunnel(ContentLengthWithTransferEncoding)];
    transfer_encoding_with_content_length_zero_tunnels:
        post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")
        => [tunnel(ContentLengthWithTransferEncoding)];
    transfer_encoding_with_duplicate_content_length_tunnels:
        post("Content-Length: 5\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")
        => [tunnel(ContentLengthWithTransferEncoding)];
    transfer_encoding_in_http10_tunnels:
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" => [tunnel(TransferEncodingInHttp10)];
    gzip_without_chunked_tunnels:
        post("Transfer-Encoding: gzip\r\n", b"") => [tunnel(TransferEncodingNotChunked)];
    identity_transfer_coding_tunnels:
        post("Transfer-Encoding: identity\r\n", b"") => [tunnel(TransferEncodingNotChunked)];
    chunked_not_last_tunnels:
        post("Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n") => [tunnel(TransferEncodingNotChunked)];
    xchunked_tunnels:
        post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n") => [tunnel(TransferEncodingNotChunked)];
    chunked_with_suffix_tunnels:
        post("Transfer-Encoding: chunkedx\r\n", b"0\r\n\r\n") => [tunnel(TransferEncodingNotChunked)];
    gzip_then_chunked_tunnels:
        post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n") => [tunnel(UnsupportedTransferEncoding)];
    chunked_twice_in_one_field_tunnels:
        post("Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n") => [tunnel(UnsupportedTransferEncoding)];
    repeated_chunked_fields_tunnel:
        post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")
        => [tunnel(DuplicateTransferEncoding)];
    chunked_then_unknown_coding_field_tunnels: // TE.TE
        post("Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", b"0\r\n\r\n")
        => [tunnel(DuplicateTransferEncoding)];
    chunked_then_identity_in_other_case_tunnels: // TE.TE
        post("Transfer-Encoding: chunked\r\nTransfer-encoding: identity\r\n", b"0\r\n\r\n")
        => [tunnel(DuplicateTransferEncoding)];
    quoted_chunked_tunnels:
        post("Transfer-Encoding: \"chunked\"\r\n", b"0\r\n\r\n") => [tunnel(InvalidTransferEncoding)];
    empty_transfer_encoding_tunnels:
        post("Transfer-Encoding:\r\n", b"0\r\n\r\n") => [tunnel(InvalidTransferEncoding)];
    empty_transfer_coding_before_chunked_tunnels:
        post("Transfer-Encoding: , chunked\r\n", b"0\r\n\r\n") => [tunnel(InvalidTransferEncoding)];
    empty_transfer_coding_after_chunked_tunnels:
        post("Transfer-Encoding: chunked,\r\n", b"0\r\n\r\n") => [tunnel(InvalidTransferEncoding)];
    transfer_coding_with_parameter_tunnels:
        post("Transfer-Encoding: chunked;q=1\r\n", b"0\r\n\r\n") => [tunnel(InvalidTransferEncoding)];
    space_inside_transfer_coding_tunnels:
        post("Transfer-Encoding: chu nked\r\n", b"0\r\n\r\n") => [tunnel(InvalidTransferEncoding)];
    transfer_encoding_with_underscore_tunnels:
        post("Transfer_Encoding: chunked\r\n", b"0\r\n\r\n") => [tunnel(AmbiguousFramingHeader)];
    content_length_with_underscore_tunnels:
        post("Content_Length: 5\r\n", b"hello") => [tunnel(AmbiguousFramingHeader)];
    duplicate_equal_content_lengths_tunnel:
        post("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello") => [tunnel(DuplicateContentLength)];
    conflicting_content_lengths_tunnel:
        post("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!") => [tunnel(DuplicateContentLength)];
    content_length_list_tunnels:
        post("Content-Length: 5, 5\r\n", b"hello") => [tunnel(InvalidContentLength)];
    content_length_conflicting_list_tunnels:
        post("Content-Length: 5,6\r\n", b"hello") => [tunnel(InvalidContentLength)];
    content_length_with_plus_sign_tunnels:
        post("Content-Length: +5\r\n", b"hello") => [tunnel(InvalidContentLength)];
    negative_content_length_tunnels:
        post("Content-Length: -1\r\n", b"hello") => [tunnel(InvalidContentLength)];
    content_length_with_inner_space_tunnels:
        post("Content-Length: 5 5\r\n", b"hello") => [tunnel(InvalidContentLength)];
    hex_content_length_tunnels:
        post("Content-Length: 0x10\r\n", b"hello") => [tunnel(InvalidContentLength)];
    empty_content_length_tunnels:
        post("Content-Length:\r\n", b"hello") => [tunnel(InvalidContentLength)];
    content_length_in_exponent_form_tunnels:
        post("Content-Length: 1e3\r\n", b"hello") => [tunnel(InvalidContentLength)];
    fractional_content_length_tunnels:
        post("Content-Length: 5.0\r\n", b"hello") => [tunnel(InvalidContentLength)];
    content_length_with_non_ascii_digit_tunnels:
        post("Content-Length: \u{0665}\r\n", b"hello") => [tunnel(InvalidContentLength)];
    content_length_just_over_u64_tunnels:
        post("Content-Length: 18446744073709551616\r\n", b"hello") => [tunnel(InvalidContentLength)];
    huge_content_length_tunnels:
        post("Content-Length: 99999999999999999999999\r\n", b"hello") => [tunnel(InvalidContentLength)];
}

// Chunked coding (section 7.1): the valid prefix of the body is framed, then the tunnel.
cases! {
    non_hex_chunk_size_tunnels:
        chunked(b"g\r\n") => [head("POST", "/", CHUNKED), tunnel(InvalidChunkSize)];
    chunk_size_with_plus_sign_tunnels:
        chunked(b"+5\r\nhello\r\n0\r\n\r\n") => [head("POST", "/", CHUNKED), tunnel(InvalidChunkSize)];
    negative_chunk_size_tunnels:
        chunked(b"-5\r\n") => [head("POST", "/", CHUNKED), tunnel(InvalidChunkSize)];
    chunk_size_with_0x_prefix_tunnels:
        chunked(b"0x5\r\nhello\r\n0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0"), tunnel(InvalidChunkSize)];
    chunk_size_with_leading_space_tunnels:
        chunked(b" 5\r\nhello\r\n0\r\n\r\n") => [head("POST", "/", CHUNKED), tunnel(InvalidChunkSize)];
    chunk_size_with_trailing_space_tunnels:
        chunked(b"5 \r\nhello\r\n0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"5"), tunnel(InvalidChunkSize)];
    whitespace_before_chunk_extension_tunnels:
        chunked(b"5 ;a=b\r\nhello\r\n0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"5"), tunnel(InvalidChunkSize)];
    empty_chunk_size_tunnels:
        chunked(b"\r\n") => [head("POST", "/", CHUNKED), tunnel(InvalidChunkSize)];
    chunk_size_of_seventeen_digits_tunnels:
        chunked(b"00000000000000005\r\nhello") => [head("POST", "/", CHUNKED), body(b"0000000000000000"), tunnel(InvalidChunkSize)];
    chunk_size_over_u64_tunnels:
        chunked(b"10000000000000000\r\n") => [head("POST", "/", CHUNKED), body(b"1000000000000000"), tunnel(InvalidChunkSize)];
    bare_lf_after_chunk_size_tunnels:
        chunked(b"5\nhello\r\n0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"5"), tunnel(BareLf)];
    bare_cr_after_chunk_size_tunnels:
        chunked(b"5\rhello") => [head("POST", "/", CHUNKED), body(b"5\r"), tunnel(BareCr)];
    bare_lf_after_chunk_extension_tunnels:
        chunked(b"5;a=b\nhello") => [head("POST", "/", CHUNKED), body(b"5;a=b"), tunnel(BareLf)];
    control_byte_in_chunk_extension_tunnels:
        chunked(b"5;a\x00\r\nhello") => [head("POST", "/", CHUNKED), body(b"5;a"), tunnel(InvalidChunkExtension)];
    chunk_data_longer_than_its_size_tunnels:
        chunked(b"5\r\nhelloX\r\n0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"5\r\nhello"), tunnel(MissingChunkDataCrlf)];
    bare_lf_after_chunk_data_tunnels:
        chunked(b"5\r\nhello\n0\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"5\r\nhello"), tunnel(BareLf)];
    bare_cr_after_chunk_data_tunnels:
        chunked(b"5\r\nhello\rX") => [head("POST", "/", CHUNKED), body(b"5\r\nhello\r"), tunnel(BareCr)];
    bare_lf_after_last_chunk_tunnels:
        chunked(b"0\n\r\n") => [head("POST", "/", CHUNKED), body(b"0"), tunnel(BareLf)];
    bare_lf_as_final_line_tunnels:
        chunked(b"0\r\n\n") => [head("POST", "/", CHUNKED), body(b"0\r\n"), tunnel(BareLf)];
    bare_cr_as_final_line_tunnels:
        chunked(b"0\r\n\rX") => [head("POST", "/", CHUNKED), body(b"0\r\n\r"), tunnel(BareCr)];
    bare_lf_in_trailers_tunnels:
        chunked(b"0\r\nX: y\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\nX: y"), tunnel(BareLf)];
    bare_cr_in_trailers_tunnels:
        chunked(b"0\r\nX: y\rz\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\nX: y\r"), tunnel(BareCr)];
    obs_fold_in_trailers_tunnels:
        chunked(b"0\r\nX: y\r\n z\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\nX: y\r\n"), tunnel(ObsFold)];
    whitespace_before_colon_in_trailers_tunnels:
        chunked(b"0\r\nX : y\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\nX "), tunnel(WhitespaceBeforeColon)];
    request_line_in_trailers_tunnels:
        chunked(b"0\r\nGET /admin HTTP/1.1\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\nGET "), tunnel(InvalidTrailer)];
    control_byte_in_trailers_tunnels:
        chunked(b"0\r\nX: a\x01\r\n\r\n") => [head("POST", "/", CHUNKED), body(b"0\r\nX: a"), tunnel(InvalidTrailer)];
    trailer_over_the_field_count_limit_tunnels:
        chunked(b"0\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\nI: 1\r\n\r\n")
        => [head("POST", "/", CHUNKED),
            body(b"0\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\n"),
            tunnel(TrailerSectionTooLarge)];
    trailer_over_the_size_limit_tunnels:
        chunked(&[&b"0\r\nX: "[..], &[b'a'; 600]].concat())
        => [head("POST", "/", CHUNKED), body(&[&b"0\r\nX: "[..], &[b'a'; 509]].concat()), tunnel(TrailerSectionTooLarge)];
}
