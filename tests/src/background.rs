//! A program the test runs in the background inside a namespace (the daemon, a Python gRPC or
//! h2c server, `nghttpd`): started with `ip netns exec`, which execs in place so the child's pid
//! is the program's; its stdout and stderr kept as a log (and echoed live on request); killed
//! and reaped on drop, also when the test panics, and its log printed then.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns::Netns;

/// What becomes of a program's output.
#[derive(Clone, Copy, Debug)]
pub enum Output {
    /// Read into the log, and echoed live to stderr as `[<name> <pid>] line` when `echo`.
    Kept { echo: bool },
    /// Nobody reads it: stdout and stderr are pipes whose read ends are closed at once, so every
    /// write to them fails (`EPIPE`), as when a log collector has gone away. The log stays empty.
    Unread,
}

/// A running program, owned by the test.
pub struct Background {
    name: String,
    child: Child,
    exit: Option<ExitStatus>,
    log: Arc<Mutex<String>>,
    /// In a mutex only so that an owner shared between threads (a `Daemon`) stays `Sync`.
    stdout_lines: Mutex<Receiver<String>>,
    print_log_on_panic: bool,
}

impl Background {
    /// Starts `program args...` inside `netns`; `name` says which role it plays in messages
    /// (`"primary gRPC server"`).
    pub fn spawn(name: &str, netns: &Netns, program: &str, args: &[String]) -> Result<Background> {
        Background::spawn_echoing(name, netns, program, args, false)
    }

    /// [`Background::spawn`], also echoing every line to stderr as `[<name> <pid>] line` when
    /// `echo` is set.
    pub fn spawn_echoing(
        name: &str,
        netns: &Netns,
        program: &str,
        args: &[String],
        echo: bool,
    ) -> Result<Background> {
        Background::spawn_with(name, netns, program, args, Output::Kept { echo })
    }

    /// [`Background::spawn`], its output kept or left unread as `output` says.
    pub fn spawn_with(
        name: &str,
        netns: &Netns,
        program: &str,
        args: &[String],
        output: Output,
    ) -> Result<Background> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns.name(), program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{name}: cannot start `ip netns exec … {program}`"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let (lines, stdout_lines) = mpsc::channel();
        match output {
            Output::Kept { echo } => {
                let echo = echo.then(|| format!("[{name} {}]", child.id()));
                if let Some(stdout) = child.stdout.take() {
                    collect(stdout, Arc::clone(&log), Some(lines), echo.clone());
                }
                if let Some(stderr) = child.stderr.take() {
                    collect(stderr, Arc::clone(&log), None, echo);
                }
            }
            Output::Unread => {
                drop(child.stdout.take());
                drop(child.stderr.take());
            }
        }
        Ok(Background {
            name: name.to_owned(),
            child,
            exit: None,
            log,
            stdout_lines: Mutex::new(stdout_lines),
            print_log_on_panic: true,
        })
    }

    /// Whether drop prints the log when the test panics (default: yes; an owner that prints
    /// the log itself turns it off).
    pub fn print_log_on_panic(&mut self, print: bool) {
        self.print_log_on_panic = print;
    }

    /// Waits for the first line on stdout that starts with `prefix` and returns the rest of it;
    /// fails, with the log, when the program exits first or `timeout` passes.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let error = match self
                .stdout_lines
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) => match line.strip_prefix(prefix) {
                    Some(rest) => return Ok(rest.to_owned()),
                    None => continue,
                },
                Err(error) => error,
            };
            if let Some(status) = self.exit_status() {
                bail!(
                    "{} exited ({status}) before printing {prefix:?}; its output:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print {prefix:?} within {timeout:?}; its output:\n{}",
                    self.name,
                    self.log()
                );
            }
            if error == RecvTimeoutError::Disconnected {
                // Stdout closed, the process not yet reaped.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Everything the program printed so far (stdout and stderr, line by line).
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The program's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the program still runs (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// How the program ended, once it has (reaps it).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `timeout` for the program to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(anyhow!("{} did not exit within {timeout:?}", self.name));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` to the program.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.pid())?);
        kill(pid, signal).with_context(|| format!("cannot send {signal} to {}", self.name))
    }

    /// SIGKILL, then reaps the program (within 10 s); an exited program's status as it is.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL)?;
        self.wait_exit(Duration::from_secs(10))
            .with_context(|| format!("{} (pid {}) survived SIGKILL", self.name, self.pid()))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Err(error) = self.kill() {
            eprintln!("mirror-tests: {error:#}");
        }
        if self.print_log_on_panic && thread::panicking() {
            eprintln!(
                "---- {} log (pid {}) ----\n{}---- end of {} log ----",
                self.name,
                self.pid(),
                self.log(),
                self.name
            );
        }
    }
}

/// Appends `pipe`'s lines to `log`, sends each to `lines` and echoes it after `echo` when given.
fn collect(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
    echo: Option<String>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(prefix) = &echo {
                eprintln!("{prefix} {line}");
            }
            {
                let mut log = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
            if let Some(lines) = &lines {
                let _ = lines.send(line);
            }
        }
    });
}
