//! `cargo xtask vm-test [KERNEL...]`: the privileged integration tests, the very binaries the
//! host run uses, on other kernels in QEMU.
//!
//! Debian's cloud kernels come through a private APT under `<target>/vm/apt` (nothing is
//! installed; `.deb`s and unpacked kernels stay cached under `<target>/vm`), each guest boots
//! an initramfs holding busybox, `ip`/`tc`/`bpftool`/`iptables` with their libraries, the test
//! binaries and the daemon, and the kernel's modules; `/init` runs every test binary with the
//! host's arguments and `CI=true`, and writes libtest's output to a second serial port. A
//! panic, a hang (the per-kernel time limit) or a missing result is a failure.

mod apt;
mod cpio;
mod guest;
pub mod host_qemu;
mod kernel;
mod libtest;
mod qemu;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    build::{self, Built},
    cmd,
};
use guest::TestBinary;
use kernel::{Kernel, KernelSpec};
use libtest::Outcome;

/// Per-kernel limit on one boot, suite included (a kernel takes 2.5-6 min on 2 cores: 5.10
/// 158 s, 6.1 202 s, 6.12 294 s, 7.3 349 s in one run).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(12 * 60);
/// Limit on all boots of one `cargo xtask test`, so that CI's 90 min hold even when every kernel
/// hangs: a kernel whose turn comes after it is spent is reported as not run (a failure).
pub const TEST_BUDGET: Duration = Duration::from_secs(36 * 60);

/// Tests left out in the VMs, with the reason printed in the summary. Matched like libtest's
/// `--skip` (a substring of the test's name), which is how they are left out.
/// Only tests whose bounds are wall-clock times calibrated for hardware: under TCG everything is
/// about ten times slower (measured: a 9,850-connection test takes 20 s to open them instead of
/// 3 s, and its admin scrapes time out while they close). The properties they check are checked
/// in the VMs by the other tests (limits, memory per connection is printed) and on the host.
const VM_SKIPS: &[(&str, &str)] = &[
    (
        "ten_thousand_idle_keep_alive_connections_stay_within_the_memory_bound",
        "10,000 connections under TCG: the test's 2 s admin deadline is calibrated for hardware \
         (the memory bound itself held in the guest: 3.3 KiB per connection)",
    ),
    (
        "shadow_flapping_every_second_causes_no_client_error",
        "asserts no request takes 500 ms or more; under TCG one SYN retransmission (1 s) breaks it",
    ),
    (
        "after_sigterm_http2_connections_close_once_no_stream_is_open",
        "its gRPC client and server run in the host's Python venv, which the guest does not \
         carry; the drain's kernel side is the HTTP/1.1 test's, run on every kernel",
    ),
];
/// Test binaries not run in the VMs at all, with the reason printed in the summary.
const VM_SKIP_BINARIES: &[(&str, &str)] = &[
    (
        "compare",
        "its HTTP/1.1 primary and shadow (tests/h2/answers_server.py) run in the host's Python \
         venv, which the guest does not carry; comparing answers is user space only",
    ),
    (
        "compare_grpc",
        "real gRPC clients and servers (the host's Python venv), which the guest does not carry; \
         the daemon's kernel side is the same as for HTTP/1.1, which every other mirroring test \
         covers on each kernel",
    ),
    (
        "deploy",
        "checks the deploy/ manifests: no kernel involved, and its validator (a Python venv) is \
         not in the guest",
    ),
    (
        "h2_direct",
        "the HTTP/2 harness: its gRPC and h2c programs run in the host's Python venv \
         (<target>/tools/h2-venv) and it runs curl, nghttp, nghttpd and h2load, none of which \
         the guest carries; no daemon, nothing kernel-specific",
    ),
    (
        "h2_mirroring",
        "real gRPC and h2c clients and servers (the host's Python venv, curl, nghttp), which the \
         guest does not carry; the daemon's kernel side is the same as for HTTP/1.1, which every \
         other mirroring test covers on each kernel",
    ),
    (
        "monitoring",
        "checks deploy/monitoring with promtool: no kernel involved, and promtool is not in the \
         guest",
    ),
    (
        "operations_dashboard",
        "runs the dashboard's queries on a real Prometheus (a 100 MB Go binary, not in the \
         guest); the metrics it reads are checked on every kernel by operations_metrics",
    ),
];

