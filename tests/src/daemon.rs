//! Running `mirror-daemon` inside the node namespace: its config file, its process (killed on
//! drop), its captured log (printed when the test fails) and its admin endpoint.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::Signal;

use crate::background::{Background, Output};
use crate::http;
use crate::metrics::{Counters, Metrics};
use crate::netns::Netns;
use crate::tcp::{self, ConnectOptions};

/// The admin address the daemon listens on by default (inside the node namespace).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15090";
/// How long the daemon may take to answer `/readyz` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the daemon may take to exit after SIGTERM (its drain timeout plus cleanup).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Env var that makes the harness echo the daemon's log live, line by line.
pub const LIVE_LOG_ENV: &str = "MIRROR_TEST_DAEMON_LOG";

/// One `[[interception.rules]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterceptRule {
    pub cidr: String,
    /// Empty means every port.
    pub ports: Vec<u16>,
}

/// One `[[mirror.targets]]` entry: where copies go. Unset options keep the daemon's defaults
/// (see `examples/mirror.toml`).
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowTarget {
    pub name: String,
    pub address: String,
    pub percent: Option<f64>,
    /// `"random"` or `"consistent"`.
    pub sampling: Option<String>,
    pub host_suffix: Option<String>,
    pub add_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    pub methods: Vec<String>,
    pub max_body_bytes: Option<u64>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_concurrent: Option<usize>,
    pub queue_size: Option<usize>,
    pub max_copies_per_second: Option<f64>,
    pub burst: Option<u32>,
}

impl ShadowTarget {
    /// A target named `name` at `address` with every option at its default.
    pub fn new(name: &str, address: SocketAddr) -> ShadowTarget {
        ShadowTarget {
            name: name.to_owned(),
            address: address.to_string(),
            percent: None,
            sampling: None,
            host_suffix: None,
            add_headers: Vec::new(),
            remove_headers: Vec::new(),
            methods: Vec::new(),
            max_body_bytes: None,
            connect_timeout: None,
            request_timeout: None,
            max_concurrent: None,
            queue_size: None,
            max_copies_per_second: None,
            burst: None,
        }
    }

    /// Share of requests copied, 0 to 100.
    pub fn percent(mut self, percent: f64) -> ShadowTarget {
        self.percent = Some(percent);
        self
    }

    /// Consistent sampling (from the trace id of `traceparent`, else `x-request-id`).
    pub fn consistent(mut self) -> ShadowTarget {
        self.sampling = Some("consistent".into());
        self
    }

