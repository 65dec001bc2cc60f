//! Launchers: a shell script the harness starts in the daemon's place, which `exec`s the daemon
//! under another program (callgrind, `taskset`) with the arguments it was given. The pid the
//! harness holds stays the daemon's, so its CPU, RSS and signals are the daemon's own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `path`, an executable script running `program` under `wrapper` (its words, already
/// shell-safe), and returns `path`.
pub fn write(path: &Path, wrapper: &[&str], program: &Path) -> Result<PathBuf> {
    let script = format!(
        "#!/bin/sh\nexec {} {} \"$@\"\n",
        wrapper.join(" "),
        program.display()
    );
    std::fs::write(path, script).with_context(|| format!("cannot write {}", path.display()))?;
    let mut permissions = std::fs::metadata(path)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions)?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_execs_the_program_under_its_wrapper_with_its_arguments() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("launcher-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = write(
            &dir.join("pinned"),
            &["taskset", "-c", "1"],
            Path::new("/opt/mirror-daemon"),
        )?;
        let script = std::fs::read_to_string(&path)?;
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path)?.permissions());
        // The script runs: `sh` execs `echo` in place of taskset, which prints what it was given.
        let echoed = write(
            &dir.join("echoed"),
            &["echo"],
            Path::new("/opt/mirror-daemon"),
        )?;
        let output = std::process::Command::new(&echoed)
            .args(["run", "--config", "a b.toml"])
            .output()?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(
            script,
            "#!/bin/sh\nexec taskset -c 1 /opt/mirror-daemon \"$@\"\n"
        );
        assert_eq!(mode & 0o111, 0o111, "not executable: {mode:o}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "/opt/mirror-daemon run --config a b.toml\n"
        );
        Ok(())
    }
}
