//! HTTP/2 copies: streams of one connection per lane, bodies beyond the shadow's window,
//! streaming bodies and trailers, gRPC statuses counted, and a stream limit that cancels copies
//! rather than making them wait.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::mpsc;

use super::{
    eventually,
    fake::testdata,
    fake_h2::{FakeH2, H2Seen},
    target_config, Harness,
};
use crate::{
    config::Tls,
    shadow::{H2Chunk, H2Copy},
};

/// A gRPC-like copy of `path` with `body` and, when given, trailers; complete.
fn copy(path: &str, body: &[u8], trailers: Option<HeaderMap>) -> H2Copy {
    H2Copy {
        head: head(path),
        body_ready: if body.is_empty() {
            Vec::new()
        } else {
            vec![Bytes::copy_from_slice(body)]
        },
        trailers,
        rest: None,
    }
}

fn head(path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://orders-shadow:8080{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "5S")
        .header("x-meta-bin", "AAEC")
        .body(())
        .expect("a request head")
}

fn trailers(name: &str, value: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
        value.parse().expect("value"),
    );
    map
}

fn grpc(harness: &Harness, status: &str) -> f64 {
    harness.value(
        "mirror_shadow_grpc_responses_total",
        Some(("grpc_status", status)),
    )
}

fn find<'a>(seen: &'a [H2Seen], path: &str) -> &'a H2Seen {
    seen.iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no request for {path}: {seen:?}"))
}

#[tokio::test]
async fn copies_arrive_as_streams_of_one_connection_with_their_metadata_and_trailers() {
    let harness = Harness::new();
    let shadow = FakeH2::new().grpc(0).start().await;
    let target = harness.spawn(target_config(shadow.address));
    for i in 0..20 {
        let path = format!("/mirror.Echo/Unary{i}");
        let message = format!("message {i}");
        target
            .try_submit_h2(copy(
                &path,
                message.as_bytes(),
                Some(trailers("x-end", "1")),
            ))
            .expect("queued");
    }
    target
        .try_submit_h2(copy("/mirror.Echo/Empty", b"", None))
        .expect("queued");
    harness
        .reaches("21 answers", 21.0, |h| h.responses("2xx"))
        .await;
    assert_eq!(grpc(&harness, "ok"), 21.0);
    assert_eq!(harness.requests(), 21.0);
    let seen = shadow.seen();
    assert_eq!(seen.accepted, 1, "one connection carried every copy");
    let first = find(&seen.requests, "/mirror.Echo/Unary0");
    assert_eq!(first.authority, "orders-shadow:8080");
    assert_eq!(first.method, "POST");
    assert_eq!(first.body, b"message 0");
    assert_eq!(first.headers["te"], "trailers");
    assert_eq!(first.headers["grpc-timeout"], "5S");
    assert_eq!(first.headers["x-meta-bin"], "AAEC");
    assert_eq!(
        first.trailers.as_ref().map(|t| t["x-end"].clone()),
        Some("1".parse().expect("value"))
    );
    let empty = find(&seen.requests, "/mirror.Echo/Empty");
    assert!(empty.complete && empty.body.is_empty() && empty.trailers.is_none());
}

#[tokio::test]
async fn a_body_larger_than_the_shadows_window_and_a_streaming_one_arrive_whole() {
    let harness = Harness::new();
    let shadow = FakeH2::new().grpc(0).start().await;
    let target = harness.spawn(target_config(shadow.address));
    // 200 KB, three times the default initial window of 65,535 bytes.
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    target
        .try_submit_h2(copy("/large", &large, None))
        .expect("queued");
    let (tx, rx) = mpsc::channel(8);
    target
        .try_submit_h2(H2Copy {
            head: head("/streaming"),
            body_ready: vec![Bytes::from_static(b"first ")],
            trailers: None,
            rest: Some(rx),
        })
        .expect("queued");
    for part in [&b"second "[..], b"third"] {
        tx.send(H2Chunk::Data(Bytes::copy_from_slice(part)))
            .await
            .expect("the copy reads its body");
    }
    tx.send(H2Chunk::Trailers(trailers("grpc-status-details-bin", "AA")))
        .await
        .expect("sent");
    harness
        .reaches("two answers", 2.0, |h| h.responses("2xx"))
        .await;
    let seen = shadow.seen();
    assert_eq!(find(&seen.requests, "/large").body, large);
    let streaming = find(&seen.requests, "/streaming");
    assert_eq!(streaming.body, b"first second third");
    assert!(streaming.trailers.is_some());
}

