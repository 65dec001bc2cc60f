//! HTTP/2 and gRPC mirrored: real gRPC (Python `grpcio`) and plain h2c clients (curl, nghttp) in
//! a pod, real servers as primary and shadow, the daemon between. The client's answers are what
//! they are without the daemon; the shadow gets each call once, with the `-shadow` authority and
//! the caller's metadata; a connection the decoder cannot follow stays byte-exact.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mirror_tests::daemon::{Daemon, DaemonConfig, ShadowTarget};
use mirror_tests::environment::{require_daemon, require_grpc, require_h2c_tools};
use mirror_tests::grpc::{self, run_client, Described, GrpcBehaviour, GrpcServer, Script};
use mirror_tests::h2c::{curl, nghttp, CurlRequest, H2Options, H2Server, NghttpRequest};
use mirror_tests::node::Family;
use mirror_tests::Node;

/// Intercepted and mirrored.
const PORT: u16 = 50051;
/// The same servers, not intercepted: the clients' answers without the daemon.
const DIRECT_PORT: u16 = 50052;
const AUTHORITY: &str = "orders.prod:50051";
const SHADOW_AUTHORITY: &str = "orders.prod-shadow:50051";
const TARGET: &str = "staging";
const WAIT: Duration = Duration::from_secs(15);

/// A node whose primary and shadow serve on [`PORT`] (and the primary also on [`DIRECT_PORT`]),
/// with the daemon copying everything on [`PORT`] to the shadow.
struct Setup {
    daemon: Daemon,
    node: Node,
}

impl Setup {
    fn start(binary: &std::path::Path, target: ShadowTarget) -> Result<Setup> {
        let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
        let config = DaemonConfig::intercepting_primary(&[PORT])
            .drain_timeout("2s")
            .mirror_all_to(target);
        let daemon = Daemon::start(binary, node.netns(), &config)?;
        Ok(Setup { daemon, node })
    }

    fn primary_addresses(&self) -> Vec<SocketAddr> {
        let primary = self.node.primary();
        [PORT, DIRECT_PORT]
            .into_iter()
            .flat_map(|port| Family::ALL.map(|family| primary.addr(family, port)))
            .collect()
    }

    fn shadow_address(&self) -> SocketAddr {
        self.node.shadow().addr(Family::V4, PORT)
    }

    /// gRPC servers: the primary (normal) and the shadow behaving as `shadow`.
    fn grpc_servers(&self, shadow: GrpcBehaviour) -> Result<(GrpcServer, GrpcServer)> {
        let primary = GrpcServer::start(
            "primary",
            self.node.primary().netns(),
            &self.primary_addresses(),
            GrpcBehaviour::Normal,
        )?;
        let shadow = GrpcServer::start(
            "shadow",
            self.node.shadow().netns(),
            &[self.shadow_address()],
            shadow,
        )?;
        Ok((primary, shadow))
    }

    fn copies(&self, outcome: &str) -> Result<u64> {
        self.daemon.metrics()?.copies(TARGET, outcome)
    }
}

fn target(shadow: SocketAddr) -> ShadowTarget {
    ShadowTarget::new(TARGET, shadow).add_header("x-shadow", "true")
}

