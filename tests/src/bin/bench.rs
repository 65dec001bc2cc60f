//! `cargo xtask bench`: builds a node in network namespaces and measures, for each scenario
//! (direct; through the daemon with no rule, with 100 % mirrored to a healthy shadow, to a slow
//! and a blackholed shadow; nginx's `mirror` to the same shadows; and, when asked for, the same
//! daemon scenarios over HTTP/2 with h2load; and, when asked for, mirroring 1 KiB JSON answers
//! alone and with every pair of answers compared), latency at a fixed rate and throughput at
//! saturation, keep-alive and with a new connection per request. Scenarios run
//! interleaved (A B C …, A B C …) and repeated; the report gives medians and their range, ratios
//! to direct taken within each repetition, the daemon's CPU and peak RSS, and the copies that
//! reached the shadows, and the goals of issue 11 as ratios within each repetition. It prints a
//! markdown report and writes it to `target/bench/results-<date>.md`, with pictures beside it
//! (`results-<date>-latency.svg`, `-throughput.svg`, `-cpu.svg`) that the report links.
//!
//! Runs as root (namespaces, BPF). Needs `wrk` and `nginx` (Debian packages; `cargo xtask bench`
//! installs them), and for the HTTP/2 scenarios `h2load` and the harness's Python venv (`cargo
//! xtask setup`). Exit codes: 0 done, 2 could not run.

#[path = "../bench/mod.rs"]
mod bench;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mirror_tests::environment::{daemon_binary, require_daemon, workspace};
use mirror_tests::scratch::ScratchDir;

use bench::callgrind::{self, Callgrind};
use bench::nginx::ShadowAnswer;
use bench::report::Results;
use bench::scenario::{self, Bed, Kind, Pinning, Protocol, RateClient, Scenario, Settings};
use bench::{launcher, load, nginx, plots, procstat};

