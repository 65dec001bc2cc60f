//! What the shadow receives: a copy of each request with `Host: <host>-shadow`, the same method,
//! target, fields and body, minus the target's edits and the hop-by-hop fields; while the client
//! gets the primary's response byte for byte. Pipelined and chunked requests arrive intact and in
//! order at both ends.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use mirror_tests::environment::require_daemon;
use mirror_tests::node::Family;
use mirror_tests::recording::RecordedRequest;
use mirror_tests::scenario::{shadow_address_v6, Mirroring, TARGET};
use mirror_tests::{Behaviour, Client, Request, ShadowTarget};

/// The Host the clients send, with a port, so the suffix must go before it.
const HOST: &str = "orders.prod:8080";
/// What the shadow must see instead.
const SHADOW_HOST: &str = "orders.prod-shadow:8080";
/// How long copies may take to reach the shadow once the client has its response.
const ARRIVAL: Duration = Duration::from_secs(5);

/// The target of these tests: the documented edits of `examples/mirror.toml`.
fn target() -> ShadowTarget {
    Mirroring::target()
        .add_header("x-shadow", "true")
        .remove_header("authorization")
}

/// The fields a copy of `request` must carry, in order: the test's own statement of the rules
/// in `mirror-daemon/src/mirror/copy.rs`. Host gets the suffix before its port; `Connection`,
/// every field it names, `Keep-Alive`, `Proxy-Connection` and `Expect` are hop-by-hop and go;
/// `remove_headers` go; `add_headers` replace any field of the same name and come last.
fn expected_copy_headers(request: &Request) -> Vec<(String, String)> {
    let named_by_connection: BTreeSet<String> = request
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    let dropped = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "expect",
        "authorization",
        "x-shadow",
    ];
    let mut fields = Vec::new();
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if lower == "host" {
            assert_eq!(value, HOST, "the tests send one Host");
            fields.push((name.clone(), SHADOW_HOST.to_owned()));
        } else if !dropped.contains(&lower.as_str()) && !named_by_connection.contains(&lower) {
            fields.push((name.clone(), value.clone()));
        }
    }
    fields.push(("x-shadow".to_owned(), "true".to_owned()));
    fields
}

/// Checks that `copy` is the copy of `request`.
fn check_copy(request: &Request, copy: &RecordedRequest) -> Result<()> {
    let what = format!("copy of {} {}", request.method, request.target);
    ensure!(copy.complete, "{what}: incomplete at the shadow");
    ensure!(
        copy.method() == request.method && copy.target() == request.target,
        "{what}: request line {:?}",
        copy.head.start
    );
    ensure!(
        copy.version() == "HTTP/1.1",
        "{what}: version {}",
        copy.version()
    );
    ensure!(
        copy.header("host") == Some(SHADOW_HOST),
        "{what}: Host {:?}, expected {SHADOW_HOST:?}",
        copy.header("host")
    );
    let expected = expected_copy_headers(request);
    ensure!(
        copy.headers() == expected.as_slice(),
        "{what}: fields differ\n got      {:?}\n expected {expected:?}",
        copy.headers()
    );
    ensure!(
        copy.body.raw == request.body_bytes(),
        "{what}: the body differs on the wire: {:?} vs {:?}",
        String::from_utf8_lossy(&copy.body.raw),
        String::from_utf8_lossy(request.body_bytes())
    );
    ensure!(
        copy.body.data == request.payload(),
        "{what}: payload differs"
    );
    Ok(())
}

/// Checks that the primary got `request` byte for byte (the daemon relays, it does not rewrite).
fn check_original(request: &Request, original: &RecordedRequest) -> Result<()> {
    ensure!(
        original.complete && original.raw() == request.to_bytes(),
        "{} {}: the primary got {:?}, the client sent {:?}",
        request.method,
        request.target,
        String::from_utf8_lossy(&original.raw()),
        String::from_utf8_lossy(&request.to_bytes())
    );
    Ok(())
}

fn find<'a>(requests: &'a [RecordedRequest], target: &str) -> Result<&'a RecordedRequest> {
    let found: Vec<&RecordedRequest> = requests.iter().filter(|r| r.target() == target).collect();
    ensure!(
        found.len() == 1,
        "{} requests for {target}, expected 1",
        found.len()
    );
    Ok(found[0])
}

