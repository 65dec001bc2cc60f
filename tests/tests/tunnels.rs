//! Streams the daemon must not mirror pass through as opaque tunnels: a WebSocket-style upgrade
//! and a TLS-looking stream reach the primary and come back untouched, the shadow receives nothing
//! from them, and `mirror_tunnelled_connections_total` counts each under its reason.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use mirror_tests::environment::require_daemon;
use mirror_tests::node::Family;
use mirror_tests::primary::UPGRADE_RESPONSE;
use mirror_tests::scenario::Mirroring;
use mirror_tests::tcp::{self, first_difference, random_bytes, read_to_eof, write_while_reading};
use mirror_tests::{Behaviour, Client, Request, Server};

const HOST: &str = "orders.prod:8080";
/// The port of the TLS-looking stream (an echo server on the primary).
const TLS_PORT: u16 = 8443;

/// A TLS-looking stream ending in bytes that would frame as a request if the daemon had not
/// stopped framing.
fn tls_looking_stream() -> Result<Vec<u8>> {
    tcp::tls_looking_stream(
        32 << 10,
        b"GET /hidden-in-tls HTTP/1.1\r\nHost: orders.prod:8080\r\n\r\n",
    )
}

#[test]
fn upgrade_and_tls_streams_pass_through_unmirrored_and_are_counted_as_tunnels() -> Result<()> {
    let Some(binary) = require_daemon(
        "upgrade_and_tls_streams_pass_through_unmirrored_and_are_counted_as_tunnels",
    ) else {
        return Ok(());
    };
    // One copy in flight at a time: a copy of anything sent before the control request would
    // reach the shadow before the control's copy.
    let config = Mirroring::config(Mirroring::target().max_concurrent(1))
        .intercept("10.96.0.0/24", &[TLS_PORT]);
    let setup = Mirroring::start(&binary, Behaviour::Normal, &config)?;
    let echo = Server::echo(
        setup.node.primary().netns(),
        setup.node.primary().addr(Family::V4, TLS_PORT),
    )?;
    let metrics = setup.daemon.metrics()?;
    let upgrades_before = metrics.tunnelled("upgrade")?;
    let tls_before = metrics.tunnelled("tls")?;
    let before = setup.counters()?;

    // 1. WebSocket-style upgrade: 101, then bytes both ways.
    let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
    let upgrade = Request::get(HOST, "/ws/orders")
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13");
    client.send(&upgrade.to_bytes())?;
    let switching = client.read_response("GET")?;
    assert_eq!(
        switching.raw(),
        UPGRADE_RESPONSE,
        "the client gets the primary's 101"
    );
    let mut frames = vec![
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    frames.extend_from_slice(
        b"POST /looks-like-http HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    frames.extend(random_bytes(16 << 10)?);
    let stream = client.stream();
    stream.write_all(&frames)?;
    let mut echoed = vec![0; frames.len()];
    stream.read_exact(&mut echoed)?;
    assert_eq!(
        first_difference(&frames, &echoed),
        None,
        "echo after the upgrade"
    );
    stream.shutdown(Shutdown::Write)?;
    assert!(read_to_eof(stream)?.is_empty(), "nothing after the echo");

    // 2. A TLS-looking stream to another intercepted port.
    let payload = Arc::new(tls_looking_stream()?);
    let echoed = write_while_reading(setup.pod().connect(echo.address())?, Arc::clone(&payload))?;
    assert_eq!(
        first_difference(&payload, &echoed),
        None,
        "echo of the TLS-looking stream"
    );

    // 3. Control: a plain request afterwards is copied, so the shadow is reachable and silence
    // about the two tunnels means something.
    let control = Request::get(HOST, "/control");
    Client::connect(setup.pod(), setup.primary_address(Family::V4))?.exchange_checked(&control)?;
    let copies = setup
        .shadow
        .recording()
        .wait_for(1, Duration::from_secs(5))?;
    let targets: Vec<&str> = copies.iter().map(|copy| copy.target()).collect();
    assert_eq!(
        targets,
        ["/control"],
        "the shadow received nothing from the tunnels"
    );
    assert!(
        setup.shadow.recording().incomplete().is_empty(),
        "not even part of a request"
    );

    let metrics = setup.daemon.metrics()?;
    assert_eq!(
        metrics.tunnelled("upgrade")? - upgrades_before,
        1,
        "reason=\"upgrade\""
    );
    assert_eq!(metrics.tunnelled("tls")? - tls_before, 1, "reason=\"tls\"");
    let delta = setup.counters()?.since(&before);
    assert_eq!(delta.copies("mirrored"), 1, "{delta}");
    assert_eq!(delta.copies.iter().sum::<u64>(), 1, "{delta}");

    // The primary did get the upgrade request, byte for byte.
    let originals = setup.primary.recording().requests();
    ensure!(
        originals
            .iter()
            .any(|r| r.target() == "/ws/orders" && r.raw() == upgrade.to_bytes()),
        "the primary did not get the upgrade request as sent"
    );
    Ok(())
}
