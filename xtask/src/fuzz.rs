//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` for a bounded time each and says,
//! per target, how many inputs ran, what coverage they reached and whether anything failed.
//!
//! Each target runs as one libFuzzer process (one core), address sanitizer on (off with
//! `--no-sanitizer`, built apart in `fuzz/target/no-sanitizer`: the fuzzed code is safe Rust, and
//! without it the HTTP/2 targets run about 7 times faster), debug assertions on, with the
//! committed seeds in `fuzz/corpus/<target>/` read-only and the corpus it grows in
//! `fuzz/work/corpus/<target>/` (ignored by git, kept between runs). Its whole output goes to
//! `fuzz/work/logs/<target>.log`. A failing input is written to `fuzz/artifacts/<target>/`, and
//! the command fails naming it. Fuzzing is not part of `cargo xtask test` or CI.
//!
//! Clean runs add up: `fuzz/work/executions` logs, per target, the executions of every run that
//! ended without a failure since its grown corpus was made (a target whose corpus directory is
//! gone starts again at 0), and the summary shows that total beside the run's.
//!
//! Needs a nightly toolchain (sanitizers; `rust-src` is not needed) and cargo-fuzz, which is
//! installed with `cargo install` when missing.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{build, cmd, toolchain};

/// A fuzz target and the libFuzzer options it runs with.
struct Target {
    name: &'static str,
    /// Dictionary in `fuzz/dicts/`.
    dict: Option<&'static str>,
    max_len: usize,
}

const TARGETS: [Target; 8] = [
    Target {
        name: "framer_chunks",
        dict: Some("http.dict"),
        max_len: 4096,
    },
    Target {
        name: "framer_differential",
        dict: None,
        max_len: 4096,
    },
    Target {
        name: "config",
        dict: Some("config.dict"),
        max_len: 8192,
    },
    Target {
        name: "shadow_response",
        dict: Some("http.dict"),
        max_len: 4096,
    },
    Target {
        name: "h2_chunks",
        dict: None,
        max_len: 4096,
    },
    Target {
        name: "h2_differential",
        dict: None,
        max_len: 4096,
    },
    Target {
        name: "response_framer_chunks",
        dict: Some("http.dict"),
        max_len: 4096,
    },
    Target {
        name: "response_framer_differential",
        dict: None,
        max_len: 4096,
    },
];

/// No single input may take longer than this (libFuzzer's default is 20 minutes).
const INPUT_TIMEOUT_SECS: u64 = 30;

pub struct Options {
    /// Fuzzing time per target.
    pub seconds: u64,
    /// Targets to run; all when empty.
    pub targets: Vec<String>,
    /// Step around the findings listed in `fuzz/src/known.rs`.
    pub skip_known: bool,
    /// Build and run without the address sanitizer.
    pub no_sanitizer: bool,
}

/// What one target's run came to, read from its log.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    executions: Option<u64>,
    execs_per_sec: Option<u64>,
    /// The last status line's `cov: .. ft: .. corp: ..` part.
    coverage: Option<String>,
    /// The failing input libFuzzer wrote, if any.
    artifact: Option<String>,
    /// libFuzzer's or the panic's one-line account of the failure.
    failure: Option<String>,
}

