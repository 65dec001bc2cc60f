//! Regression tests for what the fuzz targets in `fuzz/` found (`cargo xtask fuzz`).
//!
//! Each test is named for its finding (numbered as in `fuzz/src/known.rs`) and holds the
//! fuzzer's minimized input, or a clearer instance of the same fault. The property checked is
//! the fuzz target's: a copy the daemon sends to a shadow (`build_head` + the original's body
//! bytes) must be exactly one request, framed like the original, that the daemon's own strict
//! framer accepts; config errors are one line.

use mirror_daemon::{
    config::Config,
    http::{BodyKind, Frame, FramingLimits, RequestFramer, RequestHead},
    mirror::copy::{build_head, Edits},
};

/// The requests `stream` frames into, each head with its body bytes, and whether the framer gave
/// up on the stream.
fn frame(stream: &[u8]) -> (Vec<(RequestHead, Vec<u8>)>, bool) {
    let mut frames = Vec::new();
    RequestFramer::new(FramingLimits::default()).feed(stream, &mut frames);
    let mut requests: Vec<(RequestHead, Vec<u8>)> = Vec::new();
    let mut tunnel = false;
    for frame in frames {
        match frame {
            Frame::Head(head) => requests.push((head, Vec::new())),
            Frame::Body(range) => requests
                .last_mut()
                .expect("a body belongs to a head")
                .1
                .extend_from_slice(&stream[range]),
            Frame::End => {}
            Frame::Tunnel(_) => tunnel = true,
        }
    }
    (requests, tunnel)
}

/// The edits of a `[[mirror.targets]]` entry with `extra` keys, or `None` if the config refuses
/// the target.
fn edits(extra: &str) -> Option<Edits> {
    let text = format!("[[mirror.targets]]\nname = \"t\"\naddress = \"t:80\"\n{extra}\n");
    let config = Config::from_toml(&text, "test.toml").ok()?;
    Some(Edits::from_config(&config.mirror.targets[0]))
}

/// What is wrong with the copy of `original` (one complete request) under `edits`, if anything.
fn copy_problem(original: &[u8], edits: &Edits, what: &str) -> Option<String> {
    let (requests, tunnel) = frame(original);
    assert!(
        !tunnel && requests.len() == 1,
        "{what}: the original is one request"
    );
    let (head, body) = &requests[0];
    let copy = [build_head(head, edits), body.clone()].concat();
    let shown = String::from_utf8_lossy(&copy);

    let (copies, tunnel) = frame(&copy);
    if tunnel {
        return Some(format!(
            "{what}: the daemon's own framer refuses the copy {shown:?}"
        ));
    }
    if copies.len() != 1 {
        return Some(format!(
            "{what}: a shadow reads the copy as {} requests: {shown:?}",
            copies.len()
        ));
    }
    let (copy_head, copy_body) = &copies[0];
    if copy_head.body() != head.body() || copy_body != body {
        return Some(format!(
            "{what}: the copy is framed as {:?}, the original as {:?}: {shown:?}",
            copy_head.body(),
            head.body()
        ));
    }
    for (name, value) in copy_head.headers() {
        if name.eq_ignore_ascii_case("connection") {
            let value = String::from_utf8_lossy(value).to_ascii_lowercase();
            for option in value.split(',').map(str::trim) {
                if ["content-length", "transfer-encoding", "host"].contains(&option) {
                    return Some(format!(
                        "{what}: the copy asks proxies to drop its {option}: {shown:?}"
                    ));
                }
            }
        }
    }
    None
}

fn assert_copy_is_unambiguous(original: &[u8], edits: &Edits, what: &str) {
    if let Some(problem) = copy_problem(original, edits, what) {
        panic!("{problem}");
    }
}

fn default_edits() -> Edits {
    edits("").expect("the default target is valid")
}

/// Finding 2 (found by `framer_differential`; minimized input
/// `GET / HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 0\r\n\r\n`): `build_head`
/// drops every field the client's Connection field names, framing fields included, while the
/// body still follows: the shadow reads the body as a request of its own (here `GET /admin`),
/// one the client never sent to the primary as a request.
#[test]
fn fuzz_finding_2_connection_naming_a_framing_field_keeps_it_in_the_copy() {
    let smuggled = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n";
    let content_length = [
        format!(
            "POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        )
        .as_bytes(),
        smuggled,
    ]
    .concat();
    assert_copy_is_unambiguous(
        &content_length,
        &default_edits(),
        "Connection: Content-Length",
    );

    let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_copy_is_unambiguous(chunked, &default_edits(), "Connection: transfer-encoding");

    let minimized = b"GET / HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 0\r\n\r\n";
    assert_copy_is_unambiguous(minimized, &default_edits(), "minimized");
}

/// Finding 1 (found by `framer_differential` within seconds; minimized inputs were targets
/// with `add_headers = { "Transfer-Encoding" = "" }`, `{ "Content_Length" = "" }`, and
/// `host = "1b"` with `add_headers = { "Host" = "" }`): the config accepts `add_headers` and
/// `remove_headers` that rewrite the copy's framing fields or Host, and `add_headers` values
/// with control bytes. Either the config refuses such a target or its copies stay unambiguous.
#[test]
fn fuzz_finding_1_targets_whose_edits_touch_framing_fields_are_refused_or_harmless() {
    let requests: [(&str, &[u8]); 3] = [
        (
            "Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        ("no Host", b"GET / HTTP/1.0\r\n\r\n"),
    ];
    let mut problems = Vec::new();
    for extra in [
        r#"remove_headers = ["content-length"]"#,
        r#"remove_headers = ["Transfer-Encoding"]"#,
        r#"add_headers = { "Content-Length" = "0" }"#,
        r#"add_headers = { "Transfer-Encoding" = "" }"#,
        r#"add_headers = { "Content_Length" = "" }"#,
        r#"add_headers = { "Connection" = "content-length" }"#,
        "host = \"1b\"\nadd_headers = { \"Host\" = \"\" }",
        r#"add_headers = { "X-A" = "\u0001" }"#,
    ] {
        let Some(edits) = edits(extra) else {
            continue;
        };
        for (kind, request) in requests {
            let what = format!("{extra} on a {kind} request");
            problems.extend(copy_problem(request, &edits, &what));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Finding 3 (the `config` target's invariant; the input was written by hand when reading the
/// error path, and the target fails on it): the key path in a config error is printed as it is,
/// so a quoted key with an escaped newline splits the one-line error.
#[test]
fn fuzz_finding_3_config_errors_stay_on_one_line_whatever_the_key() {
    let text =
        "[[mirror.targets]]\nname = \"a\"\naddress = \"a:1\"\nadd_headers = { \"a\\nb\" = 1 }\n";
    let error = Config::from_toml(text, "test.toml").expect_err("an integer is not a header value");
    let message = error.to_string();
    assert!(
        !message.contains(['\n', '\r']),
        "a config error spans lines: {message:?}"
    );
}

/// The copies of ordinary requests pass the same check (so the tests above fail for the finding,
/// not for the check).
#[test]
fn ordinary_copies_are_unambiguous() {
    let edits = edits("add_headers = { \"x-shadow\" = \"true\" }\nremove_headers = [\"cookie\"]")
        .expect("valid target");
    for request in [
        &b"POST / HTTP/1.1\r\nHost: a:80\r\nCookie: c\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"PUT /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        assert_copy_is_unambiguous(request, &edits, "ordinary");
    }
    assert_eq!(
        frame(b"GET / HTTP/1.1\r\n\r\n").0[0].0.body(),
        BodyKind::None
    );
}
