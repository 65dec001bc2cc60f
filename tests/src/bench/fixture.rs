//! Synthetic results for the unit tests of the report and its pictures: runs built from a few
//! chosen numbers per scenario and repetition, in the order a bench would have run them.

use std::time::Duration;

use super::load::{self, LoadResult, Mode};
use super::scenario::{Kind, Phase, Protocol, Run, Scenario};

/// What one run of one scenario measured, in the units the goals use.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// p99 at the fixed rate, µs.
    pub p99: f64,
    /// Proxy CPU seconds per 1000 requests at the fixed rate.
    pub cpu: f64,
    /// Requests per second at saturation.
    pub rps: f64,
    /// Proxy CPU µs per request at saturation.
    pub proxy_us: f64,
    /// Everything else's CPU µs per request at saturation (load generator, primary, shadows).
    pub rest_us: f64,
}

/// Requests of each fixed-rate phase.
pub const RATE_REQUESTS: u64 = 1000;

/// Runs of `scenarios`, `reps` times interleaved, each measuring `measured(scenario, rep)`;
/// every run's load average is `loadavg` (above 1.5, other processes also keep half the cores busy).
pub fn runs(
    scenarios: &[Scenario],
    reps: usize,
    loadavg: f64,
    measured: impl Fn(Scenario, usize) -> Measured,
) -> Vec<Run> {
    let mut runs = Vec::new();
    for rep in 0..reps {
        for &scenario in scenarios {
            runs.push(run(scenario, loadavg, measured(scenario, rep)));
        }
    }
    runs
}

/// As `--h1-rate-client h2load` leaves an HTTP/1.1 run: h2load sent its keep-alive fixed-rate
/// phase, so that phase has h2load's schedule figure.
pub fn paced_by_h2load(run: &mut Run) {
    for phase in &mut run.phases {
        if phase.kind == Kind::Rate && phase.mode == Mode::KeepAlive {
            phase.load.schedule_kept = Some(1.0);
        }
    }
}

fn run(scenario: Scenario, loadavg: f64, m: Measured) -> Run {
    let mut phases = Vec::new();
    // As h2load gives them: no client lateness but the rate it sent; no saturation percentiles.
    let http2 = scenario.protocol() == Protocol::Http2;
    let h2load_hides = |value: f64| if http2 { f64::NAN } else { value };
    for &mode in scenario.modes() {
        // Latencies spread evenly up to the p99 and a little beyond, sorted.
        let latencies: Vec<u32> = (1..=RATE_REQUESTS)
            .map(|i| (m.p99 * i as f64 / (RATE_REQUESTS as f64 * 0.99)) as u32)
            .collect();
        phases.push(Phase {
            kind: Kind::Rate,
            mode,
            load: LoadResult {
                completed: RATE_REQUESTS,
                elapsed: Duration::from_secs(1),
                p50: load::percentile(&latencies, 50.0),
                p90: load::percentile(&latencies, 90.0),
                p99: m.p99,
                max: f64::from(latencies.last().copied().unwrap_or(0)),
                send_lag_p99: h2load_hides(0.0),
                schedule_kept: http2.then_some(1.0),
                distribution: load::distribution(&latencies),
                ..LoadResult::default()
            },
            proxy_cpu: m.cpu * RATE_REQUESTS as f64 / 1000.0,
            proxy_switches: 2 * RATE_REQUESTS,
            bed_cpu: 0.5,
            primary_cpu: 0.1,
            shadow_cpu: 0.1,
            copies_expected: RATE_REQUESTS * scenario.copies_per_request(),
            copies_delivered: RATE_REQUESTS * scenario.copies_per_request(),
            counted: None,
            machine_busy: 0.3,
            others_busy: if loadavg > 1.5 { 0.5 } else { 0.02 },
        });
        let completed = m.rps as u64;
        let seconds = |us: f64| us * completed as f64 / 1e6;
        phases.push(Phase {
            kind: Kind::Saturation,
            mode,
            load: LoadResult {
                completed,
                elapsed: Duration::from_secs(1),
                p50: h2load_hides(500.0),
                p90: h2load_hides(900.0),
                p99: h2load_hides(1500.0),
                max: 3000.0,
                ..LoadResult::default()
            },
            proxy_cpu: seconds(m.proxy_us),
            proxy_switches: completed / 4,
            bed_cpu: seconds(m.proxy_us + m.rest_us),
            primary_cpu: seconds(m.rest_us / 2.0),
            shadow_cpu: seconds(m.rest_us / 4.0),
            copies_expected: completed * scenario.copies_per_request(),
            copies_delivered: completed * scenario.copies_per_request(),
            counted: None,
            machine_busy: 1.0,
            others_busy: if loadavg > 1.5 { 0.5 } else { 0.02 },
        });
    }
    let has_proxy = scenario != scenario.baseline();
    // `compare` compared every copy (and the warm-up's few more).
    let copies: u64 = phases.iter().map(|p| p.copies_delivered).sum();
    let comparisons = if scenario == Scenario::Compare {
        vec![("match".to_owned(), copies + 100)]
    } else {
        Vec::new()
    };
    Run {
        scenario,
        loadavg,
        phases,
        rss_at_rate: has_proxy.then_some(14 << 20),
        rss_at_saturation: has_proxy.then_some(15 << 20),
        peak_rss: has_proxy.then_some(26 << 20),
        daemon_drops: Vec::new(),
        shadow_errors: Vec::new(),
        comparisons,
    }
}
