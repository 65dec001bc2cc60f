//! Connections written by a real HTTP/2 client (the `h2` crate's) to a real server (h2's), the
//! bytes of both directions captured in the order a relay passes them on, then decoded: the
//! decoder must see exactly the requests the client sent and the server received, and, with
//! responses decoded, exactly the answers the server sent and the client received (interim
//! heads, status, fields, body, trailers; Trailers-Only answers; pushes, which are not
//! reported).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{decode_chunks, Seen};
use crate::http::h2::{H2Limits, Peer};

type Capture = Arc<Mutex<Vec<(Peer, Vec<u8>)>>>;

/// What one side saw of one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Seen1 {
    method: String,
    path: String,
    /// Sorted: h2's server hands fields over as a `HeaderMap`, which groups names.
    fields: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
    complete: bool,
}

/// What one side saw of one response.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Answer {
    interim: Vec<u16>,
    status: u16,
    /// Sorted: h2's client hands fields over as a `HeaderMap`.
    fields: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
    complete: bool,
}

fn sorted(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<_> = map
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    fields.sort();
    fields
}

/// Copies bytes both ways, recording each chunk in the order it is passed on.
async fn relay(mut client: DuplexStream, mut server: DuplexStream, capture: Capture) {
    let (mut from_client, mut from_server) = (vec![0u8; 16384], vec![0u8; 16384]);
    loop {
        tokio::select! {
            read = client.read(&mut from_client) => {
                let n = read.unwrap_or(0);
                if n == 0 { break; }
                capture.lock().expect("capture").push((Peer::Client, from_client[..n].to_vec()));
                if server.write_all(&from_client[..n]).await.is_err() { break; }
            }
            read = server.read(&mut from_server) => {
                let n = read.unwrap_or(0);
                if n == 0 { break; }
                capture.lock().expect("capture").push((Peer::Server, from_server[..n].to_vec()));
                if client.write_all(&from_server[..n]).await.is_err() { break; }
            }
        }
    }
}

/// Serves requests, recording each by stream id, and answers 200 once the request is read.
async fn serve(io: DuplexStream, header_table_size: u32) -> BTreeMap<u32, Seen1> {
    let mut connection = h2::server::Builder::new()
        .header_table_size(header_table_size)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 22)
        .handshake::<_, Bytes>(io)
        .await
        .expect("server handshake");
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    while let Some(accepted) = connection.accept().await {
        let Ok((request, mut respond)) = accepted else {
            break;
        };
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            let id = respond.stream_id().as_u32();
            let (parts, mut body) = request.into_parts();
            let mut record = Seen1 {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                fields: sorted(&parts.headers),
                ..Seen1::default()
            };
            let mut failed = false;
            while let Some(chunk) = body.data().await {
                match chunk {
                    Ok(chunk) => {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        record.body.extend_from_slice(&chunk);
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                match body.trailers().await {
                    Ok(trailers) => {
                        record.trailers = trailers.as_ref().map(sorted).unwrap_or_default();
                        record.complete = true;
                    }
                    Err(_) => failed = true,
                }
            }
            if !failed {
                answer(&mut respond, (id as usize - 1) / 2);
            }
            seen.lock().expect("seen").insert(id, record);
        }));
        // Drive the connection while the handlers run.
    }
    for task in tasks {
        let _ = task.await;
    }
    let seen = seen.lock().expect("seen").clone();
    seen
}

/// The server's answer to request `i` of the mix.
struct PlannedAnswer {
    interim: Vec<u16>,
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Option<Vec<(String, String)>>,
    /// The server pushes a resource with it (not reported by the decoder).
    push: bool,
}

