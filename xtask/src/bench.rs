//! `cargo xtask bench`: setup (as for the demo, plus wrk and nginx from Debian; the setup already
//! brings h2load and the Python venv the HTTP/2 scenarios use), build the daemon,
//! then run the node-level load bench (`mirror-tests --bin bench`) against it. Not part of
//! `cargo xtask test`. The bench prints a markdown report and writes it to
//! `target/bench/results-<date>.md`, with its pictures beside it (`results-<date>-latency.svg`,
//! `-throughput.svg`, `-cpu.svg`); `cargo xtask bench -- --help` lists its options.

use std::{ffi::OsString, process::Command};

use anyhow::Result;

use crate::{
    build::{self, Profile},
    cmd,
    setup::{self, Scope},
};

/// Commands the bench runs, and the Debian package providing each.
const BENCH_TOOLS: &[(&str, &str)] = &[
    ("wrk", "wrk"),
    ("nginx", "nginx"),
    ("taskset", "util-linux"),
];

pub fn run(args: &[OsString]) -> Result<()> {
    let toolchain = setup::run(Scope::Demo, false)?;
    install_bench_tools()?;
    let built = build::all(&toolchain, Profile::Release)?;
    let mut cargo = build::harness_binary(&built, "bench");
    cargo
        .arg("--out")
        .arg(build::target_dir().join("bench"))
        .args(args);
    eprintln!("bench: {}", cmd::display(&cargo));
    cmd::run(&mut cargo)
}

/// Installs wrk and nginx when missing. The bench runs nginx with its own configuration in its
/// own namespaces; the distribution's nginx service is neither used nor touched.
fn install_bench_tools() -> Result<()> {
    let dirs = cmd::system_dirs();
    let mut missing: Vec<&str> = BENCH_TOOLS
        .iter()
        .filter(|(program, _)| cmd::find_program(program, &dirs).is_none())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let log = setup::log_path();
    eprintln!(
        "setup: installing {} for the bench (about 20 s; output in {})...",
        missing.join(" "),
        log.display()
    );
    cmd::run_logged(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &log,
    )?;
    cmd::run_logged(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &log,
    )
}
