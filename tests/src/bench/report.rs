//! Results across repetitions: medians with their spread (min–max over repetitions), ratios
//! taken within each repetition (the scenarios of one repetition ran back to back), the goals of
//! issue 11 checked as such ratios, and the markdown that is printed and written. The comparison
//! scenarios (issue 13) add a table of the daemon's CPU per request, compare vs mirror-json, and
//! a goal on it, withheld when the daemon did not in fact compare the copies' answers.

use std::fmt::Write as _;

use super::callgrind::Counts;
use super::load::{Distribution, Mode};
use super::scenario::{Kind, Phase, Protocol, Run, Scenario};

/// Share of the copies delivered in the measured phases that `compare` must have compared (pairs
/// counted in `mirror_comparisons_total` with a verdict that looked at both answers) for its CPU
/// to count as the cost of comparing.
const COMPARED_AT_LEAST: f64 = 0.9;

/// Share of the cores other processes may keep busy during the fixed-rate phases before the
/// latency and throughput goals are not judged.
const BUSY_OTHERS: f64 = 0.15;

/// Median and range of one quantity over the repetitions.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: values[0],
            max: values[n - 1],
            n,
        })
    }

    /// The same spread in other units.
    pub fn scaled(self, factor: f64) -> Spread {
        Spread {
            median: self.median * factor,
            min: self.min * factor,
            max: self.max * factor,
            n: self.n,
        }
    }

    /// `median (min–max)` with `decimals`, or just the median for one repetition.
    pub fn show(&self, decimals: usize) -> String {
        if self.n < 2 {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} ({:.*}–{:.*})",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }
}

fn show(spread: Option<Spread>, decimals: usize) -> String {
    spread.map_or_else(|| "–".into(), |s| s.show(decimals))
}

/// CPU µs per request at saturation, by part of the bed (median and range over repetitions).
#[derive(Clone, Copy, Debug)]
pub struct CpuSplit {
    /// The load generator and the bench's in-process slow and blackholed shadows.
    pub client: Option<Spread>,
    pub primary: Option<Spread>,
    /// The healthy shadow (nginx).
    pub shadow: Option<Spread>,
    pub proxy: Option<Spread>,
    pub total: Option<Spread>,
}

/// How a goal's value must compare with its bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    AtMost(f64),
    Below(f64),
    AtLeast(f64),
}

impl Bound {
    pub fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtMost(bound) => value <= bound,
            Bound::Below(bound) => value < bound,
            Bound::AtLeast(bound) => value >= bound,
        }
    }

    fn show(self, unit: Unit) -> String {
        let (sign, bound) = match self {
            Bound::AtMost(bound) => ("≤", bound),
            Bound::Below(bound) => ("<", bound),
            Bound::AtLeast(bound) => ("≥", bound),
        };
        match unit {
            Unit::Ratio => format!("{sign} ×{bound:.2}"),
            Unit::MiB => format!("{sign} {bound:.0} MiB"),
        }
    }
}

/// What a goal's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// One scenario's quantity over another's, within a repetition.
    Ratio,
    MiB,
}

/// Which noise keeps a goal from being judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judge {
    /// CPU per request and RSS: the proxy's own, whatever else runs.
    Always,
    /// Throughput at saturation: not on a busy machine (others take the cores).
    Throughput,
    /// Latency: not on a busy machine, nor with a client late on its own schedule.
    Latency,
}

/// A goal's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Met,
    Missed,
    /// Why not (a noisy run).
    NotJudged(String),
    /// Why not (scenarios not run).
    NotMeasured(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Met => f.write_str("yes"),
            Verdict::Missed => f.write_str("**no**"),
            Verdict::NotJudged(why) => write!(f, "not judged: {why}"),
            Verdict::NotMeasured(why) => write!(f, "not measured ({why})"),
        }
    }
}

/// One goal checked.
#[derive(Clone, Debug)]
pub struct GoalCheck {
    pub goal: String,
    pub bound: Bound,
    pub unit: Unit,
    /// Median and range over repetitions.
    pub measured: Option<Spread>,
    /// The medians the ratio comes from, shown.
    pub from: String,
    pub verdict: Verdict,
}

/// All the runs of a bench, in the order they ran.
pub struct Results<'a> {
    pub runs: &'a [Run],
    pub scenarios: &'a [Scenario],
}

