//! What setup must do, decided from what detection found: a pure function so every machine
//! state (fresh CI machine, developer with a nightly, non-root user) is covered by unit tests.

use std::{collections::BTreeSet, path::Path};

use crate::toolchain::{EbpfToolchain, DEBIAN_TOOLCHAIN};

pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Where Debian's llvm-22-dev lives; bpf-linker's build script looks in /usr without it.
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian's rustc 1.96 with the matching library sources (for `-Z build-std=core`).
pub const DEBIAN_RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
/// What `cargo install bpf-linker --features llvm-22` links against.
pub const BPF_LINKER_BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// Commands the privileged tests and the demo run, and the Debian package providing each.
pub const RUNTIME_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("bpftool", "bpftool"),
    ("iptables", "iptables"),
];

/// What the HTTP/2 tests run from a pod (curl with HTTP2, nghttp, h2load) or as a server
/// (nghttpd), and the Debian package providing each. Kept out of [`RUNTIME_TOOLS`], which the VM
/// guests carry: those tests need the host's Python venv and do not run in the guests.
pub const H2_TOOLS: &[(&str, &str)] = &[
    ("curl", "curl"),
    ("nghttp", "nghttp2-client"),
    ("h2load", "nghttp2-client"),
    ("nghttpd", "nghttp2-server"),
];
/// What `python3 -m venv` needs on Debian (the module is split into python3-venv).
pub const PYTHON_VENV_PACKAGES: &[&str] = &["python3", "python3-venv"];
/// Commands only the tests run on the host (not the demo, not the guests), and their Debian
/// package: a real Prometheus scrapes the daemon for the dashboard test, and promtool checks and
/// unit-tests the alerting rules (`deploy/monitoring`). Installed without the package's
/// recommendations (a node exporter); the tests start their own Prometheus, never the service.
pub const TEST_TOOLS: &[(&str, &str)] = &[("prometheus", "prometheus"), ("promtool", "prometheus")];

/// What `cargo xtask vm-test` runs on the host besides QEMU: `objcopy` strips the test
/// binaries' debug info, `xz`/`zstd` decompress kernel modules.
pub const VM_TOOLS: &[(&str, &str)] = &[
    ("objcopy", "binutils"),
    ("xz", "xz-utils"),
    ("zstd", "zstd"),
    ("dpkg-deb", "dpkg"),
];
/// The QEMU binary and its Debian package.
pub const QEMU: (&str, &str) = ("qemu-system-x86_64", "qemu-system-x86");

/// What the caller is about to do, hence what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Build the eBPF object (toolchain and bpf-linker).
    EbpfBuild,
    /// Build and run the demo or the bench (also ip, tc, bpftool, iptables).
    Demo,
    /// Build and run the host tests: [`Scope::Demo`] plus Prometheus and promtool.
    Everything,
    /// [`Scope::Everything`] plus the kernel matrix in QEMU (QEMU, objcopy, xz, zstd).
    WithVms,
}

