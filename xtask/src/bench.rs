//! `cargo xtask bench` and `cargo xtask restart-bench`: setup (as for the demo, plus wrk, nginx
//! and valgrind from Debian; the setup already brings h2load and the Python venv the HTTP/2
//! scenarios and the restart bench's sessions use), build the daemon, then run a node-level bench
//! against it. Neither is part of `cargo xtask test`.
//!
//! - `bench` (`mirror-tests --bin bench`): the daemon's cost on the primary path. It prints a
//!   markdown report and writes it to `target/bench/results-<date>.md`, with its pictures beside
//!   it (`results-<date>-latency.svg`, `-throughput.svg`, `-cpu.svg`).
//! - `restart-bench` (`mirror-tests --bin restart`): what a restart does to keep-alive clients
//!   (wrk and Python `requests` sessions, from the test venv); `target/bench/restart-<date>.md`.
//!
//! `cargo xtask bench -- --help` (`restart-bench -- --help`) lists each one's options.

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
    // `bench --instructions` runs the daemon under callgrind.
    ("valgrind", "valgrind"),
    ("callgrind_control", "valgrind"),
];

/// The two benches, by the harness binary that runs each.
#[derive(Clone, Copy, Debug)]
pub enum Bench {
    /// `cargo xtask bench`.
    Cost,
    /// `cargo xtask restart-bench`.
    Restart,
}

impl Bench {
    fn binary(self) -> &'static str {
        match self {
            Bench::Cost => "bench",
            Bench::Restart => "restart",
        }
    }
}

pub fn run(bench: Bench, args: &[OsString]) -> Result<()> {
    // The demo's scope includes the test venv (the restart bench's Python sessions).
    let toolchain = setup::run(Scope::Demo, false)?;
    install_bench_tools()?;
    let built = build::all(&toolchain, Profile::Release)?;
    let mut cargo = build::harness_binary(&built, bench.binary());
    cargo
        .env(setup::venv::H2_VENV_ENV, setup::venv::h2_venv())
        .arg("--out")
        .arg(build::target_dir().join("bench"))
        .args(args);
    eprintln!("{}: {}", bench.binary(), cmd::display(&cargo));
    cmd::run(&mut cargo)
}

/// Installs wrk, nginx and valgrind when missing. The bench runs nginx with its own
/// configuration in its own namespaces; the distribution's nginx service is neither used nor
/// touched.
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
