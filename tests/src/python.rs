//! The Python programs of the HTTP/2 tests (`tests/h2/`: a gRPC server and client on `grpcio`,
//! a plain h2c server on `h2`) and the venv `cargo xtask setup` makes for them
//! (`<target>/tools/h2-venv`, or `$MIRROR_H2_VENV`), with the versions pinned in
//! `tests/h2/requirements.txt`. A recording server run from them is a [`PythonServer`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;

use crate::background::Background;
use crate::command::Output;
use crate::environment::{tools_dir, workspace};
use crate::netns::Netns;
use crate::scratch::ScratchDir;

/// The variable through which `cargo xtask test` names the venv.
pub const VENV_ENV: &str = "MIRROR_H2_VENV";
/// How long a server may take to import its modules and bind.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The venv: `$MIRROR_H2_VENV`, else `<target>/tools/h2-venv`.
pub fn venv() -> PathBuf {
    match std::env::var_os(VENV_ENV).filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => tools_dir().join("h2-venv"),
    }
}

/// The venv's interpreter.
pub fn python() -> PathBuf {
    venv().join("bin").join("python")
}

/// A program under `tests/h2/`.
pub fn program(name: &str) -> PathBuf {
    workspace().join("tests").join("h2").join(name)
}

/// `grpcio X, h2 Y` when the venv's Python imports both; why not otherwise. Asked once per
/// process.
pub fn versions() -> std::result::Result<String, String> {
    static VERSIONS: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    VERSIONS
        .get_or_init(|| {
            let python = python();
            if !python.exists() {
                return Err(format!(
                    "no Python venv at {} (run `cargo xtask setup`, or set {VENV_ENV})",
                    venv().display()
                ));
            }
            let probe =
                "import grpc, h2; print('grpcio', grpc.__version__ + ', h2', h2.__version__)";
            match crate::command::output(&python.display().to_string(), &["-c", probe]) {
                Ok(output) if output.success => Ok(output.stdout.trim().to_owned()),
                Ok(output) => Err(format!(
                    "the venv at {} lacks grpcio or h2 (run `cargo xtask setup`): {}",
                    venv().display(),
                    output.stderr.trim()
                )),
                Err(error) => Err(format!("{error:#}")),
            }
        })
        .clone()
}

/// The interpreter's arguments before a program's own: unbuffered output (the ready line must
/// not wait in a buffer), and no `__pycache__` written into the source tree.
fn interpreter_args(program_name: &str) -> Vec<String> {
    vec![
        "-u".into(),
        "-B".into(),
        program(program_name).display().to_string(),
    ]
}

/// Runs `tests/h2/<program_name> args...` to completion inside `netns`, with `stdin`, killed at
/// `timeout`.
pub fn run(
    netns: &Netns,
    program_name: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let mut full: Vec<String> = interpreter_args(program_name);
    full.extend(args.iter().map(|arg| (*arg).to_owned()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    netns.exec_output(&python().display().to_string(), &full, stdin, timeout)
}

/// A recording server from `tests/h2/` running inside a namespace: it appends one JSON object
/// per line to a file of its own (in a directory removed on drop) and prints `READY …` once it
/// listens. Killed on drop.
pub struct PythonServer {
    process: Background,
    record: PathBuf,
    /// Holds the recording; removed after the process is gone (fields drop in order).
    _dir: ScratchDir,
}

impl PythonServer {
    /// `tests/h2/answers_server.py` as `role` (`"primary"` or `"shadow"`) on `address`: the
    /// HTTP/1.1 server whose answers the comparison tests (and the demo) compare.
    pub fn answers(
        role: &str,
        netns: &Netns,
        address: std::net::SocketAddr,
    ) -> Result<PythonServer> {
        PythonServer::start(
            &format!("{role} answers server"),
            netns,
            "answers_server.py",
            vec![
                "--listen".into(),
                address.to_string(),
                "--role".into(),
                role.into(),
            ],
        )
    }

    /// Starts `tests/h2/<program_name> --record <file> args...` in `netns` and waits until it
    /// listens. `role` names it in messages (`"shadow gRPC server"`).
    pub fn start(
        role: &str,
        netns: &Netns,
        program_name: &str,
        args: Vec<String>,
    ) -> Result<PythonServer> {
        if let Err(reason) = versions() {
            bail!("{role}: cannot start: {reason}");
        }
        let dir = ScratchDir::new(netns, program_name.trim_end_matches(".py"))?;
        let record = dir.join("record.jsonl");
        let mut full = interpreter_args(program_name);
        full.extend(["--record".into(), record.display().to_string()]);
        full.extend(args);
        let mut process = Background::spawn(role, netns, &python().display().to_string(), &full)?;
        process.wait_for_line("READY ", READY_TIMEOUT)?;
        Ok(PythonServer {
            process,
            record,
            _dir: dir,
        })
    }

    /// The records written so far, in the order they were written (a line still being written
    /// is left for the next read).
    pub fn records<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        read_records(&self.record)
    }

    /// Reads the records until `done` holds for them; fails after `timeout` naming `what`.
    pub fn wait_for_records<T: DeserializeOwned>(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[T]) -> bool,
    ) -> Result<Vec<T>> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.records()?;
            if done(&records) {
                return Ok(records);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not within {timeout:?}; {} records so far",
                    records.len()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server printed (errors, tracebacks).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Where it writes its records.
    pub fn record_path(&self) -> &Path {
        &self.record
    }

    /// The server's process, to signal or kill it.
    pub fn process(&mut self) -> &mut Background {
        &mut self.process
    }
}

/// The complete JSON lines of `path` (missing file: none yet).
fn read_records<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(anyhow!(error).context(format!("reading {}", path.display()))),
    };
    parse_records(&text).with_context(|| format!("in {}", path.display()))
}

fn parse_records<T: DeserializeOwned>(text: &str) -> Result<Vec<T>> {
    // Only lines ended by a newline are complete.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("bad record line: {line}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Line {
        seq: u64,
    }

    #[test]
    fn a_line_still_being_written_is_left_out() -> Result<()> {
        let records: Vec<Line> = parse_records("{\"seq\": 0}\n{\"seq\": 1}\n{\"se")?;
        assert_eq!(records, [Line { seq: 0 }, Line { seq: 1 }]);
        assert!(parse_records::<Line>("")?.is_empty());
        assert!(parse_records::<Line>("not json\n").is_err());
        Ok(())
    }

    #[test]
    fn programs_live_beside_the_requirements() {
        for name in [
            "grpc_server.py",
            "grpc_client.py",
            "h2_server.py",
            "harness.py",
            "requirements.txt",
        ] {
            assert!(program(name).is_file(), "{}", program(name).display());
        }
    }
}
