//! The HTTP/2 harness itself, without the daemon: real gRPC (Python `grpcio`) and plain h2c
//! (curl, nghttp, h2load against the recording `h2` server and nghttpd) between a pod and the
//! primary or the shadow of a simulated node. What these show direct, the mirroring tests
//! compare through the daemon.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mirror_tests::environment::{require_grpc, require_h2c_tools};
use mirror_tests::grpc::{
    self, run_client, Call, Described, FailWhen, GrpcBehaviour, GrpcServer, Message, Script,
};
use mirror_tests::h2c::{
    self, curl, nghttp, CurlRequest, H2Options, H2Server, NghttpRequest, Nghttpd,
};
use mirror_tests::h2load::H2Load;
use mirror_tests::node::Family;
use mirror_tests::shadow::{probe, Reach};
use mirror_tests::Node;

const GRPC_PORT: u16 = 50051;
const AUTHORITY: &str = "orders.prod:50051";
const WAIT: Duration = Duration::from_secs(10);

fn everything_script() -> Script {
    grpc::every_kind_script(AUTHORITY)
}

#[test]
fn grpc_calls_of_every_kind_reach_the_primary_directly_and_are_recorded() -> Result<()> {
    if !require_grpc("grpc_calls_of_every_kind_reach_the_primary_directly_and_are_recorded") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
    let pod = node.pod("a");
    let primary = node.primary();
    let server = GrpcServer::start(
        "primary",
        primary.netns(),
        &[
            primary.addr(Family::V4, GRPC_PORT),
            primary.addr(Family::V6, GRPC_PORT),
        ],
        GrpcBehaviour::Normal,
    )?;
    let script = everything_script();
    let mut answers = Vec::new();
    let mut recorded_so_far = 0;
    for family in Family::ALL {
        let run = run_client(pod.netns(), primary.addr(family, GRPC_PORT), &script)?;
        run.check(&script).with_context(|| format!("{family:?}"))?;
        answers.push(run.answers());

        let calls = server.wait_for(recorded_so_far + script.calls.len(), WAIT)?;
        let calls = &calls[recorded_so_far..];
        recorded_so_far += script.calls.len();
        // One channel: every call on one connection, straight from the pod.
        let peers: BTreeSet<SocketAddr> = calls
            .iter()
            .map(|call| call.peer_address())
            .collect::<Result<_>>()?;
        ensure!(peers.len() == 1, "{family:?}: calls came over {peers:?}");
        ensure!(
            peers.iter().all(|peer| peer.ip() == pod.ip(family)),
            "{family:?}: {peers:?} is not the pod"
        );
        for sent in &script.calls {
            let call = calls
                .iter()
                .find(|call| call.metadata_value("x-call") == Some(sent.name.as_str()))
                .with_context(|| format!("{family:?}: the primary never saw {}", sent.name))?;
            ensure!(
                call.method == sent.method && call.authority == AUTHORITY,
                "{call:?}"
            );
            ensure!(!call.cancelled, "{call:?}");
            // The caller's metadata, in order, after grpcio's user-agent.
            let custom: Vec<(String, String)> = call
                .metadata
                .iter()
                .filter(|(key, _)| key != "user-agent")
                .cloned()
                .collect();
            ensure!(custom == sent.metadata, "{}: {custom:?}", sent.name);
            ensure!(
                call.metadata_value("user-agent")
                    .is_some_and(|agent| agent.starts_with("grpc-python/")),
                "{call:?}"
            );
            match sent.timeout {
                // grpc-core sends `grpc-timeout` in coarse units, rounded up (20 s arrives as
                // about 20.1 s).
                Some(timeout) => ensure!(
                    call.deadline_s
                        .is_some_and(|left| left > timeout / 2.0 && left <= timeout + 1.0),
                    "{}: deadline {:?} of {timeout} s",
                    sent.name,
                    call.deadline_s
                ),
                None => ensure!(call.deadline_s.is_none(), "{call:?}"),
            }
            let expected_status = sent.expected().code;
            ensure!(call.status == expected_status, "{call:?}");
            if expected_status == "OK" {
                let messages: Vec<Described> = sent
                    .messages
                    .iter()
                    .map(|m| Described::of(&m.bytes()))
                    .collect();
                ensure!(
                    call.requests == messages,
                    "{}: {:?}",
                    sent.name,
                    call.requests
                );
            }
        }
        let unary = calls
            .iter()
            .find(|call| call.metadata_value("x-call") == Some("unary"))
            .context("no unary call")?;
        ensure!(unary.metadata_value("x-trace-bin") == Some("0001feff"));
    }
    // The same script gets the same answers over both families: answers are a pure function.
    ensure!(
        answers[0] == answers[1],
        "answers differ between IPv4 and IPv6"
    );
    Ok(())
}

