//! The HTTP/2 decoder, responses decoded, against independent peers: the `h2` crate's server
//! reading the same client bytes, and its client reading the same primary bytes.
//!
//! Input: a first byte that picks the run, then the fuzzed side's bytes.
//! - Even: the request run. The rest is what the client sends after its preface and an empty
//!   SETTINGS frame (both put in front). The bytes go to an h2 server one frame at a time, the
//!   server running until idle after each (a current-thread runtime with paused time), and the
//!   server's answers go to the decoder's primary side right after the frame that caused them,
//!   as a relay would pass them on. The server answers each request it delivers whole with an
//!   answer drawn from it (interim heads, Trailers-Only, bodies, trailers).
//!   Checks: every request the decoder reports complete (and does not abandon after a reset or
//!   GOAWAY) is one h2's server delivered whole, with the same method, path, fields, body and
//!   trailers; unless the decoder tunnelled, every request h2 delivered whole the decoder
//!   reports too, except the kinds it skips on purpose (CONNECT, pseudo-headers in trailers, a
//!   missing `:path`, field sections over its limit); every answer the decoder reports complete
//!   is the one the server sent, and none of the server's answers is skipped. One kind the
//!   decoder takes where h2 does not: gRPC's true-binary metadata (a `-bin` value starting with
//!   NUL).
//! - Odd: the response run. An h2 client sends four requests (GET, POST with a body, HEAD, a
//!   gRPC-like POST with trailers); the rest is what the primary sends after an empty SETTINGS
//!   frame (put in front), given to the client one frame at a time, the client's reactions
//!   passed on after each. Checks: every answer the decoder reports complete before the client
//!   gave up on the connection (GOAWAY with an error) is one h2's client received whole, with
//!   the same interim statuses, status, fields, body and trailers; unless the decoder tunnelled,
//!   every answer h2's client received whole the decoder reports too, except the kinds it skips
//!   on purpose (pseudo-headers in trailers, request pseudo-headers in a response, an interim
//!   head with a Content-Length or ending the stream, field sections over its limit).
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use mirror_daemon::http::h2::{H2Limits, Peer, SkipReason, CLIENT_PREFACE};
use mirror_fuzz::h2::{self, Answer, Described, Norm, Request as Seen};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// An empty SETTINGS frame: what either side sends first in these runs.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// `bytes` cut into frames after a `preface` of that many bytes (the last frame possibly
/// partial).
fn frames(bytes: &[u8], preface: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    if preface > 0 {
        out.push(&bytes[..preface]);
    }
    let mut pos = preface;
    while pos < bytes.len() {
        let header = &bytes[pos..bytes.len().min(pos + 9)];
        let length = if header.len() == 9 {
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
        } else {
            0
        };
        let end = bytes.len().min(pos + 9 + length);
        out.push(&bytes[pos..end]);
        pos = end;
    }
    out
}

/// A current-thread runtime whose time moves on only when every task is idle.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Lets every task run until idle.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Collects what the peer under test writes, until it closes; runs beside the writer, so that
/// what it sends last (a GOAWAY, say) is still passed on.
fn collect_output(mut read_half: tokio::io::ReadHalf<DuplexStream>) -> Arc<Mutex<Vec<u8>>> {
    let output = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn({
        let output = output.clone();
        async move {
            let mut buf = vec![0u8; 16384];
            while let Ok(n) = read_half.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                output.lock().expect("output").extend_from_slice(&buf[..n]);
            }
        }
    });
    output
}

fn take(output: &Mutex<Vec<u8>>) -> Vec<u8> {
    std::mem::take(&mut *output.lock().expect("output"))
}

fn decode_described(script: &[(Peer, Vec<u8>)]) -> (Vec<Norm>, Described) {
    let limits = H2Limits {
        decode_responses: true,
        ..H2Limits::default()
    };
    let events = h2::decode(limits, script.iter().map(|(p, c)| (*p, &c[..])));
    let described = h2::describe(&events);
    (events, described)
}

/// gRPC's true-binary metadata (a `-bin` value starting with NUL) is taken by the decoder and
/// kept base64-encoded on purpose; h2 refuses the NUL.
fn has_binary_field<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|name| name.ends_with("-bin"))
}

// ----- The request run: h2's server reads the fuzzed client bytes.

type Served = Arc<Mutex<BTreeMap<u32, Seen>>>;
type Sent = Arc<Mutex<BTreeMap<u32, Answer>>>;

