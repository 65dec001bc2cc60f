//! `bench --instructions`: the daemon run under valgrind's callgrind, and the instructions it
//! executes during a phase counted.
//!
//! Time per request on a two-core bed moves with everything else the bed runs (who preempts whom,
//! whose data is still in the caches); instructions executed do not, so they tell a longer code
//! path from a costlier wake-up. The daemon starts with instrumentation off (`--instr-atstart=no`:
//! start-up and warm-up are not counted); each measured phase switches it on, and at its end off,
//! then asks for a dump and reads its total (`callgrind_control`, Debian's `valgrind`). Under
//! callgrind the daemon runs some 20 to 50 times slower, so the phases run at a lower rate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::launcher;

/// The commands this needs, all from Debian's `valgrind`.
pub const TOOLS: [&str; 2] = ["valgrind", "callgrind_control"];

/// Where each daemon's dumps go, and the script that starts a daemon under callgrind.
#[derive(Clone, Debug)]
pub struct Callgrind {
    /// Runs `daemon` under callgrind with the arguments it is given.
    pub launcher: PathBuf,
    out_dir: PathBuf,
}

impl Callgrind {
    /// Writes the launcher for `daemon` into `dir` (created), where the dumps go too.
    pub fn prepare(daemon: &Path, dir: &Path) -> Result<Callgrind> {
        std::fs::create_dir_all(dir)?;
        let out_file = format!("--callgrind-out-file={}/callgrind.%p.out", dir.display());
        let launcher = launcher::write(
            &dir.join("mirror-daemon-callgrind"),
            &[
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                &out_file,
            ],
            daemon,
        )?;
        Ok(Callgrind {
            launcher,
            out_dir: dir.to_path_buf(),
        })
    }

    /// Starts counting the instructions of the daemon `pid`, from zero.
    pub fn start(&self, pid: u32) -> Result<()> {
        control(pid, &["--instr=on"])?;
        control(pid, &["--zero"])
    }

    /// Stops counting and returns the instructions counted since [`Callgrind::start`].
    pub fn stop(&self, pid: u32) -> Result<u64> {
        control(pid, &["--instr=off"])?;
        let before = self.dumps(pid)?;
        control(pid, &["--dump=phase"])?;
        // The dump is written by the daemon's process, soon after the request.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(path) = self.dumps(pid)?.into_iter().find(|p| !before.contains(p)) {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if let Some(total) = totals(&text) {
                    return Ok(total);
                }
            }
            if Instant::now() > deadline {
                bail!("callgrind wrote no dump for pid {pid} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The dumps of `pid` written so far (`callgrind.<pid>.out.<n>`).
    fn dumps(&self, pid: u32) -> Result<Vec<PathBuf>> {
        let prefix = format!("callgrind.{pid}.out.");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.out_dir)? {
            let path = entry?.path();
            let named = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix));
            if named {
                found.push(path);
            }
        }
        Ok(found)
    }
}

fn control(pid: u32, args: &[&str]) -> Result<()> {
    let output = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .context("cannot run callgrind_control (Debian's valgrind)")?;
    ensure!(
        output.status.success(),
        "callgrind_control {} {pid} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The instructions a complete dump counts: its `totals:` line (first event, `Ir`).
fn totals(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_counts_its_totals_line_and_a_partial_one_nothing() {
        let dump = "version: 1\ncmd:  mirror-daemon run\npart: 1\nevents: Ir\n\
                    summary: 161958603\n\nfn=(1) main\n3 12\n\ntotals: 161958603\n";
        assert_eq!(totals(dump), Some(161_958_603));
        // Still being written: no totals line yet.
        assert_eq!(
            totals("version: 1\nevents: Ir\nsummary: 5\nfn=(1) main\n"),
            None
        );
        assert_eq!(totals("totals: many\n"), None);
    }

    #[test]
    fn the_launcher_runs_the_daemon_under_callgrind_with_its_arguments() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("callgrind-test-{}", std::process::id()));
        let callgrind = Callgrind::prepare(Path::new("/opt/mirror-daemon"), &dir)?;
        let script = std::fs::read_to_string(&callgrind.launcher)?;
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&callgrind.launcher)?.permissions(),
        );
        std::fs::remove_dir_all(&dir)?;
        assert!(
            script.contains("exec valgrind --tool=callgrind --instr-atstart=no")
                && script.contains(&format!(
                    "--callgrind-out-file={}/callgrind.%p.out",
                    dir.display()
                ))
                && script.trim_end().ends_with("/opt/mirror-daemon \"$@\""),
            "{script}"
        );
        assert_eq!(mode & 0o111, 0o111, "not executable: {mode:o}");
        Ok(())
    }
}
