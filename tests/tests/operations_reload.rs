//! Changing the config of a running daemon: on SIGHUP, on a rewrite of the file and on a
//! Kubernetes ConfigMap update (the `..data` symlink swapped), traffic keeps flowing, the new
//! config takes effect for new connections, and `mirror_config_reloads_total` counts every
//! attempt. An invalid config changes nothing but the failure count and the log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mirror_tests::config_file::ConfigFile;
use mirror_tests::environment::require_daemon;
use mirror_tests::metrics::names;
use mirror_tests::node::{Family, Pod};
use mirror_tests::scenario::{Mirroring, PRIMARY_PORT, TARGET};
use mirror_tests::{
    command, wait, Behaviour, Client, Cni, Daemon, DaemonConfig, MirrorRule, Node, PrimaryServer,
    Request,
};
use nix::sys::signal::Signal;

const HOST: &str = "orders.prod:8080";
/// The header the target adds to every copy; its value names the config in force.
const CONFIG_HEADER: &str = "x-config";
/// A reload applies within one poll of the file (1 s); allow for a slow machine.
const RELOAD_WITHIN: Duration = Duration::from_secs(5);
/// The daemon reads the file for changes this often.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// `mirror_config_reloads_total` by result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reloads {
    success: u64,
    failure: u64,
}

impl Reloads {
    fn read(daemon: &Daemon) -> Result<Reloads> {
        let metrics = daemon.metrics()?;
        Ok(Reloads {
            success: metrics.config_reloads("success")?,
            failure: metrics.config_reloads("failure")?,
        })
    }

    fn plus(self, success: u64, failure: u64) -> Reloads {
        Reloads {
            success: self.success + success,
            failure: self.failure + failure,
        }
    }
}

/// Waits until the reload counters read exactly `expected`; more than that fails at once.
fn wait_for_reloads(daemon: &Daemon, expected: Reloads, what: &str) -> Result<()> {
    wait::until(what, RELOAD_WITHIN, || {
        let now = Reloads::read(daemon)?;
        ensure!(
            now.success <= expected.success && now.failure <= expected.failure,
            "{what}: more reloads counted than expected: {now:?}, expected {expected:?}"
        );
        Ok(if now == expected { Ok(()) } else { Err(now) })
    })
}

/// What `mirror-daemon check` prints for `text`: the effective config `/config` must serve.
fn effective_config(binary: &std::path::Path, text: &str) -> Result<String> {
    let file = ConfigFile::plain(text)?;
    let output = command::output(
        &binary.display().to_string(),
        &["check", "--config", &file.path().display().to_string()],
    )?;
    ensure!(
        output.success,
        "`check` rejects the config: {}",
        output.stderr
    );
    Ok(output.stdout)
}

/// `/config` now.
fn served_config(daemon: &Daemon) -> Result<String> {
    let response = daemon.admin_get("/config")?;
    ensure!(
        response.status == 200,
        "/config answered {}",
        response.status
    );
    Ok(response.text())
}

/// The daemon's log lines containing every one of `parts`.
fn log_lines(daemon: &Daemon, parts: &[&str]) -> Vec<String> {
    daemon
        .log()
        .lines()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .map(str::to_owned)
        .collect()
}