/// The answer h2's server gives to `request`: its kind drawn from the path's length.
fn answer_for(request: &Seen) -> Answer {
    let mut answer = Answer {
        status: 200,
        fields: vec![(
            "x-path-len".to_string(),
            request.path.len().to_string().into_bytes(),
        )],
        ..Answer::default()
    };
    match request.path.len() % 4 {
        0 => answer.body = request.body.iter().rev().copied().collect(),
        1 => answer.fields.extend([
            ("grpc-message".to_string(), b"trailers only".to_vec()),
            (
                "grpc-status".to_string(),
                (request.body.len() % 17).to_string().into_bytes(),
            ),
        ]),
        2 => {
            answer.interim = vec![100];
            answer.status = 404;
            answer.body = b"missing".to_vec();
        }
        _ => {
            answer.body = request.path.clone().into_bytes();
            answer.trailers = vec![("grpc-status".to_string(), b"0".to_vec())];
        }
    }
    answer.fields.sort();
    answer
}

fn header_map(fields: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Sends `answer` (errors: the client went away or reset the stream).
fn send_answer(respond: &mut ::h2::server::SendResponse<Bytes>, answer: &Answer) {
    for status in &answer.interim {
        let interim = Response::builder()
            .status(*status)
            .body(())
            .expect("interim");
        let _ = respond.send_informational(interim);
    }
    let mut head = Response::new(());
    *head.status_mut() = StatusCode::from_u16(answer.status).expect("status");
    *head.headers_mut() = header_map(&answer.fields);
    let ends_with_head = answer.body.is_empty() && answer.trailers.is_empty();
    let Ok(mut send) = respond.send_response(head, ends_with_head) else {
        return;
    };
    if !answer.body.is_empty() {
        let _ = send.send_data(Bytes::from(answer.body.clone()), answer.trailers.is_empty());
    }
    if !answer.trailers.is_empty() {
        let _ = send.send_trailers(header_map(&answer.trailers));
    }
}

/// h2's server: records each request it delivers whole, and the answer it sends to it.
async fn serve(io: DuplexStream, served: Served, sent: Sent) {
    let Ok(mut connection) = h2::server_builder().handshake::<_, Bytes>(io).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        let id = respond.stream_id().as_u32();
        let (served, sent) = (served.clone(), sent.clone());
        tokio::spawn(async move {
            let (parts, mut body) = request.into_parts();
            let mut seen = Seen {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                fields: h2::sorted(parts.headers.iter()),
                ..Seen::default()
            };
            while let Some(chunk) = body.data().await {
                let Ok(chunk) = chunk else { return };
                let _ = body.flow_control().release_capacity(chunk.len());
                seen.body.extend_from_slice(&chunk);
            }
            let Ok(trailers) = body.trailers().await else {
                return;
            };
            seen.trailers = trailers
                .as_ref()
                .map(|t| h2::sorted(t.iter()))
                .unwrap_or_default();
            let answer = answer_for(&seen);
            send_answer(&mut respond, &answer);
            served.lock().expect("served").insert(id, seen);
            sent.lock().expect("sent").insert(id, answer);
            // Keep the stream (and `respond`) until the connection ends.
            std::future::pending::<()>().await;
        });
    }
}

fn request_run(data: &[u8]) {
    let client_bytes = [&CLIENT_PREFACE[..], EMPTY_SETTINGS, data].concat();
    let served: Served = Arc::default();
    let sent: Sent = Arc::default();
    let runtime = paused_runtime();
    let script = runtime.block_on(async {
        let (client, server_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(server_io, served.clone(), sent.clone()));
        let (read_half, mut write_half) = tokio::io::split(client);
        let answers = collect_output(read_half);
        let mut script: Vec<(Peer, Vec<u8>)> = Vec::new();
        for frame in frames(&client_bytes, CLIENT_PREFACE.len()) {
            let _ = write_half.write_all(frame).await;
            script.push((Peer::Client, frame.to_vec()));
            // The server has read and answered everything so far.
            settle().await;
            let answer = take(&answers);
            if !answer.is_empty() {
                script.push((Peer::Server, answer));
            }
        }
        script
    });
    drop(runtime);

    let (events, described) = decode_described(&script);
    let served = served.lock().expect("served");
    for (id, request) in &described.complete {
        let true_binary = served.get(id).is_none()
            && has_binary_field(request.fields.iter().chain(&request.trailers).map(|f| &f.0));
        if true_binary {
            continue;
        }
        assert_eq!(
            served.get(id),
            Some(request),
            "stream {id}: the decoder reports a request h2 did not deliver so\nevents: {events:?}"
        );
    }
    if !described.tunnelled {
        for (id, request) in served.iter() {
            // Where the decoder is stricter than h2, on purpose: CONNECT is not copied; RFC 9113
            // forbids pseudo-headers in trailers (h2 drops them) and requires `:path` (h2 takes
            // a request without one as `/`); the field section limit is the decoder's own.
            let skipped_on_purpose = matches!(
                described.skipped.get(id),
                Some(
                    SkipReason::Connect
                        | SkipReason::PseudoHeaderInTrailers
                        | SkipReason::MissingPseudoHeader
                        | SkipReason::HeaderListTooLarge
                )
            );
            assert!(
                skipped_on_purpose || described.complete.get(id) == Some(request),
                "stream {id}: h2 delivered {request:?}, the decoder {:?}\nevents: {events:?}",
                described.complete.get(id)
            );
        }
    }
    let sent = sent.lock().expect("sent");
    for (id, answer) in &described.answers {
        assert_eq!(
            sent.get(id),
            Some(answer),
            "stream {id}: the decoder reports an answer h2's server did not send\nevents: {events:?}"
        );
    }
    for (id, reason) in &described.answers_skipped {
        assert!(
            *reason == SkipReason::TooManyResponses,
            "stream {id}: h2's answer skipped ({reason:?})\nevents: {events:?}"
        );
    }
}

