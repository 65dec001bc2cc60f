//! The documented configuration, `examples/mirror.toml`, is usable as it stands: the daemon
//! accepts it, and run with only the shadow's address and TLS trust swapped for the test's (a
//! TLS shadow with a test CA), it intercepts, matches, samples and copies as the file says.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mirror_tests::command;
use mirror_tests::daemon::DEFAULT_ADMIN;
use mirror_tests::environment::{require_daemon, require_daemon_binary, workspace};
use mirror_tests::metrics::MirrorCounters;
use mirror_tests::node::{Family, SHADOW_V4};
use mirror_tests::scenario::{sampled_consistently, trace_id};
use mirror_tests::{wait, Behaviour, Client, Daemon, Node, PrimaryServer, Request, ShadowServer};

/// The example's target, rule and its match conditions, as the file states them.
const TARGET: &str = "staging";
const PERCENT: f64 = 10.0;
const HOST: &str = "orders.prod.svc.cluster.local";
const PRIMARY_PORT: u16 = 80;
const SHADOW_PORT: u16 = 443;

fn example() -> Result<String> {
    let path = workspace().join("examples/mirror.toml");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Replaces `from` with `to`, which must occur exactly once: when the example changes, this test
/// fails loudly instead of quietly testing something else.
fn substitute(text: &str, from: &str, to: &str) -> Result<String> {
    ensure!(
        text.matches(from).count() == 1,
        "examples/mirror.toml no longer contains {from:?} exactly once; update this test"
    );
    Ok(text.replacen(from, to, 1))
}

#[test]
fn the_daemon_accepts_the_example_config() -> Result<()> {
    let Some(binary) = require_daemon_binary("the_daemon_accepts_the_example_config") else {
        return Ok(());
    };
    let path = workspace().join("examples/mirror.toml");
    let binary = binary.display().to_string();
    let path = path.display().to_string();
    let output = command::output(&binary, &["check", "--config", &path])?;
    assert!(
        output.success,
        "`mirror-daemon check --config examples/mirror.toml` failed: {}",
        output.stderr
    );
    // The effective config it prints has the file's target and rule.
    assert!(
        output.stdout.contains("name = \"staging\""),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("orders-api"), "{}", output.stdout);
    Ok(())
}

/// A request the example's rule matches, carrying trace id `trace`.
fn orders(method: &str, target: &str, trace: &str) -> Request {
    Request::new(method, target)
        .header("Host", HOST)
        .header("X-Tenant", "acme")
        .header("X-Env", "prod")
        .header("Authorization", "Bearer s3cret")
        .header("Cookie", "session=42")
        .header("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))
}

#[test]
fn the_example_config_mirrors_over_tls_as_documented() -> Result<()> {
    let Some(binary) = require_daemon("the_example_config_mirrors_over_tls_as_documented") else {
        return Ok(());
    };
    let testdata = workspace().join("mirror-daemon/src/shadow/testdata");
    let shadow_address = SocketAddr::new(SHADOW_V4.into(), SHADOW_PORT);
    let mut config = example()?;
    config = substitute(
        &config,
        "address = \"ingress.staging.example.com:443\"",
        &format!("address = \"{shadow_address}\""),
    )?;
    // The test certificate is for `localhost`, signed by the test CA.
    config = substitute(
        &config,
        "server_name = \"ingress.staging.example.com\"",
        "server_name = \"localhost\"",
    )?;
    config = substitute(
        &config,
        "# ca_file = \"/etc/mirror/staging-ca.pem\"",
        &format!("ca_file = \"{}\"", testdata.join("ca.pem").display()),
    )?;

    let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
    let primary = PrimaryServer::start(
        node.primary().netns(),
        &[node.primary().addr(Family::V4, PRIMARY_PORT)],
    )?;
    let shadow = ShadowServer::start_tls(
        node.shadow().netns(),
        shadow_address,
        Behaviour::Normal,
        &testdata.join("server.pem"),
        &testdata.join("server.key"),
    )?;
    let daemon = Daemon::start_toml(&binary, node.netns(), &config, DEFAULT_ADMIN.parse()?)?;
    let before = MirrorCounters::from_metrics(&daemon.metrics()?, TARGET)?;

    // Trace ids the documented consistent sampling (10 %) takes, and one it leaves out.
    let traces: Vec<String> = (0..1000).map(trace_id).collect();
    let mut taken = traces.iter().filter(|t| sampled_consistently(t, PERCENT));
    let (first, second) = (
        taken.next().context("no trace")?,
        taken.next().context("no trace")?,
    );
    let left_out = traces
        .iter()
        .find(|t| !sampled_consistently(t, PERCENT))
        .context("no trace")?;

    let copied = [
        orders("GET", "/api/v1/orders/7", first),
        orders("POST", "/api/v2/orders", second)
            .header("Content-Type", "application/json")
            .body(br#"{"item":"book","quantity":2}"#),
    ];
    let sampled_out = orders("GET", "/api/v1/orders/8", left_out);
    let unmatched = [
        orders("GET", "/healthz", first),            // path_prefix
        orders("DELETE", "/api/v1/orders/7", first), // methods
        Request::get(HOST, "/api/v1/orders/9").header("X-Tenant", "acme"), // no x-env: prod
    ];
    let mut client = Client::connect(node.pod("a"), primary.address())?;
    for request in copied.iter().chain([&sampled_out]).chain(&unmatched) {
        client.exchange_checked(request)?;
    }

    let copies = shadow
        .recording()
        .wait_for(copied.len(), Duration::from_secs(5))?;
    for request in &copied {
        // Up to 32 copies in flight: they may arrive in any order.
        let copy = copies
            .iter()
            .find(|copy| copy.target() == request.target)
            .with_context(|| format!("no copy of {}", request.target))?;
        let mut expected: Vec<(String, String)> = request
            .headers
            .iter()
            .filter(|(name, _)| {
                !["authorization", "cookie"].contains(&name.to_ascii_lowercase().as_str())
            })
            .map(|(name, value)| {
                let value = if name == "Host" {
                    format!("{HOST}-shadow")
                } else {
                    value.clone()
                };
                (name.clone(), value)
            })
            .collect();
        expected.push(("x-shadow".into(), "true".into()));
        assert_eq!(copy.method(), request.method);
        assert_eq!(
            copy.headers(),
            expected.as_slice(),
            "copy of {}",
            request.target
        );
        assert_eq!(
            copy.body.raw,
            request.body_bytes(),
            "copy of {}",
            request.target
        );
    }
    assert_eq!(
        copies.len(),
        copied.len(),
        "only the sampled, matching requests"
    );

    let delta = wait::until(
        "the shadow's answers counted",
        Duration::from_secs(5),
        || {
            let delta = MirrorCounters::from_metrics(&daemon.metrics()?, TARGET)?.since(&before);
            Ok(if delta.shadow_2xx >= 2 {
                Ok(delta)
            } else {
                Err(delta.to_string())
            })
        },
    )?;
    assert_eq!(delta.framed, 6, "{delta}");
    assert_eq!(delta.unmatched, 3, "{delta}");
    assert_eq!(delta.copies("mirrored"), 2, "{delta}");
    assert_eq!(delta.copies("sampled_out"), 1, "{delta}");
    assert_eq!(delta.shadow_2xx, 2, "answered over TLS; {delta}");
    assert_eq!(delta.shadow_errors.iter().sum::<u64>(), 0, "{delta}");
    assert_eq!(daemon.intercepted()?, 1, "one keep-alive connection");
    Ok(())
}
