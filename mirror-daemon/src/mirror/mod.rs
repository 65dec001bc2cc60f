//! The mirror engine: decides, request by request, which copies to make and hands them to the
//! shadow targets, without ever making the primary path wait.
//!
//! Each intercepted connection whose destination some rule may match gets a [`Tap`]. The relay
//! calls [`Tap::observe`] with every chunk right after forwarding it to the primary; the tap frames
//! it ([`crate::http`]), and for each request head picks the first matching rule, samples each of
//! its targets, builds the copy's head ([`copy`]) and hands the copy to the target's sender
//! ([`crate::shadow`]). Body bytes follow the copy as they arrive, up to the target's cap. Every
//! call into the shadow side is a non-blocking `try_send`; when it would wait, the copy is dropped
//! and counted instead.
//!
//! Each (request, target) pair ends in exactly one outcome, counted in
//! `mirror_copies_total{target, outcome}`: `mirrored`, `sampled_out`, `method_not_allowed`,
//! `no_host` (an HTTP/1.1 request without a Host, or with an empty one, is never copied),
//! `rate_limited` (over the target's `max_copies_per_second`, [`rate`]), `body_over_cap`, `queue_full` (the target's queue, or the daemon's buffer budget, is full),
//! `body_backpressure` (the target fell behind mid-body, or the budget ran out) or `abandoned`
//! (the request never completed: tunnel, connection end, or the sender gave up).
//!
//! Memory: copies are charged to one budget, `mirror.max_buffered_bytes` ([`budget`]).

mod answers;
pub mod budget;
pub mod copy;
mod h2answers;
mod http1;
mod http2;
pub mod rate;
pub mod request;
pub mod rules;
pub mod sampling;
mod tap;

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

pub use tap::{Protocol, Tap};

use crate::{compare, config, shadow};
use request::RequestView;

/// Body chunks a copy may have queued towards its sender. Memory is bounded in bytes elsewhere
/// (each copy by its target's `max_body_bytes`, all copies by the budget); this only keeps a body
/// dribbled in tiny reads from queueing without end. It must not be what cuts off a body under the
/// cap: reads under load can be a single segment (~1.4 KiB), and 1 MiB is ~750 of those. Slots
/// are allocated as used, so the bound costs nothing by itself.
const BODY_CHANNEL_SLOTS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mirror rule {rule}: {source}")]
    Rule { rule: usize, source: regex::Error },
    #[error("shadow target {name}: {message}")]
    Target { name: String, message: String },
}

/// A target as the engine sees it: its policy, its counters and its sender.
struct Target {
    sender: Arc<shadow::Target>,
    percent: f64,
    sampling: config::Sampling,
    methods: Vec<String>,
    max_body_bytes: u64,
    rate: Option<rate::RateLimit>,
    edits: copy::Edits,
    outcomes: Outcomes,
}

/// One counter per outcome, resolved once so the hot path is a plain atomic add.
struct Outcomes {
    mirrored: Counter,
    sampled_out: Counter,
    method_not_allowed: Counter,
    body_over_cap: Counter,
    queue_full: Counter,
    body_backpressure: Counter,
    abandoned: Counter,
    no_host: Counter,
    rate_limited: Counter,
}