pub fn run(options: &Options) -> Result<()> {
    let targets = select(&options.targets)?;
    let fuzz_dir = build::workspace_root().join("fuzz");
    check_toolchain()?;

    let mut cargo = fuzz_cargo(&fuzz_dir);
    cargo.args(["build", "--debug-assertions"]);
    sanitizer_args(&mut cargo, &fuzz_dir, options);
    eprintln!("fuzz: building ({})", cmd::display(&cargo));
    cmd::run(&mut cargo)?;

    let tally_path = fuzz_dir.join("work").join("executions");
    let mut results = Vec::new();
    for target in targets {
        if !fuzz_dir.join("work/corpus").join(target.name).is_dir() {
            record(&tally_path, target.name, "reset")?;
        }
        let outcome = run_target(&fuzz_dir, target, options)?;
        if outcome.failure.is_none() && outcome.artifact.is_none() {
            record(
                &tally_path,
                target.name,
                &outcome.executions.unwrap_or_default().to_string(),
            )?;
        }
        results.push((target.name, outcome));
    }
    let tally = read_tally(&tally_path);

    println!(
        "{:<28} {:>10} {:>8} {:>12}  {:<44} result",
        "target", "executions", "exec/s", "clean total", "coverage"
    );
    let mut failed = Vec::new();
    for (name, outcome) in &results {
        let number = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
        let result = match (&outcome.artifact, &outcome.failure) {
            (None, None) => "ok".to_string(),
            (artifact, failure) => {
                failed.push(*name);
                format!(
                    "FAILED: {} (input: {})",
                    failure.as_deref().unwrap_or("see the log"),
                    artifact.as_deref().unwrap_or("none written")
                )
            }
        };
        println!(
            "{:<28} {:>10} {:>8} {:>12}  {:<44} {result}",
            name,
            number(outcome.executions),
            number(outcome.execs_per_sec),
            number(tally.get(*name).copied()),
            outcome.coverage.as_deref().unwrap_or("?"),
        );
    }
    if !failed.is_empty() {
        bail!(
            "fuzzing found failures in {}; logs in {}; reproduce with `cargo +nightly fuzz run \
             --debug-assertions <target> <input>` and minimize with `cargo +nightly fuzz tmin \
             --debug-assertions <target> <input>` in {}",
            failed.join(", "),
            fuzz_dir.join("work/logs").display(),
            fuzz_dir.display()
        );
    }
    Ok(())
}

fn select(names: &[String]) -> Result<Vec<&'static Target>> {
    if names.is_empty() {
        return Ok(TARGETS.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            TARGETS.iter().find(|t| t.name == name).with_context(|| {
                let known: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                format!("no fuzz target {name:?}; there are {}", known.join(", "))
            })
        })
        .collect()
}

/// A nightly toolchain must be there; cargo-fuzz is installed when missing.
fn check_toolchain() -> Result<()> {
    let toolchains = cmd::probe(Command::new("rustup").args(["toolchain", "list"]))
        .context("`rustup toolchain list` failed: fuzzing needs rustup with a nightly toolchain")?;
    if !toolchains.lines().any(|line| line.starts_with("nightly")) {
        bail!(
            "fuzzing needs a nightly toolchain (for the sanitizers; rust-src is not needed): \
             `rustup toolchain install nightly --profile minimal`"
        );
    }
    let mut version = toolchain::standalone_cargo();
    version.args(["fuzz", "--version"]);
    if cmd::probe(&mut version).is_none() {
        let mut install = toolchain::standalone_cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        eprintln!("fuzz: installing cargo-fuzz ({})", cmd::display(&install));
        cmd::run(&mut install)?;
    }
    Ok(())
}

/// Without the sanitizer, builds go to their own directory, so that switching does not
/// rebuild everything each time.
fn sanitizer_args(cargo: &mut Command, fuzz_dir: &Path, options: &Options) {
    if options.no_sanitizer {
        cargo
            .args(["--sanitizer", "none", "--target-dir"])
            .arg(fuzz_dir.join("target").join("no-sanitizer"));
    }
}

/// `cargo +nightly fuzz` in `fuzz/`, without the outer cargo's environment.
fn fuzz_cargo(fuzz_dir: &Path) -> Command {
    let mut cargo = toolchain::standalone_cargo();
    cargo.current_dir(fuzz_dir).args(["+nightly", "fuzz"]);
    cargo
}

