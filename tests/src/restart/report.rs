//! The restart bench's markdown: each restart, each client's requests and failures by phase,
//! and a summary per daemon (median and range over repetitions).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::bed::Restart;
use super::timeline::{Phase, Tallies};

/// One restart of one daemon.
pub struct Measured {
    /// Which daemon was restarted (its commit, or its path).
    pub daemon: String,
    pub rep: usize,
    pub restart: Restart,
}

/// The two kinds of client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    Wrk,
    Sessions,
}

impl Client {
    const ALL: [Client; 2] = [Client::Wrk, Client::Sessions];

    fn label(self) -> &'static str {
        match self {
            Client::Wrk => "wrk",
            Client::Sessions => "Python requests",
        }
    }

    fn tallies(self, restart: &Restart) -> &Tallies {
        match self {
            Client::Wrk => &restart.wrk_tallies,
            Client::Sessions => &restart.session_tallies,
        }
    }

    /// What the client itself counted.
    fn own_counts(self, restart: &Restart) -> String {
        match self {
            Client::Wrk => {
                let s = &restart.wrk.summary;
                format!(
                    "{} answers; socket errors: connect {}, read {}, write {}, timeout {}; \
                     status ≥ 400: {}",
                    s.answers, s.connect, s.read, s.write, s.timeout, s.status
                )
            }
            Client::Sessions => {
                let mut exceptions: BTreeMap<&str, u64> = BTreeMap::new();
                for failure in &restart.sessions.failures {
                    *exceptions.entry(failure.exception.as_str()).or_default() += 1;
                }
                let exceptions = if exceptions.is_empty() {
                    "none".to_owned()
                } else {
                    exceptions
                        .iter()
                        .map(|(name, count)| format!("{name} ×{count}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let opened: u64 = restart.sessions.connections.iter().sum();
                format!(
                    "exceptions: {exceptions}; TCP connections opened: {opened} by {} sessions",
                    restart.sessions.connections.len()
                )
            }
        }
    }
}

fn seconds(duration: std::time::Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "–".into(), |v| v.to_string())
}

/// `median (min–max)` of counts; the upper middle for an even number of them.
fn spread(values: &[f64], decimals: usize) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.as_slice() {
        [] => "–".into(),
        [only] => format!("{only:.decimals$}"),
        [first, .., last] => format!(
            "{:.decimals$} ({first:.decimals$}–{last:.decimals$})",
            sorted[sorted.len() / 2]
        ),
    }
}

/// `before / during / after` of one quantity.
fn phases(tallies: &Tallies, of: impl Fn(&super::timeline::Tally) -> u64) -> String {
    Phase::ALL
        .iter()
        .map(|&phase| of(&tallies.get(phase)).to_string())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The tables.
pub fn tables(runs: &[Measured]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Each restart\n");
    let _ = writeln!(
        out,
        "| daemon | rep | connections open at SIGTERM | old daemon exited after SIGTERM | \
         reset at the drain deadline | new daemon ready after | connections the new daemon intercepted |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        let r = &run.restart;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}{} | {} | {} | {} |",
            run.daemon,
            run.rep,
            count(r.open_at_sigterm),
            seconds(r.marks.exit_after()),
            if r.killed { " (killed)" } else { "" },
            count(r.reset_at_deadline),
            seconds(r.marks.ready_after()),
            r.new_intercepted
        );
    }

    let _ = writeln!(out, "\n### Requests by phase\n");
    let _ = writeln!(
        out,
        "Phases: before the SIGTERM, during the restart (SIGTERM until the new daemon is ready), \
         after it; a request counts in the phase it began in. Failed: sent and never answered \
         (wrk), or raised an exception (Python).\n"
    );
    let _ = writeln!(
        out,
        "| daemon | rep | client | requests before / during / after | failed before / during / after | \
         other status | what the client counted |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---|");
    for run in runs {
        for client in Client::ALL {
            let tallies = client.tallies(&run.restart);
            let other: u64 = Phase::ALL
                .iter()
                .map(|&p| tallies.get(p).other_status)
                .sum();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                run.daemon,
                run.rep,
                client.label(),
                phases(tallies, |t| t.requests),
                phases(tallies, |t| t.failed),
                other,
                client.own_counts(&run.restart)
            );
        }
    }

    out.push_str(&failures(runs));

    let _ = writeln!(out, "\n### Summary (median and range over repetitions)\n");
    let _ = writeln!(
        out,
        "| daemon | client | requests failed during the restart | failed before and after | \
         requests during | wrk read errors | old daemon exited after SIGTERM |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    let mut daemons: Vec<&str> = Vec::new();
    for run in runs {
        if !daemons.contains(&run.daemon.as_str()) {
            daemons.push(&run.daemon);
        }
    }
    for daemon in daemons {
        let of_daemon: Vec<&Measured> = runs.iter().filter(|r| r.daemon == daemon).collect();
        for client in Client::ALL {
            let values = |f: &dyn Fn(&Measured) -> f64| -> Vec<f64> {
                of_daemon.iter().map(|r| f(r)).collect()
            };
            let tally = |r: &Measured, phase| client.tallies(&r.restart).get(phase);
            let read_errors = match client {
                Client::Wrk => spread(&values(&|r| r.restart.wrk.summary.read as f64), 0),
                Client::Sessions => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {daemon} | {} | {} | {} | {} | {read_errors} | {} s |",
                client.label(),
                spread(&values(&|r| tally(r, Phase::During).not_ok() as f64), 0),
                spread(
                    &values(&|r| (tally(r, Phase::Before).not_ok()
                        + tally(r, Phase::After).not_ok()) as f64),
                    0
                ),
                spread(&values(&|r| tally(r, Phase::During).requests as f64), 0),
                spread(&values(&|r| r.restart.marks.exit_after().as_secs_f64()), 2),
            );
        }
    }
    out
}

