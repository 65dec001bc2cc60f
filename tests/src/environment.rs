//! Whether a privileged test can run here. Outside CI a test that cannot run skips with a loud
//! message; under `CI=true` it fails instead, so CI can never pass by silently skipping.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{bpf, command};

/// Env var naming the daemon binary (absolute path).
pub const DAEMON_BIN_ENV: &str = "MIRROR_DAEMON_BIN";

/// Whether we run under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace when relative), else
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
}

/// Where `cargo xtask setup` puts the tools it installs outside the system (Python venvs).
pub fn tools_dir() -> PathBuf {
    target_dir().join("tools")
}

/// The daemon binary: `$MIRROR_DAEMON_BIN`, else `<workspace>/target/release/mirror-daemon`.
pub fn daemon_binary() -> PathBuf {
    match std::env::var_os(DAEMON_BIN_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace().join("target/release/mirror-daemon"),
    }
}

/// Root, network namespaces and BPF: `None` when all are there, else why not.
fn missing_privileges() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Some("the kernel has no network namespaces".into());
    }
    match command::output("ip", &["netns", "list"]) {
        Ok(output) if output.success => {}
        Ok(output) => return Some(format!("`ip netns` fails: {}", output.stderr.trim())),
        Err(error) => return Some(format!("iproute2 is missing: {error:#}")),
    }
    for tool in ["tc", "bpftool"] {
        if let Err(error) = command::output(tool, &["help"]) {
            return Some(format!("{tool} is missing: {error:#}"));
        }
    }
    if let Err(error) = bpf::probe() {
        return Some(format!("BPF is unavailable: {error}"));
    }
    None
}

fn cannot_run(test: &str, reason: &str) {
    if in_ci() {
        panic!("{test}: cannot run under CI: {reason}");
    }
    // Straight to the process's stderr: `eprintln!` would be captured and hidden by the test
    // runner for a test that returns normally.
    let bar = "!".repeat(80);
    let message = format!(
        "\n{bar}\n!!! SKIPPED {test}: {reason}\n!!! run as root with {DAEMON_BIN_ENV} set \
         (see tests/README.md); under CI=true this fails instead\n{bar}\n"
    );
    let _ = std::io::stderr().write_all(message.as_bytes());
}

/// For tests that build namespaces but need no daemon: `true` when they can run.
pub fn require_namespaces(test: &str) -> bool {
    match missing_privileges() {
        None => true,
        Some(reason) => {
            cannot_run(test, &reason);
            false
        }
    }
}

/// For tests that run the gRPC programs (`tests/h2/`) in namespaces: `true` when the namespaces
/// and the venv with `grpcio` and `h2` are there.
pub fn require_grpc(test: &str) -> bool {
    if !require_namespaces(test) {
        return false;
    }
    match crate::python::versions() {
        Ok(_) => true,
        Err(reason) => {
            cannot_run(test, &reason);
            false
        }
    }
}

/// For tests that run the plain HTTP/2 tools: [`require_grpc`] (the recording h2c server is
/// Python too), and `curl` with HTTP/2, `nghttp`, `nghttpd` and `h2load` (Debian's curl,
/// nghttp2-client and nghttp2-server, installed by `cargo xtask setup`).
pub fn require_h2c_tools(test: &str) -> bool {
    if !require_grpc(test) {
        return false;
    }
    match missing_h2c_tools() {
        None => true,
        Some(reason) => {
            cannot_run(test, &reason);
            false
        }
    }
}

fn missing_h2c_tools() -> Option<String> {
    match command::output("curl", &["--version"]) {
        Ok(output) if curl_has_http2(&output.stdout) => {}
        Ok(_) => return Some("curl lacks HTTP2 (install Debian's curl)".into()),
        Err(error) => return Some(format!("curl is missing: {error:#}")),
    }
    for tool in ["nghttp", "nghttpd", "h2load"] {
        if let Err(error) = command::output(tool, &["--version"]) {
            return Some(format!(
                "{tool} is missing (run `cargo xtask setup`): {error:#}"
            ));
        }
    }
    None
}

/// Whether `curl --version` lists the HTTP2 feature.
pub fn curl_has_http2(version: &str) -> bool {
    version
        .lines()
        .filter_map(|line| line.strip_prefix("Features:"))
        .any(|features| features.split_whitespace().any(|f| f == "HTTP2"))
}

/// For tests that run the daemon: its binary when everything is there.
pub fn require_daemon(test: &str) -> Option<PathBuf> {
    if !require_namespaces(test) {
        return None;
    }
    require_daemon_binary(test)
}

/// For tests that run a program `cargo xtask setup` installs (Prometheus, promtool): its path
/// when it is on `PATH` or in a system directory.
pub fn require_program(test: &str, program: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        cannot_run(
            test,
            &format!(
                "{program} not found (Debian package {package}; `cargo xtask setup` installs it)"
            ),
        );
    }
    found
}

/// For tests that only run the daemon's binary (no namespaces, no privileges): its path.
pub fn require_daemon_binary(test: &str) -> Option<PathBuf> {
    let binary = daemon_binary();
    if binary.is_file() {
        Some(binary)
    } else {
        cannot_run(
            test,
            &format!(
                "no daemon binary at {} (set {DAEMON_BIN_ENV} or build it with `cargo xtask build`)",
                binary.display()
            ),
        );
        None
    }
}