#[tokio::test]
async fn an_original_that_breaks_off_cancels_its_copys_stream_only() {
    let harness = Harness::new();
    let shadow = FakeH2::new().start().await;
    let target = harness.spawn(target_config(shadow.address));
    let (tx, rx) = mpsc::channel(8);
    target
        .try_submit_h2(H2Copy {
            head: head("/broken"),
            body_ready: vec![Bytes::from_static(b"half")],
            trailers: None,
            rest: Some(rx),
        })
        .expect("queued");
    tx.send(H2Chunk::Abort).await.expect("sent");
    harness
        .reaches("an aborted copy", 1.0, |h| h.errors("aborted"))
        .await;
    target
        .try_submit_h2(copy("/after", b"x", None))
        .expect("queued");
    harness
        .reaches("the next copy's answer", 1.0, |h| h.responses("2xx"))
        .await;
    let seen = shadow.seen();
    eventually("the shadow saw the broken stream end", || {
        shadow.seen().requests.len() == 2
    })
    .await;
    assert!(!find(&shadow.seen().requests, "/broken").complete);
    assert_eq!(seen.accepted, 1, "the connection went on");
}

#[tokio::test]
async fn grpc_errors_are_counted_by_name_from_trailers_and_trailers_only_answers() {
    let harness = Harness::new();
    let shadow = FakeH2::new().grpc(14).start().await;
    let target = harness.spawn(target_config(shadow.address));
    target
        .try_submit_h2(copy("/a", b"x", None))
        .expect("queued");
    harness
        .reaches("unavailable", 1.0, |h| grpc(h, "unavailable"))
        .await;

    let shadow = FakeH2::new().trailers_only(5).start().await;
    let mut config = target_config(shadow.address);
    config.name = "staging".into();
    let harness = Harness::new();
    let target = harness.spawn(config);
    target
        .try_submit_h2(copy("/b", b"x", None))
        .expect("queued");
    harness
        .reaches("not_found", 1.0, |h| grpc(h, "not_found"))
        .await;
    assert_eq!(grpc(&harness, "ok"), 0.0);
}

#[tokio::test]
async fn a_copy_that_would_wait_for_a_stream_is_refused_not_queued() {
    let harness = Harness::new();
    let shadow = FakeH2::new()
        .max_streams(1)
        .delay(Duration::from_millis(300))
        .start()
        .await;
    let target = harness.spawn(target_config(shadow.address));
    target
        .try_submit_h2(copy("/first", b"x", None))
        .expect("queued");
    eventually("the first copy is at the shadow", || {
        shadow.seen().requests.len() == 1
    })
    .await;
    // The shadow allows one stream, busy for 300 ms: the next two would have to wait.
    target
        .try_submit_h2(copy("/second", b"x", None))
        .expect("queued");
    target
        .try_submit_h2(copy("/third", b"x", None))
        .expect("queued");
    harness
        .reaches("both refused", 2.0, |h| h.errors("refused"))
        .await;
    harness
        .reaches("the first answer", 1.0, |h| h.responses("2xx"))
        .await;
    assert_eq!(harness.responses("2xx"), 1.0);
    assert_eq!(
        shadow.seen().requests.len(),
        1,
        "neither reached the shadow"
    );
    // Once the stream is free, copies go again.
    target
        .try_submit_h2(copy("/fourth", b"x", None))
        .expect("queued");
    harness
        .reaches("the fourth answer", 2.0, |h| h.responses("2xx"))
        .await;
}

#[tokio::test]
async fn tls_targets_speak_http2_by_alpn() {
    let harness = Harness::new();
    let shadow = FakeH2::new().tls().grpc(0).start().await;
    let mut config = target_config(format!("localhost:{}", shadow.address.port()));
    config.tls = Some(Tls {
        server_name: None,
        ca_file: Some(testdata("ca.pem")),
    });
    let target = harness.spawn(config);
    target
        .try_submit_h2(copy("/tls", b"over tls", None))
        .expect("queued");
    harness.reaches("an answer", 1.0, |h| grpc(h, "ok")).await;
    assert_eq!(find(&shadow.seen().requests, "/tls").body, b"over tls");
}
