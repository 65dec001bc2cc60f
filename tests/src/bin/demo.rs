//! `cargo xtask demo`: shows mirroring on a simulated node. A pod talks to the primary (the
//! `orders` service) over HTTP/1.1 and makes a gRPC call (HTTP/2); mirror-daemon relays each
//! request untouched and copies those of the orders API, and the gRPC call, to the shadow, the
//! staging cluster's ingress, with `Host: <host>-shadow` (`:authority` for gRPC). The demo tells
//! in plain words what the client got, what the shadow received and what the daemon counted.
//! Then the orders service's prices API (port 8080, the Python answers server of the comparison
//! tests in both places) is mirrored with every answer compared, and the demo ends with the
//! comparison report, as `mirror-daemon comparisons` prints it: a price that differs in one
//! answer in ten, and a timestamp that differs in every answer, told apart as noise.
//!
//! Exit codes: 0 when every request was intercepted and answered by the primary byte for byte
//! and exactly the expected copies reached the shadow, and the comparison found what the prices
//! API's two versions differ in; 1 when interception or mirroring did not
//! happen as expected; 2 when the demo could not run. Everything it creates is removed before it
//! exits.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mirror_tests::daemon::DEFAULT_ADMIN;
use mirror_tests::environment::{daemon_binary, DAEMON_BIN_ENV};
use mirror_tests::grpc::{run_client, Call, GrpcBehaviour, GrpcServer, Message, Script};
use mirror_tests::metrics::{Counters, MirrorCounters};
use mirror_tests::node::{Family, SHADOW_V4};
use mirror_tests::python::PythonServer;
use mirror_tests::recording::RecordedRequest;
use mirror_tests::{
    wait, Behaviour, Client, Daemon, Node, Pod, PrimaryServer, Request, ShadowServer,
};

