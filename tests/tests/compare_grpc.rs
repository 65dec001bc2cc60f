//! Shadow verdicts end to end over HTTP/2: real gRPC (Python `grpcio`, `tests/h2/grpc_server.py`
//! and `grpc_client.py`) from a pod through the daemon to a primary, copies to a shadow running
//! the same server; the daemon pairs each call's answer on the shadow with the primary's, stream
//! by stream, and the tests read the verdicts from `/comparisons`, `/metrics` and the terminal
//! report. The client's answers are checked against the same servers reached without the daemon.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mirror_tests::daemon::{Daemon, DaemonConfig, ShadowTarget};
use mirror_tests::environment::{require_daemon, require_grpc};
use mirror_tests::grpc::{
    self, run_client, Call, FailWhen, GrpcBehaviour, GrpcServer, Message, Script,
};
use mirror_tests::node::Family;
use mirror_tests::Node;
use serde_json::Value;

/// Intercepted, mirrored and compared.
const PORT: u16 = 50051;
/// The primary again, not intercepted: the client's answers without the daemon.
const DIRECT_PORT: u16 = 50052;
const AUTHORITY: &str = "orders.prod:50051";
const TARGET: &str = "staging";
const RULE: &str = "grpc";
const WAIT: Duration = Duration::from_secs(20);

/// A node with gRPC servers as primary (normal) and shadow (behaving as told), and the daemon
/// comparing every call on [`PORT`].
struct Setup {
    daemon: Daemon,
    node: Node,
    _primary: GrpcServer,
    shadow: GrpcServer,
}

impl Setup {
    fn start(test: &str, shadow: GrpcBehaviour) -> Result<Option<Setup>> {
        let Some(binary) = require_daemon(test) else {
            return Ok(None);
        };
        if !require_grpc(test) {
            return Ok(None);
        }
        let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
        let primary_addresses: Vec<SocketAddr> = [PORT, DIRECT_PORT]
            .into_iter()
            .map(|port| node.primary().addr(Family::V4, port))
            .collect();
        let shadow_address = node.shadow().addr(Family::V4, PORT);
        let primary = GrpcServer::start(
            "primary",
            node.primary().netns(),
            &primary_addresses,
            GrpcBehaviour::Normal,
        )?;
        let shadow = GrpcServer::start("shadow", node.shadow().netns(), &[shadow_address], shadow)?;
        let config = DaemonConfig::intercepting_primary(&[PORT])
            .drain_timeout("2s")
            .shadow_target(ShadowTarget::new(TARGET, shadow_address));
        let mut text = config.to_toml();
        // Bodies up to 256 KiB compared: every answer here fits.
        text.push_str(&format!(
            "\n[[mirror.rules]]\nname = \"{RULE}\"\ntargets = [\"{TARGET}\"]\n\
             [mirror.rules.compare]\npercent = 100\nmax_body_bytes = 262144\n\
             last_mismatches = 50\n"
        ));
        let daemon = Daemon::start_toml(&binary, node.netns(), &text, config.admin)?;
        Ok(Some(Setup {
            daemon,
            node,
            _primary: primary,
            shadow,
        }))
    }

    /// Runs `script` through the daemon and without it; checks that the client's answers are
    /// the same both ways and the server's.
    fn run(&self, script: &Script) -> Result<()> {
        let pod = self.node.pod("a");
        let direct = run_client(
            pod.netns(),
            self.node.primary().addr(Family::V4, DIRECT_PORT),
            script,
        )?;
        let through = run_client(
            pod.netns(),
            self.node.primary().addr(Family::V4, PORT),
            script,
        )?;
        through
            .check(script)
            .context("answers through the daemon")?;
        ensure!(
            through.answers() == direct.answers(),
            "answers through the daemon differ from the answers without it"
        );
        Ok(())
    }

    /// The rule's part of `/comparisons`, once it holds `pairs` verdicts.
    fn report(&self, pairs: u64) -> Result<Value> {
        self.daemon.comparison(RULE, TARGET, pairs, WAIT)
    }

    /// `mirror_comparisons_total{verdict}` of the rule.
    fn verdicts(&self, verdict: &str) -> Result<u64> {
        self.daemon.metrics()?.counter(
            "mirror_comparisons_total",
            &[("rule", RULE), ("target", TARGET), ("verdict", verdict)],
        )
    }

    /// What `mirror-daemon comparisons` prints for a person, run in the node.
    fn rendered(&self) -> Result<String> {
        self.daemon.comparisons_report()
    }
}

fn count(comparison: &Value, verdict: &str) -> u64 {
    comparison["verdicts"][verdict].as_u64().unwrap_or_default()
}

