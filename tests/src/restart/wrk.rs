//! wrk as a keep-alive client across a restart: started with a duration longer than the run
//! and stopped with SIGINT (wrk then prints its summary as at the end of its duration).
//!
//! Two views of the same run: wrk's own counters (its summary: answers, and the socket errors
//! `connect`, `read`, `write`, `timeout` and `Non-2xx or 3xx responses`, which counts status
//! 400 and above), and a timeline from a Lua script that tags every request with its send time
//! (`X-Sent-At`, which the primary echoes) and counts, per millisecond, the requests sent and
//! the answers to them, 2xx or not. A request sent and never answered failed. They differ:
//! wrk counts a `read` error whenever a server closes a keep-alive connection, even one with no
//! request on it, which loses nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mirror_tests::background::Background;
use mirror_tests::netns::Netns;
use nix::sys::signal::Signal;

use super::timeline::Bucket;

/// Longer than any run: the bench stops wrk itself.
const UNTIL_STOPPED: &str = "3600s";
/// wrk's own deadline per request (it counts a `timeout` beyond it).
const REQUEST_TIMEOUT: &str = "10s";

/// The Lua script; `@OUTPUT@` and `@DELAY@` are filled in by [`script`].
const SCRIPT: &str = r#"-- The restart bench's wrk script (tests/src/restart/wrk.rs).
local ffi = require("ffi")
ffi.cdef[[
struct restart_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clock, struct restart_timespec *now);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("struct restart_timespec")
local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + math.floor(tonumber(clock.tv_nsec) / 1000000)
end

issued, ok, other, untagged = {}, {}, {}, 0
local threads = {}
-- wrk's stdout is a pipe, so fully buffered: its first answer is flushed as a readiness line.
local announced = false

function setup(thread)
  table.insert(threads, thread)
end

function request()
  local ms = now_ms()
  issued[ms] = (issued[ms] or 0) + 1
  wrk.headers["X-Sent-At"] = string.format("%d", ms)
  return wrk.format()
end

function response(status, headers, body)
  if not announced then
    announced = true
    io.stdout:write("ANSWERED\n")
    io.stdout:flush()
  end
  local ms = tonumber(headers["X-Sent-At"])
  if ms == nil then
    untagged = untagged + 1
  elseif status >= 200 and status < 300 then
    ok[ms] = (ok[ms] or 0) + 1
  else
    other[ms] = (other[ms] or 0) + 1
  end
end
@DELAY@
function done(summary, latency, requests)
  local out = assert(io.open(@OUTPUT@, "w"))
  for _, thread in ipairs(threads) do
    for _, name in ipairs({"issued", "ok", "other"}) do
      for ms, n in pairs(thread:get(name)) do
        out:write(string.format("%s %d %d\n", name, ms, n))
      end
    end
    out:write(string.format("untagged %d\n", thread:get("untagged")))
  end
  out:close()
end
"#;

/// The script, writing its counts to `output`, with `pause` between a connection's answer
/// and its next request (zero: none, wrk's closed loop).
pub fn script(output: &Path, pause: Duration) -> String {
    let delay = if pause.is_zero() {
        String::new()
    } else {
        format!(
            "\nfunction delay()\n  return {}\nend\n",
            pause.as_millis().max(1)
        )
    };
    SCRIPT
        .replace("@DELAY@", &delay)
        .replace("@OUTPUT@", &format!("{:?}", output.display().to_string()))
}

/// How wrk runs.
pub struct WrkOptions<'a> {
    pub url: String,
    pub host: &'a str,
    pub connections: usize,
    pub pause: Duration,
    /// `taskset -c` list.
    pub cpus: Option<&'a str>,
    /// Where the script and its output go.
    pub dir: &'a Path,
}

/// wrk running in a namespace.
pub struct Wrk {
    process: Background,
    output: PathBuf,
}

/// What wrk said when stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WrkResult {
    pub summary: Summary,
    pub buckets: Vec<Bucket>,
}