fn plan_answer(i: usize) -> PlannedAnswer {
    let mut fields = vec![
        ("content-type".to_string(), "application/grpc".to_string()),
        ("x-answer-id".to_string(), format!("answer-{i:06}")),
    ];
    // Fields repeated across answers (indexed by the primary's encoder) and new ones.
    for k in 0..(i % 5) * 3 {
        fields.push((format!("x-answer-{k}"), format!("value {k} of {}", i % 2)));
    }
    if i.is_multiple_of(4) {
        fields.push((
            "set-cookie".to_string(),
            format!("id={}", "0123456789".repeat(100 + i)),
        ));
    }
    let grpc_ok = Some(vec![
        ("grpc-status".to_string(), "0".to_string()),
        ("grpc-message".to_string(), String::new()),
    ]);
    let mut planned = PlannedAnswer {
        interim: vec![],
        status: 200,
        fields,
        body: vec![],
        trailers: None,
        push: false,
    };
    match i % 6 {
        // A gRPC answer: a length-prefixed message, then the status in trailers.
        0 => {
            let message: Vec<u8> = (0..300 + i).map(|b| (b * 3 + i) as u8).collect();
            planned.body = [&[0][..], &(message.len() as u32).to_be_bytes(), &message].concat();
            planned.trailers = grpc_ok;
        }
        // Trailers-Only: the status in the head, which ends the stream.
        1 => planned.fields.extend([
            ("grpc-status".to_string(), "5".to_string()),
            ("grpc-message".to_string(), format!("no such thing {i}")),
        ]),
        2 => {
            planned.interim = vec![100, 103];
            planned.body = format!("answer {i:012}").into_bytes();
            planned
                .fields
                .push(("content-length".to_string(), planned.body.len().to_string()));
        }
        3 => planned.status = 204,
        4 => {
            planned.status = 404;
            planned.body = format!("not found: {i}").into_bytes();
        }
        _ => {
            planned.body = (0..3 * 16_384 + i).map(|b| (b * 11 + i) as u8).collect();
            planned.trailers = Some(vec![("x-checksum".to_string(), format!("{i:x}"))]);
            planned.push = true;
        }
    }
    planned
}

fn header_map(fields: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    map
}

/// Sends the planned answer to request `i` (errors: the client went away).
fn answer(respond: &mut h2::server::SendResponse<Bytes>, i: usize) {
    let planned = plan_answer(i);
    for status in &planned.interim {
        let interim = Response::builder()
            .status(*status)
            .body(())
            .expect("interim");
        let _ = respond.send_informational(interim);
    }
    if planned.push {
        let pushed = Request::get(format!("http://service.test/pushed/{i}"))
            .header("x-pushed", i.to_string())
            .body(())
            .expect("pushed request");
        if let Ok(mut pushed) = respond.push_request(pushed) {
            let mut head = Response::new(());
            head.headers_mut()
                .insert("x-pushed-answer", i.to_string().parse().expect("value"));
            if let Ok(mut body) = pushed.send_response(head, false) {
                let _ = body.send_data(Bytes::from(vec![b'p'; 100 + i]), true);
            }
        }
    }
    let mut head = Response::new(());
    *head.status_mut() = StatusCode::from_u16(planned.status).expect("status");
    *head.headers_mut() = header_map(&planned.fields);
    let ends_with_head = planned.body.is_empty() && planned.trailers.is_none();
    let Ok(mut send) = respond.send_response(head, ends_with_head) else {
        return;
    };
    if !planned.body.is_empty() {
        let _ = send.send_data(Bytes::from(planned.body), planned.trailers.is_none());
    }
    if let Some(trailers) = planned.trailers {
        let _ = send.send_trailers(header_map(&trailers));
    }
}

/// Reads one answer as h2's client hands it over: interim heads, head, body, trailers.
async fn receive(mut response: h2::client::ResponseFuture) -> (u32, Answer) {
    let id = response.stream_id().as_u32();
    let mut answer = Answer::default();
    loop {
        match std::future::poll_fn(|cx| response.poll_informational(cx)).await {
            Some(Ok(interim)) => answer.interim.push(interim.status().as_u16()),
            Some(Err(_)) => return (id, answer),
            None => break,
        }
    }
    let Ok(response) = response.await else {
        return (id, answer);
    };
    let (parts, mut body) = response.into_parts();
    answer.status = parts.status.as_u16();
    answer.fields = sorted(&parts.headers);
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return (id, answer);
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        answer.body.extend_from_slice(&chunk);
    }
    let Ok(trailers) = body.trailers().await else {
        return (id, answer);
    };
    answer.trailers = trailers.as_ref().map(sorted).unwrap_or_default();
    answer.complete = true;
    (id, answer)
}

