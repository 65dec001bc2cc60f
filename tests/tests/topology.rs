//! The simulated node itself, without the daemon: direct traffic flows, names look like a CNI's,
//! the kernel-state snapshot sees changes, and teardown leaves nothing.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use mirror_tests::environment::require_namespaces;
use mirror_tests::netns::NETNS_DIR;
use mirror_tests::node::{remove_what_dead_runs_left, Family};
use mirror_tests::tcp::{close_after_peer, read_to_eof, write_while_reading};
use mirror_tests::{command, names};
use mirror_tests::{Cni, ConnectOptions, KernelState, Node, Server};

#[test]
fn pod_reaches_the_primary_directly_over_ipv4_and_ipv6() -> Result<()> {
    if !require_namespaces("pod_reaches_the_primary_directly_over_ipv4_and_ipv6") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let pod = node.pod("a");
    for family in Family::ALL {
        let server = Server::echo(node.primary().netns(), node.primary().addr(family, 8080))?;
        let stream = pod.connect(server.address())?;
        let echoed = write_while_reading(stream, Arc::new(b"hello".to_vec()))?;
        assert_eq!(echoed, b"hello", "{family:?}");
        // No NAT anywhere: the primary sees the pod's own address.
        assert_eq!(server.peers().len(), 1);
        assert_eq!(server.peers()[0].ip(), pod.ip(family), "{family:?}");
    }
    Ok(())
}

#[test]
fn pods_get_their_own_subnets_and_cni_named_host_interfaces() -> Result<()> {
    if !require_namespaces("pods_get_their_own_subnets_and_cni_named_host_interfaces") {
        return Ok(());
    }
    let mut node = Node::new()?;
    let calico = node.add_pod("calico", Cni::Calico)?;
    let cilium = node.add_pod("cilium", Cni::Cilium)?;
    let plain = node.add_pod("plain", Cni::Veth)?;
    let primary = node.add_primary()?;
    assert_eq!(calico.v4().to_string(), "10.244.1.2");
    assert_eq!(cilium.v4().to_string(), "10.244.2.2");
    assert_eq!(plain.v6().to_string(), "fd00:244:3::2");
    assert!(calico.host_interface().starts_with("cali"));
    assert!(cilium.host_interface().starts_with("lxc"));
    assert!(plain.host_interface().starts_with("veth"));
    assert!(primary.host_interface().starts_with("up"));

    let links: Vec<String> = node.links()?.into_iter().map(|link| link.name).collect();
    for interface in [
        calico.host_interface(),
        cilium.host_interface(),
        plain.host_interface(),
        primary.host_interface(),
    ] {
        assert!(
            links.iter().any(|name| name == interface),
            "{interface} not in {links:?}"
        );
    }

    let server = Server::reply_and_close(primary.netns(), primary.addr(Family::V6, 80), b"hi")?;
    for pod in node.pods() {
        let mut stream = pod.connect(server.address())?;
        assert_eq!(read_to_eof(&mut stream)?, b"hi", "pod {}", pod.name());
    }
    Ok(())
}

#[test]
fn kernel_state_is_stable_at_rest_and_sees_rules_routes_and_qdiscs() -> Result<()> {
    if !require_namespaces("kernel_state_is_stable_at_rest_and_sees_rules_routes_and_qdiscs") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let before = KernelState::capture(node.netns())?;
    let again = KernelState::capture(node.netns())?;
    let diff = again.diff(&before);
    assert!(diff.is_empty(), "snapshot changed at rest:\n{diff}");

    // What the daemon is expected to add, added by hand inside the test's own node namespace.
    let ns = node.netns();
    ns.ip(&[
        "rule", "add", "pref", "100", "fwmark", "0x1/0x1", "lookup", "100",
    ])?;
    ns.ip(&[
        "-6", "rule", "add", "pref", "100", "fwmark", "0x1/0x1", "lookup", "100",
    ])?;
    ns.ip(&[
        "route",
        "add",
        "local",
        "0.0.0.0/0",
        "dev",
        "lo",
        "table",
        "100",
    ])?;
    ns.ip(&[
        "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100",
    ])?;
    mirror_tests::command::run(
        "tc",
        &[
            "-n",
            ns.name(),
            "qdisc",
            "add",
            "dev",
            node.pod("a").host_interface(),
            "clsact",
        ],
    )?;
    let during = KernelState::capture(node.netns())?;
    let diff = during.diff(&before);
    for section in ["rules v4", "rules v6", "routes v4", "routes v6", "qdiscs"] {
        assert!(diff.touches(section), "{section} unchanged:\n{diff}");
    }
    Ok(())
}

