//! The daemon's metrics as an operator reads them: after a known mix of traffic every counter
//! moved by exactly what that traffic implies, every family has help text, and no label carries a
//! path or an address (labels stay bounded whatever the traffic).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use mirror_tests::environment::require_daemon;
use mirror_tests::metrics::{names, Counters, Metrics, MirrorCounters};
use mirror_tests::node::Family;
use mirror_tests::scenario::{shadow_address, Mirroring, PRIMARY_PORT, TARGET};
use mirror_tests::tcp::{self, first_difference, write_while_reading};
use mirror_tests::{wait, Behaviour, Client, MirrorRule, Request, Server, ShadowTarget};

const HOST: &str = "orders.prod:8080";
/// A second target, sampling nothing: every request its rule matches is `sampled_out`.
const NOTHING_TARGET: &str = "nothing";
/// The staging target's body cap.
const BODY_CAP: u64 = 1024;
/// An intercepted port with an echo server, for the TLS-looking stream.
const TLS_PORT: u16 = 8443;
/// A port no rule intercepts, with an echo server.
const DIRECT_PORT: u16 = 9090;

/// Copies of `/api/` requests go to staging (GET and POST only, bodies up to [`BODY_CAP`]),
/// copies of `/sampled/` requests to a target sampling 0 %; anything else matches no rule.
fn config() -> mirror_tests::DaemonConfig {
    mirror_tests::DaemonConfig::intercepting_primary(&[PRIMARY_PORT])
        .drain_timeout("2s")
        .intercept("10.96.0.0/24", &[TLS_PORT])
        .shadow_target(
            Mirroring::target()
                .methods(&["GET", "POST"])
                .max_body_bytes(BODY_CAP),
        )
        .shadow_target(ShadowTarget::new(NOTHING_TARGET, shadow_address()).percent(0.0))
        .mirror_rule(MirrorRule::to(&[TARGET]).path_prefix("/api/"))
        .mirror_rule(MirrorRule::to(&[NOTHING_TARGET]).path_prefix("/sampled/"))
}

/// A TLS-looking stream, then bytes that would frame as a request if the daemon kept framing.
fn tls_looking_stream() -> Result<Vec<u8>> {
    tcp::tls_looking_stream(
        4096,
        b"GET /api/hidden HTTP/1.1\r\nHost: orders.prod:8080\r\n\r\n",
    )
}

/// Bytes the client sent and received through the daemon.
#[derive(Debug, Default)]
struct Bytes {
    sent: u64,
    received: u64,
}

impl Bytes {
    /// One request and the primary's answer to it.
    fn exchange(&mut self, client: &mut Client, request: &Request) -> Result<()> {
        client.exchange_checked(request)?;
        self.sent += request.to_bytes().len() as u64;
        self.received += request.expected_response().len() as u64;
        Ok(())
    }
}