/// The values of [`CONFIG_HEADER`] on the copies the shadow received.
fn config_headers_at_shadow(setup: &Mirroring) -> Vec<String> {
    setup
        .shadow
        .recording()
        .requests()
        .iter()
        .filter_map(|copy| copy.header(CONFIG_HEADER).map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Twenty reloads under a steady stream of requests.

/// A request that took at least this long stalled. Through a healthy daemon a request takes
/// about a millisecond.
const STALLED: Duration = Duration::from_secs(1);
const RELOADS: u32 = 20;
/// Connections kept open for the whole test, each sending request after request.
const KEEP_ALIVE_CLIENTS: usize = 4;
/// Clients opening a new connection for every request.
const NEW_CONNECTION_CLIENTS: usize = 2;
/// Pause between one client's requests (a steady stream, not a flood the shadow must record).
const PACE: Duration = Duration::from_millis(5);
/// A port a second intercept rule adds (nothing listens there; the rule only has to apply).
const EXTRA_PORT: u16 = 9090;

/// The settings the reloads turn, one at a time; every combination keeps the primary
/// intercepted and mirrored.
#[derive(Clone, Copy, Debug)]
struct Knobs {
    /// The value of [`CONFIG_HEADER`] on copies.
    generation: u32,
    percent: f64,
    extra_rule: bool,
    path_prefix: bool,
}

impl Knobs {
    fn initial() -> Knobs {
        Knobs {
            generation: 0,
            percent: 100.0,
            extra_rule: false,
            path_prefix: false,
        }
    }

    /// Reload `n` (1-based) turns one knob: the header value, the percent, a second intercept
    /// rule, or the mirror rule's path prefix.
    fn turn(&mut self, n: u32) {
        match n % 4 {
            0 => self.generation = n,
            1 => self.percent = if self.percent == 100.0 { 50.0 } else { 100.0 },
            2 => self.extra_rule = !self.extra_rule,
            _ => self.path_prefix = !self.path_prefix,
        }
    }

    fn toml(&self) -> String {
        let target = Mirroring::target()
            .add_header(CONFIG_HEADER, &format!("generation-{}", self.generation))
            .percent(self.percent);
        let mut config = DaemonConfig::intercepting_primary(&[PRIMARY_PORT])
            .drain_timeout("2s")
            .shadow_target(target);
        if self.extra_rule {
            config = config.intercept("10.96.0.0/24", &[EXTRA_PORT]);
        }
        let mut rule = MirrorRule::to(&[TARGET]);
        if self.path_prefix {
            // Every request of the stream is under it: copies keep flowing.
            rule = rule.path_prefix("/orders/");
        }
        config.mirror_rule(rule).to_toml()
    }
}

/// How a reload is triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// The file rewritten; the daemon notices at its next poll.
    FileRewrite,
    /// The file rewritten and SIGHUP sent at once, right after a poll: the signal, not the
    /// poll, applies it (the log says which).
    Sighup,
    /// The ConfigMap's `..data` swapped to a new version.
    ConfigMapSwap,
}

impl Trigger {
    /// Reload `n` (1-based): a rewrite, then SIGHUP, then a swap, in turn. SIGHUP always follows
    /// a reload the poll applied, so it is sent far from the next poll.
    fn of(n: u32) -> Trigger {
        match (n - 1) % 3 {
            0 => Trigger::FileRewrite,
            1 => Trigger::Sighup,
            _ => Trigger::ConfigMapSwap,
        }
    }
}

/// After these reloads, a SIGHUP with the file unchanged: it re-applies the same config and
/// counts as a success.
const SIGHUP_UNCHANGED_AFTER: [u32; 2] = [6, 12];

/// What the clients saw.
#[derive(Default)]
struct Outcome {
    completed: AtomicU64,
    failures: Mutex<Vec<String>>,
    slowest: Mutex<(Duration, String)>,
    stalled: Mutex<Vec<(String, Duration)>>,
}

impl Outcome {
    fn record(&self, what: String, result: Result<Duration>) {
        match result {
            Ok(took) => {
                self.completed.fetch_add(1, Ordering::Relaxed);
                if took >= STALLED {
                    lock(&self.stalled).push((what.clone(), took));
                }
                let mut slowest = lock(&self.slowest);
                if took > slowest.0 {
                    *slowest = (took, what);
                }
            }
            Err(error) => lock(&self.failures).push(format!("{what}: {error:#}")),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stream_request(client: usize, n: u64) -> Request {
    let target = format!("/orders/{client}/{n}");
    if n.is_multiple_of(2) {
        Request::get(HOST, &target)
    } else {
        Request::post(HOST, &target, format!("order {client}-{n}").as_bytes())
    }
}

/// The client threads; dropping this stops and joins them (also when the test fails).
struct Clients {
    stop: Arc<AtomicBool>,
    handles: Vec<thread::JoinHandle<()>>,
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Starts the clients; they run until the returned [`Clients`] is dropped.
fn start_clients(
    pod: &Pod,
    primary: std::net::SocketAddr,
    outcome: &Arc<Outcome>,
) -> Result<Clients> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Clients {
        stop: Arc::clone(&stop),
        handles: Vec::new(),
    };
    let handles = &mut clients.handles;
    for client in 0..KEEP_ALIVE_CLIENTS {
        // Connected before the first reload: these connections live through all of them.
        let mut connection =
            Client::connect(pod, primary).with_context(|| format!("keep-alive client {client}"))?;
        let (stop, outcome) = (Arc::clone(&stop), Arc::clone(outcome));
        handles.push(thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let request = stream_request(client, n);
                let result = connection.exchange_checked(&request);
                let failed = result.is_err();
                outcome.record(
                    format!(
                        "keep-alive client {client}, {} {}",
                        request.method, request.target
                    ),
                    result,
                );
                if failed {
                    return; // the connection is unusable; the failure is recorded
                }
                n += 1;
                thread::sleep(PACE);
            }
        }));
    }
    for client in KEEP_ALIVE_CLIENTS..KEEP_ALIVE_CLIENTS + NEW_CONNECTION_CLIENTS {
        let pod = pod.clone();
        let (stop, outcome) = (Arc::clone(&stop), Arc::clone(outcome));
        handles.push(thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let request = stream_request(client, n).header("Connection", "close");
                let started = Instant::now();
                let result = Client::connect(&pod, primary)
                    .and_then(|mut connection| connection.exchange_checked(&request))
                    .map(|_| started.elapsed());
                outcome.record(
                    format!(
                        "new connection of client {client}, {} {}",
                        request.method, request.target
                    ),
                    result,
                );
                n += 1;
                thread::sleep(PACE);
            }
        }));
    }
    Ok(clients)
}

