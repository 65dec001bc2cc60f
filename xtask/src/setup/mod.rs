//! `cargo xtask setup`: detect what building and testing need, install what is missing (apt
//! packages, the rustup link to Debian's rustc, bpf-linker), and hand back the eBPF toolchain.
//! Quick, and one line of output, when everything is present; otherwise one line per step, with
//! the installers' own output in `<target>/setup.log` ([`log_path`]).

mod detect;
pub mod kube_validator;
mod plan;
pub mod venv;

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use plan::{Action, Plan};
pub use plan::{Scope, RUNTIME_TOOLS};

use crate::{
    build, cmd,
    toolchain::{self, Toolchain},
};

/// Where the installers' output goes (apt, dpkg, cargo install, pip): the console gets one line
/// per step.
pub fn log_path() -> PathBuf {
    build::target_dir().join("setup.log")
}

/// Makes the machine ready for `scope` and returns the eBPF toolchain. With `dry_run`, prints
/// what would run and installs nothing.
pub fn run(scope: Scope, dry_run: bool) -> Result<Toolchain> {
    let detected = detect::detect();
    let plan = plan::plan(&detected, scope);
    let blocker = plan.blocker(&detected);
    if matches!(scope, Scope::Everything | Scope::WithVms) {
        kube_validator::ensure(dry_run);
    }

    if dry_run {
        for action in &plan.actions {
            eprintln!("setup: would run: {}", action.shell(detected.is_root));
        }
        if let Some(blocker) = blocker {
            eprintln!("setup: note: {blocker}");
        }
        eprintln!(
            "setup: dry run; eBPF toolchain: {}",
            plan.toolchain.describe()
        );
        return found_toolchain(&plan).or_else(|_| {
            Ok(Toolchain {
                ebpf: plan.toolchain,
                rustup: "rustup".into(),
                bpf_linker: "bpf-linker".into(),
            })
        });
    }

    if let Some(blocker) = blocker {
        bail!(blocker);
    }
    let log = log_path();
    if !plan.actions.is_empty() {
        eprintln!(
            "setup: {} steps; their output goes to {}",
            plan.actions.len(),
            log.display()
        );
    }
    for action in &plan.actions {
        eprint!("setup: {} ", action.announce());
        let started = Instant::now();
        let result = match action {
            Action::InstallQemuFromBackports { codename } => {
                crate::vm::host_qemu::install(&crate::vm::vm_dir().join("host-apt"), codename, &log)
            }
            Action::CreateH2Venv => venv::create(&venv::h2_venv(), &venv::h2_requirements(), &log),
            _ => command_for(action).and_then(|mut command| cmd::run_logged(&mut command, &log)),
        };
        match result {
            Ok(()) => eprintln!("done in {:.0} s", started.elapsed().as_secs_f64()),
            Err(error) => {
                eprintln!("failed");
                return Err(error);
            }
        }
    }

    let toolchain = found_toolchain(&plan)?;
    let (_, bpf_linker_version) = detect::find_bpf_linker().unzip();
    eprintln!(
        "setup: {}; eBPF toolchain: {}; {} at {}",
        if plan.actions.is_empty() {
            "nothing to install"
        } else {
            "done"
        },
        toolchain.ebpf.describe(),
        bpf_linker_version.as_deref().unwrap_or("bpf-linker"),
        toolchain.bpf_linker.display(),
    );
    Ok(toolchain)
}

fn command_for(action: &Action) -> Result<Command> {
    let (env, argv) = action.invocation();
    let (program, args) = argv.split_first().context("action without a program")?;
    let mut command = match action {
        // Not the workspace's cargo: rustup's default, without the outer `cargo run` environment.
        Action::InstallBpfLinker => toolchain::standalone_cargo(),
        // rustup may be in $CARGO_HOME/bin without being on PATH.
        Action::LinkDebianToolchain => {
            Command::new(detect::find_rustup().context("rustup not found")?)
        }
        Action::AptUpdate | Action::AptInstall(_) | Action::AptInstallWithoutRecommends(_) => {
            Command::new(program)
        }
        Action::InstallQemuFromBackports { .. } | Action::CreateH2Venv => {
            bail!("not a single command: {action:?}")
        }
    };
    command
        .args(args)
        .envs(env.iter().copied())
        .env("DEBIAN_FRONTEND", "noninteractive");
    Ok(command)
}

fn found_toolchain(plan: &Plan) -> Result<Toolchain> {
    let rustup = detect::find_rustup()
        .context("rustup not found on PATH or in $CARGO_HOME/bin; install it from rustup.rs")?;
    let (bpf_linker, _version) = detect::find_bpf_linker()
        .context("bpf-linker not found on PATH or in $CARGO_HOME/bin after setup")?;
    Ok(Toolchain {
        ebpf: plan.toolchain,
        rustup,
        bpf_linker,
    })
}