#[test]
fn a_known_mix_of_traffic_moves_each_counter_by_exactly_its_share() -> Result<()> {
    let Some(binary) =
        require_daemon("a_known_mix_of_traffic_moves_each_counter_by_exactly_its_share")
    else {
        return Ok(());
    };
    let setup = Mirroring::start(&binary, Behaviour::Normal, &config())?;
    let primary_node = setup.node.primary();
    let tls_echo = Server::echo(
        primary_node.netns(),
        primary_node.addr(Family::V4, TLS_PORT),
    )?;
    let direct_echo = Server::echo(
        primary_node.netns(),
        primary_node.addr(Family::V4, DIRECT_PORT),
    )?;
    let primary = setup.primary_address(Family::V4);
    let before = setup.daemon.metrics()?;
    let counters_before = Counters::from_metrics(&before)?;
    let staging_before = MirrorCounters::from_metrics(&before, TARGET)?;
    let nothing_before = MirrorCounters::from_metrics(&before, NOTHING_TARGET)?;
    let mut bytes = Bytes::default();

    // Connection 1: 7 GETs; 4 under /api/ (copied), 3 elsewhere (no rule).
    let mut client = Client::connect(setup.pod(), primary)?;
    for n in 0..4 {
        bytes.exchange(
            &mut client,
            &Request::get(HOST, &format!("/api/orders/{n}")),
        )?;
    }
    for n in 0..3 {
        bytes.exchange(&mut client, &Request::get(HOST, &format!("/other/{n}")))?;
    }
    drop(client);
    // Connection 2: 2 DELETEs the target does not take, 1 POST over its body cap.
    let mut client = Client::connect(setup.pod(), primary)?;
    for n in 0..2 {
        let request = Request::new("DELETE", &format!("/api/orders/{n}")).header("Host", HOST);
        bytes.exchange(&mut client, &request)?;
    }
    let upload = vec![b'u'; 4 * BODY_CAP as usize];
    bytes.exchange(&mut client, &Request::post(HOST, "/api/upload", &upload))?;
    drop(client);
    // Connection 3: 2 GETs for the target that samples nothing.
    let mut client = Client::connect(setup.pod(), primary)?;
    for n in 0..2 {
        bytes.exchange(&mut client, &Request::get(HOST, &format!("/sampled/{n}")))?;
    }
    drop(client);
    // Connection 4: a TLS-looking stream, tunnelled.
    let payload = Arc::new(tls_looking_stream()?);
    let echoed = write_while_reading(
        setup.pod().connect(tls_echo.address())?,
        Arc::clone(&payload),
    )?;
    ensure!(
        first_difference(&payload, &echoed).is_none(),
        "the TLS-looking stream came back changed"
    );
    bytes.sent += payload.len() as u64;
    bytes.received += echoed.len() as u64;
    // 3 connections to a port no rule intercepts: they do not count anywhere.
    for n in 0..3 {
        let payload = Arc::new(format!("direct {n}").into_bytes());
        let echoed = write_while_reading(
            setup.pod().connect(direct_echo.address())?,
            Arc::clone(&payload),
        )?;
        ensure!(echoed == *payload, "direct echo {n}");
    }
    assert!(
        direct_echo
            .peers()
            .iter()
            .all(|peer| peer.ip() == setup.pod().ip(Family::V4)),
        "the direct connections bypassed the daemon: {:?}",
        direct_echo.peers()
    );

    // Counters move after the traffic they count (a connection's bytes when it ends, a copy's
    // response when it is read): wait for them to reach their totals, then compare exactly.
    let settled = wait::until(
        "the counters to reach the traffic's totals",
        Duration::from_secs(10),
        || {
            let metrics = setup.daemon.metrics()?;
            let counters = Counters::from_metrics(&metrics)?.since(&counters_before);
            let staging = MirrorCounters::from_metrics(&metrics, TARGET)?.since(&staging_before);
            let active = metrics.get("mirror_active_connections", &[]);
            Ok(
                if counters.client_to_primary_bytes >= bytes.sent
                    && counters.primary_to_client_bytes >= bytes.received
                    && staging.shadow_2xx >= 4
                    && active == Some(0.0)
                {
                    Ok(metrics)
                } else {
                    Err((counters, staging.to_string(), active))
                },
            )
        },
    )?;
    let counters = Counters::from_metrics(&settled)?.since(&counters_before);
    let staging = MirrorCounters::from_metrics(&settled, TARGET)?.since(&staging_before);
    let nothing = MirrorCounters::from_metrics(&settled, NOTHING_TARGET)?.since(&nothing_before);
    eprintln!(
        "connections: {counters:?}\nstaging: {staging}\nnothing: {nothing}\nclient: {bytes:?}"
    );

    // Connections: 3 HTTP + 1 TLS-looking, each selected and handed over once.
    assert_eq!(
        counters.intercepted, 4,
        "intercepted connections: {counters:?}"
    );
    assert_eq!(counters.syn_matched, 4, "kernel syn_matched: {counters:?}");
    assert_eq!(counters.assigned, 4, "kernel assigned: {counters:?}");
    assert_eq!(
        (
            counters.passed_no_listener,
            counters.passed_watchdog,
            counters.assign_failed
        ),
        (0, 0, 0),
        "{counters:?}"
    );
    assert_eq!(
        counters.client_to_primary_bytes, bytes.sent,
        "bytes client to primary"
    );
    assert_eq!(
        counters.primary_to_client_bytes, bytes.received,
        "bytes primary to client"
    );
    // Requests: 7 + 3 + 2 framed (nothing of the TLS-looking stream), 3 matched no rule.
    assert_eq!(staging.framed, 12, "requests framed: {staging}");
    assert_eq!(staging.unmatched, 3, "requests unmatched: {staging}");
    for (outcome, expected) in [
        ("mirrored", 4),
        ("method_not_allowed", 2),
        ("body_over_cap", 1),
        ("sampled_out", 0),
        ("queue_full", 0),
        ("body_backpressure", 0),
        ("abandoned", 0),
    ] {
        assert_eq!(
            staging.copies(outcome),
            expected,
            "staging copies {outcome}: {staging}"
        );
    }
    assert_eq!(nothing.copies("sampled_out"), 2, "{nothing}");
    assert_eq!(nothing.copies.iter().sum::<u64>(), 2, "{nothing}");
    assert_eq!(settled.tunnelled("tls")? - before.tunnelled("tls")?, 1);
    assert_eq!(
        settled.tunnelled("upgrade")? - before.tunnelled("upgrade")?,
        0
    );
    assert_eq!(staging.shadow_requests, 4, "copies written: {staging}");
    assert_eq!(staging.shadow_2xx, 4, "2xx responses: {staging}");
    assert_eq!(staging.shadow_errors.iter().sum::<u64>(), 0, "{staging}");
    assert_eq!(nothing.shadow_requests, 0, "{nothing}");

    // And the shadow got exactly those four copies.
    let copies = setup.shadow.recording().requests();
    let mut targets: Vec<&str> = copies.iter().map(|copy| copy.target()).collect();
    targets.sort_unstable();
    assert_eq!(
        targets,
        [
            "/api/orders/0",
            "/api/orders/1",
            "/api/orders/2",
            "/api/orders/3"
        ]
    );
    assert!(setup.shadow.recording().incomplete().is_empty());
    Ok(())
}

