//! Restarts clients don't notice: after SIGTERM the daemon closes each keep-alive connection at
//! its next idle point (a complete answer, no request begun) instead of holding it to
//! `shutdown.drain_timeout` and resetting it. A connection with an answer under way gets the
//! whole answer first.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mirror_tests::daemon::{Daemon, DaemonConfig};
use mirror_tests::environment::require_daemon;
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
