//! The shadow path never slows or breaks the primary path. With the shadow refusing connections,
//! blackholed (SYNs dropped) or answering only after 5 s, every client request still succeeds
//! with the primary's exact response, and none waits for the shadow: each completes far below
//! the shadow's delay and timeouts. The shadow's error counters show the copies did go its way.

use std::time::Duration;

use anyhow::{Context, Result};
use mirror_tests::environment::require_daemon;
use mirror_tests::node::Family;
use mirror_tests::scenario::{shadow_address, Mirroring};
use mirror_tests::shadow::{probe, Reach};
use mirror_tests::{wait, Behaviour, Client, Request};

const HOST: &str = "orders.prod:8080";
/// Sequential requests on one keep-alive connection.
const KEEP_ALIVE_REQUESTS: usize = 50;
/// Requests on a new connection each.
const NEW_CONNECTIONS: usize = 20;
/// No request may take longer. Through a healthy daemon one takes about a millisecond; the
/// shadow delays 5 s, connects time out after 1 s and copies after 2 s.
const NO_ADDED_WAIT: Duration = Duration::from_millis(500);
/// The shadow's delay in the slow case.
const SHADOW_DELAY: Duration = Duration::from_secs(5);

fn request(n: usize) -> Request {
    if n.is_multiple_of(2) {
        Request::get(HOST, &format!("/orders/{n}")).header("Authorization", "Bearer s3cret")
    } else {
        Request::post(
            HOST,
            &format!("/orders/{n}"),
            format!("order number {n}").as_bytes(),
        )
    }
}

/// Runs the client load against a daemon whose shadow is `behaviour`, checks the property, and
/// waits for the shadow error counter `kind` to move.
fn primary_path_is_unaffected(
    test: &str,
    behaviour: Behaviour,
    expected_reach: Reach,
    kind: &str,
) -> Result<()> {
    let Some(binary) = require_daemon(test) else {
        return Ok(());
    };
    let target = Mirroring::target()
        .connect_timeout("1s")
        .request_timeout("2s");
    let setup = Mirroring::start(&binary, behaviour, &Mirroring::config(target))?;
    // The fixture is what it claims: refused at once, timing out, or accepting.
    let reach = probe(
        setup.node.netns(),
        shadow_address(),
        Duration::from_millis(300),
    )?;
    assert_eq!(
        reach, expected_reach,
        "the shadow, {behaviour}, as seen from the node"
    );
    let before = setup.counters()?;

    let mut durations = Vec::new();
    let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
    for n in 0..KEEP_ALIVE_REQUESTS {
        let request = request(n);
        let took = client
            .exchange_checked(&request)
            .with_context(|| format!("keep-alive request {n} with the shadow {behaviour}"))?;
        durations.push((
            format!("keep-alive {} {}", request.method, request.target),
            took,
        ));
    }
    for n in 0..NEW_CONNECTIONS {
        let request = request(KEEP_ALIVE_REQUESTS + n).header("Connection", "close");
        let started = std::time::Instant::now();
        let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
        client.exchange_checked(&request).with_context(|| {
            format!("request on new connection {n} with the shadow {behaviour}")
        })?;
        durations.push((
            format!("new connection {} {}", request.method, request.target),
            started.elapsed(),
        ));
    }
    let (slowest, took) = durations
        .iter()
        .max_by_key(|(_, took)| *took)
        .cloned()
        .unwrap_or_default();
    let mut sorted: Vec<Duration> = durations.iter().map(|(_, took)| *took).collect();
    sorted.sort();
    eprintln!(
        "shadow {behaviour}: {} requests, median {:?}, slowest {took:?} ({slowest})",
        sorted.len(),
        sorted[sorted.len() / 2]
    );
    // The property: no added wait from the shadow.
    assert!(
        took < NO_ADDED_WAIT,
        "no added wait from the shadow: {slowest} took {took:?} (limit {NO_ADDED_WAIT:?}) with the \
         shadow {behaviour}"
    );
    assert_eq!(
        setup.primary.recording().count(),
        KEEP_ALIVE_REQUESTS + NEW_CONNECTIONS,
        "the primary got every request"
    );

    // The copies did go the shadow's way and failed there, as counted.
    let delta = wait::until(
        &format!("mirror_shadow_errors_total{{kind=\"{kind}\"}} to move"),
        Duration::from_secs(15),
        || {
            let delta = setup.counters()?.since(&before);
            Ok(if delta.shadow_errors(kind) > 0 {
                Ok(delta)
            } else {
                Err(delta.to_string())
            })
        },
    )?;
    eprintln!("counters: {delta}");
    assert_eq!(
        delta.copies("mirrored") + delta.copies("queue_full"),
        (KEEP_ALIVE_REQUESTS + NEW_CONNECTIONS) as u64,
        "every request was handed to the shadow side or dropped there; {delta}"
    );
    assert_eq!(delta.shadow_2xx, 0, "{delta}");
    let received = setup.shadow.recording().count();
    if expected_reach == Reach::Accepted {
        assert!(
            received > 0,
            "the slow shadow received the copies it sat on"
        );
    } else {
        assert_eq!(received, 0, "an unreachable shadow receives nothing");
    }
    Ok(())
}