#[test]
fn grpc_calls_of_every_kind_answer_as_without_the_daemon_and_reach_the_shadow_once_each(
) -> Result<()> {
    const TEST: &str =
        "grpc_calls_of_every_kind_answer_as_without_the_daemon_and_reach_the_shadow_once_each";
    let Some(binary) = require_daemon(TEST) else {
        return Ok(());
    };
    if !require_grpc(TEST) {
        return Ok(());
    }
    let setup = Setup::start(&binary, target(SocketAddr::from(([172, 20, 0, 10], PORT))))?;
    let (primary, shadow) = setup.grpc_servers(GrpcBehaviour::Normal)?;
    let script: Script = grpc::every_kind_script(AUTHORITY);
    let pod = setup.node.pod("a");
    let before = setup.daemon.counters()?;

    let direct = run_client(
        pod.netns(),
        setup.node.primary().addr(Family::V4, DIRECT_PORT),
        &script,
    )?;
    let through = run_client(
        pod.netns(),
        setup.node.primary().addr(Family::V4, PORT),
        &script,
    )?;
    through
        .check(&script)
        .context("answers through the daemon")?;
    ensure!(
        through.answers() == direct.answers(),
        "answers through the daemon differ from the answers without it"
    );
    let after = setup.daemon.counters()?.since(&before);
    ensure!(
        after.intercepted == 1,
        "one connection intercepted: {after:?}"
    );

    let copies = shadow.wait_for(script.calls.len(), WAIT).with_context(|| {
        let seen: Vec<String> = shadow
            .calls()
            .unwrap_or_default()
            .iter()
            .filter_map(|call| call.metadata_value("x-call").map(str::to_owned))
            .collect();
        let missing: Vec<&str> = script
            .calls
            .iter()
            .map(|call| call.name.as_str())
            .filter(|name| !seen.iter().any(|seen| seen == name))
            .collect();
        format!(
            "missing at the shadow: {missing:?}; daemon: {}",
            setup
                .daemon
                .admin_get("/metrics")
                .map(|r| {
                    r.text()
                        .lines()
                        .filter(|l| {
                            l.starts_with("mirror_copies")
                                || l.starts_with("mirror_requests")
                                || l.starts_with("mirror_requests_skipped")
                                || l.starts_with("mirror_tunnel")
                        })
                        .filter(|l| !l.ends_with(" 0"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        )
    })?;
    ensure!(
        copies.len() == script.calls.len(),
        "the shadow got {} calls for {}",
        copies.len(),
        script.calls.len()
    );
    let originals = primary.wait_for(2 * script.calls.len(), WAIT)?;
    for sent in &script.calls {
        let with_name =
            |call: &&grpc::RecordedCall| call.metadata_value("x-call") == Some(sent.name.as_str());
        let copy = copies
            .iter()
            .find(with_name)
            .with_context(|| format!("the shadow never saw {}", sent.name))?;
        ensure!(
            copies.iter().filter(with_name).count() == 1,
            "{} twice",
            sent.name
        );
        ensure!(copy.method == sent.method, "{copy:?}");
        ensure!(copy.authority == SHADOW_AUTHORITY, "{copy:?}");
        // The caller's metadata, in order, and the target's added field last.
        let original = originals
            .iter()
            .filter(with_name)
            .find(|call| call.peer_address().is_ok_and(|peer| peer.port() != 0))
            .context("the primary's call")?;
        let mut expected = original.metadata.clone();
        expected.push(("x-shadow".to_owned(), "true".to_owned()));
        ensure!(
            copy.metadata == expected,
            "{}: {:?}",
            sent.name,
            copy.metadata
        );
        ensure!(
            copy.deadline_s.is_some() == sent.timeout.is_some(),
            "{}: grpc-timeout carried: {copy:?}",
            sent.name
        );
        let messages: Vec<Described> = sent
            .messages
            .iter()
            .map(|m| Described::of(&m.bytes()))
            .collect();
        // An unknown method's messages are not read (by the primary either).
        ensure!(
            copy.requests == messages || sent.expected().code != "OK",
            "{}: {:?}",
            sent.name,
            copy.requests
        );
    }
    let unary = copies
        .iter()
        .find(|call| call.metadata_value("x-call") == Some("unary"))
        .context("the unary copy")?;
    ensure!(
        unary.metadata_value("x-trace-bin") == Some("0001feff"),
        "{unary:?}"
    );

    let calls = script.calls.len() as u64;
    ensure!(
        setup.copies("mirrored")? == calls,
        "mirrored {}",
        setup.copies("mirrored")?
    );
    mirror_tests::wait::until("every copy answered", WAIT, || {
        let metrics = setup.daemon.metrics()?;
        let answered = metrics.counter(
            "mirror_shadow_grpc_responses_total",
            &[("target", TARGET), ("grpc_status", "ok")],
        )? + metrics.counter(
            "mirror_shadow_grpc_responses_total",
            &[("target", TARGET), ("grpc_status", "unimplemented")],
        )?;
        Ok(if answered == calls {
            Ok(())
        } else {
            Err(answered)
        })
    })?;
    let metrics = setup.daemon.metrics()?;
    ensure!(
        metrics.counter(
            "mirror_shadow_grpc_responses_total",
            &[("target", TARGET), ("grpc_status", "unimplemented")]
        )? == 1,
        "the unknown method's copy is answered UNIMPLEMENTED"
    );
    Ok(())
}

#[test]
fn h2c_from_curl_and_nghttp_is_copied_with_bodies_trailers_and_changing_settings() -> Result<()> {
    const TEST: &str =
        "h2c_from_curl_and_nghttp_is_copied_with_bodies_trailers_and_changing_settings";
    let Some(binary) = require_daemon(TEST) else {
        return Ok(());
    };
    if !require_h2c_tools(TEST) {
        return Ok(());
    }
    let setup = Setup::start(&binary, target(SocketAddr::from(([172, 20, 0, 10], PORT))))?;
    // The primary changes its SETTINGS mid-connection (a smaller HPACK table among them).
    let primary = H2Server::start(
        "primary",
        setup.node.primary().netns(),
        &setup.primary_addresses(),
        &H2Options::default()
            .setting("header_table_size", 8192)
            .update_setting("header_table_size", 512)
            .update_setting("max_concurrent_streams", 50),
    )?;
    let shadow = H2Server::start(
        "shadow",
        setup.node.shadow().netns(),
        &[setup.shadow_address()],
        &H2Options::default(),
    )?;
    let pod = setup.node.pod("a").netns();
    let url = |port: u16, path: &str| {
        format!(
            "http://{}{path}",
            setup.node.primary().addr(Family::V4, port)
        )
    };

    // curl: one POST.
    let request = CurlRequest::post(&url(PORT, "/curl"), b"from curl").header("x-client", "curl");
    let response = curl(pod, &request)?;
    let direct = curl(
        pod,
        &CurlRequest {
            url: url(DIRECT_PORT, "/curl"),
            ..request.clone()
        },
    )?;
    ensure!(response.version == "2", "{response:?}");
    ensure!(
        response.status == direct.status && response.body == direct.body,
        "{response:?}"
    );

    // nghttp: 40 concurrent streams on one connection, bodies over several frames and beyond
    // the initial window, a trailer, Huffman-coded and indexed fields (nghttp's encoder), and a
    // smaller encoder table than the primary allows.
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let urls: Vec<String> = (0..40)
        .map(|i| url(PORT, &format!("/nghttp/{i}")))
        .collect();
    let run = nghttp(
        pod,
        &NghttpRequest::urls(&urls)
            .header("x-client", "nghttp")
            .header("x-long", &"v".repeat(300))
            .data(&body)
            .trailer("x-checksum", "abc"),
    )?;
    ensure!(
        run.responses.len() == 40,
        "{} responses",
        run.responses.len()
    );
    ensure!(
        run.responses.iter().all(|r| r.status == 200),
        "{:?}",
        run.responses
    );

    let copies = shadow.wait_for(41, WAIT)?;
    let by_path: BTreeMap<&str, &mirror_tests::h2c::RecordedH2Request> =
        copies.iter().map(|r| (r.path(), r)).collect();
    ensure!(by_path.len() == 41, "{} distinct paths", by_path.len());
    let curl_copy = by_path.get("/curl").context("curl's copy")?;
    ensure!(
        curl_copy.authority() == "10.96.0.10-shadow:50051",
        "{curl_copy:?}"
    );
    ensure!(
        curl_copy.header("x-client") == Some("curl") && curl_copy.complete,
        "{curl_copy:?}"
    );
    ensure!(
        curl_copy.header("x-shadow") == Some("true"),
        "{curl_copy:?}"
    );
    ensure!(
        curl_copy.body == Described::of(b"from curl"),
        "{curl_copy:?}"
    );
    for i in 0..40 {
        let copy = by_path
            .get(format!("/nghttp/{i}").as_str())
            .with_context(|| format!("copy {i}"))?;
        ensure!(
            copy.complete && copy.body == Described::of(&body),
            "{copy:?}"
        );
        ensure!(copy.authority() == "10.96.0.10-shadow:50051", "{copy:?}");
        ensure!(copy.header("x-long").map(str::len) == Some(300), "{copy:?}");
        ensure!(
            copy.trailers
                .as_ref()
                .is_some_and(|t| t.iter().any(|(n, v)| n == "x-checksum" && v == "abc")),
            "{copy:?}"
        );
    }
    ensure!(
        setup.copies("mirrored")? == 41,
        "mirrored {}",
        setup.copies("mirrored")?
    );
    // Two connections, both decoded: none tunnelled.
    let tunnels: u64 = setup
        .daemon
        .metrics()?
        .samples()
        .iter()
        .filter(|s| s.name == "mirror_tunnelled_connections_total")
        .map(|s| s.value as u64)
        .sum();
    ensure!(tunnels == 0, "{tunnels} tunnels");
    drop(primary);
    Ok(())
}

/// An h2c primary that answers the preface with its SETTINGS, then records every byte it gets.
fn recording_h2_primary(
    netns: &mirror_tests::netns::Netns,
    address: SocketAddr,
) -> Result<(
    mirror_tests::tcp::Server,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
)> {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = received.clone();
    let server = mirror_tests::tcp::Server::spawn(netns, address, move |mut stream| {
        // An empty SETTINGS frame.
        stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])?;
        let mut buffer = [0; 4096];
        loop {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(&buffer[..n]);
        }
    })?;
    Ok((server, received))
}

#[test]
fn a_connection_that_turns_bad_midway_is_tunnelled_and_stays_byte_exact() -> Result<()> {
    const TEST: &str = "a_connection_that_turns_bad_midway_is_tunnelled_and_stays_byte_exact";
    let Some(binary) = require_daemon(TEST) else {
        return Ok(());
    };
    if !require_h2c_tools(TEST) {
        return Ok(());
    }
    let setup = Setup::start(&binary, target(SocketAddr::from(([172, 20, 0, 10], PORT))))?;
    let shadow = H2Server::start(
        "shadow",
        setup.node.shadow().netns(),
        &[setup.shadow_address()],
        &H2Options::default(),
    )?;
    let primary_address = setup.node.primary().addr(Family::V4, PORT);
    let (_primary, received) = recording_h2_primary(setup.node.primary().netns(), primary_address)?;

    // The preface, SETTINGS, a complete GET on stream 1 (literal fields, no Huffman), then a
    // DATA frame on stream 0: a connection error the decoder cannot follow past.
    let mut sent = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    sent.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut block = vec![0x82, 0x86, 0x84]; // :method GET, :scheme http, :path /
    block.push(0x01); // :authority, literal without indexing, indexed name 1
    block.push(AUTHORITY.len() as u8);
    block.extend_from_slice(AUTHORITY.as_bytes());
    sent.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, 1]);
    sent.extend_from_slice(&block);
    sent.extend_from_slice(&[0, 0, 4, 0, 0, 0, 0, 0, 0, b'b', b'a', b'd', b'!']);
    sent.extend_from_slice(b"then anything at all, byte for byte");

    let before = setup.daemon.metrics()?;
    let mut stream = setup.node.pod("a").connect(primary_address)?;
    stream.write_all(&sent)?;
    let mut settings = [0; 9];
    stream.read_exact(&mut settings)?;
    ensure!(
        settings == [0, 0, 0, 4, 0, 0, 0, 0, 0],
        "the primary's SETTINGS, unchanged"
    );
    mirror_tests::wait::until("every byte at the primary", WAIT, || {
        let got = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Ok(if got.len() >= sent.len() {
            Ok(got)
        } else {
            Err(got.len())
        })
    })
    .and_then(|got| {
        ensure!(
            got == sent,
            "the primary got other bytes than the client sent"
        );
        Ok(())
    })?;
    drop(stream);

    let copies = shadow.wait_for(1, WAIT)?;
    ensure!(
        copies[0].path() == "/" && copies[0].authority() == SHADOW_AUTHORITY,
        "{copies:?}"
    );
    let after = setup.daemon.metrics()?;
    let reason = "h2_invalid_stream_id";
    let tunnels: Vec<(String, f64)> = after
        .samples()
        .iter()
        .filter(|s| s.name == "mirror_tunnelled_connections_total" && s.value > 0.0)
        .map(|s| (s.labels.get("reason").cloned().unwrap_or_default(), s.value))
        .collect();
    ensure!(
        after.tunnelled(reason)? == before.tunnelled(reason)? + 1,
        "tunnelled as {reason}: {tunnels:?}"
    );
    Ok(())
}

