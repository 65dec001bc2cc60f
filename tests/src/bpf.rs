//! The two `bpf(2)` calls the harness needs, made directly: a probe that BPF works at all, and
//! `BPF_PROG_QUERY`, which (unlike `bpftool link show`) answers per namespace: what is attached
//! with TCX to an interface of the calling thread's namespace, or with sk_lookup to a namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

// Values from the kernel's uapi `linux/bpf.h` (this machine's header predates TCX).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_SK_LOOKUP` attach type.
pub const ATTACH_SK_LOOKUP: u32 = 36;
/// `BPF_TCX_INGRESS` attach type.
pub const ATTACH_TCX_INGRESS: u32 = 46;
/// `BPF_TCX_EGRESS` attach type.
pub const ATTACH_TCX_EGRESS: u32 = 47;

/// Room for this many attached programs per query; more is never expected in a test node.
const MAX_QUERIED: usize = 64;

/// `union bpf_attr`, as 8-byte words so that `__aligned_u64` fields are aligned.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn zeroed() -> Self {
        Attr([0; 128])
    }

    fn put_u32(&mut self, offset: usize, value: u32) {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }

    fn put_u64(&mut self, offset: usize, value: u64) {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
    }

    fn u32_at(&self, offset: usize) -> u32 {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&self.0[offset..offset + 4]);
        u32::from_ne_bytes(bytes)
    }
}

fn bpf(command: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable `union bpf_attr` of the size passed; every pointer
    // stored in it points to live buffers owned by the caller for the duration of the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_uint,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Creates (and at once closes) a one-element array map: proves the bpf syscall is usable here.
///
/// Lifts `RLIMIT_MEMLOCK` first, as the daemon does: before Linux 5.11 a map is charged to the
/// user's locked memory, summed over all its processes, and checked against the creating
/// process's limit, so with a low limit (64 KiB in a bare VM) the maps of a daemon that has just
/// exited, which the kernel frees later, made this probe fail with EPERM (seen once on 5.10).
pub fn probe() -> io::Result<()> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we own; failing (not root) leaves the limit as it was.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    let mut attr = Attr::zeroed();
    attr.put_u32(0, BPF_MAP_TYPE_ARRAY);
    attr.put_u32(4, 4); // key_size
    attr.put_u32(8, 4); // value_size
    attr.put_u32(12, 1); // max_entries
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

/// What a `BPF_PROG_QUERY` returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attached {
    pub program_ids: Vec<u32>,
    /// Link ids (TCX only; zero for programs attached without a link).
    pub link_ids: Vec<u32>,
}

/// Programs attached with TCX (`attach_type` [`ATTACH_TCX_INGRESS`]/[`ATTACH_TCX_EGRESS`]) to
/// interface `ifindex` of the calling thread's namespace.
pub fn query_tcx(ifindex: u32, attach_type: u32) -> io::Result<Attached> {
    query(ifindex, attach_type, true)
}

/// Programs attached with sk_lookup to the namespace at `netns_path`.
pub fn query_sk_lookup(netns_path: &Path) -> io::Result<Attached> {
    let netns = File::open(netns_path)?;
    query(netns.as_raw_fd() as u32, ATTACH_SK_LOOKUP, false)
}

fn query(target: u32, attach_type: u32, with_links: bool) -> io::Result<Attached> {
    let mut program_ids = [0u32; MAX_QUERIED];
    let mut link_ids = [0u32; MAX_QUERIED];
    let mut attr = Attr::zeroed();
    attr.put_u32(0, target); // target_fd / target_ifindex
    attr.put_u32(4, attach_type);
    attr.put_u64(16, program_ids.as_mut_ptr() as u64); // prog_ids
    attr.put_u32(24, MAX_QUERIED as u32); // prog_cnt
    if with_links {
        attr.put_u64(40, link_ids.as_mut_ptr() as u64); // link_ids
    }
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let count = (attr.u32_at(24) as usize).min(MAX_QUERIED);
    Ok(Attached {
        program_ids: program_ids[..count].to_vec(),
        link_ids: if with_links {
            link_ids[..count].to_vec()
        } else {
            Vec::new()
        },
    })
}
