//! Restarts clients don't notice: after SIGTERM the daemon closes each keep-alive connection at
//! its next idle point (HTTP/1.1: a complete answer, no request begun; HTTP/2: no stream open
//! either way) instead of holding it to `shutdown.drain_timeout` and resetting it. A connection
//! with an answer under way gets the whole answer first. HTTP/2 with real gRPC (`grpcio`)
//! clients and servers; the connections are mirrored to a gRPC shadow.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mirror_tests::daemon::{Daemon, DaemonConfig, ShadowTarget};
use mirror_tests::environment::{require_daemon, require_grpc};
use mirror_tests::grpc::{self, Call, GrpcBehaviour, GrpcServer, Message, Script};
use mirror_tests::node::Family;
use mirror_tests::tcp::Server;
use mirror_tests::Node;
use nix::sys::signal::Signal;

const PORT: u16 = 8080;
/// Far longer than any idle point takes to come: a connection held to it would show.
const DRAIN: &str = "20s";
/// How soon after SIGTERM (or after its answer) an idle connection must be closed.
const PROMPTLY: Duration = Duration::from_secs(2);
/// How long the primary takes over `/slow`.
const SLOW: Duration = Duration::from_millis(1500);
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A keep-alive primary: answers every request with [`ANSWER`], `/slow` ones after [`SLOW`].
fn primary(node: &Node) -> Result<Server> {
    Server::spawn(
        node.primary().netns(),
        node.primary().addr(Family::V4, PORT),
        |mut stream| loop {
            let head = match mirror_tests::http::read_request_head(&mut stream) {
                Ok(head) => head,
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            if head.starts_with(b"GET /slow") {
                std::thread::sleep(SLOW);
            }
            stream.write_all(ANSWER)?;
        },
    )
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: orders\r\n\r\n").into_bytes()
}

/// Reads `ANSWER` off `stream`.
fn read_answer(stream: &mut TcpStream) -> Result<()> {
    let mut answer = vec![0; ANSWER.len()];
    stream
        .read_exact(&mut answer)
        .context("reading the answer")?;
    ensure!(answer == ANSWER, "{:?}", String::from_utf8_lossy(&answer));
    Ok(())
}

/// Waits for the daemon to close `stream` gracefully; returns when it did.
fn closed_at(stream: &mut TcpStream) -> Result<Instant> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut byte = [0; 1];
    match stream.read(&mut byte) {
        Ok(0) => Ok(Instant::now()),
        Ok(_) => anyhow::bail!("unexpected bytes after the answer"),
        Err(e) => Err(e).context("the connection was not closed gracefully (EOF)"),
    }
}