/// At most this many failures are listed per restart and client.
const LISTED_FAILURES: usize = 10;

/// When each failed request began, relative to the SIGTERM, and what the client said.
fn failures(runs: &[Measured]) -> String {
    let mut out = String::new();
    for run in runs {
        let r = &run.restart;
        let at = |ms: u64| format!("{:+} ms", ms as i64 - r.marks.sigterm as i64);
        let wrk: Vec<String> = r
            .wrk
            .buckets
            .iter()
            .filter(|b| b.failed > 0 && r.marks.phase(b.ms).is_some())
            .map(|b| format!("{} ×{}", at(b.ms), b.failed))
            .collect();
        let python: Vec<String> = r
            .sessions
            .failures
            .iter()
            .filter(|f| r.marks.phase(f.ms).is_some())
            .map(|f| {
                format!(
                    "{} session {} {}: {}",
                    at(f.ms),
                    f.session,
                    f.exception,
                    f.detail
                )
            })
            .collect();
        for (client, list) in [(Client::Wrk, wrk), (Client::Sessions, python)] {
            if list.is_empty() {
                continue;
            }
            let shown = list.len().min(LISTED_FAILURES);
            let _ = writeln!(
                out,
                "- {} rep {} {}: {}{}",
                run.daemon,
                run.rep,
                client.label(),
                list[..shown].join("; ").replace('|', "/"),
                if list.len() > shown { "; …" } else { "" }
            );
        }
    }
    if out.is_empty() {
        return String::new();
    }
    format!("\n### Failed requests (when each began, from the SIGTERM)\n\n{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_listed_from_the_sigterm_within_the_counted_window() {
        use super::super::sessions::{Failure, SessionsResult};
        use super::super::timeline::{Bucket, Marks};
        use super::super::wrk::WrkResult;
        let marks = Marks {
            start: 1000,
            sigterm: 2000,
            exited: 2010,
            ready: 2050,
            end: 3000,
        };
        let bucket = |ms, failed| Bucket {
            ms,
            ok: 1,
            other_status: 0,
            failed,
        };
        let restart = Restart {
            marks,
            killed: false,
            open_at_sigterm: None,
            reset_at_deadline: None,
            new_intercepted: 0,
            wrk: WrkResult {
                buckets: vec![bucket(500, 4), bucket(1990, 0), bucket(2003, 2)],
                ..WrkResult::default()
            },
            wrk_tallies: Tallies::default(),
            sessions: SessionsResult {
                failures: vec![Failure {
                    ms: 1995,
                    session: 1,
                    exception: "ConnectionError".into(),
                    detail: "reset | by peer".into(),
                }],
                ..SessionsResult::default()
            },
            session_tallies: Tallies::default(),
        };
        let listed = failures(&[Measured {
            daemon: "abc".into(),
            rep: 2,
            restart,
        }]);
        assert!(listed.contains("- abc rep 2 wrk: +3 ms ×2\n"), "{listed}");
        assert!(!listed.contains("×4"), "the warm-up is left out: {listed}");
        assert!(
            listed.contains(
                "- abc rep 2 Python requests: -5 ms session 1 ConnectionError: reset / by peer\n"
            ),
            "{listed}"
        );
        assert_eq!(failures(&[]), "");
    }

    #[test]
    fn spreads_give_the_median_and_the_range() {
        assert_eq!(spread(&[], 0), "–");
        assert_eq!(spread(&[3.0], 0), "3");
        assert_eq!(spread(&[8.0, 0.0, 2.0], 0), "2 (0–8)");
        assert_eq!(spread(&[20.5, 20.25], 2), "20.50 (20.25–20.50)");
    }
}
