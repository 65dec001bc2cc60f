//! Results across repetitions: medians with their spread (min–max over repetitions), ratios to
//! direct taken within each repetition (the scenarios of one repetition ran back to back), the
//! goals checked, and the markdown that is printed and written.

use std::fmt::Write as _;

use super::load::Mode;
use super::scenario::{Kind, Run, Scenario};

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

    /// A phase quantity over the repetitions.
    pub fn spread(
        &self,
        scenario: Scenario,
        kind: Kind,
        mode: Mode,
        value: impl Fn(&super::scenario::Phase) -> f64,
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
        value: impl Fn(&super::scenario::Phase) -> f64,
        compare: impl Fn(f64, f64) -> f64,
    ) -> Option<Spread> {
        Spread::of(self.runs_of(scenario).filter_map(|(rep, run)| {
            let this = run.phase(kind, mode).map(&value)?;
            let other = self.run_in(base, rep)?.phase(kind, mode).map(&value)?;
            Some(compare(this, other))
        }))
    }

    /// `scenario`'s value over `base`'s, paired within each repetition.
    pub fn ratio(
        &self,
        scenario: Scenario,
        base: Scenario,
        kind: Kind,
        mode: Mode,
        value: impl Fn(&super::scenario::Phase) -> f64,
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

    /// The markdown tables.
    pub fn tables(&self, rate: f64) -> String {
        let mut out = String::new();
        let has_direct = self.has(Scenario::Direct);
        let _ = writeln!(
            out,
            "### Latency at a fixed {rate:.0} requests/s (open loop, from the intended send time)\n"
        );
        out.push_str(
            "| scenario | mode | p50 µs | p90 µs | p99 µs | max µs | p99 vs direct | CPU s / 1000 req | context switches / req | RSS MiB | copies delivered / dropped |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for &scenario in self.scenarios {
            for mode in Mode::ALL {
                let p = |f: fn(&super::scenario::Phase) -> f64| {
                    self.spread(scenario, Kind::Rate, mode, f)
                };
                let vs_direct = if has_direct && scenario != Scenario::Direct {
                    let diff = self.paired(
                        scenario,
                        Scenario::Direct,
                        Kind::Rate,
                        mode,
                        |ph| ph.load.p99,
                        |a, b| a - b,
                    );
                    let ratio = self.ratio(scenario, Scenario::Direct, Kind::Rate, mode, |ph| {
                        ph.load.p99
                    });
                    format!("{} µs, ×{}", signed(diff), show(ratio, 2))
                } else {
                    "–".into()
                };
                let (cpu, switches) = self.proxy_cost(scenario, Kind::Rate, mode);
                let rss = self.run_spread(scenario, |run| {
                    run.rss_at_rate.map(|b| b as f64 / 1048576.0)
                });
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    scenario.key(),
                    mode.label(),
                    show(p(|ph| ph.load.p50), 0),
                    show(p(|ph| ph.load.p90), 0),
                    show(p(|ph| ph.load.p99), 0),
                    show(p(|ph| ph.load.max), 0),
                    vs_direct,
                    cpu,
                    switches,
                    show(rss, 1),
                    copies(self, scenario, Kind::Rate, mode),
                );
            }
        }
        out.push_str("\n### Throughput at saturation (wrk, closed loop)\n\n");
        out.push_str(
            "| scenario | mode | requests/s | vs direct | p50 µs | p99 µs | max µs | CPU s / 1000 req | context switches / req | bed CPU µs / req | RSS MiB | copies delivered / dropped |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for &scenario in self.scenarios {
            for mode in Mode::ALL {
                let p = |f: fn(&super::scenario::Phase) -> f64| {
                    self.spread(scenario, Kind::Saturation, mode, f)
                };
                let vs_direct = if has_direct && scenario != Scenario::Direct {
                    format!(
                        "×{}",
                        show(
                            self.ratio(scenario, Scenario::Direct, Kind::Saturation, mode, |ph| ph
                                .load
                                .rps()),
                            2
                        )
                    )
                } else {
                    "–".into()
                };
                let (cpu, switches) = self.proxy_cost(scenario, Kind::Saturation, mode);
                let rss = self.run_spread(scenario, |run| {
                    run.rss_at_saturation.map(|b| b as f64 / 1048576.0)
                });
                let machine = p(|ph| ph.bed_cpu * 1e6 / ph.load.completed.max(1) as f64);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    scenario.key(),
                    mode.label(),
                    show(p(|ph| ph.load.rps()), 0),
                    vs_direct,
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
        out.push_str(
            "\n### Where the CPU goes at saturation (CPU µs per request, keep-alive)\n\n\
             The two cores are the bed's limit, so throughput follows the total. \"free proxy\" is \
             the throughput the bed would reach, relative to direct, if the proxy cost nothing: \
             direct's total over this scenario's total without the proxy.\n\n\
             | scenario | load generator | primary | healthy shadow | proxy | total | free proxy vs direct |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for &scenario in self.scenarios {
            let ka = Mode::KeepAlive;
            let per_request = |cpu: fn(&super::scenario::Phase) -> f64| {
                self.spread(scenario, Kind::Saturation, ka, move |ph| {
                    cpu(ph) * 1e6 / ph.load.completed.max(1) as f64
                })
            };
            let client =
                per_request(|ph| ph.bed_cpu - ph.primary_cpu - ph.shadow_cpu - ph.proxy_cpu);
            let free_proxy = if has_direct {
                show(self.free_proxy_ceiling(scenario, ka), 2)
            } else {
                "–".into()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | ×{} |",
                scenario.key(),
                show(client, 0),
                show(per_request(|ph| ph.primary_cpu), 0),
                show(per_request(|ph| ph.shadow_cpu), 0),
                show(per_request(|ph| ph.proxy_cpu), 0),
                show(per_request(|ph| ph.bed_cpu), 0),
                free_proxy,
            );
        }
        out
    }

    /// The proxy's CPU seconds per 1000 requests and context switches per request, shown ("–"
    /// for direct, which has no proxy).
    fn proxy_cost(&self, scenario: Scenario, kind: Kind, mode: Mode) -> (String, String) {
        if scenario == Scenario::Direct {
            return ("–".into(), "–".into());
        }
        (
            show(self.spread(scenario, kind, mode, cpu_per_thousand), 3),
            show(self.spread(scenario, kind, mode, switches_per_request), 2),
        )
    }

    /// Throughput relative to direct that `scenario` would reach at saturation if its proxy
    /// cost nothing: on a CPU-bound bed, direct's CPU per request over the scenario's without
    /// the proxy's share (paired within each repetition).
    fn free_proxy_ceiling(&self, scenario: Scenario, mode: Mode) -> Option<Spread> {
        self.paired(
            scenario,
            Scenario::Direct,
            Kind::Saturation,
            mode,
            |ph| (ph.bed_cpu - ph.proxy_cpu) / ph.load.completed.max(1) as f64,
            |this, direct| direct / this,
        )
    }

    /// The goals of the issue, each with its numbers and a verdict.
    /// Why latencies cannot be judged on this run, if they cannot: other load on the machine, or a
    /// client that could not keep its own schedule.
    pub fn noisy(&self) -> Option<String> {
        let load = Spread::of(self.runs.iter().map(|r| r.loadavg))?;
        let lag = Spread::of(
            self.runs
                .iter()
                .flat_map(|r| r.phases.iter())
                .filter(|p| p.kind == Kind::Rate)
                .map(|p| p.load.send_lag_p99),
        );
        if load.median > 1.5 {
            return Some(format!(
                "median load average {:.1} before the runs",
                load.median
            ));
        }
        match lag {
            Some(lag) if lag.median > 200.0 => Some(format!(
                "the client sent late by {:.0} µs at p99 (median)",
                lag.median
            )),
            _ => None,
        }
    }

    pub fn goals(&self) -> String {
        let mut out = String::from("### Goals\n\n| goal | measured (median, range over repetitions) | met |\n|---|---|---|\n");
        let noisy = self.noisy();
        let latency_verdict = |ok: Option<bool>| match (&noisy, ok) {
            (Some(_), Some(_)) => "not judged: noisy machine",
            (_, Some(true)) => "yes",
            (_, Some(false)) => "**no**",
            (_, None) => "not measured",
        };
        let ka = Mode::KeepAlive;
        let verdict = |ok: Option<bool>| match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        // 1. p99 within 100 us of direct at the fixed rate, keep-alive, 100 % mirrored.
        let added = self.paired(
            Scenario::Mirror,
            Scenario::Direct,
            Kind::Rate,
            ka,
            |p| p.load.p99,
            |a, b| a - b,
        );
        let _ = writeln!(
            out,
            "| p99 added at the fixed rate, keep-alive, 100 % mirrored ≤ 100 µs | {} µs | {} |",
            signed(added),
            latency_verdict(added.map(|s| s.median <= 100.0))
        );
        // 2. Throughput at saturation with mirroring >= 70 % of direct, and ahead of nginx.
        for mode in Mode::ALL {
            let ratio = self.ratio(
                Scenario::Mirror,
                Scenario::Direct,
                Kind::Saturation,
                mode,
                |p| p.load.rps(),
            );
            let _ = writeln!(
                out,
                "| saturation throughput, 100 % mirrored, {} ≥ 0.70 × direct (with a proxy that cost nothing, this bed would reach ×{}: the shadow serves on the same two cores) | ×{} | {} |",
                mode.label(),
                show(self.free_proxy_ceiling(Scenario::Mirror, mode), 2),
                show(ratio, 2),
                verdict(ratio.map(|s| s.median >= 0.70))
            );
            let vs_nginx = self.ratio(
                Scenario::Mirror,
                Scenario::NginxMirror,
                Kind::Saturation,
                mode,
                |p| p.load.rps(),
            );
            let _ = writeln!(
                out,
                "| saturation throughput, 100 % mirrored, {} ahead of nginx `mirror` | ×{} of nginx | {} |",
                mode.label(),
                show(vs_nginx, 2),
                verdict(vs_nginx.map(|s| s.median > 1.0))
            );
        }
        // 3. Slow or blackholed shadow: p99 within 10 % of the healthy run.
        for (scenario, twin) in [
            (Scenario::Degraded, Scenario::Mirror),
            (Scenario::NginxDegraded, Scenario::NginxMirror),
        ] {
            let ratio = self.ratio(scenario, twin, Kind::Rate, ka, |p| p.load.p99);
            let label = if scenario.is_nginx() {
                "nginx (beside): slow + blackholed shadow, p99 vs its healthy run"
            } else {
                "slow + blackholed shadow: primary p99 ≤ 1.10 × healthy-shadow run"
            };
            let _ = writeln!(
                out,
                "| {label} (fixed rate, keep-alive) | ×{} | {} |",
                show(ratio, 2),
                if scenario.is_nginx() {
                    "(reference)"
                } else {
                    latency_verdict(ratio.map(|s| s.median <= 1.10))
                }
            );
        }
        // 4. CPU and RSS.
        let cpu = self.spread(Scenario::Mirror, Kind::Rate, ka, |p| {
            p.proxy_cpu / p.load.completed.max(1) as f64 * 1000.0
        });
        let _ = writeln!(
            out,
            "| CPU ≤ 0.05 cores per 1000 mirrored requests/s (= CPU s per 1000 requests) | {} | {} |",
            show(cpu, 3),
            verdict(cpu.map(|s| s.median <= 0.05))
        );
        let rss = self.run_spread(Scenario::Mirror, |run| {
            run.rss_at_rate.map(|b| b as f64 / 1048576.0)
        });
        let hwm = self.run_spread(Scenario::Mirror, |run| {
            run.peak_rss.map(|b| b as f64 / 1048576.0)
        });
        let _ = writeln!(
            out,
            "| RSS at the fixed rate, 100 % mirrored ≤ 30 MiB (VmHWM over the whole life, start-up included: {} MiB) | {} MiB | {} |",
            show(hwm, 1),
            show(rss, 1),
            verdict(rss.map(|s| s.median <= 30.0))
        );
        if let Some(why) = noisy {
            let _ = writeln!(
                out,
                "\nLatency goals are not judged on this run ({why}): run again on a quiet machine \
                 (`--wait-quiet 600`)."
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
        let lag = Spread::of(
            self.runs
                .iter()
                .flat_map(|r| r.phases.iter())
                .filter(|p| p.kind == Kind::Rate)
                .map(|p| p.load.send_lag_p99),
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
            "- 1-minute load average before each run: {} (a quiet machine reads < 1 before a run)",
            show(load, 2)
        );
        let _ = writeln!(
            out,
            "- machine CPU busy during the fixed-rate phases, all processes: {} % of 2 cores",
            show(busy, 0)
        );
        let _ = writeln!(
            out,
            "- the fixed-rate client's own lateness (p99 of actual − intended send time): {} µs",
            show(lag, 0)
        );
        let _ = writeln!(
            out,
            "- client errors over all phases: {errors}; fixed-rate requests never sent in time (counted with their wait): {missed}"
        );
        let hwm: Vec<String> = self
            .scenarios
            .iter()
            .filter_map(|&scenario| {
                let spread =
                    self.run_spread(scenario, |run| run.peak_rss.map(|b| b as f64 / 1048576.0))?;
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
        let mut drops = Vec::new();
        for run in self.runs {
            if !run.daemon_drops.is_empty() {
                let list: Vec<String> = run
                    .daemon_drops
                    .iter()
                    .map(|(outcome, n)| format!("{outcome} {n}"))
                    .collect();
                drops.push(format!("{}: {}", run.scenario.key(), list.join(", ")));
            }
        }
        if !drops.is_empty() {
            drops.dedup();
            let _ = writeln!(
                out,
                "- copies the daemon itself did not make, by outcome, per run: {}",
                drops.join("; ")
            );
        }
        out
    }
}

fn cpu_per_thousand(phase: &super::scenario::Phase) -> f64 {
    phase.proxy_cpu / phase.load.completed.max(1) as f64 * 1000.0
}

fn switches_per_request(phase: &super::scenario::Phase) -> f64 {
    phase.proxy_switches as f64 / phase.load.completed.max(1) as f64
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
    use super::*;

    #[test]
    fn spread_takes_the_median_and_range() {
        let s = Spread::of([3.0, 1.0, 2.0, f64::NAN]).expect("values");
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(s.show(0), "2 (1–3)");
        let even = Spread::of([1.0, 2.0, 3.0, 4.0]).expect("values");
        assert_eq!(even.median, 2.5);
        assert!(Spread::of([]).is_none());
    }
}