#[test]
fn after_sigterm_keep_alive_connections_close_at_their_next_idle_point_not_the_deadline(
) -> Result<()> {
    let Some(binary) = require_daemon(
        "after_sigterm_keep_alive_connections_close_at_their_next_idle_point_not_the_deadline",
    ) else {
        return Ok(());
    };
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let _primary = primary(&node)?;
    let config = DaemonConfig::intercepting_primary(&[PORT]).drain_timeout(DRAIN);
    let mut daemon = Daemon::start(&binary, node.netns(), &config)?;
    let address = node.primary().addr(Family::V4, PORT);
    let pod = node.pod("a");

    // Idle: one exchange done, kept alive.
    let mut idle = pod.connect(address)?;
    idle.write_all(&get("/a"))?;
    read_answer(&mut idle)?;
    // Busy: its answer takes SLOW; SIGTERM comes while it is under way.
    let mut busy = pod.connect(address)?;
    busy.write_all(&get("/a"))?;
    read_answer(&mut busy)?;
    busy.write_all(&get("/slow"))?;
    // A tunnel has no idle point: it is held to the deadline as before.
    let mut opaque = pod.connect(address)?;
    opaque.write_all(b"\x16\x03\x01 not http")?;
    let intercepted = daemon.counters()?.intercepted;
    ensure!(
        intercepted == 3,
        "{intercepted} connections through the daemon"
    );

    std::thread::sleep(Duration::from_millis(200));
    let sigterm = Instant::now();
    daemon.signal(Signal::SIGTERM)?;

    let idle_closed = closed_at(&mut idle)?.duration_since(sigterm);
    ensure!(
        idle_closed < PROMPTLY,
        "the idle connection closed {idle_closed:?} after SIGTERM"
    );
    read_answer(&mut busy).context("the answer under way arrives whole")?;
    let answered = Instant::now();
    let busy_closed = closed_at(&mut busy)?;
    ensure!(
        busy_closed.duration_since(answered) < PROMPTLY,
        "the busy connection closed {:?} after its answer",
        busy_closed.duration_since(answered)
    );
    ensure!(
        drained(&daemon, "http1")? == 2,
        "both keep-alive connections counted as drained"
    );
    // The opaque one keeps the daemon until its client goes.
    opaque.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut byte = [0; 1];
    ensure!(
        matches!(opaque.read(&mut byte), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the tunnel is still open"
    );
    opaque.shutdown(Shutdown::Both)?;
    drop(opaque);
    let status = daemon.wait_exit(Duration::from_secs(10))?;
    ensure!(status.success(), "{status}");
    ensure!(
        sigterm.elapsed() < Duration::from_secs(10),
        "the daemon exited {:?} after SIGTERM, not at the 20 s deadline",
        sigterm.elapsed()
    );
    Ok(())
}

/// `mirror_drained_connections_total` of `protocol` now.
fn drained(daemon: &Daemon, protocol: &str) -> Result<u64> {
    daemon.metrics()?.counter(
        "mirror_drained_connections_total",
        &[("protocol", protocol)],
    )
}

/// A gRPC primary answering at once.
const GRPC_PORT: u16 = 50051;
/// A gRPC primary holding each answer [`GRPC_SLOW`].
const GRPC_SLOW_PORT: u16 = 50053;
const GRPC_SLOW: Duration = Duration::from_secs(4);
/// How long the idle client waits between its two calls: SIGTERM comes in between.
const GRPC_PAUSE: Duration = Duration::from_secs(5);

/// Runs `script` from `pod` against `target` on a thread of its own.
fn grpc_client(
    pod: &mirror_tests::netns::Netns,
    target: std::net::SocketAddr,
    script: Script,
) -> std::thread::JoinHandle<Result<grpc::ClientRun>> {
    let pod = pod.clone();
    std::thread::spawn(move || grpc::run_client(&pod, target, &script))
}

#[test]
fn after_sigterm_http2_connections_close_once_no_stream_is_open() -> Result<()> {
    const TEST: &str = "after_sigterm_http2_connections_close_once_no_stream_is_open";
    let Some(binary) = require_daemon(TEST) else {
        return Ok(());
    };
    if !require_grpc(TEST) {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
    let primary = node.primary();
    let fast = GrpcServer::start(
        "primary",
        primary.netns(),
        &[primary.addr(Family::V4, GRPC_PORT)],
        GrpcBehaviour::Normal,
    )?;
    let slow = GrpcServer::start(
        "slow primary",
        primary.netns(),
        &[primary.addr(Family::V4, GRPC_SLOW_PORT)],
        GrpcBehaviour::Delay(GRPC_SLOW),
    )?;
    let shadow_address = node.shadow().addr(Family::V4, GRPC_PORT);
    let _shadow = GrpcServer::start(
        "shadow",
        node.shadow().netns(),
        &[shadow_address],
        GrpcBehaviour::Normal,
    )?;
    let config = DaemonConfig::intercepting_primary(&[GRPC_PORT, GRPC_SLOW_PORT])
        .drain_timeout(DRAIN)
        .mirror_all_to(ShadowTarget::new("staging", shadow_address));
    let mut daemon = Daemon::start(&binary, node.netns(), &config)?;
    let pod = node.pod("a").netns();

    // Idle: one call done, the channel's connection kept open over a pause, then another call.
    let idle_script = Script::new(vec![
        Call::unary("before", Message::text("one")),
        Call::unary("after", Message::text("two")).after_pause(GRPC_PAUSE),
    ])
    .sequential();
    let idle = grpc_client(
        pod,
        primary.addr(Family::V4, GRPC_PORT),
        idle_script.clone(),
    );
    // Busy: a server-streaming call whose answer takes GRPC_SLOW; SIGTERM comes while it is
    // under way.
    let busy_script = Script::new(vec![Call::server_streaming("slow", 3, 100)]);
    let busy = grpc_client(
        pod,
        primary.addr(Family::V4, GRPC_SLOW_PORT),
        busy_script.clone(),
    );
    fast.wait_for(1, Duration::from_secs(15))?;
    mirror_tests::wait::until("both connections through the daemon", PROMPTLY * 5, || {
        let intercepted = daemon.counters()?.intercepted;
        Ok(if intercepted == 2 {
            Ok(())
        } else {
            Err(intercepted)
        })
    })?;
    // The slow call's request has gone out by now (its client starts it once connected).
    std::thread::sleep(Duration::from_millis(1000));

    let sigterm = Instant::now();
    daemon.signal(Signal::SIGTERM)?;
    mirror_tests::wait::until("the idle connection drained", PROMPTLY, || {
        // The daemon exits once no connection is left: the busy one must still be open.
        let drained = drained(&daemon, "http2").context("the daemon's metrics during the drain")?;
        Ok(if drained == 1 { Ok(()) } else { Err(drained) })
    })?;
    ensure!(
        !busy.is_finished(),
        "the slow call ended {:?} after SIGTERM, before the idle connection was closed",
        sigterm.elapsed()
    );

    let busy_run = busy
        .join()
        .map_err(|_| anyhow::anyhow!("the slow client panicked"))??;
    let slow_ended = Instant::now();
    busy_run
        .check(&busy_script)
        .context("the call under way at SIGTERM is answered whole")?;
    let status = daemon.wait_exit(Duration::from_secs(10))?;
    ensure!(status.success(), "{status}");
    let exited = Instant::now();
    ensure!(
        exited.duration_since(slow_ended) < PROMPTLY,
        "the daemon exited {:?} after the slow call's end, not when its connection was idle",
        exited.duration_since(slow_ended)
    );
    ensure!(
        sigterm.elapsed() < Duration::from_secs(10),
        "the daemon exited {:?} after SIGTERM, not at the 20 s deadline",
        sigterm.elapsed()
    );
    ensure!(
        slow.wait_for(1, Duration::from_secs(5))?.len() == 1,
        "the slow call reached its primary once"
    );

    let idle_run = idle
        .join()
        .map_err(|_| anyhow::anyhow!("the idle client panicked"))??;
    idle_run
        .check(&idle_script)
        .context("no call fails for the closed connection")?;
    // The call after the pause went on a new connection (direct: the daemon was gone).
    let calls = fast.wait_for(2, Duration::from_secs(5))?;
    ensure!(
        calls.len() == 2 && calls[0].peer != calls[1].peer,
        "both calls on one connection: {calls:?}"
    );
    Ok(())
}
