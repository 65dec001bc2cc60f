//! Limits and failures: the primary path never waits, a target never exceeds its concurrency,
//! and every way of failing is counted under its kind.

use std::time::Duration;

use super::{eventually, fake::FakeShadow, get, target_config, within, Harness};
use crate::shadow::{Rejected, Target};

#[tokio::test]
async fn full_queue_rejects_at_once_while_the_shadow_hangs() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().silent().start().await;
    let mut config = target_config(shadow.address);
    config.max_concurrent = 1;
    config.queue_size = 2;
    config.request_timeout = Duration::from_secs(60);
    let target = harness.spawn(config);

    target.try_submit(get("/in-flight")).expect("queued");
    eventually("the first copy is in flight", || {
        shadow.seen().requests.len() == 1
    })
    .await;
    target.try_submit(get("/waits-1")).expect("queued");
    target.try_submit(get("/waits-2")).expect("queued");
    assert_eq!(harness.value("mirror_shadow_queue_depth", None), 2.0);

    // `try_submit` is not async and takes no lock: it answers at once by construction (how soon
    // is the benchmarks' business, not a test's wall clock).
    let rejected = target.try_submit(get("/dropped"));
    assert_eq!(rejected, Err(Rejected::QueueFull));
    assert_eq!(shadow.seen().accepted, 1);
}

#[tokio::test]
async fn at_most_max_concurrent_copies_and_connections() {
    let harness = Harness::new();
    let shadow = FakeShadow::new()
        .delay(Duration::from_millis(100))
        .start()
        .await;
    let mut config = target_config(shadow.address);
    config.max_concurrent = 2;
    let target = harness.spawn(config);
    // One at a time, each while the ones before are still being answered: every copy finds the
    // connections busy, so the third and later wait for one (and go out together).
    for i in 0..8 {
        target.try_submit(get(&format!("/{i}"))).expect("queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    harness
        .reaches("eight answers", 8.0, |h| h.responses("2xx"))
        .await;

    let seen = shadow.seen();
    assert_eq!(
        seen.most_open, 2,
        "two connections at once, not more: {seen:?}"
    );
    assert!(seen.most_serving <= 2, "{seen:?}");
    assert_eq!(seen.accepted, 2, "both connections were kept alive");
}

#[tokio::test]
async fn lanes_on_two_workers_share_the_targets_limits() {
    let harness = Harness::new();
    let shadow = FakeShadow::new()
        .delay(Duration::from_millis(50))
        .start()
        .await;
    let mut config = target_config(shadow.address);
    config.max_concurrent = 1;
    config.queue_size = 6;
    let workers = crate::workers::Workers::start(2).expect("workers");
    let target = Target::spawn_on_workers(config, &harness.metrics, workers.handles())
        .expect("target starts");
    // Three copies from each worker: each goes into its own worker's lane.
    for (worker, handle) in workers.handles().iter().enumerate() {
        for i in 0..3 {
            let target = target.clone();
            let path = format!("/worker-{worker}/{i}");
            let submitted = handle
                .spawn(async move { target.try_submit(get(&path)) })
                .await
                .expect("the submitting task ran");
            assert_eq!(submitted, Ok(()), "copy {i} of worker {worker}");
        }
    }
    harness
        .reaches("six answers", 6.0, |h| h.responses("2xx"))
        .await;
    let seen = shadow.seen();
    assert_eq!(
        seen.most_serving, 1,
        "one copy at a time over both lanes: {seen:?}"
    );
    assert_eq!(
        seen.most_open, 1,
        "one connection at a time over both lanes: {seen:?}"
    );
    for worker in 0..2 {
        let prefix = format!("GET /worker-{worker}/");
        assert_eq!(
            seen.requests
                .iter()
                .filter(|r| r.starts_with(&prefix))
                .count(),
            3,
            "every copy of worker {worker} arrived: {:?}",
            seen.heads
        );
    }
    target.shutdown(Duration::from_secs(1)).await;
    drop(target);
    tokio::task::spawn_blocking(move || workers.stop())
        .await
        .expect("workers stop");
}

#[tokio::test]
async fn the_queue_bound_counts_every_lanes_waiting_copies() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().silent().start().await;
    let mut config = target_config(shadow.address);
    config.max_concurrent = 1;
    config.queue_size = 2;
    config.request_timeout = Duration::from_secs(60);
    let workers = crate::workers::Workers::start(2).expect("workers");
    let target = Target::spawn_on_workers(config, &harness.metrics, workers.handles())
        .expect("target starts");
    let submit = |worker: usize, path: &'static str| {
        let target = target.clone();
        workers.handles()[worker].spawn(async move { target.try_submit(get(path)) })
    };
    assert_eq!(submit(0, "/in-flight").await.expect("ran"), Ok(()));
    eventually("the first copy is in flight", || {
        shadow.seen().requests.len() == 1
    })
    .await;
    assert_eq!(submit(1, "/waits-on-1").await.expect("ran"), Ok(()));
    assert_eq!(submit(0, "/waits-on-0").await.expect("ran"), Ok(()));
    assert_eq!(
        submit(1, "/dropped").await.expect("ran"),
        Err(Rejected::QueueFull),
        "two copies wait, one on each lane: the target's queue is full"
    );
    assert_eq!(harness.value("mirror_shadow_queue_depth", None), 2.0);
    target.shutdown(Duration::from_millis(100)).await;
    assert_eq!(harness.value("mirror_shadow_queue_depth", None), 0.0);
    drop(target);
    tokio::task::spawn_blocking(move || workers.stop())
        .await
        .expect("workers stop");
}