impl Results<'_> {
    fn runs_of(&self, scenario: Scenario) -> impl Iterator<Item = (usize, &Run)> {
        let per_rep = self.scenarios.len();
        self.runs
            .iter()
            .enumerate()
            .filter(move |(_, run)| run.scenario == scenario)
            .map(move |(i, run)| (i / per_rep.max(1), run))
    }

    fn run_in(&self, scenario: Scenario, rep: usize) -> Option<&Run> {
        self.runs_of(scenario)
            .find(|(r, _)| *r == rep)
            .map(|(_, run)| run)
    }

    /// Whether h2load (`--h1-rate-client h2load`) sent an HTTP/1.1 fixed-rate phase: it logs
    /// how well it kept its schedule, our client does not.
    pub fn http1_paced_by_h2load(&self) -> bool {
        self.runs.iter().any(|run| {
            run.scenario.protocol() == Protocol::Http1
                && run
                    .phases
                    .iter()
                    .any(|p| p.kind == Kind::Rate && p.load.schedule_kept.is_some())
        })
    }

    /// Repetitions run (the last one possibly cut short).
    pub fn repetitions(&self) -> usize {
        self.runs.len().div_ceil(self.scenarios.len().max(1))
    }

    /// A phase quantity of `scenario` in repetition `rep`.
    fn value_in(
        &self,
        scenario: Scenario,
        rep: usize,
        kind: Kind,
        mode: Mode,
        value: impl Fn(&Phase) -> f64,
    ) -> Option<f64> {
        self.run_in(scenario, rep)?.phase(kind, mode).map(value)
    }

    /// A quantity computed within each repetition, over the repetitions.
    fn per_repetition(&self, within: impl Fn(usize) -> Option<f64>) -> Option<Spread> {
        Spread::of((0..self.repetitions()).filter_map(within))
    }

    /// A phase quantity over the repetitions.
    pub fn spread(
        &self,
        scenario: Scenario,
        kind: Kind,
        mode: Mode,
        value: impl Fn(&Phase) -> f64,
    ) -> Option<Spread> {
        Spread::of(
            self.runs_of(scenario)
                .filter_map(|(_, run)| run.phase(kind, mode).map(&value)),
        )
    }

    /// A phase quantity of `scenario` compared, repetition by repetition, with the same quantity
    /// of `base` (`compare(value, base_value)`).
    pub fn paired(
        &self,
        scenario: Scenario,
        base: Scenario,
        kind: Kind,
        mode: Mode,
        value: impl Fn(&Phase) -> f64,
        compare: impl Fn(f64, f64) -> f64,
    ) -> Option<Spread> {
        self.per_repetition(|rep| {
            let this = self.value_in(scenario, rep, kind, mode, &value)?;
            let other = self.value_in(base, rep, kind, mode, &value)?;
            Some(compare(this, other))
        })
    }

    /// `scenario`'s value over `base`'s, paired within each repetition.
    pub fn ratio(
        &self,
        scenario: Scenario,
        base: Scenario,
        kind: Kind,
        mode: Mode,
        value: impl Fn(&Phase) -> f64,
    ) -> Option<Spread> {
        self.paired(scenario, base, kind, mode, value, |a, b| a / b)
    }

    fn run_spread(
        &self,
        scenario: Scenario,
        value: impl Fn(&Run) -> Option<f64>,
    ) -> Option<Spread> {
        Spread::of(self.runs_of(scenario).filter_map(|(_, run)| value(run)))
    }

    fn has(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The markdown tables: latency and throughput for each protocol run (HTTP/1.1 first, then
    /// HTTP/2, each compared with its own direct scenario), then where the CPU goes.
    pub fn tables(&self, rate: f64) -> String {
        let mut out = String::new();
        let of = |protocol: Protocol| -> Vec<Scenario> {
            self.scenarios
                .iter()
                .copied()
                .filter(|s| s.protocol() == protocol)
                .collect()
        };
        let http1 = of(Protocol::Http1);
        if !http1.is_empty() {
            let client = if self.http1_paced_by_h2load() {
                "keep-alive: h2load `--h1`, from each request's send; new connection: open loop, \
                 from the intended send time"
            } else {
                "open loop, from the intended send time"
            };
            self.latency_table(
                &mut out,
                &http1,
                &format!("Latency at a fixed {rate:.0} requests/s ({client})"),
            );
            self.throughput_table(
                &mut out,
                &http1,
                "Throughput at saturation (wrk, closed loop)",
            );
        }
        let http2 = of(Protocol::Http2);
        if !http2.is_empty() {
            self.latency_table(
                &mut out,
                &http2,
                &format!(
                    "HTTP/2 (h2c): latency at a fixed {rate:.0} requests/s (h2load, from each \
                     request's send)"
                ),
            );
            self.throughput_table(
                &mut out,
                &http2,
                "HTTP/2 (h2c): throughput at saturation (h2load, closed loop; no percentiles)",
            );
        }
        out.push_str(
            "### Where the CPU goes at saturation (CPU µs per request, keep-alive)\n\n\
             The two cores are the bed's limit, so throughput follows the total. \"free proxy\" is \
             the throughput the bed would reach, relative to direct (h2-direct for HTTP/2), if the \
             proxy cost nothing: direct's total over this scenario's total without the proxy.\n\n\
             | scenario | load generator | primary | healthy shadow | proxy | total | free proxy vs direct |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for &scenario in self.scenarios {
            let split = self.cpu_split(scenario, Mode::KeepAlive);
            let free_proxy = if self.has(scenario.baseline()) {
                show(self.free_proxy_ceiling(scenario, Mode::KeepAlive), 2)
            } else {
                "–".into()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | ×{} |",
                scenario.key(),
                show(split.client, 0),
                show(split.primary, 0),
                show(split.shadow, 0),
                show(split.proxy, 0),
                show(split.total, 0),
                free_proxy,
            );
        }
        if self.has(Scenario::Compare) {
            self.compare_table(&mut out);
        }
        out
    }

    /// `--instructions`: what the daemon executed per request in each fixed-rate phase counted
    /// (thousands of instructions; simulated cache misses and mispredicted branches), and the
    /// ratios that tell code paths apart, taken within each repetition.
    pub fn instructions_table(&self, rate: f64) -> String {
        use Scenario::{H2Intercept, H2Mirror, Intercept, Mirror};
        let mut out = format!(
            "### What the daemon executes per request at a fixed {rate:.0} requests/s (callgrind)\n\n\
             Misses are callgrind's simulated first-level caches and branch predictor: how much \
             code and data a request's path runs through, not what the machine's caches did.\n\n\
             | scenario | mode | thousand instructions / req | I1 misses / req | D1 misses / req \
             | mispredicted branches / req | requests counted |\n\
             |---|---|---:|---:|---:|---:|---:|\n"
        );
        for &scenario in self.scenarios {
            for &mode in scenario.modes() {
                let per_request = |count: fn(&Counts) -> u64| {
                    self.spread(scenario, Kind::Rate, mode, counted_per_request(count))
                };
                let counted = self.spread(scenario, Kind::Rate, mode, |ph| {
                    if ph.counted.is_some() {
                        ph.load.completed as f64
                    } else {
                        f64::NAN
                    }
                });
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    scenario.key(),
                    mode.label(),
                    show(per_request(|c| c.instructions).map(|s| s.scaled(1e-3)), 1),
                    show(per_request(|c| c.i1_misses), 0),
                    show(per_request(|c| c.d1_misses), 0),
                    show(per_request(|c| c.mispredicted), 0),
                    show(counted, 0),
                );
            }
        }
        let pairs = [
            (H2Mirror, Mirror, "a mirrored request, HTTP/2 vs HTTP/1.1"),
            (Mirror, Intercept, "HTTP/1.1, mirrored vs relayed alone"),
            (H2Mirror, H2Intercept, "HTTP/2, mirrored vs relayed alone"),
        ];
        let mut ratios = String::new();
        for (scenario, base, what) in pairs {
            if !(self.has(scenario) && self.has(base)) {
                continue;
            }
            let ratio = |count: fn(&Counts) -> u64| {
                let value = counted_per_request(count);
                show(
                    self.ratio(scenario, base, Kind::Rate, Mode::KeepAlive, value),
                    2,
                )
            };
            let _ = writeln!(
                ratios,
                "| {what} ({} vs {}, keep-alive) | ×{} | ×{} | ×{} | ×{} |",
                scenario.key(),
                base.key(),
                ratio(|c| c.instructions),
                ratio(|c| c.i1_misses),
                ratio(|c| c.d1_misses),
                ratio(|c| c.mispredicted),
            );
        }
        if !ratios.is_empty() {
            out.push_str(
                "\n| per request, within each repetition: median (range) | instructions \
                 | I1 misses | D1 misses | mispredicted branches |\n|---|---:|---:|---:|---:|\n",
            );
            out.push_str(&ratios);
        }
        out
    }

    /// The daemon's CPU per request in `compare` beside `mirror-json`'s (the same answers,
    /// mirrored alone), in every phase, with their ratio taken within each repetition.
    fn compare_table(&self, out: &mut String) {
        let (compare, base) = (Scenario::Compare, Scenario::MirrorJson);
        out.push_str(
            "\n### Comparing answers: daemon CPU µs per request, compare vs mirror-json\n\n\
             Both serve the same 1 KiB JSON document (primary and shadow, with a `request_id` \
             each draws per answer: the daemon parses and compares both bodies as JSON and learns \
             that field as noise); compare also compares every pair of answers.\n\n\
             | phase | mode | mirror-json | compare | compare vs mirror-json |\n\
             |---|---|---:|---:|---:|\n",
        );
        for kind in [Kind::Rate, Kind::Saturation] {
            for &mode in compare.modes() {
                let us = |scenario| self.spread(scenario, kind, mode, cpu_us_per_request);
                let ratio = if self.has(base) {
                    format!(
                        "×{}",
                        show(self.ratio(compare, base, kind, mode, cpu_us_per_request), 2)
                    )
                } else {
                    "– (run mirror-json)".into()
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {ratio} |",
                    match kind {
                        Kind::Rate => "fixed rate",
                        Kind::Saturation => "saturation",
                    },
                    mode.label(),
                    show(us(base), 1),
                    show(us(compare), 1),
                );
            }
        }
        let _ = writeln!(out, "\n{}", self.comparisons_made());
    }

    /// What the daemon compared in each `compare` run, and whether that was every copy.
    pub fn comparisons_made(&self) -> String {
        let runs: Vec<String> = self
            .runs_of(Scenario::Compare)
            .map(|(rep, run)| {
                let verdicts: Vec<String> = run
                    .comparisons
                    .iter()
                    .map(|(verdict, n)| format!("{verdict} {n}"))
                    .collect();
                format!(
                    "rep {}: {} (copies delivered in the measured phases: {})",
                    rep + 1,
                    if verdicts.is_empty() {
                        "none".to_owned()
                    } else {
                        verdicts.join(", ")
                    },
                    run.copies_delivered()
                )
            })
            .collect();
        let mut out = format!(
            "Pairs of answers the daemon judged in compare (`mirror_comparisons_total` by verdict, \
             over the whole run with its warm-up): {}.",
            runs.join("; ")
        );
        if let Some(why) = self.comparisons_missing() {
            let _ = write!(
                out,
                " **The daemon did not compare the copies' answers ({why}): compare's CPU is not \
                 the cost of comparing, and its goal is not judged.**"
            );
        }
        out
    }

    /// Why `compare`'s runs do not show the cost of comparing, if they do not: a run that
    /// compared no pair, or fewer than [`COMPARED_AT_LEAST`] of the copies delivered.
    pub fn comparisons_missing(&self) -> Option<String> {
        let short: Vec<String> = self
            .runs_of(Scenario::Compare)
            .filter_map(|(rep, run)| {
                let (compared, delivered) = (run.compared_pairs(), run.copies_delivered());
                if compared == 0 {
                    Some(format!("rep {}: no pair compared", rep + 1))
                } else if (compared as f64) < COMPARED_AT_LEAST * delivered as f64 {
                    Some(format!(
                        "rep {}: {compared} pairs compared for {delivered} copies delivered",
                        rep + 1
                    ))
                } else {
                    None
                }
            })
            .collect();
        (!short.is_empty()).then(|| short.join("; "))
    }

    /// One latency table at the fixed rate: a row per scenario and mode, compared with the
    /// scenarios' own baseline (direct, or h2-direct) within each repetition.
    fn latency_table(&self, out: &mut String, scenarios: &[Scenario], title: &str) {
        let baseline = scenarios[0].baseline();
        let _ = writeln!(out, "### {title}\n");
        let _ = writeln!(
            out,
            "| scenario | mode | p50 µs | p90 µs | p99 µs | max µs | p99 vs {} | CPU s / 1000 req | context switches / req | RSS MiB | copies delivered / dropped |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            baseline.key()
        );
        for &scenario in scenarios {
            for &mode in scenario.modes() {
                let p = |f: fn(&Phase) -> f64| self.spread(scenario, Kind::Rate, mode, f);
                let vs_baseline = if self.has(baseline) && scenario != baseline {
                    let diff = self.paired(
                        scenario,
                        baseline,
                        Kind::Rate,
                        mode,
                        |ph| ph.load.p99,
                        |a, b| a - b,
                    );
                    let ratio = self.ratio(scenario, baseline, Kind::Rate, mode, |ph| ph.load.p99);
                    format!("{} µs, ×{}", signed(diff), show(ratio, 2))
                } else {
                    "–".into()
                };
                let (cpu, switches) = self.proxy_cost(scenario, Kind::Rate, mode);
                let rss = self.run_spread(scenario, |run| run.rss_at_rate.map(mebibytes));
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    scenario.key(),
                    mode.label(),
                    show(p(|ph| ph.load.p50), 0),
                    show(p(|ph| ph.load.p90), 0),
                    show(p(|ph| ph.load.p99), 0),
                    show(p(|ph| ph.load.max), 0),
                    vs_baseline,
                    cpu,
                    switches,
                    show(rss, 1),
                    copies(self, scenario, Kind::Rate, mode),
                );
            }
        }
        out.push('\n');
    }

    /// One throughput table at saturation, compared with the scenarios' own baseline.
    fn throughput_table(&self, out: &mut String, scenarios: &[Scenario], title: &str) {
        let baseline = scenarios[0].baseline();
        let _ = writeln!(out, "### {title}\n");
        let _ = writeln!(
            out,
            "| scenario | mode | requests/s | vs {} | p50 µs | p99 µs | max µs | CPU s / 1000 req | context switches / req | bed CPU µs / req | RSS MiB | copies delivered / dropped |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            baseline.key()
        );
        for &scenario in scenarios {
            for &mode in scenario.modes() {
                let p = |f: fn(&Phase) -> f64| self.spread(scenario, Kind::Saturation, mode, f);
                let vs_baseline = if self.has(baseline) && scenario != baseline {
                    let ratio = self.ratio(scenario, baseline, Kind::Saturation, mode, |ph| {
                        ph.load.rps()
                    });
                    format!("×{}", show(ratio, 2))
                } else {
                    "–".into()
                };
                let (cpu, switches) = self.proxy_cost(scenario, Kind::Saturation, mode);
                let rss = self.run_spread(scenario, |run| run.rss_at_saturation.map(mebibytes));
                let machine = p(|ph| ph.bed_cpu * 1e6 / ph.load.completed.max(1) as f64);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    scenario.key(),
                    mode.label(),
                    show(p(|ph| ph.load.rps()), 0),
                    vs_baseline,
                    show(p(|ph| ph.load.p50), 0),
                    show(p(|ph| ph.load.p99), 0),
                    show(p(|ph| ph.load.max), 0),
                    cpu,
                    switches,
                    show(machine, 0),
                    show(rss, 1),
                    copies(self, scenario, Kind::Saturation, mode),
                );
            }
        }
        out.push('\n');
    }

    /// The proxy's CPU seconds per 1000 requests and context switches per request, shown ("–"
    /// for direct and h2-direct, which have no proxy).
    fn proxy_cost(&self, scenario: Scenario, kind: Kind, mode: Mode) -> (String, String) {
        if scenario == scenario.baseline() {
            return ("–".into(), "–".into());
        }
        (
            show(self.spread(scenario, kind, mode, cpu_per_thousand), 3),
            show(self.spread(scenario, kind, mode, switches_per_request), 2),
        )
    }

    /// Throughput relative to its baseline (direct, or h2-direct) that `scenario` would reach
    /// at saturation if its proxy cost nothing: on a CPU-bound bed, the baseline's CPU per
    /// request over the scenario's without the proxy's share (paired within each repetition).
    pub fn free_proxy_ceiling(&self, scenario: Scenario, mode: Mode) -> Option<Spread> {
        self.per_repetition(|rep| self.free_proxy_ceiling_in(scenario, rep, mode))
    }

    fn free_proxy_ceiling_in(&self, scenario: Scenario, rep: usize, mode: Mode) -> Option<f64> {
        let without_proxy =
            |ph: &Phase| (ph.bed_cpu - ph.proxy_cpu) / ph.load.completed.max(1) as f64;
        let direct = self.value_in(
            scenario.baseline(),
            rep,
            Kind::Saturation,
            mode,
            without_proxy,
        )?;
        let this = self.value_in(scenario, rep, Kind::Saturation, mode, without_proxy)?;
        Some(direct / this)
    }

    /// Requests per second at saturation.
    pub fn throughput(&self, scenario: Scenario, mode: Mode) -> Option<Spread> {
        self.spread(scenario, Kind::Saturation, mode, |p| p.load.rps())
    }

    /// CPU µs per request at saturation, by part of the bed.
    pub fn cpu_split(&self, scenario: Scenario, mode: Mode) -> CpuSplit {
        let per_request = |cpu: fn(&Phase) -> f64| {
            self.spread(scenario, Kind::Saturation, mode, move |ph| {
                cpu(ph) * 1e6 / ph.load.completed.max(1) as f64
            })
        };
        CpuSplit {
            client: per_request(|ph| ph.bed_cpu - ph.primary_cpu - ph.shadow_cpu - ph.proxy_cpu),
            primary: per_request(|ph| ph.primary_cpu),
            shadow: per_request(|ph| ph.shadow_cpu),
            proxy: per_request(|ph| ph.proxy_cpu),
            total: per_request(|ph| ph.bed_cpu),
        }
    }

    /// The latencies of every repetition's fixed-rate phase in `mode`, pooled.
    pub fn pooled_latency(&self, scenario: Scenario, mode: Mode) -> Option<Distribution> {
        let mut pooled: Option<Distribution> = None;
        for (_, run) in self.runs_of(scenario) {
            let Some(kept) = run
                .phase(Kind::Rate, mode)
                .and_then(|p| p.load.distribution.as_ref())
            else {
                continue;
            };
            match pooled.as_mut() {
                // Same bounds and precision everywhere: adding cannot fail.
                Some(sum) => sum.add(kept).ok()?,
                None => pooled = Some(kept.clone()),
            }
        }
        pooled
    }

    /// Why latencies cannot be judged on this run, if they cannot: other load on the machine, or a
    /// client that could not keep its own schedule.
    pub fn noisy(&self) -> Option<String> {
        self.busy_machine().or_else(|| self.late_client())
    }

    /// Other processes competing for the cores: latencies and throughput both suffer. Judged by
    /// the share of the cores busy with anything but the bed during the fixed-rate phases (the
    /// load average before a run mostly counts the bench's own previous saturation phase).
    fn busy_machine(&self) -> Option<String> {
        let others = Spread::of(
            self.runs
                .iter()
                .flat_map(|r| r.phases.iter())
                .filter(|p| p.kind == Kind::Rate)
                .map(|p| p.others_busy),
        )?;
        (others.median > BUSY_OTHERS).then(|| {
            format!(
                "other processes kept {:.0} % of the cores busy during the fixed-rate phases (median)",
                others.median * 100.0
            )
        })
    }

    /// A fixed-rate client that could not keep its own schedule: its latencies are its own.
    fn late_client(&self) -> Option<String> {
        let lag = Spread::of(
            self.runs
                .iter()
                .flat_map(|r| r.phases.iter())
                .filter(|p| p.kind == Kind::Rate)
                .map(|p| p.load.send_lag_p99),
        );
        match lag {
            Some(lag) if lag.median > 200.0 => Some(format!(
                "the client sent late by {:.0} µs at p99 (median)",
                lag.median
            )),
            _ => None,
        }
    }

    /// The goals of issue 11 (and issue 12's for HTTP/2, last), each a ratio taken within each
    /// repetition (or, for RSS, an amount), with the medians it comes from and a verdict on the
    /// median over repetitions.
    pub fn goal_checks(&self, rate: f64) -> Vec<GoalCheck> {
        use Scenario::{
            Compare, Degraded, Direct, H2Degraded, H2Mirror, Intercept, Mirror, MirrorJson,
            NginxMirror,
        };
        let ka = Mode::KeepAlive;
        let fixed = format!("{rate:.0} req/s, keep-alive, 100 % mirrored");
        let p99 = |scenario| self.spread(scenario, Kind::Rate, ka, |p| p.load.p99);
        let cpu = |scenario| self.spread(scenario, Kind::Rate, ka, cpu_per_thousand);
        let rps = |scenario| self.throughput(scenario, ka);
        let p99_ratio = |scenario, base| self.ratio(scenario, base, Kind::Rate, ka, |p| p.load.p99);
        let cpu_ratio =
            |scenario, base| self.ratio(scenario, base, Kind::Rate, ka, cpu_per_thousand);
        let rps_ratio =
            |scenario, base| self.ratio(scenario, base, Kind::Saturation, ka, |p| p.load.rps());
        let medians = |parts: &[(Scenario, Option<Spread>)], decimals: usize, unit: &str| {
            let shown: Vec<String> = parts
                .iter()
                .map(|(scenario, spread)| {
                    format!("{} {}", scenario.key(), show_median(*spread, decimals))
                })
                .collect();
            format!("{} {unit}", shown.join(", "))
        };
        let of_ceiling = self.per_repetition(|rep| {
            let rps =
                |scenario| self.value_in(scenario, rep, Kind::Saturation, ka, |p| p.load.rps());
            let reached = rps(Mirror)? / rps(Direct)?;
            Some(reached / self.free_proxy_ceiling_in(Mirror, rep, ka)?)
        });
        let rss = self.run_spread(Mirror, |run| run.rss_at_rate.map(mebibytes));
        let hwm = self.run_spread(Mirror, |run| run.peak_rss.map(mebibytes));
        let saturation_cpu =
            |scenario| self.spread(scenario, Kind::Saturation, ka, cpu_per_thousand);
        let compared = |check: GoalCheck| match (&check.verdict, self.comparisons_missing()) {
            (Verdict::Met | Verdict::Missed, Some(why)) => GoalCheck {
                verdict: Verdict::NotJudged(format!("the daemon did not compare ({why})")),
                ..check
            },
            _ => check,
        };
        let json = "every answer pair compared vs mirrored alone, the same 1 KiB JSON answers";
        vec![
            self.check(
                format!("primary p99, mirror vs direct ({fixed})"),
                &[Mirror, Direct],
                Bound::AtMost(1.3),
                Judge::Latency,
                p99_ratio(Mirror, Direct),
                medians(&[(Mirror, p99(Mirror)), (Direct, p99(Direct))], 0, "µs"),
            ),
            self.check(
                format!("primary p99, mirror vs nginx `mirror` ({fixed})"),
                &[Mirror, NginxMirror],
                Bound::Below(1.0),
                Judge::Latency,
                p99_ratio(Mirror, NginxMirror),
                medians(
                    &[(Mirror, p99(Mirror)), (NginxMirror, p99(NginxMirror))],
                    0,
                    "µs",
                ),
            ),
            self.check(
                format!("proxy CPU per request, mirror vs relaying alone ({fixed})"),
                &[Mirror, Intercept],
                Bound::AtMost(1.4),
                Judge::Always,
                cpu_ratio(Mirror, Intercept),
                medians(
                    &[(Mirror, cpu(Mirror)), (Intercept, cpu(Intercept))],
                    3,
                    "CPU s / 1000 req",
                ),
            ),
            self.check(
                format!("proxy CPU per request, mirror vs nginx `mirror` ({fixed})"),
                &[Mirror, NginxMirror],
                Bound::AtMost(0.5),
                Judge::Always,
                cpu_ratio(Mirror, NginxMirror),
                medians(
                    &[(Mirror, cpu(Mirror)), (NginxMirror, cpu(NginxMirror))],
                    3,
                    "CPU s / 1000 req",
                ),
            ),
            self.check(
                "saturation throughput, keep-alive, 100 % mirrored, vs the free-proxy ceiling \
                 (mirror's throughput vs direct over what a proxy that cost nothing would reach)"
                    .into(),
                &[Mirror, Direct],
                Bound::AtLeast(0.7),
                Judge::Throughput,
                of_ceiling,
                format!(
                    "mirror ×{} of direct, free-proxy ceiling ×{}",
                    show_median(rps_ratio(Mirror, Direct), 2),
                    show_median(self.free_proxy_ceiling(Mirror, ka), 2)
                ),
            ),
            self.check(
                "saturation throughput, keep-alive, 100 % mirrored, mirror vs nginx `mirror`"
                    .into(),
                &[Mirror, NginxMirror],
                Bound::AtLeast(2.5),
                Judge::Throughput,
                rps_ratio(Mirror, NginxMirror),
                medians(
                    &[(Mirror, rps(Mirror)), (NginxMirror, rps(NginxMirror))],
                    0,
                    "req/s",
                ),
            ),
            self.check(
                "saturation throughput, keep-alive, relaying alone (intercept) vs direct".into(),
                &[Intercept, Direct],
                Bound::AtLeast(0.6),
                Judge::Throughput,
                rps_ratio(Intercept, Direct),
                medians(
                    &[(Intercept, rps(Intercept)), (Direct, rps(Direct))],
                    0,
                    "req/s",
                ),
            ),
            self.check(
                format!(
                    "primary p99, slow + blackholed shadow (mirror-degraded) vs healthy shadow \
                     (mirror), {rate:.0} req/s, keep-alive"
                ),
                &[Degraded, Mirror],
                Bound::AtMost(1.1),
                Judge::Latency,
                p99_ratio(Degraded, Mirror),
                medians(&[(Degraded, p99(Degraded)), (Mirror, p99(Mirror))], 0, "µs"),
            ),
            GoalCheck {
                unit: Unit::MiB,
                ..self.check(
                    format!("daemon RSS at {fixed} (largest VmRSS sampled)"),
                    &[Mirror],
                    Bound::AtMost(30.0),
                    Judge::Always,
                    rss,
                    format!(
                        "VmHWM over the whole life, start-up included: {} MiB",
                        show(hwm, 1)
                    ),
                )
            },
            self.check(
                format!(
                    "daemon CPU per mirrored request, HTTP/2 vs HTTP/1.1 (h2-mirror vs mirror, \
                     {fixed}; the same request fields and 1 KiB answers)"
                ),
                &[H2Mirror, Mirror],
                Bound::AtMost(1.0),
                Judge::Always,
                cpu_ratio(H2Mirror, Mirror),
                medians(
                    &[(H2Mirror, cpu(H2Mirror)), (Mirror, cpu(Mirror))],
                    3,
                    "CPU s / 1000 req",
                ),
            ),
            self.check(
                format!(
                    "HTTP/2 primary p99, slow + blackholed shadow (h2-mirror-degraded) vs healthy \
                     shadow (h2-mirror), {rate:.0} req/s, keep-alive"
                ),
                &[H2Degraded, H2Mirror],
                Bound::AtMost(1.1),
                Judge::Latency,
                p99_ratio(H2Degraded, H2Mirror),
                medians(
                    &[(H2Degraded, p99(H2Degraded)), (H2Mirror, p99(H2Mirror))],
                    0,
                    "µs",
                ),
            ),
            compared(self.check(
                format!("daemon CPU per request, compare vs mirror-json ({fixed}; {json})"),
                &[Compare, MirrorJson],
                Bound::AtMost(1.25),
                Judge::Always,
                cpu_ratio(Compare, MirrorJson),
                medians(
                    &[(Compare, cpu(Compare)), (MirrorJson, cpu(MirrorJson))],
                    3,
                    "CPU s / 1000 req",
                ),
            )),
            compared(self.check(
                format!(
                    "daemon CPU per request at saturation, compare vs mirror-json (keep-alive; \
                     {json})"
                ),
                &[Compare, MirrorJson],
                Bound::AtMost(1.25),
                Judge::Always,
                self.ratio(Compare, MirrorJson, Kind::Saturation, ka, cpu_per_thousand),
                medians(
                    &[
                        (Compare, saturation_cpu(Compare)),
                        (MirrorJson, saturation_cpu(MirrorJson)),
                    ],
                    3,
                    "CPU s / 1000 req",
                ),
            )),
        ]
    }

    /// One goal's verdict: not measured when a scenario it needs was not run (or gave no
    /// number), not judged when the noise its kind is sensitive to was there, else met or not by
    /// the median over repetitions.
    fn check(
        &self,
        goal: String,
        needs: &[Scenario],
        bound: Bound,
        judge: Judge,
        measured: Option<Spread>,
        from: String,
    ) -> GoalCheck {
        let missing: Vec<&str> = needs
            .iter()
            .filter(|scenario| !self.has(**scenario))
            .map(|scenario| scenario.key())
            .collect();
        let noise = match judge {
            Judge::Always => None,
            Judge::Throughput => self.busy_machine(),
            Judge::Latency => self.noisy(),
        };
        let verdict = match (measured, noise) {
            _ if !missing.is_empty() => {
                Verdict::NotMeasured(format!("run scenarios {}", missing.join(", ")))
            }
            (None, _) => Verdict::NotMeasured("no number: see the tables".into()),
            (Some(_), Some(why)) => Verdict::NotJudged(why),
            (Some(spread), None) if bound.holds(spread.median) => Verdict::Met,
            (Some(_), None) => Verdict::Missed,
        };
        GoalCheck {
            goal,
            bound,
            unit: Unit::Ratio,
            measured,
            from,
            verdict,
        }
    }

    /// The goals as a markdown table, with what makes them less than certain.
    pub fn goals(&self, rate: f64) -> String {
        let mut out = format!(
            "### Goals\n\nEach ratio is taken within a repetition (the scenarios of one repetition \
             ran back to back); the verdict is on the median over the {} repetition(s).\n\n\
             | goal | bound | measured: median (range) | from (medians) | met |\n\
             |---|---|---|---|---|\n",
            self.repetitions()
        );
        for check in self.goal_checks(rate) {
            let measured = match (check.measured, check.unit) {
                (None, _) => "–".to_owned(),
                (Some(spread), Unit::Ratio) => format!("×{}", spread.show(2)),
                (Some(spread), Unit::MiB) => format!("{} MiB", spread.show(1)),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {measured} | {} | {} |",
                check.goal,
                check.bound.show(check.unit),
                check.from,
                check.verdict,
            );
        }
        if let Some(why) = self.noisy() {
            let which = if self.busy_machine().is_some() {
                "Latency and throughput goals are"
            } else {
                "Latency goals are"
            };
            let _ = writeln!(
                out,
                "\n{which} not judged on this run ({why}): run again on a quiet machine \
                 (`--wait-quiet 600`)."
            );
        }
        if self.repetitions() < 3 {
            let _ = writeln!(
                out,
                "\nFewer than 3 repetitions: the verdicts are indicative only (the goals ask for \
                 at least 3 interleaved repetitions, `--reps 3`)."
            );
        }
        out
    }

    /// Load average and machine busy share per run, and the client's own send lag.
    pub fn noise(&self) -> String {
        let load = Spread::of(self.runs.iter().map(|r| r.loadavg));
        let busy = Spread::of(
            self.runs
                .iter()
                .flat_map(|r| r.phases.iter())
                .filter(|p| p.kind == Kind::Rate)
                .map(|p| p.machine_busy * 100.0),
        );
        let others = Spread::of(
            self.runs
                .iter()
                .flat_map(|r| r.phases.iter())
                .filter(|p| p.kind == Kind::Rate)
                .map(|p| p.others_busy * 100.0),
        );
        let lag = Spread::of(
            self.runs
                .iter()
                .flat_map(|r| r.phases.iter())
                .filter(|p| p.kind == Kind::Rate)
                .map(|p| p.load.send_lag_p99),
        );
        let h2_schedule = Spread::of(
            self.runs
                .iter()
                .flat_map(|r| r.phases.iter())
                .filter(|p| p.kind == Kind::Rate)
                .filter_map(|p| p.load.schedule_kept),
        );
        let errors: u64 = self
            .runs
            .iter()
            .flat_map(|r| r.phases.iter())
            .map(|p| p.load.errors)
            .sum();
        let missed: u64 = self
            .runs
            .iter()
            .flat_map(|r| r.phases.iter())
            .map(|p| p.load.missed)
            .sum();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "- 1-minute load average before each run: {} (it counts the bench's own previous phase too)",
            show(load, 2)
        );
        let _ = writeln!(
            out,
            "- machine CPU busy during the fixed-rate phases, all processes: {} % of the cores; \
             anything but the bed: {} % (more than {:.0} % and the latency and throughput goals \
             are not judged)",
            show(busy, 0),
            show(others, 0),
            BUSY_OTHERS * 100.0
        );
        if lag.is_some() {
            let _ = writeln!(
                out,
                "- the fixed-rate client's own lateness (p99 of actual − intended send time): {} µs",
                show(lag, 0)
            );
        }
        if h2_schedule.is_some() {
            let _ = writeln!(
                out,
                "- h2load at the fixed rate kept ×{} of its schedule (the planned time from its \
                 first request to its last, over the time it took; 1.00 = on time)",
                show(h2_schedule, 3)
            );
        }
        let _ = writeln!(
            out,
            "- client errors over all phases: {errors}; fixed-rate requests never sent in time (counted with their wait): {missed}"
        );
        let hwm: Vec<String> = self
            .scenarios
            .iter()
            .filter_map(|&scenario| {
                let spread = self.run_spread(scenario, |run| run.peak_rss.map(mebibytes))?;
                Some(format!("{} {} MiB", scenario.key(), spread.show(1)))
            })
            .collect();
        if !hwm.is_empty() {
            let _ = writeln!(
                out,
                "- peak RSS over the process's whole life (VmHWM, start-up included; nginx: summed over its processes): {}",
                hwm.join(", ")
            );
        }
        let per_run = |counts: fn(&Run) -> &[(String, u64)]| -> Vec<String> {
            let mut lines: Vec<String> = self
                .runs
                .iter()
                .filter(|run| !counts(run).is_empty())
                .map(|run| {
                    let list: Vec<String> = counts(run)
                        .iter()
                        .map(|(name, n)| format!("{name} {n}"))
                        .collect();
                    format!("{}: {}", run.scenario.key(), list.join(", "))
                })
                .collect();
            lines.dedup();
            lines
        };
        let drops = per_run(|run| &run.daemon_drops);
        if !drops.is_empty() {
            let _ = writeln!(
                out,
                "- copies the daemon itself did not make, by outcome, per run: {}",
                drops.join("; ")
            );
        }
        if self.has(Scenario::Compare) {
            let _ = writeln!(out, "- {}", self.comparisons_made());
        }
        let errors = per_run(|run| &run.shadow_errors);
        if !errors.is_empty() {
            let _ = writeln!(
                out,
                "- copies that failed towards a shadow, by kind (`mirror_shadow_errors_total`; \
                 HTTP/2's `refused`: no stream free), per run: {}",
                errors.join("; ")
            );
        }
        out
    }
}

