//! `cargo xtask`: the project's build, test and demo entry points (see `cargo xtask --help`).
//!
//! Progress goes to stderr; results that a script may capture (paths) go to stdout.

mod bench;
mod build;
mod cmd;
mod demo;
mod fuzz;
mod setup;
mod test;
mod toolchain;
mod vm;

use std::{ffi::OsString, process::ExitCode, time::Duration};

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
    /// Detect and install what building and testing need (eBPF toolchain, bpf-linker,
    /// ip/tc/bpftool, curl and nghttp2's tools, the Python venvs of the deploy and HTTP/2
    /// tests, QEMU for the kernel matrix).
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
    /// The project's test command: setup, build, unit tests, privileged integration tests on
    /// this kernel, then the same tests on the default kernel matrix in QEMU (see `vm-test`).
    Test {
        /// Leave out the kernel matrix in QEMU.
        #[arg(long)]
        no_vms: bool,
        /// Passed to the privileged integration tests' harness (e.g. a test name filter), on
        /// this kernel and in the VMs.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Build, then run the privileged integration tests on Debian kernels in QEMU (TCG) and
    /// print a summary per kernel. Kernels: 5.10, 6.1, 6.12, newest (the default matrix), all.
    VmTest {
        /// Matrix entries to run (default: 5.10 6.1 6.12 newest).
        kernels: Vec<String>,
        /// Time limit per kernel (boot and suite), in minutes.
        #[arg(long, default_value_t = vm::DEFAULT_TIMEOUT.as_secs() / 60)]
        timeout_minutes: u64,
        /// Refresh the private package lists even when they are less than a day old.
        #[arg(long)]
        refresh: bool,
        /// Passed to every test binary in the guests (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Build, then run the load bench (`mirror-tests --bin bench`): direct, through the daemon
    /// and nginx's `mirror`, on a simulated node (`-- --scenarios all` adds HTTP/2 with
    /// h2load); writes target/bench/results-<date>.md.
    Bench {
        /// Passed to the bench (`-- --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Build, then measure what a restart of the daemon (a DaemonSet's rolling update on one
    /// node) does to keep-alive clients (`mirror-tests --bin restart`): wrk and Python
    /// `requests` sessions, failed requests before, during and after; writes
    /// target/bench/restart-<date>.md.
    RestartBench {
        /// Passed to the restart bench (`-- --help` lists them), e.g. `--daemon PATH` twice
        /// to compare two builds.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run the cargo-fuzz targets in fuzz/ for a bounded time each (needs nightly; not in CI).
    Fuzz {
        /// Fuzzing time per target, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Step around the findings listed in fuzz/src/known.rs.
        #[arg(long)]
        skip_known: bool,
        /// Build without the address sanitizer (debug assertions stay on): 2 to 7 times the
        /// executions per second, for long runs; the fuzzed code is safe Rust.
        #[arg(long)]
        no_sanitizer: bool,
        /// Targets to run (default: all).
        targets: Vec<String>,
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
        Command::Setup { dry_run } => setup::run(Scope::WithVms, dry_run).map(drop),
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
        Command::Test { no_vms, args } => test::run(&args, !no_vms),
        Command::VmTest {
            kernels,
            timeout_minutes,
            refresh,
            args,
        } => {
            let toolchain = setup::run(Scope::WithVms, false)?;
            let built = build::all(&toolchain, Profile::Release)?;
            let host_step = test::privileged_command(&built, &args)?;
            vm::run_matrix(
                &built,
                &vm::Options {
                    kernels,
                    timeout: Duration::from_secs(timeout_minutes * 60),
                    refresh,
                    budget: None,
                },
                &host_step,
            )
        }
        Command::Bench { args } => bench::run(bench::Bench::Cost, &args),
        Command::RestartBench { args } => bench::run(bench::Bench::Restart, &args),
        Command::Fuzz {
            seconds,
            skip_known,
            no_sanitizer,
            targets,
        } => fuzz::run(&fuzz::Options {
            seconds,
            targets,
            skip_known,
            no_sanitizer,
        }),
        Command::Demo { args } => demo::run(&args),
    }
}
