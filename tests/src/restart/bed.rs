//! The bed (one node, built once) and one restart on it, as a DaemonSet's rolling update does
//! it on a node (`maxUnavailable: 1`, `maxSurge: 0`): SIGTERM to the running daemon, wait for
//! it to exit (SIGKILL at the grace period, as the kubelet would), then start the new daemon
//! and wait until it is ready, all under steady keep-alive load from the pod.
//!
//! ```text
//!  pod ns "a"                       NODE ns                 primary ns
//!  wrk (N connections)     ──▶  [old daemon │ new daemon] ──▶ nginx 10.96.0.10:8080 (1 KiB,
//!  Python requests sessions ─▶      (or direct)                keep-alive)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use mirror_tests::daemon::{Daemon, DaemonConfig};
use mirror_tests::node::{Family, Node};
use nix::sys::signal::Signal;

use super::sessions::{Sessions, SessionsOptions, SessionsResult};
use super::timeline::{monotonic_ms, Marks, Tallies};
use super::wrk::{Wrk, WrkOptions, WrkResult};
use crate::nginx::{Nginx, Role};

pub const PRIMARY_PORT: u16 = 8080;
/// The Host the clients send (any name: the primary answers every one).
pub const HOST: &str = "orders.prod.svc.cluster.local";
const PATH: &str = "/api/orders?id=42";

/// Knobs of a restart run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Load before counting starts (connections open, warm).
    pub warmup: Duration,
    /// Counted load before the SIGTERM.
    pub before: Duration,
    /// Counted load after the new daemon is ready.
    pub after: Duration,
    /// The old daemon's `shutdown.drain_timeout`, as the config writes it.
    pub drain: String,
    /// The pod's `terminationGracePeriodSeconds`: SIGKILL when the old daemon still runs then.
    pub grace: Duration,
    pub wrk_connections: usize,
    /// Between an answer and the connection's next request (zero: wrk's closed loop).
    pub wrk_pause: Duration,
    pub sessions: usize,
    /// Pin the clients to CPU 0 and the primary to CPU 1.
    pub pin: bool,
    pub work_dir: PathBuf,
}

impl Settings {
    fn client_cpus(&self) -> Option<&'static str> {
        self.pin.then_some("0")
    }

    fn server_cpus(&self) -> Option<&'static str> {
        self.pin.then_some("1")
    }
}

/// The node with its primary, for the whole run.
pub struct Bed {
    // Drop order: the server before the namespaces it lives in.
    _primary: Nginx,
    node: Node,
}

/// What one restart measured.
#[derive(Clone, Debug)]
pub struct Restart {
    pub marks: Marks,
    /// The old daemon was still running at the grace period and was killed.
    pub killed: bool,
    /// From the old daemon's log: connections open at SIGTERM, and those it reset at the drain
    /// deadline (`None`: it logged none).
    pub open_at_sigterm: Option<u64>,
    pub reset_at_deadline: Option<u64>,
    /// Connections the new daemon intercepted by the end (those opened after it was ready).
    pub new_intercepted: u64,
    pub wrk: WrkResult,
    pub wrk_tallies: Tallies,
    pub sessions: SessionsResult,
    pub session_tallies: Tallies,
}

impl Bed {
    pub fn build(settings: &Settings) -> Result<Bed> {
        let node = Node::new()?.with_pod("a")?.with_primary()?;
        std::fs::create_dir_all(&settings.work_dir)?;
        let listen = [node.primary().addr(Family::V4, PRIMARY_PORT)];
        let primary = Nginx::start(
            node.primary().netns(),
            &Role::Primary {
                listen: &listen,
                listen_h2: &[],
                listen_json: &[],
            },
            &settings.work_dir.join("nginx-primary"),
            settings.server_cpus(),
            listen[0],
        )?;
        Ok(Bed {
            _primary: primary,
            node,
        })
    }

