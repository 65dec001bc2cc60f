//! A process seen from outside, for resource tests: its memory (`/proc/<pid>/status`), its open
//! file descriptors, its `RLIMIT_NOFILE` (read and set with `prlimit(2)`, also on a running
//! process) and its command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most that was ever resident.
    pub hwm_kib: u64,
}

/// `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    Ok(Memory {
        rss_kib: status_kib(&status, "VmRSS")?,
        hwm_kib: status_kib(&status, "VmHWM")?,
    })
}

/// A `Name:   1234 kB` field of `/proc/<pid>/status`.
fn status_kib(status: &str, field: &str) -> Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/<pid>/status"))?;
    let value = line.trim().trim_end_matches("kB").trim();
    value
        .parse()
        .with_context(|| format!("{field}: cannot parse {line:?}"))
}

/// Number of file descriptors `pid` has open.
pub fn open_fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?
        .count())
}

/// Number of threads of `pid`.
pub fn threads(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .context("no Threads in /proc/<pid>/status")?
        .trim()
        .parse()
        .context("Threads")
}

/// `RLIMIT_NOFILE` of `pid` (0: this process) as (soft, hard).
pub fn nofile(pid: u32) -> Result<(u64, u64)> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a null new limit only reads; `old` is a valid, writable rlimit.
    let rc = unsafe {
        libc::prlimit(
            libc::pid_t::try_from(pid)?,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    if rc != 0 {
        bail!(
            "prlimit({pid}, RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok((old.rlim_cur, old.rlim_max))
}

/// Sets `RLIMIT_NOFILE` of `pid` (0: this process) to (soft, hard), as `prlimit --nofile` does.
/// Raising the hard limit needs `CAP_SYS_RESOURCE` (root). Descriptors already open above a
/// lowered limit stay open; only new ones are refused (`EMFILE`).
pub fn set_nofile(pid: u32, soft: u64, hard: u64) -> Result<()> {
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `new` is a valid rlimit; a null old limit is not written.
    let rc = unsafe {
        libc::prlimit(
            libc::pid_t::try_from(pid)?,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        bail!(
            "prlimit({pid}, RLIMIT_NOFILE, {soft}:{hard}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Makes sure this process may open at least `wanted` descriptors (raising soft and, as root,
/// hard limits; never lowering them). Processes started afterwards inherit the limit.
pub fn raise_own_nofile(wanted: u64) -> Result<()> {
    let (soft, hard) = nofile(0)?;
    if soft >= wanted {
        return Ok(());
    }
    set_nofile(0, wanted, hard.max(wanted))
}

/// The `--config` argument `pid` was started with (from `/proc/<pid>/cmdline`).
pub fn config_argument(pid: u32) -> Result<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .with_context(|| format!("cannot read /proc/{pid}/cmdline"))?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let position = args
        .iter()
        .position(|arg| *arg == b"--config" || *arg == b"-c")
        .with_context(|| format!("process {pid} was not given --config"))?;
    let path = args
        .get(position + 1)
        .filter(|arg| !arg.is_empty())
        .with_context(|| format!("process {pid}: --config without a value"))?;
    Ok(PathBuf::from(String::from_utf8_lossy(path).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_descriptors_and_limits() -> Result<()> {
        let pid = std::process::id();
        let memory = memory(pid)?;
        assert!(
            memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib,
            "{memory:?}"
        );
        assert!(open_fds(pid)? >= 3);
        assert!(threads(pid)? >= 1);
        let (soft, hard) = nofile(0)?;
        assert!(soft <= hard && soft > 0, "{soft} {hard}");
        // Setting what is already set works without privileges.
        set_nofile(0, soft, hard)?;
        raise_own_nofile(soft)?;
        assert_eq!(nofile(pid)?, (soft, hard));
        Ok(())
    }

    #[test]
    fn status_fields_are_parsed_in_kib() -> Result<()> {
        let status = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS")?, 1024);
        assert_eq!(status_kib(status, "VmHWM")?, 2048);
        assert!(status_kib(status, "VmSwap").is_err());
        Ok(())
    }
}