/// The engine's metrics, registered once and shared by the engines successive reloads build.
pub struct Metrics {
    copies: Family<Vec<(&'static str, String)>, Counter>,
    requests_framed: Counter,
    requests_unmatched: Counter,
    requests_skipped: Family<[(&'static str, &'static str); 1], Counter>,
    tunnels: Family<[(&'static str, &'static str); 1], Counter>,
    shadow: shadow::ShadowMetrics,
    /// The comparisons of shadows' answers with the primary's, kept across reloads (and
    /// reported on `/comparisons`).
    pub comparisons: Arc<compare::Reports>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let copies = Family::default();
        registry.register(
            "mirror_copies",
            "Request copies by target and outcome (mirrored, sampled_out, method_not_allowed, no_host, rate_limited, body_over_cap, queue_full, body_backpressure, abandoned)",
            copies.clone(),
        );
        let requests_framed = Counter::default();
        registry.register(
            "mirror_requests_framed",
            "HTTP/1.1 requests framed on intercepted connections",
            requests_framed.clone(),
        );
        let requests_unmatched = Counter::default();
        registry.register(
            "mirror_requests_unmatched",
            "Framed requests that matched no mirror rule (forwarded only)",
            requests_unmatched.clone(),
        );
        let requests_skipped = Family::default();
        registry.register(
            "mirror_requests_skipped",
            "HTTP/2 streams not copied because their request is malformed or a CONNECT (the connection goes on being mirrored), by reason",
            requests_skipped.clone(),
        );
        let tunnels = Family::default();
        registry.register(
            "mirror_tunnelled_connections",
            "Connections relayed as opaque tunnels (not mirrored from then on), by reason",
            tunnels.clone(),
        );
        Arc::new(Self {
            copies,
            requests_framed,
            requests_unmatched,
            requests_skipped,
            tunnels,
            shadow: shadow::ShadowMetrics::register(registry),
            comparisons: compare::Reports::new(compare::Metrics::register(registry)),
        })
    }

    fn outcomes(&self, target: &str) -> Outcomes {
        let outcome = |outcome: &'static str| {
            self.copies
                .get_or_create(&vec![
                    ("target", target.to_string()),
                    ("outcome", outcome.into()),
                ])
                .clone()
        };
        Outcomes {
            mirrored: outcome("mirrored"),
            sampled_out: outcome("sampled_out"),
            method_not_allowed: outcome("method_not_allowed"),
            body_over_cap: outcome("body_over_cap"),
            queue_full: outcome("queue_full"),
            body_backpressure: outcome("body_backpressure"),
            abandoned: outcome("abandoned"),
            no_host: outcome("no_host"),
            rate_limited: outcome("rate_limited"),
        }
    }
}

/// Rules, targets and counters, shared by every connection.
pub struct Engine {
    rules: Vec<rules::Rule>,
    targets: Vec<Target>,
    /// The configuration each target's sender was started with, to reuse it on reload.
    target_configs: Vec<config::Target>,
    budget: Arc<budget::Budget>,
    metrics: Arc<Metrics>,
    /// Per rule (indexed like `rules`), its comparisons, if it compares answers.
    comparisons: Vec<Option<compare::RuleComparisons>>,
}

impl Engine {
    /// Compiles the rules and starts one sender per target. With `previous` (a reload), targets
    /// whose configuration did not change keep their sender: its queue and its connections.
    pub fn new(
        config: &config::Mirror,
        metrics: &Arc<Metrics>,
        previous: Option<&Engine>,
        workers: &[tokio::runtime::Handle],
    ) -> Result<Self, Error> {
        let mut targets = Vec::with_capacity(config.targets.len());
        for target in &config.targets {
            let reused = previous.and_then(|engine| {
                engine
                    .target_configs
                    .iter()
                    .position(|old| old.delivers_like(target))
                    .map(|i| engine.targets[i].sender.clone())
            });
            let sender = match reused {
                Some(sender) => sender,
                None => shadow::Target::spawn_on_workers(target.clone(), &metrics.shadow, workers)
                    .map_err(|e| Error::Target {
                        name: target.name.clone(),
                        message: e.to_string(),
                    })?,
            };
            targets.push(Target {
                sender,
                percent: target.percent,
                sampling: target.sampling,
                methods: target.methods.clone(),
                max_body_bytes: target.max_body_bytes,
                rate: target
                    .max_copies_per_second
                    .map(|per_second| rate::RateLimit::new(per_second, target.burst)),
                edits: copy::Edits::from_config(target),
                outcomes: metrics.outcomes(&target.name),
            });
        }
        let index_of = |name: &str| config.targets.iter().position(|t| t.name == name);
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                rules::Rule::compile(i, rule, index_of)
                    .map_err(|source| Error::Rule { rule: i, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let budget = match previous {
            Some(engine) if engine.budget.limit() == config.max_buffered_bytes => {
                engine.budget.clone()
            }
            _ => budget::Budget::new(config.max_buffered_bytes),
        };
        Ok(Self {
            rules,
            targets,
            target_configs: config.targets.clone(),
            budget,
            metrics: metrics.clone(),
            comparisons: metrics.comparisons.configure(config),
        })
    }

    /// Stops the senders that `next` does not use any more (all of them for `None`).
    pub async fn retire(&self, next: Option<&Engine>, deadline: std::time::Duration) {
        let retired = self.targets.iter().filter(|old| {
            !next.is_some_and(|next| {
                next.targets
                    .iter()
                    .any(|new| Arc::ptr_eq(&new.sender, &old.sender))
            })
        });
        futures::future::join_all(retired.map(|t| t.sender.shutdown(deadline))).await;
    }

    /// The rules that can match requests on a connection to `orig_dst`.
    fn rules_for(&self, orig_dst: SocketAddr) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&i| self.rules[i].may_match_connection(orig_dst))
            .collect()
    }