/// One of the daemon's counts per completed request; NaN (left out of spreads) when not counted.
fn counted_per_request(count: fn(&Counts) -> u64) -> impl Fn(&Phase) -> f64 {
    move |phase| phase.per_request(count).unwrap_or(f64::NAN)
}

fn cpu_us_per_request(phase: &Phase) -> f64 {
    phase.proxy_cpu * 1e6 / phase.load.completed.max(1) as f64
}

fn cpu_per_thousand(phase: &Phase) -> f64 {
    phase.proxy_cpu / phase.load.completed.max(1) as f64 * 1000.0
}

fn switches_per_request(phase: &Phase) -> f64 {
    phase.proxy_switches as f64 / phase.load.completed.max(1) as f64
}

fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn show_median(spread: Option<Spread>, decimals: usize) -> String {
    spread.map_or_else(|| "–".into(), |s| format!("{:.*}", decimals, s.median))
}

fn signed(spread: Option<Spread>) -> String {
    match spread {
        None => "–".into(),
        Some(s) if s.n < 2 => format!("{:+.0}", s.median),
        Some(s) => format!("{:+.0} ({:+.0}…{:+.0})", s.median, s.min, s.max),
    }
}

fn copies(results: &Results<'_>, scenario: Scenario, kind: Kind, mode: Mode) -> String {
    if scenario.copies_per_request() == 0 {
        return "–".into();
    }
    let delivered = results.spread(scenario, kind, mode, |p| p.copies_delivered as f64);
    let dropped = results.spread(scenario, kind, mode, |p| {
        p.copies_expected.saturating_sub(p.copies_delivered) as f64
    });
    match (delivered, dropped) {
        (Some(d), Some(x)) => format!("{:.0} / {:.0}", d.median, x.median),
        _ => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, Measured};
    use super::*;

    const ALL_BUT_NGINX_DEGRADED: [Scenario; 5] = [
        Scenario::Direct,
        Scenario::Intercept,
        Scenario::Mirror,
        Scenario::Degraded,
        Scenario::NginxMirror,
    ];

    /// Three repetitions chosen so that ratios taken within each repetition give other medians
    /// than ratios of medians would (mirror's p99: ×1.2 of direct per repetition, ×2.2 of the
    /// medians).
    fn measured(scenario: Scenario, rep: usize) -> Measured {
        let pick = |values: [f64; 3]| values[rep];
        let (p99, cpu, rps, proxy_us, rest_us) = match scenario {
            Scenario::Direct => (
                [100.0, 200.0, 100.0],
                [0.0; 3],
                [1000.0, 1000.0, 2000.0],
                0.0,
                20.0,
            ),
            Scenario::Intercept => (
                [110.0, 210.0, 110.0],
                [0.04; 3],
                [700.0, 500.0, 1400.0],
                15.0,
                20.0,
            ),
            Scenario::Mirror => (
                [120.0, 220.0, 300.0],
                [0.05, 0.06, 0.04],
                [300.0, 300.0, 600.0],
                30.0,
                40.0,
            ),
            Scenario::Degraded => ([130.0, 250.0, 300.0], [0.05; 3], [500.0; 3], 20.0, 20.0),
            Scenario::NginxMirror => ([200.0; 3], [0.2; 3], [100.0, 150.0, 200.0], 90.0, 60.0),
            Scenario::NginxDegraded => ([5e6; 3], [0.3; 3], [30.0; 3], 150.0, 1000.0),
            Scenario::H2Direct => ([90.0, 180.0, 90.0], [0.0; 3], [2000.0; 3], 0.0, 15.0),
            Scenario::H2Intercept => ([100.0, 190.0, 100.0], [0.03; 3], [1500.0; 3], 10.0, 15.0),
            // CPU per request against mirror's 0.05, 0.06, 0.04: ×1.2, ×0.5, ×1.25 within the
            // repetitions (median ×1.2), though the medians are equal (×1.0).
            Scenario::H2Mirror => (
                [110.0, 200.0, 120.0],
                [0.06, 0.03, 0.05],
                [900.0; 3],
                25.0,
                35.0,
            ),
            // p99 against h2-mirror's: ×1.05, ×1.15, ×1.0.
            Scenario::H2Degraded => ([115.5, 230.0, 120.0], [0.05; 3], [1200.0; 3], 15.0, 20.0),
            Scenario::MirrorJson => ([120.0; 3], [0.05; 3], [300.0; 3], 30.0, 40.0),
            // CPU per request against mirror-json's: ×1.2, ×1.4, ×1.1 at the fixed rate; ×1.33
            // at saturation.
            Scenario::Compare => ([125.0; 3], [0.06, 0.07, 0.055], [280.0; 3], 40.0, 40.0),
        };
        Measured {
            p99: pick(p99),
            cpu: pick(cpu),
            rps: pick(rps),
            proxy_us,
            rest_us,
        }
    }

    fn checks(scenarios: &[Scenario], loadavg: f64) -> Vec<GoalCheck> {
        let runs = fixture::runs(scenarios, 3, loadavg, measured);
        Results {
            runs: &runs,
            scenarios,
        }
        .goal_checks(1000.0)
    }

    fn summary(checks: &[GoalCheck]) -> Vec<(Option<f64>, Verdict)> {
        checks
            .iter()
            .map(|c| {
                // Two decimals: what the table shows.
                let median = c.measured.map(|s| (s.median * 100.0).round() / 100.0);
                (median, c.verdict.clone())
            })
            .collect()
    }

    #[test]
    fn goals_are_ratios_taken_within_each_repetition() {
        let checks = checks(&ALL_BUT_NGINX_DEGRADED, 0.5);
        assert_eq!(
            summary(&checks),
            vec![
                // mirror vs direct p99: 1.2, 1.1, 3.0
                (Some(1.2), Verdict::Met),
                // mirror vs nginx p99: 0.6, 1.1, 1.5
                (Some(1.1), Verdict::Missed),
                // CPU vs intercept: 1.25, 1.5, 1.0
                (Some(1.25), Verdict::Met),
                // CPU vs nginx: 0.25, 0.3, 0.2
                (Some(0.25), Verdict::Met),
                // ×0.3 of direct against a ceiling of 20 / 40 µs = ×0.5
                (Some(0.6), Verdict::Missed),
                // throughput vs nginx: 3, 2, 3
                (Some(3.0), Verdict::Met),
                // intercept vs direct: 0.7, 0.5, 0.7
                (Some(0.7), Verdict::Met),
                // degraded vs mirror p99: 1.08, 1.14, 1.0
                (Some(1.08), Verdict::Met),
                // RSS, MiB
                (Some(14.0), Verdict::Met),
                (None, Verdict::NotMeasured("run scenarios h2-mirror".into())),
                (
                    None,
                    Verdict::NotMeasured("run scenarios h2-mirror-degraded, h2-mirror".into())
                ),
                (
                    None,
                    Verdict::NotMeasured("run scenarios compare, mirror-json".into())
                ),
                (
                    None,
                    Verdict::NotMeasured("run scenarios compare, mirror-json".into())
                ),
            ]
        );
        assert!(checks[0].goal.contains("mirror vs direct"));
        assert_eq!(checks[0].from, "mirror 220, direct 100 µs");
        assert_eq!(checks[8].unit, Unit::MiB);
        let spread = checks[1].measured.expect("measured");
        assert_eq!((spread.min, spread.max, spread.n), (0.6, 1.5, 3));
    }

    #[test]
    fn goals_without_their_scenarios_say_which_to_run() {
        let checks = checks(&[Scenario::Direct, Scenario::Mirror], 0.5);
        let verdicts: Vec<String> = checks.iter().map(|c| c.verdict.to_string()).collect();
        assert_eq!(
            verdicts,
            vec![
                "yes",
                "not measured (run scenarios nginx-mirror)",
                "not measured (run scenarios intercept)",
                "not measured (run scenarios nginx-mirror)",
                "**no**",
                "not measured (run scenarios nginx-mirror)",
                "not measured (run scenarios intercept)",
                "not measured (run scenarios mirror-degraded)",
                "yes",
                "not measured (run scenarios h2-mirror)",
                "not measured (run scenarios h2-mirror-degraded, h2-mirror)",
                "not measured (run scenarios compare, mirror-json)",
                "not measured (run scenarios compare, mirror-json)",
            ]
        );
        let only_nginx = self::checks(&[Scenario::NginxMirror], 0.5);
        assert_eq!(
            only_nginx[0].verdict,
            Verdict::NotMeasured("run scenarios mirror, direct".into())
        );
    }

    #[test]
    fn latency_and_throughput_goals_are_not_judged_on_a_busy_machine_cpu_and_rss_are() {
        let checks = checks(&ALL_BUT_NGINX_DEGRADED, 3.0);
        let busy = Verdict::NotJudged(
            "other processes kept 50 % of the cores busy during the fixed-rate phases (median)"
                .into(),
        );
        let verdicts: Vec<Verdict> = checks.iter().map(|c| c.verdict.clone()).collect();
        assert_eq!(
            verdicts,
            vec![
                busy.clone(),
                busy.clone(),
                Verdict::Met,
                Verdict::Met,
                busy.clone(),
                busy.clone(),
                busy.clone(),
                busy,
                Verdict::Met,
                Verdict::NotMeasured("run scenarios h2-mirror".into()),
                Verdict::NotMeasured("run scenarios h2-mirror-degraded, h2-mirror".into()),
                Verdict::NotMeasured("run scenarios compare, mirror-json".into()),
                Verdict::NotMeasured("run scenarios compare, mirror-json".into()),
            ]
        );
        // Measured all the same.
        assert!(checks[..9].iter().all(|c| c.measured.is_some()));
    }

    #[test]
    fn a_late_client_keeps_only_latency_goals_from_being_judged() {
        let mut runs = fixture::runs(&ALL_BUT_NGINX_DEGRADED, 3, 0.5, measured);
        for phase in runs.iter_mut().flat_map(|run| run.phases.iter_mut()) {
            phase.load.send_lag_p99 = 900.0;
        }
        let checks = Results {
            runs: &runs,
            scenarios: &ALL_BUT_NGINX_DEGRADED,
        }
        .goal_checks(1000.0);
        let late = Verdict::NotJudged("the client sent late by 900 µs at p99 (median)".into());
        let judged: Vec<bool> = checks.iter().map(|c| c.verdict != late).collect();
        assert_eq!(
            judged,
            [false, false, true, true, true, true, true, false, true, true, true, true, true]
        );
    }

    #[test]
    fn goal_table_shows_bound_measure_and_verdict() {
        let runs = fixture::runs(&ALL_BUT_NGINX_DEGRADED, 3, 0.5, measured);
        let table = Results {
            runs: &runs,
            scenarios: &ALL_BUT_NGINX_DEGRADED,
        }
        .goals(1000.0);
        assert!(
            table.contains(
                "| primary p99, mirror vs direct (1000 req/s, keep-alive, 100 % mirrored) \
                 | ≤ ×1.30 | ×1.20 (1.10–3.00) | mirror 220, direct 100 µs | yes |"
            ),
            "{table}"
        );
        assert!(table.contains("| ≥ ×0.70 | ×0.60 (0.60–0.60) |"), "{table}");
        assert!(
            table.contains("| ≤ 30 MiB | 14.0 (14.0–14.0) MiB |"),
            "{table}"
        );
        assert!(!table.contains("Fewer than 3 repetitions"), "{table}");
    }

    const HTTP2_AND_MIRROR: [Scenario; 6] = [
        Scenario::Direct,
        Scenario::Mirror,
        Scenario::H2Direct,
        Scenario::H2Intercept,
        Scenario::H2Mirror,
        Scenario::H2Degraded,
    ];

    #[test]
    fn http2_goals_pair_h2_mirror_with_mirror_within_each_repetition() {
        let checks = checks(&HTTP2_AND_MIRROR, 0.5);
        let http2 = &summary(&checks)[9..11];
        assert_eq!(
            http2,
            [
                // CPU per request: ×1.2, ×0.5, ×1.25 (not the ×1.0 of the medians).
                (Some(1.2), Verdict::Missed),
                // p99, degraded vs healthy h2c shadow: ×1.05, ×1.15, ×1.0.
                (Some(1.05), Verdict::Met),
            ]
        );
        assert!(
            checks[9].goal.contains("HTTP/2 vs HTTP/1.1"),
            "{}",
            checks[9].goal
        );
        assert_eq!(
            checks[9].from,
            "h2-mirror 0.050, mirror 0.050 CPU s / 1000 req"
        );
        assert_eq!(checks[9].bound, Bound::AtMost(1.0));
        let spread = checks[9].measured.expect("measured");
        assert!(
            (spread.min - 0.5).abs() < 1e-9 && (spread.max - 1.25).abs() < 1e-9,
            "{spread:?}"
        );
    }

    #[test]
    fn http2_tables_compare_with_h2_direct_and_have_keep_alive_rows_only() {
        let runs = fixture::runs(&HTTP2_AND_MIRROR, 3, 0.5, measured);
        let results = Results {
            runs: &runs,
            scenarios: &HTTP2_AND_MIRROR,
        };
        let tables = results.tables(1000.0);
        let section = |title: &str| -> Vec<String> {
            tables
                .split("### ")
                .find(|part| part.starts_with(title))
                .unwrap_or_else(|| panic!("no {title:?} in\n{tables}"))
                .lines()
                .filter(|line| line.starts_with("| ") && !line.starts_with("| scenario"))
                .map(str::to_owned)
                .collect()
        };
        let http1 = section("Latency at a fixed 1000 requests/s");
        assert_eq!(http1.len(), 4, "{http1:?}");
        let latency = section("HTTP/2 (h2c): latency at a fixed 1000 requests/s");
        assert_eq!(latency.len(), 4, "{latency:?}");
        assert!(latency.iter().all(|row| row.contains("| keep-alive |")));
        assert!(tables.contains("| p99 vs h2-direct |"), "{tables}");
        // h2-mirror's p99 against h2-direct's: +20, +20, +30 µs.
        assert!(
            latency[2].starts_with("| h2-mirror | keep-alive |")
                && latency[2].contains("| +20 (+20…+30) µs, ×1.22 (1.11–1.33) |"),
            "{}",
            latency[2]
        );
        // h2-direct has no proxy; h2-mirror made one copy per request, all delivered.
        assert!(
            latency[0].contains("| – | – | – | – | – |"),
            "{}",
            latency[0]
        );
        assert!(latency[2].ends_with("| 1000 / 0 |"), "{}", latency[2]);
        let throughput = section("HTTP/2 (h2c): throughput at saturation");
        assert_eq!(throughput.len(), 4, "{throughput:?}");
        // No percentiles from h2load at saturation; its ratio is to h2-direct.
        assert!(
            throughput[2].starts_with(
                "| h2-mirror | keep-alive | 900 (900–900) | ×0.45 (0.45–0.45) | – | – | 3000 (3000–3000) |"
            ),
            "{}",
            throughput[2]
        );
        let cpu = section("Where the CPU goes");
        assert_eq!(cpu.len(), HTTP2_AND_MIRROR.len(), "{cpu:?}");
    }

    #[test]
    fn http1_latency_title_says_when_h2load_paced_keep_alive() {
        let scenarios = [Scenario::Mirror];
        let title = |runs: &[Run]| -> String {
            let tables = Results {
                runs,
                scenarios: &scenarios,
            }
            .tables(1000.0);
            tables
                .lines()
                .find(|line| line.starts_with("### Latency at a fixed"))
                .unwrap_or_else(|| panic!("no latency title in\n{tables}"))
                .to_owned()
        };
        let mut runs = fixture::runs(&scenarios, 1, 0.5, measured);
        assert_eq!(
            title(&runs),
            "### Latency at a fixed 1000 requests/s (open loop, from the intended send time)"
        );
        fixture::paced_by_h2load(&mut runs[0]);
        assert_eq!(
            title(&runs),
            "### Latency at a fixed 1000 requests/s (keep-alive: h2load `--h1`, from each \
             request's send; new connection: open loop, from the intended send time)"
        );
    }

    #[test]
    fn noise_lists_the_daemons_own_counts_and_h2loads_schedule() {
        let scenarios = [Scenario::Degraded, Scenario::H2Degraded];
        let mut runs = fixture::runs(&scenarios, 1, 0.5, measured);
        runs[0].daemon_drops = vec![("queue_full".into(), 9779)];
        runs[1].shadow_errors = vec![("refused".into(), 3570), ("connect".into(), 2)];
        let noise = Results {
            runs: &runs,
            scenarios: &scenarios,
        }
        .noise();
        assert!(
            noise.contains("did not make, by outcome, per run: mirror-degraded: queue_full 9779\n"),
            "{noise}"
        );
        assert!(
            noise.contains("per run: h2-mirror-degraded: refused 3570, connect 2\n"),
            "{noise}"
        );
        assert!(noise.contains("kept ×1.000 of its schedule"), "{noise}");
        // The HTTP/1.1 client's two fixed-rate phases (the h2load phase has no such figure).
        assert!(
            noise.contains("own lateness (p99 of actual − intended send time): 0 (0–0) µs"),
            "{noise}"
        );
    }

    #[test]
    fn spread_takes_the_median_and_range() {
        let s = Spread::of([3.0, 1.0, 2.0, f64::NAN]).expect("values");
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(s.show(0), "2 (1–3)");
        let even = Spread::of([1.0, 2.0, 3.0, 4.0]).expect("values");
        assert_eq!(even.median, 2.5);
        assert!(Spread::of([]).is_none());
    }

    const COMPARE_AND_MIRROR: [Scenario; 4] = [
        Scenario::Direct,
        Scenario::Mirror,
        Scenario::MirrorJson,
        Scenario::Compare,
    ];

    #[test]
    fn instruction_ratios_are_taken_within_each_repetition() {
        use Scenario::{H2Intercept, H2Mirror, Intercept, Mirror};
        let scenarios = [Intercept, Mirror, H2Intercept, H2Mirror];
        let mut runs = fixture::runs(&scenarios, 3, 0.5, measured);
        // Thousand instructions per request in the three repetitions: HTTP/2 against HTTP/1.1
        // is ×1.1, ×0.6, ×1.1 within them (median ×1.1), though its median is below (77 < 80).
        let per_request = |scenario: Scenario| match scenario {
            Intercept => [40.0, 45.0, 35.0],
            Mirror => [80.0, 90.0, 70.0],
            H2Intercept => [30.0, 30.0, 30.0],
            _ => [88.0, 54.0, 77.0],
        };
        // Misses per request: each count its own (I1 2000 against 3000 for HTTP/2, D1 500
        // against 600, mispredicted branches 400 against 300), whatever the instructions.
        let misses = |scenario: Scenario| match scenario {
            H2Intercept | H2Mirror => [3000, 600, 300],
            _ => [2000, 500, 400],
        };
        let requests = fixture::RATE_REQUESTS;
        for (i, run) in runs.iter_mut().enumerate() {
            let thousands = per_request(run.scenario)[i / scenarios.len()];
            let [i1, d1, mispredicted] = misses(run.scenario);
            for phase in &mut run.phases {
                if phase.kind == Kind::Rate && phase.mode == Mode::KeepAlive {
                    phase.counted = Some(Counts {
                        instructions: (thousands * 1000.0) as u64 * requests,
                        i1_misses: i1 * requests,
                        d1_misses: d1 * requests,
                        mispredicted: mispredicted * requests,
                    });
                }
            }
        }
        let table = Results {
            runs: &runs,
            scenarios: &scenarios,
        }
        .instructions_table(200.0);
        for row in [
            "| mirror | keep-alive | 80.0 (70.0–90.0) | 2000 (2000–2000) | 500 (500–500) | 400 (400–400) | 1000 (1000–1000) |",
            // Not counted in this phase: shown as such, not as zero.
            "| mirror | new conn | – | – | – | – | – |",
            "| h2-mirror | keep-alive | 77.0 (54.0–88.0) | 3000 (3000–3000) | 600 (600–600) | 300 (300–300) | 1000 (1000–1000) |",
            "| a mirrored request, HTTP/2 vs HTTP/1.1 (h2-mirror vs mirror, keep-alive) | ×1.10 (0.60–1.10) | ×1.50 (1.50–1.50) | ×1.20 (1.20–1.20) | ×0.75 (0.75–0.75) |",
            "| HTTP/1.1, mirrored vs relayed alone (mirror vs intercept, keep-alive) | ×2.00 (2.00–2.00) | ×1.00 (1.00–1.00) | ×1.00 (1.00–1.00) | ×1.00 (1.00–1.00) |",
            "| HTTP/2, mirrored vs relayed alone (h2-mirror vs h2-intercept, keep-alive) | ×2.57 (1.80–2.93) | ×1.00 (1.00–1.00) | ×1.00 (1.00–1.00) | ×1.00 (1.00–1.00) |",
        ] {
            assert!(table.contains(row), "no {row:?} in\n{table}");
        }
        assert!(
            table.contains("at a fixed 200 requests/s (callgrind)"),
            "{table}"
        );
    }

    #[test]
    fn compare_goals_pair_compare_with_mirror_json_within_each_repetition() {
        let checks = checks(&COMPARE_AND_MIRROR, 0.5);
        let compare = &summary(&checks)[11..];
        assert_eq!(
            compare,
            [
                // Fixed rate: ×1.2, ×1.4, ×1.1.
                (Some(1.2), Verdict::Met),
                // Saturation: 40 / 30 µs in every repetition.
                (Some(1.33), Verdict::Missed),
            ]
        );
        assert!(checks[11].goal.contains("compare vs mirror-json"));
        assert_eq!(checks[11].bound, Bound::AtMost(1.25));
        assert_eq!(
            checks[11].from,
            "compare 0.060, mirror-json 0.050 CPU s / 1000 req"
        );
        assert!(
            checks[12].goal.contains("at saturation"),
            "{}",
            checks[12].goal
        );
        let spread = checks[11].measured.expect("measured");
        assert!(
            (spread.min - 1.1).abs() < 1e-9 && (spread.max - 1.4).abs() < 1e-9,
            "{spread:?}"
        );
    }

    #[test]
    fn a_compare_run_that_compared_nothing_is_flagged_and_its_goals_not_judged() {
        let mut runs = fixture::runs(&COMPARE_AND_MIRROR, 3, 0.5, measured);
        // Repetition 2's compare run: no verdict at all; repetition 3's: a tenth of its copies.
        let compare: Vec<usize> = (0..runs.len())
            .filter(|&i| runs[i].scenario == Scenario::Compare)
            .collect();
        runs[compare[1]].comparisons.clear();
        let delivered = runs[compare[2]].copies_delivered();
        runs[compare[2]].comparisons = vec![
            ("match".into(), delivered / 10),
            ("not_compared".into(), delivered),
        ];
        let results = Results {
            runs: &runs,
            scenarios: &COMPARE_AND_MIRROR,
        };
        let why = format!(
            "rep 2: no pair compared; rep 3: {} pairs compared for {delivered} copies delivered",
            delivered / 10
        );
        assert_eq!(results.comparisons_missing(), Some(why.clone()));
        let checks = results.goal_checks(1000.0);
        for check in &checks[11..] {
            assert_eq!(
                check.verdict,
                Verdict::NotJudged(format!("the daemon did not compare ({why})")),
                "{}",
                check.goal
            );
            // Still measured, and shown.
            assert!(check.measured.is_some());
        }
        let noise = results.noise();
        assert!(noise.contains("rep 2: none (copies delivered"), "{noise}");
        assert!(
            noise.contains("**The daemon did not compare the copies' answers"),
            "{noise}"
        );
        // A goal that is not the comparison's keeps its verdict.
        assert_eq!(checks[0].verdict, Verdict::Met);
    }

    #[test]
    fn compare_table_sets_compare_beside_mirror_json_in_every_phase() {
        let runs = fixture::runs(&COMPARE_AND_MIRROR, 3, 0.5, measured);
        let results = Results {
            runs: &runs,
            scenarios: &COMPARE_AND_MIRROR,
        };
        assert_eq!(results.comparisons_missing(), None);
        let tables = results.tables(1000.0);
        let section = tables
            .split("### ")
            .find(|part| part.starts_with("Comparing answers"))
            .unwrap_or_else(|| panic!("no comparison table in\n{tables}"));
        let rows: Vec<&str> = section
            .lines()
            .filter(|line| line.starts_with("| ") && !line.starts_with("| phase"))
            .collect();
        assert_eq!(rows.len(), 4, "{rows:?}");
        // 0.05 and 0.06 CPU s per 1000 requests: 50 and 60 µs per request.
        assert_eq!(
            rows[0],
            "| fixed rate | keep-alive | 50.0 (50.0–50.0) | 60.0 (55.0–70.0) | ×1.20 (1.10–1.40) |"
        );
        assert_eq!(
            rows[2],
            "| saturation | keep-alive | 30.0 (30.0–30.0) | 40.0 (40.0–40.0) | ×1.33 (1.33–1.33) |"
        );
        // Every repetition compared its copies (1000 + 1000 + 280 + 280 delivered, and the
        // warm-up's), counted beside the table.
        assert!(
            section.contains("rep 1: match 2660 (copies delivered in the measured phases: 2560)"),
            "{section}"
        );
        assert!(!section.contains("did not compare"), "{section}");
        // No comparison table without compare.
        let mirror_only = fixture::runs(&[Scenario::Mirror], 1, 0.5, measured);
        let tables = Results {
            runs: &mirror_only,
            scenarios: &[Scenario::Mirror],
        }
        .tables(1000.0);
        assert!(!tables.contains("Comparing answers"), "{tables}");
    }
}