// ----- The response run: h2's client reads the fuzzed primary bytes.

/// The client's requests: (method, path, body, trailers).
const REQUESTS: [(&str, &str, &[u8], bool); 4] = [
    ("GET", "/a", b"", false),
    ("POST", "/b", b"hello", false),
    ("HEAD", "/c", b"", false),
    ("POST", "/pkg.Svc/D", b"\0\0\0\0\x01x", true),
];

fn response_run(data: &[u8]) {
    let server_bytes = [EMPTY_SETTINGS, data].concat();
    let runtime = paused_runtime();
    let (script, received) = runtime.block_on(async {
        let (client_io, server_side) = tokio::io::duplex(1 << 16);
        let (read_half, mut write_half) = tokio::io::split(server_side);
        let output = collect_output(read_half);
        let Ok((mut client, connection)) =
            h2::client_builder().handshake::<_, Bytes>(client_io).await
        else {
            return (Vec::new(), BTreeMap::new());
        };
        tokio::spawn(connection);
        let mut receivers = Vec::new();
        for (method, path, body, trailers) in REQUESTS {
            let mut request = Request::builder()
                .method(method)
                .uri(format!("http://primary.test{path}"));
            if trailers {
                request = request
                    .header("content-type", "application/grpc")
                    .header("te", "trailers");
            }
            let request = request.body(()).expect("request");
            let Ok((response, mut send)) =
                client.send_request(request, body.is_empty() && !trailers)
            else {
                break;
            };
            if !body.is_empty() {
                let _ = send.send_data(Bytes::from_static(body), !trailers);
            }
            if trailers {
                let mut map = HeaderMap::new();
                map.insert("x-checksum", "1".parse().expect("value"));
                let _ = send.send_trailers(map);
            }
            receivers.push(tokio::spawn(h2::receive(response)));
        }
        settle().await;
        let mut script: Vec<(Peer, Vec<u8>)> = vec![(Peer::Client, take(&output))];
        for frame in frames(&server_bytes, 0) {
            let _ = write_half.write_all(frame).await;
            script.push((Peer::Server, frame.to_vec()));
            // The client has read everything so far and reacted.
            settle().await;
            let reaction = take(&output);
            if !reaction.is_empty() {
                script.push((Peer::Client, reaction));
            }
        }
        // The primary closes: whatever is not complete now never will be.
        drop(write_half);
        settle().await;
        let mut received = BTreeMap::new();
        for receiver in receivers {
            receiver.abort();
            if let Ok((id, Some(answer))) = receiver.await {
                received.insert(id, answer);
            }
        }
        (script, received)
    });
    drop(runtime);
    if script.is_empty() {
        return;
    }

    let (events, described) = decode_described(&script);
    for (id, answer) in &described.answers {
        let true_binary = received.get(id).is_none()
            && has_binary_field(answer.fields.iter().chain(&answer.trailers).map(|f| &f.0));
        if true_binary {
            continue;
        }
        assert_eq!(
            received.get(id),
            Some(answer),
            "stream {id}: the decoder reports an answer h2's client did not receive so\nevents: {events:?}"
        );
    }
    if !described.tunnelled {
        for (id, answer) in &received {
            // Where the decoder is stricter than h2, on purpose: RFC 9113 forbids pseudo-headers
            // in trailers (h2 drops them) and a request's pseudo-headers in a response (h2
            // ignores them); RFC 9110 forbids a Content-Length in an interim head, RFC 9113 an
            // interim head that ends the stream; the field section limit is the decoder's own.
            let skipped_on_purpose = matches!(
                described.answers_skipped.get(id),
                Some(
                    SkipReason::PseudoHeaderInTrailers
                        | SkipReason::InvalidPseudoHeader
                        | SkipReason::MalformedInterim
                        | SkipReason::HeaderListTooLarge
                )
            );
            assert!(
                skipped_on_purpose || described.answers.get(id) == Some(answer),
                "stream {id}: h2's client received {answer:?}, the decoder {:?}\nevents: {events:?}",
                described.answers.get(id)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => response_run(rest),
        Some((_, rest)) => request_run(rest),
        None => {}
    }
});
