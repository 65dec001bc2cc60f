//! Reading the guest's results port: libtest's output of each test binary between the guest's
//! `@@vm-test begin/end` marks, into one outcome per test.

use std::collections::BTreeMap;

use super::guest::MARK;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// `#[ignore]`d, or left out in VMs on purpose.
    Skipped(String),
}

/// What the results port said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Results {
    /// `uname -r`, CPUs and memory as the guest saw them.
    pub kernel: Option<String>,
    /// Per binary, per test.
    pub tests: BTreeMap<String, BTreeMap<String, Outcome>>,
    /// Binaries that began but whose end was never written.
    pub unfinished: Option<String>,
    /// The last test a binary started without a result (what was running when it stopped).
    pub running: Option<(String, String)>,
    /// Binaries whose exit status was non-zero without a failed test to show for it.
    pub crashed: Vec<(String, String)>,
    pub done: bool,
}

/// Parses the results port's text (libtest's human output with `--test-threads=1`).
pub fn parse(text: &str) -> Results {
    let mut results = Results::default();
    let mut binary: Option<String> = None;
    let mut pending: Option<String> = None;
    let mut in_failures = false;
    let mut failure = Reading::Nothing;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(mark) = line.strip_prefix(MARK).map(str::trim) {
            if let Some(kernel) = mark.strip_prefix("kernel ") {
                results.kernel = Some(kernel.to_owned());
            } else if let Some(name) = mark.strip_prefix("begin ") {
                binary = Some(name.to_owned());
                results.tests.entry(name.to_owned()).or_default();
                results.unfinished = Some(name.to_owned());
                pending = None;
                in_failures = false;
                failure = Reading::Nothing;
            } else if let Some(rest) = mark.strip_prefix("end ") {
                let (name, status) = rest.rsplit_once(' ').unwrap_or((rest, "?"));
                if let Some(test) = pending.take() {
                    results.running = Some((name.to_owned(), test));
                }
                let tests = results.tests.entry(name.to_owned()).or_default();
                let any_failed = tests.values().any(|o| matches!(o, Outcome::Failed(_)));
                if status != "0" && !any_failed {
                    results.crashed.push((
                        name.to_owned(),
                        format!("exit status {status} without a failed test"),
                    ));
                }
                results.unfinished = None;
                binary = None;
            } else if mark == "done" {
                results.done = true;
            }
            continue;
        }
        let Some(current) = binary.as_deref() else {
            continue;
        };
        if line == "failures:" {
            in_failures = true;
            continue;
        }
        if in_failures {
            if let Some(name) = line.strip_prefix("---- ").and_then(|l| {
                l.strip_suffix(" stdout ----")
                    .or(l.strip_suffix(" stderr ----"))
            }) {
                failure = Reading::Section(name.to_owned());
                continue;
            }
            let tests = results.tests.entry(current.to_owned()).or_default();
            let trimmed = line.trim();
            failure = match std::mem::replace(&mut failure, Reading::Nothing) {
                Reading::Section(name) => {
                    if let Some(message) = line.strip_prefix("Error: ") {
                        // A test returning `Err`: libtest prints its Debug form, cause by cause.
                        set_reason(tests, &name, message.trim().to_owned());
                        if message.trim_end().ends_with(':') {
                            Reading::Body(name, None, true)
                        } else {
                            Reading::Chain(name)
                        }
                    } else if line.starts_with("thread '") && line.contains("panicked at") {
                        Reading::Panic(name)
                    } else {
                        Reading::Section(name)
                    }
                }
                Reading::Panic(name) if trimmed.is_empty() => Reading::Panic(name),
                Reading::Panic(name) => {
                    set_reason(tests, &name, trimmed.to_owned());
                    if trimmed.ends_with(':') {
                        Reading::Body(name, None, false)
                    } else {
                        Reading::Nothing
                    }
                }
                Reading::Body(name, last, chain) if trimmed.is_empty() => {
                    if let (Some(last), Some(Outcome::Failed(reason))) =
                        (last, tests.get_mut(&name))
                    {
                        reason.push(' ');
                        reason.push_str(&last);
                    }
                    if chain {
                        Reading::Chain(name)
                    } else {
                        Reading::Nothing
                    }
                }
                Reading::Body(name, _, chain) => {
                    Reading::Body(name, Some(trimmed.to_owned()), chain)
                }
                Reading::Chain(name) if trimmed.is_empty() || trimmed == "Caused by:" => {
                    Reading::Chain(name)
                }
                Reading::Chain(name) => match trimmed.split_once(": ") {
                    Some((index, cause)) if index.chars().all(|c| c.is_ascii_digit()) => {
                        if let Some(Outcome::Failed(reason)) = tests.get_mut(&name) {
                            reason.push_str(": ");
                            reason.push_str(cause);
                        }
                        Reading::Chain(name)
                    }
                    _ => Reading::Nothing,
                },
                Reading::Nothing => Reading::Nothing,
            };
            continue;
        }
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, result)) = rest.split_once(" ... ") {
                let name = name.trim().to_owned();
                match parse_result(result) {
                    Some(outcome) => {
                        results
                            .tests
                            .entry(current.to_owned())
                            .or_default()
                            .insert(name, outcome);
                        pending = None;
                    }
                    None => pending = Some(name),
                }
                continue;
            }
            if let Some(name) = rest.strip_suffix(" ...") {
                pending = Some(name.trim().to_owned());
                continue;
            }
        }
        // A result on its own line, after something else wrote into the test's line.
        if let Some(name) = pending.clone() {
            if let Some(outcome) = parse_result(line.trim()) {
                results
                    .tests
                    .entry(current.to_owned())
                    .or_default()
                    .insert(name, outcome);
                pending = None;
            }
        }
    }
    if let (Some(binary), Some(test)) = (binary, pending) {
        results.running = Some((binary, test));
    }
    results
}