    /// A header set on every copy.
    pub fn add_header(mut self, name: &str, value: &str) -> ShadowTarget {
        self.add_headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A header removed from every copy.
    pub fn remove_header(mut self, name: &str) -> ShadowTarget {
        self.remove_headers.push(name.to_owned());
        self
    }

    pub fn max_body_bytes(mut self, bytes: u64) -> ShadowTarget {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// Humantime, e.g. `"1s"`.
    pub fn connect_timeout(mut self, timeout: &str) -> ShadowTarget {
        self.connect_timeout = Some(timeout.to_owned());
        self
    }

    /// Humantime, e.g. `"2s"`.
    pub fn request_timeout(mut self, timeout: &str) -> ShadowTarget {
        self.request_timeout = Some(timeout.to_owned());
        self
    }

    /// Copies in flight at once; 1 keeps them in order on one connection.
    pub fn max_concurrent(mut self, copies: usize) -> ShadowTarget {
        self.max_concurrent = Some(copies);
        self
    }

    /// At most `per_second` copies per second, `burst` at once.
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> ShadowTarget {
        self.max_copies_per_second = Some(per_second);
        self.burst = Some(burst);
        self
    }

    /// The methods that may be copied (all when never called).
    pub fn methods(mut self, methods: &[&str]) -> ShadowTarget {
        self.methods = methods.iter().map(|method| (*method).to_owned()).collect();
        self
    }

    fn to_toml(&self, text: &mut String) {
        let _ = writeln!(text, "\n[[mirror.targets]]");
        let _ = writeln!(text, "name = {}", toml_string(&self.name));
        let _ = writeln!(text, "address = {}", toml_string(&self.address));
        if let Some(percent) = self.percent {
            let _ = writeln!(text, "percent = {percent:?}");
        }
        if let Some(rate) = self.max_copies_per_second {
            let _ = writeln!(text, "max_copies_per_second = {rate:?}");
        }
        for (key, value) in [
            ("sampling", &self.sampling),
            ("host_suffix", &self.host_suffix),
            ("connect_timeout", &self.connect_timeout),
            ("request_timeout", &self.request_timeout),
        ] {
            if let Some(value) = value {
                let _ = writeln!(text, "{key} = {}", toml_string(value));
            }
        }
        for (key, value) in [
            ("max_body_bytes", self.max_body_bytes),
            ("max_concurrent", self.max_concurrent.map(|n| n as u64)),
            ("queue_size", self.queue_size.map(|n| n as u64)),
            ("burst", self.burst.map(u64::from)),
        ] {
            if let Some(value) = value {
                let _ = writeln!(text, "{key} = {value}");
            }
        }
        if !self.add_headers.is_empty() {
            let fields: Vec<String> = self
                .add_headers
                .iter()
                .map(|(name, value)| format!("{} = {}", toml_string(name), toml_string(value)))
                .collect();
            let _ = writeln!(text, "add_headers = {{ {} }}", fields.join(", "));
        }
        for (key, list) in [
            ("remove_headers", &self.remove_headers),
            ("methods", &self.methods),
        ] {
            if !list.is_empty() {
                let quoted: Vec<String> = list.iter().map(|item| toml_string(item)).collect();
                let _ = writeln!(text, "{key} = [{}]", quoted.join(", "));
            }
        }
    }
}

/// One `[[mirror.rules]]` entry: which requests are copied to which targets.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MirrorRule {
    pub name: Option<String>,
    pub targets: Vec<String>,
    /// Conditions of `[mirror.rules.match]`; unset ones are left out.
    pub destination: Option<String>,
    pub ports: Vec<u16>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub methods: Vec<String>,
    /// `[mirror.rules.compare]` with this `percent`; none: answers are not compared.
    pub compare_percent: Option<u8>,
}

impl MirrorRule {
    /// A rule copying every request to `targets`.
    pub fn to(targets: &[&str]) -> MirrorRule {
        MirrorRule {
            targets: targets.iter().map(|name| (*name).to_owned()).collect(),
            ..MirrorRule::default()
        }
    }

    pub fn path_prefix(mut self, prefix: &str) -> MirrorRule {
        self.path_prefix = Some(prefix.to_owned());
        self
    }

    pub fn destination(mut self, cidr: &str) -> MirrorRule {
        self.destination = Some(cidr.to_owned());
        self
    }

    /// Compares the answers of `percent` % of the rule's copies with the primary's.
    pub fn compare(mut self, percent: u8) -> MirrorRule {
        self.compare_percent = Some(percent);
        self
    }

