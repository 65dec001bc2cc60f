//! The load generators, run from the pod's namespace:
//!
//! - [`wrk`]: Debian's wrk, closed loop, for throughput at saturation (its latencies are those of
//!   a saturated system and are reported as such);
//! - [`constant_rate`]: an open-loop client of our own for latency at a fixed rate. Request `i` is
//!   due at `start + i / rate`; its latency is measured from that intended time, not from when it
//!   was actually sent, so a stall delays the clock of every request behind it (no coordinated
//!   omission). Requests still due when the run ends are counted with the time they have waited
//!   (a lower bound).
//!
//! - [`h2load_rate`] and [`h2load_saturation`]: Debian's h2load (nghttp2-client) for the HTTP/2
//!   scenarios, h2c with prior knowledge, keep-alive only (HTTP/2 keeps its connections). At a
//!   fixed rate h2load paces each connection with a timer of at least 10 ms (`--rps`), so the
//!   rate is spread over several connections opened one after another ([`H2RatePlan`]), and
//!   the latencies come from its per-request log: from the moment each request's HEADERS went
//!   out, not from an intended send time. At saturation it runs closed loop (connections ×
//!   streams in flight) and gives throughput and the largest request time only (its log would
//!   cost the client a write per request). [`h2load_rate`] also paces HTTP/1.1 keep-alive
//!   (`--h1`, one request at a time per connection) on request, so that both protocols can be
//!   timed against the same client.
//!
//! All send the same request (a small GET with typical headers) and, in new-connection mode,
//! `Connection: close` with a fresh connection per request. The constant-rate clients also keep
//! their whole latency distribution ([`Distribution`]) for the report's percentile picture.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mirror_tests::h2load::{H2Load, LoggedRequest};
use mirror_tests::netns::Netns;

/// The request path and headers of every request.
pub const PATH: &str = "/api/orders?id=42";
pub const HOST: &str = "orders.prod.svc.cluster.local";
const HEADERS: &[(&str, &str)] = &[
    ("User-Agent", "mirror-bench/1"),
    ("Accept", "application/json"),
    ("X-Request-Id", "4bf92f3577b34da6a3ce929d0e0e4736"),
];

/// Keep-alive, or one connection per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    KeepAlive,
    NewConnection,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::KeepAlive, Mode::NewConnection];

    pub fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::NewConnection => "new conn",
        }
    }
}