/// Whether `value` looks like a path or an address: it has a `/`, parses as an IP or socket
/// address, or has a dotted run of digits (`10.96`, `1.2.3`).
fn looks_like_path_or_address(value: &str) -> bool {
    let dotted_digits = value.as_bytes().windows(3).any(|window| {
        window[0].is_ascii_digit() && window[1] == b'.' && window[2].is_ascii_digit()
    });
    value.contains('/')
        || value.parse::<IpAddr>().is_ok()
        || value.parse::<SocketAddr>().is_ok()
        || (value.contains(':') && value.chars().any(|c| c.is_ascii_hexdigit()))
        || dotted_digits
}

/// A histogram bucket bound: a number or `+Inf`.
fn is_bucket_bound(value: &str) -> bool {
    value == "+Inf" || value.parse::<f64>().is_ok()
}

#[test]
fn every_metric_family_has_help_and_no_label_is_a_path_or_an_address() -> Result<()> {
    let Some(binary) =
        require_daemon("every_metric_family_has_help_and_no_label_is_a_path_or_an_address")
    else {
        return Ok(());
    };
    let setup = Mirroring::start(&binary, Behaviour::Normal, &config())?;
    // Traffic with paths, hosts and addresses of both families, matched and unmatched, copied
    // and not: whatever the daemon would label with, it has seen it.
    for family in Family::ALL {
        let mut client = Client::connect(setup.pod(), setup.primary_address(family))?;
        for path in ["/api/orders/42?x=1", "/other/7", "/sampled/3"] {
            client.exchange_checked(&Request::get("10.96.0.10:8080", path))?;
        }
        let request = Request::new("DELETE", "/api/orders/1").header("Host", HOST);
        client.exchange_checked(&request)?;
    }
    setup
        .shadow
        .recording()
        .wait_for(2, Duration::from_secs(5))?;
    let text = setup.daemon.admin_get("/metrics")?.text();
    let metrics = Metrics::parse(&text)?;

    let mut problems = Vec::new();
    ensure!(!metrics.types().is_empty(), "no # TYPE lines:\n{text}");
    for family in metrics.types().keys() {
        match metrics.help(family) {
            Some(help) if !help.trim().is_empty() => {}
            _ => problems.push(format!("family {family} has no help text")),
        }
    }
    for sample in metrics.samples() {
        if metrics.family_of(&sample.name).is_none() {
            problems.push(format!(
                "sample {} belongs to no declared family",
                sample.name
            ));
        }
        for (key, value) in &sample.labels {
            let allowed = key == "le" && is_bucket_bound(value);
            if !allowed && looks_like_path_or_address(value) {
                problems.push(format!("{}: label {key}={value:?}", sample.name));
            }
        }
    }
    // The families the tests rely on are all there.
    for name in [
        names::INTERCEPTED,
        names::RELAYED_BYTES,
        names::KERNEL_EVENTS,
        names::ATTACHED_INTERFACES,
        names::REQUESTS_FRAMED,
        names::REQUESTS_UNMATCHED,
        names::COPIES,
        names::TUNNELLED,
        names::SHADOW_REQUESTS,
        names::SHADOW_RESPONSES,
        names::SHADOW_ERRORS,
        names::CONFIG_RELOADS,
    ] {
        if !metrics.has(name) {
            problems.push(format!("no family for {name}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n---- /metrics ----\n{text}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}

#[test]
fn the_label_check_catches_paths_and_addresses() {
    for bad in [
        "/api/orders",
        "10.96.0.10",
        "10.96.0.10:8080",
        "fd00:96::10",
        "[fd00:96::10]:8080",
        "orders.prod:8080",
        "10.96",
    ] {
        assert!(looks_like_path_or_address(bad), "{bad}");
    }
    for good in [
        "staging",
        "mirrored",
        "client_to_primary",
        "2xx",
        "syn_matched",
        "tls",
    ] {
        assert!(!looks_like_path_or_address(good), "{good}");
    }
    assert!(is_bucket_bound("0.001") && is_bucket_bound("+Inf"));
}
