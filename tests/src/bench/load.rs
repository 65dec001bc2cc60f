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
//! Both send the same request (a small GET with typical headers) and, in new-connection mode,
//! `Connection: close` with a fresh connection per request. The constant-rate client also keeps
//! its whole latency distribution ([`Distribution`]) for the report's percentile picture.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
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
    /// How late the client itself sent, p99 in microseconds (constant rate only): its floor.
    pub send_lag_p99: f64,
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
    fn content_length_is_found_case_insensitively() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 1024\r\n\r\n";
        assert_eq!(content_length(head), Some(1024));
        assert_eq!(find_head_end(head), Some(head.len()));
    }
}