    /// Stops every sender; copies in flight get up to `deadline`.
    pub async fn shutdown(&self, deadline: std::time::Duration) {
        self.retire(None, deadline).await;
    }

    /// The targets that get a copy of `request`, under the first of `rules` that matches it
    /// (its index; `None` when none does), counting every other (request, target) outcome:
    /// `no_host`, `method_not_allowed`, `sampled_out`, `body_over_cap` (by the declared length)
    /// and `rate_limited`.
    fn choose_under_rule(
        &self,
        rules: &[usize],
        request: &impl RequestView,
        no_host: bool,
        declared_length: Option<u64>,
    ) -> Option<(usize, Vec<usize>)> {
        self.metrics.requests_framed.inc();
        let Some(rule_index) = rules
            .iter()
            .copied()
            .find(|&i| self.rules[i].matches_request(request))
        else {
            self.metrics.requests_unmatched.inc();
            return None;
        };
        let rule = &self.rules[rule_index];
        let mut chosen = Vec::with_capacity(rule.targets.len());
        for &index in &rule.targets {
            let target = &self.targets[index];
            let outcomes = &target.outcomes;
            if no_host {
                outcomes.no_host.inc();
            } else if !target.methods.is_empty()
                && !target.methods.iter().any(|m| m == request.method())
            {
                outcomes.method_not_allowed.inc();
            } else if !sampling::sample(request, target.percent, target.sampling) {
                outcomes.sampled_out.inc();
            } else if declared_length.is_some_and(|length| length > target.max_body_bytes) {
                outcomes.body_over_cap.inc();
            } else if target.rate.as_ref().is_some_and(|rate| !rate.allow()) {
                outcomes.rate_limited.inc();
            } else {
                chosen.push(index);
            }
        }
        Some((rule_index, chosen))
    }

    /// The comparisons of rule `rule`, if it compares answers.
    fn comparisons(&self, rule: usize) -> Option<&compare::RuleComparisons> {
        self.comparisons.get(rule)?.as_ref()
    }

    /// Whether any of `rules` compares answers: only then is the primary's side of an HTTP/2
    /// connection decoded to its answers, which costs a second HPACK table and the work of
    /// decoding every response head.
    fn compares_any(&self, rules: &[usize]) -> bool {
        rules.iter().any(|&rule| self.comparisons(rule).is_some())
    }

    /// For a request chosen under rule `rule` for the targets `chosen` (indices of
    /// `self.targets`): when it is compared, the pair each chosen target's copy completes, in
    /// `chosen`'s order; empty when it is not. One draw per request, so that every target
    /// compares the same requests and the primary's answer is captured once.
    fn pairs(
        &self,
        rule: usize,
        chosen: &[usize],
        request: impl FnOnce() -> compare::RequestLine,
    ) -> Vec<Option<Arc<compare::Pair>>> {
        let Some(comparisons) = self
            .comparisons(rule)
            .filter(|comparisons| !chosen.is_empty() && comparisons.sample())
        else {
            return Vec::new();
        };
        let request = request();
        chosen
            .iter()
            .map(|&index| {
                let position = self.rules[rule].targets.iter().position(|&t| t == index)?;
                let comparison = comparisons.target(position)?.clone();
                Some(compare::Pair::new(comparison, request.clone()))
            })
            .collect()
    }
}
