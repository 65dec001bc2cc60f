//! `cargo xtask`: the project's build, test and demo entry points (see `cargo xtask --help`).
//!
//! Progress goes to stderr; results that a script may capture (paths) go to stdout.

mod build;
mod cmd;
mod demo;
mod setup;
mod test;
mod toolchain;

use std::{ffi::OsString, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{build::Profile, setup::Scope};

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
    /// Build the eBPF object and print its path.
    BuildEbpf {
        /// Build the dev profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Build the eBPF object, then the daemon embedding it; print the daemon's path.
    Build {
        /// Build the dev profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// The project's test command: setup, build, unit tests, then privileged integration tests.
    Test {
        /// Passed to the privileged integration tests' harness (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Build, then run the demo (`mirror-tests --bin demo`) with the built daemon.
    Demo {
        /// Passed to the demo.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
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
        Command::BuildEbpf { debug } => {
            let toolchain = setup::run(Scope::EbpfBuild, false)?;
            let object = build::ebpf(&toolchain, Profile::from_debug_flag(debug))?;
            println!("{}", object.display());
            Ok(())
        }
        Command::Build { debug } => {
            let toolchain = setup::run(Scope::EbpfBuild, false)?;
            let built = build::all(&toolchain, Profile::from_debug_flag(debug))?;
            println!("{}", built.daemon.display());
            Ok(())
        }
        Command::Test { args } => test::run(&args),
        Command::Demo { args } => demo::run(&args),
    }
}
