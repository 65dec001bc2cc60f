//! How many requests are copied: `percent` of them at random, and with consistent sampling the
//! same ones on every node, decided by the trace id alone.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mirror_tests::config_file::ConfigFile;
use mirror_tests::daemon::DaemonConfig;
use mirror_tests::environment::require_daemon;
use mirror_tests::metrics::MirrorCounters;
use mirror_tests::node::Family;
use mirror_tests::scenario::{sampled_consistently, trace_id, trace_id_of, Mirroring};
use mirror_tests::{wait, Behaviour, Client, Request};

const HOST: &str = "orders.prod:8080";

/// Waits until every one of `requests` has been decided (copied or sampled out) and every copy
/// has reached the shadow; returns the counters' growth.
fn settle(setup: &Mirroring, before: &MirrorCounters, requests: u64) -> Result<MirrorCounters> {
    let delta = wait::until("every request decided", Duration::from_secs(10), || {
        let delta = setup.counters()?.since(before);
        Ok(if delta.copies.iter().sum::<u64>() >= requests {
            Ok(delta)
        } else {
            Err(delta.to_string())
        })
    })?;
    let mirrored = delta.copies("mirrored") as usize;
    setup
        .shadow
        .recording()
        .wait_for(mirrored, Duration::from_secs(15))
        .with_context(|| format!("copies reaching the shadow ({delta})"))?;
    Ok(delta)
}

#[test]
fn at_fifty_percent_about_half_of_two_thousand_requests_reach_the_shadow() -> Result<()> {
    const REQUESTS: usize = 2000;
    const CONNECTIONS: usize = 8;
    /// Far above what 2000 small requests on keep-alive connections need.
    const SENDING_LIMIT: Duration = Duration::from_secs(60);
    let Some(binary) =
        require_daemon("at_fifty_percent_about_half_of_two_thousand_requests_reach_the_shadow")
    else {
        return Ok(());
    };
    let config = Mirroring::config(Mirroring::target().percent(50.0));
    let setup = Mirroring::start(&binary, Behaviour::Normal, &config)?;
    let before = setup.counters()?;

    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|worker| {
                let setup = &setup;
                scope.spawn(move || -> Result<()> {
                    let mut client =
                        Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
                    for n in (worker..REQUESTS).step_by(CONNECTIONS) {
                        client.exchange_checked(&Request::get(HOST, &format!("/sample/{n}")))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("client panicked"))??;
        }
        Ok(())
    })?;
    let sending = started.elapsed();
    eprintln!("{REQUESTS} requests over {CONNECTIONS} keep-alive connections took {sending:?}");
    assert!(sending < SENDING_LIMIT, "sending took {sending:?}");

    let delta = settle(&setup, &before, REQUESTS as u64)?;
    let copies = setup.shadow.recording().requests();
    eprintln!("counters: {delta}; the shadow got {} copies", copies.len());
    assert_eq!(delta.copies("queue_full"), 0, "the shadow kept up; {delta}");
    assert_eq!(
        delta.copies("mirrored") + delta.copies("sampled_out"),
        REQUESTS as u64,
        "{delta}"
    );
    assert_eq!(copies.len() as u64, delta.copies("mirrored"), "{delta}");
    let share = copies.len() as f64 * 100.0 / REQUESTS as f64;
    assert!(
        (45.0..=55.0).contains(&share),
        "the shadow got {share:.1} % of the requests at percent = 50"
    );
    let distinct: BTreeSet<&str> = copies.iter().map(|copy| copy.target()).collect();
    assert_eq!(distinct.len(), copies.len(), "no request copied twice");
    assert_eq!(
        setup.primary.recording().count(),
        REQUESTS,
        "the primary got every request"
    );
    Ok(())
}

/// Sends `trace_ids` through `setup` with `parent` as every traceparent's parent id; returns the
/// trace ids the shadow received.
fn trace_ids_at_the_shadow(
    setup: &Mirroring,
    trace_ids: &[String],
    parent: &str,
) -> Result<BTreeSet<String>> {
    let before = setup.counters()?;
    let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
    for (n, trace) in trace_ids.iter().enumerate() {
        let request = Request::get(HOST, &format!("/trace/{n}"))
            .header("traceparent", &format!("00-{trace}-{parent}-01"));
        client.exchange_checked(&request)?;
    }
    let delta = settle(setup, &before, trace_ids.len() as u64)?;
    ensure!(delta.copies("queue_full") == 0, "{delta}");
    setup
        .shadow
        .recording()
        .requests()
        .iter()
        .map(|copy| {
            copy.header("traceparent")
                .and_then(trace_id_of)
                .map(str::to_owned)
                .context("a copy without its traceparent")
        })
        .collect()
}