/// Where the failures section's reader is: in a test's captured output, right after its panic
/// line (the message follows), in what follows a message ending with `:` (its last line is
/// kept, then the cause chain follows if `true`), or in the cause chain of the error it
/// returned.
enum Reading {
    Nothing,
    Section(String),
    Panic(String),
    Body(String, Option<String>, bool),
    Chain(String),
}

/// A failed test's reason, kept short enough for a summary line.
fn set_reason(tests: &mut BTreeMap<String, Outcome>, name: &str, reason: String) {
    if let Some(Outcome::Failed(old)) = tests.get_mut(name) {
        *old = reason;
    }
}

fn parse_result(text: &str) -> Option<Outcome> {
    let text = text.trim();
    if text == "ok" {
        Some(Outcome::Passed)
    } else if text == "FAILED" {
        Some(Outcome::Failed("failed".to_owned()))
    } else if let Some(rest) = text.strip_prefix("ignored") {
        let reason = rest.trim_start_matches(',').trim();
        Some(Outcome::Skipped(if reason.is_empty() {
            "#[ignore]".to_owned()
        } else {
            reason.to_owned()
        }))
    } else {
        None
    }
}

/// Test names from a test binary's `--list` output (`name: test`).
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "@@vm-test kernel 6.1.0-56-cloud-amd64 2 CPUs 1000000 kB\r
@@vm-test begin interception\r
\r
running 3 tests\r
test a_flow_is_intercepted ... ok\r
test echo_10_mib ... FAILED\r
test slow_one ... ignored, too slow under TCG\r
\r
failures:\r
\r
---- echo_10_mib stdout ----\r
test echo_10_mib ... this line is captured output, not a result\r
thread 'echo_10_mib' panicked at tests/interception.rs:10:5:\r
echo differs at byte 7\r
\r
failures:\r
    echo_10_mib\r
