//! The `mirror-daemon` command: parse arguments, load the config, hand it to [`app::run`].
//!
//! Exit codes (from sysexits.h): 0 success, 64 bad config or usage, 69 a kernel feature is
//! unavailable, 70 internal error, 77 missing privilege. Each fatal error is one line on stderr.

use std::{io::Write, net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use mirror_daemon::{app, compare, config::Config, privilege};

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_NOPERM: u8 = 77;

/// Production traffic shadowing for Kubernetes nodes, without a service mesh.
///
/// Pod egress flows matching the intercept rules are handed to this daemon by eBPF; it forwards
/// them to their real destination untouched. If the daemon is not running, traffic flows
/// directly.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `mirror_daemon=debug` (overrides RUST_LOG).
    #[arg(long, global = true)]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Intercept and relay until SIGTERM or SIGINT.
    Run {
        /// TOML config file; without it the embedded default config is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the effective config (defaults filled in).
    Check {
        /// TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show how the shadows' answers compare with the primaries': verdicts, latencies, the
    /// fields that differ (noise marked), the last mismatches. Read from a running daemon.
    Comparisons {
        /// The daemon's admin endpoint (`admin.address`).
        #[arg(long, default_value = "127.0.0.1:15090")]
        admin: SocketAddr,
        /// Print the report as the endpoint serves it (JSON) instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level.as_deref());
    match cli.command {
        Command::Check { config } => match Config::from_file(&config) {
            Ok(config) => match toml::to_string_pretty(&config) {
                Ok(text) => print_out(&text),
                Err(e) => fatal(EX_SOFTWARE, &format!("cannot print the config: {e}")),
            },
            Err(e) => fatal(EX_USAGE, &e.to_string()),
        },
        Command::Comparisons { admin, json } => comparisons(admin, json),
        Command::Run { config } => {
            let (config, path) = match config {
                Some(path) => (Config::from_file(&path), Some(path)),
                None => (Config::embedded_default(), None),
            };
            let config = match config {
                Ok(config) => config,
                Err(e) => return fatal(EX_USAGE, &e.to_string()),
            };
            if let Err(missing) = privilege::missing() {
                return fatal(
                    EX_NOPERM,
                    &format!("missing privilege: {missing}; run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (CAP_SYS_ADMIN before Linux 5.8)"),
                );
            }
            privilege::lift_memlock_limit();
            // Before any thread exists: capabilities are per thread, and threads inherit them.
            match privilege::drop_all_but_required() {
                Ok(kept) => {
                    tracing::info!(capabilities = %kept.join(","), "dropped every other capability")
                }
                Err(e) => return fatal(EX_SOFTWARE, &format!("least privilege: {e}")),
            }
            let runtime = match current_thread_runtime() {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            match runtime.block_on(app::run(config, path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(app::Error::Interception(e)) if e.is_permission_denied() => {
                    fatal(EX_NOPERM, &format!("missing privilege: {e}"))
                }
                Err(e @ (app::Error::Interception(_) | app::Error::StartTimeout(_))) => {
                    fatal(EX_UNAVAILABLE, &e.to_string())
                }
                Err(e @ app::Error::AdminBind { .. }) => fatal(EX_USAGE, &e.to_string()),
                Err(e) => fatal(EX_SOFTWARE, &e.to_string()),
            }
        }
    }
}

/// `mirror-daemon comparisons`: the report of the daemon at `admin`, as tables or JSON.
fn comparisons(admin: SocketAddr, json: bool) -> ExitCode {
    let runtime = match current_thread_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = match runtime.block_on(compare::fetch::fetch(admin)) {
        Ok(report) => report,
        Err(e) => return fatal(EX_UNAVAILABLE, &e.to_string()),
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => print_out(&(text + "\n")),
            Err(e) => fatal(EX_SOFTWARE, &format!("cannot print the report: {e}")),
        }
    } else {
        print_out(&compare::render::render(&report))
    }
}

/// Writes `text` to stdout. A reader that has gone (`| head`) took what it wanted: success.
fn print_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            fatal(EX_SOFTWARE, &format!("cannot write to stdout: {e}"))
        }
        _ => ExitCode::SUCCESS,
    }
}

/// A current-thread runtime, or the exit code of failing to start one (said on stderr).
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fatal(EX_SOFTWARE, &format!("cannot start the runtime: {e}")))
}

/// One line on stderr, whatever the log format, and the exit code (the code still, when stderr
/// is gone).
fn fatal(code: u8, message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "mirror-daemon: {message}");
    ExitCode::from(code)
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::new(level),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // A line that cannot be written (nobody reads stderr any more: the log collector went
        // away) is dropped. Left on, tracing-subscriber reports the failure with `eprintln!`,
        // which panics on the same broken stderr: at start-up the daemon died with 101, and later
        // the task that logged died with it (the signal task: SIGTERM was then never acted on).
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
