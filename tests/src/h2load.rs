//! `h2load` (Debian's nghttp2-client) run from a pod's namespace against an h2c server, and its
//! summary parsed: request counts by outcome and status class, throughput, and the latency
//! rows (request, connect, first byte). Bounded: by a request count, or by a duration. On
//! request it paces each connection (`--rps`), opens connections at a rate (`-r`), keeps its
//! per-request log (`--log-file`, parsed into [`LoggedRequest`]s) and runs pinned to CPUs.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::h2c::header_and_data_args;
use crate::netns::Netns;
use crate::scratch::ScratchDir;

/// A load to run.
#[derive(Clone, Debug)]
pub struct H2Load {
    pub urls: Vec<String>,
    /// `-n`: total requests (ignored with a duration).
    pub requests: u64,
    /// `-c`: client connections.
    pub clients: u32,
    /// `-m`: concurrent streams per connection.
    pub streams: u32,
    /// `-t`: threads.
    pub threads: u32,
    /// `-D`: run for this long instead of a request count.
    pub duration: Option<Duration>,
    pub headers: Vec<(String, String)>,
    /// `-d`: a body for every request (h2load then sends POST).
    pub data: Option<Vec<u8>>,
    /// `--rps`: requests per second of each connection.
    pub rps_per_client: Option<f64>,
    /// `-r` and `--rate-period`: open this many connections per period (not with a duration).
    pub connection_rate: Option<(u32, Duration)>,
    /// `--log-file`: keep one line per request ([`H2LoadSummary::logged`]).
    pub log: bool,
    /// Run under `taskset -c` with this CPU list.
    pub cpus: Option<String>,
    /// `--h1`: speak HTTP/1.1 instead (`:authority` becomes the Host; `streams` above 1 would
    /// pipeline).
    pub http1: bool,
}

impl H2Load {
    /// 100 requests over 1 connection with 10 streams at a time, on `url`.
    pub fn new(url: &str) -> H2Load {
        H2Load {
            urls: vec![url.to_owned()],
            requests: 100,
            clients: 1,
            streams: 10,
            threads: 1,
            duration: None,
            headers: Vec::new(),
            data: None,
            rps_per_client: None,
            connection_rate: None,
            log: false,
            cpus: None,
            http1: false,
        }
    }

    /// Total requests.
    pub fn requests(mut self, requests: u64) -> H2Load {
        self.requests = requests;
        self
    }

    /// Client connections.
    pub fn clients(mut self, clients: u32) -> H2Load {
        self.clients = clients;
        self
    }

    /// Concurrent streams per connection.
    pub fn streams(mut self, streams: u32) -> H2Load {
        self.streams = streams;
        self
    }

    /// Threads.
    pub fn threads(mut self, threads: u32) -> H2Load {
        self.threads = threads;
        self
    }