\r
test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out\r
@@vm-test end interception 101\r
@@vm-test begin tcp_semantics\r
running 1 test\r
test reuse ... FAILED\r
\r
failures:\r
\r
---- reuse stdout ----\r
V4: 200 connections\r
---- mirror-daemon log (pid 3952, signal: 9 (SIGKILL)) ----\r
Error: after the daemon was SIGKILLed\r
\r
Caused by:\r
    0: connection 0 failed after 1.01s\r
    1: stream ended with TimedOut\r
\r
\r
failures:\r
    reuse\r
\r
@@vm-test end tcp_semantics 101\r
@@vm-test begin lifecycle\r
running 2 tests\r
test sigterm_removes_everything ... \r
!!! a notice written straight to stderr\r
ok\r
test sigkill_fails_open ... ";

    #[test]
    fn outcomes_marks_and_the_running_test_are_read() {
        let results = parse(OUTPUT);
        assert_eq!(
            results.kernel.as_deref(),
            Some("6.1.0-56-cloud-amd64 2 CPUs 1000000 kB")
        );
        let interception = &results.tests["interception"];
        assert_eq!(interception["a_flow_is_intercepted"], Outcome::Passed);
        assert_eq!(
            interception["echo_10_mib"],
            Outcome::Failed("echo differs at byte 7".into())
        );
        assert_eq!(
            interception["slow_one"],
            Outcome::Skipped("too slow under TCG".into())
        );
        assert_eq!(interception.len(), 3);
        assert_eq!(
            results.tests["tcp_semantics"]["reuse"],
            Outcome::Failed(
                "after the daemon was SIGKILLed: connection 0 failed after 1.01s: \
                 stream ended with TimedOut"
                    .into()
            )
        );
        assert!(results.crashed.is_empty());
        let lifecycle = &results.tests["lifecycle"];
        assert_eq!(lifecycle["sigterm_removes_everything"], Outcome::Passed);
        assert_eq!(results.unfinished.as_deref(), Some("lifecycle"));
        assert_eq!(
            results.running,
            Some(("lifecycle".into(), "sigkill_fails_open".into()))
        );
        assert!(!results.done);
    }

    #[test]
    fn a_message_ending_with_a_colon_gets_the_last_line_that_follows() {
        let results = parse(
            "@@vm-test begin x\ntest a ... FAILED\ntest b ... FAILED\n\nfailures:\n\n\
             ---- a stdout ----\nError: mirror-daemon exited (exit status: 69) before it was ready; log:\n\
             INFO dropped capabilities\nmirror-daemon: failed to create map `AYA_LOGS`\n\n\n\
             ---- b stdout ----\nthread 'b' panicked at t.rs:1:1:\nprobes still hung:\n  probe 1\n\n\
             failures:\n    a\n    b\n@@vm-test end x 101\n",
        );
        assert_eq!(
            results.tests["x"]["a"],
            Outcome::Failed(
                "mirror-daemon exited (exit status: 69) before it was ready; log: \
                 mirror-daemon: failed to create map `AYA_LOGS`"
                    .into()
            )
        );
        assert_eq!(
            results.tests["x"]["b"],
            Outcome::Failed("probes still hung: probe 1".into())
        );
    }

    #[test]
    fn a_binary_failing_without_a_failed_test_is_a_crash() {
        let results = parse(
            "@@vm-test begin topology\nrunning 1 test\ntest x ... ok\n@@vm-test end topology 134\n@@vm-test done\n",
        );
        assert_eq!(results.crashed.len(), 1);
        assert!(results.done);
        assert_eq!(results.unfinished, None);
    }

    #[test]
    fn list_output_gives_test_names() {
        let list = "a_flow_is_intercepted: test\nechoes: test\n\n2 tests, 0 benchmarks\n";
        assert_eq!(parse_list(list), ["a_flow_is_intercepted", "echoes"]);
    }
}
