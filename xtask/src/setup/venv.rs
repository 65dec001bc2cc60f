//! Python virtual environments under `<target>/tools`, each installed from a requirements file
//! with exact pins: the deploy test's manifest validator, and the HTTP/2 tests' programs
//! (`tests/h2/`: grpcio, h2). A venv is current when its stamp (a copy of the requirements it
//! was installed from) equals the requirements file, so checking costs no Python start.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::{build, cmd};

/// The variable through which `cargo xtask test` tells the HTTP/2 tests where their venv is.
pub const H2_VENV_ENV: &str = "MIRROR_H2_VENV";
const STAMP: &str = "installed-requirements.txt";

/// The HTTP/2 tests' venv.
pub fn h2_venv() -> PathBuf {
    build::target_dir().join("tools").join("h2-venv")
}

/// Its pinned requirements.
pub fn h2_requirements() -> PathBuf {
    build::workspace_root()
        .join("tests")
        .join("h2")
        .join("requirements.txt")
}

/// Whether `venv` holds exactly what `requirements` pins (and its interpreter still resolves).
pub fn is_current(venv: &Path, requirements: &Path) -> bool {
    match (
        fs::read(venv.join(STAMP)),
        fs::read(requirements),
        fs::metadata(venv.join("bin").join("python")),
    ) {
        (Ok(stamp), Ok(wanted), Ok(_)) => stamp == wanted,
        _ => false,
    }
}

/// The shell commands [`create`] runs, for a dry run.
pub fn describe(venv: &Path, requirements: &Path) -> String {
    format!(
        "python3 -m venv --clear {0} && {0}/bin/pip install -r {1}",
        venv.display(),
        requirements.display()
    )
}

/// Makes `venv` afresh with exactly `requirements`, then stamps it; the commands' output goes
/// to `log`.
pub fn create(venv: &Path, requirements: &Path, log: &Path) -> Result<()> {
    let python = cmd::find_program("python3", &cmd::system_dirs())
        .context("python3 (with its venv module) not found")?;
    cmd::run_logged(
        Command::new(python)
            .args(["-m", "venv", "--clear"])
            .arg(venv),
        log,
    )?;
    cmd::run_logged(
        Command::new(venv.join("bin").join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(requirements),
        log,
    )?;
    fs::copy(requirements, venv.join(STAMP))
        .with_context(|| format!("stamping {}", venv.display()))?;
    Ok(())
}

/// Whether `python3 -m venv` can work here (Debian splits the module into python3-venv).
pub fn python_can_make_venvs() -> bool {
    cmd::find_program("python3", &cmd::system_dirs()).is_some_and(|python| {
        cmd::probe(Command::new(python).args(["-c", "import venv, ensurepip"])).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_venv_is_current_only_with_the_same_requirements() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-venv-test-{}", std::process::id()));
        let venv = dir.join("venv");
        fs::create_dir_all(venv.join("bin"))?;
        let requirements = dir.join("requirements.txt");
        fs::write(&requirements, "grpcio==1.0\n")?;
        assert!(
            !is_current(&venv, &requirements),
            "no stamp, no interpreter"
        );
        fs::write(venv.join("bin").join("python"), "")?;
        fs::copy(&requirements, venv.join(STAMP))?;
        assert!(is_current(&venv, &requirements));
        fs::write(&requirements, "grpcio==2.0\n")?;
        assert!(!is_current(&venv, &requirements), "a changed pin");
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn the_h2_requirements_pin_every_package() -> Result<()> {
        let text = fs::read_to_string(h2_requirements())?;
        let pins: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        assert!(pins.iter().any(|p| p.starts_with("grpcio==")));
        assert!(pins.iter().any(|p| p.starts_with("h2==")));
        assert!(pins.iter().all(|p| p.contains("==")), "{pins:?}");
        Ok(())
    }
}
