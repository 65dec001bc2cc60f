//! Least privilege: the daemon runs with exactly the capabilities its kernel set-up and its
//! running state need, and gives up all others before it starts any thread.
//!
//! Kept, on kernels with CAP_BPF (5.8+):
//! - `CAP_BPF`: every bpf() call — loading the programs, creating links, and later the heartbeat,
//!   counter reads, rule updates on reload and attaching to new interfaces;
//! - `CAP_PERFMON`: without it the verifier runs in its stricter unprivileged mode and rejects the
//!   classifier (`R6 !read_ok` after `bpf_sk_release`, measured on 6.18);
//! - `CAP_NET_ADMIN`: loading the TC (`sched_cls`) program and creating the SOCKMAP, TCX/netlink
//!   attachment, policy routing, `IP_TRANSPARENT` listeners, and the namespace's
//!   `tcp_early_demux` sysctl. (Loading sk_lookup and linking it to the namespace need `CAP_BPF`
//!   alone.)
//!
//! On older kernels `CAP_SYS_ADMIN` stands in for `CAP_BPF` and `CAP_PERFMON`.
//! Capabilities are per thread in Linux, so the sets are reduced on the main thread before the
//! runtime exists, and every thread inherits them; the bounding set is reduced too (when allowed),
//! ambient capabilities cleared, and `no_new_privs` set, so nothing can regain what was dropped.

use std::collections::HashSet;

use caps::{CapSet, Capability};

/// The capabilities the daemon needs on this kernel.
pub fn required() -> HashSet<Capability> {
    let mut needed = HashSet::from([Capability::CAP_NET_ADMIN]);
    if kernel_knows(Capability::CAP_BPF) {
        needed.extend([Capability::CAP_BPF, Capability::CAP_PERFMON]);
    } else {
        needed.insert(Capability::CAP_SYS_ADMIN);
    }
    needed
}

/// Names the required capabilities missing from the effective set, if any.
pub fn missing() -> Result<(), String> {
    let effective = caps::read(None, CapSet::Effective).map_err(|e| e.to_string())?;
    let mut missing: Vec<String> = required()
        .difference(&effective)
        .map(ToString::to_string)
        .collect();
    missing.sort();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}

/// Before Linux 5.11, BPF maps count against `RLIMIT_MEMLOCK` (later kernels charge the memory
/// cgroup instead): lifts it while `CAP_SYS_RESOURCE` may still be held. Harmless where not
/// needed; a failure shows up, explained, when a map cannot be created.
pub fn lift_memlock_limit() {
    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
    let _ = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY);
}

/// Drops every capability but [`required`] from all sets of this thread (and so of every thread
/// it starts afterwards). Returns the kept capabilities, sorted by name.
pub fn drop_all_but_required() -> Result<Vec<String>, String> {
    let keep = required();
    let fail = |what: &str, e: caps::errors::CapsError| format!("cannot {what}: {e}");
    // The bounding set first: reducing it needs CAP_SETPCAP, which goes with the rest below.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        let bounding =
            caps::read(None, CapSet::Bounding).map_err(|e| fail("read the bounding set", e))?;
        for cap in bounding.difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(|e| fail("reduce the bounding set", e))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("clear ambient capabilities", e))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| fail("clear inheritable capabilities", e))?;
    caps::set(None, CapSet::Effective, &keep).map_err(|e| fail("set effective capabilities", e))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(|e| fail("set permitted capabilities", e))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot set no_new_privs: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut kept: Vec<String> = keep.iter().map(ToString::to_string).collect();
    kept.sort();
    Ok(kept)
}

fn kernel_knows(cap: Capability) -> bool {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|last| last.trim().parse::<u8>().ok())
        .is_some_and(|last| cap.index() <= last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_admin_is_always_required_and_bpf_comes_with_perfmon() {
        let needed = required();
        assert!(needed.contains(&Capability::CAP_NET_ADMIN));
        assert_eq!(
            needed.contains(&Capability::CAP_BPF),
            needed.contains(&Capability::CAP_PERFMON)
        );
        assert_ne!(
            needed.contains(&Capability::CAP_BPF),
            needed.contains(&Capability::CAP_SYS_ADMIN)
        );
    }
}
