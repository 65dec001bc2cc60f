//! The bytes of a copy: exactly what the mirror engine gave, streamed, never completed when the
//! original broke off.

use super::{
    data, eventually, fake::FakeShadow, get, post, target_config, within, BodyChunk, BodyFraming,
    Harness,
};

const POST_HEAD: &str =
    "POST /orders?id=7 HTTP/1.1\r\nhost: orders-shadow\r\nX-Mixed-CASE:  spaced \r\nContent-Length: 11\r\n\r\n";

#[tokio::test]
async fn copy_with_content_length_arrives_byte_identical_and_its_response_is_drained() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().start().await;
    let target = harness.spawn(target_config(shadow.address));
    let (copy, body) = post(POST_HEAD, BodyFraming::ContentLength(11));
    target.try_submit(copy).expect("queued");
    for chunk in [data(b"hello"), data(b" world"), BodyChunk::End] {
        body.send(chunk).await.expect("the sender reads the body");
    }

    harness
        .reaches("a 2xx answer", 1.0, |h| h.responses("2xx"))
        .await;
    assert_eq!(
        shadow.seen().requests,
        [format!("{POST_HEAD}hello world")],
        "head case, spacing and order are kept"
    );
    assert_eq!(harness.requests(), 1.0);
    assert_eq!(
        harness.value("mirror_shadow_latency_seconds_count", None),
        1.0
    );
    // The response was read to its end: the connection waits in the pool for the next copy.
    assert_eq!(harness.open_connections(), 1.0);
    assert_eq!(shadow.seen().closed, 0);
}

#[tokio::test]
async fn chunked_body_passes_through_raw() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().start().await;
    let target = harness.spawn(target_config(shadow.address));
    let head = "PUT /items HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let raw: [&[u8]; 3] = [
        b"5;note=first\r\nhello\r\n",
        b"6\r\n world\r\n0\r\n",
        b"X-Checksum: 42\r\n\r\n",
    ];
    let (copy, body) = post(head, BodyFraming::Chunked);
    target.try_submit(copy).expect("queued");
    for chunk in raw {
        body.send(data(chunk)).await.expect("body read");
    }
    body.send(BodyChunk::End).await.expect("body read");

    harness
        .reaches("a 2xx answer", 1.0, |h| h.responses("2xx"))
        .await;
    assert_eq!(
        shadow.seen().requests,
        [format!("{head}{}", String::from_utf8_lossy(&raw.concat()))]
    );
}

#[tokio::test]
async fn body_is_streamed_as_it_arrives() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().start().await;
    let target = harness.spawn(target_config(shadow.address));
    let (copy, body) = post(POST_HEAD, BodyFraming::ContentLength(11));
    target.try_submit(copy).expect("queued");
    body.send(data(b"hello")).await.expect("body read");

    // The rest of the body has not even been produced yet.
    eventually("the shadow sees the head", || {
        shadow.seen().heads.len() == 1
    })
    .await;
    assert_eq!(shadow.seen().heads, [POST_HEAD]);
    assert!(shadow.seen().requests.is_empty());

    body.send(data(b" world")).await.expect("body read");
    body.send(BodyChunk::End).await.expect("body read");
    harness
        .reaches("a 2xx answer", 1.0, |h| h.responses("2xx"))
        .await;
    assert_eq!(shadow.seen().requests.len(), 1);
}

#[tokio::test]
async fn aborted_copy_never_completes_and_its_connection_is_closed() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().start().await;
    let target = harness.spawn(target_config(shadow.address));

    // Every body byte arrives, then the original breaks off: the shadow must still not get a
    // complete request.
    let (copy, body) = post(POST_HEAD, BodyFraming::ContentLength(11));
    target.try_submit(copy).expect("queued");
    body.send(data(b"hello world")).await.expect("body read");
    body.send(BodyChunk::Abort).await.expect("body read");
    harness
        .reaches("an aborted copy", 1.0, |h| h.errors("aborted"))
        .await;
    eventually("the shadow sees the connection close", || {
        shadow.seen().closed == 1
    })
    .await;
    let seen = shadow.seen();
    assert!(seen.requests.is_empty(), "no complete request: {seen:?}");
    assert_eq!(seen.leftovers, [format!("{POST_HEAD}hello worl")]);

    // A body stream that just closes is an abort too.
    let (copy, body) = post(POST_HEAD, BodyFraming::ContentLength(11));
    target.try_submit(copy).expect("queued");
    within("the body is read", body.send(data(b"hel")))
        .await
        .expect("body read");
    drop(body);
    harness
        .reaches("two aborted copies", 2.0, |h| h.errors("aborted"))
        .await;

    // The next copy gets a connection of its own.
    target.try_submit(get("/after")).expect("queued");
    harness
        .reaches("a 2xx answer", 1.0, |h| h.responses("2xx"))
        .await;
    let seen = shadow.seen();
    assert_eq!(seen.accepted, 3);
    assert_eq!(seen.requests.len(), 1);
    assert_eq!(
        harness.requests(),
        1.0,
        "aborted copies are not counted as sent"
    );
}
