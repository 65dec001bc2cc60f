//! Running `ip`, `tc`, `bpftool` (and the HTTP/2 tools, through `ip netns exec`) with a time
//! limit, failing with their stderr in the message.

use std::io::{Read, Write};
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
    output_within(program, args, None, COMMAND_TIMEOUT)
}

/// Runs `program args...` with `stdin` (or none) and a time limit of its own; returns what it
/// printed whether it succeeded or not. A program still running at `timeout` is killed.
pub fn output_within(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    // Written from a thread of its own: a program may print a lot before it reads everything.
    let feeder = stdin.zip(child.stdin.take()).map(|(bytes, mut pipe)| {
        let bytes = bytes.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            // Our own child, ended by its handle.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{} {}` did not finish within {timeout:?}; it printed: {}",
                program,
                args.join(" "),
                stderr.join().unwrap_or_default().trim()
            );
        }
        thread::sleep(Duration::from_millis(2));
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
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
