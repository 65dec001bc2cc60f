//! Installing QEMU on a Debian 12 host from bookworm-backports (QEMU 10): bookworm's own 7.2
//! would remove a preinstalled backports `qemu-utils`. The backports suite is added through a
//! private sources list and lists directory under `<target>/vm/host-apt`, so the system's APT
//! configuration is left as it was; the package itself is installed into the system.

use std::{fs, path::Path, process::Command};

use anyhow::Result;

use super::apt::source_line;
use crate::cmd;

pub const PACKAGE: &str = "qemu-system-x86";

fn suites(codename: &str) -> Vec<String> {
    ["", "-updates", "-security", "-backports"]
        .iter()
        .map(|suffix| format!("{codename}{suffix}"))
        .collect()
}

/// Writes the private configuration; returns its path.
fn configure(dir: &Path, codename: &str) -> Result<std::path::PathBuf> {
    for sub in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let sources: String = suites(codename).iter().map(|s| source_line(s)).collect();
    fs::write(dir.join("sources.list"), sources)?;
    let d = dir.display();
    let config = format!(
        "// Written by cargo xtask setup: the system's APT plus {codename}-backports, privately.\n\
         Dir::Etc::SourceList \"{d}/sources.list\";\n\
         Dir::Etc::SourceParts \"{d}/sources.list.d\";\n\
         Dir::State::Lists \"{d}/lists\";\n\
         Dir::Cache \"{d}/cache\";\n\
         Dir::Cache::pkgcache \"\";\n\
         Dir::Cache::srcpkgcache \"\";\n\
         Acquire::Languages \"none\";\n\
         Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
         Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";\n\
         Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled \"false\";\n\
         Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled \"false\";\n"
    );
    let path = dir.join("apt.conf");
    fs::write(&path, config)?;
    Ok(path)
}

/// The commands [`install`] runs, for printing (`<dir>` stands for the private directory).
pub fn describe(codename: &str, dir: &str) -> String {
    format!(
        "apt-get -c {dir}/apt.conf update && apt-get -c {dir}/apt.conf install -y \
         --no-install-recommends -t {codename}-backports {PACKAGE} \
         (apt.conf: the system's suites plus {codename}-backports, lists kept in {dir})"
    )
}

/// Installs QEMU, with apt's output appended to `log`.
pub fn install(dir: &Path, codename: &str, log: &Path) -> Result<()> {
    let config = configure(dir, codename)?;
    let apt = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command
            .arg("-c")
            .arg(&config)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    cmd::run_logged(&mut apt(&["-q", "update"]), log)?;
    let backports = format!("{codename}-backports");
    cmd::run_logged(
        &mut apt(&[
            "-q",
            "install",
            "-y",
            "--no-install-recommends",
            "-t",
            &backports,
            PACKAGE,
        ]),
        log,
    )
}
