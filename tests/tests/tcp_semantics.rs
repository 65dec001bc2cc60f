//! TCP behaviour a pod must not be able to tell apart from a direct connection: 4-tuple reuse,
//! half-close, reset.

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mirror_tests::environment::require_daemon;
use mirror_tests::node::Family;
use mirror_tests::tcp::{close_after_peer, read_to_eof, read_until_end, Ending};
use mirror_tests::{ConnectOptions, Daemon, DaemonConfig, Node, Pod, Server};

const INTERCEPTED_PORT: u16 = 8080;
/// The fixed source port the pod reuses.
const SOURCE_PORT: u16 = 43_210;
const CONNECTIONS: usize = 200;
/// The limit for each of the sequential connections.
const PER_CONNECTION: Duration = Duration::from_secs(1);

fn config() -> DaemonConfig {
    DaemonConfig::intercepting_primary(&[INTERCEPTED_PORT]).drain_timeout("5s")
}

/// `CONNECTIONS` sequential connections from one fixed source port to a server that replies and
/// closes first; each must complete within `PER_CONNECTION`. Returns the slowest.
fn sequential_connections_from_one_port(pod: &Pod, server: &Server) -> Result<Duration> {
    let options = ConnectOptions {
        source_port: Some(SOURCE_PORT),
        // A dropped SYN shows up as a failed connection within the limit, not a 60 s hang.
        connect_timeout: PER_CONNECTION,
        io_timeout: PER_CONNECTION,
    };
    let mut slowest = Duration::ZERO;
    for index in 0..CONNECTIONS {
        let started = Instant::now();
        let result = (|| -> Result<()> {
            let mut stream = pod.connect_with(server.address(), &options)?;
            let reply = read_to_eof(&mut stream)?;
            anyhow::ensure!(reply == b"pong", "reply {reply:?}");
            close_after_peer(stream, PER_CONNECTION)
        })();
        let elapsed = started.elapsed();
        result.with_context(|| format!("connection {index} failed after {elapsed:?}"))?;
        anyhow::ensure!(
            elapsed < PER_CONNECTION,
            "connection {index} took {elapsed:?}"
        );
        slowest = slowest.max(elapsed);
    }
    Ok(slowest)
}

fn fixed_source_port_reuse_never_stalls(test: &str, family: Family) -> Result<()> {
    let Some(binary) = require_daemon(test) else {
        return Ok(());
    };
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let pod = node.pod("a");
    // The primary closes first, so the daemon's pod-facing socket closes first too and lands in
    // TIME_WAIT on the node, holding the very 4-tuple the next connection reuses.
    let primary = Server::reply_and_close(
        node.primary().netns(),
        node.primary().addr(family, INTERCEPTED_PORT),
        b"pong",
    )?;
    let mut daemon = Daemon::start(&binary, node.netns(), &config())?;

    let slowest =
        sequential_connections_from_one_port(pod, &primary).context("with the daemon running")?;
    eprintln!("{family:?}: {CONNECTIONS} connections through the daemon, slowest {slowest:?}");
    assert_eq!(daemon.intercepted()?, CONNECTIONS as u64);

    daemon.kill()?;
    let slowest = sequential_connections_from_one_port(pod, &primary)
        .context("after the daemon was SIGKILLed")?;
    eprintln!("{family:?}: {CONNECTIONS} connections after SIGKILL, slowest {slowest:?}");
    assert_eq!(primary.accepted(), 2 * CONNECTIONS);
    Ok(())
}

#[test]
fn fixed_source_port_reuse_never_stalls_with_the_daemon_or_after_its_sigkill_over_ipv4(
) -> Result<()> {
    fixed_source_port_reuse_never_stalls(
        "fixed_source_port_reuse_never_stalls_with_the_daemon_or_after_its_sigkill_over_ipv4",
        Family::V4,
    )
}

#[test]
fn fixed_source_port_reuse_never_stalls_with_the_daemon_or_after_its_sigkill_over_ipv6(
) -> Result<()> {
    fixed_source_port_reuse_never_stalls(
        "fixed_source_port_reuse_never_stalls_with_the_daemon_or_after_its_sigkill_over_ipv6",
        Family::V6,
    )
}

#[test]
fn half_close_from_the_pod_propagates_and_the_reply_still_arrives() -> Result<()> {
    let Some(binary) =
        require_daemon("half_close_from_the_pod_propagates_and_the_reply_still_arrives")
    else {
        return Ok(());
    };
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let daemon = Daemon::start(&binary, node.netns(), &config())?;
    for family in Family::ALL {
        // Replies only once it has seen the pod's EOF: without propagation it never would.
        let primary = Server::reply_after_eof(
            node.primary().netns(),
            node.primary().addr(family, INTERCEPTED_PORT),
        )?;
        let before = daemon.intercepted()?;
        let mut stream = node.pod("a").connect(primary.address())?;
        stream.write_all(b"question")?;
        stream.shutdown(Shutdown::Write)?;
        let (reply, ending) = read_until_end(&mut stream);
        assert_eq!(reply, b"reply:question", "{family:?}");
        assert_eq!(ending, Ending::Eof, "{family:?}");
        assert_eq!(daemon.intercepted()? - before, 1, "{family:?}");
        assert!(primary.errors().is_empty(), "{:?}", primary.errors());
    }
    Ok(())
}

/// Sends a request to a server that answers with a reset; returns what the pod saw.
fn request_answered_with_reset(pod: &Pod, server: &Server) -> Result<(Vec<u8>, Ending)> {
    let mut stream = pod.connect(server.address())?;
    stream.write_all(b"request")?;
    Ok(read_until_end(&mut stream))
}

#[test]
fn reset_by_the_primary_reaches_the_pod_as_it_does_directly() -> Result<()> {
    let Some(binary) = require_daemon("reset_by_the_primary_reaches_the_pod_as_it_does_directly")
    else {
        return Ok(());
    };
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let pod = node.pod("a");
    for family in Family::ALL {
        let primary = Server::reset_after_request(
            node.primary().netns(),
            node.primary().addr(family, INTERCEPTED_PORT),
        )?;
        let direct = request_answered_with_reset(pod, &primary)?;
        // What the kernel gives without a relay: the reference for the daemon.
        assert_eq!(direct, (Vec::new(), Ending::Reset), "{family:?} direct");

        let daemon = Daemon::start(&binary, node.netns(), &config())?;
        let relayed = request_answered_with_reset(pod, &primary)?;
        assert_eq!(daemon.intercepted()?, 1, "{family:?}");
        assert_eq!(relayed, direct, "{family:?}: through the daemon vs direct");
    }
    Ok(())
}