/// The daemon's config for the demo.
const CONFIG: &str = include_str!("demo.toml");
/// The shadow target's name in [`CONFIG`].
const TARGET: &str = "staging";
/// The Host the pod's client uses (a Kubernetes service name).
const HOST: &str = "orders.prod.svc.cluster.local";
/// How long the copies may take to reach the shadow.
const COPY_LIMIT: Duration = Duration::from_secs(5);
/// How long the daemon may take to exit after SIGTERM before the demo kills it.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let started = Instant::now();
    let result = run();
    println!("\n(demo took {:.1?})", started.elapsed());
    match result {
        Ok(Verdict::AsExpected) => ExitCode::SUCCESS,
        Ok(Verdict::Failed(why)) => {
            eprintln!("demo: FAILED: {why}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("demo: could not run: {error:#}");
            ExitCode::from(2)
        }
    }
}

enum Verdict {
    AsExpected,
    Failed(String),
}

/// One request the demo sends, and whether the rule should copy it.
struct Step {
    family: Family,
    request: Request,
    copied: bool,
}

fn steps() -> Vec<Step> {
    let order = br#"{"item":"book","quantity":1}"#;
    vec![
        Step {
            family: Family::V4,
            request: Request::get(HOST, "/api/orders/42")
                .header("Authorization", "Bearer demo-token")
                .header("Accept", "application/json")
                .header("Connection", "close"),
            copied: true,
        },
        Step {
            family: Family::V4,
            request: Request::new("POST", "/api/orders")
                .header("Host", HOST)
                .header("Authorization", "Bearer demo-token")
                .header("Content-Type", "application/json")
                .header("Connection", "close")
                .body(order),
            copied: true,
        },
        Step {
            family: Family::V6,
            request: Request::get(HOST, "/api/orders?status=open").header("Connection", "close"),
            copied: true,
        },
        Step {
            family: Family::V4,
            request: Request::get(HOST, "/healthz").header("Connection", "close"),
            copied: false,
        },
    ]
}

fn run() -> Result<Verdict> {
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
    let node = Node::new()?
        .with_pod("web")?
        .with_primary()?
        .with_shadow()?;
    let pod = node.pod("web");
    let primary = node.primary();
    let shadow_service = node.shadow();
    println!(
        "   pod \"web\": {} and {} behind host interface {} (Calico-style name)",
        pod.v4(),
        pod.v6(),
        pod.host_interface()
    );
    println!(
        "   primary (the orders service): {} and {}, port 80, an HTTP server that answers every \
         request with a deterministic text",
        primary.v4(),
        primary.v6()
    );
    println!(
        "   shadow (the staging cluster's ingress): {}, port 80, outside the cluster's ranges, \
         reached through link {} (no CNI name, so never intercepted)",
        shadow_service.v4(),
        shadow_service.host_interface()
    );
    let primary_server = PrimaryServer::start(
        primary.netns(),
        &[primary.addr(Family::V4, 80), primary.addr(Family::V6, 80)],
    )?;
    let shadow = ShadowServer::start(
        shadow_service.netns(),
        SocketAddr::new(SHADOW_V4.into(), 80),
        Behaviour::Normal,
    )?;

    println!("\n2. Starting {} in the node namespace", binary.display());
    println!("   its config (tests/src/bin/demo.toml): intercept 10.96.0.0/12 and fd00:96::/64 on");
    println!(
        "   ports 80, 8080 and 50051; copy requests whose path starts with /api/ on port 80 to"
    );
    println!(
        "   target \"staging\" at 172.20.0.10:80, adding x-shadow: true and removing authorization,"
    );
    println!("   and gRPC calls of /mirror.test.Echo/ on port 50051 to \"staging-grpc\" at 172.20.0.10:50051");
    println!(
        "   and requests under /api/ on port 8080 to \"staging-prices\" at 172.20.0.10:8080, \
         comparing every answer with production's"
    );
    let ready_clock = Instant::now();
    let mut daemon = Daemon::start_toml(&binary, node.netns(), CONFIG, DEFAULT_ADMIN.parse()?)?;
    println!(
        "   pid {}, ready after {:.1?} (GET /readyz answered 200)",
        daemon.pid(),
        ready_clock.elapsed()
    );
    let before = daemon.counters()?;
    let mirror_before = MirrorCounters::from_metrics(&daemon.metrics()?, TARGET)?;

    println!("\n3. Sending requests from the pod to the primary");
    let steps = steps();
    let mut problems = Vec::new();
    for step in &steps {
        if let Err(error) = send(pod, &primary_server, step) {
            problems.push(format!(
                "{} {}: {error:#}",
                step.request.method, step.request.target
            ));
        }
    }

    println!("\n4. What the shadow received");
    let expected_copies = steps.iter().filter(|step| step.copied).count();
    let copies = shadow
        .recording()
        .wait_for(expected_copies, COPY_LIMIT)
        .unwrap_or_else(|_| shadow.recording().requests());
    for copy in &copies {
        describe_copy(copy);
    }
    if copies.is_empty() {
        println!("   nothing");
    }
    problems.extend(check_copies(&steps, &copies));

    // Give the shadow's answers a moment (bounded) to be counted, then read every counter.
    let mirror_now = || -> Result<MirrorCounters> {
        Ok(MirrorCounters::from_metrics(&daemon.metrics()?, TARGET)?.since(&mirror_before))
    };
    let _ = wait::until("shadow answers counted", COPY_LIMIT, || {
        let now = mirror_now()?;
        Ok(if now.shadow_2xx >= copies.len() as u64 {
            Ok(())
        } else {
            Err(now.to_string())
        })
    });
    let mirror = mirror_now()?;
    let delta = daemon.counters()?.since(&before);
    describe_counters(&delta, &mirror);
    if delta.intercepted != steps.len() as u64 {
        problems.push(format!(
            "{} of {} connections were intercepted",
            delta.intercepted,
            steps.len()
        ));
    }
    if mirror.copies("mirrored") != expected_copies as u64
        || mirror.shadow_2xx != expected_copies as u64
    {
        problems.push(format!(
            "expected {expected_copies} copies mirrored and answered; counted {mirror}"
        ));
    }

    println!("\n5. A gRPC call from the pod (HTTP/2 with prior knowledge, Python grpcio)");
    match grpc_call(&node, &daemon) {
        Ok(()) => {}
        Err(error) => problems.push(format!("gRPC: {error:#}")),
    }

    println!("\n6. Comparing staging's answers with production's: the prices API on port 8080");
    match compare_prices(&node, &daemon) {
        Ok(found) => problems.extend(found),
        Err(error) => problems.push(format!("comparison: {error:#}")),
    }

    println!("\n7. Stopping the daemon with SIGTERM");
    daemon.signal(nix::sys::signal::Signal::SIGTERM)?;
    let status = daemon
        .wait_exit(EXIT_LIMIT)
        .context("the daemon did not exit after SIGTERM")?;
    ensure!(status.success(), "the daemon exited with {status}");
    println!("   it exited cleanly ({status}); removing the namespaces");

    // The log helps only when something went wrong; drop prints it then.
    daemon.print_log_on_drop(!problems.is_empty());
    if problems.is_empty() {
        println!(
            "\nResult: all {} HTTP requests and the gRPC call went through mirror-daemon to the \
             primary and back unchanged; the {expected_copies} orders-API requests and the gRPC \
             call were copied to the staging shadow, the rest were not; of the {PRICES} prices-API \
             answers compared, /price differed in {} and /generated_at in all, as noise.",
            steps.len(),
            PRICES / 10
        );
        Ok(Verdict::AsExpected)
    } else {
        Ok(Verdict::Failed(problems.join("; ")))
    }
}

/// The gRPC service's port, on the primary and on the staging ingress.
const GRPC_PORT: u16 = 50051;
/// The gRPC authority the pod's client uses.
const GRPC_AUTHORITY: &str = "orders.prod.svc.cluster.local:50051";

/// A unary gRPC call through the daemon: its answer, and its copy at the staging ingress.
fn grpc_call(node: &Node, daemon: &Daemon) -> Result<()> {
    let primary = node.primary();
    let _primary_server = GrpcServer::start(
        "primary",
        primary.netns(),
        &[primary.addr(Family::V4, GRPC_PORT)],
        GrpcBehaviour::Normal,
    )?;
    let shadow = GrpcServer::start(
        "shadow",
        node.shadow().netns(),
        &[SocketAddr::new(SHADOW_V4.into(), GRPC_PORT)],
        GrpcBehaviour::Normal,
    )?;
    let before = MirrorCounters::from_metrics(&daemon.metrics()?, "staging-grpc")?;
    let call = Call::unary("place-order", Message::text("book x1"))
        .metadata("x-tenant", "acme")
        .timeout(Duration::from_secs(5));
    let script = Script::new(vec![call.clone()]).authority(GRPC_AUTHORITY);
    let run = run_client(
        node.pod("web").netns(),
        primary.addr(Family::V4, GRPC_PORT),
        &script,
    )?;
    run.check(&script)
        .context("the client's answer is not the primary's")?;
    let answer = run.call("place-order")?.answer();
    println!(
        "   {} to {GRPC_AUTHORITY}: the client got status {} with {} message(s), as the primary sent",
        call.method,
        answer.code,
        answer.responses.len()
    );
    let copies = shadow.wait_for(1, COPY_LIMIT)?;
    let copy = &copies[0];
    println!(
        "   the staging ingress got {} with :authority {}, x-tenant: {}, x-shadow: {}",
        copy.method,
        copy.authority,
        copy.metadata_value("x-tenant").unwrap_or("(none)"),
        copy.metadata_value("x-shadow").unwrap_or("(none)")
    );
    ensure!(
        copy.authority == "orders.prod.svc.cluster.local-shadow:50051"
            && copy.metadata_value("x-tenant") == Some("acme")
            && copy.metadata_value("x-shadow") == Some("true"),
        "the copy of the gRPC call is not as configured: {copy:?}"
    );
    let counted = wait::until("the copy's answer counted", COPY_LIMIT, || {
        let now = MirrorCounters::from_metrics(&daemon.metrics()?, "staging-grpc")?.since(&before);
        Ok(if now.shadow_2xx >= 1 {
            Ok(now)
        } else {
            Err(now.to_string())
        })
    })?;
    println!(
        "   the daemon counted it: {} mirrored to \"staging-grpc\", {} answered (grpc-status ok)",
        counted.copies("mirrored"),
        counted.shadow_2xx
    );
    Ok(())
}

/// The prices API's port, on the primary and on the staging ingress.
const PRICES_PORT: u16 = 8080;
/// The rule and target comparing its answers in [`CONFIG`].
const PRICES_RULE: &str = "orders-prices";
const PRICES_TARGET: &str = "staging-prices";
/// Requests the demo sends to the prices API: `/api/quote/<n>`, n = 0, 1, ...; staging's price
/// differs when n % 10 == 0.
const PRICES: u64 = 40;

/// Starts the answers server as the prices API in production and in staging, sends [`PRICES`]
/// requests from the pod, waits for their verdicts and prints the report `mirror-daemon
/// comparisons` renders. Returns what is not as the servers' rules say it must be.
fn compare_prices(node: &Node, daemon: &Daemon) -> Result<Vec<String>> {
    let primary = node.primary().addr(Family::V4, PRICES_PORT);
    let staging = SocketAddr::new(SHADOW_V4.into(), PRICES_PORT);
    let _primary = PythonServer::answers("primary", node.primary().netns(), primary)?;
    let _staging = PythonServer::answers("shadow", node.shadow().netns(), staging)?;
    println!(
        "   production and staging run the same JSON API at {primary} and {staging}, where the \
         staging version"
    );
    println!(
        "   answers a price one higher for every tenth order, and both stamp each answer with \
         generated_at"
    );
    println!(
        "   (tests/h2/answers_server.py); rule \"{PRICES_RULE}\" mirrors /api/ on port \
         {PRICES_PORT} to \"{PRICES_TARGET}\" and compares every answer"
    );
    let mut client = Client::connect(node.pod("web"), primary)?;
    client
        .stream()
        .set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut statuses = Vec::new();
    for n in 0..PRICES {
        let path = format!("/api/quote/{n}");
        client.send(&Request::get(&format!("{HOST}:{PRICES_PORT}"), &path).to_bytes())?;
        statuses.push(client.read_response("GET")?.status());
    }
    println!(
        "   the pod sent {PRICES} GETs on one connection (/api/quote/0 to /api/quote/{}): {} \
         answered 200 by production",
        PRICES - 1,
        statuses.iter().filter(|s| **s == 200).count()
    );
    let comparison = wait::until("every pair judged", COPY_LIMIT * 2, || {
        let response = daemon.admin_get("/comparisons")?;
        let report: serde_json::Value =
            serde_json::from_str(&response.text()).context("/comparisons is not JSON")?;
        let comparison = report["comparisons"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["rule"] == PRICES_RULE))
            .cloned()
            .context("/comparisons has no orders-prices comparison")?;
        let pairs = comparison["pairs"].as_u64().unwrap_or_default();
        Ok(if pairs >= PRICES {
            Ok(comparison)
        } else {
            Err(pairs)
        })
    })?;
    let rendered = daemon.comparisons_report()?;
    println!(
        "\n   mirror-daemon comparisons --admin {}:\n",
        daemon.admin_address()
    );
    for line in rendered.lines() {
        println!("   | {line}");
    }
    println!(
        "\n   /price differs in one pair in ten: a regression to look at. /generated_at differs \
         in every pair: noise;"
    );
    println!(
        "   once 10 pairs had shown it, it left the verdicts: pairs that differ only there are \
         \"match\" (\"apart from noise\")."
    );
    Ok(prices_problems(&comparison, &statuses))
}