/// Calls of every kind with answers well within the compare cap, started at once on one
/// channel: 24 unary calls, a client-streaming, a server-streaming and a bidirectional one, and
/// one to a method the servers do not implement.
fn every_kind() -> Script {
    let mut calls: Vec<Call> = (0..24u64)
        .map(|i| {
            Call::unary(
                &format!("unary-{i}"),
                Message::pattern(i, 100 + 50 * i as usize),
            )
        })
        .collect();
    calls.extend([
        Call::client_streaming(
            "collect",
            vec![Message::text("first"), Message::pattern(1, 20_000)],
        ),
        Call::server_streaming("expand", 3, 30_000),
        Call::bidi(
            "chat",
            vec![Message::text("ping"), Message::pattern(2, 20_000)],
        ),
        Call::unary("unimplemented", Message::text("?")).method("/mirror.test.Echo/Missing"),
    ]);
    Script::new(calls).authority(AUTHORITY)
}

#[test]
fn grpc_calls_answered_alike_all_match() -> Result<()> {
    let Some(setup) = Setup::start("grpc_calls_answered_alike_all_match", GrpcBehaviour::Normal)?
    else {
        return Ok(());
    };
    let script = every_kind();
    let calls = script.calls.len() as u64;
    setup.run(&script)?;
    let comparison = setup.report(calls)?;
    ensure!(
        count(&comparison, "match") == calls && comparison["pairs"] == calls,
        "every call's answers match: {comparison:#}"
    );
    ensure!(
        comparison["last_mismatches"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "no mismatch: {comparison:#}"
    );
    for side in ["primary", "shadow"] {
        let latency = &comparison["latency"][side]["to_end"];
        ensure!(
            latency["count"] == calls && latency["p50_ms"].as_f64().is_some(),
            "{side} latency: {latency}"
        );
    }
    ensure!(setup.verdicts("match")? == calls);
    ensure!(setup.verdicts("status_mismatch")? == 0);
    Ok(())
}

#[test]
fn a_shadow_ending_every_fourth_call_with_another_grpc_status_is_a_status_mismatch_at_that_rate(
) -> Result<()> {
    const UNARY_CALLS: u64 = 40;
    const CHATS: u64 = 4;
    // Every 4th unary call in order of arrival: the normal answer, then NOT_FOUND (5) in the
    // trailers, so that the answers differ only in their grpc-status.
    let shadow = GrpcBehaviour::Fail {
        status: "NOT_FOUND".into(),
        methods: vec![grpc::UNARY.into()],
        when: FailWhen::AfterAnswer,
        every: 4,
    };
    let Some(setup) = Setup::start("shadow_ending_every_fourth_call_differently", shadow)? else {
        return Ok(());
    };
    let calls: Vec<Call> = (0..UNARY_CALLS)
        .map(|i| Call::unary(&format!("unary-{i}"), Message::pattern(i, 300)))
        .chain((0..CHATS).map(|i| Call::bidi(&format!("chat-{i}"), vec![Message::text("hi")])))
        .collect();
    let script = Script::new(calls).authority(AUTHORITY);
    // The client gets the primary's answers: every call OK, as without the daemon.
    setup.run(&script)?;
    let failed_at_shadow = setup
        .shadow
        .wait_for(script.calls.len(), WAIT)?
        .iter()
        .filter(|call| call.status == "NOT_FOUND")
        .count() as u64;
    ensure!(
        failed_at_shadow == UNARY_CALLS / 4,
        "the shadow failed {failed_at_shadow} calls"
    );
    let pairs = UNARY_CALLS + CHATS;
    let comparison = setup.report(pairs)?;
    ensure!(
        count(&comparison, "status_mismatch") == UNARY_CALLS / 4
            && count(&comparison, "match") == pairs - UNARY_CALLS / 4
            && comparison["pairs"] == pairs,
        "one unary call in four differs in its grpc-status: {comparison:#}"
    );
    let mismatches = comparison["last_mismatches"]
        .as_array()
        .context("last_mismatches")?;
    ensure!(mismatches.len() as u64 == UNARY_CALLS / 4, "{comparison:#}");
    for mismatch in mismatches {
        ensure!(
            mismatch["request"] == format!("POST {} HTTP/2", grpc::UNARY)
                && mismatch["verdict"] == "status_mismatch"
                && mismatch["primary_status"] == 200
                && mismatch["shadow_status"] == 200
                && mismatch["primary_grpc_status"] == 0
                && mismatch["shadow_grpc_status"] == 5,
            "a mismatch as reported: {mismatch}"
        );
    }
    ensure!(setup.verdicts("status_mismatch")? == UNARY_CALLS / 4);
    ensure!(setup.verdicts("match")? == pairs - UNARY_CALLS / 4);
    let text = setup.rendered()?;
    ensure!(
        text.contains("primary 200 grpc-status 0, shadow 200 grpc-status 5"),
        "the terminal report shows both codes:\n{text}"
    );
    Ok(())
}
