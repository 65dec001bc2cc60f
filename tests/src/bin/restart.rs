//! `cargo xtask restart-bench`: what a restart of the daemon does to keep-alive clients. On a
//! simulated node with an nginx primary (1 KiB answers, keep-alive), wrk and Python `requests`
//! sessions in the pod send steady keep-alive load through the daemon; in the middle the bench
//! does what a DaemonSet's rolling update does on the node: SIGTERM to the daemon, wait for it
//! to exit (SIGKILL at the grace period), start the new daemon, wait until it is ready. It
//! counts each client's requests and failures before, during and after the restart, and how
//! long the old daemon took to exit; several daemons (`--daemon`, repeated) run interleaved,
//! to compare them. It prints a markdown report and writes it to
//! `target/bench/restart-<date>.md`.
//!
//! Runs as root (namespaces, BPF). Needs wrk, nginx and taskset (Debian packages; `cargo
//! xtask restart-bench` installs them) and the test venv with `requests` (`cargo xtask
//! setup`). Exit codes: 0 done, 2 could not run.

#[path = "../bench/load.rs"]
#[allow(
    dead_code,
    reason = "the bench's module: this bench uses wrk_version alone"
)]
mod load;
#[path = "../bench/nginx.rs"]
#[allow(
    dead_code,
    reason = "the bench's module: this bench uses its primary alone"
)]
mod nginx;
#[path = "../bench/procstat.rs"]
#[allow(
    dead_code,
    reason = "the bench's module: nginx's readiness and the load average"
)]
mod procstat;
#[path = "../restart/mod.rs"]
mod restart;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mirror_tests::command;
use mirror_tests::environment::{daemon_binary, require_namespaces, workspace};
use mirror_tests::scratch::ScratchDir;

use restart::bed::{Bed, Settings};
use restart::report::{self, Measured};
use restart::sessions;

/// The deployed `shutdown.drain_timeout` (deploy/20-configmap.yaml) and
/// `terminationGracePeriodSeconds` (deploy/30-daemonset.yaml); a test below holds them to the
/// manifests.
const DEPLOYED_DRAIN_TIMEOUT: &str = "20s";
const DEPLOYED_GRACE_SECONDS: u64 = 30;

