//! `h2load` (Debian's nghttp2-client) run from a pod's namespace against an h2c server, and its
//! summary parsed: request counts by outcome and status class, throughput, and the latency
//! rows (request, connect, first byte). Bounded: by a request count, or by a duration.

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

    /// Runs the load inside `netns` (a pod's) and parses the summary. Fails when h2load cannot
    /// run or prints no summary, not when requests fail (those are counted).
    pub fn run(&self, netns: &Netns) -> Result<H2LoadSummary> {
        ensure!(!self.urls.is_empty(), "h2load needs a URL");
        let dir = ScratchDir::new(netns, "h2load")?;
        let mut args: Vec<String> = vec![
            format!("--clients={}", self.clients),
            format!("--max-concurrent-streams={}", self.streams),
            format!("--threads={}", self.threads),
        ];
        // Bounded either way: by the count, or by the duration (plus h2load's own limit).
        let limit = match self.duration {
            Some(duration) => {
                args.push(format!("--duration={}", duration.as_secs_f64()));
                duration + Duration::from_secs(30)
            }
            None => {
                args.push(format!("--requests={}", self.requests));
                Duration::from_secs(120)
            }
        };
        args.extend(header_and_data_args(
            &dir,
            &self.headers,
            self.data.as_deref(),
        )?);
        args.extend(self.urls.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = netns.exec_output("h2load", &args, None, limit)?;
        ensure!(
            output.success,
            "h2load (pod side) {:?} failed: {}{}",
            self.urls,
            output.stderr.trim(),
            output.stdout.trim()
        );
        H2LoadSummary::parse(&output.stdout)
            .with_context(|| format!("h2load printed:\n{}", output.stdout))
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
    fn output_without_a_summary_is_an_error() {
        assert!(H2LoadSummary::parse("starting benchmark...\n").is_err());
        assert!(duration("3 weeks").is_err());
    }
}