/// What the prices comparison should have found and did not.
fn prices_problems(comparison: &serde_json::Value, statuses: &[u16]) -> Vec<String> {
    let mut problems = Vec::new();
    if statuses.len() as u64 != PRICES || statuses.iter().any(|s| *s != 200) {
        problems.push(format!("the prices API answered {statuses:?}"));
    }
    let field = |name: &str| {
        comparison["fields"]
            .as_array()
            .and_then(|fields| fields.iter().find(|f| f["field"] == name))
            .cloned()
            .unwrap_or_default()
    };
    let (price, stamp) = (field("/price"), field("/generated_at"));
    // n = 0, 10, 20, 30.
    if price["differing_pairs"] != PRICES / 10
        || price["compared_pairs"] != PRICES
        || price["noise"] != false
    {
        problems.push(format!(
            "/price should differ in {} of {PRICES} pairs, not as noise: {price}",
            PRICES / 10
        ));
    }
    if stamp["rate"] != 1.0 || stamp["noise"] != true {
        problems.push(format!(
            "/generated_at should differ in every pair, as noise: {stamp}"
        ));
    }
    // Those before the stamp was known as noise, and those with another price, differ.
    if comparison["verdicts"]["match"].as_u64().unwrap_or_default() < PRICES / 2
        || comparison["matched_apart_from_noise"]
            .as_u64()
            .unwrap_or_default()
            == 0
    {
        problems.push(format!(
            "fewer matches than expected: {}",
            comparison["verdicts"]
        ));
    }
    problems
}