fn run_target(fuzz_dir: &Path, target: &Target, options: &Options) -> Result<Outcome> {
    let work = fuzz_dir.join("work");
    let corpus = work.join("corpus").join(target.name);
    let logs = work.join("logs");
    for dir in [&corpus, &logs] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log_path = logs.join(format!("{}.log", target.name));
    let log = fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;

    let mut cargo = fuzz_cargo(fuzz_dir);
    cargo.args(["run", "--debug-assertions"]);
    sanitizer_args(&mut cargo, fuzz_dir, options);
    cargo
        .arg(target.name)
        .arg(&corpus)
        .args(seeds(fuzz_dir, target.name))
        .arg("--")
        .arg(format!("-max_total_time={}", options.seconds))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg(format!("-max_len={}", target.max_len))
        .arg("-print_final_stats=1");
    if let Some(dict) = target.dict {
        cargo.arg(format!(
            "-dict={}",
            fuzz_dir.join("dicts").join(dict).display()
        ));
    }
    if options.skip_known {
        cargo.env("MIRROR_FUZZ_SKIP_KNOWN", "1");
    }
    cargo
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    eprintln!(
        "fuzz: {} for {} s ({}; log: {})",
        target.name,
        options.seconds,
        cmd::display(&cargo),
        log_path.display()
    );
    let started = Instant::now();
    let status = cargo
        .status()
        .with_context(|| format!("could not start `{}`", cmd::display(&cargo)))?;
    let text = fs::read_to_string(&log_path)
        .with_context(|| format!("cannot read {}", log_path.display()))?;
    let mut outcome = parse_log(&text);
    if !status.success() && outcome.failure.is_none() {
        outcome.failure = Some(format!("the fuzzer exited with {status}"));
    }
    eprintln!(
        "fuzz: {} done in {} s: {} executions{}",
        target.name,
        started.elapsed().as_secs(),
        outcome.executions.unwrap_or_default(),
        if outcome.failure.is_some() {
            ", FAILED"
        } else {
            ""
        }
    );
    Ok(outcome)
}

/// Clean executions per target so far. The file is a log, one line per event: `<target>
/// <executions>` for a clean run, `<target> reset` when its grown corpus was made anew; a run
/// only appends its line, so runs on other targets at the same time lose nothing. Lines that
/// do not parse are skipped.
fn read_tally(path: &Path) -> BTreeMap<String, u64> {
    let mut tally = BTreeMap::new();
    for line in fs::read_to_string(path).unwrap_or_default().lines() {
        let Some((name, event)) = line.split_once(' ') else {
            continue;
        };
        let total: &mut u64 = tally.entry(name.to_string()).or_default();
        match event.trim() {
            "reset" => *total = 0,
            count => *total += count.parse::<u64>().unwrap_or_default(),
        }
    }
    tally
}