#[test]
fn grpc_shadow_behaviours_answer_as_configured() -> Result<()> {
    if !require_grpc("grpc_shadow_behaviours_answer_as_configured") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
    let pod = node.pod("a");
    let shadow = node.shadow();
    let address = |port| shadow.addr(Family::V4, port);

    // UNAVAILABLE at once (Trailers-Only) for the unary method only.
    let failing_unary = GrpcServer::start(
        "shadow",
        shadow.netns(),
        &[address(50051)],
        GrpcBehaviour::Fail {
            status: "UNAVAILABLE".into(),
            methods: vec![grpc::UNARY.into()],
            when: FailWhen::AtOnce,
            every: 1,
        },
    )?;
    let script = Script::new(vec![
        Call::unary("unary", Message::text("a")),
        Call::server_streaming("expand", 2, 10),
    ]);
    let run = run_client(pod.netns(), address(50051), &script)?;
    let unary = run.call("unary")?;
    ensure!(
        unary.code == "UNAVAILABLE" && unary.responses.is_empty(),
        "{unary:?}"
    );
    run.call("expand")?.check(&script.calls[1])?;
    let statuses: BTreeSet<String> = failing_unary
        .wait_for(2, WAIT)?
        .into_iter()
        .map(|call| format!("{} {}", call.method, call.status))
        .collect();
    ensure!(
        statuses
            == BTreeSet::from([
                format!("{} UNAVAILABLE", grpc::UNARY),
                format!("{} OK", grpc::EXPAND)
            ]),
        "{statuses:?}"
    );

    // The normal answer, then UNAVAILABLE in the trailers.
    let failing_late = GrpcServer::start(
        "shadow",
        shadow.netns(),
        &[address(50052)],
        GrpcBehaviour::Fail {
            status: "UNAVAILABLE".into(),
            methods: Vec::new(),
            when: FailWhen::AfterAnswer,
            every: 1,
        },
    )?;
    let streaming = Call::server_streaming("expand", 3, 20_000);
    let run = run_client(
        pod.netns(),
        address(50052),
        &Script::new(vec![streaming.clone()]),
    )?;
    let expand = run.call("expand")?;
    ensure!(expand.code == "UNAVAILABLE", "{expand:?}");
    ensure!(
        expand.responses == streaming.expected().responses,
        "{expand:?}"
    );
    ensure!(failing_late.wait_for(1, WAIT)?[0].status == "UNAVAILABLE");

    // NOT_FOUND for every 4th unary call only, in order of arrival; other methods answer.
    let every_fourth = GrpcServer::start(
        "shadow",
        shadow.netns(),
        &[address(50055)],
        GrpcBehaviour::Fail {
            status: "NOT_FOUND".into(),
            methods: vec![grpc::UNARY.into()],
            when: FailWhen::AtOnce,
            every: 4,
        },
    )?;
    let mut calls: Vec<Call> = (0..8)
        .map(|i| Call::unary(&format!("u{i}"), Message::text("a")))
        .collect();
    calls.insert(2, Call::bidi("chat", vec![Message::text("b")]));
    let script = Script::new(calls).sequential();
    let run = run_client(pod.netns(), address(50055), &script)?;
    let codes: Vec<&str> = run.calls.iter().map(|call| call.code.as_str()).collect();
    ensure!(
        codes
            == [
                "OK",
                "OK",
                "OK",
                "OK",
                "NOT_FOUND",
                "OK",
                "OK",
                "OK",
                "NOT_FOUND"
            ],
        "{codes:?}"
    );
    let recorded = every_fourth.wait_for(script.calls.len(), WAIT)?;
    let failed = recorded.iter().filter(|c| c.status == "NOT_FOUND").count();
    ensure!(failed == 2, "{recorded:?}");

    // Slow: a deadline shorter than the delay expires, and the server sees the cancellation.
    let delay = Duration::from_secs(1);
    let slow = GrpcServer::start(
        "shadow",
        shadow.netns(),
        &[address(50053)],
        GrpcBehaviour::Delay(delay),
    )?;
    let script = Script::new(vec![
        Call::unary("impatient", Message::text("a")).timeout(Duration::from_millis(300)),
        Call::unary("patient", Message::text("b")).timeout(Duration::from_secs(10)),
    ]);
    let run = run_client(pod.netns(), address(50053), &script)?;
    let impatient = run.call("impatient")?;
    ensure!(
        impatient.code == "DEADLINE_EXCEEDED" && impatient.elapsed_ms < 900.0,
        "{impatient:?}"
    );
    let patient = run.call("patient")?;
    patient.check(&script.calls[1])?;
    ensure!(patient.elapsed_ms >= 1000.0, "{patient:?}");
    let calls = slow.wait_for(2, WAIT)?;
    let cancelled: Vec<bool> = calls.iter().map(|call| call.cancelled).collect();
    ensure!(cancelled.iter().filter(|c| **c).count() == 1, "{calls:?}");

    // Refusing and blackholed: nothing to connect to.
    let refusing = GrpcServer::start(
        "shadow",
        shadow.netns(),
        &[address(50054)],
        GrpcBehaviour::Refuse,
    )?;
    let blackholed = GrpcServer::start(
        "shadow",
        shadow.netns(),
        &[address(50055)],
        GrpcBehaviour::Blackhole,
    )?;
    let second = Duration::from_secs(1);
    ensure!(probe(pod.netns(), refusing.address(), second)? == Reach::Refused);
    ensure!(probe(pod.netns(), blackholed.address(), second)? == Reach::TimedOut);
    let quick = Script::new(vec![Call::unary("u", Message::text("x"))]).connect_timeout(second);
    for server in [&refusing, &blackholed] {
        let error = run_client(pod.netns(), server.address(), &quick)
            .err()
            .context("a call reached a server that is not there")?;
        ensure!(
            format!("{error:#}").contains("could not connect"),
            "{error:#}"
        );
        ensure!(server.calls()?.is_empty() && server.pid().is_none());
    }
    Ok(())
}