/// The request's bytes.
pub fn request(mode: Mode) -> Vec<u8> {
    let mut text = format!("GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n");
    for (name, value) in HEADERS {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if mode == Mode::NewConnection {
        text.push_str("Connection: close\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// A latency distribution in microseconds, to 3 significant digits: a few hundred KiB whatever
/// the rate and duration, and repetitions pool by adding.
pub type Distribution = hdrhistogram::Histogram<u64>;

/// The distribution of sorted microseconds (`None` when there are none).
pub fn distribution(latencies: &[u32]) -> Option<Distribution> {
    if latencies.is_empty() {
        return None;
    }
    // Up to u32::MAX µs, the largest latency the client records.
    let mut histogram = Distribution::new_with_max(u64::from(u32::MAX), 3).ok()?;
    for &latency in latencies {
        histogram.saturating_record(u64::from(latency));
    }
    Some(histogram)
}

/// Latencies and counts of one run.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Responses received (2xx).
    pub completed: u64,
    pub errors: u64,
    /// Requests due that were never sent before the end (constant rate only).
    pub missed: u64,
    pub elapsed: Duration,
    /// Microseconds.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// How late the client itself sent, p99 in microseconds (our constant-rate client only;
    /// NaN where unknown): its floor.
    pub send_lag_p99: f64,
    /// h2load at a fixed rate: how well it kept its schedule, the planned time from its first
    /// request to its last over the time it took (1.0: on time; 0.9: 10 % slower than asked).
    pub schedule_kept: Option<f64>,
    /// Every latency (constant rate only; wrk reports percentiles alone).
    pub distribution: Option<Distribution>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs wrk from `netns` against `url`-less `target` for `duration`.
pub struct Wrk<'a> {
    pub netns: &'a Netns,
    pub target: SocketAddr,
    pub connections: usize,
    pub duration: Duration,
    pub mode: Mode,
    pub cpus: Option<&'a str>,
    pub script: &'a Path,
}

/// The Lua script that makes wrk print its summary in a form we parse.
pub const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests %d\n", summary.requests))
  io.write(string.format("BENCH duration_us %d\n", summary.duration))
  io.write(string.format("BENCH errors %d\n", e.connect + e.read + e.write + e.status + e.timeout))
  io.write(string.format("BENCH p50 %d\n", latency:percentile(50)))
  io.write(string.format("BENCH p90 %d\n", latency:percentile(90)))
  io.write(string.format("BENCH p99 %d\n", latency:percentile(99)))
  io.write(string.format("BENCH max %d\n", latency.max))
end
"#;

pub fn wrk(run: &Wrk<'_>) -> Result<LoadResult> {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", run.netns.name()]);
    if let Some(cpus) = run.cpus {
        command.args(["taskset", "-c", cpus]);
    }
    let seconds = run.duration.as_secs_f64().ceil().max(1.0) as u64;
    command
        .arg("wrk")
        .arg("-t1")
        .arg(format!("-c{}", run.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(run.script)
        .arg("-H")
        .arg(format!("Host: {HOST}"));
    for (name, value) in HEADERS {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    if run.mode == Mode::NewConnection {
        command.arg("-H").arg("Connection: close");
    }
    let url = format!("http://{}{PATH}", run.target);
    command.arg(url);
    let output = command.output().context("cannot run wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let value = |key: &str| -> Result<f64> {
        stdout
            .lines()
            .find_map(|line| {
                line.strip_prefix("BENCH ")?
                    .strip_prefix(key)?
                    .strip_prefix(' ')
            })
            .with_context(|| format!("wrk printed no {key}: {stdout}"))?
            .trim()
            .parse::<f64>()
            .with_context(|| format!("wrk's {key}"))
    };
    let errors = value("errors")? as u64;
    let requests = value("requests")? as u64;
    Ok(LoadResult {
        completed: requests.saturating_sub(errors),
        errors,
        missed: 0,
        elapsed: Duration::from_micros(value("duration_us")? as u64),
        p50: value("p50")?,
        p90: value("p90")?,
        p99: value("p99")?,
        max: value("max")?,
        send_lag_p99: 0.0,
        schedule_kept: None,
        distribution: None,
    })
}

/// An open-loop run at a fixed rate.
pub struct ConstantRate<'a> {
    pub netns: &'a Netns,
    pub target: SocketAddr,
    pub rate: f64,
    pub duration: Duration,
    pub mode: Mode,
    /// Client threads, each with its own connection (keep-alive) and its share of the schedule.
    pub connections: usize,
    /// The CPU the client threads run on.
    pub cpu: Option<usize>,
}

/// What one client thread saw.
#[derive(Default)]
struct ThreadResult {
    latencies: Vec<u32>,
    lags: Vec<u32>,
    completed: u64,
    errors: u64,
    missed: u64,
}

pub fn constant_rate(run: &ConstantRate<'_>) -> Result<LoadResult> {
    let threads = run.connections.max(1);
    let request = request(run.mode);
    let results = run.netns.run(|| -> Result<Vec<ThreadResult>> {
        let barrier = Barrier::new(threads + 1);
        let start_cell = std::sync::OnceLock::new();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|k| {
                    let (barrier, start_cell, request) = (&barrier, &start_cell, &request);
                    scope
                        .spawn(move || client_thread(run, k, threads, request, barrier, start_cell))
                })
                .collect();
            barrier.wait();
            let start = Instant::now() + Duration::from_millis(50);
            let _ = start_cell.set(start);
            barrier.wait();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    })??;
    let mut latencies: Vec<u32> = Vec::new();
    let mut lags: Vec<u32> = Vec::new();
    let mut result = LoadResult {
        elapsed: run.duration,
        ..LoadResult::default()
    };
    for thread in results {
        latencies.extend(thread.latencies);
        lags.extend(thread.lags);
        result.completed += thread.completed;
        result.errors += thread.errors;
        result.missed += thread.missed;
    }
    latencies.sort_unstable();
    lags.sort_unstable();
    result.p50 = percentile(&latencies, 50.0);
    result.p90 = percentile(&latencies, 90.0);
    result.p99 = percentile(&latencies, 99.0);
    result.max = latencies.last().copied().unwrap_or(0) as f64;
    result.send_lag_p99 = percentile(&lags, 99.0);
    result.distribution = distribution(&latencies);
    Ok(result)
}

/// The `q`th percentile (nearest rank) of sorted microseconds.
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

fn client_thread(
    run: &ConstantRate<'_>,
    k: usize,
    threads: usize,
    request: &[u8],
    barrier: &Barrier,
    start_cell: &std::sync::OnceLock<Instant>,
) -> Result<ThreadResult> {
    if let Some(cpu) = run.cpu {
        pin_current_thread(cpu);
    }
    // Wake-ups as precise as the kernel allows (the default slack is 50 us).
    // SAFETY: PR_SET_TIMERSLACK takes an integer and affects only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let mut out = ThreadResult::default();
    let mut connection = None;
    let mut buffer = vec![0u8; 16 * 1024];
    if run.mode == Mode::KeepAlive {
        connection = connect(run.target).ok();
    }
    barrier.wait();
    barrier.wait();
    let start = *start_cell.get().context("no start time")?;
    let end = start + run.duration;
    let interval = Duration::from_secs_f64(1.0 / run.rate);
    let mut i = k as u64;
    loop {
        let intended = start + interval.mul_f64(i as f64);
        i += threads as u64;
        if intended >= end {
            break;
        }
        let now = Instant::now();
        if now >= end {
            // Due, never sent: it has waited at least this long.
            out.missed += 1;
            out.latencies.push(micros(now - intended));
            continue;
        }
        if intended > now {
            std::thread::sleep(intended - now);
        }
        out.lags
            .push(micros(Instant::now().saturating_duration_since(intended)));
        let result = match run.mode {
            Mode::KeepAlive => {
                if connection.is_none() {
                    connection = connect(run.target).ok();
                }
                match connection.as_mut() {
                    Some(stream) => exchange(stream, request, &mut buffer),
                    None => Err(io::Error::other("cannot connect")),
                }
            }
            Mode::NewConnection => connect(run.target)
                .and_then(|mut stream| exchange(&mut stream, request, &mut buffer)),
        };
        match result {
            Ok(()) => {
                out.completed += 1;
                out.latencies.push(micros(intended.elapsed()));
            }
            Err(_) => {
                out.errors += 1;
                connection = None;
            }
        }
    }
    Ok(out)
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

fn connect(target: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// Writes the request and reads one response (by its Content-Length) to its end.
fn exchange(stream: &mut TcpStream, request: &[u8], buffer: &mut [u8]) -> io::Result<()> {
    stream.write_all(request)?;
    let mut filled = 0;
    let (head_end, length) = loop {
        let n = stream.read(&mut buffer[filled..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        if let Some(end) = find_head_end(&buffer[..filled]) {
            let head = &buffer[..end];
            if !head.starts_with(b"HTTP/1.1 2") && !head.starts_with(b"HTTP/1.0 2") {
                return Err(io::Error::other("not a 2xx response"));
            }
            break (
                end,
                content_length(head).ok_or_else(|| io::Error::other("no length"))?,
            );
        }
        if filled == buffer.len() {
            return Err(io::Error::other("head too large"));
        }
    };
    let mut body = filled - head_end;
    while body < length {
        let n = stream.read(buffer)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body += n;
    }
    Ok(())
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// h2load for the bench's request: every URL's path is [`PATH`], `:authority` is [`HOST`], and
/// the other fields are [`HEADERS`] (in HTTP/2's lowercase).
fn h2load_request(target: SocketAddr, cpus: Option<&str>) -> H2Load {
    let mut load = H2Load::new(&format!("http://{target}{PATH}")).header(":authority", HOST);
    for (name, value) in HEADERS {
        load = load.header(&name.to_ascii_lowercase(), value);
    }
    match cpus {
        Some(cpus) => load.cpus(cpus),
        None => load,
    }
}

/// A fixed-rate run with h2load: HTTP/2, or HTTP/1.1 keep-alive when `http1` (`--h1`, one
/// request at a time per connection), paced the same way.
pub struct H2Rate<'a> {
    pub netns: &'a Netns,
    pub target: SocketAddr,
    pub rate: f64,
    pub duration: Duration,
    pub cpus: Option<&'a str>,
    pub http1: bool,
}

/// How h2load is asked for a fixed rate. Its `--rps` timer fires at most every 10 ms and sends
/// what is due, so one connection at 1000 requests/s would send bursts of ten. Instead each of
/// `clients` connections sends one request per tick (at most 100/s), and they are opened one
/// every `stagger` (a tick plus the rate's spacing), so their ticks fall evenly apart: at 1000
/// requests/s, 10 connections ticking every 10 ms, opened 11 ms apart, one request a
/// millisecond. (h2load takes whole milliseconds: above 1000 requests/s some ticks coincide.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct H2RatePlan {
    pub clients: u32,
    pub rps_per_client: f64,
    pub stagger: Duration,
    pub requests: u64,
}

impl H2RatePlan {
    /// The most requests per second one connection is asked for: one per 10 ms tick.
    const MAX_RPS_PER_CLIENT: f64 = 100.0;

    pub fn new(rate: f64, duration: Duration) -> H2RatePlan {
        let clients = (rate / Self::MAX_RPS_PER_CLIENT).ceil().max(1.0) as u32;
        let rps_per_client = rate / f64::from(clients);
        let tick = 1.0 / rps_per_client;
        let spacing = 1.0 / rate;
        let stagger_ms = ((tick + spacing) * 1000.0).round().max(1.0);
        let requests = ((rate * duration.as_secs_f64()).round() as u64).max(u64::from(clients));
        H2RatePlan {
            clients,
            rps_per_client,
            stagger: Duration::from_millis(stagger_ms as u64),
            requests,
        }
    }
}

/// Concurrent streams each paced connection may have open: enough that a stall of a second
/// at 100 requests/s does not hold requests back in the client.
const RATE_STREAMS: u32 = 128;

pub fn h2load_rate(run: &H2Rate<'_>) -> Result<LoadResult> {
    let plan = H2RatePlan::new(run.rate, run.duration);
    let load = h2load_request(run.target, run.cpus)
        .requests(plan.requests)
        .clients(plan.clients)
        .rps_per_client(plan.rps_per_client)
        .connection_rate(1, plan.stagger)
        .log();
    // HTTP/1.1 without pipelining: a request due while the last is unanswered waits in h2load.
    let load = if run.http1 {
        load.streams(1).http1()
    } else {
        load.streams(RATE_STREAMS)
    };
    let summary = load.run(run.netns)?;
    Ok(from_h2load_log(&summary.logged, &plan, run.duration))
}

impl H2RatePlan {
    /// When the last request is due, counted from the first: connection `k` opens at
    /// `k × stagger`, sends its first request at once and one more at every tick after, and
    /// h2load gives the requests that do not divide evenly to the first connections.
    pub fn planned_span(&self) -> Duration {
        let clients = u64::from(self.clients.max(1));
        let tick = Duration::from_secs_f64(1.0 / self.rps_per_client);
        (0..clients)
            .map(|k| {
                let requests = self.requests / clients + u64::from(k < self.requests % clients);
                self.stagger * k as u32 + tick.mul_f64(requests.saturating_sub(1) as f64)
            })
            .max()
            .unwrap_or_default()
    }
}

/// A fixed-rate phase's result from h2load's per-request log: latencies of the 2xx answers;
/// every other request asked for (failed, or never logged) is an error.
pub fn from_h2load_log(
    logged: &[LoggedRequest],
    plan: &H2RatePlan,
    duration: Duration,
) -> LoadResult {
    let asked = plan.requests;
    let mut latencies: Vec<u32> = logged
        .iter()
        .filter(|request| request.succeeded())
        .map(|request| u32::try_from(request.micros).unwrap_or(u32::MAX))
        .collect();
    latencies.sort_unstable();
    let completed = latencies.len() as u64;
    let first = logged.iter().map(|r| r.sent_micros).min();
    let last = logged.iter().map(|r| r.sent_micros).max();
    let schedule_kept = match (first, last) {
        (Some(first), Some(last)) if last > first => {
            Some(plan.planned_span().as_secs_f64() / ((last - first) as f64 / 1e6))
        }
        _ => None,
    };
    LoadResult {
        completed,
        errors: asked.max(logged.len() as u64) - completed,
        missed: 0,
        elapsed: duration,
        p50: percentile(&latencies, 50.0),
        p90: percentile(&latencies, 90.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().map_or(f64::NAN, |&max| f64::from(max)),
        send_lag_p99: f64::NAN,
        schedule_kept,
        distribution: distribution(&latencies),
    }
}

/// A closed-loop HTTP/2 run with h2load: `connections` × `streams` requests in flight.
pub struct H2Saturation<'a> {
    pub netns: &'a Netns,
    pub target: SocketAddr,
    pub connections: u32,
    pub streams: u32,
    pub duration: Duration,
    pub cpus: Option<&'a str>,
}

pub fn h2load_saturation(run: &H2Saturation<'_>) -> Result<LoadResult> {
    let summary = h2load_request(run.target, run.cpus)
        .clients(run.connections)
        .streams(run.streams)
        .duration(run.duration)
        .run(run.netns)?;
    Ok(LoadResult {
        completed: summary.succeeded,
        errors: summary.failed + summary.timeout,
        missed: 0,
        elapsed: run.duration,
        // Percentiles would need the per-request log; h2load's summary has the extremes.
        p50: f64::NAN,
        p90: f64::NAN,
        p99: f64::NAN,
        max: summary.request_time.max.as_secs_f64() * 1e6,
        send_lag_p99: f64::NAN,
        schedule_kept: None,
        distribution: None,
    })
}

/// `h2load --version`.
pub fn h2load_version() -> String {
    Command::new("h2load")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|_| "h2load: not found".into())
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// `wrk --version`'s first line.
pub fn wrk_version() -> String {
    Command::new("wrk")
        .arg("--version")
        .output()
        .map(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            text.lines()
                .next()
                .unwrap_or_default()
                .split(" Copyright")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|_| "wrk: not found".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn distribution_keeps_every_latency_to_three_digits() {
        let sorted: Vec<u32> = (1..=10_000).collect();
        let kept = distribution(&sorted).expect("latencies");
        assert_eq!(kept.len(), 10_000);
        for q in [0.5, 0.99, 0.999] {
            let exact = percentile(&sorted, q * 100.0);
            let approximate = kept.value_at_quantile(q) as f64;
            assert!(
                (approximate - exact).abs() <= exact / 1000.0 + 1.0,
                "q {q}: {approximate} against {exact}"
            );
        }
        assert_eq!(distribution(&[u32::MAX]).map(|d| d.len()), Some(1));
        assert!(distribution(&[]).is_none());
    }

    #[test]
    fn h2_rate_plan_spreads_one_request_per_tick_evenly() {
        let plan = H2RatePlan::new(1000.0, Duration::from_secs(4));
        assert_eq!(
            plan,
            H2RatePlan {
                clients: 10,
                rps_per_client: 100.0,
                stagger: Duration::from_millis(11),
                requests: 4000,
            }
        );
        // Each connection ticks every 10 ms; opened 11 ms apart, their ticks are 0, 1, … 9 ms
        // into every 10 ms.
        let tick_ms = (1000.0 / plan.rps_per_client) as u64;
        let mut phases: Vec<u64> = (0..u64::from(plan.clients))
            .map(|k| k * plan.stagger.as_millis() as u64 % tick_ms)
            .collect();
        phases.sort_unstable();
        assert_eq!(phases, (0..10).collect::<Vec<u64>>());
        let slow = H2RatePlan::new(250.0, Duration::from_millis(2500));
        assert_eq!(
            (slow.clients, slow.stagger, slow.requests),
            (3, Duration::from_millis(16), 625)
        );
        assert!((slow.rps_per_client - 250.0 / 3.0).abs() < 1e-9);
        // Never fewer requests than connections (h2load refuses that).
        assert_eq!(H2RatePlan::new(50.0, Duration::ZERO).requests, 1);
    }

    #[test]
    fn h2_rate_plan_knows_when_its_last_request_is_due() {
        // Ten connections of 400, the last opened 99 ms in: 99 + 399 × 10 ms.
        let close_to = |span: Duration, ms: f64| (span.as_secs_f64() * 1e3 - ms).abs() < 1e-3;
        let plan = H2RatePlan::new(1000.0, Duration::from_secs(4));
        assert!(
            close_to(plan.planned_span(), 4089.0),
            "{:?}",
            plan.planned_span()
        );
        // 625 over 3 connections: 209, 208, 208; ticks of 12 ms, opened 16 ms apart: the last
        // connection's 207 ticks after 32 ms, the first's 208 ticks.
        let uneven = H2RatePlan::new(250.0, Duration::from_millis(2500));
        assert!(
            close_to(uneven.planned_span(), 2516.0),
            "{:?}",
            uneven.planned_span()
        );
    }

    #[test]
    fn h2load_log_gives_percentiles_of_the_2xx_answers_and_the_rate_sent() {
        let mut logged: Vec<LoggedRequest> = (0..100u64)
            .map(|i| LoggedRequest {
                // One request a millisecond.
                sent_micros: 1_000_000 + i * 1000,
                status: Some(200),
                micros: i + 1,
            })
            .collect();
        logged[7].status = None;
        logged[8].status = Some(503);
        // Asked for 101 on one connection at 1000/s: due over 100 ms, sent over 99 ms.
        let plan = H2RatePlan {
            clients: 1,
            rps_per_client: 1000.0,
            stagger: Duration::from_millis(1),
            requests: 101,
        };
        let result = from_h2load_log(&logged, &plan, Duration::from_secs(1));
        assert_eq!((result.completed, result.errors), (98, 3));
        // 1..=100 without 8 and 9: ranks 49 and 98 of 98.
        assert_eq!((result.p50, result.p99, result.max), (51.0, 100.0, 100.0));
        let kept = result.schedule_kept.expect("kept");
        assert!((kept - 100.0 / 99.0).abs() < 1e-9, "{kept}");
        assert!(result.send_lag_p99.is_nan());
        assert_eq!(result.distribution.map(|d| d.len()), Some(98));
        let none = from_h2load_log(&[], &plan, Duration::from_secs(1));
        assert_eq!((none.completed, none.errors), (0, 101));
        assert!(none.p99.is_nan() && none.schedule_kept.is_none());
    }

    #[test]
    fn content_length_is_found_case_insensitively() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 1024\r\n\r\n";
        assert_eq!(content_length(head), Some(1024));
        assert_eq!(find_head_end(head), Some(head.len()));
    }
}
