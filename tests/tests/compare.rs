//! Shadow verdicts end to end over HTTP/1.1: a pod's requests go through the daemon to a real
//! primary (Python's http.server, `tests/h2/answers_server.py --role primary`), their copies to
//! the same program as the shadow (`--role shadow`), whose answers differ from the primary's in
//! known ways; the daemon pairs each copy's answer with the primary's and the tests read the
//! verdicts from `/comparisons` and `/metrics`.
//!
//! The servers' rules, restated: `/api/same/<n>` answers alike; `/api/fail/<n>` is a 500 on the
//! shadow when n % 4 == 0; `/api/price/<n>` has the shadow's `price` one higher when
//! n % 10 == 0; `/api/slow/<n>` answers alike, the shadow after 0.2 s; `/api/stamped/<n>` carries `generated_at`, the time in nanoseconds (always
//! differs); `/api/head`, `/api/empty` (204), `/api/cached` (304), `/api/chunked`,
//! `/api/echo` (POST), `/api/close` (close-delimited) answer alike; `/api/broken` answers with a
//! head a framer cannot frame with certainty (Content-Length with Transfer-Encoding), then
//! closes.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mirror_tests::client::{Client, Request};
use mirror_tests::daemon::{Daemon, DaemonConfig, ShadowTarget};
use mirror_tests::environment::{require_daemon, require_grpc};
use mirror_tests::node::Family;
use mirror_tests::python::PythonServer;
use mirror_tests::Node;
use serde_json::Value;

const PORT: u16 = 8080;
const HOST: &str = "orders.prod:8080";
const TARGET: &str = "staging";
const WAIT: Duration = Duration::from_secs(20);
/// `[mirror.rules.compare]` of every rule here: everything compared, noise told after 20 pairs.
const COMPARE: &str = r#"
[mirror.rules.compare]
percent = 100
max_body_bytes = 4096
last_mismatches = 50
[mirror.rules.compare.noise]
threshold = 0.9
min_pairs = 20
window = 1000
ignore_noisy = true
"#;

/// A node with the answers server as primary and shadow, and the daemon comparing under
/// `rules` (name, path prefix), one rule each, all to target `staging`.
struct Setup {
    daemon: Daemon,
    node: Node,
    _primary: PythonServer,
    _shadow: PythonServer,
}

impl Setup {
    fn start(binary: &std::path::Path, rules: &[(&str, &str)]) -> Result<Setup> {
        let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
        let primary_address = node.primary().addr(Family::V4, PORT);
        let shadow_address = node.shadow().addr(Family::V4, PORT);
        let primary = server("primary", &node, primary_address)?;
        let shadow = server("shadow", &node, shadow_address)?;
        let config = DaemonConfig::intercepting_primary(&[PORT])
            .drain_timeout("2s")
            .shadow_target(ShadowTarget::new(TARGET, shadow_address));
        let mut text = config.to_toml();
        for (name, prefix) in rules {
            text.push_str(&format!(
                "\n[[mirror.rules]]\nname = \"{name}\"\ntargets = [\"{TARGET}\"]\n\
                 [mirror.rules.match]\npath_prefix = \"{prefix}\"\n{COMPARE}"
            ));
        }
        let daemon = Daemon::start_toml(binary, node.netns(), &text, config.admin)?;
        Ok(Setup {
            daemon,
            node,
            _primary: primary,
            _shadow: shadow,
        })
    }

    fn primary_address(&self) -> SocketAddr {
        self.node.primary().addr(Family::V4, PORT)
    }

    fn client(&self) -> Result<Client> {
        let mut client = Client::connect(self.node.pod("a"), self.primary_address())?;
        client
            .stream()
            .set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(client)
    }

    /// GETs `paths` one after another on one keep-alive connection; returns the statuses.
    fn get_all(&self, paths: impl IntoIterator<Item = String>) -> Result<Vec<u16>> {
        let mut client = self.client()?;
        let mut statuses = Vec::new();
        for path in paths {
            client.send(&Request::get(HOST, &path).to_bytes())?;
            statuses.push(client.read_response("GET")?.status());
        }
        Ok(statuses)
    }

    /// Rule `rule`'s part of `/comparisons`, once it holds `pairs` verdicts.
    fn report(&self, rule: &str, pairs: u64) -> Result<Value> {
        self.daemon.comparison(rule, TARGET, pairs, WAIT)
    }

    /// What `mirror-daemon comparisons` prints for a person, run in the node.
    fn rendered(&self) -> Result<String> {
        self.daemon.comparisons_report()
    }

