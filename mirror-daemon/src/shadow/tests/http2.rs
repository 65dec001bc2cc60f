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
    target_config, within, Harness,
};
use crate::{
    config::Tls,
    shadow::{H2Chunk, H2Copy, Rejected},
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
        compare: None,
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
async fn a_shadow_may_not_push() {
    // A push would hold the shadow's data on a stream no copy reads; the connection's SETTINGS
    // forbid it (ENABLE_PUSH 0), so the shadow's push is refused at its end.
    let harness = Harness::new();
    let shadow = FakeH2::new().try_push().start().await;
    let target = harness.spawn(target_config(shadow.address));
    target
        .try_submit_h2(copy("/mirror.Echo/Unary", b"message", None))
        .expect("queued");
    harness
        .reaches("the answer", 1.0, |h| h.responses("2xx"))
        .await;
    let seen = shadow.seen();
    assert_eq!(
        (seen.pushes_sent, seen.pushes_refused),
        (0, 1),
        "the shadow tried one push"
    );
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
            compare: None,
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
            compare: None,
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

#[tokio::test]
async fn shutdown_closes_an_idle_connection_at_once_and_refuses_later_copies() {
    let harness = Harness::new();
    let shadow = FakeH2::new().grpc(0).start().await;
    let target = harness.spawn(target_config(shadow.address));
    target
        .try_submit_h2(copy("/before", b"x", None))
        .expect("queued");
    harness.reaches("an answer", 1.0, |h| grpc(h, "ok")).await;
    assert_eq!(harness.open_connections(), 1.0, "kept for the next copies");

    // Nothing is in flight: shutdown ends long before its deadline (a connection left open
    // would hold it there).
    within("shutdown", target.shutdown(Duration::from_secs(60))).await;
    assert_eq!(
        target.try_submit_h2(copy("/late", b"x", None)),
        Err(Rejected::Closed)
    );
    assert_eq!(harness.value("mirror_shadow_queue_depth", None), 0.0);
    harness
        .reaches("the connection closed", 0.0, |h| h.open_connections())
        .await;
    assert_eq!(
        shadow.seen().requests.len(),
        1,
        "the late copy was not sent"
    );
}

/// The primary's side of a compared gRPC call to the fake shadow: 200, `answer`, ending with
/// `code`.
fn primary_grpc(code: u32) -> crate::compare::Primary {
    let headers = vec![(
        "content-type".to_string(),
        Bytes::from_static(b"application/grpc"),
    )];
    let trailers = vec![("grpc-status".to_string(), Bytes::from(code.to_string()))];
    crate::compare::Primary::Answered(crate::compare::Answer {
        status: 200,
        grpc_status: crate::compare::grpc::status(&headers, &trailers),
        headers,
        body: crate::compare::AnswerBody::Complete(Bytes::from_static(b"answer")),
        trailers,
        to_head: Duration::from_millis(1),
        to_end: Duration::from_millis(2),
    })
}

/// `copy` of `path`, compared under `comparison` with the primary's `primary`.
fn compared_copy(
    path: &str,
    comparison: &std::sync::Arc<crate::compare::Comparison>,
    primary: crate::compare::Primary,
) -> H2Copy {
    let pair = crate::compare::Pair::new(
        comparison.clone(),
        crate::compare::RequestLine::new("POST", path, crate::compare::Protocol::Http2),
    );
    pair.primary(primary);
    H2Copy {
        compare: Some(crate::shadow::Compared {
            pair,
            budget: crate::mirror::budget::Budget::new(1 << 20),
        }),
        ..copy(path, b"x", None)
    }
}

/// Sends `copies` to a target at `address`, and waits until `reports` holds `pairs` verdicts.
async fn judged(
    address: impl std::fmt::Display,
    copies: Vec<H2Copy>,
    reports: &crate::compare::Reports,
    pairs: u64,
) {
    let harness = Harness::new();
    let target = harness.spawn(target_config(address));
    for copy in copies {
        target.try_submit_h2(copy).expect("queued");
    }
    eventually(&format!("{pairs} verdicts"), || {
        reports.report().comparisons[0].pairs == pairs
    })
    .await;
}

#[tokio::test]
async fn a_compared_copys_answer_is_kept_with_its_grpc_status_and_a_failure_is_a_shadow_error() {
    let (reports, comparison) = crate::compare::tests::comparison("");
    let verdicts = || reports.report().comparisons[0].verdicts.clone();
    // Trailers: `answer`, then grpc-status 5.
    let shadow = FakeH2::new().grpc(5).start().await;
    let copies = vec![
        compared_copy("/same", &comparison, primary_grpc(5)),
        compared_copy("/differs", &comparison, primary_grpc(0)),
    ];
    judged(shadow.address, copies, &reports, 2).await;
    assert_eq!(verdicts().matched, 1, "{:?}", verdicts());
    assert_eq!(verdicts().status_mismatch, 1);

    // Trailers-Only: no body, grpc-status 5 in the head; the primary ended the same way.
    let shadow = FakeH2::new().trailers_only(5).start().await;
    let crate::compare::Primary::Answered(answer) = primary_grpc(5) else {
        unreachable!("answered");
    };
    let trailers_only = crate::compare::Primary::Answered(crate::compare::Answer {
        body: crate::compare::AnswerBody::Complete(Bytes::new()),
        ..answer
    });
    let copies = vec![compared_copy("/only", &comparison, trailers_only)];
    judged(shadow.address, copies, &reports, 3).await;
    assert_eq!(verdicts().matched, 2, "{:?}", verdicts());

    // A shadow that refuses the connection.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let copies = vec![compared_copy("/refused", &comparison, primary_grpc(0))];
    judged(address, copies, &reports, 4).await;
    assert_eq!(verdicts().shadow_error, 1, "{:?}", verdicts());
    let report = reports.report();
    assert_eq!(
        report.comparisons[0].shadow_errors.get("connect"),
        Some(&1),
        "{report:?}"
    );
}
