//! The admin endpoint as Kubernetes probes and operators use it: `/readyz` says "not ready" (503)
//! while the daemon sets up the kernel side and "ready" (200) only once it intercepts, and stops
//! saying "ready" after SIGTERM; `/healthz` answers 200; `/config` serves the effective config,
//! exactly as `mirror-daemon check` prints it for the same file.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mirror_tests::command;
use mirror_tests::environment::require_daemon;
use mirror_tests::metrics::names;
use mirror_tests::node::Family;
use mirror_tests::scenario::{shadow_address, Mirroring, PRIMARY_PORT};
use mirror_tests::{wait, Client, Daemon, DaemonConfig, MirrorRule, Node, PrimaryServer, Request};

const HOST: &str = "orders.prod:8080";
/// How long the daemon may take to become ready (it takes well under a second).
const READY_WITHIN: Duration = Duration::from_secs(15);

/// What one `GET /readyz` got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Connection refused: nothing listens yet, or any more.
    Refused,
    /// No route, even to loopback: Linux splits the namespace's local and main routing tables
    /// when the daemon adds its first policy rule, and a connect in that instant can fail
    /// (README: Failure behaviour). Only while the kernel side is set up.
    Unreachable,
    /// Connected, but no complete answer (reset, timeout, bad response): never right.
    Broken,
    Status(u16),
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Refused => f.write_str("refused"),
            Seen::Unreachable => f.write_str("unreachable"),
            Seen::Broken => f.write_str("broken"),
            Seen::Status(status) => write!(f, "{status}"),
        }
    }
}

fn readyz(daemon: &Daemon) -> Seen {
    readyz_explained(daemon).0
}

/// What one `GET /readyz` got, and the error behind anything but a status.
fn readyz_explained(daemon: &Daemon) -> (Seen, Option<anyhow::Error>) {
    match daemon.admin_get("/readyz") {
        Ok(response) => (Seen::Status(response.status), None),
        Err(error) => {
            let kind = error
                .chain()
                .find_map(|cause| cause.downcast_ref::<std::io::Error>())
                .map(std::io::Error::kind);
            let seen = match kind {
                Some(std::io::ErrorKind::ConnectionRefused) => Seen::Refused,
                Some(std::io::ErrorKind::NetworkUnreachable) => Seen::Unreachable,
                _ => Seen::Broken,
            };
            (seen, Some(error))
        }
    }
}

/// The `mirror_ready` gauge, which alerts read where probes read `/readyz`.
fn ready_gauge(daemon: &Daemon) -> Result<f64> {
    daemon
        .metrics()?
        .get("mirror_ready", &[])
        .context("the daemon exposes no mirror_ready")
}

/// Consecutive equal observations, collapsed: `[(refused, 212), (503, 31), (200, 1)]`.
#[derive(Default)]
struct Runs(Vec<(Seen, usize)>);

impl Runs {
    fn push(&mut self, seen: Seen) {
        match self.0.last_mut() {
            Some((last, count)) if *last == seen => *count += 1,
            _ => self.0.push((seen, 1)),
        }
    }

    fn order(&self) -> Vec<Seen> {
        self.0.iter().map(|(seen, _)| *seen).collect()
    }
}

impl fmt::Display for Runs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs: Vec<String> = self
            .0
            .iter()
            .map(|(seen, count)| format!("{seen} ×{count}"))
            .collect();
        f.write_str(&runs.join(", "))
    }
}