    /// Runs for `duration` rather than a number of requests.
    pub fn duration(mut self, duration: Duration) -> H2Load {
        self.duration = Some(duration);
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> H2Load {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends `data` as every request's body.
    pub fn data(mut self, data: &[u8]) -> H2Load {
        self.data = Some(data.to_vec());
        self
    }

    /// Paces each connection at `rps` requests per second (h2load's `--rps`: a timer per
    /// connection that fires every `max(1 / rps, 10 ms)` and sends what is due).
    pub fn rps_per_client(mut self, rps: f64) -> H2Load {
        self.rps_per_client = Some(rps);
        self
    }

    /// Opens `connections` connections every `period` rather than all at once.
    pub fn connection_rate(mut self, connections: u32, period: Duration) -> H2Load {
        self.connection_rate = Some((connections, period));
        self
    }

    /// Keeps h2load's per-request log ([`H2LoadSummary::logged`]).
    pub fn log(mut self) -> H2Load {
        self.log = true;
        self
    }

    /// Runs h2load pinned to `cpus` (a `taskset -c` list).
    pub fn cpus(mut self, cpus: &str) -> H2Load {
        self.cpus = Some(cpus.to_owned());
        self
    }

    /// Speaks HTTP/1.1 (h2load's `--h1`) rather than h2c: the same pacing and per-request log
    /// for the other protocol.
    pub fn http1(mut self) -> H2Load {
        self.http1 = true;
        self
    }

    /// How long the run may take before it is stopped as hung.
    fn time_limit(&self) -> Duration {
        let slack = Duration::from_secs(30);
        match (self.duration, self.rps_per_client) {
            (Some(duration), _) => duration + slack,
            (None, Some(rps)) if rps > 0.0 => {
                let per_client = self.requests as f64 / f64::from(self.clients.max(1));
                Duration::from_secs_f64(per_client / rps) + slack
            }
            (None, _) => Duration::from_secs(120),
        }
    }

    /// h2load's arguments: its options, the log at `log_file` when kept, then
    /// `header_and_data` (see [`header_and_data_args`]) and the URLs.
    fn args(&self, log_file: &Path, header_and_data: Vec<String>) -> Vec<String> {
        let mut args: Vec<String> = vec![
            format!("--clients={}", self.clients),
            format!("--max-concurrent-streams={}", self.streams),
            format!("--threads={}", self.threads),
        ];
        // Bounded either way: by the count, or by the duration (whole milliseconds: h2load takes
        // integers with a unit, not "1.5").
        match self.duration {
            Some(duration) => args.push(format!("--duration={}ms", duration.as_millis().max(1))),
            None => args.push(format!("--requests={}", self.requests)),
        }
        if let Some(rps) = self.rps_per_client {
            args.push(format!("--rps={rps}"));
        }
        if let Some((connections, period)) = self.connection_rate {
            args.push(format!("--rate={connections}"));
            args.push(format!("--rate-period={}ms", period.as_millis().max(1)));
        }
        if self.log {
            args.push(format!("--log-file={}", log_file.display()));
        }
        if self.http1 {
            args.push("--h1".to_owned());
        }
        args.extend(header_and_data);
        args.extend(self.urls.iter().cloned());
        args
    }

    /// Runs the load inside `netns` (a pod's) and parses the summary (and the per-request log,
    /// when kept). Fails when h2load cannot run or prints no summary, not when requests fail
    /// (those are counted).
    pub fn run(&self, netns: &Netns) -> Result<H2LoadSummary> {
        ensure!(!self.urls.is_empty(), "h2load needs a URL");
        let dir = ScratchDir::new(netns, "h2load")?;
        let log_file = dir.join(LOG_FILE);
        let header_and_data = header_and_data_args(&dir, &self.headers, self.data.as_deref())?;
        let mut args = self.args(&log_file, header_and_data);
        let program = match &self.cpus {
            Some(cpus) => {
                args.splice(0..0, ["-c".to_owned(), cpus.clone(), "h2load".to_owned()]);
                "taskset"
            }
            None => "h2load",
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = netns.exec_output(program, &args, None, self.time_limit())?;
        ensure!(
            output.success,
            "h2load (pod side) {:?} failed: {}{}",
            self.urls,
            output.stderr.trim(),
            output.stdout.trim()
        );
        let mut summary = H2LoadSummary::parse(&output.stdout)
            .with_context(|| format!("h2load printed:\n{}", output.stdout))?;
        if self.log {
            let text = std::fs::read_to_string(&log_file)
                .with_context(|| format!("h2load wrote no log at {}", log_file.display()))?;
            summary.logged = LoggedRequest::parse_log(&text)?;
        }
        Ok(summary)
    }
}

/// The per-request log's name in the run's scratch directory.
const LOG_FILE: &str = "requests.log";

/// One line of h2load's `--log-file`: when the request's HEADERS went out, its status (`None`:
/// the stream failed), and the time from then to the end of its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Microseconds since the Unix epoch (wall clock) when the request was sent.
    pub sent_micros: u64,
    pub status: Option<u16>,
    /// Microseconds from sending the request to the end of its response.
    pub micros: u64,
}

impl LoggedRequest {
    /// Parses the log: tab-separated `start µs`, `status` (`-1` for a failed stream) and
    /// `µs until the end of the response`, one request a line; columns after the third (later
    /// h2load versions may add some) are ignored.
    pub fn parse_log(text: &str) -> Result<Vec<LoggedRequest>> {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                Self::parse_line(line)
                    .with_context(|| format!("h2load log line {}: {line:?}", number + 1))
            })
            .collect()
    }

    fn parse_line(line: &str) -> Result<LoggedRequest> {
        let mut fields = line.trim().split('\t');
        let mut next = |what: &str| fields.next().with_context(|| format!("no {what}"));
        let sent_micros = next("start time")?.parse()?;
        let status = match next("status")?.parse::<i32>()? {
            -1 => None,
            code => Some(u16::try_from(code).with_context(|| format!("status {code}"))?),
        };
        let micros = next("duration")?.parse()?;
        Ok(LoggedRequest {
            sent_micros,
            status,
            micros,
        })
    }

    /// A 2xx answer.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|code| (200..300).contains(&code))
    }
}

/// One latency row: min, max, mean, standard deviation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub min: Duration,
    pub max: Duration,
    pub mean: Duration,
    pub sd: Duration,
}