/// Sends one request on a new connection and says what the client got.
fn send(pod: &Pod, primary: &PrimaryServer, step: &Step) -> Result<()> {
    let address = primary
        .addresses()
        .into_iter()
        .find(|address| address.is_ipv6() == (step.family == Family::V6))
        .context("no primary address of that family")?;
    let request = &step.request;
    let url = format!("http://{address}{}", request.target);
    let mut client = Client::connect(pod, address)?;
    let (raw, took) = client.exchange(request)?;
    let response = mirror_tests::wire::read_response(
        &mut mirror_tests::wire::Reader::new(raw.as_slice()),
        &request.method,
    )?;
    println!(
        "   {} {url} ({}): the client got {} {:?} in {took:.1?}",
        request.method,
        if step.copied {
            "an orders-API request"
        } else {
            "not under /api/"
        },
        response.status(),
        String::from_utf8_lossy(&response.body.data).trim_end()
    );
    ensure!(
        raw == request.expected_response(),
        "the response differs from what the primary sends"
    );
    println!("      byte for byte what the primary sent");
    Ok(())
}

fn describe_copy(copy: &RecordedRequest) {
    println!(
        "   {} {}  Host: {}  x-shadow: {}  authorization: {}",
        copy.method(),
        copy.target(),
        copy.header("host").unwrap_or("(none)"),
        copy.header("x-shadow").unwrap_or("(none)"),
        copy.header("authorization").unwrap_or("(removed)")
    );
    if !copy.body.data.is_empty() {
        println!("      body: {}", String::from_utf8_lossy(&copy.body.data));
    }
}

