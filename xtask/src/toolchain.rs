//! The toolchain that builds the eBPF crate: which rustup toolchain compiles `core` for
//! `bpfel-unknown-none`, where bpf-linker is, and a `cargo` for it that does not inherit the
//! outer cargo's environment (xtask itself runs under `cargo run`).

use std::{
    env,
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::Command,
};

/// Name under which Debian's rustc-web (at /usr) is linked into rustup.
pub const DEBIAN_TOOLCHAIN: &str = "debian-bpf";

/// How the eBPF crate gets a `core` for `bpfel-unknown-none` (it needs `-Z build-std=core`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EbpfToolchain {
    /// A rustup nightly with the rust-src component: the usual aya setup.
    Nightly,
    /// Debian's rustc-web with rust-web-src, linked into rustup as [`DEBIAN_TOOLCHAIN`]; a stable
    /// compiler, so unstable flags need `RUSTC_BOOTSTRAP=1`.
    DebianBpf,
}

impl EbpfToolchain {
    pub fn rustup_name(self) -> &'static str {
        match self {
            Self::Nightly => "nightly",
            Self::DebianBpf => DEBIAN_TOOLCHAIN,
        }
    }

    fn needs_bootstrap(self) -> bool {
        matches!(self, Self::DebianBpf)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Nightly => "rustup nightly with rust-src",
            Self::DebianBpf => "Debian rustc-web linked as rustup toolchain debian-bpf",
        }
    }
}

/// Everything the eBPF build needs, as found (or installed) by setup.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub ebpf: EbpfToolchain,
    pub rustup: PathBuf,
    pub bpf_linker: PathBuf,
}

impl Toolchain {
    /// `rustup run <toolchain> cargo`, with the outer cargo's environment removed, bpf-linker on
    /// `PATH` and `RUSTC_BOOTSTRAP=1` where the toolchain is a stable one.
    pub fn ebpf_cargo(&self) -> Command {
        let mut cmd = Command::new(&self.rustup);
        cmd.args(["run", self.ebpf.rustup_name(), "cargo"]);
        scrub_outer_cargo_env(&mut cmd);
        if self.ebpf.needs_bootstrap() {
            cmd.env("RUSTC_BOOTSTRAP", "1");
        }
        if let Some(dir) = self.bpf_linker.parent() {
            cmd.env("PATH", prepend_path(dir, env::var_os("PATH")));
        }
        cmd
    }
}

/// A `cargo` for work outside the workspace (installing tools): rustup's default toolchain, none
/// of the outer cargo's environment.
pub fn standalone_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    scrub_outer_cargo_env(&mut cmd);
    cmd
}

/// Variables that `cargo run` (or the user, for the outer build) sets and that would change or
/// break a nested build of another project with another toolchain.
const OUTER_VARS: &[&str] = &[
    "CARGO",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_BOOTSTRAP",
    "RUSTUP_TOOLCHAIN",
    "RUSTUP_TOOLCHAIN_SOURCE",
];

/// `CARGO_*` variables that configure cargo itself (where it stores things, how it reaches the
/// registry, how it prints) and are right for any build.
const KEPT_CARGO_PREFIXES: &[&str] = &[
    "CARGO_HOME",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTRY_",
    "CARGO_REGISTRIES_",
    "CARGO_TERM_",
];

fn is_outer_var(key: &str) -> bool {
    OUTER_VARS.contains(&key)
        || (key.starts_with("CARGO_") && !KEPT_CARGO_PREFIXES.iter().any(|p| key.starts_with(p)))
}

fn scrub_outer_cargo_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        if key.to_str().is_some_and(is_outer_var) {
            cmd.env_remove(key);
        }
    }
    // `cargo run` prepends the running toolchain's libraries and the target dir.
    if let Some(value) = env::var_os("LD_LIBRARY_PATH") {
        let mut drop = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("..")];
        if let Some(rustup_home) = rustup_home() {
            drop.push(rustup_home.join("toolchains"));
        }
        match without_dirs_under(&value, &drop) {
            Some(kept) => cmd.env("LD_LIBRARY_PATH", kept),
            None => cmd.env_remove("LD_LIBRARY_PATH"),
        };
    }
}

fn rustup_home() -> Option<PathBuf> {
    env::var_os("RUSTUP_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".rustup")))
}

/// `search_path` without the entries under any of `dirs`; `None` when nothing is left.
fn without_dirs_under(search_path: &OsStr, dirs: &[PathBuf]) -> Option<OsString> {
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| normalize(d)).collect();
    let kept: Vec<PathBuf> = env::split_paths(search_path)
        .filter(|entry| !entry.as_os_str().is_empty())
        .filter(|entry| !dirs.iter().any(|d| normalize(entry).starts_with(d)))
        .collect();
    if kept.is_empty() {
        return None;
    }
    env::join_paths(kept).ok()
}

/// Resolves `..` lexically (these paths may not exist, so no `canonicalize`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn prepend_path(dir: &Path, path: Option<OsString>) -> OsString {
    let rest = path.unwrap_or_default();
    let entries = std::iter::once(dir.to_path_buf()).chain(env::split_paths(&rest));
    env::join_paths(entries).unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_cargo_vars_are_scrubbed_and_cargo_config_is_kept() {
        for outer in [
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "RUSTUP_TOOLCHAIN",
            "RUSTC_WRAPPER",
        ] {
            assert!(is_outer_var(outer), "{outer} should be scrubbed");
        }
        for kept in [
            "CARGO_HOME",
            "CARGO_NET_RETRY",
            "CARGO_HTTP_CAINFO",
            "CARGO_TERM_COLOR",
            "PATH",
            "HOME",
        ] {
            assert!(!is_outer_var(kept), "{kept} should be kept");
        }
    }

    #[test]
    fn ld_library_path_loses_the_outer_toolchain_and_target_dirs() {
        let value = OsString::from(
            "/repo/xtask/../target/debug:/home/u/.rustup/toolchains/stable/lib:/opt/lib",
        );
        let drop = [
            PathBuf::from("/repo/xtask/.."),
            PathBuf::from("/home/u/.rustup/toolchains"),
        ];
        assert_eq!(
            without_dirs_under(&value, &drop),
            Some(OsString::from("/opt/lib"))
        );
        let only_outer = OsString::from("/repo/target/debug/deps");
        assert_eq!(without_dirs_under(&only_outer, &drop), None);
    }

    #[test]
    fn bpf_linker_dir_goes_first_on_path() {
        let path = prepend_path(
            Path::new("/root/.cargo/bin"),
            Some(OsString::from("/usr/bin:/bin")),
        );
        assert_eq!(path, OsString::from("/root/.cargo/bin:/usr/bin:/bin"));
    }
}
