//! Booting one kernel in QEMU (TCG: the host's KVM is nested and unreliable for stock kernels)
//! under a hard time limit, echoing the results port live.

use std::{
    fs::{self, File},
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::cmd;

pub const QEMU: &str = "qemu-system-x86_64";
pub const MEMORY_MIB: u32 = 1024;
pub const CPUS: u32 = 2;

/// How a boot ended.
#[derive(Debug)]
pub struct Boot {
    pub elapsed: Duration,
    pub timed_out: bool,
    /// QEMU's exit status, when it exited by itself.
    pub status: Option<i32>,
    pub console: PathBuf,
    pub results: PathBuf,
}

/// Boots `vmlinuz` with `initrd`, writing the console to `<dir>/console.log` and the results
/// port to `<dir>/results.log`; prints each results line prefixed with `label` as it arrives.
pub fn boot(
    vmlinuz: &Path,
    initrd: &Path,
    dir: &Path,
    timeout: Duration,
    label: &str,
) -> Result<Boot> {
    fs::create_dir_all(dir)?;
    let console = dir.join("console.log");
    let results = dir.join("results.log");
    for file in [&console, &results] {
        // QEMU appends to nothing: start from empty files so a missing result is not stale.
        File::create(file)?;
    }
    let qemu = cmd::find_program(QEMU, &cmd::system_dirs())
        .with_context(|| format!("{QEMU} not found; `cargo xtask setup` installs it"))?;
    let mut command = Command::new(qemu);
    command
        .args(["-accel", "tcg,thread=multi", "-cpu", "max"])
        .args(["-smp", &CPUS.to_string(), "-m", &MEMORY_MIB.to_string()])
        .args(["-nodefaults", "-no-user-config", "-nic", "none"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // panic=-1 with -no-reboot: a panic ends QEMU at once; RDRAND (TCG's -cpu max) seeds the
        // RNG so getrandom() does not block on 5.10.
        .args([
            "-append",
            "console=ttyS0 panic=-1 loglevel=4 random.trust_cpu=on",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", results.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("vm: {label}: {}", cmd::display(&command));
    let started = Instant::now();
    let mut child = command.spawn().context("cannot start QEMU")?;
    let qemu_output = {
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(out) = stdout.as_mut() {
                let _ = out.read_to_string(&mut text);
            }
            if let Some(err) = stderr.as_mut() {
                let _ = err.read_to_string(&mut text);
            }
            text
        })
    };
    let mut follower = Follower::new(&results);
    let (timed_out, status) = loop {
        follower.print_new(label);
        if let Some(status) = child.try_wait()? {
            break (false, status.code());
        }
        if started.elapsed() > timeout {
            // Our own child, ended through its handle.
            let _ = child.kill();
            let _ = child.wait();
            break (true, None);
        }
        thread::sleep(Duration::from_millis(250));
    };
    follower.print_new(label);
    follower.finish(label);
    let qemu_text = qemu_output.join().unwrap_or_default();
    if !qemu_text.trim().is_empty() {
        fs::write(dir.join("qemu.log"), &qemu_text)?;
        for line in qemu_text.lines().filter(|l| !l.trim().is_empty()) {
            eprintln!("[{label}] qemu: {line}");
        }
    }
    Ok(Boot {
        elapsed: started.elapsed(),
        timed_out,
        status,
        console,
        results,
    })
}

/// Prints the complete lines appended to a file since the last call.
struct Follower {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    fn print_new(&mut self, label: &str) {
        let Ok(mut file) = File::open(&self.path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            return;
        }
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            eprintln!("[{label}] {}", text.trim_end_matches(['\r', '\n']));
        }
    }

    fn finish(&mut self, label: &str) {
        if !self.partial.is_empty() {
            let text = String::from_utf8_lossy(&self.partial);
            eprintln!("[{label}] {}", text.trim_end_matches(['\r', '\n']));
            self.partial.clear();
        }
    }
}

/// Lines of the console that say the kernel itself went wrong.
pub fn kernel_trouble(console: &str) -> Option<String> {
    const SIGNS: &[&str] = &[
        "Kernel panic",
        "BUG:",
        "Oops:",
        "general protection fault",
        "watchdog: BUG: soft lockup",
        "INFO: task",
        "Out of memory",
    ];
    let lines: Vec<&str> = console
        .lines()
        .filter(|line| SIGNS.iter().any(|sign| line.contains(sign)))
        .map(|line| line.trim())
        .take(3)
        .collect();
    (!lines.is_empty()).then(|| lines.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_and_oopses_are_found_in_the_console() {
        let console = "[    1.0] Run /init as init process\n\
                       [   20.1] BUG: kernel NULL pointer dereference, address: 0000000000000008\n\
                       [   20.2] Kernel panic - not syncing: Fatal exception\n";
        let trouble = kernel_trouble(console).expect("trouble");
        assert!(trouble.starts_with("[   20.1] BUG: kernel NULL pointer"));
        assert!(trouble.contains("Kernel panic"));
        assert_eq!(kernel_trouble("[ 1.0] Linux version 6.1\n"), None);
    }
}
