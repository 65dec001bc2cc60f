//! Running external programs: echoing what runs, turning failures into errors that name the
//! command, keeping installers' chatter in a log file, and finding programs that may live outside
//! `PATH` (sbin, `~/.cargo/bin`).

use std::{
    env,
    ffi::OsStr,
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// The command line as a person would type it (program and arguments, no environment).
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with inherited stdio; an error names the command and how it ended.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Lines of a failed command's log shown on the console.
const LOG_TAIL_LINES: usize = 25;

/// Runs `cmd` with its stdout and stderr appended to `log` (after a line naming the command), so
/// the console keeps one line per step; an error names the command, the log, and quotes the
/// log's last lines.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening the log {}", log.display()))?;
    writeln!(file, "\n$ {}", display(cmd))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        bail!(
            "`{}` failed ({status}); its output is in {}, ending:\n{}",
            display(cmd),
            log.display(),
            tail(&text, LOG_TAIL_LINES)
        );
    }
    Ok(())
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stdout of `cmd` when it starts and succeeds; `None` otherwise (this is for probing).
pub fn probe(cmd: &mut Command) -> Option<String> {
    let output = cmd.stderr(std::process::Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `$CARGO_HOME`, defaulting to `~/.cargo` like cargo does.
pub fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
}

/// Finds `name` on `PATH`, then in `extra_dirs` (for tools in sbin or `~/.cargo/bin` when those
/// are not on a user's `PATH`).
pub fn find_program(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(extra_dirs.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Directories where system tools live even when a non-root `PATH` leaves them out.
pub fn system_dirs() -> Vec<PathBuf> {
    [
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_command_keeps_its_output_out_of_the_console_and_a_failure_quotes_it() -> Result<()>
    {
        let dir = env::temp_dir().join(format!("xtask-cmd-log-{}", std::process::id()));
        let log = dir.join("setup.log");
        run_logged(
            Command::new("sh").args(["-c", "echo chatter; echo more >&2"]),
            &log,
        )?;
        let error = run_logged(
            Command::new("sh").args(["-c", "echo why it broke; exit 3"]),
            &log,
        )
        .expect_err("exit 3 is a failure");
        let text = fs::read_to_string(&log)?;
        fs::remove_dir_all(&dir)?;
        assert!(text.contains("$ sh -c echo chatter; echo more >&2\nchatter\nmore\n"));
        let message = format!("{error:#}");
        assert!(message.contains(&log.display().to_string()), "{message}");
        assert!(message.ends_with("why it broke"), "{message}");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        Ok(())
    }
}
