//! The command line as an operator meets it: exit codes, and one clear line per config error.
//!
//! Config errors are golden files: `tests/config-errors/NAME.toml` must fail `mirror-daemon check`
//! with exit code 64 and exactly the line in `NAME.expected` (`{dir}` stands for the file's
//! directory). Set `UPDATE_GOLDEN=1` to rewrite the expected files after a deliberate change.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn daemon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mirror-daemon"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run mirror-daemon")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config-errors")
}

#[test]
fn each_config_error_is_one_line_with_file_line_column_and_key() {
    let dir = golden_dir();
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("golden dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let output = daemon(&["check", "--config", case.to_str().expect("utf8 path")]);
        let stderr =
            String::from_utf8_lossy(&output.stderr).replace(dir.to_str().expect("utf8"), "{dir}");
        let expected_path = case.with_extension("expected");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            fs::write(&expected_path, &stderr).expect("write golden");
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if output.status.code() != Some(64) || stderr != expected || stderr.lines().count() != 1 {
            failures.push(format!(
                "{}: exit {:?}\n  got:      {stderr:?}\n  expected: {expected:?}",
                case.display(),
                output.status.code()
            ));
        }
        assert!(
            output.stdout.is_empty(),
            "{}: printed a config on error",
            case.display()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_prints_the_effective_config_and_exits_0() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mirror.toml");
    let output = daemon(&["check", "--config", example.to_str().expect("utf8")]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("utf8");
    // Defaults are filled in, and the printed config is itself valid.
    assert!(printed.contains("buffer_size = 8192"), "{printed}");
    assert!(printed.contains("name = \"staging\""), "{printed}");
    let reparsed = mirror_daemon::config::Config::from_toml(&printed, "printed");
    assert!(reparsed.is_ok(), "{reparsed:?}");
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let output = daemon(&["check", "--config", "/nonexistent/mirror.toml"]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot read config file /nonexistent/mirror.toml"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_bad_config_before_touching_the_kernel() {
    let bad = golden_dir().join("unknown-key.toml");
    let output = daemon(&["run", "--config", bad.to_str().expect("utf8")]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("relay.conect_timeout"));
}

#[test]
fn version_and_help_describe_the_tool() {
    let output = daemon(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("mirror-daemon {}", env!("CARGO_PKG_VERSION"))
    );
    let help = daemon(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for word in ["run", "check", "--log-format", "--log-level"] {
        assert!(text.contains(word), "help lacks {word}: {text}");
    }
}

#[test]
fn unknown_arguments_are_usage_errors() {
    let output = daemon(&["run", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2), "clap's usage exit code");
    let output = daemon(&["check", "--config", "x", "--log-format", "yaml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn comparisons_without_a_daemon_say_where_they_looked_in_one_line() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let admin = format!("127.0.0.1:{port}");
    let output = daemon(&["comparisons", "--admin", &admin]);
    assert_eq!(output.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to the admin endpoint at {admin}")),
        "{stderr}"
    );
}

/// `mirror-daemon args…` with stdout or stderr a pipe nobody reads (closed at the other end
/// before the program starts, as under `| head` once head has what it wants): its exit code and
/// what it wrote to the other stream.
fn daemon_into_closed_pipe(args: &[&str], closed: Stream) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirror-daemon"));
    command.args(args).env_remove("RUST_LOG");
    match closed {
        Stream::Stdout => command.stdout(writer),
        Stream::Stderr => command.stderr(writer),
    };
    let output = command.output().expect("run mirror-daemon");
    let other = match closed {
        Stream::Stdout => output.stderr,
        Stream::Stderr => output.stdout,
    };
    (
        output.status.code(),
        String::from_utf8_lossy(&other).into_owned(),
    )
}

enum Stream {
    Stdout,
    Stderr,
}

#[test]
fn output_nobody_reads_changes_no_exit_code() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mirror.toml");
    let example = example.to_str().expect("utf8");
    // The config printed into a closed pipe: the reader took what it wanted; no panic.
    let (code, stderr) = daemon_into_closed_pipe(&["check", "--config", example], Stream::Stdout);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // A config error said into a closed stderr: still the usage error's code.
    let (code, stdout) = daemon_into_closed_pipe(
        &["check", "--config", "/nonexistent/mirror.toml"],
        Stream::Stderr,
    );
    assert_eq!(code, Some(64), "{stdout}");
}