    fn to_toml(&self, text: &mut String) {
        let _ = writeln!(text, "\n[[mirror.rules]]");
        if let Some(name) = &self.name {
            let _ = writeln!(text, "name = {}", toml_string(name));
        }
        let targets: Vec<String> = self.targets.iter().map(|t| toml_string(t)).collect();
        let _ = writeln!(text, "targets = [{}]", targets.join(", "));
        let _ = writeln!(text, "[mirror.rules.match]");
        for (key, value) in [
            ("destination", &self.destination),
            ("host", &self.host),
            ("path_prefix", &self.path_prefix),
        ] {
            if let Some(value) = value {
                let _ = writeln!(text, "{key} = {}", toml_string(value));
            }
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            let _ = writeln!(text, "ports = [{}]", ports.join(", "));
        }
        if !self.methods.is_empty() {
            let methods: Vec<String> = self.methods.iter().map(|m| toml_string(m)).collect();
            let _ = writeln!(text, "methods = [{}]", methods.join(", "));
        }
        if let Some(percent) = self.compare_percent {
            let _ = writeln!(text, "[mirror.rules.compare]\npercent = {percent}");
        }
    }
}

/// The daemon's config file, as the tests write it. Unset options keep the daemon's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    pub interfaces: Option<Vec<String>>,
    pub watchdog_timeout: Option<String>,
    pub rules: Vec<InterceptRule>,
    pub connect_timeout: Option<String>,
    /// `relay.workers` (`None`: the daemon's default, one per CPU).
    pub workers: Option<usize>,
    pub drain_timeout: Option<String>,
    pub admin: SocketAddr,
    pub shadow_targets: Vec<ShadowTarget>,
    pub mirror_rules: Vec<MirrorRule>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            interfaces: None,
            watchdog_timeout: None,
            rules: Vec::new(),
            connect_timeout: None,
            workers: None,
            drain_timeout: None,
            admin: DEFAULT_ADMIN.parse().unwrap_or_else(|_| unreachable!()),
            shadow_targets: Vec::new(),
            mirror_rules: Vec::new(),
        }
    }
}

impl DaemonConfig {
    /// Intercepts the primary's subnets (10.96.0.0/24, fd00:96::/64) on `ports`.
    pub fn intercepting_primary(ports: &[u16]) -> DaemonConfig {
        DaemonConfig::default()
            .intercept("10.96.0.0/24", ports)
            .intercept("fd00:96::/64", ports)
    }

    /// Adds an interception rule.
    pub fn intercept(mut self, cidr: &str, ports: &[u16]) -> DaemonConfig {
        self.rules.push(InterceptRule {
            cidr: cidr.to_owned(),
            ports: ports.to_vec(),
        });
        self
    }

    /// Sets the interface globs.
    pub fn interfaces(mut self, globs: &[&str]) -> DaemonConfig {
        self.interfaces = Some(globs.iter().map(|glob| (*glob).to_owned()).collect());
        self
    }

    /// Sets the watchdog timeout (humantime, `"0s"` disables).
    pub fn watchdog_timeout(mut self, timeout: &str) -> DaemonConfig {
        self.watchdog_timeout = Some(timeout.to_owned());
        self
    }

    /// Sets `relay.workers`: how many worker threads carry the connections.
    pub fn workers(mut self, workers: usize) -> DaemonConfig {
        self.workers = Some(workers);
        self
    }

    /// Sets the drain timeout used on SIGTERM.
    pub fn drain_timeout(mut self, timeout: &str) -> DaemonConfig {
        self.drain_timeout = Some(timeout.to_owned());
        self
    }

    /// Adds a shadow target.
    pub fn shadow_target(mut self, target: ShadowTarget) -> DaemonConfig {
        self.shadow_targets.push(target);
        self
    }

    /// Adds a mirror rule.
    pub fn mirror_rule(mut self, rule: MirrorRule) -> DaemonConfig {
        self.mirror_rules.push(rule);
        self
    }

