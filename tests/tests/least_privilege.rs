//! Least privilege: the running daemon holds exactly CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN
//! (everything else dropped from every set, bounding included), with no_new_privs, and still does
//! its whole job with them: intercept, relay, clean up at exit.

use anyhow::{ensure, Context, Result};
use mirror_tests::environment::require_daemon;
use mirror_tests::node::Family;
use mirror_tests::{Daemon, DaemonConfig, KernelState, Node, Server};

const CAP_NET_ADMIN: u32 = 12;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn status_field(pid: u32, field: &str) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|value| value.trim().to_string())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn cap_set(pid: u32, field: &str) -> Result<u64> {
    Ok(u64::from_str_radix(&status_field(pid, field)?, 16)?)
}

#[test]
fn the_running_daemon_keeps_only_bpf_perfmon_and_net_admin() -> Result<()> {
    let Some(binary) = require_daemon("the_running_daemon_keeps_only_bpf_perfmon_and_net_admin")
    else {
        return Ok(());
    };
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let before = KernelState::capture(node.netns())?;
    let primary = Server::echo(
        node.primary().netns(),
        node.primary().addr(Family::V4, 8080),
    )?;
    let mut daemon = Daemon::start(
        &binary,
        node.netns(),
        &DaemonConfig::intercepting_primary(&[8080]),
    )?;
    let pid = daemon.pid();

    let expected = (1u64 << CAP_NET_ADMIN) | (1u64 << CAP_PERFMON) | (1u64 << CAP_BPF);
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        let value = cap_set(pid, set)?;
        ensure!(
            value == expected,
            "{set} {value:#x}, expected {expected:#x}"
        );
    }
    for set in ["CapInh:", "CapAmb:"] {
        ensure!(cap_set(pid, set)? == 0, "{set} not empty");
    }
    ensure!(
        status_field(pid, "NoNewPrivs:")? == "1",
        "no_new_privs not set"
    );
    // Every thread, not just the main one (capabilities are per thread).
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: u32 = task?.file_name().to_string_lossy().parse()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))?;
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .context("CapEff")?;
        ensure!(
            u64::from_str_radix(eff.trim(), 16)? == expected,
            "thread {tid}: CapEff {eff}"
        );
    }

    // The job still gets done with these capabilities alone.
    let counters = daemon.counters()?;
    let stream = node.pod("a").connect(primary.address())?;
    let echoed =
        mirror_tests::tcp::write_while_reading(stream, std::sync::Arc::new(b"ping".to_vec()))?;
    ensure!(echoed == b"ping", "echo differs");
    let after = daemon.counters()?.since(&counters);
    ensure!(after.intercepted == 1, "not intercepted: {after:?}");
    let status = daemon.terminate()?;
    ensure!(status.success(), "exit {status}");
    let left = KernelState::capture(node.netns())?.diff(&before);
    ensure!(
        left.is_empty(),
        "left behind with reduced capabilities: {left:?}"
    );
    Ok(())
}