impl Wrk {
    /// Starts wrk in `netns` and waits until it has had an answer.
    pub fn start(netns: &Netns, options: &WrkOptions<'_>) -> Result<Wrk> {
        let output = options.dir.join("wrk-timeline.txt");
        let _ = std::fs::remove_file(&output);
        let script_path = options.dir.join("wrk-restart.lua");
        std::fs::write(&script_path, script(&output, options.pause))
            .with_context(|| format!("cannot write {}", script_path.display()))?;
        let mut args: Vec<String> = Vec::new();
        if let Some(cpus) = options.cpus {
            args.extend(["-c".into(), cpus.into(), "wrk".into()]);
        }
        args.extend([
            "-t1".into(),
            format!("-c{}", options.connections),
            format!("-d{UNTIL_STOPPED}"),
            "--timeout".into(),
            REQUEST_TIMEOUT.into(),
            "-s".into(),
            script_path.display().to_string(),
            "-H".into(),
            format!("Host: {}", options.host),
            "-H".into(),
            "User-Agent: mirror-restart-bench/1".into(),
            options.url.clone(),
        ]);
        let program = if options.cpus.is_some() {
            "taskset"
        } else {
            "wrk"
        };
        let mut process = Background::spawn("wrk", netns, program, &args)?;
        process.wait_for_line("ANSWERED", Duration::from_secs(10))?;
        Ok(Wrk { process, output })
    }

    /// Stops wrk (SIGINT) and reads its summary and timeline.
    pub fn stop(mut self) -> Result<WrkResult> {
        self.process.signal(Signal::SIGINT)?;
        let status = self.process.wait_exit(Duration::from_secs(15))?;
        let log = self.process.log();
        if !status.success() {
            bail!("wrk failed ({status}): {log}");
        }
        let summary = Summary::parse(&log).with_context(|| format!("wrk said: {log}"))?;
        let text = std::fs::read_to_string(&self.output).with_context(|| {
            format!(
                "wrk's script wrote no timeline to {} (LuaJIT without FFI?); wrk said: {log}",
                self.output.display()
            )
        })?;
        let timeline = Timeline::parse(&text)?;
        if timeline.untagged > 0 {
            bail!(
                "{} answers did not carry X-Sent-At back: the primary must echo it",
                timeline.untagged
            );
        }
        Ok(WrkResult {
            summary,
            buckets: timeline.buckets,
        })
    }
}

/// wrk's own counters, from its summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Complete answers, whatever their status.
    pub answers: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    /// Answers with status 400 or above.
    pub status: u64,
}

impl Summary {
    /// Reads wrk's summary: `N requests in …`, and, only when not zero, `Socket errors:
    /// connect A, read B, write C, timeout D` and `Non-2xx or 3xx responses: E`.
    pub fn parse(text: &str) -> Result<Summary> {
        let mut summary = Summary::default();
        let mut answers = None;
        for line in text.lines().map(str::trim) {
            if let Some((count, _)) = line.split_once(" requests in ") {
                answers = Some(count.trim().parse().context("wrk's request count")?);
            } else if let Some(errors) = line.strip_prefix("Socket errors:") {
                for part in errors.split(',') {
                    let (name, count) = part
                        .trim()
                        .split_once(' ')
                        .with_context(|| format!("wrk's socket errors: {line:?}"))?;
                    let count: u64 = count.trim().parse().context("wrk's socket errors")?;
                    match name {
                        "connect" => summary.connect = count,
                        "read" => summary.read = count,
                        "write" => summary.write = count,
                        "timeout" => summary.timeout = count,
                        _ => bail!("unknown socket error {name:?} in {line:?}"),
                    }
                }
            } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
                summary.status = count.trim().parse().context("wrk's status errors")?;
            }
        }
        summary.answers = answers.context("wrk printed no `N requests in` line")?;
        Ok(summary)
    }
}

/// The script's counts per millisecond.
#[derive(Debug, Default, PartialEq, Eq)]
struct Timeline {
    buckets: Vec<Bucket>,
    untagged: u64,
}