/// The requests of the first test, their targets tagged with `tag` to tell families apart.
fn varied_requests(tag: &str) -> Vec<Request> {
    vec![
        Request::get(HOST, &format!("/api/orders?id=7&family={tag}"))
            .header("User-Agent", "mirror-tests/1")
            .header("Authorization", "Bearer s3cret")
            .header("X-Request-Case", "KeepMe")
            .header("Accept", "*/*")
            .header("Connection", "keep-alive, X-Hop")
            .header("X-Hop", "dropped because Connection names it")
            .header("Keep-Alive", "timeout=5")
            .header("X-Shadow", "false"),
        Request::new("POST", &format!("/api/orders?family={tag}"))
            .header("Host", HOST)
            .header("Content-Type", "application/json")
            .header("Authorization", "Bearer s3cret")
            .body(br#"{"item":"book","quantity":2}"#),
        Request::new("POST", &format!("/api/orders/batch?family={tag}"))
            .header("Host", HOST)
            .header("Content-Type", "text/plain")
            .header("Trailer", "X-Checksum")
            .chunked(
                &[
                    (b"first line\n", ";part=1"),
                    (b"second, longer line\n", ""),
                    (b"!", ";last"),
                ],
                &[("X-Checksum", "abc123")],
            ),
        Request::new("PUT", &format!("/api/orders/7?family={tag}"))
            .header("Host", HOST)
            .header("Expect", "100-continue")
            .body(b"quantity=3"),
        Request::get(HOST, &format!("/chunked-response/orders?family={tag}")),
    ]
}

#[test]
fn shadow_gets_each_request_with_the_shadow_host_and_the_documented_edits() -> Result<()> {
    let Some(binary) =
        require_daemon("shadow_gets_each_request_with_the_shadow_host_and_the_documented_edits")
    else {
        return Ok(());
    };
    let setup = Mirroring::start(&binary, Behaviour::Normal, &Mirroring::config(target()))?;
    let before = setup.counters()?;
    let mut sent = Vec::new();
    for family in Family::ALL {
        let requests = varied_requests(&format!("{family:?}"));
        // One keep-alive connection per family: every request gets exactly the primary's bytes.
        let mut client = Client::connect(setup.pod(), setup.primary_address(family))?;
        for request in &requests {
            client.exchange_checked(request)?;
        }
        sent.extend(requests);
    }

    let copies = setup.shadow.recording().wait_for(sent.len(), ARRIVAL)?;
    let originals = setup.primary.recording().requests();
    for request in &sent {
        check_copy(request, find(&copies, &request.target)?)?;
        check_original(request, find(&originals, &request.target)?)?;
    }
    assert_eq!(copies.len(), sent.len(), "no copy beyond one per request");
    assert!(setup.shadow.recording().incomplete().is_empty());
    // The chunked copy keeps its trailer, as on the wire.
    let batch = copies
        .iter()
        .find(|copy| copy.target().starts_with("/api/orders/batch"))
        .map(|copy| copy.body.trailers.clone());
    assert_eq!(batch, Some(vec![("X-Checksum".into(), "abc123".into())]));

    let delta = setup.counters()?.since(&before);
    assert_eq!(delta.framed, sent.len() as u64, "{delta}");
    assert_eq!(delta.copies("mirrored"), sent.len() as u64, "{delta}");
    assert_eq!(
        delta.copies.iter().sum::<u64>(),
        sent.len() as u64,
        "{delta}"
    );
    Ok(())
}

/// The pipeline: several requests of every framing, written at once.
fn pipeline() -> Vec<Request> {
    vec![
        Request::get(HOST, "/pipe/1"),
        Request::post(HOST, "/pipe/2", b"second request's body"),
        Request::new("POST", "/pipe/3")
            .header("Host", HOST)
            .chunked(
                &[
                    (b"chunk one;", ";ext=\"quoted value\""),
                    (b"chunk two", ";a=1;b"),
                ],
                &[("X-Trailer-One", "1"), ("X-Trailer-Two", "two")],
            ),
        Request::get(HOST, "/chunked-response/pipe/4"),
        Request::post(HOST, "/pipe/5", b""),
        Request::new("DELETE", "/pipe/6").header("Host", HOST),
    ]
}

/// Writes `pipeline` on one connection in pieces of `piece` bytes (everything in one write when
/// it is larger), then reads all the responses and compares them with the primary's.
fn send_pipeline(client: &mut Client, requests: &[Request], piece: usize) -> Result<()> {
    let wire: Vec<u8> = requests.iter().flat_map(Request::to_bytes).collect();
    for part in wire.chunks(piece) {
        client.send(part)?;
    }
    let mut got = Vec::new();
    for request in requests {
        got.extend(client.read_response(&request.method)?.raw());
    }
    let expected: Vec<u8> = requests
        .iter()
        .flat_map(Request::expected_response)
        .collect();
    ensure!(
        got == expected,
        "pipelined responses differ from the primary's at byte {:?}",
        mirror_tests::tcp::first_difference(&got, &expected)
    );
    Ok(())
}

#[test]
fn pipelined_and_chunked_requests_arrive_intact_and_in_order_at_primary_and_shadow() -> Result<()> {
    let Some(binary) = require_daemon(
        "pipelined_and_chunked_requests_arrive_intact_and_in_order_at_primary_and_shadow",
    ) else {
        return Ok(());
    };
    // One copy in flight at a time: the shadow then sees them in the order they were framed.
    let config = Mirroring::config(target().max_concurrent(1));
    let setup = Mirroring::start(&binary, Behaviour::Normal, &config)?;
    let requests = pipeline();

    // All at once, then again dribbled in 7-byte writes so heads, chunk lines and trailers are
    // split across the daemon's reads.
    for piece in [usize::MAX, 7] {
        let recorded_before = setup.shadow.recording().count();
        let primary_before = setup.primary.recording().count();
        let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
        send_pipeline(&mut client, &requests, piece)?;

        let originals = setup.primary.recording().requests()[primary_before..].to_vec();
        ensure!(
            originals.len() == requests.len(),
            "primary got {} requests",
            originals.len()
        );
        for (request, original) in requests.iter().zip(&originals) {
            check_original(request, original)?;
            ensure!(
                original.connection == originals[0].connection,
                "the primary got the pipeline on more than one connection"
            );
        }

        let copies = setup
            .shadow
            .recording()
            .wait_for(recorded_before + requests.len(), ARRIVAL)?[recorded_before..]
            .to_vec();
        let order: Vec<&str> = copies.iter().map(RecordedRequest::target).collect();
        let expected_order: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            order, expected_order,
            "shadow order (pieces of {piece} bytes)"
        );
        for (request, copy) in requests.iter().zip(&copies) {
            check_copy(request, copy)?;
        }
        let trailers = &copies[2].body.trailers;
        assert_eq!(
            trailers,
            &vec![
                ("X-Trailer-One".to_owned(), "1".to_owned()),
                ("X-Trailer-Two".to_owned(), "two".to_owned())
            ]
        );
    }
    assert!(setup.shadow.recording().incomplete().is_empty());
    Ok(())
}