/// Appends one event to the tally (one short write in append mode), making its directory on a
/// fresh clone.
fn record(path: &Path, target: &str, event: &str) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(format!("{target} {event}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The committed seeds of `target`, if it has any (libFuzzer refuses a missing directory).
fn seeds(fuzz_dir: &Path, target: &str) -> Option<PathBuf> {
    Some(fuzz_dir.join("corpus").join(target)).filter(|dir| dir.is_dir())
}

/// Reads executions, speed, coverage and any failure out of a libFuzzer log.
fn parse_log(text: &str) -> Outcome {
    let mut outcome = Outcome::default();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let stat = |name: &str| {
            line.strip_prefix(name)
                .and_then(|rest| rest.trim().parse::<u64>().ok())
        };
        if let Some(n) = stat("stat::number_of_executed_units:") {
            outcome.executions = Some(n);
        } else if let Some(n) = stat("stat::average_exec_per_sec:") {
            outcome.execs_per_sec = Some(n);
        } else if line.starts_with('#') && line.contains(" cov: ") {
            // `#1234  NEW    cov: 10 ft: 20 corp: 5/1Kb lim: 4 exec/s: 0 rss: 40Mb ...`
            let from = line.find("cov: ").unwrap_or(0);
            let to = line.find(" lim: ").or_else(|| line.find(" exec/s:"));
            outcome.coverage = Some(line[from..to.unwrap_or(line.len())].to_string());
        } else if let Some(at) = line.find("Test unit written to ") {
            let path = line[at + "Test unit written to ".len()..].trim();
            outcome.artifact = Some(path.to_string());
        } else if outcome.failure.is_none() {
            if line.contains("panicked at ") {
                // The message is on the next line.
                let message = lines.peek().map_or("", |next| next.trim());
                outcome.failure = Some(format!("panic: {message}"));
            } else if let Some(at) = line.find("ERROR: libFuzzer: ") {
                outcome.failure = Some(line[at + "ERROR: ".len()..].trim().to_string());
            } else if let Some(at) = line.find("ERROR: AddressSanitizer: ") {
                outcome.failure = Some(line[at + "ERROR: ".len()..].trim().to_string());
            } else if line.starts_with("error: could not compile") {
                outcome.failure = Some(format!("build failed: {line}"));
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_gives_executions_and_coverage() {
        let log = "INFO: Seed: 1\n\
            #2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 40Mb\n\
            #243806\tDONE   cov: 1894 ft: 5623 corp: 1046/99Kb lim: 249 exec/s: 3996 rss: 462Mb\n\
            Done 243806 runs in 61 second(s)\n\
            stat::number_of_executed_units: 243806\n\
            stat::average_exec_per_sec:     3996\n";
        assert_eq!(
            parse_log(log),
            Outcome {
                executions: Some(243806),
                execs_per_sec: Some(3996),
                coverage: Some("cov: 1894 ft: 5623 corp: 1046/99Kb".into()),
                artifact: None,
                failure: None,
            }
        );
    }

    #[test]
    fn a_crash_gives_its_message_and_input() {
        let log =
            "#100\tNEW    cov: 5 ft: 6 corp: 2/3b lim: 4 exec/s: 0 rss: 40Mb L: 1/1 MS: 1 X-\n\
            thread '<unnamed>' (5543) panicked at src/copy.rs:33:5:\n\
            assertion `left == right` failed: the copy is not one clean request\n\
            ==5543== ERROR: libFuzzer: deadly signal\n\
            artifact_prefix='/f/artifacts/t/'; Test unit written to /f/artifacts/t/crash-4d09\n\
            stat::number_of_executed_units: 2405\n";
        let outcome = parse_log(log);
        assert_eq!(outcome.executions, Some(2405));
        assert_eq!(
            outcome.artifact.as_deref(),
            Some("/f/artifacts/t/crash-4d09")
        );
        assert_eq!(
            outcome.failure.as_deref(),
            Some("panic: assertion `left == right` failed: the copy is not one clean request")
        );
    }

    #[test]
    fn the_tally_adds_runs_up_starts_again_at_a_reset_and_skips_bad_lines() {
        let dir = std::env::temp_dir().join(format!("xtask-tally-{}", std::process::id()));
        // As on a fresh clone: the tally's directory does not exist yet.
        let path = dir.join("work").join("executions");
        assert!(read_tally(&path).is_empty());
        for (target, event) in [
            ("config", "12"),
            ("h2_chunks", "3"),
            ("config", "5"),
            ("h2_chunks", "reset"),
            ("h2_chunks", "4"),
        ] {
            record(&path, target, event).expect("recorded");
        }
        fs::write(
            &path,
            fs::read_to_string(&path).expect("read") + "broken\nconfig x\n",
        )
        .expect("written");
        assert_eq!(
            read_tally(&path),
            BTreeMap::from([("config".to_string(), 17), ("h2_chunks".to_string(), 4)])
        );
        fs::remove_dir_all(&dir).expect("removed");
    }

    #[test]
    fn unknown_targets_are_refused_with_the_list() {
        let error = select(&["nope".into()]).err().expect("unknown").to_string();
        assert!(error.contains("framer_chunks"), "{error}");
        assert_eq!(select(&[]).expect("all").len(), TARGETS.len());
    }
}