    fn primary(&self) -> SocketAddr {
        self.node.primary().addr(Family::V4, PRIMARY_PORT)
    }

    fn start_daemon(&self, binary: &Path, settings: &Settings, role: &str) -> Result<Daemon> {
        let config =
            DaemonConfig::intercepting_primary(&[PRIMARY_PORT]).drain_timeout(&settings.drain);
        let mut daemon = Daemon::start(binary, self.node.netns(), &config)
            .with_context(|| format!("starting the {role} daemon {}", binary.display()))?;
        daemon.print_log_on_drop(false);
        Ok(daemon)
    }

    /// Runs `old`, restarts it into `new` under load, and counts what the clients saw.
    pub fn restart(&self, old: &Path, new: &Path, settings: &Settings) -> Result<Restart> {
        let mut old_daemon = self.start_daemon(old, settings, "old")?;
        let pod = self.node.pod("a").netns();
        let url = format!("http://{}{PATH}", self.primary());
        let wrk = Wrk::start(
            pod,
            &WrkOptions {
                url: url.clone(),
                host: HOST,
                connections: settings.wrk_connections,
                pause: settings.wrk_pause,
                cpus: settings.client_cpus(),
                dir: &settings.work_dir,
            },
        )?;
        let sessions = Sessions::start(
            pod,
            &SessionsOptions {
                url,
                host: HOST,
                sessions: settings.sessions,
                cpus: settings.client_cpus(),
            },
        )?;
        std::thread::sleep(settings.warmup);
        let mut marks = Marks {
            start: monotonic_ms(),
            ..Marks::default()
        };
        std::thread::sleep(settings.before);

        marks.sigterm = monotonic_ms();
        old_daemon.signal(Signal::SIGTERM)?;
        let killed = old_daemon.wait_exit(settings.grace).is_err();
        if killed && old_daemon.is_running() {
            old_daemon.kill()?;
        }
        marks.exited = monotonic_ms();
        let old_log = old_daemon.log();
        drop(old_daemon);

        let new_daemon = self.start_daemon(new, settings, "new")?;
        marks.ready = monotonic_ms();
        std::thread::sleep(settings.after);
        marks.end = monotonic_ms();
        // Requests that began before the end get time to be answered.
        std::thread::sleep(Duration::from_secs(1));

        let wrk = wrk.stop().context("stopping wrk")?;
        let sessions = sessions.stop().context("stopping the Python sessions")?;
        let new_intercepted = new_daemon
            .intercepted()
            .context("reading the new daemon's intercepted connections")?;
        Ok(Restart {
            marks,
            killed,
            open_at_sigterm: logged_count(&old_log, "waiting for open connections"),
            reset_at_deadline: logged_count(&old_log, "drain deadline passed"),
            new_intercepted,
            wrk_tallies: Tallies::of(&wrk.buckets, &marks),
            wrk,
            session_tallies: Tallies::of(&sessions.buckets, &marks),
            sessions,
        })
    }
}

/// The `open=N` of the daemon's log line with `message` (its drain lines).
fn logged_count(log: &str, message: &str) -> Option<u64> {
    let line = log.lines().find(|line| line.contains(message))?;
    let rest = &line[line.find("open=")? + "open=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_counts_are_read_from_the_daemons_log() {
        let log = "\
2026-12-03T00:00:00.000Z  INFO mirror_daemon::app: SIGTERM: draining
2026-12-03T00:00:00.001Z  INFO mirror_daemon::app: waiting for open connections open=11 deadline=20s
2026-12-03T00:00:20.001Z  WARN mirror_daemon::app: drain deadline passed: resetting the remaining connections open=9
";
        assert_eq!(logged_count(log, "waiting for open connections"), Some(11));
        assert_eq!(logged_count(log, "drain deadline passed"), Some(9));
        assert_eq!(
            logged_count("SIGTERM: draining\n", "drain deadline passed"),
            None
        );
    }
}