    fn verdicts(&self, rule: &str, verdict: &str) -> Result<u64> {
        self.daemon.metrics()?.counter(
            "mirror_comparisons_total",
            &[("rule", rule), ("target", TARGET), ("verdict", verdict)],
        )
    }
}

fn server(role: &str, node: &Node, address: SocketAddr) -> Result<PythonServer> {
    let netns = match role {
        "primary" => node.primary().netns(),
        _ => node.shadow().netns(),
    };
    PythonServer::answers(role, netns, address)
}

fn count(comparison: &Value, verdict: &str) -> u64 {
    comparison["verdicts"][verdict].as_u64().unwrap_or_default()
}

fn field<'a>(comparison: &'a Value, name: &str) -> Option<&'a Value> {
    comparison["fields"]
        .as_array()?
        .iter()
        .find(|field| field["field"] == name)
}

fn start(test: &str, rules: &[(&str, &str)]) -> Result<Option<Setup>> {
    let Some(binary) = require_daemon(test) else {
        return Ok(None);
    };
    // The servers run on the venv's Python, which `cargo xtask setup` makes.
    if !require_grpc(test) {
        return Ok(None);
    }
    Setup::start(&binary, rules).map(Some)
}

#[test]
fn identical_answers_all_match_and_both_latencies_are_reported() -> Result<()> {
    let Some(setup) = start("identical_answers_all_match", &[("same", "/api/same/")])? else {
        return Ok(());
    };
    let statuses = setup.get_all((0..40).map(|n| format!("/api/same/{n}")))?;
    ensure!(
        statuses.iter().all(|s| *s == 200),
        "the client got {statuses:?}"
    );
    let comparison = setup.report("same", 40)?;
    ensure!(
        count(&comparison, "match") == 40 && comparison["pairs"] == 40,
        "every pair matches: {comparison:#}"
    );
    ensure!(
        comparison["fields"].as_array().is_some_and(Vec::is_empty),
        "no field differs: {comparison:#}"
    );
    for side in ["primary", "shadow"] {
        let latency = &comparison["latency"][side]["to_end"];
        ensure!(
            latency["count"] == 40 && latency["p50_ms"].as_f64().is_some(),
            "{side} latency: {latency}"
        );
        let observed = setup.daemon.metrics()?.counter(
            "mirror_answer_latency_seconds_count",
            &[("rule", "same"), ("target", TARGET), ("side", side)],
        )?;
        ensure!(observed == 40, "{side} latencies observed: {observed}");
    }
    ensure!(setup.verdicts("same", "match")? == 40);
    ensure!(setup.verdicts("same", "status_mismatch")? == 0);
    Ok(())
}

/// How long `answers_server.py`'s shadow waits before answering `/api/slow/<n>`.
const SLOW_SHADOW: Duration = Duration::from_millis(200);

#[test]
fn a_slow_shadow_has_both_latencies_reported_and_leaves_the_primarys_unchanged() -> Result<()> {
    let Some(setup) = start("slow_shadow", &[("slow", "/api/slow/")])? else {
        return Ok(());
    };
    // One keep-alive connection, each answer timed by the client.
    let mut client = setup.client()?;
    let mut took = Vec::new();
    for n in 0..10 {
        let started = Instant::now();
        client.send(&Request::get(HOST, &format!("/api/slow/{n}")).to_bytes())?;
        let response = client.read_response("GET")?;
        took.push(started.elapsed());
        ensure!(
            response.status() == 200,
            "/api/slow/{n}: {}",
            response.status()
        );
    }
    // The client never waits for the shadow: every answer well within its delay (the primary
    // answers in about a millisecond here).
    let slowest = took.iter().max().copied().unwrap_or_default();
    ensure!(
        slowest < SLOW_SHADOW / 2,
        "the client waited {slowest:?} for an answer (the shadow takes {SLOW_SHADOW:?}): {took:?}"
    );
    let comparison = setup.report("slow", 10)?;
    ensure!(
        count(&comparison, "match") == 10,
        "slow but identical answers match: {comparison:#}"
    );
    let ms = |side: &str, point: &str, p: &str| {
        comparison["latency"][side][point][p]
            .as_f64()
            .with_context(|| format!("{side} {point} {p}: {comparison:#}"))
    };
    eprintln!(
        "slowest answer at the client {slowest:?}; daemon's latencies: {}",
        comparison["latency"]
    );
    let delay_ms = SLOW_SHADOW.as_secs_f64() * 1e3;
    for point in ["to_head", "to_end"] {
        ensure!(
            ms("shadow", point, "p50_ms")? >= delay_ms,
            "the shadow's latency {point} holds its delay: {}",
            comparison["latency"]
        );
        ensure!(
            ms("primary", point, "p99_ms")? < delay_ms / 2.0,
            "the primary's latency {point} is its own, not the shadow's: {}",
            comparison["latency"]
        );
    }
    // The same in the histograms, by side: 10 answers each, the shadow's taking at least its
    // delay each, the primary's all of them together less than one delay.
    let metrics = setup.daemon.metrics()?;
    let seconds = |side: &str, sample: &str| -> Result<f64> {
        metrics
            .get(
                &format!("mirror_answer_latency_seconds_{sample}"),
                &[("rule", "slow"), ("target", TARGET), ("side", side)],
            )
            .with_context(|| format!("no mirror_answer_latency_seconds_{sample} for {side}"))
    };
    ensure!(seconds("primary", "count")? == 10.0 && seconds("shadow", "count")? == 10.0);
    let (primary, shadow) = (seconds("primary", "sum")?, seconds("shadow", "sum")?);
    ensure!(
        shadow >= 10.0 * SLOW_SHADOW.as_secs_f64() && primary < SLOW_SHADOW.as_secs_f64(),
        "latency sums: primary {primary} s, shadow {shadow} s"
    );
    Ok(())
}