const USAGE: &str = "\
usage: bench [options]
  --scenarios LIST      comma-separated, in run order (default: http1):
                        direct,intercept,mirror,mirror-degraded,nginx-mirror,nginx-degraded
                        (group http1), h2-direct,h2-intercept,h2-mirror,h2-mirror-degraded
                        (group h2: HTTP/2 with h2load, keep-alive only), or all (http1
                        and h2); compare: mirror-json,compare (the same 1 KiB JSON answers
                        mirrored alone, then mirrored with every pair of answers compared)
  --reps N              repetitions of the interleaved sequence (default 3)
  --rate R              fixed rate of the latency phases, requests/s (default 1000)
  --rate-duration S     seconds of each fixed-rate phase (default 4)
  --duration S          seconds of each saturation phase (default 4)
  --connections N       wrk connections at saturation (default 32)
  --h2-connections N    h2load connections at saturation (default 4)
  --h2-streams N        h2load concurrent streams per connection at saturation (default 8)
  --rate-connections N  client threads/connections at the fixed rate (default 8)
  --warmup S            seconds of unmeasured wrk load at the start of each run (default 1)
  --nginx-workers N     worker processes of the nginx proxy (default 2, one per core)
  --workers N           the daemon's worker threads, relay.workers (default: its own, one per
                        core)
  --h1-rate-client C    what sends HTTP/1.1 keep-alive requests at the fixed rate: ours (default,
                        an open-loop client) or h2load (`h2load --h1`, paced exactly as the
                        HTTP/2 scenarios: the same client for both protocols)
  --shadow-answer A     what the healthy shadow answers: text (default: 200 with a 10-byte body;
                        nginx's HTTP/2 sends it in two segments) or empty (204, one segment
                        for HTTP/1.1 and HTTP/2 alike)
  --no-pin              do not pin the load generator (CPU 0) and the servers (CPU 1)
  --proxy-alone         pin the proxy under test (daemon or nginx proxy) alone on CPU 1, and the
                        load generator and the servers together on CPU 0: nothing the bench
                        runs shares the proxy's core (the daemon then runs one worker)
  --wait-quiet S        wait up to S seconds for the 1-minute load average to fall below
                        --max-load before starting (default 0: start at once, report the noise)
  --max-load L          (default 1.0)
  --instructions        count the daemon's instructions per request instead of timing it: the
                        daemon runs under callgrind (Debian's valgrind), only the fixed-rate
                        phases run, at --rate 200 unless given, and the report is the count per
                        request, with callgrind's simulated cache misses and mispredicted
                        branches, and their ratios (default scenarios then
                        intercept,mirror,h2-intercept,h2-mirror; daemon scenarios only)
  --out DIR             where results-<date>.md and its pictures go
                        (default <workspace>/target/bench)";

/// The fixed rate under `--instructions` unless given: what the daemon keeps up with under
/// callgrind on this bed.
const INSTRUCTIONS_RATE: f64 = 200.0;

struct Options {
    scenarios: Vec<Scenario>,
    /// `--instructions`: count instructions under callgrind instead of timing.
    instructions: bool,
    reps: usize,
    wait_quiet: Duration,
    max_load: f64,
    out: PathBuf,
    settings: Settings,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        scenarios: Vec::new(),
        instructions: false,
        reps: 3,
        wait_quiet: Duration::ZERO,
        max_load: 1.0,
        out: workspace().join("target/bench"),
        settings: Settings {
            rate: 1000.0,
            rate_duration: Duration::from_secs(4),
            rate_connections: 8,
            saturation_duration: Duration::from_secs(4),
            wrk_connections: 32,
            h2_connections: 4,
            h2_streams: 8,
            warmup: Duration::from_secs(1),
            pinning: Pinning::Split,
            nginx_workers: 2,
            shadow_answer: ShadowAnswer::Text,
            daemon: daemon_binary(),
            // Set by `run`, where it is made.
            work_dir: PathBuf::new(),
            callgrind: None,
            daemon_workers: None,
            daemon_launcher: None,
            h1_rate_client: RateClient::Ours,
        },
    };
    let mut rate_given = false;
    let mut scenarios_given = false;
    let mut args = std::env::args().skip(1);
    let seconds = |value: String| -> Result<Duration> {
        Ok(Duration::from_secs_f64(value.parse::<f64>().with_context(
            || format!("not a number of seconds: {value}"),
        )?))
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--scenarios" => {
                scenarios_given = true;
                options.scenarios = Vec::new();
                for key in value()?.split(',') {
                    let group = Scenario::parse_group(key.trim())
                        .with_context(|| format!("unknown scenario {key:?}\n{USAGE}"))?;
                    for scenario in group {
                        // Once each, where first named: the interleaving is the run order.
                        if !options.scenarios.contains(&scenario) {
                            options.scenarios.push(scenario);
                        }
                    }
                }
            }
            "--reps" => options.reps = value()?.parse()?,
            "--rate" => {
                rate_given = true;
                options.settings.rate = value()?.parse()?;
            }
            "--instructions" => options.instructions = true,
            "--rate-duration" => options.settings.rate_duration = seconds(value()?)?,
            "--duration" => options.settings.saturation_duration = seconds(value()?)?,
            "--connections" => options.settings.wrk_connections = value()?.parse()?,
            "--h2-connections" => options.settings.h2_connections = value()?.parse()?,
            "--h2-streams" => options.settings.h2_streams = value()?.parse()?,
            "--rate-connections" => options.settings.rate_connections = value()?.parse()?,
            "--warmup" => options.settings.warmup = seconds(value()?)?,
            "--nginx-workers" => options.settings.nginx_workers = value()?.parse()?,
            "--workers" => options.settings.daemon_workers = Some(value()?.parse()?),
            "--h1-rate-client" => {
                let text = value()?;
                options.settings.h1_rate_client = RateClient::parse(&text)
                    .with_context(|| format!("--h1-rate-client is ours or h2load, not {text:?}"))?;
            }
            "--shadow-answer" => {
                let text = value()?;
                options.settings.shadow_answer = ShadowAnswer::parse(&text)
                    .with_context(|| format!("--shadow-answer is text or empty, not {text:?}"))?;
            }
            "--no-pin" => options.settings.pinning = Pinning::None,
            "--proxy-alone" => options.settings.pinning = Pinning::ProxyAlone,
            "--wait-quiet" => options.wait_quiet = seconds(value()?)?,
            "--max-load" => options.max_load = value()?.parse()?,
            "--out" => options.out = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if !scenarios_given {
        options.scenarios = if options.instructions {
            vec![
                Scenario::Intercept,
                Scenario::Mirror,
                Scenario::H2Intercept,
                Scenario::H2Mirror,
            ]
        } else {
            Scenario::HTTP1.to_vec()
        };
    }
    if options.instructions {
        if !rate_given {
            options.settings.rate = INSTRUCTIONS_RATE;
        }
        if options.settings.pinning == Pinning::ProxyAlone {
            bail!(
                "--instructions and --proxy-alone do not go together: instructions do not \
                 depend on which core runs them"
            );
        }
        if let Some(other) = options.scenarios.iter().find(|s| !s.runs_the_daemon()) {
            bail!(
                "--instructions counts the daemon's instructions: {} does not run it",
                other.key()
            );
        }
    }
    if options.scenarios.is_empty() || options.reps == 0 {
        bail!("nothing to run\n{USAGE}");
    }
    if options.settings.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    Ok(options)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: could not run: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<()> {
    let options = parse_args()?;
    let Some(daemon) = require_daemon("bench") else {
        bail!("the bench needs root, namespaces, BPF and the daemon binary (see above)");
    };
    let http2 = options
        .scenarios
        .iter()
        .any(|s| s.protocol() == Protocol::Http2);
    let mut tools = vec!["wrk", "nginx", "taskset"];
    if http2 {
        tools.push("h2load");
    }
    if options.instructions {
        tools.extend(callgrind::TOOLS);
    }
    for tool in tools {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |out| !out.status.success())
        {
            bail!("{tool} is missing (cargo xtask bench installs it)");
        }
    }
    let mut settings = options.settings.clone();
    // Removed on every way out, errors included (and by the next run's sweep if this one is
    // killed); dropped after the bed, whose servers keep their files in it.
    let work_dir = ScratchDir::for_process("bench")?;
    settings.work_dir = work_dir.path().to_path_buf();
    // A private copy: a rebuild of the workspace during the bench must not change what is measured.
    settings.daemon = settings.work_dir.join("mirror-daemon");
    std::fs::copy(&daemon, &settings.daemon)
        .with_context(|| format!("cannot copy {}", daemon.display()))?;
    if options.instructions {
        // Kept beside the report, for callgrind_annotate.
        let dumps = options.out.join("callgrind");
        let callgrind = Callgrind::prepare(&settings.daemon, &dumps)?;
        settings.daemon_launcher = Some(callgrind.launcher.clone());
        settings.callgrind = Some(callgrind);
        eprintln!(
            "bench: counting the daemon's instructions under callgrind (dumps in {})",
            dumps.display()
        );
    }
    if let Some(cpus) = settings.pinning.proxy_cpus() {
        settings.daemon_launcher = Some(launcher::write(
            &settings.work_dir.join("mirror-daemon-pinned"),
            &["taskset", "-c", cpus],
            &settings.daemon,
        )?);
    }
    wait_for_quiet(options.wait_quiet, options.max_load);
    let competing_at_start = procstat::competing_processes();
    let started = Instant::now();
    let environment = environment(&settings, &daemon, http2);
    eprintln!("bench: {}", environment.replace('\n', "\nbench: "));

    let bed = Bed::build(&settings, &options.scenarios)?;
    let mut runs = Vec::new();
    let total = options.reps * options.scenarios.len();
    for rep in 0..options.reps {
        for &scenario in &options.scenarios {
            let run = bed
                .run(scenario, &settings)
                .with_context(|| format!("repetition {}, {}", rep + 1, scenario.key()))?;
            eprintln!(
                "bench: [{}/{total}] rep {} {:<16} load {:.2} | {}",
                runs.len() + 1,
                rep + 1,
                scenario.key(),
                run.loadavg,
                summary(&run)
            );
            runs.push(run);
        }
    }
    drop(bed);
    drop(work_dir);
    let competing_at_end = procstat::competing_processes();

    let results = Results {
        runs: &runs,
        scenarios: &options.scenarios,
    };
    let stem = format!("results-{}", now_for_file());
    std::fs::create_dir_all(&options.out)?;
    if options.instructions {
        return write_instructions_report(
            &results,
            &settings,
            &options,
            &environment,
            started,
            &stem,
        );
    }
    let mut report = String::new();
    let _ = writeln!(report, "## Bench results\n");
    let _ = writeln!(report, "{environment}\n");
    report.push_str(&results.tables(settings.rate));
    report.push('\n');
    report.push_str(&results.goals(settings.rate));
    // Named before writing: the report links its pictures by name.
    let (pictures, written) =
        plots::write_beside(&plots::draw(&results, settings.rate), &options.out, &stem);
    report.push('\n');
    report.push_str(&pictures);
    let _ = writeln!(report, "\n### Noise\n");
    report.push_str(&results.noise());
    let _ = writeln!(
        report,
        "- other busy processes (compilers, VMs, test runners) at the start: {}; at the end: {}",
        list_or_none(&competing_at_start),
        list_or_none(&competing_at_end)
    );
    let _ = writeln!(
        report,
        "- {} runs in {:.0} s\n",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    report.push_str(&method(&settings, &options));

    println!("{report}");
    let path = options.out.join(format!("{stem}.md"));
    std::fs::write(&path, &report).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: written to {}", path.display());
    for picture in written {
        eprintln!("bench: picture {}", picture.display());
    }
    Ok(())
}

/// `--instructions`: the instruction counts and how they were taken, printed and written to
/// `<stem>-instructions.md`.
fn write_instructions_report(
    results: &Results<'_>,
    settings: &Settings,
    options: &Options,
    environment: &str,
    started: Instant,
    stem: &str,
) -> Result<()> {
    let mut report = String::from("## Bench results: the daemon's instructions\n\n");
    let _ = writeln!(report, "{environment}\n");
    report.push_str(&results.instructions_table(settings.rate));
    let _ = writeln!(
        report,
        "\n### Method\n\n\
         - scenarios, in run order, repeated {} times: {}\n\
         - each run starts the daemon afresh under callgrind (`valgrind --tool=callgrind \
         --instr-atstart=no --cache-sim=yes --branch-sim=yes`), warms up for {:?} (not counted), \
         then runs each fixed-rate phase ({:.0} req/s for {:?}; HTTP/1.1 keep-alive and with a new \
         connection per request, HTTP/2 with h2load, keep-alive) with instrumentation switched on \
         from the phase's start until its last copies are answered; every thread of the daemon is \
         counted, and each count is divided by the requests completed; the caches and branch \
         predictor are callgrind's simulation, not the machine's counters\n\
         - healthy shadow answering {}; no saturation phases (the daemon runs some 20 to 50 times \
         slower under callgrind, so latency and CPU time are not measured)\n\
         - daemon: {}\n\
         - {} runs in {:.0} s",
        options.reps,
        options
            .scenarios
            .iter()
            .map(|s| format!("`{}`", s.key()))
            .collect::<Vec<_>>()
            .join(", "),
        settings.warmup,
        settings.rate,
        settings.rate_duration,
        settings.shadow_answer.describe(),
        settings.daemon_workers.map_or_else(
            || "its default workers, one per core".to_owned(),
            |n| format!("{n} worker thread(s) (`--workers`)")
        ),
        results.runs.len(),
        started.elapsed().as_secs_f64(),
    );
    println!("{report}");
    let path = options.out.join(format!("{stem}-instructions.md"));
    std::fs::write(&path, &report).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: written to {}", path.display());
    Ok(())
}

fn summary(run: &scenario::Run) -> String {
    let mut parts = Vec::new();
    for phase in &run.phases {
        let text = match (phase.kind, phase.per_request(|c| c.instructions)) {
            (Kind::Rate, Some(per_request)) => format!(
                "{} {:.1} k instructions, {:.0} I1 misses / req ({} req)",
                phase.mode.label(),
                per_request / 1000.0,
                phase.per_request(|c| c.i1_misses).unwrap_or(f64::NAN),
                phase.load.completed
            ),
            (Kind::Rate, None) => format!("{} p99 {:.0} µs", phase.mode.label(), phase.load.p99),
            (Kind::Saturation, _) => {
                format!("{} {:.0} req/s", phase.mode.label(), phase.load.rps())
            }
        };
        parts.push(text);
    }
    parts.join(", ")
}

fn list_or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(" ")
    }
}