#[test]
fn dropping_the_node_removes_every_namespace() -> Result<()> {
    if !require_namespaces("dropping_the_node_removes_every_namespace") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_pod("b")?.with_primary()?;
    let mut namespaces = vec![node.netns().clone(), node.primary().netns().clone()];
    namespaces.extend(node.pods().iter().map(|pod| pod.netns().clone()));
    for netns in &namespaces {
        ensure!(
            netns.exists(),
            "{} missing while the node lives",
            netns.name()
        );
    }
    drop(node);
    for netns in &namespaces {
        assert!(!netns.exists(), "{} left behind", netns.name());
    }
    Ok(())
}

/// What a run that was killed left (its owner pid cannot exist): a namespace with two processes
/// still in it, one that ends on SIGTERM and one that ignores it, and a work directory with a
/// file. Dropped on a failed test: the processes killed, the namespace and directory deleted.
struct KilledRun {
    name: String,
    children: Vec<std::process::Child>,
    dir: std::path::PathBuf,
}

impl KilledRun {
    fn start() -> Result<KilledRun> {
        let name = format!(
            "{}{}-0-killed",
            names::NAMESPACE_PREFIX,
            names::impossible_pid()?
        );
        command::run("ip", &["netns", "add", &name])?;
        let dir = std::env::temp_dir().join(format!("{name}-bench"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("mirror-daemon"), b"a private copy")?;
        let mut run = KilledRun {
            name: name.clone(),
            children: Vec::new(),
            dir,
        };
        for script in ["exec sleep 300", "trap '' TERM; exec sleep 300"] {
            run.children.push(
                Command::new("ip")
                    .args(["netns", "exec", &name, "sh", "-c", script])
                    .spawn()?,
            );
        }
        // Both are in the namespace (ip and sh exec in place) before the sweep looks.
        let deadline = Instant::now() + Duration::from_secs(10);
        while command::run("ip", &["netns", "pids", &name])?
            .split_whitespace()
            .count()
            < 2
        {
            ensure!(
                Instant::now() < deadline,
                "the processes never entered {name}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(run)
    }

    fn exists(&self) -> bool {
        std::path::Path::new(NETNS_DIR).join(&self.name).exists()
    }

    /// The signal each process ended by, waiting a little for each.
    fn signals(&mut self) -> Result<Vec<Option<i32>>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut signals = Vec::new();
        for child in &mut self.children {
            let status = loop {
                match child.try_wait()? {
                    Some(status) => break Some(status),
                    None if Instant::now() >= deadline => break None,
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            signals.push(status.and_then(|status| status.signal()));
        }
        Ok(signals)
    }
}

impl Drop for KilledRun {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.exists() {
            let _ = command::run("ip", &["netns", "del", &self.name]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn what_a_killed_run_left_is_swept() -> Result<()> {
    if !require_namespaces("what_a_killed_run_left_is_swept") {
        return Ok(());
    }
    let mut run = KilledRun::start()?;
    remove_what_dead_runs_left()?;
    assert!(!run.exists(), "{} left behind", run.name);
    assert!(!run.dir.exists(), "{} left behind", run.dir.display());
    // SIGTERM first; SIGKILL for what ignores it (None: still running).
    assert_eq!(run.signals()?, [Some(libc::SIGTERM), Some(libc::SIGKILL)]);
    Ok(())
}

#[test]
fn fixed_source_port_is_reusable_directly_when_the_server_closes_first() -> Result<()> {
    // The harness's own baseline for the TIME_WAIT tests: without any daemon, the kernel lets a
    // pod reuse one source port for back-to-back connections.
    if !require_namespaces("fixed_source_port_is_reusable_directly_when_the_server_closes_first") {
        return Ok(());
    }
    let node = Node::new()?.with_pod("a")?.with_primary()?;
    let server = Server::reply_and_close(
        node.primary().netns(),
        node.primary().addr(Family::V4, 8080),
        b"pong",
    )?;
    let options = ConnectOptions::from_port(41_000);
    for attempt in 0..50 {
        let started = Instant::now();
        let mut stream = node.pod("a").connect_with(server.address(), &options)?;
        assert_eq!(read_to_eof(&mut stream)?, b"pong");
        close_after_peer(stream, Duration::from_secs(1))?;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "connection {attempt} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(server.accepted(), 50);
    Ok(())
}
