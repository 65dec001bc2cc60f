//! Probing the machine for what setup may have to install: quick, read-only checks.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use super::plan::{
    Detected, BPF_LINKER_BUILD_PACKAGES, H2_TOOLS, QEMU, RUNTIME_TOOLS, TEST_TOOLS, VM_TOOLS,
};
use super::venv;
use crate::{cmd, toolchain::DEBIAN_TOOLCHAIN};

pub fn detect() -> Detected {
    let rustup = find_rustup();
    let toolchains = rustup
        .as_ref()
        .and_then(|r| cmd::probe(Command::new(r).args(["toolchain", "list"])))
        .unwrap_or_default();
    let has_nightly = toolchain_names(&toolchains).any(|t| t.starts_with("nightly"));
    let debian_toolchain_linked = toolchain_names(&toolchains).any(|t| t == DEBIAN_TOOLCHAIN);
    let nightly_has_rust_src = has_nightly
        && rustup
            .as_ref()
            .and_then(|r| {
                cmd::probe(Command::new(r).args([
                    "component",
                    "list",
                    "--toolchain",
                    "nightly",
                    "--installed",
                ]))
            })
            .is_some_and(|components| lists_rust_src(&components));

    let h2_venv_current = venv::is_current(&venv::h2_venv(), &venv::h2_requirements());
    Detected {
        is_root: is_root(),
        has_rustup: rustup.is_some(),
        has_apt: cmd::find_program("apt-get", &cmd::system_dirs()).is_some(),
        nightly_has_rust_src,
        debian_rust_present: [
            "/usr/bin/rustc",
            "/usr/bin/cargo",
            "/usr/lib/rustlib/src/rust",
        ]
        .iter()
        .all(|p| Path::new(p).exists()),
        debian_toolchain_linked,
        bpf_linker_present: find_bpf_linker().is_some(),
        installed_packages: installed_packages(BPF_LINKER_BUILD_PACKAGES),
        missing_commands: RUNTIME_TOOLS
            .iter()
            .chain(H2_TOOLS)
            .chain(TEST_TOOLS)
            .chain(VM_TOOLS)
            .chain([&QEMU])
            .map(|(command, _)| *command)
            .filter(|command| cmd::find_program(command, &cmd::system_dirs()).is_none())
            .collect(),
        os_codename: std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| os_release_codename(&text)),
        h2_venv_current,
        // Only worth a Python start when the venv must be made.
        python_can_make_venvs: h2_venv_current || venv::python_can_make_venvs(),
    }
}

/// `VERSION_CODENAME` from os-release text.
fn os_release_codename(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .find(|value| !value.is_empty())
}

pub fn find_rustup() -> Option<PathBuf> {
    cmd::find_program("rustup", &cargo_bin_dir().into_iter().collect::<Vec<_>>())
}

/// bpf-linker on `PATH` or in `$CARGO_HOME/bin`, when it runs; with its `--version` line.
pub fn find_bpf_linker() -> Option<(PathBuf, String)> {
    let path = cmd::find_program(
        "bpf-linker",
        &cargo_bin_dir().into_iter().collect::<Vec<_>>(),
    )?;
    let version = cmd::probe(Command::new(&path).arg("--version"))?;
    Some((path, version.trim().to_owned()))
}

fn cargo_bin_dir() -> Option<PathBuf> {
    cmd::cargo_home().map(|home| home.join("bin"))
}

fn is_root() -> bool {
    cmd::probe(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

/// Toolchain names from `rustup toolchain list` ("stable-x86_64-unknown-linux-gnu (default)").
fn toolchain_names(list: &str) -> impl Iterator<Item = &str> {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
}

fn lists_rust_src(components: &str) -> bool {
    components
        .lines()
        .any(|line| line.trim() == "rust-src" || line.trim().starts_with("rust-src-"))
}

/// Which of `packages` dpkg reports installed (none when dpkg is absent).
fn installed_packages(packages: &[&str]) -> BTreeSet<String> {
    // dpkg-query exits non-zero when one of the names is unknown, yet still prints the others.
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\\n"])
        .args(packages)
        .stderr(std::process::Stdio::null())
        .output();
    match output {
        Ok(output) => parse_dpkg_status(&String::from_utf8_lossy(&output.stdout)),
        Err(_) => BTreeSet::new(),
    }
}

fn parse_dpkg_status(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, status)| status.starts_with("ii"))
        .map(|(package, _)| package.split(':').next().unwrap_or(package).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchain_list_is_read_by_name() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\ndebian-bpf\n";
        let names: Vec<_> = toolchain_names(list).collect();
        assert_eq!(
            names,
            [
                "stable-x86_64-unknown-linux-gnu",
                "nightly-x86_64-unknown-linux-gnu",
                "debian-bpf"
            ]
        );
    }

    #[test]
    fn rust_src_is_found_among_installed_components() {
        let without = "cargo-x86_64-unknown-linux-gnu\nrust-std-x86_64-unknown-linux-gnu\n";
        assert!(!lists_rust_src(without));
        assert!(lists_rust_src(&format!("{without}rust-src\n")));
    }

    #[test]
    fn codename_is_read_from_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\n\
                    VERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(os_release_codename(text).as_deref(), Some("bookworm"));
        assert_eq!(os_release_codename("ID=arch\n"), None);
    }

    #[test]
    fn dpkg_status_keeps_only_installed_packages() {
        let text = "llvm-22-dev ii \nlibzstd-dev:amd64 ii \nzlib1g-dev un \nlibpolly-22-dev rc \n";
        let installed = parse_dpkg_status(text);
        assert_eq!(
            installed.into_iter().collect::<Vec<_>>(),
            ["libzstd-dev", "llvm-22-dev"]
        );
    }
}
