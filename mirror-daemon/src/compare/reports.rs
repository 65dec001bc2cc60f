//! Every comparison the daemon runs, by (rule, target): made from the config, kept across
//! reloads that do not change them, and read by `/comparisons`.
//!
//! The registry is touched only at (re)configuration and when the report is read; the hot path
//! holds its [`Comparison`]s directly.

use std::sync::{Arc, Mutex, PoisonError};

use super::{comparison::Comparison, metrics::Metrics, report::Report, settings::Settings};
use crate::config;

/// The registry of comparisons, shared by the engine (which records pairs) and the admin
/// endpoint (which reports them).
#[derive(Debug)]
pub struct Reports {
    metrics: Arc<Metrics>,
    comparisons: Mutex<Vec<Arc<Comparison>>>,
}

/// A rule's comparisons: one per target, in the order of the rule's `targets`.
#[derive(Debug, Clone)]
pub struct RuleComparisons {
    settings: Settings,
    targets: Vec<Arc<Comparison>>,
}

impl RuleComparisons {
    /// Whether to compare the answers to this request: one draw per request, so that every
    /// target of the rule compares the same requests (the primary's answer is captured once).
    pub fn sample(&self) -> bool {
        self.settings.sample()
    }

    /// Bytes of each side's body to keep for comparing (`max_body_bytes`).
    pub fn max_body_bytes(&self) -> usize {
        self.settings.max_body_bytes
    }

    /// Whether the comparison reads header `name` of the answers.
    pub fn keeps_header(&self, name: &str) -> bool {
        self.settings.keeps_header(name)
    }

    /// The comparison of the rule's `index`-th target.
    pub fn target(&self, index: usize) -> Option<&Arc<Comparison>> {
        self.targets.get(index)
    }

    pub fn targets(&self) -> &[Arc<Comparison>] {
        &self.targets
    }
}

impl Reports {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            comparisons: Mutex::new(Vec::new()),
        })
    }

    /// Applies a (re)loaded `[mirror]` config: for each rule, its comparisons (`None` without a
    /// `[compare]` section), indexed like `mirror.rules`. A (rule, target) whose settings did not
    /// change keeps its comparison, counts and window; one whose settings changed starts afresh;
    /// one no longer configured is dropped from the report and the metrics.
    pub fn configure(&self, mirror: &config::Mirror) -> Vec<Option<RuleComparisons>> {
        let mut comparisons = self
            .comparisons
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::take(&mut *comparisons);
        let rules: Vec<Option<RuleComparisons>> = mirror
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let compare = rule.compare.as_ref()?;
                let name = rule.effective_name(index);
                let targets = rule
                    .targets
                    .iter()
                    .map(|target| {
                        let remove_headers = mirror
                            .targets
                            .iter()
                            .find(|t| &t.name == target)
                            .map_or(&[][..], |t| &t.remove_headers[..]);
                        let settings = Settings::new(compare, remove_headers);
                        // A target named twice in a rule shares one comparison.
                        let kept = comparisons.iter().chain(&previous).find(|c| {
                            c.rule() == name && c.target() == target && *c.settings() == settings
                        });
                        let comparison = match kept.cloned() {
                            Some(kept) => kept,
                            None => Arc::new(Comparison::new(
                                &name,
                                target,
                                settings,
                                self.metrics.comparison(&name, target),
                            )),
                        };
                        if !comparisons.iter().any(|c| Arc::ptr_eq(c, &comparison)) {
                            comparisons.push(comparison.clone());
                        }
                        comparison
                    })
                    .collect();
                Some(RuleComparisons {
                    settings: Settings::new(compare, &[]),
                    targets,
                })
            })
            .collect();
        for old in &previous {
            let still_labelled = comparisons
                .iter()
                .any(|c| c.rule() == old.rule() && c.target() == old.target());
            if !still_labelled {
                self.metrics.remove(old.rule(), old.target());
            }
        }
        rules
    }

    /// The report of every comparison, in config order.
    pub fn report(&self) -> Report {
        let comparisons = self
            .comparisons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Report {
            comparisons: comparisons.iter().map(|c| c.report()).collect(),
        }
    }
}
