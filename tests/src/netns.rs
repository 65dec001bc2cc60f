//! Named network namespaces (`/run/netns/<name>`): an owning guard that deletes the namespace on
//! drop, and a cheap handle that runs code inside it.
//!
//! Code runs "inside" a namespace on a fresh thread that `setns`es into it; sockets created there
//! keep that namespace for life, so a listener made with [`Netns::run`] can be served from any
//! thread afterwards.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::command;

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A handle on a named network namespace; cloning it does not own anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// The `ip netns` name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Whether the namespace still exists.
    pub fn exists(&self) -> bool {
        self.path().exists()
    }

    /// Runs `f` on a thread that has entered this namespace and returns its result. A panic in `f`
    /// is propagated to the caller.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = self.path();
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || -> Result<T> {
                let file =
                    File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("cannot enter {}", path.display()))?;
                Ok(f())
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        command::run("ip", &full)
    }

    /// Runs a command inside the namespace with `ip netns exec`.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        command::run("ip", &full)
    }

    /// Runs a command inside the namespace with `ip netns exec`, with `stdin` and a time limit
    /// of its own; returns what it printed whether it succeeded or not.
    pub fn exec_output(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<command::Output> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        command::output_within("ip", &full, stdin, timeout)
    }

    /// Sets a `net.*` sysctl of this namespace (`key` like `net/ipv4/ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = PathBuf::from("/proc/sys").join(key);
        self.run(|| std::fs::write(&path, value))?
            .with_context(|| format!("cannot set {} in {}", path.display(), self.name))
    }
}

/// Owns a namespace: created by [`NetnsGuard::create`], deleted on drop.
#[derive(Debug)]
pub struct NetnsGuard {
    handle: Netns,
}

impl NetnsGuard {
    /// `ip netns add <name>`, then brings `lo` up and turns off IPv6 duplicate address detection
    /// (addresses are usable at once; nothing in a test namespace can collide).
    pub fn create(name: &str) -> Result<Self> {
        command::run("ip", &["netns", "add", name])?;
        let guard = NetnsGuard {
            handle: Netns {
                name: name.to_owned(),
            },
        };
        guard.handle.ip(&["link", "set", "lo", "up"])?;
        guard.handle.sysctl("net/ipv6/conf/all/accept_dad", "0")?;
        guard
            .handle
            .sysctl("net/ipv6/conf/default/accept_dad", "0")?;
        Ok(guard)
    }

    /// A handle on the namespace.
    pub fn handle(&self) -> &Netns {
        &self.handle
    }
}

impl std::ops::Deref for NetnsGuard {
    type Target = Netns;

    fn deref(&self) -> &Netns {
        &self.handle
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(error) = command::run("ip", &["netns", "del", &self.handle.name]) {
            eprintln!("mirror-tests: cannot delete namespace: {error:#}");
        }
    }
}

/// How long processes left in a stale namespace get to exit after SIGTERM before SIGKILL.
const STALE_TERM_GRACE: Duration = Duration::from_secs(3);

/// Deletes namespaces left behind by earlier runs of the harness whose process is gone (a run
/// killed with SIGKILL, or SIGTERM, cannot clean up), after ending the processes still running
/// in them: a daemon, nginx or a load generator of a killed bench outlives its namespace's name
/// otherwise. Only names of the harness's own scheme are touched.
pub fn remove_stale_namespaces() -> Result<()> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(anyhow!(error).context("cannot list namespaces")),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = crate::names::left_by_dead_run(&name) {
            eprintln!("mirror-tests: removing namespace {name} left by dead process {pid}");
            end_processes_in(&name);
            let _ = command::run("ip", &["netns", "del", &name]);
        }
    }
    Ok(())
}

/// Ends every process in the namespace `name`: SIGTERM (a daemon detaches from the kernel on
/// it), then SIGKILL for those still there after [`STALE_TERM_GRACE`].
fn end_processes_in(name: &str) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let running = || -> Vec<i32> {
        command::run("ip", &["netns", "pids", name])
            .map(|text| {
                // Zombies have left their namespace: only the living are listed.
                text.split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let pids = running();
    if pids.is_empty() {
        return;
    }
    eprintln!("mirror-tests: ending processes {pids:?} left in namespace {name}");
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let gone_within = |grace: Duration| {
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if running().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    if gone_within(STALE_TERM_GRACE) {
        return;
    }
    for pid in running() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if !gone_within(STALE_TERM_GRACE) {
        eprintln!(
            "mirror-tests: processes {:?} outlived SIGKILL in {name}",
            running()
        );
    }
}
