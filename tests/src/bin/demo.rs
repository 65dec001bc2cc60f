//! `cargo xtask demo`: builds a node with one pod and a primary HTTP server, starts the daemon
//! with its embedded default config, sends a few requests from the pod and tells in plain words
//! what happened. Exits 0 when every request went through the daemon, 1 when interception did not
//! happen, 2 when the demo could not run. Everything it creates is removed before it exits.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mirror_tests::environment::{daemon_binary, DAEMON_BIN_ENV};
use mirror_tests::metrics::Counters;
use mirror_tests::node::Family;
use mirror_tests::{http, ConnectOptions, Daemon, Node, Pod, Server};

const BODY: &str = "hello from primary\n";
/// Requests per family.
const REQUESTS: u64 = 3;
/// How long the daemon may take to exit after SIGTERM before the demo kills it.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let started = Instant::now();
    let result = run();
    println!("\n(demo took {:.1?})", started.elapsed());
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo: FAILED: the requests were not intercepted");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("demo: could not run: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let binary = daemon_binary();
    ensure!(
        binary.is_file(),
        "no daemon binary at {} (set {DAEMON_BIN_ENV})",
        binary.display()
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the demo builds network namespaces: run it as root"
    );

    println!("1. Building a simulated Kubernetes node out of network namespaces");
    let node = Node::new()?.with_pod("web")?.with_primary()?;
    let pod = node.pod("web");
    let primary = node.primary();
    println!(
        "   node namespace {}: forwards between its pod and the primary",
        node.netns().name()
    );
    println!(
        "   pod \"web\": {} and {} behind host interface {} (Calico-style name)",
        pod.v4(),
        pod.v6(),
        pod.host_interface()
    );
    println!(
        "   primary: {} and {}, an HTTP server on port 80 answering {:?}",
        primary.v4(),
        primary.v6(),
        BODY.trim_end()
    );
    let servers = [
        Server::http(primary.netns(), primary.addr(Family::V4, 80), BODY)?,
        Server::http(primary.netns(), primary.addr(Family::V6, 80), BODY)?,
    ];

    println!("\n2. Starting {} in the node namespace", binary.display());
    println!("   without --config: its embedded default intercepts 10.96.0.0/12 and fd00:96::/64,");
    println!("   ports 80 and 8080, on interfaces named like a CNI's pod veths");
    let ready_clock = Instant::now();
    let mut daemon = Daemon::start_with_default_config(&binary, node.netns())?;
    println!(
        "   pid {}, ready after {:.1?} (GET /readyz answered 200)",
        daemon.pid(),
        ready_clock.elapsed()
    );
    let before = daemon.counters()?;
    println!("   intercepted connections so far: {}", before.intercepted);

    println!("\n3. Sending requests from the pod to the primary");
    for server in &servers {
        for number in 1..=REQUESTS {
            let (status, body, took) = request(pod, server)?;
            println!(
                "   GET http://{}/ #{number}: {status} {:?} in {took:.1?}",
                server.address(),
                body.trim_end()
            );
        }
    }
    let after = daemon.counters()?;
    let delta = after.since(&before);
    let sent = REQUESTS * servers.len() as u64;
    describe(&delta, sent, pod, &servers);

    println!("\n4. Stopping the daemon with SIGTERM");
    daemon.signal(nix::sys::signal::Signal::SIGTERM)?;
    let status = daemon
        .wait_exit(EXIT_LIMIT)
        .context("the daemon did not exit after SIGTERM")?;
    ensure!(status.success(), "the daemon exited with {status}");
    println!("   it exited cleanly ({status}); removing the namespaces");

    let intercepted = delta.intercepted == sent;
    // The log helps only when something went wrong; drop prints it otherwise.
    daemon.print_log_on_drop(!intercepted);
    if intercepted {
        println!(
            "\nResult: all {sent} requests went through mirror-daemon and reached the primary."
        );
    }
    Ok(intercepted)
}

/// One HTTP request from `pod`; returns status, body and duration.
fn request(pod: &Pod, server: &Server) -> Result<(u16, String, Duration)> {
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(3),
        ..ConnectOptions::default()
    };
    let started = Instant::now();
    let mut stream = pod.connect_with(server.address(), &options)?;
    let response = http::get(&mut stream, "primary", "/")?;
    Ok((response.status, response.text(), started.elapsed()))
}

fn describe(delta: &Counters, sent: u64, pod: &Pod, servers: &[Server]) {
    println!("\n   What the daemon counted for those {sent} requests:");
    println!(
        "   - connections it accepted from interception: {} (mirror_intercepted_connections_total)",
        delta.intercepted
    );
    println!(
        "   - bytes relayed pod -> primary: {}, primary -> pod: {}",
        delta.client_to_primary_bytes, delta.primary_to_client_bytes
    );
    println!(
        "   - kernel: {} SYNs matched a rule, {} handed to the daemon's listener, {} later \
         packets steered, {} passed because no listener, {} passed by the watchdog",
        delta.syn_matched,
        delta.assigned,
        delta.steered,
        delta.passed_no_listener,
        delta.passed_watchdog
    );
    // Distinct peers: the relay's addresses when intercepted, the pod's when not.
    let peers: std::collections::BTreeSet<String> = servers
        .iter()
        .flat_map(Server::peers)
        .map(|peer| peer.ip().to_string())
        .collect();
    let peers: Vec<String> = peers.into_iter().collect();
    println!(
        "   - the primary saw connections from: {} (the pod is {} / {})",
        peers.join(", "),
        pod.v4(),
        pod.v6()
    );
}
