//! `cargo xtask`: the project's build, test and demo entry points (see `cargo xtask --help`).
//!
//! Progress goes to stderr; results that a script may capture (paths) go to stdout.

mod cmd;
mod setup;
mod toolchain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::setup::Scope;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, test and demo tasks for mirror"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detect and install what building and testing need (eBPF toolchain, bpf-linker, ip/tc/bpftool).
    Setup {
        /// Print what would be installed, install nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Setup { dry_run } => setup::run(Scope::Everything, dry_run).map(drop),
    }
}
