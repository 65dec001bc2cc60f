//! `cargo xtask test`, the project's one test command (README and `.ci/run` call it): setup,
//! build, then the test steps in order: unit tests, the privileged integration tests on this
//! kernel, then the same test binaries on the kernel matrix in QEMU. Every step runs even when
//! an earlier one failed, so one run reports everything; the command fails if any step did.

use std::{ffi::OsString, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use crate::{
    build::{self, Built, Profile},
    cmd,
    setup::{self, Scope},
    vm,
};

/// One test step: a name for the summary and the command it runs.
struct Step {
    name: &'static str,
    command: Command,
}

pub fn run(privileged_args: &[OsString], with_vms: bool) -> Result<()> {
    let scope = if with_vms {
        Scope::WithVms
    } else {
        Scope::Everything
    };
    let toolchain = setup::run(scope, false)?;
    let built = build::all(&toolchain, Profile::Release)?;

    let mut failed = Vec::new();
    let mut times = Vec::new();
    for mut step in steps(&built, privileged_args) {
        eprintln!("test: step {}: {}", step.name, cmd::display(&step.command));
        let started = Instant::now();
        if let Err(e) = cmd::run(&mut step.command) {
            eprintln!("test: step {} failed: {e:#}", step.name);
            failed.push(step.name);
        }
        times.push((step.name, started.elapsed()));
    }
    if with_vms {
        // The same test binaries (same cargo invocation) on the default kernel matrix.
        eprintln!("test: step vm: the privileged tests on the kernel matrix in QEMU");
        let started = Instant::now();
        let options = vm::Options {
            kernels: Vec::new(),
            timeout: vm::DEFAULT_TIMEOUT,
            refresh: false,
            budget: Some(vm::TEST_BUDGET),
        };
        let result = privileged_command(&built, privileged_args)
            .and_then(|host_step| vm::run_matrix(&built, &options, &host_step));
        if let Err(e) = result {
            eprintln!("test: step vm failed: {e:#}");
            failed.push("vm");
        }
        times.push(("vm", started.elapsed()));
    }
    let times: Vec<String> = times
        .iter()
        .map(|(name, time)| format!("{name} {:.0} s", time.as_secs_f64()))
        .collect();
    eprintln!("test: step times: {}", times.join(", "));
    if !failed.is_empty() {
        bail!("test steps failed: {}", failed.join(", "));
    }
    eprintln!("test: all steps succeeded");
    Ok(())
}

/// The privileged step's command (`cargo test ... --package mirror-tests -- --test-threads=1
/// ARGS` with the tests' environment): `vm-test` builds the guests' test binaries with the same
/// invocation plus `--no-run`, and runs them with the same arguments and environment.
pub fn privileged_command(built: &Built, privileged_args: &[OsString]) -> Result<Command> {
    steps(built, privileged_args)
        .into_iter()
        .find(|step| step.name == "privileged")
        .map(|step| step.command)
        .context("no privileged test step")
}

fn steps(built: &Built, privileged_args: &[OsString]) -> Vec<Step> {
    let cargo = || {
        let mut command = build::workspace_cargo();
        // Run every test binary even after one fails, so a run reports all failures.
        command.envs(built.env()).args(["test", "--no-fail-fast"]);
        command.env(
            setup::kube_validator::ENV,
            setup::kube_validator::executable(),
        );
        command.env(setup::venv::H2_VENV_ENV, setup::venv::h2_venv());
        command
    };

    // Unit tests of every crate but the privileged integration tests.
    let mut unit = cargo();
    unit.args(["--workspace", "--exclude", "mirror-tests"]);

    // The privileged integration tests drive the release daemon in network namespaces; each test
    // owns its namespace, yet they share the kernel's BPF attachments, so one at a time.
    let mut privileged = cargo();
    privileged
        .args(["--package", "mirror-tests", "--", "--test-threads=1"])
        .args(privileged_args);

    vec![
        Step {
            name: "unit",
            command: unit,
        },
        Step {
            name: "privileged",
            command: privileged,
        },
    ]
}