fn wait_for_quiet(limit: Duration, max_load: f64) {
    if limit.is_zero() {
        return;
    }
    let deadline = Instant::now() + limit;
    loop {
        let load = procstat::loadavg();
        if load < max_load {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("bench: load average still {load:.2} after {limit:?}; starting anyway");
            return;
        }
        eprintln!(
            "bench: load average {load:.2} ≥ {max_load}; waiting (busy: {})",
            list_or_none(&procstat::competing_processes())
        );
        std::thread::sleep(Duration::from_secs(15));
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn now_for_file() -> String {
    command_line("date", &["-u", "+%Y-%m-%dT%H%M%SZ"])
}

fn environment(settings: &Settings, original: &std::path::Path, http2: bool) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let daemon = command_line(&settings.daemon.display().to_string(), &["--version"]);
    // The commit of the tree the daemon was built from: its workspace (target/<profile>/..).
    let root = original
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .map_or_else(workspace, std::path::Path::to_path_buf)
        .display()
        .to_string();
    let commit = command_line("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = !command_line(
        "git",
        &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_empty();
    let h2load = if http2 {
        format!("; {}", load::h2load_version())
    } else {
        String::new()
    };
    format!(
        "- date: {}\n- kernel: {}; CPU: {cpu}, {cores} cores\n- {daemon} at commit {commit}{} \
         ({}); nginx {}; {}{h2load}",
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command_line("uname", &["-r"]),
        if dirty {
            " (work tree with changes)"
        } else {
            ""
        },
        original.display(),
        nginx::version(),
        load::wrk_version(),
    )
}

fn method(settings: &Settings, options: &Options) -> String {
    let mut out = String::from("### Method\n\n");
    let _ = writeln!(
        out,
        "- scenarios, in run order, repeated {} times: {}",
        options.reps,
        options
            .scenarios
            .iter()
            .map(|s| format!("`{}` ({})", s.key(), s.describe()))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        out,
        "- each run starts its proxy afresh, warms up for {:?} (wrk, keep-alive), then: {:.0} req/s for {:?} \
         keep-alive, then with a new connection per request ({} client threads, open loop, latency from the \
         intended send time); then wrk -t1 -c{} for {:?}, keep-alive, then `Connection: close`",
        settings.warmup,
        settings.rate,
        settings.rate_duration,
        settings.rate_connections,
        settings.wrk_connections,
        settings.saturation_duration,
    );
    if settings.h1_rate_client == RateClient::H2load {
        let _ = writeln!(
            out,
            "- `--h1-rate-client h2load`: the HTTP/1.1 keep-alive phase at the fixed rate is sent by \
             h2load `--h1` instead, paced and timed exactly as the HTTP/2 scenarios' (below; one \
             request at a time per connection, no pipelining), so both protocols meet the same \
             client process and schedule; the new-connection phase keeps the open-loop client"
        );
    }
    let _ = writeln!(
        out,
        "- primary: nginx, 1 worker, `return 200` with a 1 KiB body; healthy shadow: nginx, 1 worker \
         (copies counted with `stub_status`), answering {}; slow shadow: the harness's server answering after {:?}; \
         blackholed shadow: SYNs dropped. Daemon targets and nginx `mirror` locations alike: connect \
         timeout {}, request timeout {}; daemon defaults otherwise (32 copies in flight, queue 1024)",
        settings.shadow_answer.describe(),
        scenario::SLOW_DELAY,
        nginx::MIRROR_CONNECT_TIMEOUT,
        nginx::MIRROR_REQUEST_TIMEOUT
    );
    if options.scenarios.contains(&Scenario::Compare) {
        let _ = writeln!(
            out,
            "- comparison scenarios: primary and healthy shadow nginx also serve, on port {}, the same \
             {} B JSON document (`application/json`; an order with six items and a `request_id` nginx \
             draws per answer, so the two bodies differ in that field only: the daemon parses both as \
             JSON, and the field becomes noise after 20 pairs and leaves the verdicts); mirror-json \
             mirrors it to the healthy shadow, compare the same with `[mirror.rules.compare]` \
             `percent = 100` (other compare settings at their defaults); their ratio is the cost of \
             comparing",
            scenario::JSON_PORT,
            nginx::JSON_BYTES,
        );
    }
    if options
        .scenarios
        .iter()
        .any(|s| s.protocol() == Protocol::Http2)
    {
        let plan = load::H2RatePlan::new(settings.rate, settings.rate_duration);
        let _ = writeln!(
            out,
            "- HTTP/2 scenarios (h2c with prior knowledge, keep-alive only): the same request (`:authority` \
             the Host, the same fields in lowercase) to the same nginx primary and healthy shadow on their h2c \
             ports (`listen … http2`), 1 KiB answers; warm-up with h2load; then {:.0} req/s for {:?}: h2load \
             `--rps {:.1}` on each of {} connections opened {:?} apart (`-r 1 --rate-period`; its pacing timer \
             fires at most every 10 ms, so one request per connection and tick, the ticks spread evenly), \
             latency from each request's HEADERS being sent to the end of its answer (h2load's `--log-file`: \
             not from an intended send time, so a client late on its schedule hides its lateness rather than \
             counting it; the rate it actually sent is under Noise); then h2load -c{} -m{} for {:?} (closed \
             loop; throughput and the largest request time only: its per-request log would cost the client a \
             write per request). Slow h2c shadow: the harness's Python `h2` server (`tests/h2/h2_server.py \
             --delay {}`, under SCHED_IDLE: it runs on the bed's cores only when they are \
             otherwise idle); blackholed shadow: the same dropped port. Ratios are taken to `h2-direct`",
            settings.rate,
            settings.rate_duration,
            plan.rps_per_client,
            plan.clients,
            plan.stagger,
            settings.h2_connections,
            settings.h2_streams,
            settings.saturation_duration,
            scenario::SLOW_DELAY.as_secs_f64(),
        );
    }
    let _ = writeln!(
        out,
        "- nginx proxy: {} workers, keep-alive upstream pools (its best set-up), in the node namespace at the \
         pod's gateway address; the daemon runs with its defaults, {}",
        settings.nginx_workers,
        settings.daemon_workers.map_or_else(
            || "one worker (a current-thread tokio runtime) per core it may run on".to_owned(),
            |n| format!("except {n} worker thread(s) (`--workers`)")
        )
    );
    let _ = writeln!(out, "- pinning: {}", settings.pinning.describe());
    out.push_str(
        "- medians over repetitions with (min–max); ratios and differences to direct are taken within \
         each repetition; CPU is utime + stime of the daemon (or all nginx proxy processes) over the phase; \
         RSS is the largest VmRSS sampled every 50 ms during the phases (nginx: summed over its processes); \
         bed CPU per request is the CPU time of everything the bench runs (load generator, primary, \
         shadows, proxy; kernel work done in their context included, other processes' not) over the phase \
         divided by the requests; copies delivered are counted at the shadows, dropped = expected − delivered\n",
    );
    out
}
