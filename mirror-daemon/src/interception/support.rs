//! What the kernel must offer, probed before anything is loaded: on a kernel that lacks a
//! program type, map type or helper, the daemon stops with one line naming each missing piece
//! and the Linux version that brought it, rather than a verifier log.
//!
//! A probe that cannot decide (say, it is refused for lack of privilege) counts as present: the
//! load that follows then reports the real error.

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{is_helper_supported, is_map_supported, is_program_supported, BpfHelper},
};

/// The oldest kernel the project supports and tests (README: Kernels).
pub const MINIMUM: &str = "5.10";

/// One thing the programs need, and how to find out whether this kernel has it.
pub struct Feature {
    pub what: &'static str,
    /// The Linux version that brought it.
    pub since: &'static str,
    pub probe: fn() -> Result<bool, String>,
}

/// Everything the embedded programs use that a supported kernel's predecessors lacked.
pub const FEATURES: &[Feature] = &[
    Feature {
        what: "TC classifier programs",
        since: "4.1",
        probe: || program(ProgramType::SchedClassifier),
    },
    Feature {
        what: "sk_lookup programs",
        since: "5.9",
        probe: || program(ProgramType::SkLookup),
    },
    Feature {
        what: "LPM trie maps",
        since: "4.11",
        probe: || map(MapType::LpmTrie),
    },
    Feature {
        what: "LRU hash maps",
        since: "4.10",
        probe: || map(MapType::LruHash),
    },
    Feature {
        what: "SOCKMAP maps",
        since: "4.14",
        probe: || map(MapType::SockMap),
    },
    Feature {
        what: "bpf_skc_lookup_tcp from TC",
        since: "5.2",
        probe: || {
            helper(
                ProgramType::SchedClassifier,
                BpfHelper::BPF_FUNC_skc_lookup_tcp,
            )
        },
    },
    Feature {
        what: "bpf_sk_assign from TC",
        since: "5.7",
        probe: || helper(ProgramType::SchedClassifier, BpfHelper::BPF_FUNC_sk_assign),
    },
];

#[derive(Debug, thiserror::Error)]
#[error(
    "kernel {release} lacks {}: mirror needs Linux {MINIMUM} or newer (README: Kernels)",
    .missing.join(", ")
)]
pub struct Unsupported {
    pub release: String,
    /// Each as "what (Linux x.y)".
    pub missing: Vec<String>,
}

/// Probes every feature of `features`; `Err` lists those this kernel lacks.
pub fn check(features: &[Feature]) -> Result<(), Unsupported> {
    let missing: Vec<String> = features
        .iter()
        .filter(|feature| match (feature.probe)() {
            Ok(present) => !present,
            Err(e) => {
                tracing::debug!(feature = feature.what, error = %e, "kernel: probe undecided");
                false
            }
        })
        .map(|feature| format!("{} (Linux {})", feature.what, feature.since))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Unsupported {
            release: release(),
            missing,
        })
    }
}

fn program(program_type: ProgramType) -> Result<bool, String> {
    is_program_supported(program_type).map_err(|e| e.to_string())
}

fn map(map_type: MapType) -> Result<bool, String> {
    is_map_supported(map_type).map_err(|e| e.to_string())
}

fn helper(program_type: ProgramType, helper: BpfHelper) -> Result<bool, String> {
    is_helper_supported(program_type, helper).map_err(|e| e.to_string())
}

/// The running kernel's release, as `uname -r` prints it.
fn release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(unknown release)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_feature_is_named_with_its_linux_version_and_the_minimum() {
        let features = [
            Feature {
                what: "present",
                since: "4.1",
                probe: || Ok(true),
            },
            Feature {
                what: "sk_lookup programs",
                since: "5.9",
                probe: || Ok(false),
            },
            Feature {
                what: "undecided",
                since: "5.0",
                probe: || Err("Operation not permitted".into()),
            },
            Feature {
                what: "bpf_sk_assign from TC",
                since: "5.7",
                probe: || Ok(false),
            },
        ];
        let error = check(&features).expect_err("two are missing");
        assert_eq!(
            error.missing,
            [
                "sk_lookup programs (Linux 5.9)",
                "bpf_sk_assign from TC (Linux 5.7)"
            ]
        );
        let message = error.to_string();
        assert!(
            message.starts_with("kernel ")
                && message.ends_with(
                    "lacks sk_lookup programs (Linux 5.9), bpf_sk_assign from TC (Linux 5.7): \
                     mirror needs Linux 5.10 or newer (README: Kernels)"
                ),
            "{message}"
        );
        assert!(check(&features[..1]).is_ok());
    }
}
