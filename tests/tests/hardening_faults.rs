//! Faults under load: the daemon killed or stopped, the shadow flapping, reload storms, and a
//! primary that closes mid-response, each while pod clients keep sending requests. The property
//! throughout: a client sees what it would see without the daemon; only what is in flight through
//! a daemon that dies may fail, and every new connection succeeds.
//!
//! Every test runs on the simulated node (see tests/README.md): pod "a", the recording primary on
//! 10.96.0.10:8080 / [fd00:96::10]:8080 (intercepted), the shadow at 172.20.0.10:8080, the daemon
//! in NODE copying every request to the shadow.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mirror_tests::config_patch::with_settings;
use mirror_tests::environment::require_daemon;
use mirror_tests::load::{ensure_all_succeeded, Load, LoadSpec, Outcome, Probes};
use mirror_tests::node::{Family, SHADOW_V4};
use mirror_tests::scenario::{Mirroring, SHADOW_PORT};
use mirror_tests::tcp::{read_until_end, Ending};
use mirror_tests::{process, wait, Behaviour, Daemon, Netns, PrimaryServer, Request, Server};
use nix::sys::signal::Signal;

const HOST: &str = "orders.prod:8080";

/// How the primary received each request: target -> the peer's address.
fn peers_by_target(primary: &PrimaryServer) -> HashMap<String, IpAddr> {
    primary
        .recording()
        .requests()
        .into_iter()
        .map(|request| (request.target().to_owned(), request.peer.ip()))
        .collect()
}

/// Whether the request reached the primary from the pod itself (direct), `None` when the primary
/// has no complete record of it.
fn went_direct(peers: &HashMap<String, IpAddr>, outcome: &Outcome, pod: IpAddr) -> Option<bool> {
    peers.get(&outcome.target).map(|peer| *peer == pod)
}