#[test]
fn curl_and_nghttp_requests_reach_the_recording_h2c_server() -> Result<()> {
    if !require_h2c_tools("curl_and_nghttp_requests_reach_the_recording_h2c_server") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let pod = node.pod("a");
    let primary = node.primary();
    let server = H2Server::start(
        "primary",
        primary.netns(),
        &[
            primary.addr(Family::V4, 8080),
            primary.addr(Family::V6, 8080),
        ],
        &H2Options::default(),
    )?;

    let get = curl(
        pod.netns(),
        &CurlRequest::get(&server.url("/hello")).header("x-a", "b"),
    )?;
    let (_, body, _) = h2c::expected_response(200, "GET", "/hello", b"", false);
    ensure!(
        get.version == "2" && get.status == 200 && get.body == body,
        "{get:?}"
    );
    ensure!(get.header("x-request-body-bytes") == Some("0"), "{get:?}");

    let upload = grpc::pattern(7, 100_000);
    let post = curl(
        pod.netns(),
        &CurlRequest::post(&server.url("/upload"), &upload),
    )?;
    let (_, body, _) = h2c::expected_response(200, "POST", "/upload", &upload, false);
    ensure!(post.status == 200 && post.body == body, "{post:?}");

    let v6_url = format!("http://{}/bytes/70000", primary.addr(Family::V6, 8080));
    let large = curl(pod.netns(), &CurlRequest::get(&v6_url))?;
    ensure!(
        large.body == grpc::pattern(0, 70_000),
        "{} bytes",
        large.body.len()
    );

    let requests = server.wait_for(3, WAIT)?;
    let hello = &requests[0];
    ensure!(
        hello.method() == "GET"
            && hello.path() == "/hello"
            && hello.authority() == primary.addr(Family::V4, 8080).to_string()
            && hello.header("x-a") == Some("b")
            && hello
                .header("user-agent")
                .is_some_and(|a| a.starts_with("curl/"))
            && hello.complete,
        "{hello:?}"
    );
    ensure!(
        hello.peer_address()?.ip() == pod.ip(Family::V4),
        "{hello:?}"
    );
    ensure!(
        requests[1].body == Described::of(&upload),
        "{:?}",
        requests[1]
    );
    ensure!(requests[2].peer_address()?.ip() == pod.ip(Family::V6));

    // nghttp: three streams on one connection, one answer larger than the initial window.
    let urls: Vec<String> = ["/a", "/bytes/70000", "/c"]
        .iter()
        .map(|path| server.url(path))
        .collect();
    let run = nghttp(pod.netns(), &NghttpRequest::urls(&urls).header("x-h", "2"))?;
    ensure!(run.responses.len() == 3, "{:?}", run.responses);
    for response in &run.responses {
        let path = response.url.trim_start_matches(&server.url(""));
        let (status, body, _) = h2c::expected_response(200, "GET", path, b"", false);
        ensure!(
            response.status == status && response.size == body.len() as u64,
            "{response:?}"
        );
    }
    let requests = server.wait_for(6, WAIT)?;
    let streams = &requests[3..];
    let connections: BTreeSet<u64> = streams.iter().map(|r| r.connection).collect();
    ensure!(connections.len() == 1, "nghttp used {connections:?}");
    ensure!(streams.iter().all(|r| r.header("x-h") == Some("2")));

    // A body with request trailers.
    let data = grpc::pattern(8, 20_000);
    let run = nghttp(
        pod.netns(),
        &NghttpRequest::urls(&[server.url("/post")])
            .data(&data)
            .trailer("x-checksum", "abc"),
    )?;
    let (_, body, _) = h2c::expected_response(200, "POST", "/post", &data, false);
    ensure!(
        run.responses[0].size == body.len() as u64,
        "{:?}",
        run.responses
    );
    let posted = &server.wait_for(7, WAIT)?[6];
    ensure!(
        posted.method() == "POST"
            && posted.body == Described::of(&data)
            && posted.trailers == Some(vec![("x-checksum".into(), "abc".into())]),
        "{posted:?}"
    );
    Ok(())
}