#[test]
fn a_refusing_shadow_adds_no_wait_to_the_primary_path() -> Result<()> {
    primary_path_is_unaffected(
        "a_refusing_shadow_adds_no_wait_to_the_primary_path",
        Behaviour::Refuse,
        Reach::Refused,
        "connect",
    )
}

#[test]
fn a_blackholed_shadow_adds_no_wait_to_the_primary_path() -> Result<()> {
    primary_path_is_unaffected(
        "a_blackholed_shadow_adds_no_wait_to_the_primary_path",
        Behaviour::Blackhole,
        Reach::TimedOut,
        "connect",
    )
}

#[test]
fn a_shadow_answering_after_five_seconds_adds_no_wait_to_the_primary_path() -> Result<()> {
    let test = "a_shadow_answering_after_five_seconds_adds_no_wait_to_the_primary_path";
    primary_path_is_unaffected(
        test,
        Behaviour::Delay(SHADOW_DELAY),
        Reach::Accepted,
        "timeout",
    )
}

/// SIGTERM while copies are stuck at the shadow: the daemon still exits 0, promptly.
fn sigterm_with_copies_stuck_at_the_shadow(test: &str, behaviour: Behaviour) -> Result<()> {
    /// The config's drain timeout (2 s, nothing open), plus the 1 s the daemon gives copies in
    /// flight, plus slack.
    const EXIT_LIMIT: Duration = Duration::from_secs(6);
    let Some(binary) = require_daemon(test) else {
        return Ok(());
    };
    let target = Mirroring::target()
        .connect_timeout("3s")
        .request_timeout("10s");
    let mut setup = Mirroring::start(&binary, behaviour, &Mirroring::config(target))?;
    let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
    for n in 0..40 {
        client.exchange_checked(&request(n))?;
    }
    drop(client);
    // Copies are in flight (waiting for a connect or a response) or queued.
    let stuck = wait::until("copies in flight", Duration::from_secs(5), || {
        let delta = setup.counters()?;
        Ok(if delta.copies("mirrored") >= 40 {
            Ok(delta)
        } else {
            Err(delta.to_string())
        })
    })?;
    eprintln!("before SIGTERM: {stuck}");
    let started = std::time::Instant::now();
    let status = setup.daemon.terminate()?;
    let took = started.elapsed();
    eprintln!("the daemon exited with {status} after {took:?}");
    assert!(
        status.success(),
        "exit status {status} with the shadow {behaviour}"
    );
    assert!(
        took < EXIT_LIMIT,
        "took {took:?} to exit with the shadow {behaviour}"
    );
    Ok(())
}

#[test]
fn sigterm_with_copies_stuck_at_a_slow_shadow_exits_promptly() -> Result<()> {
    sigterm_with_copies_stuck_at_the_shadow(
        "sigterm_with_copies_stuck_at_a_slow_shadow_exits_promptly",
        Behaviour::Delay(Duration::from_secs(30)),
    )
}

#[test]
fn sigterm_with_copies_stuck_at_a_blackholed_shadow_exits_promptly() -> Result<()> {
    sigterm_with_copies_stuck_at_the_shadow(
        "sigterm_with_copies_stuck_at_a_blackholed_shadow_exits_promptly",
        Behaviour::Blackhole,
    )
}