    /// Adds `target` and a rule copying every request of every intercepted connection to it.
    pub fn mirror_all_to(self, target: ShadowTarget) -> DaemonConfig {
        let rule = MirrorRule::to(&[target.name.as_str()]);
        self.shadow_target(target).mirror_rule(rule)
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut text = String::from("[interception]\n");
        if let Some(interfaces) = &self.interfaces {
            let quoted: Vec<String> = interfaces.iter().map(|glob| toml_string(glob)).collect();
            let _ = writeln!(text, "interfaces = [{}]", quoted.join(", "));
        }
        if let Some(timeout) = &self.watchdog_timeout {
            let _ = writeln!(text, "watchdog_timeout = {}", toml_string(timeout));
        }
        for rule in &self.rules {
            let _ = writeln!(text, "\n[[interception.rules]]");
            let _ = writeln!(text, "cidr = {}", toml_string(&rule.cidr));
            if !rule.ports.is_empty() {
                let ports: Vec<String> = rule.ports.iter().map(u16::to_string).collect();
                let _ = writeln!(text, "ports = [{}]", ports.join(", "));
            }
        }
        text.push_str("\n[relay]\n");
        if let Some(timeout) = &self.connect_timeout {
            let _ = writeln!(text, "connect_timeout = {}", toml_string(timeout));
        }
        if let Some(workers) = self.workers {
            let _ = writeln!(text, "workers = {workers}");
        }
        text.push_str("\n[shutdown]\n");
        if let Some(timeout) = &self.drain_timeout {
            let _ = writeln!(text, "drain_timeout = {}", toml_string(timeout));
        }
        let _ = writeln!(
            text,
            "\n[admin]\naddress = {}",
            toml_string(&self.admin.to_string())
        );
        for target in &self.shadow_targets {
            target.to_toml(&mut text);
        }
        for rule in &self.mirror_rules {
            rule.to_toml(&mut text);
        }
        text
    }
}

/// A TOML basic string (the values here are plain ASCII; quotes and backslashes are escaped).
fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running (or exited) daemon. Dropping it kills the process if it still runs and prints the
/// daemon's log, which the test runner shows only when the test fails.
pub struct Daemon {
    process: Background,
    netns: Netns,
    admin: SocketAddr,
    /// The program, for its other commands.
    binary: PathBuf,
    /// The `--config` file (`None`: the embedded default).
    config_path: Option<PathBuf>,
    /// A directory the harness made for the config file, removed on drop.
    config_dir: Option<PathBuf>,
    print_log_on_drop: bool,
}

/// The daemon's output kept as its log, echoed live when [`LIVE_LOG_ENV`] is set.
fn kept_log() -> Output {
    Output::Kept {
        echo: std::env::var_os(LIVE_LOG_ENV).is_some(),
    }
}

impl Daemon {
    /// Starts the daemon in `netns` with `config` and waits until `/readyz` answers 200.
    pub fn start(binary: &Path, netns: &Netns, config: &DaemonConfig) -> Result<Daemon> {
        let mut daemon = Daemon::spawn(binary, netns, Some(config))?;
        daemon.wait_ready(READY_TIMEOUT)?;
        Ok(daemon)
    }

    /// Starts the daemon in `netns` with the config file text `toml`, whose admin endpoint is
    /// `admin`, and waits until `/readyz` answers 200.
    pub fn start_toml(
        binary: &Path,
        netns: &Netns,
        toml: &str,
        admin: SocketAddr,
    ) -> Result<Daemon> {
        let mut daemon = Daemon::spawn_toml(binary, netns, Some((toml, admin)))?;
        daemon.wait_ready(READY_TIMEOUT)?;
        Ok(daemon)
    }

    /// Starts the daemon in `netns` without `--config` (its embedded default) and waits until
    /// ready; the admin endpoint is then expected at [`DEFAULT_ADMIN`].
    pub fn start_with_default_config(binary: &Path, netns: &Netns) -> Result<Daemon> {
        let mut daemon = Daemon::spawn(binary, netns, None)?;
        daemon.wait_ready(READY_TIMEOUT)?;
        Ok(daemon)
    }

    /// Starts the daemon in `netns` with `--config path` (a file the caller owns and may rewrite
    /// while the daemon runs), whose admin endpoint is `admin`, and waits until ready.
    pub fn start_with_config_file(
        binary: &Path,
        netns: &Netns,
        path: &Path,
        admin: SocketAddr,
    ) -> Result<Daemon> {
        let mut daemon = Daemon::spawn_with_config_file(binary, netns, path, admin)?;
        daemon.wait_ready(READY_TIMEOUT)?;
        Ok(daemon)
    }