#[test]
fn readyz_answers_503_while_the_kernel_is_set_up_and_200_once_flows_are_intercepted() -> Result<()>
{
    let Some(binary) = require_daemon(
        "readyz_answers_503_while_the_kernel_is_set_up_and_200_once_flows_are_intercepted",
    ) else {
        return Ok(());
    };
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let primary = PrimaryServer::start(
        node.primary().netns(),
        &[node.primary().addr(Family::V4, PRIMARY_PORT)],
    )?;
    let config = DaemonConfig::intercepting_primary(&[PRIMARY_PORT]).drain_timeout("2s");

    // The admin endpoint listens before the kernel set-up starts and is not ready until it is
    // done: polled from the moment the process starts, it must be seen refusing (not bound yet)
    // or answering 503, then 503, then 200, in that order.
    let mut daemon = Daemon::spawn(&binary, node.netns(), Some(&config))?;
    let started = Instant::now();
    let mut runs = Runs::default();
    let mut first_503 = None;
    loop {
        let (seen, error) = readyz_explained(&daemon);
        runs.push(seen);
        match seen {
            Seen::Status(200) => break,
            Seen::Status(503) => {
                first_503.get_or_insert_with(|| started.elapsed());
            }
            Seen::Status(other) => bail!("/readyz answered {other} during start-up ({runs})"),
            Seen::Broken => bail!(
                "/readyz connected but got no answer after {:?}: {:#} ({runs})",
                started.elapsed(),
                error.context("an error")?
            ),
            Seen::Refused | Seen::Unreachable => {}
        }
        if !daemon.is_running() {
            bail!("the daemon exited during start-up ({runs})");
        }
        if started.elapsed() > READY_WITHIN {
            bail!("/readyz did not answer 200 within {READY_WITHIN:?} ({runs})");
        }
    }
    let ready_after = started.elapsed();
    eprintln!(
        "/readyz from process start: {runs}; first 503 after {first_503:?}, 200 after {ready_after:?}"
    );
    let mut order = runs.order();
    order.retain(|seen| *seen != Seen::Unreachable);
    order.dedup();
    let expected: &[Seen] = if order.first() == Some(&Seen::Refused) {
        &[Seen::Refused, Seen::Status(503), Seen::Status(200)]
    } else {
        &[Seen::Status(503), Seen::Status(200)]
    };
    assert_eq!(
        order, expected,
        "/readyz during start-up: not bound yet, then 503 until ready, then 200 ({runs})"
    );

    // Ready means intercepting: the pod's interface is attached, and the very next connection
    // goes through the daemon.
    let metrics = daemon.metrics()?;
    assert_eq!(
        metrics.get(names::ATTACHED_INTERFACES, &[]),
        Some(1.0),
        "attached to the pod's interface when ready"
    );
    let before = daemon.counters()?;
    let request = Request::get(HOST, "/ready");
    Client::connect(node.pod("a"), primary.address())?.exchange_checked(&request)?;
    let delta = daemon.counters()?.since(&before);
    assert_eq!(delta.intercepted, 1, "{delta:?}");
    assert_eq!(delta.assigned, 1, "{delta:?}");
    let peers: Vec<_> = primary
        .recording()
        .requests()
        .iter()
        .map(|request| request.peer.ip())
        .collect();
    assert_eq!(
        peers,
        [node.primary().node_address(Family::V4)],
        "the primary got the request from the daemon"
    );
    assert_eq!(daemon.terminate()?.code(), Some(0));
    Ok(())
}

#[test]
fn healthz_answers_200_and_config_serves_what_check_prints_for_the_same_file() -> Result<()> {
    let Some(binary) =
        require_daemon("healthz_answers_200_and_config_serves_what_check_prints_for_the_same_file")
    else {
        return Ok(());
    };
    let node = Node::new()?.with_pod("a")?;
    // Every section given, defaults left to fill in, two targets and rules: the effective config
    // differs from the file's text in many places.
    let config = DaemonConfig::intercepting_primary(&[PRIMARY_PORT, 80])
        .interfaces(&["cali*", "lxc*"])
        .watchdog_timeout("3s")
        .drain_timeout("2s")
        .shadow_target(
            Mirroring::target()
                .percent(25.0)
                .consistent()
                .add_header("x-shadow", "true")
                .remove_header("authorization")
                .methods(&["GET", "POST"]),
        )
        .shadow_target(mirror_tests::ShadowTarget::new("canary", shadow_address()).percent(1.5))
        .mirror_rule(MirrorRule::to(&["staging"]).path_prefix("/api/"))
        .mirror_rule(MirrorRule::to(&["staging", "canary"]).destination("10.96.0.0/24"));
    let daemon = Daemon::start(&binary, node.netns(), &config)?;

    let health = daemon.admin_get("/healthz")?;
    assert_eq!(health.status, 200, "/healthz: {}", health.text());

    let served = daemon.admin_get("/config")?;
    assert_eq!(served.status, 200, "/config: {}", served.text());
    assert_eq!(served.header("content-type"), Some("application/toml"));
    let served_text = served.text();
    let served_table: toml::Table = toml::from_str(&served_text)
        .with_context(|| format!("/config is not TOML:\n{served_text}"))?;

    let path = daemon
        .config_path()
        .context("the daemon has a config file")?;
    let check = command::output(
        &binary.display().to_string(),
        &["check", "--config", &path.display().to_string()],
    )?;
    ensure!(
        check.success,
        "`mirror-daemon check` rejects the file: {}",
        check.stderr
    );
    let checked_table: toml::Table = toml::from_str(&check.stdout)?;
    assert_eq!(
        served_table, checked_table,
        "/config and `check` describe different configs"
    );
    assert_eq!(
        served_text, check.stdout,
        "/config is exactly what `check` prints"
    );
    // And it is the effective config: defaults the file left out are filled in.
    assert_eq!(
        served_table["interception"]["route_table"].as_integer(),
        Some(100),
        "{served_text}"
    );
    assert_eq!(
        served_table["mirror"]["targets"][1]["name"].as_str(),
        Some("canary")
    );
    Ok(())
}