#[test]
fn the_h2c_server_changes_its_settings_mid_connection_when_asked() -> Result<()> {
    if !require_h2c_tools("the_h2c_server_changes_its_settings_mid_connection_when_asked") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let pod = node.pod("a");
    let primary = node.primary();
    let steady = H2Server::start(
        "primary",
        primary.netns(),
        &[primary.addr(Family::V4, 8080)],
        &H2Options::default().setting("header_table_size", 0),
    )?;
    let changing = H2Server::start(
        "primary",
        primary.netns(),
        &[primary.addr(Family::V4, 8081)],
        &H2Options::default()
            .setting("header_table_size", 0)
            .update_setting("header_table_size", 4096)
            .update_setting("initial_window_size", 32_768),
    )?;
    for (server, settings_frames) in [(&steady, 1), (&changing, 2)] {
        let run = nghttp(
            pod.netns(),
            &NghttpRequest::urls(&[server.url("/bytes/70000")])
                .multiply(3)
                .verbose(),
        )?;
        ensure!(
            run.responses.len() == 3
                && run
                    .responses
                    .iter()
                    .all(|r| r.status == 200 && r.size == 70_000),
            "{:?}",
            run.responses
        );
        ensure!(
            run.received_frames("SETTINGS") == settings_frames,
            "expected {settings_frames} SETTINGS from the server:\n{}",
            run.frames
        );
        server.wait_for(3, WAIT)?;
    }
    Ok(())
}