#[test]
fn consistent_sampling_copies_the_same_trace_ids_on_two_independent_nodes() -> Result<()> {
    const REQUESTS: u64 = 400;
    let Some(binary) =
        require_daemon("consistent_sampling_copies_the_same_trace_ids_on_two_independent_nodes")
    else {
        return Ok(());
    };
    let config = Mirroring::config(Mirroring::target().percent(50.0).consistent());
    // Two nodes, each with its own daemon, pod, primary and shadow: nothing shared but the config.
    let first = Mirroring::start(&binary, Behaviour::Normal, &config)?;
    let second = Mirroring::start(&binary, Behaviour::Normal, &config)?;
    let trace_ids: Vec<String> = (0..REQUESTS).map(trace_id).collect();

    // Each hop has its own parent id; only the trace id may decide.
    let at_first = trace_ids_at_the_shadow(&first, &trace_ids, "00f067aa0ba902b7")?;
    let at_second = trace_ids_at_the_shadow(&second, &trace_ids, "b7ad6b7169203331")?;
    eprintln!(
        "node 1 copied {} and node 2 copied {} of {REQUESTS} traces",
        at_first.len(),
        at_second.len()
    );
    let only_first: Vec<&String> = at_first.difference(&at_second).collect();
    let only_second: Vec<&String> = at_second.difference(&at_first).collect();
    assert!(
        only_first.is_empty() && only_second.is_empty(),
        "the nodes decided differently: only node 1 copied {only_first:?}, only node 2 {only_second:?}"
    );
    let share = at_first.len() as f64 * 100.0 / REQUESTS as f64;
    assert!(
        (40.0..=60.0).contains(&share),
        "{share:.1} % copied at percent = 50"
    );

    // The decision is the documented function of the trace id (FNV-1a 64, modulo 10^6), so a
    // node running another version of the daemon decides alike too.
    let documented: BTreeSet<String> = trace_ids
        .iter()
        .filter(|trace| sampled_consistently(trace, 50.0))
        .cloned()
        .collect();
    assert_eq!(
        at_first, documented,
        "copied traces vs the documented sampling function"
    );
    Ok(())
}

/// Sends `count` requests on one keep-alive connection as fast as the primary answers; returns
/// how long it took.
fn send_burst(setup: &Mirroring, prefix: &str, count: usize) -> Result<Duration> {
    let started = Instant::now();
    let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
    for n in 0..count {
        client.exchange_checked(&Request::get(HOST, &format!("/{prefix}/{n}")))?;
    }
    Ok(started.elapsed())
}

#[test]
fn a_rate_limit_caps_copies_at_its_burst_and_rate_and_a_reload_changes_it_live() -> Result<()> {
    const REQUESTS: usize = 100;
    let Some(binary) = require_daemon(
        "a_rate_limit_caps_copies_at_its_burst_and_rate_and_a_reload_changes_it_live",
    ) else {
        return Ok(());
    };
    let limited = |per_second: f64, burst: u32| {
        Mirroring::config(Mirroring::target().rate_limit(per_second, burst)).to_toml()
    };
    let file = ConfigFile::plain(&limited(2.0, 10))?;
    let admin = DaemonConfig::default().admin;
    let setup = Mirroring::start_with_config_file(&binary, Behaviour::Normal, &file.path(), admin)?;

    let before = setup.counters()?;
    let took = send_burst(&setup, "limited", REQUESTS)?;
    let delta = settle(&setup, &before, REQUESTS as u64)?;
    // The bucket's 10, plus 2 per second of sending (and one that may be refilling).
    let most = 10 + (took.as_secs_f64() * 2.0).ceil() as u64 + 1;
    let mirrored = delta.copies("mirrored");
    ensure!(
        (10..=most).contains(&mirrored),
        "{mirrored} copies of {REQUESTS} requests in {took:?} at 2/s with a burst of 10 ({delta})"
    );
    assert_eq!(
        delta.copies("rate_limited"),
        REQUESTS as u64 - mirrored,
        "{delta}"
    );
    assert_eq!(setup.shadow.recording().count(), mirrored as usize);

    // A higher limit takes effect with the reload.
    let reloads = setup.daemon.metrics()?.config_reloads("success")?;
    file.rewrite(&limited(100_000.0, 1000))?;
    wait::until("the reload", Duration::from_secs(10), || {
        let now = setup.daemon.metrics()?.config_reloads("success")?;
        Ok(if now > reloads { Ok(()) } else { Err(now) })
    })?;
    let before = setup.counters()?;
    send_burst(&setup, "raised", REQUESTS)?;
    let delta = settle(&setup, &before, REQUESTS as u64)?;
    assert_eq!(delta.copies("mirrored"), REQUESTS as u64, "{delta}");
    assert_eq!(delta.copies("rate_limited"), 0, "{delta}");
    Ok(())
}
