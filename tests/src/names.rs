//! Unique names for everything a test creates, so that concurrent runs (and leftovers of a crashed
//! run) never collide: namespaces are `mt<pid>-<seq>-<role>`, interfaces look like a CNI's.

use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace the harness creates.
pub const NAMESPACE_PREFIX: &str = "mt";

/// Longest interface name Linux accepts (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A process-wide unique number.
pub fn next_sequence() -> u32 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

/// The id of a simulated node: `mt<pid>-<seq>`, unique on this machine while the process lives.
pub fn node_id() -> String {
    format!(
        "{NAMESPACE_PREFIX}{}-{}",
        std::process::id(),
        next_sequence()
    )
}

/// Namespace name of a role (`node`, `pod-a`, `primary`) within a node.
pub fn namespace_name(node_id: &str, role: &str) -> String {
    format!("{node_id}-{role}")
}

/// The pid encoded in a harness namespace name, if the name is one of ours.
pub fn owner_pid(namespace: &str) -> Option<u32> {
    let rest = namespace.strip_prefix(NAMESPACE_PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// The owner's pid when `name` (a namespace's, a temporary directory's) is one of the harness's
/// and its owner is gone: what a killed run left behind.
pub fn left_by_dead_run(name: &str) -> Option<u32> {
    let pid = owner_pid(name)?;
    let dead = pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists();
    dead.then_some(pid)
}

/// A pid no process can have: one more than the largest the kernel hands out (`pid_max`), for
/// names of a run that is surely gone.
pub fn impossible_pid() -> std::io::Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/pid_max")?;
    let max: u32 = text
        .trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(max + 1)
}

/// Host-side interface naming of the CNIs the daemon's default globs cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cni {
    /// `cali` + 11 hex characters.
    Calico,
    /// `lxc` + 11 hex characters.
    Cilium,
    /// `veth` + 11 hex characters (flannel, the bridge plugin, kindnet).
    Veth,
}

impl Cni {
    fn prefix(self) -> &'static str {
        match self {
            Cni::Calico => "cali",
            Cni::Cilium => "lxc",
            Cni::Veth => "veth",
        }
    }

    /// A host-side interface name for pod number `index` of this process.
    pub fn host_interface(self, index: u32) -> String {
        format!("{}{}", self.prefix(), hex11(index))
    }
}

/// The host-side name of a non-pod link (an uplink to the primary, say): `up` + 8 hex characters,
/// which matches none of the CNI globs.
pub fn uplink_interface(index: u32) -> String {
    format!("up{:08x}", mix(index) as u32)
}

/// 11 hex characters that differ per process and per index, like a CNI's hash of the pod.
fn hex11(index: u32) -> String {
    format!("{:011x}", mix(index) & 0xfff_ffff_ffff)
}

/// Spreads pid and index over the bits (splitmix64 finaliser), so names look hashed, as a CNI's do.
fn mix(index: u32) -> u64 {
    let mut z = (u64::from(std::process::id()) << 32 | u64::from(index))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_GLOBS: [&str; 3] = ["veth*", "cali*", "lxc*"];

    fn matches_default_globs(name: &str) -> bool {
        DEFAULT_GLOBS
            .iter()
            .any(|glob| glob::Pattern::new(glob).is_ok_and(|p| p.matches(name)))
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        for index in [0, 1, 255, u32::MAX] {
            for cni in [Cni::Calico, Cni::Cilium, Cni::Veth] {
                let name = cni.host_interface(index);
                assert!(name.len() <= MAX_IFNAME_LEN, "{name} is too long");
            }
            assert!(uplink_interface(index).len() <= MAX_IFNAME_LEN);
        }
    }

    #[test]
    fn pod_interfaces_match_cni_globs_and_uplinks_do_not() {
        for index in 0..64 {
            assert!(matches_default_globs(&Cni::Calico.host_interface(index)));
            assert!(matches_default_globs(&Cni::Cilium.host_interface(index)));
            assert!(matches_default_globs(&Cni::Veth.host_interface(index)));
            assert!(!matches_default_globs(&uplink_interface(index)));
        }
    }

    #[test]
    fn calico_names_have_eleven_hex_characters() {
        let name = Cni::Calico.host_interface(7);
        let suffix = name.strip_prefix("cali").unwrap_or_default();
        assert_eq!(suffix.len(), 11);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn names_differ_per_index() {
        assert_ne!(Cni::Calico.host_interface(1), Cni::Calico.host_interface(2));
        assert_ne!(uplink_interface(1), uplink_interface(2));
    }

    #[test]
    fn only_names_whose_owner_is_gone_are_left_by_a_dead_run() {
        let gone = impossible_pid().expect("pid_max");
        assert_eq!(left_by_dead_run(&format!("mt{gone}-3-node")), Some(gone));
        assert_eq!(left_by_dead_run(&format!("mt{gone}-bench")), Some(gone));
        assert_eq!(left_by_dead_run(&namespace_name(&node_id(), "pod-a")), None);
        assert_eq!(left_by_dead_run("mt1-0-node"), None, "pid 1 lives");
        assert_eq!(left_by_dead_run("cni-1234"), None);
    }

    #[test]
    fn owner_pid_is_read_back_from_namespace_names() {
        let id = node_id();
        let namespace = namespace_name(&id, "pod-a");
        assert_eq!(owner_pid(&namespace), Some(std::process::id()));
        assert_eq!(owner_pid("default"), None);
        assert_eq!(owner_pid("mtx-1-node"), None);
    }
}