/// A request of the mix: index `i` picks method, fields, body size and trailers.
struct Planned {
    path: String,
    method: &'static str,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Option<Vec<(String, String)>>,
    reset: bool,
}

fn plan(i: usize) -> Planned {
    let method = ["GET", "POST", "PUT", "DELETE", "PATCH"][i % 5];
    let mut fields = vec![
        ("content-type".to_string(), "application/grpc".to_string()),
        ("x-request-id".to_string(), format!("req-{i:06}")),
        (
            "user-agent".to_string(),
            "mirror-test/1.0 (h2 client)".to_string(),
        ),
    ];
    // Many fields, some repeated across requests (indexed), some new (literals).
    for k in 0..(i % 7) * 5 {
        fields.push((format!("x-field-{k}"), format!("value {k} of {}", i % 3)));
    }
    if i.is_multiple_of(4) {
        fields.push((
            "cookie".to_string(),
            format!("session={}", "abcdefgh".repeat(200 + i)),
        ));
    }
    let body_len = match (method, i % 3) {
        ("GET" | "DELETE", _) => 0,
        (_, 0) => 40_000 + i,
        (_, 1) => 17,
        _ => 3 * 16_384,
    };
    let body = (0..body_len).map(|b| (b * 7 + i) as u8).collect();
    let trailers = (method == "POST").then(|| {
        vec![
            ("grpc-status".to_string(), "0".to_string()),
            ("x-checksum".to_string(), format!("{i:x}")),
        ]
    });
    Planned {
        path: format!("/pkg.Service/Method{i}?n={i}"),
        method,
        fields,
        body,
        trailers,
        reset: i % 11 == 5,
    }
}

/// What a connection carried: the relay's capture, the requests the server saw, the answers the
/// client saw.
struct Run {
    capture: Vec<(Peer, Vec<u8>)>,
    served: BTreeMap<u32, Seen1>,
    received: BTreeMap<u32, Answer>,
}

/// Runs a client and a server through a capturing relay. `header_table_size`: the server's
/// SETTINGS_HEADER_TABLE_SIZE (bounds the client's encoder); `client_table_size`: the client's
/// (bounds the server's).
async fn run_connection(count: usize, header_table_size: u32, client_table_size: u32) -> Run {
    let (client_io, relay_client) = tokio::io::duplex(1 << 20);
    let (relay_server, server_io) = tokio::io::duplex(1 << 20);
    let capture: Capture = Arc::default();
    let relay = tokio::spawn(relay(relay_client, relay_server, capture.clone()));
    let server = tokio::spawn(serve(server_io, header_table_size));

    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .header_table_size(client_table_size)
        .enable_push(true)
        .handshake::<_, Bytes>(client_io)
        .await
        .expect("client handshake");
    let driver = tokio::spawn(connection);
    let mut responses = Vec::new();
    for i in 0..count {
        let planned = plan(i);
        let mut request = Request::builder()
            .method(planned.method)
            .uri(format!("http://service.test{}", planned.path));
        for (name, value) in &planned.fields {
            request = request.header(name, value);
        }
        let request = request.body(()).expect("request");
        let body_follows = !planned.body.is_empty() || planned.trailers.is_some();
        client = client.ready().await.expect("ready");
        let (response, mut send) = client
            .send_request(request, !body_follows && !planned.reset)
            .expect("send");
        if planned.reset {
            send.send_reset(h2::Reason::CANCEL);
            continue;
        }
        if !planned.body.is_empty() {
            send.send_data(Bytes::from(planned.body), planned.trailers.is_none())
                .expect("data");
        }
        if let Some(trailers) = planned.trailers {
            let mut map = HeaderMap::new();
            for (name, value) in trailers {
                map.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    value.parse().expect("value"),
                );
            }
            send.send_trailers(map).expect("trailers");
        }
        responses.push(tokio::spawn(receive(response)));
    }
    let mut received = BTreeMap::new();
    for response in responses {
        let (id, answer) = response.await.expect("receiver");
        received.insert(id, answer);
    }
    drop(client);
    driver.abort();
    let _ = driver.await;
    let seen = server.await.expect("server");
    relay.abort();
    let _ = relay.await;
    let capture = capture.lock().expect("capture").clone();
    Run {
        capture,
        served: seen,
        received,
    }
}

