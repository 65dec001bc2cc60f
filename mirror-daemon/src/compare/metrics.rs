//! Comparison metrics: verdicts per (rule, target) and both sides' answer latencies.
//!
//! Labels stay bounded: rule and target names come from the config, `verdict`, `reason` and
//! `side` are fixed sets; paths, fields and values never become labels (they are in the report).
//! Each [`super::Comparison`] resolves its handles once, so counting a pair is atomic adds.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use super::verdict::{NotCompared, Verdict};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    rule: String,
    target: String,
    verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    rule: String,
    target: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    rule: String,
    target: String,
    side: &'static str,
}

type LatencyFamily = Family<SideLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~13 s, doubling: primaries answer in well under a millisecond on a node.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The comparison families, registered once in the daemon's registry.
#[derive(Debug)]
pub struct Metrics {
    verdicts: Family<VerdictLabels, Counter>,
    not_compared: Family<ReasonLabels, Counter>,
    latency: LatencyFamily,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> std::sync::Arc<Self> {
        let metrics = Self {
            verdicts: Family::default(),
            not_compared: Family::default(),
            latency: LatencyFamily::new_with_constructor(latency_histogram),
        };
        registry.register(
            "mirror_comparisons",
            "Compared pairs of answers (primary, shadow) by rule, target and verdict (match, status_mismatch, body_mismatch, header_mismatch, shadow_error, not_compared)",
            metrics.verdicts.clone(),
        );
        registry.register(
            "mirror_comparisons_not_compared",
            "Pairs with verdict not_compared, by reason (over_cap, primary_cut_off, stopped, no_answer, undecodable)",
            metrics.not_compared.clone(),
        );
        registry.register(
            "mirror_answer_latency_seconds",
            "From the end of a compared request to the end of its answer, by side (primary, shadow)",
            metrics.latency.clone(),
        );
        std::sync::Arc::new(metrics)
    }

    /// The handles of one (rule, target); every label set exists from now on, at zero.
    pub(super) fn comparison(&self, rule: &str, target: &str) -> ComparisonMetrics {
        ComparisonMetrics {
            verdicts: Verdict::LABELS.map(|verdict| {
                self.verdicts
                    .get_or_create(&VerdictLabels {
                        rule: rule.to_string(),
                        target: target.to_string(),
                        verdict,
                    })
                    .clone()
            }),
            not_compared: NotCompared::ALL.map(|reason| {
                self.not_compared
                    .get_or_create(&ReasonLabels {
                        rule: rule.to_string(),
                        target: target.to_string(),
                        reason: reason.as_str(),
                    })
                    .clone()
            }),
            latency: SIDES.map(|side| {
                self.latency
                    .get_or_create(&SideLabels {
                        rule: rule.to_string(),
                        target: target.to_string(),
                        side,
                    })
                    .clone()
            }),
        }
    }

    /// Forgets the label sets of a (rule, target) no longer compared.
    pub(super) fn remove(&self, rule: &str, target: &str) {
        for verdict in Verdict::LABELS {
            self.verdicts.remove(&VerdictLabels {
                rule: rule.to_string(),
                target: target.to_string(),
                verdict,
            });
        }
        for reason in NotCompared::ALL {
            self.not_compared.remove(&ReasonLabels {
                rule: rule.to_string(),
                target: target.to_string(),
                reason: reason.as_str(),
            });
        }
        for side in SIDES {
            self.latency.remove(&SideLabels {
                rule: rule.to_string(),
                target: target.to_string(),
                side,
            });
        }
    }
}

const SIDES: [&str; 2] = ["primary", "shadow"];

/// One (rule, target)'s handles.
#[derive(Debug)]
pub(super) struct ComparisonMetrics {
    verdicts: [Counter; 6],
    not_compared: [Counter; NotCompared::ALL.len()],
    /// Primary, shadow.
    latency: [Histogram; 2],
}

impl ComparisonMetrics {
    pub fn count(&self, verdict: Verdict) {
        self.verdicts[verdict.index()].inc();
        if let Verdict::NotCompared(reason) = verdict {
            self.not_compared[reason.index()].inc();
        }
    }

    pub fn primary_latency(&self, latency: std::time::Duration) {
        self.latency[0].observe(latency.as_secs_f64());
    }

    pub fn shadow_latency(&self, latency: std::time::Duration) {
        self.latency[1].observe(latency.as_secs_f64());
    }
}