impl Timeline {
    /// Reads `issued MS N`, `ok MS N`, `other MS N` and `untagged N` lines; a request sent in
    /// one millisecond and answered neither way failed.
    fn parse(text: &str) -> Result<Timeline> {
        let mut issued: std::collections::BTreeMap<u64, [u64; 3]> = Default::default();
        let mut untagged = 0;
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |index: usize| -> Result<u64> {
                fields
                    .get(index)
                    .with_context(|| format!("short line {line:?}"))?
                    .parse()
                    .with_context(|| format!("not a count in {line:?}"))
            };
            let slot = match fields.first().copied() {
                Some("issued") => 0,
                Some("ok") => 1,
                Some("other") => 2,
                Some("untagged") => {
                    untagged += number(1)?;
                    continue;
                }
                _ => bail!("unknown line in wrk's timeline: {line:?}"),
            };
            issued.entry(number(1)?).or_default()[slot] += number(2)?;
        }
        let mut buckets = Vec::with_capacity(issued.len());
        for (ms, [sent, ok, other_status]) in issued {
            if ok + other_status > sent {
                bail!("{ms}: {ok} + {other_status} answers to {sent} requests sent");
            }
            buckets.push(Bucket {
                ms,
                ok,
                other_status,
                failed: sent - ok - other_status,
            });
        }
        Ok(Timeline { buckets, untagged })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY_WITH_ERRORS: &str = "\
Running 60m test @ http://10.96.0.10:8080/api/orders?id=42
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   301.20us  120.14us   8.09ms   90.12%
    Req/Sec     3.10k   210.00     3.50k    70.00%
  38211 requests in 12.01s, 44.87MB read
  Socket errors: connect 0, read 8, write 1, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   3181.60
Transfer/sec:      3.74MB
";

    #[test]
    fn wrk_error_lines_are_read_by_kind() -> Result<()> {
        let summary = Summary::parse(SUMMARY_WITH_ERRORS)?;
        assert_eq!(
            summary,
            Summary {
                answers: 38211,
                connect: 0,
                read: 8,
                write: 1,
                timeout: 2,
                status: 3
            }
        );
        Ok(())
    }

    #[test]
    fn a_summary_without_error_lines_has_none() -> Result<()> {
        let clean = "  120 requests in 1.00s, 1.2MB read\nRequests/sec: 120.00\n";
        assert_eq!(
            Summary::parse(clean)?,
            Summary {
                answers: 120,
                ..Summary::default()
            }
        );
        assert!(Summary::parse("Running 1s test @ http://x/\n").is_err());
        assert!(Summary::parse("  1 requests in 1s\n  Socket errors: lost 3\n").is_err());
        Ok(())
    }

    #[test]
    fn the_timeline_counts_requests_sent_and_never_answered_as_failed() -> Result<()> {
        let text = "issued 1000 5\nissued 1001 2\nok 1000 3\nother 1000 1\nok 1001 2\n\
                    untagged 0\nissued 1000 1\nok 1000 1\nuntagged 2\n";
        let timeline = Timeline::parse(text)?;
        assert_eq!(
            timeline.buckets,
            [
                Bucket {
                    ms: 1000,
                    ok: 4,
                    other_status: 1,
                    failed: 1
                },
                Bucket {
                    ms: 1001,
                    ok: 2,
                    other_status: 0,
                    failed: 0
                }
            ]
        );
        assert_eq!(timeline.untagged, 2);
        assert!(
            Timeline::parse("ok 1000 2\n").is_err(),
            "answers without requests"
        );
        assert!(Timeline::parse("lost 1000 2\n").is_err());
        assert!(Timeline::parse("issued 1000\n").is_err());
        Ok(())
    }

    #[test]
    fn the_script_paces_only_when_asked() {
        let output = Path::new("/tmp/x/wrk-timeline.txt");
        let closed = script(output, Duration::ZERO);
        assert!(!closed.contains("function delay()"));
        assert!(closed.contains("io.open(\"/tmp/x/wrk-timeline.txt\", \"w\")"));
        assert!(!closed.contains('@'), "every placeholder filled");
        let paced = script(output, Duration::from_millis(2));
        assert!(
            paced.contains("function delay()\n  return 2\nend"),
            "{paced}"
        );
    }
}