/// A few calls of each kind, each with a deadline of `deadline`.
fn short_script(deadline: Duration) -> Script {
    let calls = vec![
        grpc::Call::unary("unary", grpc::Message::text("hello")),
        grpc::Call::unary("unary-large", grpc::Message::pattern(7, 80_000)),
        grpc::Call::client_streaming(
            "collect",
            vec![grpc::Message::text("a"), grpc::Message::pattern(8, 30_000)],
        ),
        grpc::Call::server_streaming("expand", 3, 1000),
        grpc::Call::bidi(
            "chat",
            vec![grpc::Message::text("ping"), grpc::Message::text("bye")],
        ),
    ];
    Script::new(
        calls
            .into_iter()
            .map(|call| {
                let name = call.name.clone();
                call.metadata("x-call", &name).timeout(deadline)
            })
            .collect(),
    )
    .authority(AUTHORITY)
}

#[test]
fn a_slow_refusing_or_blackholed_grpc_shadow_never_holds_up_the_callers() -> Result<()> {
    const TEST: &str = "a_slow_refusing_or_blackholed_grpc_shadow_never_holds_up_the_callers";
    let Some(binary) = require_daemon(TEST) else {
        return Ok(());
    };
    if !require_grpc(TEST) {
        return Ok(());
    }
    // The shadow holds answers 20 s: far beyond the callers' 5 s deadline, so a caller that
    // waited on its copy would fail.
    for (behaviour, errors) in [
        (GrpcBehaviour::Delay(Duration::from_secs(20)), "timeout"),
        (GrpcBehaviour::Refuse, "connect"),
        (GrpcBehaviour::Blackhole, "connect"),
    ] {
        let setup = Setup::start(
            &binary,
            target(SocketAddr::from(([172, 20, 0, 10], PORT)))
                .connect_timeout("1s")
                .request_timeout("2s"),
        )?;
        let _servers = setup.grpc_servers(behaviour.clone())?;
        let script = short_script(Duration::from_secs(5));
        for _ in 0..3 {
            let run = run_client(
                setup.node.pod("a").netns(),
                setup.node.primary().addr(Family::V4, PORT),
                &script,
            )?;
            run.check(&script)
                .with_context(|| format!("answers with a shadow that is {behaviour:?}"))?;
        }
        let calls = 3 * script.calls.len() as u64;
        // Copies whose sender gave up before their original ended count as abandoned.
        ensure!(
            setup.copies("mirrored")? + setup.copies("abandoned")? == calls,
            "{behaviour:?}: {}",
            mirror_tests::metrics::MirrorCounters::from_metrics(&setup.daemon.metrics()?, TARGET)?
        );
        mirror_tests::wait::until("the copies' failures counted", WAIT, || {
            let failed = setup.daemon.metrics()?.shadow_errors(TARGET, errors)?;
            Ok(if failed > 0 { Ok(()) } else { Err(failed) })
        })
        .with_context(|| format!("{behaviour:?}: {errors} errors"))?;
    }
    Ok(())
}