/// h2load's summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct H2LoadSummary {
    /// Wall time of the whole run.
    pub finished_in: Duration,
    pub requests_per_second: f64,
    pub total: u64,
    pub started: u64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// Responses by status class: 2xx, 3xx, 4xx, 5xx.
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Bytes received in all.
    pub traffic_bytes: u64,
    pub request_time: Latency,
    pub connect_time: Latency,
    pub first_byte_time: Latency,
    /// The application protocol h2load negotiated (`h2c`).
    pub protocol: String,
    /// Every request, from `--log-file` (empty unless [`H2Load::log`]), in the order they ended.
    pub logged: Vec<LoggedRequest>,
}

impl H2LoadSummary {
    /// Parses h2load's standard output.
    pub fn parse(text: &str) -> Result<H2LoadSummary> {
        let mut summary = H2LoadSummary::default();
        let mut seen_requests = false;
        for line in text.lines().map(str::trim) {
            if let Some(protocol) = line.strip_prefix("Application protocol:") {
                summary.protocol = protocol.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("finished in ") {
                // finished in 43.55ms, 4592.42 req/s, 219.26KB/s
                let mut parts = rest.split(',').map(str::trim);
                summary.finished_in = duration(parts.next().unwrap_or_default())?;
                summary.requests_per_second = parts
                    .next()
                    .and_then(|p| p.strip_suffix(" req/s"))
                    .context("no req/s after `finished in`")?
                    .parse()?;
            } else if let Some(rest) = line.strip_prefix("requests:") {
                // requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, ...
                for (value, name) in counts(rest)? {
                    match name {
                        "total" => summary.total = value,
                        "started" => summary.started = value,
                        "done" => summary.done = value,
                        "succeeded" => summary.succeeded = value,
                        "failed" => summary.failed = value,
                        "errored" => summary.errored = value,
                        "timeout" => summary.timeout = value,
                        _ => {}
                    }
                }
                seen_requests = true;
            } else if let Some(rest) = line.strip_prefix("status codes:") {
                for (value, name) in counts(rest)? {
                    match name {
                        "2xx" => summary.status_2xx = value,
                        "3xx" => summary.status_3xx = value,
                        "4xx" => summary.status_4xx = value,
                        "5xx" => summary.status_5xx = value,
                        _ => {}
                    }
                }
            } else if let Some(rest) = line.strip_prefix("traffic:") {
                // traffic: 9.55KB (9778) total, ...
                summary.traffic_bytes = rest
                    .split_once('(')
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .map(|(bytes, _)| bytes.parse())
                    .context("no byte count in the traffic line")??;
            } else if let Some(rest) = line.strip_prefix("time for request:") {
                summary.request_time = latency(rest)?;
            } else if let Some(rest) = line.strip_prefix("time for connect:") {
                summary.connect_time = latency(rest)?;
            } else if let Some(rest) = line.strip_prefix("time to 1st byte:") {
                summary.first_byte_time = latency(rest)?;
            }
        }
        if !seen_requests {
            bail!("no `requests:` line in h2load's output");
        }
        Ok(summary)
    }
}

/// `200 total, 0 failed` → [(200, "total"), (0, "failed")].
fn counts(text: &str) -> Result<Vec<(u64, &str)>> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (value, name) = part
                .split_once(' ')
                .with_context(|| format!("not `<n> <name>`: {part:?}"))?;
            Ok((value.parse()?, name.trim()))
        })
        .collect()
}

/// `1.74ms 8.22ms 3.97ms 1.40ms 73.50%` → min, max, mean, sd.
fn latency(text: &str) -> Result<Latency> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    ensure!(fields.len() >= 4, "not a latency row: {text:?}");
    Ok(Latency {
        min: duration(fields[0])?,
        max: duration(fields[1])?,
        mean: duration(fields[2])?,
        sd: duration(fields[3])?,
    })
}

