//! Connections and responses: kept alive when both sides allow it, every response framing read
//! to its end, anything doubtful closed.

use std::time::Duration;

use super::{
    data, eventually,
    fake::{FakeShadow, OK},
    get, post, target_config, BodyChunk, BodyFraming, Harness, ShadowRequest, Tuning,
};

#[tokio::test]
async fn two_copies_share_one_connection() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().start().await;
    let target = harness.spawn(target_config(shadow.address));
    target.try_submit(get("/one")).expect("queued");
    harness
        .reaches("first answer", 1.0, |h| h.responses("2xx"))
        .await;
    target.try_submit(get("/two")).expect("queued");
    harness
        .reaches("second answer", 2.0, |h| h.responses("2xx"))
        .await;

    assert_eq!(shadow.seen().accepted, 1);
    assert_eq!(shadow.seen().requests.len(), 2);
    assert_eq!(harness.open_connections(), 1.0);
}

#[tokio::test]
async fn connection_close_response_means_a_new_connection() {
    let harness = Harness::new();
    let shadow = FakeShadow::new()
        .reply(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .start()
        .await;
    let target = harness.spawn(target_config(shadow.address));
    target.try_submit(get("/one")).expect("queued");
    harness
        .reaches("first answer", 1.0, |h| h.responses("5xx"))
        .await;
    target.try_submit(get("/two")).expect("queued");
    harness
        .reaches("second answer", 2.0, |h| h.responses("5xx"))
        .await;

    assert_eq!(shadow.seen().accepted, 2);
    eventually("no connection stays open", || {
        harness.open_connections() == 0.0
    })
    .await;
}

/// A shadow's answer, and what two copies answered so should show.
struct Framing {
    name: &'static str,
    reply: &'static [u8],
    /// The shadow closes the connection after answering.
    shadow_closes: bool,
    head_request: bool,
    class: &'static str,
    /// Connections the two copies take: 1 when the connection was reused.
    connections: usize,
}

impl Framing {
    const fn new(name: &'static str, reply: &'static [u8], class: &'static str) -> Self {
        Self {
            name,
            reply,
            shadow_closes: false,
            head_request: false,
            class,
            connections: 1,
        }
    }

    /// Sends two copies one after the other; returns how many connections the shadow accepted.
    async fn two_copies(&self) -> usize {
        let harness = Harness::new();
        let mut fake = FakeShadow::new().reply(self.reply);
        if self.shadow_closes {
            fake = fake.close_after_reply();
        }
        let shadow = fake.start().await;
        let target = harness.spawn(target_config(shadow.address));
        for answered in [1.0, 2.0] {
            let copy = if self.head_request {
                ShadowRequest {
                    head: "HEAD /status HTTP/1.1\r\nHost: a\r\n\r\n".into(),
                    is_head: true,
                    compare: None,
                    ..get("/")
                }
            } else {
                get("/")
            };
            target.try_submit(copy).expect("queued");
            harness
                .reaches(self.name, answered, |h| h.responses(self.class))
                .await;
        }
        for kind in ["timeout", "reset", "protocol"] {
            assert_eq!(harness.errors(kind), 0.0, "{}: {kind} errors", self.name);
        }
        shadow.seen().accepted
    }
}

#[tokio::test]
async fn every_response_framing_is_drained_and_the_connection_reused_when_allowed() {
    let cases = [
        Framing::new("content-length", OK, "2xx"),
        Framing::new(
            "chunked with extensions and trailers",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\nwiki\r\n0\r\nExpires: never\r\n\r\n",
            "2xx",
        ),
        Framing {
            shadow_closes: true,
            connections: 2,
            ..Framing::new(
                "until close",
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends when the connection does",
                "2xx",
            )
        },
        Framing {
            head_request: true,
            ..Framing::new(
                "HEAD",
                b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n",
                "2xx",
            )
        },
        Framing::new("204", b"HTTP/1.1 204 No Content\r\n\r\n", "2xx"),
        Framing::new(
            "304",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            "3xx",
        ),
        Framing::new(
            "1xx then final",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!",
            "4xx",
        ),
        Framing {
            shadow_closes: true,
            connections: 2,
            ..Framing::new(
                "HTTP/1.0 without keep-alive",
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                "2xx",
            )
        },
    ];
    for case in cases {
        assert_eq!(case.two_copies().await, case.connections, "{}", case.name);
    }
}

#[tokio::test]
async fn malformed_response_counts_protocol_and_discards_the_connection() {
    let harness = Harness::new();
    let shadow = FakeShadow::new()
        .reply(b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n")
        .start()
        .await;
    let target = harness.spawn(target_config(shadow.address));
    target.try_submit(get("/")).expect("queued");
    harness
        .reaches("a protocol error", 1.0, |h| h.errors("protocol"))
        .await;
    eventually("the connection is closed", || shadow.seen().closed == 1).await;
    assert_eq!(harness.open_connections(), 0.0);
    assert_eq!(harness.responses("2xx"), 0.0);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().start().await;
    let tuning = Tuning {
        idle_timeout: Duration::from_millis(100),
    };
    let target = harness.spawn_tuned(target_config(shadow.address), tuning);
    target.try_submit(get("/")).expect("queued");
    harness
        .reaches("an answer", 1.0, |h| h.responses("2xx"))
        .await;
    eventually("the idle connection is closed", || {
        shadow.seen().closed == 1
    })
    .await;
    assert_eq!(harness.open_connections(), 0.0);
}

#[tokio::test]
async fn a_pooled_connection_the_shadow_closed_is_not_used() {
    let harness = Harness::new();
    // Keep-alive answers, but the shadow closes anyway, as an ingress does after its idle timeout.
    let shadow = FakeShadow::new().close_after_reply().start().await;
    let target = harness.spawn(target_config(shadow.address));
    target.try_submit(get("/one")).expect("queued");
    harness
        .reaches("first answer", 1.0, |h| h.responses("2xx"))
        .await;
    eventually("the shadow closed its side", || shadow.seen().closed == 1).await;

    // A copy with a body could not be sent again: it must get a live connection at once.
    let (copy, body) = post(
        "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n",
        BodyFraming::ContentLength(2),
    );
    target.try_submit(copy).expect("queued");
    body.send(data(b"hi")).await.expect("body read");
    body.send(BodyChunk::End).await.expect("body read");
    harness
        .reaches("second answer", 2.0, |h| h.responses("2xx"))
        .await;
    assert_eq!(harness.errors("reset"), 0.0);
    assert_eq!(shadow.seen().accepted, 2);
}

#[tokio::test]
async fn a_copy_without_body_is_sent_again_when_a_reused_connection_drops_it() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().answers_per_connection(1).start().await;
    let target = harness.spawn(target_config(shadow.address));
    target.try_submit(get("/one")).expect("queued");
    harness
        .reaches("first answer", 1.0, |h| h.responses("2xx"))
        .await;
    target.try_submit(get("/two")).expect("queued");
    harness
        .reaches("second answer", 2.0, |h| h.responses("2xx"))
        .await;
    assert_eq!(harness.errors("reset"), 0.0);
    assert_eq!(shadow.seen().accepted, 2);

    // A copy with a body was consumed by the first attempt: it is lost, and counted.
    let (copy, body) = post(
        "POST /three HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n",
        BodyFraming::ContentLength(2),
    );
    target.try_submit(copy).expect("queued");
    body.send(data(b"hi")).await.expect("body read");
    body.send(BodyChunk::End).await.expect("body read");
    harness.reaches("a reset", 1.0, |h| h.errors("reset")).await;
    assert_eq!(harness.responses("2xx"), 2.0);
}

#[tokio::test]
async fn copies_ready_together_go_out_pipelined_on_one_connection_in_order() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().start().await;
    let target = harness.spawn(target_config(shadow.address));
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(format!(
            "GET /{i} HTTP/1.1\r\nHost: orders-shadow\r\nX-Case: Kept\r\n\r\n"
        ));
        target.try_submit(get(&format!("/{i}"))).expect("queued");
    }
    let post_head = "POST /5 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n";
    sent.push(format!("{post_head}body"));
    target
        .try_submit(ShadowRequest {
            head: post_head.into(),
            body: BodyFraming::ContentLength(4),
            body_ready: vec!["bo".into(), "dy".into()],
            body_rx: None,
            is_head: false,
            compare: None,
        })
        .expect("queued");
    harness
        .reaches("six answers", 6.0, |h| h.responses("2xx"))
        .await;
    let seen = shadow.seen();
    assert_eq!(seen.requests, sent, "in order, byte for byte");
    assert_eq!(
        seen.accepted, 1,
        "one connection carried them all: {seen:?}"
    );
    assert_eq!(harness.requests(), 6.0);
    assert_eq!(
        harness.open_connections(),
        1.0,
        "and it stays open for more"
    );
}

#[tokio::test]
async fn pipelined_copies_after_an_answer_that_closes_go_again_on_a_new_connection() {
    let harness = Harness::new();
    let shadow = FakeShadow::new()
        .reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        .close_after_reply()
        .start()
        .await;
    let target = harness.spawn(target_config(shadow.address));
    for i in 0..4 {
        target.try_submit(get(&format!("/{i}"))).expect("queued");
    }
    harness
        .reaches("four answers", 4.0, |h| h.responses("2xx"))
        .await;
    for kind in ["timeout", "reset", "protocol"] {
        assert_eq!(harness.errors(kind), 0.0, "{kind} errors");
    }
    let seen = shadow.seen();
    let paths: Vec<&str> = seen
        .requests
        .iter()
        .filter_map(|r| r.split(' ').nth(1))
        .collect();
    assert_eq!(paths, ["/0", "/1", "/2", "/3"], "each once, in order");
    assert_eq!(seen.accepted, 4, "a connection per answer");
}