    /// Starts the daemon in `netns` with `config`, nobody reading its log (stdout and stderr
    /// are pipes already closed at the other end: a log collector that went away), and waits
    /// until `/readyz` answers 200.
    pub fn start_with_log_unread(
        binary: &Path,
        netns: &Netns,
        config: &DaemonConfig,
    ) -> Result<Daemon> {
        let toml = config.to_toml();
        let mut daemon =
            Daemon::spawn_config(binary, netns, Some((&toml, config.admin)), Output::Unread)?;
        daemon.wait_ready(READY_TIMEOUT)?;
        Ok(daemon)
    }

    /// Starts the daemon without waiting for readiness.
    pub fn spawn(binary: &Path, netns: &Netns, config: Option<&DaemonConfig>) -> Result<Daemon> {
        let text = config.map(|config| (config.to_toml(), config.admin));
        Daemon::spawn_toml(
            binary,
            netns,
            text.as_ref().map(|(toml, admin)| (toml.as_str(), *admin)),
        )
    }

    /// Starts the daemon with a config file's text and its admin address (`None`: the embedded
    /// default) without waiting for readiness.
    pub fn spawn_toml(
        binary: &Path,
        netns: &Netns,
        config: Option<(&str, SocketAddr)>,
    ) -> Result<Daemon> {
        Daemon::spawn_config(binary, netns, config, kept_log())
    }

