//! Connections written by a real HTTP/2 client (the `h2` crate's) to a real server (h2's), the
//! bytes of both directions captured in the order a relay passes them on, then decoded: the
//! decoder must see exactly the requests the client sent and the server received.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
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
                let _ = respond.send_response(Response::new(()), true);
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

/// Runs a client and a server through a capturing relay; returns the capture and what the
/// server saw.
async fn run_connection(
    count: usize,
    header_table_size: u32,
) -> (Vec<(Peer, Vec<u8>)>, BTreeMap<u32, Seen1>) {
    let (client_io, relay_client) = tokio::io::duplex(1 << 20);
    let (relay_server, server_io) = tokio::io::duplex(1 << 20);
    let capture: Capture = Arc::default();
    let relay = tokio::spawn(relay(relay_client, relay_server, capture.clone()));
    let server = tokio::spawn(serve(server_io, header_table_size));

    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
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
        responses.push(response);
    }
    for response in responses {
        response.await.expect("response");
    }
    drop(client);
    driver.abort();
    let _ = driver.await;
    let seen = server.await.expect("server");
    relay.abort();
    let _ = relay.await;
    let capture = capture.lock().expect("capture").clone();
    (capture, seen)
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
            other => panic!("unexpected event {other:?}"),
        }
    }
    (requests, resets)
}

async fn check_connection(count: usize, header_table_size: u32) {
    let (capture, server_seen) = run_connection(count, header_table_size).await;
    let script = || capture.iter().map(|(p, c)| (*p, &c[..]));
    let whole = decode_chunks(H2Limits::default(), script());
    let bytes = decode_chunks(
        H2Limits::default(),
        capture
            .iter()
            .flat_map(|(p, c)| c.chunks(1).map(move |b| (*p, b))),
    );
    assert_eq!(bytes, whole, "byte by byte");
    let odd = decode_chunks(
        H2Limits::default(),
        capture
            .iter()
            .flat_map(|(p, c)| c.chunks(1000).map(move |b| (*p, b))),
    );
    assert_eq!(odd, whole, "in pieces of 1000");

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

#[tokio::test]
async fn many_requests_from_a_real_client_are_seen_exactly() {
    check_connection(60, 4096).await;
}

#[tokio::test]
async fn small_and_zero_tables_set_by_the_primary_are_followed() {
    check_connection(25, 256).await;
    check_connection(10, 0).await;
}