#[derive(Debug, Clone)]
pub struct Options {
    /// Matrix entries by name; empty: the default matrix.
    pub kernels: Vec<String>,
    pub timeout: Duration,
    /// Refresh the package lists even when they are less than a day old.
    pub refresh: bool,
    /// Limit on all boots together, if any.
    pub budget: Option<Duration>,
}

/// The host run's invocation taken apart: how to build its binaries (the same cargo command
/// plus `--no-run`), and the environment and arguments they run with.
struct HostStep {
    build: Command,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl HostStep {
    fn from(step: &Command) -> Self {
        let args: Vec<String> = step
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let (cargo_args, test_args) = match args.iter().position(|a| a == "--") {
            Some(at) => (&args[..at], args[at + 1..].to_vec()),
            None => (&args[..], Vec::new()),
        };
        let mut build = Command::new(step.get_program());
        build
            .args(cargo_args)
            .args(["--no-run", "--message-format=json-render-diagnostics"]);
        if let Some(dir) = step.get_current_dir() {
            build.current_dir(dir);
        }
        let mut env = Vec::new();
        for (key, value) in step.get_envs() {
            match value {
                Some(value) => {
                    build.env(key, value);
                    env.push((
                        key.to_string_lossy().into_owned(),
                        value.to_string_lossy().into_owned(),
                    ));
                }
                None => {
                    build.env_remove(key);
                }
            }
        }
        Self {
            build,
            env,
            args: test_args,
        }
    }
}

/// The directory everything of the VM runs lives in.
pub fn vm_dir() -> PathBuf {
    build::target_dir().join("vm")
}

/// One kernel's result.
struct KernelReport {
    name: String,
    /// `package version`, or what stopped it before it booted.
    kernel: String,
    passed: Vec<String>,
    failed: Vec<(String, String)>,
    /// What, why, how many tests.
    skipped: Vec<(String, String, usize)>,
    /// Failures not tied to one test: timeout, panic, missing results.
    problems: Vec<String>,
    boot_seconds: Option<f64>,
}

impl KernelReport {
    fn ok(&self) -> bool {
        self.failed.is_empty() && self.problems.is_empty()
    }
}

/// Holds `<vm>/lock` exclusively until dropped: one matrix at a time per target directory (two
/// would share the logs and the 2 cores, and time out).
struct MatrixLock {
    _file: fs::File,
}

impl MatrixLock {
    fn open(vm: &Path) -> Result<fs::File> {
        let path = vm.join("lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }

    fn flock(file: &fs::File, operation: libc::c_int) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor that `file` owns for the call; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// The lock if no one holds it.
    fn try_acquire(vm: &Path) -> Result<Option<Self>> {
        let file = Self::open(vm)?;
        Ok(Self::flock(&file, libc::LOCK_EX | libc::LOCK_NB)
            .ok()
            .map(|()| Self { _file: file }))
    }

    /// The lock, waiting (and saying so) while another run holds it.
    fn acquire(vm: &Path) -> Result<Self> {
        if let Some(lock) = Self::try_acquire(vm)? {
            return Ok(lock);
        }
        eprintln!(
            "vm: another vm-test is running with {}; waiting for it to finish",
            vm.display()
        );
        let file = Self::open(vm)?;
        Self::flock(&file, libc::LOCK_EX).context("waiting for the vm-test lock")?;
        Ok(Self { _file: file })
    }
}

/// Runs the matrix with the test binaries of `host_step`, the host run's privileged test
/// command (see [`crate::test::privileged_command`]); fails when any kernel failed.
pub fn run_matrix(built: &Built, options: &Options, host_step: &Command) -> Result<()> {
    let started = Instant::now();
    let specs = specs(&options.kernels)?;
    let vm = vm_dir();
    fs::create_dir_all(&vm)?;
    let _lock = MatrixLock::acquire(&vm)?;

    // The same binaries as the host run: the same cargo invocation and environment, so cargo
    // hands back the very artifacts it built (and ran) there.
    let mut host = HostStep::from(host_step);
    let all_binaries = test_binaries(&mut host.build)?;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut binaries = Vec::new();
    let mut skipped_binaries = Vec::new();
    for binary in all_binaries {
        let tests = list_tests(&binary, &host.args)?;
        match VM_SKIP_BINARIES
            .iter()
            .find(|(name, _)| *name == binary.name)
        {
            Some(_) if tests.is_empty() => {}
            Some((name, reason)) => {
                eprintln!(
                    "vm: not run in VMs: {name} ({} tests; {reason})",
                    tests.len()
                );
                skipped_binaries.push((
                    format!("{name} ({} tests)", tests.len()),
                    (*reason).to_owned(),
                    tests.len(),
                ));
            }
            // Nothing to run in it with these arguments (a filter): no need to start it.
            None if tests.is_empty() => {}
            None => {
                expected.insert(binary.name.clone(), tests);
                binaries.push(binary);
            }
        }
    }
    if expected.is_empty() {
        eprintln!(
            "vm: no test to run in the VMs with the arguments {:?}; no kernel booted",
            host.args
        );
        return Ok(());
    }
    let skips = skipped_tests(&expected);
    for (test, reason) in &skips {
        eprintln!("vm: skipped in VMs: {test} ({reason})");
    }

    // Kernels and busybox through the private APT.
    let fetch_started = Instant::now();
    // Every suite of the matrix whichever kernels this run wants, so that the lists stay valid
    // (for a day) for any selection.
    let mut suites: Vec<&str> = kernel::MATRIX
        .iter()
        .flat_map(|s| s.suites.iter().copied())
        .collect();
    suites.extend(kernel::BUSYBOX_SUITES);
    let apt = apt::Apt::new(&vm.join("apt"), &suites)?;
    apt.update(options.refresh)?;
    let busybox = fetch_busybox(&apt, &vm)?;
    let mut kernels: Vec<(KernelSpec, Result<Kernel>)> = Vec::new();
    for spec in &specs {
        kernels.push((*spec, kernel::fetch(&apt, *spec, &vm)));
    }
    eprintln!(
        "vm: kernels ready in {:.1} s (cache: {})",
        fetch_started.elapsed().as_secs_f64(),
        vm.display()
    );

    let payload = payload(built, binaries, busybox, &host, &skips)?;
    let common = guest::common_archive(&payload, &vm.join("stripped"))?;

    let mut reports = Vec::new();
    let boots_started = Instant::now();
    for (spec, kernel) in kernels {
        let left = options
            .budget
            .map(|budget| budget.saturating_sub(boots_started.elapsed()));
        let timeout = left.map_or(options.timeout, |left| left.min(options.timeout));
        if timeout < Duration::from_secs(60) {
            reports.push(KernelReport {
                name: spec.name.to_owned(),
                kernel: "-".to_owned(),
                passed: vec![],
                failed: vec![],
                skipped: vec![],
                problems: vec![format!(
                    "not run: the matrix's time budget ({} min) is spent",
                    options.budget.unwrap_or_default().as_secs() / 60
                )],
                boot_seconds: None,
            });
            continue;
        }
        let report = match kernel {
            Ok(kernel) => run_kernel(&kernel, &common, &payload, &expected, &skips, timeout)
                .map(|mut report| {
                    report.skipped.extend(skipped_binaries.iter().cloned());
                    report
                })
                .unwrap_or_else(|error| KernelReport {
                    name: spec.name.to_owned(),
                    kernel: format!("{} {}", kernel.package, kernel.version),
                    passed: vec![],
                    failed: vec![],
                    skipped: skipped_binaries.clone(),
                    problems: vec![format!("could not run: {error:#}")],
                    boot_seconds: None,
                }),
            Err(error) => KernelReport {
                name: spec.name.to_owned(),
                kernel: "-".to_owned(),
                passed: vec![],
                failed: vec![],
                skipped: vec![],
                problems: vec![format!("could not fetch the kernel: {error:#}")],
                boot_seconds: None,
            },
        };
        reports.push(report);
    }

    let summary = summary(&reports, started.elapsed());
    eprint!("{summary}");
    fs::write(vm.join("summary.txt"), &summary)?;
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("vm-test failed on {}", failed.join(", "));
    }
    Ok(())
}

fn specs(names: &[String]) -> Result<Vec<KernelSpec>> {
    if names.is_empty() {
        return Ok(kernel::MATRIX
            .iter()
            .filter(|s| s.default)
            .copied()
            .collect());
    }
    let mut specs = Vec::new();
    for name in names {
        if name == "all" {
            specs.extend(kernel::MATRIX.iter().copied());
        } else {
            specs.push(kernel::spec(name)?);
        }
    }
    Ok(specs)
}

/// Builds (or finds built) the integration test binaries with `cargo` (`cargo test --no-run
/// --message-format=json...`).
fn test_binaries(cargo: &mut Command) -> Result<Vec<TestBinary>> {
    cargo.stdout(Stdio::piped());
    eprintln!("vm: test binaries: {}", cmd::display(cargo));
    let output = cargo.output().context("cannot run cargo")?;
    if !output.status.success() {
        bail!("building the test binaries failed ({})", output.status);
    }
    let mut binaries = Vec::new();
    let mut rebuilt = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test_target = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "test"));
        if message["reason"] == "compiler-artifact" && is_test_target {
            if let (Some(name), Some(path)) = (
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            ) {
                binaries.push(TestBinary {
                    name: name.to_owned(),
                    path: PathBuf::from(path),
                });
                if message["fresh"] == false {
                    rebuilt.push(name.to_owned());
                }
            }
        }
    }
    if !rebuilt.is_empty() {
        // Within `cargo xtask test` the host run built them moments ago: the sources changed.
        eprintln!(
            "vm: note: cargo (re)built {} now; the VMs run this build",
            rebuilt.join(", ")
        );
    }
    if binaries.is_empty() {
        bail!("`{}` built no integration test binary", cmd::display(cargo));
    }
    binaries.sort_by(|a, b| a.name.cmp(&b.name));
    eprintln!(
        "vm: {} test binaries: {}",
        binaries.len(),
        binaries
            .iter()
            .map(|b| b.path.file_name().unwrap_or_default().to_string_lossy())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(binaries)
}

