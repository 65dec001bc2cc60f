//! The eBPF object embedded at build time, and loading it into the kernel.

use aya::{Ebpf, EbpfLoader};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "this mirror-daemon was built without its eBPF object; build it with `cargo xtask build`"
    )]
    NotEmbedded,
    #[error("loading the eBPF object failed: {0}{hint}", hint = memlock_hint(.0))]
    Load(#[from] aya::EbpfError),
    #[error("the embedded eBPF object has no {0:?}; it does not match this daemon")]
    Missing(&'static str),
}

/// Maps that cannot be created on a kernel before 5.11 usually mean RLIMIT_MEMLOCK.
fn memlock_hint(error: &aya::EbpfError) -> &'static str {
    if matches!(
        error,
        aya::EbpfError::MapError(aya::maps::MapError::CreateError { .. })
    ) {
        " (before Linux 5.11, maps count against RLIMIT_MEMLOCK: run with CAP_SYS_RESOURCE or `ulimit -l unlimited`)"
    } else {
        ""
    }
}

/// The object as built by xtask (empty when the daemon was built without it).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mirror.bpf.o"));

/// Loads the embedded object (programs not yet loaded, maps created).
pub fn load() -> Result<Ebpf, Error> {
    if OBJECT.is_empty() {
        return Err(Error::NotEmbedded);
    }
    Ok(EbpfLoader::new().load(OBJECT)?)
}

#[cfg(all(test, ebpf_object))]
mod tests {
    use super::*;

    /// The names in mirror-common are the single source of truth; the object must carry them.
    #[test]
    fn embedded_object_has_every_program_and_map_named_in_mirror_common() {
        let object = aya_obj::Object::parse(OBJECT).expect("parse embedded object");
        for program in [mirror_common::TC_PROGRAM, mirror_common::SK_LOOKUP_PROGRAM] {
            assert!(object.programs.contains_key(program), "program {program}");
        }
        use mirror_common::maps::*;
        for map in [
            INTERCEPT_RULES,
            LISTENERS,
            PENDING_SYNS,
            SETTINGS,
            HEARTBEAT,
            COUNTERS,
        ] {
            assert!(object.maps.contains_key(map), "map {map}");
        }
    }
}