#[test]
fn h2load_runs_bounded_loads_and_reports_what_the_servers_saw() -> Result<()> {
    if !require_h2c_tools("h2load_runs_bounded_loads_and_reports_what_the_servers_saw") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let pod = node.pod("a");
    let primary = node.primary();

    let recording = H2Server::start(
        "primary",
        primary.netns(),
        &[primary.addr(Family::V4, 8080)],
        &H2Options::default(),
    )?;
    let summary = H2Load::new(&recording.url("/load"))
        .requests(200)
        .clients(2)
        .streams(10)
        .run(pod.netns())?;
    ensure!(
        summary.protocol == "h2c"
            && summary.total == 200
            && summary.succeeded == 200
            && summary.failed == 0
            && summary.status_2xx == 200,
        "{summary:?}"
    );
    let requests = recording.wait_for(200, WAIT)?;
    ensure!(requests.len() == 200 && requests.iter().all(|r| r.path() == "/load"));
    let connections: BTreeSet<u64> = requests.iter().map(|r| r.connection).collect();
    ensure!(connections.len() == 2, "{connections:?}");

    let page = grpc::pattern(9, 1024);
    let nghttpd = Nghttpd::start(
        primary.netns(),
        primary.addr(Family::V4, 8081),
        &[("index.html", &page)],
    )?;
    let started = Instant::now();
    let summary = H2Load::new(&nghttpd.url("index.html"))
        .requests(2000)
        .clients(4)
        .streams(10)
        .run(pod.netns())?;
    ensure!(
        summary.succeeded == 2000 && summary.status_2xx == 2000 && summary.errored == 0,
        "{summary:?}"
    );
    ensure!(
        summary.traffic_bytes >= 2000 * page.len() as u64,
        "{summary:?}"
    );
    ensure!(
        summary.requests_per_second > 0.0
            && summary.request_time.min <= summary.request_time.mean
            && summary.request_time.mean <= summary.request_time.max
            && summary.finished_in <= started.elapsed(),
        "{summary:?}"
    );
    Ok(())
}

#[test]
fn servers_are_killed_when_dropped_also_by_a_panic() -> Result<()> {
    if !require_h2c_tools("servers_are_killed_when_dropped_also_by_a_panic") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let primary = node.primary();
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();

    let grpc_server = GrpcServer::start(
        "primary",
        primary.netns(),
        &[primary.addr(Family::V4, GRPC_PORT)],
        GrpcBehaviour::Normal,
    )?;
    let pid = grpc_server.pid().context("no process")?;
    ensure!(alive(pid));
    drop(grpc_server);
    ensure!(!alive(pid), "the gRPC server outlived its guard");

    let netns = primary.netns().clone();
    let address = primary.addr(Family::V4, 8080);
    let (pids, seen) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let server = H2Server::start("primary", &netns, &[address], &H2Options::default())
            .expect("the h2c server starts");
        pids.send(server.pid()).expect("the test waits for the pid");
        panic!("a test failing while the server runs");
    })
    .join();
    ensure!(outcome.is_err(), "the thread should have panicked");
    let pid = seen.recv()?;
    ensure!(!alive(pid), "the h2c server outlived a panic");
    // Its port is free again.
    let again = H2Server::start(
        "primary",
        primary.netns(),
        &[address],
        &H2Options::default(),
    )?;
    drop(again);
    Ok(())
}