    fn spawn_config(
        binary: &Path,
        netns: &Netns,
        config: Option<(&str, SocketAddr)>,
        output: Output,
    ) -> Result<Daemon> {
        let Some((toml, admin)) = config else {
            return Daemon::spawn_process(binary, netns, None, DEFAULT_ADMIN.parse()?, output);
        };
        let dir = std::env::temp_dir().join(format!(
            "{}-daemon-{}",
            netns.name(),
            crate::names::next_sequence()
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("config.toml");
        let spawned = std::fs::write(&path, toml)
            .map_err(anyhow::Error::from)
            .and_then(|()| Daemon::spawn_process(binary, netns, Some(path), admin, output));
        match spawned {
            Ok(mut daemon) => {
                daemon.config_dir = Some(dir);
                Ok(daemon)
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    /// Starts the daemon with `--config path` without waiting for readiness; see
    /// [`Daemon::start_with_config_file`].
    pub fn spawn_with_config_file(
        binary: &Path,
        netns: &Netns,
        path: &Path,
        admin: SocketAddr,
    ) -> Result<Daemon> {
        Daemon::spawn_process(binary, netns, Some(path.to_path_buf()), admin, kept_log())
    }

    fn spawn_process(
        binary: &Path,
        netns: &Netns,
        config_path: Option<PathBuf>,
        admin: SocketAddr,
        output: Output,
    ) -> Result<Daemon> {
        let mut args: Vec<String> = vec!["run".into()];
        if let Some(path) = &config_path {
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        let mut process = Background::spawn_with(
            "mirror-daemon",
            netns,
            &binary.display().to_string(),
            &args,
            output,
        )?;
        // Drop prints the log with the config, below.
        process.print_log_on_panic(false);
        Ok(Daemon {
            process,
            netns: netns.clone(),
            admin,
            binary: binary.to_path_buf(),
            config_path,
            config_dir: None,
            print_log_on_drop: true,
        })
    }

    /// What `mirror-daemon comparisons --admin <its admin address>` prints, run in its namespace:
    /// the comparison report for a person.
    pub fn comparisons_report(&self) -> Result<String> {
        let admin = self.admin.to_string();
        let output = self.netns.exec_output(
            &self.binary.display().to_string(),
            &["comparisons", "--admin", &admin],
            None,
            Duration::from_secs(10),
        )?;
        ensure!(
            output.success,
            "mirror-daemon comparisons --admin {admin} failed: {}",
            output.stderr
        );
        Ok(output.stdout)
    }

    /// The `--config` file the daemon was started with (`None`: the embedded default).
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// The admin endpoint's address (inside the daemon's namespace).
    pub fn admin_address(&self) -> SocketAddr {
        self.admin
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything the daemon printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Whether the process still runs (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        self.process.exit_status()
    }

    /// Polls `/readyz` until it answers 200; fails early if the daemon exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll_exit() {
                bail!(
                    "mirror-daemon exited ({status}) before it was ready; log:\n{}",
                    self.log()
                );
            }
            let last = match self.admin_get("/readyz") {
                Ok(response) if response.status == 200 => return Ok(()),
                Ok(response) => format!("/readyz answered {}", response.status),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "mirror-daemon not ready within {timeout:?} ({last}); log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the admin endpoint, from a socket in the node namespace.
    pub fn admin_get(&self, path: &str) -> Result<http::Response> {
        let admin = self.admin;
        let options = ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            ..ConnectOptions::default()
        };
        let mut stream = self.netns.run(|| tcp::connect(None, admin, &options))??;
        http::get(&mut stream, &admin.to_string(), path)
    }

    /// Scrapes `/metrics`.
    pub fn metrics(&self) -> Result<Metrics> {
        let response = self.admin_get("/metrics")?;
        if response.status != 200 {
            bail!("/metrics answered {}: {}", response.status, response.text());
        }
        Metrics::parse(&response.text())
    }

    /// `/comparisons`, the shadow verdicts' report, as JSON.
    pub fn comparisons(&self) -> Result<serde_json::Value> {
        let response = self.admin_get("/comparisons")?;
        if response.status != 200 {
            bail!(
                "/comparisons answered {}: {}",
                response.status,
                response.text()
            );
        }
        serde_json::from_str(&response.text()).context("/comparisons is not JSON")
    }

    /// The comparison of `rule` and `target` in `/comparisons`, once it holds at least `pairs`
    /// verdicts (waiting up to `timeout`).
    pub fn comparison(
        &self,
        rule: &str,
        target: &str,
        pairs: u64,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        crate::wait::until(
            &format!("{pairs} verdicts for rule {rule}"),
            timeout,
            || {
                let report = self.comparisons()?;
                let comparison = report["comparisons"]
                    .as_array()
                    .and_then(|all| {
                        all.iter()
                            .find(|c| c["rule"] == rule && c["target"] == target)
                    })
                    .cloned()
                    .with_context(|| format!("no comparison for rule {rule}: {report}"))?;
                let seen = comparison["pairs"].as_u64().unwrap_or_default();
                Ok(if seen >= pairs {
                    Ok(comparison)
                } else {
                    Err(seen)
                })
            },
        )
    }

    /// `mirror_intercepted_connections_total` now.
    pub fn intercepted(&self) -> Result<u64> {
        self.metrics()?.intercepted()
    }

    /// The connection and kernel counters now.
    pub fn counters(&self) -> Result<Counters> {
        Counters::from_metrics(&self.metrics()?)
    }

    /// Whether drop prints the daemon's log (default: yes; the test runner shows it only for a
    /// failing test, since it captures a passing test's output).
    pub fn print_log_on_drop(&mut self, print: bool) {
        self.print_log_on_drop = print;
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.process.signal(signal)
    }

    /// SIGTERM, then waits (up to [`EXIT_TIMEOUT`]) for the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.poll_exit() {
            bail!("mirror-daemon had already exited ({status})");
        }
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.poll_exit() {
            bail!("mirror-daemon had already exited ({status})");
        }
        self.signal(Signal::SIGKILL)?;
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.process.wait_exit(timeout)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(error) = self.process.kill() {
            eprintln!("mirror-tests: {error:#}");
        }
        if self.print_log_on_drop || thread::panicking() {
            let config = match &self.config_path {
                Some(path) => std::fs::read_to_string(path)
                    .unwrap_or_else(|error| format!("({}: {error})\n", path.display())),
                None => "(embedded default)\n".into(),
            };
            eprintln!(
                "---- mirror-daemon config ----\n{config}---- mirror-daemon log (pid {}, {}) ----\n\
                 {}---- end of mirror-daemon log ----",
                self.pid(),
                self.poll_exit()
                    .map_or_else(|| "still running".into(), |status| status.to_string()),
                self.log()
            );
        }
        if let Some(dir) = self.config_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn config_renders_rules_ports_and_admin() {
        let config = DaemonConfig::intercepting_primary(&[8080])
            .intercept("10.0.0.0/8", &[])
            .interfaces(&["cali*", "lxc*"])
            .watchdog_timeout("2s");
        let toml = config.to_toml();
        assert!(
            toml.contains("interfaces = [\"cali*\", \"lxc*\"]"),
            "{toml}"
        );
        assert!(toml.contains("watchdog_timeout = \"2s\""), "{toml}");
        assert!(
            toml.contains("cidr = \"10.96.0.0/24\"\nports = [8080]"),
            "{toml}"
        );
        assert!(
            toml.contains("cidr = \"fd00:96::/64\"\nports = [8080]"),
            "{toml}"
        );
        assert!(toml.contains("cidr = \"10.0.0.0/8\"\n\n"), "{toml}");
        assert!(
            toml.contains("[admin]\naddress = \"127.0.0.1:15090\""),
            "{toml}"
        );
    }

    #[test]
    fn config_is_valid_toml_of_the_documented_shape() -> Result<()> {
        let config = DaemonConfig::intercepting_primary(&[8080, 80]).drain_timeout("3s");
        let value: toml::Table = toml::from_str(&config.to_toml())?;
        assert!(value["relay"].get("workers").is_none(), "{value}");
        let one_worker: toml::Table = toml::from_str(&config.clone().workers(1).to_toml())?;
        assert_eq!(one_worker["relay"]["workers"].as_integer(), Some(1));
        let rules = value["interception"]["rules"]
            .as_array()
            .context("rules is not an array")?;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1]["cidr"].as_str(), Some("fd00:96::/64"));
        assert_eq!(rules[0]["ports"].as_array().map(Vec::len), Some(2));
        assert_eq!(value["shutdown"]["drain_timeout"].as_str(), Some("3s"));
        assert_eq!(value["admin"]["address"].as_str(), Some(DEFAULT_ADMIN));
        Ok(())
    }

    #[test]
    fn mirror_targets_and_rules_render_as_the_documented_tables() -> Result<()> {
        let shadow: SocketAddr = "172.20.0.10:8080".parse()?;
        let config = DaemonConfig::intercepting_primary(&[8080])
            .mirror_all_to(
                ShadowTarget::new("staging", shadow)
                    .percent(50.0)
                    .consistent()
                    .add_header("x-shadow", "true")
                    .remove_header("authorization")
                    .max_body_bytes(1 << 20)
                    .connect_timeout("1s")
                    .max_concurrent(1),
            )
            .mirror_rule(
                MirrorRule::to(&["staging"])
                    .path_prefix("/api/")
                    .compare(100),
            );
        let value: toml::Table = toml::from_str(&config.to_toml())?;
        let target = &value["mirror"]["targets"][0];
        assert_eq!(target["address"].as_str(), Some("172.20.0.10:8080"));
        assert_eq!(target["percent"].as_float(), Some(50.0));
        assert_eq!(target["sampling"].as_str(), Some("consistent"));
        assert_eq!(target["add_headers"]["x-shadow"].as_str(), Some("true"));
        assert_eq!(target["remove_headers"][0].as_str(), Some("authorization"));
        assert_eq!(target["max_body_bytes"].as_integer(), Some(1 << 20));
        assert_eq!(target["max_concurrent"].as_integer(), Some(1));
        let rules = value["mirror"]["rules"]
            .as_array()
            .context("rules is not an array")?;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0]["targets"][0].as_str(), Some("staging"));
        assert!(rules[0]["match"]
            .as_table()
            .is_some_and(toml::Table::is_empty));
        assert_eq!(rules[1]["match"]["path_prefix"].as_str(), Some("/api/"));
        // Only the rule asking for it compares.
        assert!(rules[0].get("compare").is_none());
        assert_eq!(rules[1]["compare"]["percent"].as_integer(), Some(100));
        Ok(())
    }

    #[test]
    fn toml_strings_escape_quotes() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