/// The tests `binary` runs with `args` (its `--list`, on the host).
fn list_tests(binary: &TestBinary, args: &[String]) -> Result<Vec<String>> {
    let output = Command::new(&binary.path)
        .args(args)
        .args(["--list", "--format", "terse"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {} --list", binary.path.display()))?;
    if !output.status.success() {
        bail!("`{} --list` failed", binary.path.display());
    }
    Ok(libtest::parse_list(&String::from_utf8_lossy(
        &output.stdout,
    )))
}

/// `binary::test` → reason, for every listed test a [`VM_SKIPS`] pattern matches.
fn skipped_tests(expected: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, String> {
    let mut skipped = BTreeMap::new();
    for (binary, tests) in expected {
        for test in tests {
            if let Some((_, reason)) = VM_SKIPS.iter().find(|(pattern, _)| test.contains(pattern)) {
                skipped.insert(format!("{binary}::{test}"), (*reason).to_owned());
            }
        }
    }
    skipped
}

fn fetch_busybox(apt: &apt::Apt, vm: &Path) -> Result<PathBuf> {
    let version = apt
        .newest("busybox-static", kernel::BUSYBOX_SUITES)?
        .context("busybox-static is not in the package lists")?;
    let dir = vm.join("busybox").join(version.replace(':', "%3a"));
    let binary = dir.join("bin/busybox");
    if !binary.is_file() {
        let (deb, _) = apt.download("busybox-static", &version, &vm.join("debs"))?;
        fs::create_dir_all(&dir)?;
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    }
    Ok(binary)
}

fn payload(
    built: &Built,
    binaries: Vec<TestBinary>,
    busybox: PathBuf,
    host: &HostStep,
    skips: &BTreeMap<String, String>,
) -> Result<guest::Payload> {
    let workspace = build::workspace_root();
    if let Some(point) = guest::hidden_by_mount(&workspace) {
        bail!(
            "the workspace {} is below {point}, which the guest mounts over; \
             run from a clone elsewhere",
            workspace.display()
        );
    }
    let tests_dir = workspace.join("tests");
    let skipped_binaries: Vec<&str> = VM_SKIP_BINARIES.iter().map(|(name, _)| *name).collect();
    let mut names = guest::commands_in_sources(&tests_dir, &skipped_binaries)?;
    names.extend(
        crate::setup::RUNTIME_TOOLS
            .iter()
            .map(|(command, _)| (*command).to_owned()),
    );
    let (commands, missing) = guest::find_commands(&names);
    if !missing.is_empty() {
        eprintln!(
            "vm: warning: the tests run {}, not found on this machine, so not in the guests \
             either: the tests that run it fail there as they do here (`cargo xtask setup` \
             installs what the tests need)",
            missing.join(", ")
        );
    }
    eprintln!(
        "vm: commands in the guest: {}",
        commands
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut args = host.args.clone();
    for pattern in skip_patterns(skips) {
        args.push("--skip".to_owned());
        args.push(pattern);
    }
    Ok(guest::Payload {
        workspace,
        tests_dir,
        binaries,
        daemon: built.daemon.clone(),
        // The host run's environment, and CI=true: what cannot run fails instead of skipping.
        env: host
            .env
            .iter()
            .filter(|(key, _)| key != "CI")
            .cloned()
            .chain([("CI".to_owned(), "true".to_owned())])
            .collect(),
        args,
        busybox,
        commands,
        nofile: fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| guest::parse_nofile(&limits)),
    })
}

/// The [`VM_SKIPS`] patterns that match a listed test.
fn skip_patterns(skips: &BTreeMap<String, String>) -> Vec<String> {
    VM_SKIPS
        .iter()
        .filter(|(pattern, _)| skips.keys().any(|test| test.contains(pattern)))
        .map(|(pattern, _)| (*pattern).to_owned())
        .collect()
}

fn run_kernel(
    kernel: &Kernel,
    common: &cpio::Archive,
    payload: &guest::Payload,
    expected: &BTreeMap<String, Vec<String>>,
    skips: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<KernelReport> {
    let name = kernel.spec.name;
    let dir = vm_dir().join("run").join(name);
    fs::create_dir_all(&dir)?;
    let archive = guest::kernel_archive(common, kernel, payload)?;
    let initrd = dir.join("initrd.cpio");
    let size = archive.write(&initrd)?;
    eprintln!(
        "vm: {name}: {} {} ({}), initramfs {:.1} MB",
        kernel.package,
        kernel.version,
        kernel.spec.about,
        size as f64 / 1e6
    );
    let boot = qemu::boot(&kernel.vmlinuz, &initrd, &dir, timeout, name)?;
    let console = fs::read_to_string(&boot.console).unwrap_or_default();
    let results = libtest::parse(&fs::read_to_string(&boot.results).unwrap_or_default());

    let mut report = KernelReport {
        name: name.to_owned(),
        kernel: format!("{} {}", kernel.package, kernel.version),
        passed: vec![],
        failed: vec![],
        skipped: vec![],
        problems: vec![],
        boot_seconds: Some(boot.elapsed.as_secs_f64()),
    };
    if boot.timed_out {
        report.problems.push(format!(
            "timed out after {} s{}",
            timeout.as_secs(),
            match &results.running {
                Some((binary, test)) => format!(" while {binary}::{test} ran"),
                None => String::new(),
            }
        ));
    }
    if let Some(trouble) = qemu::kernel_trouble(&console) {
        report.problems.push(format!("kernel: {trouble}"));
    }
    if results.kernel.is_none() {
        report.problems.push(format!(
            "no result: the guest never reached its tests (QEMU exit status {:?}; see {})",
            boot.status,
            boot.console.display()
        ));
    } else if !results.done && !boot.timed_out {
        report.problems.push(format!(
            "the guest stopped before its last test binary ended (see {})",
            boot.console.display()
        ));
    }
    for (binary, why) in &results.crashed {
        report.problems.push(format!("{binary}: {why}"));
    }

    for (binary, tests) in expected {
        let got = results.tests.get(binary);
        for test in tests {
            let full = format!("{binary}::{test}");
            if let Some(reason) = skips.get(&full) {
                report.skipped.push((full, reason.clone(), 1));
                continue;
            }
            match got.and_then(|g| g.get(test)) {
                Some(Outcome::Passed) => report.passed.push(full),
                Some(Outcome::Failed(reason)) => report.failed.push((full, reason.clone())),
                Some(Outcome::Skipped(reason)) => report.skipped.push((full, reason.clone(), 1)),
                None => {
                    let why = match &results.running {
                        Some((b, t)) if b == binary && t == test => {
                            "no result: it was running when the guest stopped"
                        }
                        _ if got.is_none() => "no result: its binary never ran",
                        _ => "no result",
                    };
                    report.failed.push((full, why.to_owned()));
                }
            }
        }
    }
    Ok(report)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}...")
    }
}

fn summary(reports: &[KernelReport], elapsed: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nvm-test summary ({} vCPUs, {} MiB, QEMU TCG; logs under {}):",
        qemu::CPUS,
        qemu::MEMORY_MIB,
        vm_dir().join("run").display()
    );
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for report in reports {
        let verdict = if report.ok() { "ok" } else { "FAILED" };
        let time = report
            .boot_seconds
            .map(|t| format!(", {t:.0} s"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:<6} {verdict:<6} {} passed, {} failed, {} skipped  ({}{time})",
            report.name,
            report.passed.len(),
            report.failed.len(),
            report.skipped.iter().map(|(_, _, n)| n).sum::<usize>(),
            report.kernel,
        );
        for problem in &report.problems {
            let _ = writeln!(s, "           problem: {problem}");
        }
        // One line per test, or per reason when several tests share one (a daemon that does
        // not start fails every test the same way).
        let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
        for (test, reason) in &report.failed {
            match by_reason.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, tests)) => tests.push(test),
                None => by_reason.push((reason, vec![test])),
            }
        }
        for (reason, tests) in by_reason {
            let reason = shorten(reason, 400);
            if tests.len() >= 3 {
                let _ = writeln!(
                    s,
                    "           failed: {} tests ({reason}): {}",
                    tests.len(),
                    tests.join(", ")
                );
            } else {
                for test in tests {
                    let _ = writeln!(s, "           failed: {test} ({reason})");
                }
            }
        }
        for (test, reason, _) in &report.skipped {
            let _ = writeln!(s, "           skipped: {test} ({reason})");
        }
        passed += report.passed.len();
        failed += report.failed.len() + usize::from(report.failed.is_empty() && !report.ok());
        skipped += report.skipped.iter().map(|(_, _, n)| n).sum::<usize>();
    }
    let _ = writeln!(
        s,
        "vm-test: {} kernels in {:.0} s",
        reports.len(),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "vm-test: {passed} passed, {failed} failed, {skipped} skipped"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_step_gives_the_build_command_and_the_binaries_environment_and_arguments() {
        let mut step = Command::new("cargo");
        step.current_dir("/w")
            .env("MIRROR_DAEMON_BIN", "/w/target/release/mirror-daemon")
            .env_remove("CARGO_BUILD_TARGET")
            .args(["test", "--no-fail-fast", "--package", "mirror-tests"])
            .args(["--", "--test-threads=1", "interception"]);
        let host = HostStep::from(&step);
        assert_eq!(
            cmd::display(&host.build),
            "cargo test --no-fail-fast --package mirror-tests --no-run \
             --message-format=json-render-diagnostics"
        );
        assert_eq!(host.build.get_current_dir(), Some(Path::new("/w")));
        assert_eq!(host.build.get_envs().count(), 2);
        assert_eq!(
            host.env,
            [(
                "MIRROR_DAEMON_BIN".to_owned(),
                "/w/target/release/mirror-daemon".to_owned()
            )]
        );
        assert_eq!(host.args, ["--test-threads=1", "interception"]);
    }

    #[test]
    fn the_summary_groups_failures_sharing_a_reason_and_ends_with_the_totals() {
        let failed = |test: &str, reason: &str| (test.to_owned(), reason.to_owned());
        let reports = [
            KernelReport {
                name: "5.10".into(),
                kernel: "linux-image-5.10.0-46-cloud-amd64 5.10.262-1".into(),
                passed: vec!["topology::a".into()],
                failed: vec![
                    failed("a::x", "daemon exited"),
                    failed("b::y", "daemon exited"),
                    failed("c::z", "daemon exited"),
                    failed("d::w", "timed out"),
                ],
                skipped: vec![("deploy (10 tests)".into(), "no kernel".into(), 10)],
                problems: vec![],
                boot_seconds: Some(162.4),
            },
            KernelReport {
                name: "6.12".into(),
                kernel: "-".into(),
                passed: vec![],
                failed: vec![],
                skipped: vec![],
                problems: vec!["not run: the matrix's time budget (36 min) is spent".into()],
                boot_seconds: None,
            },
        ];
        let text = summary(&reports, Duration::from_secs(200));
        assert!(text.contains(
            "  5.10   FAILED 1 passed, 4 failed, 10 skipped  \
             (linux-image-5.10.0-46-cloud-amd64 5.10.262-1, 162 s)\n\
             \x20          failed: 3 tests (daemon exited): a::x, b::y, c::z\n\
             \x20          failed: d::w (timed out)\n\
             \x20          skipped: deploy (10 tests) (no kernel)\n"
        ));
        assert!(text.contains("  6.12   FAILED 0 passed, 0 failed, 0 skipped  (-)\n"));
        assert!(text.ends_with("vm-test: 1 passed, 5 failed, 10 skipped\n"));
    }

    #[test]
    fn one_matrix_at_a_time_per_directory() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-vm-lock-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let held = MatrixLock::try_acquire(&dir)?;
        assert!(held.is_some());
        assert!(MatrixLock::try_acquire(&dir)?.is_none());
        drop(held);
        assert!(MatrixLock::try_acquire(&dir)?.is_some());
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn vm_skips_name_their_reason() {
        for (pattern, reason) in VM_SKIPS.iter().chain(VM_SKIP_BINARIES) {
            assert!(!pattern.is_empty() && !reason.is_empty());
        }
    }
}