#[tokio::test]
async fn refused_connection_counts_connect() {
    let harness = Harness::new();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let target = harness.spawn(target_config(address));
    target.try_submit(get("/")).expect("queued");
    harness
        .reaches("a connect error", 1.0, |h| h.errors("connect"))
        .await;
    assert_eq!(harness.requests(), 0.0);
}

#[tokio::test]
async fn unresolvable_name_counts_dns() {
    let harness = Harness::new();
    let target = harness.spawn(target_config("shadow.invalid:80"));
    target.try_submit(get("/")).expect("queued");
    harness
        .reaches("a dns error", 1.0, |h| h.errors("dns"))
        .await;
}

#[tokio::test]
async fn slow_shadow_beyond_request_timeout_counts_timeout() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().silent().start().await;
    let mut config = target_config(shadow.address);
    config.request_timeout = Duration::from_millis(200);
    let target = harness.spawn(config);
    target.try_submit(get("/")).expect("queued");
    harness
        .reaches("a timeout", 1.0, |h| h.errors("timeout"))
        .await;
    eventually("the connection is closed", || shadow.seen().closed == 1).await;
    assert_eq!(harness.open_connections(), 0.0);
    assert_eq!(harness.requests(), 1.0, "the copy itself was sent");
}

#[tokio::test]
async fn shutdown_drops_waiting_copies_and_cuts_off_those_in_flight() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().silent().start().await;
    let mut config = target_config(shadow.address);
    config.max_concurrent = 1;
    config.request_timeout = Duration::from_secs(60);
    let target = harness.spawn(config);
    for path in ["/in-flight", "/waits-1", "/waits-2"] {
        target.try_submit(get(path)).expect("queued");
    }
    eventually("the first copy is in flight", || {
        shadow.seen().requests.len() == 1
    })
    .await;

    within("shutdown", target.shutdown(Duration::from_millis(100))).await;
    assert_eq!(target.try_submit(get("/late")), Err(Rejected::Closed));
    assert_eq!(harness.value("mirror_shadow_queue_depth", None), 0.0);
    assert_eq!(harness.open_connections(), 0.0);
    eventually("the shadow sees the connection close", || {
        shadow.seen().closed == 1
    })
    .await;
    assert_eq!(
        shadow.seen().requests.len(),
        1,
        "waiting copies were not sent"
    );
    assert_eq!(harness.errors("timeout"), 0.0);
}

#[tokio::test]
async fn shutdown_lets_copies_in_flight_finish_within_the_deadline() {
    let harness = Harness::new();
    let shadow = FakeShadow::new()
        .delay(Duration::from_millis(100))
        .start()
        .await;
    let target = harness.spawn(target_config(shadow.address));
    target.try_submit(get("/")).expect("queued");
    eventually("the copy is in flight", || {
        shadow.seen().requests.len() == 1
    })
    .await;

    within("shutdown", target.shutdown(Duration::from_secs(5))).await;
    assert_eq!(harness.responses("2xx"), 1.0);
    assert_eq!(harness.open_connections(), 0.0);
}
