//! What the kernel says about a process and the machine: CPU time from `/proc/<pid>/stat`
//! (utime + stime, live and exited threads), peak RSS (`VmHWM`), the load average, and the other
//! busy processes that make a measurement noisy.

use std::path::Path;

use anyhow::{Context, Result};

/// Clock ticks per second of `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name is in parentheses and may contain spaces: count fields after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the full line, utime 14 and stime 15 (1-based).
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / ticks_per_second())
}

/// Runs every thread of `pid` under SCHED_IDLE from now on: it gets a CPU only when nothing else
/// wants one.
pub fn run_when_idle(pid: u32) -> Result<()> {
    let dir = format!("/proc/{pid}/task");
    for task in std::fs::read_dir(&dir).with_context(|| format!("cannot read {dir}"))? {
        let tid: libc::pid_t = task?.file_name().to_string_lossy().parse()?;
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the call's duration.
        if unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot set SCHED_IDLE on thread {tid} of {pid}"));
        }
    }
    Ok(())
}

/// CPU seconds of several processes together.
pub fn cpu_seconds_of(pids: &[u32]) -> Result<f64> {
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// Context switches (voluntary and not) of every thread of a process so far: each one is a
/// thread going to sleep or being preempted, so per request they count the wakeups a proxy
/// needs, a figure much steadier under noise than CPU time.
pub fn context_switches(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in std::fs::read_dir(&dir).with_context(|| format!("cannot read {dir}"))? {
        let path = task?.path().join("status");
        // A thread that ended meanwhile takes its count with it.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines() {
            if let Some(value) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += value.trim().parse::<u64>()?;
            }
        }
    }
    Ok(total)
}

/// Context switches of several processes together.
pub fn context_switches_of(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|&pid| context_switches(pid)).sum()
}

/// Peak resident set size (`VmHWM`) of a process, in bytes.
pub fn peak_rss(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// Resident set size now (`VmRSS`), in bytes.
pub fn rss(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .with_context(|| format!("no {key} in {path}"))?;
    let kib = line.trim().trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}

/// CPU seconds (user + system) of this process and of its children that have been waited for
/// (`getrusage`): the in-process client and shadow threads, and wrk once it has exited.
pub fn own_and_children_cpu_seconds() -> f64 {
    let seconds = |who| {
        // SAFETY: getrusage fills the zeroed struct we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut usage) } != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(usage.ru_utime) + tv(usage.ru_stime)
    };
    seconds(libc::RUSAGE_SELF) + seconds(libc::RUSAGE_CHILDREN)
}

/// The direct children of a process (nginx's workers).
pub fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if parent_of(child) == Some(pid) {
            found.push(child);
        }
    }
    found
}

fn parent_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Busy and total jiffies of the whole machine (`/proc/stat`, first line).
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    busy: u64,
    total: u64,
}

impl MachineCpu {
    pub fn now() -> MachineCpu {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = text.lines().next() else {
            return MachineCpu::default();
        };
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        let total: u64 = values.iter().take(8).sum();
        MachineCpu {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// The share of all cores busy between `self` and `later` (0 to 1).
    pub fn busy_share(&self, later: &MachineCpu) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return f64::NAN;
        }
        later.busy.saturating_sub(self.busy) as f64 / total as f64
    }

    /// CPU seconds all cores together had between `self` and `later` (`/proc/stat` counts in
    /// USER_HZ, 100 per second on Linux).
    pub fn cpu_seconds_until(&self, later: &MachineCpu) -> f64 {
        later.total.saturating_sub(self.total) as f64 / 100.0
    }
}

/// Other processes that compete for the CPU: compilers, test runners, VMs (name and pid).
pub fn competing_processes() -> Vec<String> {
    const NOISY: &[&str] = &[
        "cargo",
        "rustc",
        "cc1",
        "cc1plus",
        "ld",
        "qemu-system-x86",
        "nextest",
        "cargo-nextest",
        "clippy-driver",
        "rust-analyzer",
        "valgrind",
    ];
    let own = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let comm = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
            .unwrap_or_default();
        let comm = comm.trim();
        if NOISY.iter().any(|noisy| comm.starts_with(noisy)) {
            found.push(format!("{comm}[{pid}]"));
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable() -> Result<()> {
        let pid = std::process::id();
        assert!(cpu_seconds(pid)? >= 0.0);
        // This test thread has run, so at least it has been switched in once.
        assert!(context_switches(pid)? > 0);
        assert!(peak_rss(pid)? > 0);
        assert!(loadavg() >= 0.0);
        Ok(())
    }

    #[test]
    fn a_process_set_to_run_when_idle_is_sched_idle() -> Result<()> {
        let mut child = std::process::Command::new("sleep").arg("30").spawn()?;
        let pid = child.id();
        // SAFETY: sched_getscheduler only reads the policy of the given pid.
        let policy = || unsafe { libc::sched_getscheduler(pid as libc::pid_t) };
        let before = policy();
        let set = run_when_idle(pid);
        let after = policy();
        child.kill()?;
        child.wait()?;
        set?;
        assert_eq!(before, libc::SCHED_OTHER);
        assert_eq!(after, libc::SCHED_IDLE);
        Ok(())
    }
}
