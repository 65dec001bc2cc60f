//! Python `requests` sessions as keep-alive clients across a restart: `tests/h2/keepalive_client.py`
//! in the venv `cargo xtask setup` makes (`requests` is pinned in `tests/h2/requirements.txt`),
//! one `requests.Session` per thread in a loop, with requests' defaults (no retries). Stopped
//! with SIGTERM, it prints its counts per millisecond, its failures and the TCP connections
//! each session opened as one JSON line.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use mirror_tests::background::Background;
use mirror_tests::netns::Netns;
use mirror_tests::python;
use nix::sys::signal::Signal;
use serde::Deserialize;

use super::timeline::Bucket;

const PROGRAM: &str = "keepalive_client.py";

/// `requests X` when the venv's Python imports it; why not otherwise.
pub fn requests_version() -> std::result::Result<String, String> {
    let interpreter = python::python();
    if !interpreter.exists() {
        return Err(format!(
            "no Python venv at {} (run `cargo xtask setup`, or set {})",
            python::venv().display(),
            python::VENV_ENV
        ));
    }
    let probe = "import requests; print('requests', requests.__version__)";
    match mirror_tests::command::output(&interpreter.display().to_string(), &["-c", probe]) {
        Ok(output) if output.success => Ok(output.stdout.trim().to_owned()),
        Ok(output) => Err(format!(
            "the venv at {} lacks requests (run `cargo xtask setup`): {}",
            python::venv().display(),
            output.stderr.trim()
        )),
        Err(error) => Err(format!("{error:#}")),
    }
}

/// How the sessions run.
pub struct SessionsOptions<'a> {
    pub url: String,
    pub host: &'a str,
    pub sessions: usize,
    /// `taskset -c` list.
    pub cpus: Option<&'a str>,
}

/// The sessions running in a namespace.
pub struct Sessions {
    process: Background,
}

/// One request that raised, as the program reports it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub ms: u64,
    pub session: usize,
    pub exception: String,
    pub detail: String,
}

/// What the sessions reported when stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionsResult {
    pub buckets: Vec<Bucket>,
    pub failures: Vec<Failure>,
    /// TCP connections each session opened.
    pub connections: Vec<u64>,
}

impl Sessions {
    /// Starts the sessions in `netns` and waits until each has had an answer.
    pub fn start(netns: &Netns, options: &SessionsOptions<'_>) -> Result<Sessions> {
        if let Err(reason) = requests_version() {
            bail!("the Python sessions cannot start: {reason}");
        }
        let mut args: Vec<String> = Vec::new();
        if let Some(cpus) = options.cpus {
            args.extend([
                "-c".into(),
                cpus.into(),
                python::python().display().to_string(),
            ]);
        }
        args.extend([
            "-u".into(),
            "-B".into(),
            python::program(PROGRAM).display().to_string(),
            "--url".into(),
            options.url.clone(),
            "--host".into(),
            options.host.into(),
            "--sessions".into(),
            options.sessions.to_string(),
        ]);
        let program = match options.cpus {
            Some(_) => "taskset".to_owned(),
            None => python::python().display().to_string(),
        };
        let mut process = Background::spawn("Python requests sessions", netns, &program, &args)?;
        process.wait_for_line("READY ", Duration::from_secs(20))?;
        Ok(Sessions { process })
    }

    /// Stops the sessions (SIGTERM: each finishes its request under way) and reads their
    /// report.
    pub fn stop(mut self) -> Result<SessionsResult> {
        self.process.signal(Signal::SIGTERM)?;
        let line = self
            .process
            .wait_for_line("RESULT ", Duration::from_secs(20))?;
        let status = self.process.wait_exit(Duration::from_secs(5))?;
        if !status.success() {
            bail!(
                "the Python sessions failed ({status}): {}",
                self.process.log()
            );
        }
        parse_result(&line)
    }
}

/// The program's report, as JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    /// `[ms, answered 200, answered otherwise, failed]`.
    buckets: Vec<[u64; 4]>,
    failures: Vec<Failure>,
    connections: Vec<u64>,
}

/// Reads the JSON after `RESULT `.
pub fn parse_result(json: &str) -> Result<SessionsResult> {
    let report: Report =
        serde_json::from_str(json).context("the Python sessions' report is not as expected")?;
    Ok(SessionsResult {
        buckets: report
            .buckets
            .into_iter()
            .map(|[ms, ok, other_status, failed]| Bucket {
                ms,
                ok,
                other_status,
                failed,
            })
            .collect(),
        failures: report.failures,
        connections: report.connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sessions_report_reads_buckets_failures_and_connections() -> Result<()> {
        let json = r#"{"buckets":[[1000,3,0,0],[1001,1,1,1]],
            "failures":[{"ms":1001,"session":2,"exception":"ConnectionError",
                         "detail":"('Connection aborted.', RemoteDisconnected(...))"}],
            "connections":[1,2,1]}"#;
        let result = parse_result(json)?;
        assert_eq!(
            result.buckets[1],
            Bucket {
                ms: 1001,
                ok: 1,
                other_status: 1,
                failed: 1
            }
        );
        assert_eq!(result.failures[0].exception, "ConnectionError");
        assert_eq!(result.failures[0].session, 2);
        assert_eq!(result.connections, [1, 2, 1]);
        Ok(())
    }

    #[test]
    fn a_report_of_another_shape_is_refused() {
        assert!(
            parse_result(r#"{"buckets":[[1000,3,0]],"failures":[],"connections":[]}"#).is_err()
        );
        assert!(parse_result(r#"{"buckets":[],"failures":[],"connections":[],"x":1}"#).is_err());
        assert!(parse_result("not json").is_err());
    }

    #[test]
    fn the_program_lives_beside_the_pinned_requirements() -> Result<()> {
        assert!(python::program(PROGRAM).is_file());
        let requirements = std::fs::read_to_string(python::program("requirements.txt"))?;
        assert!(
            requirements
                .lines()
                .any(|line| line.starts_with("requests==")),
            "requests is not pinned"
        );
        Ok(())
    }
}