/// The machine as detection found it.
#[derive(Debug, Clone, Default)]
pub struct Detected {
    pub is_root: bool,
    pub has_apt: bool,
    /// Both eBPF toolchains are run through rustup; setup does not install rustup itself.
    pub has_rustup: bool,
    pub nightly_has_rust_src: bool,
    /// /usr/bin/rustc, /usr/bin/cargo and /usr/lib/rustlib/src/rust all exist.
    pub debian_rust_present: bool,
    /// `rustup toolchain list` shows [`DEBIAN_TOOLCHAIN`].
    pub debian_toolchain_linked: bool,
    pub bpf_linker_present: bool,
    /// Installed Debian packages among [`BPF_LINKER_BUILD_PACKAGES`].
    pub installed_packages: BTreeSet<String>,
    /// Commands of [`RUNTIME_TOOLS`], [`H2_TOOLS`], [`TEST_TOOLS`], [`VM_TOOLS`] and [`QEMU`]
    /// found nowhere.
    pub missing_commands: Vec<&'static str>,
    /// The HTTP/2 tests' venv holds what `tests/h2/requirements.txt` pins.
    pub h2_venv_current: bool,
    /// `python3 -m venv` works (only asked when the venv is not current).
    pub python_can_make_venvs: bool,
    /// `VERSION_CODENAME` of /etc/os-release (`bookworm`).
    pub os_codename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    AptUpdate,
    AptInstall(Vec<&'static str>),
    /// Packages whose recommendations would add services (Prometheus recommends a node
    /// exporter): `apt-get install --no-install-recommends`.
    AptInstallWithoutRecommends(Vec<&'static str>),
    LinkDebianToolchain,
    InstallBpfLinker,
    /// The HTTP/2 tests' venv (`<target>/tools/h2-venv`) made afresh from
    /// `tests/h2/requirements.txt`.
    CreateH2Venv,
    /// QEMU from `<codename>-backports` through a private sources list (Debian 12: its own QEMU
    /// 7.2 would remove a preinstalled backports qemu-utils).
    InstallQemuFromBackports {
        codename: String,
    },
}

impl Action {
    /// The one line printed before the action runs.
    pub fn announce(&self) -> String {
        match self {
            Self::AptUpdate => "updating apt package lists (about 10 s)...".to_owned(),
            Self::AptInstall(packages) => {
                format!("installing {} (about 1 min)...", packages.join(" "))
            }
            Self::AptInstallWithoutRecommends(packages) => {
                format!("installing {} (about 20 s)...", packages.join(" "))
            }
            Self::LinkDebianToolchain => {
                format!("linking Debian's rustc at /usr as rustup toolchain {DEBIAN_TOOLCHAIN}...")
            }
            Self::InstallBpfLinker => {
                format!("installing bpf-linker {BPF_LINKER_VERSION} (about 1 min)...")
            }
            Self::InstallQemuFromBackports { codename } => {
                format!(
                    "installing {} from {codename}-backports (about 30 s)...",
                    QEMU.1
                )
            }
            Self::CreateH2Venv => {
                "creating the HTTP/2 tests' Python venv (grpcio, h2; about 10 s)...".to_owned()
            }
        }
    }

    pub fn needs_root(&self) -> bool {
        matches!(
            self,
            Self::AptUpdate
                | Self::AptInstall(_)
                | Self::AptInstallWithoutRecommends(_)
                | Self::InstallQemuFromBackports { .. }
        )
    }

    /// Environment and argv, the single description that both running and printing use (not
    /// for [`Action::InstallQemuFromBackports`] and [`Action::CreateH2Venv`], which run two
    /// commands each).
    pub fn invocation(&self) -> (Vec<(&'static str, &'static str)>, Vec<&'static str>) {
        match self {
            Self::InstallQemuFromBackports { .. } | Self::CreateH2Venv => (vec![], vec![]),
            Self::AptUpdate => (vec![], vec!["apt-get", "update"]),
            Self::AptInstall(packages) => {
                let mut argv = vec!["apt-get", "install", "-y"];
                argv.extend(packages);
                (vec![], argv)
            }
            Self::AptInstallWithoutRecommends(packages) => {
                let mut argv = vec!["apt-get", "install", "-y", "--no-install-recommends"];
                argv.extend(packages);
                (vec![], argv)
            }
            Self::LinkDebianToolchain => (
                vec![],
                vec!["rustup", "toolchain", "link", DEBIAN_TOOLCHAIN, "/usr"],
            ),
            Self::InstallBpfLinker => (
                vec![
                    ("LLVM_PREFIX", LLVM_PREFIX),
                    ("LLVM_SYS_221_PREFIX", LLVM_PREFIX),
                ],
                vec![
                    "cargo",
                    "install",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                    "--locked",
                    // Only run when no working bpf-linker was found: replace a broken one.
                    "--force",
                ],
            ),
        }
    }

    /// The shell command a person would run, with `sudo` where root is needed and they are not.
    pub fn shell(&self, is_root: bool) -> String {
        if let Self::InstallQemuFromBackports { codename } = self {
            let sudo = if is_root { "" } else { "sudo " };
            return crate::vm::host_qemu::describe(codename, "<target>/vm/host-apt")
                .replace("apt-get ", &format!("{sudo}apt-get "));
        }
        if let Self::CreateH2Venv = self {
            return super::venv::describe(
                Path::new("<target>/tools/h2-venv"),
                Path::new("tests/h2/requirements.txt"),
            );
        }
        let (env, argv) = self.invocation();
        let sudo = (self.needs_root() && !is_root).then_some("sudo".to_owned());
        sudo.into_iter()
            .chain(env.iter().map(|(k, v)| format!("{k}={v}")))
            .chain(argv.iter().map(|a| (*a).to_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub toolchain: EbpfToolchain,
    pub actions: Vec<Action>,
}

pub fn plan(detected: &Detected, scope: Scope) -> Plan {
    let mut packages: Vec<&'static str> = Vec::new();
    let mut add = |package: &'static str| {
        if !packages.contains(&package) {
            packages.push(package);
        }
    };
    let mut link = false;

    let toolchain = if detected.nightly_has_rust_src {
        EbpfToolchain::Nightly
    } else {
        if !detected.debian_rust_present {
            DEBIAN_RUST_PACKAGES.iter().copied().for_each(&mut add);
        }
        link = !detected.debian_toolchain_linked;
        EbpfToolchain::DebianBpf
    };

    if !detected.bpf_linker_present {
        BPF_LINKER_BUILD_PACKAGES
            .iter()
            .filter(|p| !detected.installed_packages.contains(**p))
            .copied()
            .for_each(&mut add);
    }

    let mut h2_venv = false;
    if scope != Scope::EbpfBuild {
        RUNTIME_TOOLS
            .iter()
            .chain(H2_TOOLS)
            .filter(|(command, _)| detected.missing_commands.contains(command))
            .for_each(|(_, package)| add(package));
        if !detected.h2_venv_current {
            h2_venv = true;
            if !detected.python_can_make_venvs {
                PYTHON_VENV_PACKAGES.iter().copied().for_each(&mut add);
            }
        }
    }
    let mut test_packages: Vec<&'static str> = Vec::new();
    if matches!(scope, Scope::Everything | Scope::WithVms) {
        for (command, package) in TEST_TOOLS {
            if detected.missing_commands.contains(command) && !test_packages.contains(package) {
                test_packages.push(package);
            }
        }
    }
    let mut qemu_from_backports = None;
    if scope == Scope::WithVms {
        VM_TOOLS
            .iter()
            .filter(|(command, _)| detected.missing_commands.contains(command))
            .for_each(|(_, package)| add(package));
        if detected.missing_commands.contains(&QEMU.0) {
            match detected.os_codename.as_deref() {
                Some("bookworm") => qemu_from_backports = Some("bookworm".to_owned()),
                _ => add(QEMU.1),
            }
        }
    }

    let mut actions = Vec::new();
    if !packages.is_empty() || !test_packages.is_empty() {
        actions.push(Action::AptUpdate);
    }
    if !packages.is_empty() {
        actions.push(Action::AptInstall(packages));
    }
    if !test_packages.is_empty() {
        actions.push(Action::AptInstallWithoutRecommends(test_packages));
    }
    if link {
        actions.push(Action::LinkDebianToolchain);
    }
    if !detected.bpf_linker_present {
        actions.push(Action::InstallBpfLinker);
    }
    if let Some(codename) = qemu_from_backports {
        actions.push(Action::InstallQemuFromBackports { codename });
    }
    if h2_venv {
        actions.push(Action::CreateH2Venv);
    }
    Plan { toolchain, actions }
}

impl Plan {
    /// Why this plan cannot run here, as one line with the exact commands to run instead.
    pub fn blocker(&self, detected: &Detected) -> Option<String> {
        if !detected.has_rustup {
            return Some(
                "rustup not found on PATH or in $CARGO_HOME/bin; install rustup (with a stable \
                 toolchain), then rerun"
                    .to_owned(),
            );
        }
        let needs_root = self.actions.iter().any(Action::needs_root);
        let commands = || {
            self.actions
                .iter()
                .map(|a| a.shell(detected.is_root))
                .collect::<Vec<_>>()
                .join(" && ")
        };
        if needs_root && !detected.has_apt {
            return Some(format!(
                "setup needs Debian packages but apt-get is missing; install the equivalent of \
                 `{}` or a rustup nightly with rust-src \
                 (`rustup component add rust-src --toolchain nightly`), then rerun",
                commands()
            ));
        }
        if needs_root && !detected.is_root {
            return Some(format!(
                "setup must install packages and needs root; run: {}",
                commands()
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_machine() -> Detected {
        Detected {
            is_root: true,
            has_apt: true,
            has_rustup: true,
            missing_commands: vec![
                "ip",
                "tc",
                "bpftool",
                "iptables",
                "curl",
                "nghttp",
                "h2load",
                "nghttpd",
                "prometheus",
                "promtool",
            ],
            os_codename: Some("bookworm".to_owned()),
            ..Detected::default()
        }
    }

    fn ready_machine() -> Detected {
        Detected {
            is_root: true,
            has_apt: true,
            has_rustup: true,
            nightly_has_rust_src: false,
            debian_rust_present: true,
            debian_toolchain_linked: true,
            bpf_linker_present: true,
            installed_packages: BPF_LINKER_BUILD_PACKAGES
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            missing_commands: vec![],
            os_codename: Some("bookworm".to_owned()),
            h2_venv_current: true,
            python_can_make_venvs: true,
        }
    }

    #[test]
    fn fresh_machine_installs_everything_with_one_apt_call() {
        let plan = plan(&fresh_machine(), Scope::Everything);
        assert_eq!(plan.toolchain, EbpfToolchain::DebianBpf);
        assert_eq!(
            plan.actions,
            vec![
                Action::AptUpdate,
                Action::AptInstall(vec![
                    "rustc-web",
                    "cargo-web",
                    "rust-web-src",
                    "llvm-22-dev",
                    "libpolly-22-dev",
                    "libzstd-dev",
                    "zlib1g-dev",
                    "iproute2",
                    "bpftool",
                    "iptables",
                    "curl",
                    "nghttp2-client",
                    "nghttp2-server",
                    "python3",
                    "python3-venv",
                ]),
                Action::AptInstallWithoutRecommends(vec!["prometheus"]),
                Action::LinkDebianToolchain,
                Action::InstallBpfLinker,
                Action::CreateH2Venv,
            ]
        );
        assert_eq!(plan.blocker(&fresh_machine()), None);
    }

    #[test]
    fn prometheus_is_installed_for_the_tests_not_for_the_demo() {
        let detected = Detected {
            missing_commands: vec!["prometheus", "promtool"],
            ..ready_machine()
        };
        assert!(plan(&detected, Scope::Demo).actions.is_empty());
        let install = vec![
            Action::AptUpdate,
            Action::AptInstallWithoutRecommends(vec!["prometheus"]),
        ];
        assert_eq!(plan(&detected, Scope::Everything).actions, install);
        assert_eq!(plan(&detected, Scope::WithVms).actions, install);
        assert_eq!(
            install[1].shell(true),
            "apt-get install -y --no-install-recommends prometheus"
        );
    }

    #[test]
    fn ready_machine_does_nothing() {
        let plan = plan(&ready_machine(), Scope::Everything);
        assert_eq!(plan.toolchain, EbpfToolchain::DebianBpf);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.blocker(&ready_machine()), None);
    }

    #[test]
    fn nightly_with_rust_src_needs_no_debian_rust() {
        let detected = Detected {
            nightly_has_rust_src: true,
            ..fresh_machine()
        };
        let plan = plan(&detected, Scope::EbpfBuild);
        assert_eq!(plan.toolchain, EbpfToolchain::Nightly);
        assert_eq!(
            plan.actions,
            vec![
                Action::AptUpdate,
                Action::AptInstall(vec![
                    "llvm-22-dev",
                    "libpolly-22-dev",
                    "libzstd-dev",
                    "zlib1g-dev"
                ]),
                Action::InstallBpfLinker,
            ]
        );
    }

    #[test]
    fn installed_but_unlinked_debian_rust_is_only_linked() {
        let detected = Detected {
            debian_toolchain_linked: false,
            ..ready_machine()
        };
        let plan = plan(&detected, Scope::Everything);
        assert_eq!(plan.actions, vec![Action::LinkDebianToolchain]);
        assert_eq!(
            plan.blocker(&Detected {
                is_root: false,
                ..detected
            }),
            None
        );
    }

    #[test]
    fn missing_bpf_linker_with_llvm_present_skips_apt() {
        let detected = Detected {
            bpf_linker_present: false,
            ..ready_machine()
        };
        assert_eq!(
            plan(&detected, Scope::EbpfBuild).actions,
            vec![Action::InstallBpfLinker]
        );
    }

    #[test]
    fn runtime_tools_only_matter_beyond_the_ebpf_build() {
        let detected = Detected {
            missing_commands: vec!["tc", "ip", "bpftool"],
            ..ready_machine()
        };
        assert!(plan(&detected, Scope::EbpfBuild).actions.is_empty());
        assert_eq!(
            plan(&detected, Scope::Everything).actions,
            vec![
                Action::AptUpdate,
                Action::AptInstall(vec!["iproute2", "bpftool"])
            ]
        );
    }

    #[test]
    fn the_http2_tests_get_their_tools_and_venv_beyond_the_ebpf_build() {
        let detected = Detected {
            missing_commands: vec!["h2load", "nghttp"],
            h2_venv_current: false,
            ..ready_machine()
        };
        assert!(plan(&detected, Scope::EbpfBuild).actions.is_empty());
        assert_eq!(
            plan(&detected, Scope::Everything).actions,
            vec![
                Action::AptUpdate,
                Action::AptInstall(vec!["nghttp2-client"]),
                Action::CreateH2Venv,
            ]
        );
        // Python that cannot make venvs gets Debian's venv module first.
        let without_venv_module = Detected {
            missing_commands: vec![],
            python_can_make_venvs: false,
            ..detected
        };
        assert_eq!(
            plan(&without_venv_module, Scope::Everything).actions,
            vec![
                Action::AptUpdate,
                Action::AptInstall(vec!["python3", "python3-venv"]),
                Action::CreateH2Venv,
            ]
        );
        // The venv needs no root: a non-root user with everything else gets no blocker.
        let non_root = Detected {
            is_root: false,
            h2_venv_current: false,
            ..ready_machine()
        };
        let plan = plan(&non_root, Scope::Everything);
        assert_eq!(plan.actions, vec![Action::CreateH2Venv]);
        assert_eq!(plan.blocker(&non_root), None);
        assert!(Action::CreateH2Venv
            .shell(false)
            .contains("pip install -r tests/h2/requirements.txt"));
    }

    #[test]
    fn vm_tools_and_qemu_only_matter_for_the_vm_matrix() {
        let detected = Detected {
            missing_commands: vec!["zstd", "qemu-system-x86_64"],
            ..ready_machine()
        };
        assert!(plan(&detected, Scope::Everything).actions.is_empty());
        assert_eq!(
            plan(&detected, Scope::WithVms).actions,
            vec![
                Action::AptUpdate,
                Action::AptInstall(vec!["zstd"]),
                Action::InstallQemuFromBackports {
                    codename: "bookworm".to_owned()
                },
            ]
        );
        let trixie = Detected {
            os_codename: Some("trixie".to_owned()),
            ..detected
        };
        assert_eq!(
            plan(&trixie, Scope::WithVms).actions,
            vec![
                Action::AptUpdate,
                Action::AptInstall(vec!["zstd", "qemu-system-x86"])
            ]
        );
    }

    #[test]
    fn qemu_from_backports_is_described_for_a_dry_run() {
        let action = Action::InstallQemuFromBackports {
            codename: "bookworm".to_owned(),
        };
        assert!(action.needs_root());
        let shell = action.shell(false);
        assert!(shell
            .starts_with("sudo apt-get -c <target>/vm/host-apt/apt.conf update && sudo apt-get"));
        assert!(shell.contains("-t bookworm-backports qemu-system-x86"));
    }

    #[test]
    fn non_root_gets_one_line_with_the_exact_commands() {
        let detected = Detected {
            is_root: false,
            ..fresh_machine()
        };
        let blocker = plan(&detected, Scope::EbpfBuild)
            .blocker(&detected)
            .expect("non-root cannot apt-get install");
        assert!(!blocker.contains('\n'));
        assert!(blocker.contains(
            "run: sudo apt-get update && sudo apt-get install -y rustc-web cargo-web rust-web-src \
             llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev && \
             rustup toolchain link debian-bpf /usr && \
             LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
             cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22 --locked --force"
        ));
    }

    #[test]
    fn without_apt_the_blocker_points_at_a_nightly() {
        let detected = Detected {
            has_apt: false,
            ..fresh_machine()
        };
        let blocker = plan(&detected, Scope::EbpfBuild)
            .blocker(&detected)
            .expect("packages cannot be installed without apt");
        assert!(blocker.contains("rustup component add rust-src --toolchain nightly"));
    }

    #[test]
    fn without_rustup_nothing_is_attempted() {
        let detected = Detected {
            has_rustup: false,
            ..ready_machine()
        };
        let blocker = plan(&detected, Scope::EbpfBuild).blocker(&detected);
        assert!(blocker.is_some_and(|b| b.starts_with("rustup not found")));
    }

    #[test]
    fn announcements_say_how_long_slow_steps_take() {
        assert_eq!(
            Action::InstallBpfLinker.announce(),
            "installing bpf-linker 0.13.0 (about 1 min)..."
        );
    }
}