/// h2load's durations: `201us`, `1.40ms`, `2.03s`.
fn duration(text: &str) -> Result<Duration> {
    let (number, nanos_per_unit) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e9)
    } else {
        bail!("not a duration: {text:?}");
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("not a duration: {text:?}"))?;
    ensure!(value >= 0.0, "negative duration: {text:?}");
    // Whole nanoseconds: "43.55ms" is exactly 43,550 µs, not a float's neighbour of it.
    Ok(Duration::from_nanos((value * nanos_per_unit).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "starting benchmark...
spawning thread #0: 2 total client(s). 200 total requests
Application protocol: h2c
progress: 10% done

finished in 43.55ms, 4592.42 req/s, 219.26KB/s
requests: 200 total, 200 started, 198 done, 197 succeeded, 3 failed, 1 errored, 2 timeout
status codes: 195 2xx, 0 3xx, 1 4xx, 1 5xx
traffic: 9.55KB (9778) total, 858B (858) headers (space savings 93.78%), 5.08KB (5200) data
                     min         max         mean         sd        +/- sd
time for request:     1.74ms      8.22ms      3.97ms      1.40ms    73.50%
time for connect:      158us       398us       278us       169us   100.00%
time to 1st byte:     6.75ms      1.02s      7.19ms       633us   100.00%
req/s           :    2365.63     2540.29     2452.96      123.51   100.00%
";

    #[test]
    fn the_summary_is_read_whole() -> Result<()> {
        let summary = H2LoadSummary::parse(OUTPUT)?;
        assert_eq!(summary.protocol, "h2c");
        assert_eq!(summary.finished_in, Duration::from_micros(43_550));
        assert!((summary.requests_per_second - 4592.42).abs() < 1e-9);
        assert_eq!(
            (
                summary.total,
                summary.started,
                summary.done,
                summary.succeeded
            ),
            (200, 200, 198, 197)
        );
        assert_eq!(
            (summary.failed, summary.errored, summary.timeout),
            (3, 1, 2)
        );
        assert_eq!(
            (
                summary.status_2xx,
                summary.status_3xx,
                summary.status_4xx,
                summary.status_5xx
            ),
            (195, 0, 1, 1)
        );
        assert_eq!(summary.traffic_bytes, 9778);
        assert_eq!(summary.request_time.max, Duration::from_micros(8_220));
        assert_eq!(summary.connect_time.min, Duration::from_micros(158));
        assert_eq!(summary.first_byte_time.max, Duration::from_millis(1_020));
        Ok(())
    }

    #[test]
    fn the_request_log_is_read_line_by_line() -> Result<()> {
        let log = "1796256425973095\t200\t201\n1796256425973334\t-1\t89\n\
                   1796256425974263\t503\t1169\t7\n\n";
        let logged = LoggedRequest::parse_log(log)?;
        assert_eq!(
            logged,
            vec![
                LoggedRequest {
                    sent_micros: 1_796_256_425_973_095,
                    status: Some(200),
                    micros: 201
                },
                LoggedRequest {
                    sent_micros: 1_796_256_425_973_334,
                    status: None,
                    micros: 89
                },
                LoggedRequest {
                    sent_micros: 1_796_256_425_974_263,
                    status: Some(503),
                    micros: 1169
                },
            ]
        );
        let succeeded: Vec<bool> = logged.iter().map(LoggedRequest::succeeded).collect();
        assert_eq!(succeeded, [true, false, false]);
        let error =
            LoggedRequest::parse_log("1\t200\t5\n2\t200\n").expect_err("a line without a duration");
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
        assert!(LoggedRequest::parse_log("x\t200\t5\n").is_err());
        Ok(())
    }

    #[test]
    fn arguments_pace_stagger_log_and_bound_the_run() -> Result<()> {
        let log_file = Path::new("/tmp/requests.log");
        let paced = H2Load::new("http://10.96.0.10:8090/api")
            .requests(4000)
            .clients(10)
            .streams(64)
            .rps_per_client(100.0)
            .connection_rate(1, Duration::from_millis(11))
            .log();
        let args = paced.args(log_file, vec!["--header=:authority: orders".into()]);
        for expected in [
            "--clients=10",
            "--max-concurrent-streams=64",
            "--requests=4000",
            "--rps=100",
            "--rate=1",
            "--rate-period=11ms",
            "--log-file=/tmp/requests.log",
            "--header=:authority: orders",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected}: {args:?}");
        }
        assert!(!args.iter().any(|a| a == "--h1"), "{args:?}");
        let http1 = paced.clone().streams(1).http1();
        let args = http1.args(log_file, Vec::new());
        assert!(args.iter().any(|a| a == "--h1"), "{args:?}");
        assert!(
            args.iter().any(|a| a == "--max-concurrent-streams=1"),
            "{args:?}"
        );
        assert_eq!(
            args.last().map(String::as_str),
            Some("http://10.96.0.10:8090/api")
        );
        // 400 requests a connection at 100/s: 4 s, plus slack.
        assert_eq!(paced.time_limit(), Duration::from_secs(34));
        let timed = H2Load::new("http://x/").duration(Duration::from_millis(2500));
        let args = timed.args(log_file, Vec::new());
        assert!(args.iter().any(|a| a == "--duration=2500ms"), "{args:?}");
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--requests") || a.starts_with("--log-file")),
            "{args:?}"
        );
        assert_eq!(timed.time_limit(), Duration::from_millis(32_500));
        Ok(())
    }

    #[test]
    fn output_without_a_summary_is_an_error() {
        assert!(H2LoadSummary::parse("starting benchmark...\n").is_err());
        assert!(duration("3 weeks").is_err());
    }
}