#[test]
fn twenty_reloads_by_sighup_file_rewrite_and_configmap_swap_fail_or_stall_no_request() -> Result<()>
{
    let Some(binary) = require_daemon(
        "twenty_reloads_by_sighup_file_rewrite_and_configmap_swap_fail_or_stall_no_request",
    ) else {
        return Ok(());
    };
    let mut knobs = Knobs::initial();
    let mut file = ConfigFile::config_map(&knobs.toml())?;
    let admin = DaemonConfig::default().admin;
    let setup = Mirroring::start_with_config_file(&binary, Behaviour::Normal, &file.path(), admin)?;
    let daemon = &setup.daemon;
    let mirror_before = setup.counters()?;
    let mut expected = Reloads::read(daemon)?;
    assert_eq!(expected, Reloads::default(), "no reload before the first");

    let outcome = Arc::new(Outcome::default());
    let clients = start_clients(setup.pod(), setup.primary_address(Family::V4), &outcome)?;
    let result = (|| -> Result<(u32, u32)> {
        let (mut by_sighup, mut by_poll) = (0, 0);
        let mut completed = outcome.completed.load(Ordering::Relaxed);
        for n in 1..=RELOADS {
            knobs.turn(n);
            let text = knobs.toml();
            let trigger = Trigger::of(n);
            match trigger {
                Trigger::FileRewrite => file.rewrite(&text)?,
                Trigger::Sighup => {
                    file.rewrite(&text)?;
                    daemon.signal(Signal::SIGHUP)?;
                }
                Trigger::ConfigMapSwap => file.swap(&text)?,
            }
            expected = expected.plus(1, 0);
            wait_for_reloads(
                daemon,
                expected,
                &format!("reload {n} ({trigger:?}, {knobs:?})"),
            )?;
            if trigger == Trigger::Sighup {
                by_sighup += 1;
            } else {
                by_poll += 1;
            }
            ensure!(
                served_config(daemon)? == effective_config(&binary, &text)?,
                "/config after reload {n} ({trigger:?}) does not serve the new config"
            );
            if SIGHUP_UNCHANGED_AFTER.contains(&n) {
                daemon.signal(Signal::SIGHUP)?;
                expected = expected.plus(1, 0);
                wait_for_reloads(
                    daemon,
                    expected,
                    &format!("SIGHUP, file unchanged, after {n}"),
                )?;
                by_sighup += 1;
                ensure!(
                    served_config(daemon)? == effective_config(&binary, &text)?,
                    "/config after the SIGHUP without a change"
                );
            }
            // The stream kept flowing across this reload.
            let now = outcome.completed.load(Ordering::Relaxed);
            ensure!(
                now > completed,
                "no request completed between reload {} and reload {n}",
                n - 1
            );
            completed = now;
        }
        // A poll later, nothing more was applied: each change was applied exactly once.
        thread::sleep(POLL_INTERVAL + POLL_INTERVAL / 2);
        Ok((by_sighup, by_poll))
    })();
    // The copies of the last config, made on connections opened after the last reload.
    let last_generation = format!("generation-{}", knobs.generation);
    let seen_last = setup.shadow.recording().wait_until(
        &format!("a copy with {CONFIG_HEADER}: {last_generation}"),
        Duration::from_secs(5),
        |copies| {
            copies
                .iter()
                .any(|copy| copy.header(CONFIG_HEADER) == Some(last_generation.as_str()))
        },
    );
    drop(clients);
    let (by_sighup, by_poll) = result?;
    seen_last?;

    let completed = outcome.completed.load(Ordering::Relaxed);
    let (slowest, slowest_request) = lock(&outcome.slowest).clone();
    eprintln!(
        "{completed} requests across {RELOADS} reloads (+{} SIGHUPs without a change); slowest \
         {slowest:?} ({slowest_request}); mirror counters: {}",
        SIGHUP_UNCHANGED_AFTER.len(),
        setup.counters()?.since(&mirror_before)
    );
    let failures = lock(&outcome.failures).clone();
    assert!(
        failures.is_empty(),
        "{} requests failed, the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let stalled = lock(&outcome.stalled).clone();
    assert!(
        stalled.is_empty(),
        "{} requests stalled ({STALLED:?} or more): {stalled:?}",
        stalled.len()
    );
    assert_eq!(
        setup.primary.recording().count() as u64,
        completed,
        "the primary got every request once"
    );

    // Exactly one successful reload per change, plus one per SIGHUP with the file unchanged.
    let reloads = Reloads::read(daemon)?;
    assert_eq!(
        reloads,
        Reloads {
            success: u64::from(RELOADS) + SIGHUP_UNCHANGED_AFTER.len() as u64,
            failure: 0
        }
    );
    // And each by the trigger meant for it.
    let sighup_lines = log_lines(daemon, &["config reloaded", "trigger=\"SIGHUP\""]);
    let poll_lines = log_lines(daemon, &["config reloaded", "trigger=\"file change\""]);
    assert_eq!(
        (sighup_lines.len(), poll_lines.len()),
        (by_sighup as usize, by_poll as usize),
        "reloads by SIGHUP and by file change, as logged"
    );

    // Every header value was in force long enough to reach the shadow: each of those reloads
    // took effect.
    let headers = config_headers_at_shadow(&setup);
    for generation in (0..=RELOADS).step_by(4) {
        let value = format!("generation-{generation}");
        assert!(
            headers.contains(&value),
            "no copy carried {CONFIG_HEADER}: {value}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Invalid configs.

/// Sends one request on a new connection and checks that it went through the daemon (counted
/// as intercepted) and reached the shadow with `x-config: <config>`.
fn intercepted_and_mirrored(setup: &Mirroring, path: &str, config: &str) -> Result<()> {
    let before = setup.daemon.counters()?;
    let mirror_before = setup.counters()?;
    let copies_before = setup.shadow.recording().count();
    let request = Request::get(HOST, path);
    Client::connect(setup.pod(), setup.primary_address(Family::V4))?.exchange_checked(&request)?;
    let delta = setup.daemon.counters()?.since(&before);
    ensure!(
        delta.intercepted == 1 && delta.syn_matched == 1,
        "{path}: not intercepted: {delta:?}"
    );
    let copies = setup
        .shadow
        .recording()
        .wait_for(copies_before + 1, Duration::from_secs(5))?;
    let copy = &copies[copies_before];
    ensure!(
        copy.target() == path,
        "{path}: the shadow got {}",
        copy.target()
    );
    ensure!(
        copy.header(CONFIG_HEADER) == Some(config),
        "{path}: the copy carries {CONFIG_HEADER}: {:?}, expected {config:?}",
        copy.header(CONFIG_HEADER)
    );
    ensure!(
        copy.header("host") == Some("orders.prod-shadow:8080"),
        "{path}: Host {:?}",
        copy.header("host")
    );
    let mirror_delta = setup.counters()?.since(&mirror_before);
    ensure!(
        mirror_delta.copies("mirrored") == 1 && mirror_delta.framed == 1,
        "{path}: {mirror_delta}"
    );
    Ok(())
}

#[test]
fn an_invalid_config_is_rejected_logged_and_counted_and_the_running_one_stays_in_force(
) -> Result<()> {
    let Some(binary) = require_daemon(
        "an_invalid_config_is_rejected_logged_and_counted_and_the_running_one_stays_in_force",
    ) else {
        return Ok(());
    };
    let config = |value: &str| {
        Mirroring::config(Mirroring::target().add_header(CONFIG_HEADER, value)).to_toml()
    };
    let original = config("original");
    let file = ConfigFile::plain(&original)?;
    let admin = DaemonConfig::default().admin;
    let setup = Mirroring::start_with_config_file(&binary, Behaviour::Normal, &file.path(), admin)?;
    let daemon = &setup.daemon;
    let served = served_config(daemon)?;
    assert_eq!(served, effective_config(&binary, &original)?);
    intercepted_and_mirrored(&setup, "/before", "original")?;
    let mut expected = Reloads::read(daemon)?;

    let moved_admin = "127.0.0.1:15091";
    let cases = [
        (
            "a syntax error",
            format!("{original}\n[relay\nconnect_timeout = \"1s\"\n"),
        ),
        (
            "an unknown key",
            original.replacen("[relay]\n", "[relay]\nconect_timeout = \"1s\"\n", 1),
        ),
        (
            "a new admin.address",
            original.replacen(&admin.to_string(), moved_admin, 1),
        ),
    ];
    for (case, text) in &cases {
        assert_ne!(text, &original, "{case}: the text must change");
        file.rewrite(text)?;
        expected = expected.plus(0, 1);
        wait_for_reloads(daemon, expected, &format!("{case}: counted as a failure"))?;
        // The one-line error is logged: for a file `check` rejects, the very message `check`
        // gives for it; for an admin address, that it needs a restart.
        let check = command::output(
            &binary.display().to_string(),
            &["check", "--config", &file.path().display().to_string()],
        )?;
        let error = if check.success {
            assert_eq!(
                *case, "a new admin.address",
                "`check` accepts {case}: {}",
                check.stdout
            );
            "admin.address cannot change while running; restart the daemon to change it".to_owned()
        } else {
            let error = check.stderr.trim();
            assert_eq!(
                error.lines().count(),
                1,
                "{case}: a one-line error: {error}"
            );
            error
                .strip_prefix("mirror-daemon: ")
                .unwrap_or(error)
                .to_owned()
        };
        let logged = log_lines(daemon, &["config reload failed", &error]);
        assert_eq!(
            logged.len(),
            1,
            "{case}: the log has the error {error:?} once; log:\n{}",
            daemon.log()
        );
        assert_eq!(served_config(daemon)?, served, "{case}: /config unchanged");
        let path = format!("/after-{}", case.replace([' ', '.'], "-"));
        intercepted_and_mirrored(&setup, &path, "original")?;
    }
    // SIGHUP reads and checks the file again: another failure, nothing else changes.
    daemon.signal(Signal::SIGHUP)?;
    expected = expected.plus(0, 1);
    wait_for_reloads(daemon, expected, "SIGHUP with the invalid file: a failure")?;
    assert_eq!(served_config(daemon)?, served);
    // The file is not tried again at every poll: a failure per change or signal, no more.
    thread::sleep(POLL_INTERVAL + POLL_INTERVAL / 2);
    assert_eq!(
        Reloads::read(daemon)?,
        expected,
        "no retries of the same file"
    );
    // The admin endpoint stayed where it was (the scrapes above reached it there).
    assert_eq!(daemon.admin_address(), admin);

    // A valid file afterwards is applied.
    let fixed = config("fixed");
    file.rewrite(&fixed)?;
    expected = expected.plus(1, 0);
    wait_for_reloads(daemon, expected, "the fixed file applied")?;
    assert_eq!(served_config(daemon)?, effective_config(&binary, &fixed)?);
    intercepted_and_mirrored(&setup, "/fixed", "fixed")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Intercept rules and interface globs.

#[test]
fn removing_the_intercept_rule_sends_new_connections_direct_and_open_ones_keep_the_daemon(
) -> Result<()> {
    let Some(binary) = require_daemon(
        "removing_the_intercept_rule_sends_new_connections_direct_and_open_ones_keep_the_daemon",
    ) else {
        return Ok(());
    };
    let intercepting = Mirroring::config(Mirroring::target()).to_toml();
    // The primary's port is no longer intercepted (another port is, so the rules are not
    // simply empty); the mirror rules stay.
    let not_intercepting = DaemonConfig::default()
        .intercept("10.96.0.0/24", &[EXTRA_PORT])
        .drain_timeout("2s")
        .mirror_all_to(Mirroring::target())
        .to_toml();
    let file = ConfigFile::plain(&intercepting)?;
    let admin = DaemonConfig::default().admin;
    let setup = Mirroring::start_with_config_file(&binary, Behaviour::Normal, &file.path(), admin)?;
    let daemon = &setup.daemon;
    let primary = setup.primary_address(Family::V4);
    let pod_address = setup.pod().ip(Family::V4);
    let daemon_address = setup.node.primary().node_address(Family::V4);
    let peer_of = |target: &str| -> Result<std::net::IpAddr> {
        let requests = setup.primary.recording().requests();
        let request = requests
            .iter()
            .find(|request| request.target() == target)
            .with_context(|| format!("the primary never got {target}"))?;
        Ok(request.peer.ip())
    };

    // An intercepted keep-alive connection, open across both reloads.
    let before = daemon.counters()?;
    let mut open = Client::connect(setup.pod(), primary)?;
    open.exchange_checked(&Request::get(HOST, "/open/1"))?;
    assert_eq!(daemon.counters()?.since(&before).intercepted, 1);
    assert_eq!(peer_of("/open/1")?, daemon_address, "through the daemon");

    let mut expected = Reloads::read(daemon)?;
    file.rewrite(&not_intercepting)?;
    expected = expected.plus(1, 0);
    wait_for_reloads(daemon, expected, "the rule removed")?;

    // New connections go direct.
    let before = daemon.counters()?;
    Client::connect(setup.pod(), primary)?.exchange_checked(&Request::get(HOST, "/direct"))?;
    let delta = daemon.counters()?.since(&before);
    assert_eq!(
        (delta.intercepted, delta.syn_matched, delta.assigned),
        (0, 0, 0),
        "{delta:?}"
    );
    assert_eq!(peer_of("/direct")?, pod_address, "the primary sees the pod");

    // The open connection still goes through the daemon, relayed and mirrored as before. Its
    // outcome is judged at the end, so that the rest is checked either way.
    let open_after_removal = (|| -> Result<()> {
        let before = daemon.counters()?;
        let request = Request::get(HOST, "/open/2");
        open.exchange_checked(&request)?;
        ensure!(
            peer_of("/open/2")? == daemon_address,
            "not through the daemon"
        );
        let delta = wait::until("the relayed bytes of /open/2", RELOAD_WITHIN, || {
            let delta = daemon.counters()?.since(&before);
            Ok(if delta.primary_to_client_bytes > 0 {
                Ok(delta)
            } else {
                Err(delta)
            })
        })?;
        ensure!(
            delta.intercepted == 0
                && delta.client_to_primary_bytes == request.to_bytes().len() as u64
                && delta.primary_to_client_bytes == request.expected_response().len() as u64,
            "not relayed by the daemon as one request and its response: {delta:?}"
        );
        setup
            .shadow
            .recording()
            .wait_until("the copy of /open/2", RELOAD_WITHIN, |copies| {
                copies.iter().any(|copy| copy.target() == "/open/2")
            })?;
        Ok(())
    })();

    // The rule back: new connections are intercepted again; the open one still works.
    file.rewrite(&intercepting)?;
    expected = expected.plus(1, 0);
    wait_for_reloads(daemon, expected, "the rule added back")?;
    let before = daemon.counters()?;
    Client::connect(setup.pod(), primary)?
        .exchange_checked(&Request::get(HOST, "/intercepted-again"))?;
    let delta = daemon.counters()?.since(&before);
    assert_eq!(
        (delta.intercepted, delta.syn_matched, delta.assigned),
        (1, 1, 1),
        "{delta:?}"
    );
    assert_eq!(peer_of("/intercepted-again")?, daemon_address);

    open_after_removal.context(
        "the intercepted keep-alive connection opened before its intercept rule was removed, \
         used after the reload",
    )?;
    open.exchange_checked(&Request::get(HOST, "/open/3"))
        .context("the same connection after the rule was added back")?;
    assert_eq!(peer_of("/open/3")?, daemon_address);
    Ok(())
}

/// One request from `pod` on a new connection; returns whether the daemon intercepted it
/// (checked both ways: its counters and the address the primary saw).
fn intercepted(
    daemon: &Daemon,
    node: &Node,
    primary: &PrimaryServer,
    pod: &Pod,
    path: &str,
) -> Result<bool> {
    let before = daemon.counters()?;
    Client::connect(pod, primary.address())?.exchange_checked(&Request::get(HOST, path))?;
    let delta = daemon.counters()?.since(&before);
    let requests = primary.recording().requests();
    let peer = requests
        .iter()
        .find(|request| request.target() == path)
        .with_context(|| format!("the primary never got {path}"))?
        .peer
        .ip();
    match (delta.intercepted, delta.syn_matched, peer) {
        (1, 1, peer) if peer == node.primary().node_address(Family::V4) => Ok(true),
        (0, 0, peer) if peer == pod.ip(Family::V4) => Ok(false),
        _ => bail!(
            "{path} from pod {}: counters {delta:?} and the primary saw {peer} disagree",
            pod.name()
        ),
    }
}

fn attached_interfaces(daemon: &Daemon) -> Result<f64> {
    daemon
        .metrics()?
        .get(names::ATTACHED_INTERFACES, &[])
        .with_context(|| format!("no {} gauge", names::ATTACHED_INTERFACES))
}

#[test]
fn narrowing_the_interface_globs_detaches_the_calico_pod_and_keeps_the_cilium_one() -> Result<()> {
    let Some(binary) = require_daemon(
        "narrowing_the_interface_globs_detaches_the_calico_pod_and_keeps_the_cilium_one",
    ) else {
        return Ok(());
    };
    let mut node = Node::new()?.with_pod("calico")?.with_primary()?;
    node.add_pod("cilium", Cni::Cilium)?;
    let (calico, cilium) = (node.pod("calico").clone(), node.pod("cilium").clone());
    assert!(calico.host_interface().starts_with("cali"));
    assert!(cilium.host_interface().starts_with("lxc"));
    let primary = PrimaryServer::start(
        node.primary().netns(),
        &[node.primary().addr(Family::V4, PRIMARY_PORT)],
    )?;
    let config = |globs: &[&str]| {
        DaemonConfig::intercepting_primary(&[PRIMARY_PORT])
            .interfaces(globs)
            .drain_timeout("2s")
            .to_toml()
    };
    let both = config(&["cali*", "lxc*"]);
    let file = ConfigFile::plain(&both)?;
    let admin = DaemonConfig::default().admin;
    let daemon = Daemon::start_with_config_file(&binary, node.netns(), &file.path(), admin)?;
    assert_eq!(attached_interfaces(&daemon)?, 2.0);
    assert!(intercepted(&daemon, &node, &primary, &calico, "/calico/1")?);
    assert!(intercepted(&daemon, &node, &primary, &cilium, "/cilium/1")?);

    let mut expected = Reloads::read(&daemon)?;
    file.rewrite(&config(&["lxc*"]))?;
    expected = expected.plus(1, 0);
    wait_for_reloads(&daemon, expected, "the globs narrowed to lxc*")?;
    assert_eq!(
        attached_interfaces(&daemon)?,
        1.0,
        "detached from the calico pod when the reload was counted"
    );
    assert!(
        !intercepted(&daemon, &node, &primary, &calico, "/calico/2")?,
        "the calico pod's new flows go direct"
    );
    assert!(
        intercepted(&daemon, &node, &primary, &cilium, "/cilium/2")?,
        "the cilium pod is still intercepted"
    );

    file.rewrite(&both)?;
    expected = expected.plus(1, 0);
    wait_for_reloads(&daemon, expected, "the globs widened again")?;
    assert_eq!(attached_interfaces(&daemon)?, 2.0);
    assert!(intercepted(&daemon, &node, &primary, &calico, "/calico/3")?);
    assert!(intercepted(&daemon, &node, &primary, &cilium, "/cilium/3")?);
    Ok(())
}