#[test]
fn a_shadow_target_given_by_ipv6_address_gets_the_copies() -> Result<()> {
    let Some(binary) = require_daemon("a_shadow_target_given_by_ipv6_address_gets_the_copies")
    else {
        return Ok(());
    };
    let target = ShadowTarget::new(TARGET, shadow_address_v6())
        .add_header("x-shadow", "true")
        .remove_header("authorization");
    assert_eq!(target.address, "[fd00:172:20::10]:8080");
    let config = Mirroring::config(target);
    let setup =
        Mirroring::start_with_shadow_at(&binary, Behaviour::Normal, shadow_address_v6(), &config)?;
    let requests = varied_requests("v6-shadow");
    let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V6))?;
    for request in &requests {
        client.exchange_checked(request)?;
    }
    let copies = setup.shadow.recording().wait_for(requests.len(), ARRIVAL)?;
    for request in &requests {
        check_copy(request, find(&copies, &request.target)?)?;
    }
    // The copies came from the node's own IPv6 address on the shadow's link.
    assert!(
        copies.iter().all(|copy| copy.peer.is_ipv6()),
        "{:?}",
        copies[0].peer
    );
    Ok(())
}

#[test]
fn http_1_1_requests_without_a_host_are_forwarded_but_never_copied() -> Result<()> {
    let Some(binary) =
        require_daemon("http_1_1_requests_without_a_host_are_forwarded_but_never_copied")
    else {
        return Ok(());
    };
    let setup = Mirroring::start(&binary, Behaviour::Normal, &Mirroring::config(target()))?;
    let before = setup.counters()?;
    let no_host = Request::new("GET", "/no-host");
    let empty_host = Request::new("GET", "/empty-host").header("Host", "");
    let control = Request::get(HOST, "/control");
    let mut client = Client::connect(setup.pod(), setup.primary_address(Family::V4))?;
    for request in [&no_host, &empty_host, &control] {
        client.exchange_checked(request)?;
    }
    let originals = setup.primary.recording().wait_for(3, ARRIVAL)?;
    let forwarded: BTreeSet<&str> = originals.iter().map(RecordedRequest::target).collect();
    assert_eq!(
        forwarded,
        BTreeSet::from(["/no-host", "/empty-host", "/control"]),
        "the primary gets every request"
    );
    let copies = setup.shadow.recording().wait_for(1, ARRIVAL)?;
    assert_eq!(copies[0].target(), "/control");
    let counted = setup.counters()?.since(&before);
    assert_eq!(counted.copies("no_host"), 2, "{counted}");
    assert_eq!(counted.copies("mirrored"), 1, "{counted}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        setup.shadow.recording().count(),
        1,
        "nothing else reached the shadow"
    );
    Ok(())
}