#[test]
fn after_sigterm_readyz_stops_answering_200_while_connections_drain() -> Result<()> {
    let Some(binary) =
        require_daemon("after_sigterm_readyz_stops_answering_200_while_connections_drain")
    else {
        return Ok(());
    };
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let primary = PrimaryServer::start(
        node.primary().netns(),
        &[node.primary().addr(Family::V4, PRIMARY_PORT)],
    )?;
    // A long drain: the open connection below, with a request begun, keeps the daemon draining,
    // and running, until the request is complete and answered (an idle keep-alive connection
    // would be closed at once).
    let config = DaemonConfig::intercepting_primary(&[PRIMARY_PORT]).drain_timeout("30s");
    let mut daemon = Daemon::start(&binary, node.netns(), &config)?;
    assert_eq!(readyz(&daemon), Seen::Status(200));
    assert_eq!(
        ready_gauge(&daemon)?,
        1.0,
        "mirror_ready while /readyz answers 200"
    );
    let before = daemon.counters()?;
    let mut client = Client::connect(node.pod("a"), primary.address())?;
    client.exchange_checked(&Request::get(HOST, "/before-sigterm"))?;
    assert_eq!(daemon.counters()?.since(&before).intercepted, 1);
    let request = Request::get(HOST, "/while-draining");
    let bytes = request.to_bytes();
    let (begun, rest) = bytes.split_at(10);
    client.send(begun)?;

    daemon.signal(nix::sys::signal::Signal::SIGTERM)?;
    let first = wait::until(
        "/readyz to stop answering 200 after SIGTERM",
        Duration::from_secs(5),
        || {
            let seen = readyz(&daemon);
            Ok(if seen == Seen::Status(200) {
                Err(seen)
            } else {
                Ok(seen)
            })
        },
    )?;
    assert_eq!(
        first,
        Seen::Status(503),
        "while draining, the endpoint still answers, with 503"
    );
    // It stays so while the connection drains (it does not flip back).
    let mut runs = Runs::default();
    for _ in 0..20 {
        runs.push(readyz(&daemon));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(runs.order(), [Seen::Status(503)], "while draining: {runs}");
    assert_eq!(
        ready_gauge(&daemon)?,
        0.0,
        "mirror_ready while /readyz answers 503"
    );
    assert!(daemon.is_running(), "the daemon drains the open connection");
    // The request begun before SIGTERM is served to its end; then the connection is idle and
    // closed.
    client.send(rest)?;
    let response = client.read_response("GET")?;
    assert_eq!(response.raw(), request.expected_response().as_slice());

    let status = daemon.wait_exit(Duration::from_secs(10))?;
    assert_eq!(status.code(), Some(0), "exit status after the drain");
    assert_eq!(readyz(&daemon), Seen::Refused, "nothing listens after exit");
    Ok(())
}