/// Milliseconds from `origin` to `instant`.
fn ms(origin: Instant, instant: Instant) -> f64 {
    instant.saturating_duration_since(origin).as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// SIGKILL
// ---------------------------------------------------------------------------------------------

/// Between the daemon's death (its process reaped: every socket it had is closed) and the moment a
/// client can have learnt it, packets still travel: a request begun this soon after the death on
/// an old keep-alive connection may have been sent before the closing FIN/RST arrived.
const DEATH_SETTLE: Duration = Duration::from_millis(100);
/// Bytes of the upload the kill interrupts.
const UPLOAD: usize = 1 << 20;

/// SIGKILL during a steady load of 4 workers opening a connection per request and 4 on keep-alive
/// connections (a request every 2 ms each, every third a 2 KiB POST). Then the load goes on
/// direct, and the daemon is started again under it.
///
/// - An upload sent halfway before the kill fails promptly (EOF or reset, no answer, no hang).
/// - Requests in flight at the kill may fail: every failure is on a connection opened before the
///   daemon died (was reaped), started before it died (plus [`DEATH_SETTLE`]); per worker, at
///   most the request in flight at the kill and the next one on the same dead connection, plus
///   requests on connections opened while the kernel was tearing the process down.
/// - Every request on a connection opened after the daemon died succeeds: direct while it is
///   dead (the primary sees the pod's own address), intercepted again after the restart.
#[test]
fn sigkill_under_load_fails_only_requests_in_flight_and_new_connections_succeed() -> Result<()> {
    let Some(binary) = require_daemon(
        "sigkill_under_load_fails_only_requests_in_flight_and_new_connections_succeed",
    ) else {
        return Ok(());
    };
    let config = Mirroring::config(Mirroring::target());
    let Mirroring {
        daemon: mut first,
        shadow: _shadow,
        primary,
        node,
    } = Mirroring::start(&binary, Behaviour::Normal, &config)?;
    let pod = node.pod("a");
    let destination = node.primary().addr(Family::V4, 8080);
    // Busy workers (2 ms between requests), so that the kill catches some in flight.
    let spec = LoadSpec::new(4, 4).pace(Duration::from_millis(2));
    let workers = spec.workers.len();
    let load = Load::start(pod, destination, &spec)?;
    // And one request certainly in flight: an upload stopped halfway.
    let mut upload = pod.connect(destination)?;
    upload.write_all(
        format!("POST /in-flight HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {UPLOAD}\r\n\r\n")
            .as_bytes(),
    )?;
    upload.write_all(&vec![b'u'; UPLOAD / 2])?;

    load.wait_for_more(1000, Duration::from_secs(30))?;
    let intercepted_before_kill = first.intercepted()?;
    let killed_at = Instant::now();
    first.kill()?;
    let dead_at = Instant::now();
    // The upload cut by the kill fails promptly; it neither hangs nor gets an answer.
    upload.set_read_timeout(Some(Duration::from_secs(2)))?;
    let rest = upload.write_all(&vec![b'u'; UPLOAD - UPLOAD / 2]);
    let (answer, ending) = read_until_end(&mut upload);
    let upload_failed_at = Instant::now();
    assert!(
        answer.is_empty() && matches!(ending, Ending::Eof | Ending::Reset),
        "the upload in flight at the kill: write {rest:?}, then {} bytes and {ending:?} \
         (expected no answer and an EOF or a reset within 2 s)",
        answer.len()
    );
    load.wait_for_more(1000, Duration::from_secs(30))?;
    let restart_at = Instant::now();
    let second = Daemon::start(&binary, node.netns(), &config)?;
    let ready_at = Instant::now();
    load.wait_for_more(1000, Duration::from_secs(30))?;
    let report = load.stop()?;
    let intercepted_after_restart = second.intercepted()?;
    let origin = report.origin;
    eprintln!(
        "load: {}; SIGKILL at {:.1} ms, reaped at {:.1} ms (the half-sent upload failed with \
         {ending:?} at {:.1} ms); restart at {:.1} ms, ready at {:.1} ms",
        report.summary(),
        ms(origin, killed_at),
        ms(origin, dead_at),
        ms(origin, upload_failed_at),
        ms(origin, restart_at),
        ms(origin, ready_at)
    );
    ensure!(
        intercepted_before_kill > 0,
        "the daemon intercepted nothing before the kill: the test proves nothing"
    );

    // Failures: only what was in flight at the kill.
    let failures = report.failures();
    eprintln!(
        "{} requests failed around the kill:\n{}",
        failures.len(),
        report.describe(failures.iter().copied())
    );
    let late: Vec<&Outcome> = failures
        .iter()
        .copied()
        .filter(|o| o.connection_opened >= dead_at || o.started >= dead_at + DEATH_SETTLE)
        .collect();
    assert!(
        late.is_empty(),
        "requests begun after the daemon died (on connections opened after it, or more than \
         {DEATH_SETTLE:?} after it) failed:\n{}",
        report.describe(late)
    );
    // Each worker has one request in flight at the kill; a keep-alive worker may also lose the
    // next one it sends on its (already dead) connection before it notices; and connections
    // opened while the kernel tears the killed process down (its listeners live until then)
    // are reset with it. Nothing else fails.
    for worker in 0..workers {
        let of_worker = || failures.iter().copied().filter(move |o| o.worker == worker);
        let in_flight = of_worker().filter(|o| o.started < killed_at).count();
        let on_dead_connection = of_worker()
            .filter(|o| o.started >= killed_at && o.connection_opened < killed_at)
            .count();
        // A worker sends one request at a time: one that failed before the kill was not cut
        // off by it.
        let before_the_kill = of_worker().filter(|o| o.finished < killed_at).count();
        assert!(
            before_the_kill == 0 && in_flight <= 1 && on_dead_connection <= 1,
            "worker {worker}: {before_the_kill} requests failed before the kill, {in_flight} \
             that began before it (at most the one in flight may), {on_dead_connection} after it \
             on a connection opened before it (at most the next one may):\n{}",
            report.describe(of_worker())
        );
    }
    let while_dying = failures
        .iter()
        .filter(|o| o.connection_opened >= killed_at && o.connection_opened < dead_at)
        .count();
    eprintln!(
        "{while_dying} of the failures were on connections opened in the {:.1} ms between the \
         SIGKILL and the reaping",
        ms(killed_at, dead_at)
    );

    // New connections after the death: all succeed; direct until the restart.
    let pod_ip = pod.ip(Family::V4);
    let peers = peers_by_target(&primary);
    let after: Vec<&Outcome> = report
        .outcomes
        .iter()
        .filter(|o| o.connection_opened >= dead_at)
        .collect();
    let dead_phase: Vec<&Outcome> = after
        .iter()
        .copied()
        .filter(|o| o.connection_opened < restart_at)
        .collect();
    assert!(
        dead_phase.len() >= 100,
        "only {} requests on connections opened while the daemon was dead",
        dead_phase.len()
    );
    let relayed_while_dead: Vec<&Outcome> = dead_phase
        .iter()
        .copied()
        .filter(|o| went_direct(&peers, o, pod_ip) != Some(true))
        .collect();
    assert!(
        relayed_while_dead.is_empty(),
        "requests on connections opened while the daemon was dead did not reach the primary \
         from the pod itself:\n{}",
        report.describe(relayed_while_dead.into_iter().take(20))
    );
    // After the restart new connections are intercepted again.
    let intercepted_again = after
        .iter()
        .filter(|o| {
            o.connection_opened >= ready_at && went_direct(&peers, o, pod_ip) == Some(false)
        })
        .count();
    assert!(
        intercepted_after_restart > 0 && intercepted_again > 0,
        "after the restart: {intercepted_after_restart} connections intercepted, \
         {intercepted_again} requests relayed"
    );
    eprintln!(
        "after the death: {} requests on new connections, all succeeded ({} while dead, direct); \
         after the restart {intercepted_after_restart} connections intercepted",
        after.len(),
        dead_phase.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SIGSTOP
// ---------------------------------------------------------------------------------------------

/// `interception.watchdog_timeout` in the SIGSTOP test.
const WATCHDOG: Duration = Duration::from_secs(1);
/// What the test allows on top of the watchdog timeout for the first direct success.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(1);
/// How long the daemon stays stopped.
const STOPPED_FOR: Duration = Duration::from_secs(3);
/// New connections are intercepted again this soon after SIGCONT.
const RESUME_WITHIN: Duration = Duration::from_secs(1);

/// SIGSTOP under load, with `watchdog_timeout = "1s"`: the accept loop stops beating, and the
/// kernel must send new flows direct within the timeout.
///
/// - A probe opens a new connection every 20 ms. The first direct success comes at most
///   `watchdog_timeout + 1 s` after SIGSTOP, and every probe begun once the heartbeat is stale
///   (SIGSTOP + timeout + one beat interval) and before SIGCONT goes direct and completes at once.
/// - Connections opened during the first second are still handed to the (stopped) daemon: they
///   hang until SIGCONT, then complete. Documented, counted, and required to succeed then.
/// - Requests on connections through the daemon (keep-alive load) wait for SIGCONT and succeed.
/// - New connections begun 1 s after SIGCONT are intercepted again; the daemon's log carries the
///   kernel's warning (`watchdog: no heartbeat`) and `passed_watchdog` grew.
#[test]
fn sigstop_watchdog_sends_new_flows_direct_within_its_timeout() -> Result<()> {
    let Some(binary) = require_daemon("sigstop_watchdog_sends_new_flows_direct_within_its_timeout")
    else {
        return Ok(());
    };
    let config = Mirroring::config(Mirroring::target()).watchdog_timeout("1s");
    let setup = Mirroring::start(&binary, Behaviour::Normal, &config)?;
    let pod = setup.pod();
    let destination = setup.primary_address(Family::V4);
    let io_timeout = Duration::from_secs(20);
    let load = Load::start(
        pod,
        destination,
        &LoadSpec::new(2, 2).io_timeout(io_timeout),
    )?;
    load.wait_for_more(100, Duration::from_secs(30))?;
    let before = setup.daemon.counters()?;
    let probes = Probes::start(
        pod,
        destination,
        Duration::from_millis(20),
        io_timeout,
        HOST,
    )?;
    thread::sleep(Duration::from_millis(300));

    let stopped_at = Instant::now();
    setup.daemon.signal(Signal::SIGSTOP)?;
    thread::sleep(STOPPED_FOR);
    let continued_at = Instant::now();
    setup.daemon.signal(Signal::SIGCONT)?;
    thread::sleep(RESUME_WITHIN + Duration::from_secs(1));
    let probe_report = probes.stop()?;
    let load_report = load.stop()?;
    let after = setup.daemon.counters()?.since(&before);

    let origin = probe_report.origin;
    let pod_ip = pod.ip(Family::V4);
    let peers = peers_by_target(&setup.primary);
    eprintln!(
        "probes: {}; load: {}; SIGSTOP at {:.1} ms, SIGCONT at {:.1} ms; kernel: {after:?}",
        probe_report.summary(),
        load_report.summary(),
        ms(origin, stopped_at),
        ms(origin, continued_at)
    );
    ensure_all_succeeded(
        &probe_report,
        "probes (hung ones must complete after SIGCONT)",
    )?;
    ensure_all_succeeded(&load_report, "the steady load")?;

    let during: Vec<&Outcome> = probe_report
        .outcomes
        .iter()
        .filter(|o| o.started >= stopped_at && o.started < continued_at)
        .collect();
    let first_direct = during
        .iter()
        .filter(|o| went_direct(&peers, o, pod_ip) == Some(true))
        .map(|o| o.finished)
        .min()
        .context("no probe went direct while the daemon was stopped")?;
    let to_first_direct = first_direct.duration_since(stopped_at);
    // Hung: still unfinished at SIGCONT after having had a second (a probe begun just before
    // SIGCONT that is merely slow, e.g. under emulation, is not hung).
    let hung: Vec<&Outcome> = during
        .iter()
        .copied()
        .filter(|o| o.finished >= continued_at && o.started + Duration::from_secs(1) < continued_at)
        .collect();
    eprintln!(
        "first direct success {to_first_direct:?} after SIGSTOP (watchdog {WATCHDOG:?}); {} of {} \
         probes begun while stopped hung until SIGCONT, begun {:.0}..{:.0} ms after SIGSTOP",
        hung.len(),
        during.len(),
        hung.iter()
            .map(|o| ms(stopped_at, o.started))
            .fold(f64::MAX, f64::min),
        hung.iter()
            .map(|o| ms(stopped_at, o.started))
            .fold(0.0, f64::max),
    );
    // Every property is checked and every violation reported at once.
    let mut problems = Vec::new();
    if to_first_direct > WATCHDOG + WATCHDOG_MARGIN {
        problems.push(format!(
            "the first direct success came {to_first_direct:?} after SIGSTOP; the watchdog \
             promises {WATCHDOG:?} (+{WATCHDOG_MARGIN:?} allowed)"
        ));
    }
    // Once the heartbeat is stale (the last beat was at most one interval before SIGSTOP), every
    // new flow goes direct and completes at once.
    let stale_from = stopped_at + WATCHDOG + Duration::from_millis(250);
    let passing: Vec<&Outcome> = during
        .iter()
        .copied()
        .filter(|o| {
            o.started >= stale_from && o.started + Duration::from_millis(100) < continued_at
        })
        .collect();
    if passing.len() < 20 {
        problems.push(format!(
            "only {} probes while the watchdog was passing flows",
            passing.len()
        ));
    }
    let slow_or_relayed: Vec<&Outcome> = passing
        .iter()
        .copied()
        .filter(|o| {
            went_direct(&peers, o, pod_ip) != Some(true) || o.took() > Duration::from_secs(1)
        })
        .collect();
    if !slow_or_relayed.is_empty() {
        problems.push(format!(
            "probes begun after the heartbeat went stale were relayed or slow:\n{}",
            probe_report.describe(slow_or_relayed)
        ));
    }
    // Hung connections are the ones opened before the watchdog fired.
    let hung_late: Vec<&Outcome> = hung
        .iter()
        .copied()
        .filter(|o| o.started >= stale_from)
        .collect();
    if !hung_late.is_empty() {
        problems.push(format!(
            "probes begun after the watchdog fired still hung:\n{}",
            probe_report.describe(hung_late)
        ));
    }
    // After SIGCONT: intercepted again.
    let resumed: Vec<&Outcome> = probe_report
        .outcomes
        .iter()
        .filter(|o| o.started >= continued_at + RESUME_WITHIN)
        .collect();
    let direct_after: Vec<&Outcome> = resumed
        .iter()
        .copied()
        .filter(|o| went_direct(&peers, o, pod_ip) != Some(false))
        .collect();
    if resumed.is_empty() || !direct_after.is_empty() {
        problems.push(format!(
            "of {} probes begun {RESUME_WITHIN:?} after SIGCONT, these were not intercepted:\n{}",
            resumed.len(),
            probe_report.describe(direct_after)
        ));
    }
    if after.passed_watchdog == 0 {
        problems.push(format!(
            "kernel counter passed_watchdog did not move: {after:?}"
        ));
    }
    let warned = wait::until(
        "the kernel's watchdog warning in the daemon's log",
        Duration::from_secs(5),
        || {
            let log = setup.daemon.log();
            Ok(if log.contains("watchdog: no heartbeat") {
                Ok(())
            } else {
                Err(log.lines().count())
            })
        },
    );
    if let Err(error) = warned {
        problems.push(format!("{error:#}"));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shadow flapping
// ---------------------------------------------------------------------------------------------

/// How the shadow is down in a flapping phase.
#[derive(Clone, Copy, Debug)]
enum Down {
    /// Every packet to the shadow's port dropped: connects and copies in flight time out.
    Drop,
    /// Every packet answered with a reset: connects refused, pooled connections reset.
    Reset,
}

/// Toggles the shadow's reachability with an `iptables` rule inside its own namespace.
struct Flapper<'a> {
    netns: &'a Netns,
    rule: Option<Down>,
}

impl Flapper<'_> {
    fn spec(down: Down) -> Vec<String> {
        let mut spec: Vec<String> = [
            "INPUT",
            "-p",
            "tcp",
            "-d",
            &SHADOW_V4.to_string(),
            "--dport",
            &SHADOW_PORT.to_string(),
            "-j",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        match down {
            Down::Drop => spec.push("DROP".into()),
            Down::Reset => spec.extend(["REJECT", "--reject-with", "tcp-reset"].map(String::from)),
        }
        spec
    }

    fn iptables(&self, action: &str, down: Down) -> Result<()> {
        let mut args = vec!["-w".to_owned(), action.to_owned()];
        args.extend(Flapper::spec(down));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.netns.exec("iptables", &args)?;
        Ok(())
    }

    fn down(&mut self, how: Down) -> Result<()> {
        self.up()?;
        self.iptables("-I", how)?;
        self.rule = Some(how);
        Ok(())
    }

    fn up(&mut self) -> Result<()> {
        if let Some(rule) = self.rule.take() {
            self.iptables("-D", rule)?;
        }
        Ok(())
    }
}

/// Seconds of flapping.
const FLAPS: usize = 8;
/// No client request may take this long while the shadow flaps (one takes about a millisecond).
const NO_ADDED_WAIT: Duration = Duration::from_secs(1);

/// The shadow goes down and up every second for 8 s (down alternately as a blackhole, every
/// packet dropped, and as a reset of every packet) while 3 workers on new connections and 3 on
/// keep-alive connections send mirrored GETs and POSTs: zero client errors, every response is
/// the primary's byte for byte, none waits a second; the shadow's errors were counted; once the
/// shadow is back, copies reach it again.
#[test]
fn shadow_flapping_every_second_causes_no_client_error() -> Result<()> {
    let Some(binary) = require_daemon("shadow_flapping_every_second_causes_no_client_error") else {
        return Ok(());
    };
    let target = Mirroring::target()
        .connect_timeout("300ms")
        .request_timeout("700ms");
    let setup = Mirroring::start(&binary, Behaviour::Normal, &Mirroring::config(target))?;
    let destination = setup.primary_address(Family::V4);
    let before = setup.counters()?;
    let load = Load::start(setup.pod(), destination, &LoadSpec::new(3, 3))?;
    load.wait_for_more(50, Duration::from_secs(30))?;

    let mut flapper = Flapper {
        netns: setup.node.shadow().netns(),
        rule: None,
    };
    let flapping = (|| -> Result<()> {
        for flap in 0..FLAPS {
            if flap % 2 == 0 {
                flapper.down(if flap % 4 == 0 {
                    Down::Drop
                } else {
                    Down::Reset
                })?;
            } else {
                flapper.up()?;
            }
            thread::sleep(Duration::from_secs(1));
        }
        flapper.up()
    })();
    let _ = flapper.up();
    flapping?;
    thread::sleep(Duration::from_millis(500));
    let report = load.stop()?;
    eprintln!("load while the shadow flapped: {}", report.summary());
    ensure_all_succeeded(&report, "clients while the shadow flapped")?;
    let slow: Vec<&Outcome> = report
        .outcomes
        .iter()
        .filter(|o| o.took() >= NO_ADDED_WAIT)
        .collect();
    assert!(
        slow.is_empty(),
        "requests waited for the flapping shadow:\n{}",
        report.describe(slow)
    );

    // The shadow is back: new copies reach it.
    let mut client = mirror_tests::Client::connect(setup.pod(), destination)?;
    for n in 0..5 {
        client.exchange_checked(&Request::get(HOST, &format!("/after-flapping/{n}")))?;
    }
    wait::until(
        "copies at the shadow after the flapping",
        Duration::from_secs(10),
        || {
            let arrived = setup
                .shadow
                .recording()
                .requests()
                .iter()
                .filter(|r| r.target().starts_with("/after-flapping/"))
                .count();
            Ok(if arrived == 5 { Ok(()) } else { Err(arrived) })
        },
    )?;
    let counters = setup.counters()?.since(&before);
    eprintln!("mirror counters: {counters}");
    let shadow_errors: u64 = ["connect", "timeout", "reset", "aborted"]
        .iter()
        .map(|kind| counters.shadow_errors(kind))
        .sum();
    assert!(
        shadow_errors > 0,
        "no shadow error counted: the flapping never reached the daemon ({counters})"
    );
    assert!(counters.copies("mirrored") > 0, "{counters}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reload storm
// ---------------------------------------------------------------------------------------------

/// Reloads in the storm.
const STORM: usize = 100;
/// Pause between two reloads.
const STORM_PAUSE: Duration = Duration::from_millis(20);

/// The storm's `n`th config: valid ones vary the sampling percentage, a header added to copies,
/// the relay buffer size and an extra intercepted port; every fifth is invalid in one of four
/// ways (TOML syntax, an unknown key, a value out of range, a change that needs a restart).
fn storm_config(n: usize) -> Result<String> {
    let target = Mirroring::target()
        .percent(if n.is_multiple_of(2) { 100.0 } else { 50.0 })
        .add_header("x-storm", &n.to_string());
    let mut config = Mirroring::config(target);
    if n.is_multiple_of(3) {
        config = config.intercept("10.96.0.0/24", &[9090]);
    }
    let valid = with_settings(
        &config.to_toml(),
        "relay",
        &[&format!("buffer_size = {}", 8192 + 1024 * (n % 8))],
    )?;
    Ok(match (n % 5, n % 4) {
        (4, 0) => format!("{valid}\n[[interception.rules]\ncidr = "),
        (4, 1) => with_settings(&valid, "relay", &["bufer_size = 4096"])?,
        (4, 2) => with_settings(&valid, "mirror", &["max_buffered_bytes = -1"])?,
        (4, _) => valid.replace("127.0.0.1:15090", "127.0.0.1:15091"),
        _ => valid,
    })
}

/// The config the storm ends with: every copy carries `x-final: yes`, relay buffers of 4 KiB.
fn final_config() -> Result<String> {
    let target = Mirroring::target().add_header("x-final", "yes");
    with_settings(
        &Mirroring::config(target).to_toml(),
        "relay",
        &["buffer_size = 4096"],
    )
}

/// `mirror_config_reloads_total{result}`.
fn reloads(daemon: &Daemon, result: &str) -> Result<u64> {
    daemon
        .metrics()?
        .counter("mirror_config_reloads_total", &[("result", result)])
}

/// Replaces the file at `path` in one step (a reader never sees half of it).
fn rewrite(path: &std::path::Path, text: &str) -> Result<()> {
    let temporary = path.with_extension("storm-tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// 100 config rewrites, each followed by SIGHUP, 20 ms apart (every fifth invalid), under a steady
/// load of 3 workers on new connections and 3 on keep-alive ones: zero client errors, every
/// request on a new connection intercepted (intercept rules switch atomically: no flow slips
/// through directly), the daemon alive, both reload results counted, and the last config in
/// force (`/config` shows it; copies carry its header). Afterwards the retired shadow senders are
/// gone: descriptors and threads come back to about where they were.
#[test]
fn reload_storm_under_load_causes_no_client_error_and_the_last_config_wins() -> Result<()> {
    let Some(binary) =
        require_daemon("reload_storm_under_load_causes_no_client_error_and_the_last_config_wins")
    else {
        return Ok(());
    };
    let mut setup = Mirroring::start(
        &binary,
        Behaviour::Normal,
        &Mirroring::config(Mirroring::target()),
    )?;
    let pid = setup.daemon.pid();
    let path = process::config_argument(pid)?;
    let destination = setup.primary_address(Family::V4);
    let load = Load::start(setup.pod(), destination, &LoadSpec::new(3, 3))?;
    load.wait_for_more(100, Duration::from_secs(30))?;
    let fds_before = process::open_fds(pid)?;
    let threads_before = process::threads(pid)?;
    let (successes_before, failures_before) = (
        reloads(&setup.daemon, "success")?,
        reloads(&setup.daemon, "failure")?,
    );

    let storm_started = Instant::now();
    for n in 0..STORM {
        rewrite(&path, &storm_config(n)?)?;
        setup.daemon.signal(Signal::SIGHUP)?;
        thread::sleep(STORM_PAUSE);
    }
    rewrite(&path, &final_config()?)?;
    setup.daemon.signal(Signal::SIGHUP)?;
    let storm_ended = Instant::now();
    // The final config is in force once /config shows it.
    wait::until(
        "the final config in /config",
        Duration::from_secs(10),
        || {
            let config = setup.daemon.admin_get("/config")?.text();
            Ok(
                if config.contains("x-final") && config.contains("buffer_size = 4096") {
                    Ok(())
                } else {
                    Err(config
                        .lines()
                        .filter(|l| l.contains("buffer_size"))
                        .collect::<Vec<_>>()
                        .join(" "))
                },
            )
        },
    )?;
    load.wait_for_more(100, Duration::from_secs(30))?;
    let report = load.stop()?;
    eprintln!(
        "storm of {STORM} reloads took {:?}; load: {}",
        storm_ended.duration_since(storm_started),
        report.summary()
    );
    ensure_all_succeeded(&report, "clients during the reload storm")?;
    assert!(setup.daemon.is_running(), "the daemon died in the storm");

    let successes = reloads(&setup.daemon, "success")? - successes_before;
    let failures = reloads(&setup.daemon, "failure")? - failures_before;
    eprintln!(
        "reloads: {successes} succeeded, {failures} failed (SIGHUPs that arrive together coalesce)"
    );
    assert!(
        successes >= 1 && failures >= 1,
        "{successes} succeeded, {failures} failed"
    );

    // No new connection slipped past the daemon while the rules were switched.
    let pod_ip = setup.pod().ip(Family::V4);
    let peers = peers_by_target(&setup.primary);
    let direct: Vec<&Outcome> = report
        .outcomes
        .iter()
        .filter(|o| went_direct(&peers, o, pod_ip) != Some(false))
        .collect();
    assert!(
        direct.is_empty(),
        "requests reached the primary directly (or not at all) during the storm:\n{}",
        report.describe(direct.into_iter().take(20))
    );

    // Copies now carry the final config's header.
    let mut client = mirror_tests::Client::connect(setup.pod(), destination)?;
    client.exchange_checked(&Request::get(HOST, "/after-the-storm"))?;
    let copy = wait::until(
        "the copy made after the storm",
        Duration::from_secs(10),
        || {
            let requests = setup.shadow.recording().requests();
            Ok(
                match requests
                    .into_iter()
                    .find(|r| r.target() == "/after-the-storm")
                {
                    Some(copy) => Ok(copy),
                    None => Err(()),
                },
            )
        },
    )?;
    assert_eq!(copy.header("x-final"), Some("yes"), "{:?}", copy.headers());
    assert_eq!(copy.header("x-storm"), None, "{:?}", copy.headers());

    // Retired senders finish within 5 s; then descriptors and threads are back near the start.
    thread::sleep(Duration::from_secs(7));
    let (fds_after, threads_after) = (process::open_fds(pid)?, process::threads(pid)?);
    eprintln!(
        "daemon descriptors {fds_before} -> {fds_after}, threads {threads_before} -> {threads_after}, \
         memory {:?}",
        process::memory(pid)?
    );
    assert!(
        fds_after <= fds_before + 16,
        "descriptors grew from {fds_before} to {fds_after} after {STORM} reloads"
    );
    assert!(
        threads_after <= threads_before + 4,
        "threads grew from {threads_before} to {threads_after} after {STORM} reloads"
    );
    assert!(setup.daemon.is_running());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The primary closing mid-response
// ---------------------------------------------------------------------------------------------

/// Bytes of the response body the primary announces.
const ANNOUNCED: usize = 1 << 20;
/// Bytes of it sent before a clean close (more than the relay's buffers and the socket buffers
/// in between, so the close has to queue behind data).
const SENT_BEFORE_FIN: usize = 300_000;
/// Bytes sent before a reset: small, sent well before the reset, so that the direct reference
/// is deterministic (a reset discards data still unsent).
const SENT_BEFORE_RST: usize = 3000;
const WHOLE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nwhole\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    Fin,
    Rst,
}

fn partial_response(sent: usize) -> Vec<u8> {
    let mut bytes = format!("HTTP/1.1 200 OK\r\ncontent-length: {ANNOUNCED}\r\n\r\n").into_bytes();
    bytes.extend((0..sent).map(|i| b'a' + (i % 26) as u8));
    bytes
}

/// A primary that answers `/whole` fully and `/cut` partially, then closes (FIN) or resets.
fn cutting_primary(netns: &Netns, address: SocketAddr, cut: Cut) -> Result<Server> {
    Server::spawn(netns, address, move |mut stream| {
        loop {
            let head = mirror_tests::http::read_request_head(&mut stream)?;
            if head.starts_with(b"GET /whole ") {
                stream.write_all(WHOLE)?;
                continue;
            }
            match cut {
                Cut::Fin => {
                    stream.write_all(&partial_response(SENT_BEFORE_FIN))?;
                    stream.shutdown(Shutdown::Write)?;
                    // Wait for the client's close so nothing unread turns the close into a reset.
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest);
                }
                Cut::Rst => {
                    stream.write_all(&partial_response(SENT_BEFORE_RST))?;
                    thread::sleep(Duration::from_millis(300));
                    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
                }
            }
            return Ok(());
        }
    })
}

/// What the pod gets: after the complete `/whole` response, everything that arrives for `/cut`
/// and how the stream ends.
fn cut_exchange(pod: &mirror_tests::Pod, address: SocketAddr) -> Result<(Vec<u8>, Ending)> {
    let mut stream = pod.connect(address)?;
    stream.write_all(b"GET /whole HTTP/1.1\r\nHost: orders.prod\r\n\r\n")?;
    let mut whole = vec![0; WHOLE.len()];
    stream.read_exact(&mut whole)?;
    ensure!(whole == WHOLE, "the complete response differs: {whole:?}");
    stream.write_all(b"GET /cut HTTP/1.1\r\nHost: orders.prod\r\n\r\n")?;
    Ok(read_until_end(&mut stream))
}

/// The primary writes part of a response, then closes cleanly (FIN) or resets (RST), on the
/// second request of a keep-alive connection: through the daemon (port 8080, intercepted and
/// mirrored) the pod gets exactly the bytes and the ending (EOF or ECONNRESET) it gets directly
/// (port 9090, not intercepted), over IPv4 and IPv6.
#[test]
fn primary_closing_mid_response_reaches_the_pod_as_it_does_directly() -> Result<()> {
    let Some(binary) =
        require_daemon("primary_closing_mid_response_reaches_the_pod_as_it_does_directly")
    else {
        return Ok(());
    };
    let node = mirror_tests::Node::new()?
        .with_pod("a")?
        .with_primary()?
        .with_shadow()?;
    let _shadow = mirror_tests::ShadowServer::start(
        node.shadow().netns(),
        mirror_tests::scenario::shadow_address(),
        Behaviour::Normal,
    )?;
    let daemon = Daemon::start(
        &binary,
        node.netns(),
        &Mirroring::config(Mirroring::target()),
    )?;
    let pod = node.pod("a");
    let mut failures = Vec::new();
    for family in Family::ALL {
        for cut in [Cut::Fin, Cut::Rst] {
            let primary = node.primary().netns();
            let relayed_server = cutting_primary(primary, node.primary().addr(family, 8080), cut)?;
            let direct_server = cutting_primary(primary, node.primary().addr(family, 9090), cut)?;
            let before = daemon.intercepted()?;
            let direct = cut_exchange(pod, direct_server.address())?;
            let after_direct = daemon.intercepted()?;
            let relayed = cut_exchange(pod, relayed_server.address())?;
            let intercepted = daemon.intercepted()? - after_direct;
            ensure!(
                after_direct == before && intercepted == 1,
                "{family:?} {cut:?}: port 9090 must go direct and 8080 through the daemon \
                 (intercepted {} and {intercepted})",
                after_direct - before
            );
            let expected_ending = match cut {
                Cut::Fin => Ending::Eof,
                Cut::Rst => Ending::Reset,
            };
            let sent = match cut {
                Cut::Fin => SENT_BEFORE_FIN,
                Cut::Rst => SENT_BEFORE_RST,
            };
            ensure!(
                direct == (partial_response(sent), expected_ending),
                "{family:?} {cut:?}: the direct reference itself is not what the primary sent: \
                 {} bytes, {:?}",
                direct.0.len(),
                direct.1
            );
            eprintln!(
                "{family:?} {cut:?}: direct {} bytes then {:?}; through the daemon {} bytes then {:?}",
                direct.0.len(),
                direct.1,
                relayed.0.len(),
                relayed.1
            );
            if relayed != direct {
                failures.push(format!(
                    "{family:?} {cut:?}: through the daemon {} bytes then {:?} (first difference \
                     at {:?}); directly {} bytes then {:?}",
                    relayed.0.len(),
                    relayed.1,
                    mirror_tests::tcp::first_difference(&relayed.0, &direct.0),
                    direct.0.len(),
                    direct.1
                ));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "the pod saw something else than without the daemon:\n{}",
            failures.join("\n")
        );
    }
    Ok(())
}
