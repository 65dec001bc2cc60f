//! The offline Kubernetes manifest validator that the deploy test (`tests/tests/deploy.rs`) runs:
//! PyPI's `kubernetes-validate`, which bundles the Kubernetes OpenAPI schemas, installed with the
//! versions pinned in `deploy/validate-requirements.txt` into a venv under `<target>/tools`.
//!
//! Only that one test needs it, so a failure to install is a warning, not a setup error: the test
//! itself fails under `CI=true` when the validator is missing, and skips loudly otherwise.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

use crate::{build, cmd};

/// The variable through which `cargo xtask test` tells the deploy test where the validator is.
pub const ENV: &str = "MIRROR_KUBE_VALIDATE";

fn venv() -> PathBuf {
    build::target_dir().join("tools").join("venv")
}

/// The validator's command, where setup installs it.
pub fn executable() -> PathBuf {
    venv().join("bin").join("kubernetes-validate")
}

fn requirements() -> PathBuf {
    build::workspace_root()
        .join("deploy")
        .join("validate-requirements.txt")
}

/// Installs the validator unless the pinned version is already there; with `dry_run`, only says
/// what it would run.
pub fn ensure(dry_run: bool) {
    let requirements = requirements();
    let pinned = match pinned_version(&requirements) {
        Ok(pinned) => pinned,
        Err(e) => {
            eprintln!(
                "setup: warning: kubernetes-validate not installed, so the deploy test's manifest \
                 validation will fail under CI=true and skip otherwise: {e:#}"
            );
            return;
        }
    };
    let installed = cmd::probe(Command::new(executable()).arg("--version"));
    if installed.as_deref().map(str::trim) == Some(pinned.as_str()) {
        return;
    }
    let venv = venv();
    if dry_run {
        eprintln!(
            "setup: would run: {}",
            super::venv::describe(&venv, &requirements)
        );
        return;
    }
    eprint!(
        "setup: installing kubernetes-validate {pinned} into {} (about 10 s)... ",
        venv.display()
    );
    let started = std::time::Instant::now();
    match super::venv::create(&venv, &requirements, &super::log_path()) {
        Ok(()) => eprintln!("done in {:.0} s", started.elapsed().as_secs_f64()),
        Err(e) => eprintln!(
            "failed\nsetup: warning: kubernetes-validate is not installed: the deploy test's \
             manifest validation will fail under CI=true and skip otherwise; everything else \
             works ({e:#})"
        ),
    }
}

/// The `kubernetes-validate==X` pin of a requirements file.
fn pinned_version(requirements: &std::path::Path) -> Result<String> {
    let text = fs::read_to_string(requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    match parse_pin(&text) {
        Some(version) => Ok(version),
        None => bail!("{} pins no kubernetes-validate", requirements.display()),
    }
}

fn parse_pin(requirements: &str) -> Option<String> {
    requirements.lines().find_map(|line| {
        line.trim()
            .strip_prefix("kubernetes-validate==")
            .map(|version| version.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_read_from_the_requirements() {
        let text = "# comment\nattrs==26.1.0\nkubernetes-validate==1.37.0\n";
        assert_eq!(parse_pin(text).as_deref(), Some("1.37.0"));
        assert_eq!(parse_pin("attrs==26.1.0\n"), None);
    }

    #[test]
    fn the_repository_pins_a_version() {
        assert!(pinned_version(&requirements()).is_ok());
    }
}