/// What is wrong with the copies, if anything.
fn check_copies(steps: &[Step], copies: &[RecordedRequest]) -> Vec<String> {
    let mut problems = Vec::new();
    let shadow_host = format!("{HOST}-shadow");
    for step in steps {
        let request = &step.request;
        let found: Vec<&RecordedRequest> = copies
            .iter()
            .filter(|copy| copy.method() == request.method && copy.target() == request.target)
            .collect();
        match (step.copied, found.as_slice()) {
            (false, []) => {}
            (false, _) => {
                problems.push(format!("{} was copied but matches no rule", request.target))
            }
            (true, [copy]) => {
                if copy.header("host") != Some(shadow_host.as_str())
                    || copy.header("x-shadow") != Some("true")
                    || copy.header("authorization").is_some()
                    || copy.header("connection").is_some()
                    || copy.body.data != request.payload()
                {
                    problems.push(format!(
                        "the copy of {} is not as configured",
                        request.target
                    ));
                }
            }
            (true, found) => problems.push(format!(
                "{} reached the shadow {} times instead of once",
                request.target,
                found.len()
            )),
        }
    }
    problems
}

fn describe_counters(delta: &Counters, mirror: &MirrorCounters) {
    println!("\n   What the daemon counted (its /metrics):");
    println!(
        "   - connections intercepted: {} (mirror_intercepted_connections_total); kernel: {} SYNs \
         matched a rule, {} handed to the daemon",
        delta.intercepted, delta.syn_matched, delta.assigned
    );
    println!(
        "   - bytes relayed pod -> primary: {}, primary -> pod: {}",
        delta.client_to_primary_bytes, delta.primary_to_client_bytes
    );
    println!(
        "   - HTTP requests framed: {} (mirror_requests_framed_total), of which {} matched no \
         mirror rule",
        mirror.framed, mirror.unmatched
    );
    println!(
        "   - copies mirrored to \"{TARGET}\": {} (mirror_copies_total{{outcome=\"mirrored\"}})",
        mirror.copies("mirrored")
    );
    println!(
        "   - shadow responses: {} answered 2xx (mirror_shadow_responses_total), {} errors \
         (mirror_shadow_errors_total); the clients never waited for them",
        mirror.shadow_2xx,
        mirror.shadow_errors.iter().sum::<u64>()
    );
}
