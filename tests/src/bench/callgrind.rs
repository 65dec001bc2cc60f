//! `bench --instructions`: the daemon run under valgrind's callgrind, and what it executes during
//! a phase counted: instructions, and the misses of callgrind's simulated caches and branch
//! predictor.
//!
//! Time per request on a two-core bed moves with everything else the bed runs (who preempts whom,
//! whose data is still in the caches); instructions executed do not, so they tell a longer code
//! path from a costlier wake-up. The simulated misses tell the rest apart: a path of as many
//! instructions that runs through more code (instruction-cache misses) or more scattered data
//! costs more time. They are callgrind's model (`--cache-sim=yes --branch-sim=yes`: first-level
//! caches like the machine's, here 32 KiB each, 8-way, 64-byte lines), not the machine's counters,
//! which this VM does not expose. The daemon starts with instrumentation off
//! (`--instr-atstart=no`: start-up and warm-up are not counted); each measured phase switches it
//! on, and at its end off, then asks for a dump and reads its totals (`callgrind_control`,
//! Debian's `valgrind`). Under callgrind the daemon runs some 20 to 50 times slower, so the phases
//! run at a lower rate.

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
                "--cache-sim=yes",
                "--branch-sim=yes",
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

    /// Stops counting and returns what was counted since [`Callgrind::start`].
    pub fn stop(&self, pid: u32) -> Result<Counts> {
        control(pid, &["--instr=off"])?;
        let before = self.dumps(pid)?;
        control(pid, &["--dump=phase"])?;
        // The dump is written by the daemon's process, soon after the request.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(path) = self.dumps(pid)?.into_iter().find(|p| !before.contains(p)) {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if let Some(counts) = Counts::of_dump(&text) {
                    return Ok(counts);
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

/// What the daemon executed during a phase, every thread together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub instructions: u64,
    /// First-level instruction-cache misses (`I1mr`).
    pub i1_misses: u64,
    /// First-level data-cache misses, reads and writes (`D1mr` + `D1mw`).
    pub d1_misses: u64,
    /// Mispredicted branches, conditional and indirect (`Bcm` + `Bim`).
    pub mispredicted: u64,
}

impl Counts {
    /// The counts of a complete dump: its `totals:` line (the last, ended by a newline once
    /// written whole), in the order of its `events:` line; `None` while the dump is still being
    /// written, or if it lacks an event.
    fn of_dump(dump: &str) -> Option<Counts> {
        let field = |prefix: &str| {
            dump.split_inclusive('\n')
                .find_map(|line| line.strip_prefix(prefix)?.strip_suffix('\n'))
        };
        let events: Vec<&str> = field("events:")?.split_whitespace().collect();
        let totals: Vec<u64> = field("totals:")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let count = |event: &str| {
            let at = events.iter().position(|e| *e == event)?;
            totals.get(at).copied()
        };
        Some(Counts {
            instructions: count("Ir")?,
            i1_misses: count("I1mr")?,
            d1_misses: count("D1mr")? + count("D1mw")?,
            mispredicted: count("Bcm")? + count("Bim")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_counts_its_totals_line_by_its_events_and_a_partial_one_nothing() {
        // As callgrind writes it with --cache-sim=yes --branch-sim=yes (the summary line's
        // values wrap when instrumentation was switched off and on; the totals are right).
        let events = "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim\n";
        let dump = format!(
            "version: 1\ncmd:  mirror-daemon run\npart: 1\n{events}\
             summary: 18446744073709534317 1 2 3 4 5 6 7 8 9 10 11 12\n\nfn=(1) main\n3 12\n\n\
             totals: 90026002 25561705 18535405 5087050 1082954 661198 2846 1906 4510 \
             11111192 1005014 1442569 510491\n"
        );
        assert_eq!(
            Counts::of_dump(&dump),
            Some(Counts {
                instructions: 90_026_002,
                i1_misses: 5_087_050,
                d1_misses: 1_082_954 + 661_198,
                mispredicted: 1_005_014 + 510_491,
            })
        );
        // The events' order is the dump's, not a fixed one.
        let reordered = "events: I1mr Ir D1mw D1mr Bim Bcm\ntotals: 5 100 1 2 3 4\n";
        assert_eq!(
            Counts::of_dump(reordered),
            Some(Counts {
                instructions: 100,
                i1_misses: 5,
                d1_misses: 3,
                mispredicted: 7,
            })
        );
        // Still being written: no totals line yet, or not all of it.
        assert_eq!(
            Counts::of_dump(&format!("version: 1\n{events}fn=(1) main\n")),
            None
        );
        let cut = dump.trim_end_matches('\n');
        assert_eq!(Counts::of_dump(&cut[..cut.len() - 2]), None);
        assert_eq!(Counts::of_dump(cut), None);
        // Instructions only (no simulation asked for), or a total that is not a number.
        assert_eq!(Counts::of_dump("events: Ir\ntotals: 161958603\n"), None);
        assert_eq!(Counts::of_dump(&format!("{events}totals: many\n")), None);
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
            script.contains(
                "exec valgrind --tool=callgrind --instr-atstart=no --cache-sim=yes \
                 --branch-sim=yes"
            ) && script.contains(&format!(
                "--callgrind-out-file={}/callgrind.%p.out",
                dir.display()
            )) && script.trim_end().ends_with("/opt/mirror-daemon \"$@\""),
            "{script}"
        );
        assert_eq!(mode & 0o111, 0o111, "not executable: {mode:o}");
        Ok(())
    }
}