/// The decoder's events folded into requests by stream id.
fn decoded_requests(events: &[Seen]) -> (BTreeMap<u32, Seen1>, Vec<u32>) {
    let mut requests: BTreeMap<u32, Seen1> = BTreeMap::new();
    let mut resets = Vec::new();
    for event in events {
        match event {
            Seen::Request {
                stream,
                method,
                path,
                fields,
                end_stream,
                ..
            } => {
                let mut fields = fields.clone();
                fields.sort();
                requests.insert(
                    *stream,
                    Seen1 {
                        method: method.clone(),
                        path: path.clone(),
                        fields,
                        complete: *end_stream,
                        ..Seen1::default()
                    },
                );
            }
            Seen::Data {
                stream,
                bytes,
                end_stream,
            } => {
                let request = requests.get_mut(stream).expect("data of a request");
                request.body.extend_from_slice(bytes);
                request.complete |= *end_stream;
            }
            Seen::Trailers { stream, fields } => {
                let request = requests.get_mut(stream).expect("trailers of a request");
                let mut fields = fields.clone();
                fields.sort();
                request.trailers = fields;
                request.complete = true;
            }
            Seen::Reset { stream, .. } => resets.push(*stream),
            other if other.is_response() => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    (requests, resets)
}

/// The decoder's response events folded into answers by stream id.
fn decoded_answers(events: &[Seen]) -> BTreeMap<u32, Answer> {
    let mut answers: BTreeMap<u32, Answer> = BTreeMap::new();
    for event in events {
        match event {
            Seen::Interim { stream, status, .. } => {
                answers.entry(*stream).or_default().interim.push(*status);
            }
            Seen::Response {
                stream,
                status,
                fields,
                end_stream,
            } => {
                let answer = answers.entry(*stream).or_default();
                let mut fields = fields.clone();
                fields.sort();
                answer.status = *status;
                answer.fields = fields;
                answer.complete = *end_stream;
            }
            Seen::ResponseData {
                stream,
                bytes,
                end_stream,
            } => {
                let answer = answers.get_mut(stream).expect("data of an answer");
                answer.body.extend_from_slice(bytes);
                answer.complete |= *end_stream;
            }
            Seen::ResponseTrailers { stream, fields } => {
                let answer = answers.get_mut(stream).expect("trailers of an answer");
                let mut fields = fields.clone();
                fields.sort();
                answer.trailers = fields;
                answer.complete = true;
            }
            Seen::ResponseSkipped { stream, reason } => {
                panic!("stream {stream}: answer skipped ({reason:?})")
            }
            _ => {}
        }
    }
    answers
}

async fn check_connection(count: usize, header_table_size: u32, client_table_size: u32) {
    let Run {
        capture,
        served: server_seen,
        received,
    } = run_connection(count, header_table_size, client_table_size).await;
    let script = || capture.iter().map(|(p, c)| (*p, &c[..]));
    let limits = H2Limits {
        decode_responses: true,
        ..H2Limits::default()
    };
    let whole = decode_chunks(limits, script());
    for pieces in [1, 7, 1000] {
        let split = decode_chunks(
            limits,
            capture
                .iter()
                .flat_map(|(p, c)| c.chunks(pieces).map(move |b| (*p, b))),
        );
        assert_eq!(split, whole, "in pieces of {pieces}");
    }
    // Without responses decoded, the requests are described alike.
    let mut requests_only = whole.clone();
    requests_only.retain(|event| !event.is_response());
    assert_eq!(decode_chunks(H2Limits::default(), script()), requests_only);
    check_answers(count, &whole, received);
    let pushes = (0..count)
        .filter(|&i| plan_answer(i).push && !plan(i).reset)
        .count();
    assert_eq!(
        server_frames_of_type(&capture, 0x5),
        pushes,
        "push promises sent"
    );

    let (decoded, resets) = decoded_requests(&whole);
    let expected_resets: Vec<u32> = (0..count)
        .filter(|&i| plan(i).reset)
        .map(|i| 2 * i as u32 + 1)
        .collect();
    assert_eq!(resets, expected_resets);
    let complete: BTreeMap<u32, Seen1> = decoded
        .into_iter()
        .filter(|(id, request)| request.complete && !resets.contains(id))
        .collect();
    let served: BTreeMap<u32, Seen1> = server_seen
        .into_iter()
        .filter(|(_, request)| request.complete)
        .collect();
    assert_eq!(complete.len(), count - expected_resets.len());
    for (id, request) in &complete {
        let i = (*id as usize - 1) / 2;
        let planned = plan(i);
        assert_eq!(request.path, planned.path, "stream {id}");
        assert_eq!(request.method, planned.method, "stream {id}");
        assert_eq!(request.body, planned.body, "stream {id}");
        assert_eq!(
            Some(request),
            served.get(id),
            "stream {id}: decoder and h2 server differ"
        );
    }
    assert_eq!(complete, served);
}

/// How many frames of `kind` the primary sent.
fn server_frames_of_type(capture: &[(Peer, Vec<u8>)], kind: u8) -> usize {
    let bytes: Vec<u8> = capture
        .iter()
        .filter(|(peer, _)| *peer == Peer::Server)
        .flat_map(|(_, chunk)| chunk.iter().copied())
        .collect();
    let (mut pos, mut count) = (0, 0);
    while pos + 9 <= bytes.len() {
        let length = u32::from_be_bytes([0, bytes[pos], bytes[pos + 1], bytes[pos + 2]]) as usize;
        count += usize::from(bytes[pos + 3] == kind);
        pos += 9 + length;
    }
    count
}

/// The answers the decoder reports are those the client received, complete, as planned.
fn check_answers(count: usize, events: &[Seen], received: BTreeMap<u32, Answer>) {
    let decoded = decoded_answers(events);
    let answered: Vec<u32> = (0..count)
        .filter(|&i| !plan(i).reset)
        .map(|i| 2 * i as u32 + 1)
        .collect();
    assert_eq!(decoded.keys().copied().collect::<Vec<_>>(), answered);
    for (id, answer) in &decoded {
        let planned = plan_answer((*id as usize - 1) / 2);
        assert!(answer.complete, "stream {id}: answer incomplete");
        assert_eq!(answer.interim, planned.interim, "stream {id}");
        assert_eq!(answer.status, planned.status, "stream {id}");
        assert_eq!(answer.body, planned.body, "stream {id}");
        assert_eq!(
            Some(answer),
            received.get(id),
            "stream {id}: decoder and h2 client differ"
        );
    }
    let received_whole: BTreeMap<u32, Answer> = received
        .into_iter()
        .filter(|(_, answer)| answer.complete)
        .collect();
    assert_eq!(decoded, received_whole);
}

#[tokio::test]
async fn many_requests_from_a_real_client_are_seen_exactly() {
    check_connection(60, 4096, 4096).await;
}

#[tokio::test]
async fn small_and_zero_tables_set_by_the_primary_are_followed() {
    check_connection(25, 256, 4096).await;
    check_connection(10, 0, 4096).await;
}

/// The client's SETTINGS_HEADER_TABLE_SIZE changes the primary's table from the initial 4096
/// bytes: smaller (entries evicted, or none kept) and larger.
#[tokio::test]
async fn tables_the_client_sets_for_the_primary_are_followed() {
    check_connection(25, 4096, 256).await;
    check_connection(12, 4096, 0).await;
    check_connection(25, 4096, 16384).await;
}