const USAGE: &str = "\
usage: restart [options]
  --daemon PATH         a daemon to restart; repeat to compare several, run interleaved
                        (default: $MIRROR_DAEMON_BIN, else <workspace>/target/release/mirror-daemon)
  --upgrade-to PATH     the daemon started after each SIGTERM, to model an upgrade
                        (default: the same binary as the one stopped)
  --reps N              repetitions (default 3)
  --before S            counted seconds of load before the SIGTERM (default 3)
  --after S             counted seconds of load after the new daemon is ready (default 3)
  --warmup S            load before counting starts (default 1)
  --drain DURATION      the stopped daemon's shutdown.drain_timeout (default 20s, as deployed)
  --grace S             terminationGracePeriodSeconds: SIGKILL after it (default 30, as deployed)
  --wrk-connections N   wrk's keep-alive connections (default 8)
  --wrk-pause-ms MS     pause between an answer and the connection's next request
                        (default 1; 0: wrk's closed loop, a request always in flight)
  --sessions N          Python requests sessions, one connection each (default 3)
  --no-pin              do not pin the clients (CPU 0) and the primary (CPU 1)
  --out DIR             where restart-<date>.md goes (default <workspace>/target/bench)";

struct Options {
    daemons: Vec<PathBuf>,
    upgrade_to: Option<PathBuf>,
    reps: usize,
    out: PathBuf,
    settings: Settings,
}

fn seconds(value: &str) -> Result<Duration> {
    let number: f64 = value
        .trim_end_matches('s')
        .parse()
        .with_context(|| format!("not a number of seconds: {value}"))?;
    Duration::try_from_secs_f64(number).with_context(|| format!("not a duration: {value}"))
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        daemons: Vec::new(),
        upgrade_to: None,
        reps: 3,
        out: workspace().join("target/bench"),
        settings: Settings {
            warmup: Duration::from_secs(1),
            before: Duration::from_secs(3),
            after: Duration::from_secs(3),
            drain: DEPLOYED_DRAIN_TIMEOUT.into(),
            grace: Duration::from_secs(DEPLOYED_GRACE_SECONDS),
            wrk_connections: 8,
            wrk_pause: Duration::from_millis(1),
            sessions: 3,
            pin: true,
            // Set by `run`, where it is made.
            work_dir: PathBuf::new(),
        },
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        let settings = &mut options.settings;
        match arg.as_str() {
            "--daemon" => options.daemons.push(PathBuf::from(value()?)),
            "--upgrade-to" => options.upgrade_to = Some(PathBuf::from(value()?)),
            "--reps" => options.reps = value()?.parse()?,
            "--before" => settings.before = seconds(&value()?)?,
            "--after" => settings.after = seconds(&value()?)?,
            "--warmup" => settings.warmup = seconds(&value()?)?,
            "--drain" => settings.drain = value()?,
            "--grace" => settings.grace = seconds(&value()?)?,
            "--wrk-connections" => settings.wrk_connections = value()?.parse()?,
            "--wrk-pause-ms" => settings.wrk_pause = Duration::from_millis(value()?.parse()?),
            "--sessions" => settings.sessions = value()?.parse()?,
            "--no-pin" => settings.pin = false,
            "--out" => options.out = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if options.daemons.is_empty() {
        options.daemons.push(daemon_binary());
    }
    if options.reps == 0 || options.settings.wrk_connections == 0 || options.settings.sessions == 0
    {
        bail!(
            "nothing to run: --reps, --wrk-connections and --sessions must be at least 1\n{USAGE}"
        );
    }
    Ok(options)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("restart-bench: could not run: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Why the bench cannot run here, if it cannot.
fn check_environment(options: &Options) -> Result<()> {
    if !require_namespaces("restart-bench") {
        bail!("the restart bench needs root, network namespaces and BPF (see above)");
    }
    for daemon in options.daemons.iter().chain(&options.upgrade_to) {
        if !daemon.is_file() {
            bail!(
                "no daemon binary at {} (build it with `cargo xtask build`, or name one with --daemon)",
                daemon.display()
            );
        }
    }
    for tool in ["wrk", "nginx", "taskset"] {
        if command::run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            bail!("{tool} is missing (`cargo xtask restart-bench` installs wrk and nginx)");
        }
    }
    if let Err(reason) = sessions::requests_version() {
        bail!("{reason}");
    }
    Ok(())
}

/// A private copy of `binary` in `dir`: a rebuild during the bench must not change what runs.
fn private_copy(binary: &Path, dir: &Path, index: usize) -> Result<PathBuf> {
    let copy = dir.join(format!("mirror-daemon-{index}"));
    std::fs::copy(binary, &copy).with_context(|| format!("cannot copy {}", binary.display()))?;
    Ok(copy)
}

fn run() -> Result<()> {
    let options = parse_args(std::env::args().skip(1))?;
    check_environment(&options)?;
    // Removed on every way out, errors included (and by the next run's sweep if this one is
    // killed); dropped after the bed, whose servers keep their files in it.
    let work_dir = ScratchDir::for_process("restart")?;
    let mut settings = options.settings.clone();
    settings.work_dir = work_dir.path().to_path_buf();
    let settings = &settings;
    let mut daemons = Vec::new();
    for (index, daemon) in options.daemons.iter().enumerate() {
        daemons.push((
            label(daemon),
            private_copy(daemon, &settings.work_dir, index)?,
        ));
    }
    let upgrade = match &options.upgrade_to {
        Some(binary) => Some((
            label(binary),
            private_copy(binary, &settings.work_dir, daemons.len())?,
        )),
        None => None,
    };
    let started = Instant::now();
    let environment = environment(&options, &daemons, upgrade.as_ref());
    eprintln!(
        "restart-bench: {}",
        environment.replace('\n', "\nrestart-bench: ")
    );

    let bed = Bed::build(settings)?;
    let mut runs = Vec::new();
    for rep in 1..=options.reps {
        for (name, binary) in &daemons {
            let new = upgrade.as_ref().map_or(binary, |(_, path)| path);
            let restart = bed
                .restart(binary, new, settings)
                .with_context(|| format!("repetition {rep}, daemon {name}"))?;
            eprintln!(
                "restart-bench: rep {rep} {name}: exited {:.2} s after SIGTERM; failed requests \
                 during the restart: wrk {}, Python {}",
                restart.marks.exit_after().as_secs_f64(),
                restart
                    .wrk_tallies
                    .get(restart::timeline::Phase::During)
                    .not_ok(),
                restart
                    .session_tallies
                    .get(restart::timeline::Phase::During)
                    .not_ok(),
            );
            runs.push(Measured {
                daemon: name.clone(),
                rep,
                restart,
            });
        }
    }
    drop(bed);
    drop(work_dir);

    let mut out = String::from("## Restart bench results\n\n");
    let _ = writeln!(out, "{environment}\n");
    out.push_str(&report::tables(&runs));
    let _ = writeln!(out, "\n### Method\n");
    out.push_str(&method(&options));
    let _ = writeln!(
        out,
        "- {} restarts in {:.0} s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{out}");
    std::fs::create_dir_all(&options.out)?;
    let path = options.out.join(format!(
        "restart-{}.md",
        command::run("date", &["-u", "+%Y-%m-%dT%H%M%SZ"])?.trim()
    ));
    std::fs::write(&path, &out).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("restart-bench: written to {}", path.display());
    Ok(())
}

/// A daemon's name in the report: the commit of the work tree it was built in (`+changes`
/// when that tree differs from it), else its path.
fn label(binary: &Path) -> String {
    let Some(tree) = binary.ancestors().find(|dir| dir.join(".git").exists()) else {
        return binary.display().to_string();
    };
    let git = |args: &[&str]| -> String {
        let mut full = vec!["-C", tree.to_str().unwrap_or(".")];
        full.extend(args);
        command::run("git", &full)
            .map(|out| out.trim().to_owned())
            .unwrap_or_default()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    if commit.is_empty() {
        return binary.display().to_string();
    }
    let changed = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    format!("{commit}{}", if changed { "+changes" } else { "" })
}

fn environment(
    options: &Options,
    daemons: &[(String, PathBuf)],
    upgrade: Option<&(String, PathBuf)>,
) -> String {
    let line = |program: &str, args: &[&str]| {
        command::run(program, args)
            .map(|out| out.lines().next().unwrap_or_default().trim().to_owned())
            .unwrap_or_default()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "- date: {}; kernel {}; {} cores; load average {:.2}",
        line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        line("uname", &["-r"]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        procstat::loadavg()
    );
    for ((name, copy), original) in daemons.iter().zip(&options.daemons) {
        let _ = writeln!(
            out,
            "- daemon {name}: {} ({})",
            line(&copy.display().to_string(), &["--version"]),
            original.display()
        );
    }
    if let (Some((name, _)), Some(original)) = (upgrade, &options.upgrade_to) {
        let _ = writeln!(out, "- upgraded to {name} ({})", original.display());
    }
    let _ = write!(
        out,
        "- nginx {}; {}; {}",
        nginx::version(),
        load::wrk_version(),
        sessions::requests_version().unwrap_or_else(|reason| reason)
    );
    out
}

fn method(options: &Options) -> String {
    let s = &options.settings;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "- the node: a pod, the primary (nginx, 1 worker, `return 200` with a 1 KiB body, \
         keep-alive without limit), the daemon intercepting the primary's port, no mirror rule, \
         `shutdown.drain_timeout = \"{}\"`",
        s.drain
    );
    let _ = writeln!(
        out,
        "- clients in the pod: wrk with {} keep-alive connections, {}; {} Python `requests` \
         sessions, one thread and one connection each, in a loop without pause (requests' \
         defaults: no retries)",
        s.wrk_connections,
        if s.wrk_pause.is_zero() {
            "closed loop (a request always in flight)".to_owned()
        } else {
            format!(
                "{} ms between an answer and the connection's next request",
                s.wrk_pause.as_millis()
            )
        },
        s.sessions
    );
    let _ = writeln!(
        out,
        "- each restart: the old daemon starts, the clients connect and warm up for {:?}; {:?} of \
         load; SIGTERM; wait for the old daemon to exit (SIGKILL after {:?}, the grace period); \
         start the new daemon ({}) and wait until `/readyz` answers 200; {:?} of load; the \
         clients get 1 s more to finish what they began, then stop",
        s.warmup,
        s.before,
        s.grace,
        if options.upgrade_to.is_some() {
            "the --upgrade-to binary"
        } else {
            "the same binary"
        },
        s.after
    );
    let _ = writeln!(
        out,
        "- pinning: {}",
        if s.pin {
            "clients on CPU 0, the primary on CPU 1, the daemon not pinned"
        } else {
            "none"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        parse_args(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn defaults_are_the_deployed_drain_and_grace_period() -> Result<()> {
        let options = parse(&[])?;
        assert_eq!(options.settings.drain, "20s");
        assert_eq!(options.settings.grace, Duration::from_secs(30));
        assert_eq!(options.reps, 3);
        assert_eq!(options.daemons, [daemon_binary()]);
        Ok(())
    }

    #[test]
    fn the_defaults_are_what_the_manifests_deploy() -> Result<()> {
        let read = |name: &str| std::fs::read_to_string(workspace().join("deploy").join(name));
        let config = read("20-configmap.yaml")?;
        let drain = format!("drain_timeout = {DEPLOYED_DRAIN_TIMEOUT:?}");
        assert!(
            config.lines().any(|line| line.trim() == drain),
            "deploy/20-configmap.yaml no longer has `{drain}`: update the bench's default"
        );
        let daemonset = read("30-daemonset.yaml")?;
        let grace = format!("terminationGracePeriodSeconds: {DEPLOYED_GRACE_SECONDS}");
        assert!(
            daemonset.lines().any(|line| line.trim() == grace),
            "deploy/30-daemonset.yaml no longer has `{grace}`: update the bench's default"
        );
        Ok(())
    }

    #[test]
    fn several_daemons_and_an_upgrade_are_taken_in_order() -> Result<()> {
        let options = parse(&[
            "--daemon",
            "/a",
            "--daemon",
            "/b",
            "--upgrade-to",
            "/c",
            "--wrk-pause-ms",
            "0",
            "--grace",
            "5",
            "--before",
            "0.5",
        ])?;
        assert_eq!(options.daemons, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(options.upgrade_to, Some(PathBuf::from("/c")));
        assert!(options.settings.wrk_pause.is_zero());
        assert_eq!(options.settings.grace, Duration::from_secs(5));
        assert_eq!(options.settings.before, Duration::from_millis(500));
        assert!(parse(&["--reps", "0"]).is_err());
        assert!(parse(&["--grace"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--before", "-1"]).is_err());
        Ok(())
    }
}