#[test]
fn a_streaming_call_over_the_body_cap_is_cancelled_towards_the_shadow_only() -> Result<()> {
    const TEST: &str = "a_streaming_call_over_the_body_cap_is_cancelled_towards_the_shadow_only";
    let Some(binary) = require_daemon(TEST) else {
        return Ok(());
    };
    if !require_grpc(TEST) {
        return Ok(());
    }
    let setup = Setup::start(
        &binary,
        target(SocketAddr::from(([172, 20, 0, 10], PORT))).max_body_bytes(50_000),
    )?;
    let (_primary, shadow) = setup.grpc_servers(GrpcBehaviour::Normal)?;
    let big = grpc::Call::bidi(
        "chat-over-cap",
        vec![
            grpc::Message::pattern(1, 30_000),
            grpc::Message::pattern(2, 30_000),
            grpc::Message::text("bye"),
        ],
    )
    .metadata("x-call", "chat-over-cap");
    let small = grpc::Call::unary("unary", grpc::Message::text("hi")).metadata("x-call", "unary");
    let script = Script::new(vec![big, small])
        .authority(AUTHORITY)
        .sequential();
    let run = run_client(
        setup.node.pod("a").netns(),
        setup.node.primary().addr(Family::V4, PORT),
        &script,
    )?;
    run.check(&script)
        .context("the caller's answers are whole")?;
    let recorded = shadow.wait_for(2, WAIT)?;
    let over = recorded
        .iter()
        .find(|call| call.metadata_value("x-call") == Some("chat-over-cap"))
        .context("the shadow saw the capped call start")?;
    ensure!(over.cancelled, "the capped copy was cancelled: {over:?}");
    let unary = recorded
        .iter()
        .find(|call| call.metadata_value("x-call") == Some("unary"))
        .context("the small call's copy")?;
    ensure!(!unary.cancelled && unary.status == "OK", "{unary:?}");
    ensure!(setup.copies("body_over_cap")? == 1, "body_over_cap");
    ensure!(setup.copies("mirrored")? == 1, "mirrored");
    Ok(())
}
