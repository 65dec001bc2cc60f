//! How many requests are copied: `percent` of them at random, and with consistent sampling the
//! same ones on every node, decided by the trace id alone.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
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