#[test]
fn a_shadow_failing_some_paths_is_a_status_mismatch_at_their_rate() -> Result<()> {
    let Some(setup) = start("shadow_failing_some_paths", &[("fail", "/api/fail/")])? else {
        return Ok(());
    };
    let statuses = setup.get_all((0..40).map(|n| format!("/api/fail/{n}")))?;
    ensure!(
        statuses.iter().all(|s| *s == 200),
        "the client gets the primary's answers: {statuses:?}"
    );
    let comparison = setup.report("fail", 40)?;
    ensure!(
        count(&comparison, "status_mismatch") == 10 && count(&comparison, "match") == 30,
        "one in four fails on the shadow: {comparison:#}"
    );
    let mut failed: Vec<String> = comparison["last_mismatches"]
        .as_array()
        .context("last_mismatches")?
        .iter()
        .map(|m| {
            ensure!(
                m["primary_status"] == 200 && m["shadow_status"] == 500,
                "statuses of {m}"
            );
            Ok(m["request"].as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<_>>()?;
    failed.sort();
    let mut expected: Vec<String> = (0..40)
        .filter(|n| n % 4 == 0)
        .map(|n| format!("GET /api/fail/{n} HTTP/1.1"))
        .collect();
    expected.sort();
    ensure!(failed == expected, "the failing requests: {failed:?}");
    ensure!(setup.verdicts("fail", "status_mismatch")? == 10);
    Ok(())
}

#[test]
fn a_changed_json_field_is_reported_at_its_rate_and_a_timestamp_as_noise() -> Result<()> {
    let Some(setup) = start(
        "changed_json_field_and_noise",
        &[("prices", "/api/price/"), ("stamps", "/api/stamped/")],
    )?
    else {
        return Ok(());
    };
    setup.get_all((0..50).map(|n| format!("/api/price/{n}")))?;
    setup.get_all((0..40).map(|n| format!("/api/stamped/{n}")))?;

    let prices = setup.report("prices", 50)?;
    ensure!(
        count(&prices, "body_mismatch") == 5 && count(&prices, "match") == 45,
        "one price in ten differs: {prices:#}"
    );
    let price = field(&prices, "/price").context("/price is reported")?;
    ensure!(
        price["differing_pairs"] == 5 && price["compared_pairs"] == 50 && price["noise"] == false,
        "/price differs in 10 %, not noise: {price}"
    );
    ensure!(
        field(&prices, "/id").is_none() && field(&prices, "/currency").is_none(),
        "equal fields are not reported: {prices:#}"
    );
    // Pairs end in the order their answers complete, not their requests': each kept mismatch
    // must show both values of its own request (price 100 + n, the shadow's one more).
    let mismatches = prices["last_mismatches"]
        .as_array()
        .context("last_mismatches is a list")?;
    ensure!(
        mismatches.len() == 5,
        "the 5 mismatches are kept: {prices:#}"
    );
    for mismatch in mismatches {
        let n: u64 = mismatch["request"]
            .as_str()
            .and_then(|line| line.strip_prefix("GET /api/price/"))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("a price request: {mismatch}"))?;
        let shown = &mismatch["fields"][0];
        let value = |side: &str| shown[side].as_str().and_then(|v| v.parse::<u64>().ok());
        ensure!(
            shown["field"] == "/price"
                && value("primary") == Some(100 + n)
                && value("shadow") == Some(101 + n),
            "the mismatch of /api/price/{n} shows both values: {mismatch}"
        );
    }

    let stamps = setup.report("stamps", 40)?;
    let stamp = field(&stamps, "/generated_at").context("/generated_at is reported")?;
    ensure!(
        stamp["rate"] == 1.0 && stamp["noise"] == true,
        "/generated_at differs in every pair: noise: {stamp}"
    );
    // Before the window held 20 pairs nothing was noise yet; from then on the noisy field left
    // the verdict.
    ensure!(
        stamps["matched_apart_from_noise"]
            .as_u64()
            .unwrap_or_default()
            >= 20
            && count(&stamps, "match") == stamps["matched_apart_from_noise"],
        "pairs differing only in noise match: {stamps:#}"
    );

    let rendered = setup.rendered()?;
    eprintln!("{rendered}");
    for wanted in [
        "prices -> staging",
        "stamps -> staging",
        "/price",
        "/generated_at",
        "noise",
    ] {
        ensure!(
            rendered.contains(wanted),
            "the terminal report shows {wanted:?}"
        );
    }
    Ok(())
}

/// What the client sends at once on one connection, and each request's method.
fn pipeline() -> (Vec<u8>, Vec<String>) {
    let requests = [
        Request::get(HOST, "/api/fail/4"),
        Request::new("HEAD", "/api/head/1").header("Host", HOST),
        Request::get(HOST, "/api/empty/2"),
        Request::get(HOST, "/api/cached/3"),
        Request::get(HOST, "/api/chunked/5"),
        Request::post(HOST, "/api/echo/6", b"0123456789").header("Expect", "100-continue"),
        Request::get(HOST, "/api/same/7"),
        Request::get(HOST, "/api/close/8"),
    ];
    let bytes = requests.iter().flat_map(Request::to_bytes).collect();
    (bytes, requests.iter().map(|r| r.method.clone()).collect())
}

#[test]
fn pipelined_answers_of_every_kind_pair_in_order() -> Result<()> {
    let Some(setup) = start("pipelined_answers", &[("all", "/api/")])? else {
        return Ok(());
    };
    let (bytes, methods) = pipeline();
    let mut client = setup.client()?;
    client.send(&bytes)?;
    let mut statuses = Vec::new();
    for method in &methods {
        let mut response = client.read_response(method)?;
        if response.status() == 100 {
            response = client.read_response(method)?;
        }
        statuses.push(response.status());
    }
    ensure!(
        statuses == [200, 200, 204, 304, 200, 200, 200, 200],
        "the client got the primary's answers in order: {statuses:?}"
    );
    let comparison = setup.report("all", 8)?;
    ensure!(
        count(&comparison, "match") == 7 && count(&comparison, "status_mismatch") == 1,
        "only /api/fail/4 differs: {comparison:#}"
    );
    ensure!(
        comparison["last_mismatches"][0]["request"] == "GET /api/fail/4 HTTP/1.1",
        "the mismatch is the first request's: {comparison:#}"
    );
    Ok(())
}

/// The bytes `/api/broken/<n>` sends, as `answers_server.py` writes them.
const BROKEN: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\
    Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";

#[test]
fn comparison_stops_where_the_answers_cannot_be_framed_and_bytes_stay_exact() -> Result<()> {
    let Some(setup) = start("answers_cannot_be_framed", &[("all", "/api/")])? else {
        return Ok(());
    };
    let mut client = setup.client()?;
    let requests = [
        Request::get(HOST, "/api/same/1"),
        Request::get(HOST, "/api/broken/2"),
        Request::get(HOST, "/api/same/3"),
    ];
    client.send(
        &requests
            .iter()
            .flat_map(Request::to_bytes)
            .collect::<Vec<u8>>(),
    )?;
    let first = client.read_response("GET")?;
    ensure!(first.status() == 200 && first.body.data == br#"{"id":1,"name":"item 1"}"#);
    let mut rest = client.take_buffered();
    client
        .stream()
        .read_to_end(&mut rest)
        .context("reading to the primary's close")?;
    ensure!(
        rest == BROKEN,
        "after the first answer the client gets exactly what the primary sent: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let comparison = setup.report("all", 3)?;
    ensure!(
        count(&comparison, "match") == 1
            && count(&comparison, "not_compared") == 2
            && comparison["not_compared"]["stopped"] == 2,
        "the first pair matches; comparison stopped for the others: {comparison:#}"
    );
    ensure!(setup.verdicts("all", "not_compared")? == 2);
    Ok(())
}
