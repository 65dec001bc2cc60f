//! Running `ip`, `tc`, `bpftool` with a time limit, failing with their stderr in the message.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// No helper command the harness runs should take anywhere near this long.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Output of a finished command.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args...`, returns its stdout, fails when it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = output(program, args)?;
    if !output.success {
        bail!(
            "`{} {}` failed: {}",
            program,
            args.join(" "),
            output.stderr.trim()
        );
    }
    Ok(output.stdout)
}

/// Runs `program args...` and returns what it printed whether it succeeded or not.
pub fn output(program: &str, args: &[&str]) -> Result<Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            // Our own child, ended by its handle.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{} {}` did not finish within {:?}",
                program,
                args.join(" "),
                COMMAND_TIMEOUT
            );
        }
        thread::sleep(Duration::from_millis(2));
    };
    Ok(Output {
        success: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}
