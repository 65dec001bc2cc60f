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

pub mod budget;
pub mod copy;
pub mod rate;
pub mod rules;
pub mod sampling;

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::sync::mpsc;

use crate::{
    config,
    http::{BodyKind, Frame, FramingLimits, RequestFramer, RequestHead, TunnelReason},
    shadow::{self, BodyChunk, BodyFraming, ShadowRequest},
};

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
    tunnels: Family<[(&'static str, &'static str); 1], Counter>,
    shadow: shadow::ShadowMetrics,
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
            tunnels,
            shadow: shadow::ShadowMetrics::register(registry),
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
    limits: FramingLimits,
    budget: Arc<budget::Budget>,
    metrics: Arc<Metrics>,
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
            limits: FramingLimits {
                max_header_bytes: config.framing.max_header_bytes,
                max_headers: config.framing.max_headers,
            },
            budget,
            metrics: metrics.clone(),
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
}

/// A copy made during the current [`Tap::observe`] call, not yet handed to its target: if its
/// original ends in the same call, it goes complete, ready to be written together with others.
struct Starting {
    target: usize,
    head: bytes::Bytes,
    framing: BodyFraming,
    is_head: bool,
    body: Vec<bytes::Bytes>,
    sent: u64,
}

/// A copy handed to its target whose body is still streaming.
struct InFlight {
    target: usize,
    body: mpsc::Sender<BodyChunk>,
    sent: u64,
}

/// The per-connection observer of the client-to-primary stream.
pub struct Tap {
    /// Where the engine in force is published; checked at each request head.
    source: Arc<arc_swap::ArcSwapOption<Engine>>,
    orig_dst: SocketAddr,
    engine: Arc<Engine>,
    rules: Vec<usize>,
    framer: RequestFramer,
    frames: Vec<Frame>,
    starting: Vec<Starting>,
    copies: Vec<InFlight>,
    tunnelled: bool,
}

impl Tap {
    /// A tap for a connection to `orig_dst`, or `None` when no engine is in force or no rule can
    /// match the connection (it is then relayed without framing at all).
    pub fn new(
        source: &Arc<arc_swap::ArcSwapOption<Engine>>,
        orig_dst: SocketAddr,
    ) -> Option<Self> {
        let engine = source.load_full()?;
        let rules = engine.rules_for(orig_dst);
        if rules.is_empty() {
            return None;
        }
        Some(Self {
            source: source.clone(),
            orig_dst,
            framer: RequestFramer::new(engine.limits),
            engine,
            rules,
            frames: Vec::new(),
            starting: Vec::new(),
            copies: Vec::new(),
            tunnelled: false,
        })
    }

    /// Follows a reload: the next request uses the engine in force now (keeping its own framer).
    /// Returns false when mirroring is off now.
    fn refresh_engine(&mut self) -> bool {
        let current = self.source.load();
        match current.as_ref() {
            Some(engine) if Arc::ptr_eq(engine, &self.engine) => true,
            Some(engine) => {
                self.engine = engine.clone();
                self.rules = engine.rules_for(self.orig_dst);
                true
            }
            None => false,
        }
    }

    /// Describes `chunk`, which the caller has already forwarded to the primary. Never blocks.
    pub fn observe(&mut self, chunk: &[u8]) {
        if self.tunnelled {
            return;
        }
        let mut frames = std::mem::take(&mut self.frames);
        self.framer.feed(chunk, &mut frames);
        for frame in frames.drain(..) {
            match frame {
                Frame::Head(head) => self.start(&head),
                Frame::Body(range) => self.body(chunk.get(range).unwrap_or_default()),
                Frame::End => self.end(),
                Frame::Tunnel(reason) => self.tunnel(reason),
            }
        }
        self.frames = frames;
        // Originals still arriving: their copies go now, and their bodies follow as they come.
        self.submit_streaming();
    }

    fn start(&mut self, head: &RequestHead) {
        self.abandon_copies();
        if !self.refresh_engine() {
            return;
        }
        let engine = &*self.engine;
        engine.metrics.requests_framed.inc();
        let Some(rule) = self
            .rules
            .iter()
            .map(|&i| &engine.rules[i])
            .find(|rule| rule.matches_request(head))
        else {
            engine.metrics.requests_unmatched.inc();
            return;
        };
        // HTTP/1.1 requires a Host (RFC 9112 section 3.2): the primary refuses such a request with
        // 400, and its copy could not carry the shadow's Host.
        let no_host = head.version() == 1 && head.host().is_none_or(<[u8]>::is_empty);
        for &index in &rule.targets {
            let target = &engine.targets[index];
            if no_host {
                target.outcomes.no_host.inc();
                continue;
            }
            if !target.methods.is_empty() && !target.methods.iter().any(|m| m == head.method()) {
                target.outcomes.method_not_allowed.inc();
                continue;
            }
            if !sampling::sample(head, target.percent, target.sampling) {
                target.outcomes.sampled_out.inc();
                continue;
            }
            let framing = match head.body() {
                BodyKind::None => BodyFraming::None,
                BodyKind::ContentLength(n) if n > target.max_body_bytes => {
                    target.outcomes.body_over_cap.inc();
                    continue;
                }
                BodyKind::ContentLength(0) => BodyFraming::ContentLength(0),
                BodyKind::ContentLength(n) => BodyFraming::ContentLength(n),
                BodyKind::Chunked => BodyFraming::Chunked,
            };
            if target.rate.as_ref().is_some_and(|rate| !rate.allow()) {
                target.outcomes.rate_limited.inc();
                continue;
            }
            let Some(copy_head) = engine.budget.adopt(copy::build_head(head, &target.edits)) else {
                target.outcomes.queue_full.inc();
                continue;
            };
            self.starting.push(Starting {
                target: index,
                head: copy_head,
                framing,
                is_head: head.method() == "HEAD",
                body: Vec::new(),
                sent: 0,
            });
        }
    }

    fn body(&mut self, data: &[u8]) {
        if (self.copies.is_empty() && self.starting.is_empty()) || data.is_empty() {
            return;
        }
        let targets = &self.engine.targets;
        // One buffer, shared by every target's copy.
        let Some(data) = self.engine.budget.copy(data) else {
            for copy in self.starting.drain(..) {
                targets[copy.target].outcomes.body_backpressure.inc();
            }
            for copy in self.copies.drain(..) {
                targets[copy.target].outcomes.body_backpressure.inc();
            }
            return;
        };
        self.starting.retain_mut(|copy| {
            let target = &targets[copy.target];
            copy.sent += data.len() as u64;
            if copy.sent > target.max_body_bytes {
                target.outcomes.body_over_cap.inc();
                return false;
            }
            copy.body.push(data.clone());
            true
        });
        self.copies.retain_mut(|copy| {
            let target = &targets[copy.target];
            copy.sent += data.len() as u64;
            if copy.sent > target.max_body_bytes {
                // Dropping the sender without End aborts the copy on the wire.
                target.outcomes.body_over_cap.inc();
                return false;
            }
            // Keep one slot free so that End always fits.
            if copy.body.capacity() <= 1 {
                target.outcomes.body_backpressure.inc();
                return false;
            }
            if copy.body.try_send(BodyChunk::Data(data.clone())).is_err() {
                target.outcomes.abandoned.inc();
                return false;
            }
            true
        });
    }

    fn end(&mut self) {
        self.submit_complete();
        let targets = &self.engine.targets;
        for copy in self.copies.drain(..) {
            let outcomes = &targets[copy.target].outcomes;
            let outcome = match copy.body.try_send(BodyChunk::End) {
                Ok(()) => &outcomes.mirrored,
                Err(_) => &outcomes.abandoned,
            };
            outcome.inc();
        }
    }

    /// Hands the copies whose originals are complete to their targets, whole.
    fn submit_complete(&mut self) {
        for copy in std::mem::take(&mut self.starting) {
            let target = &self.engine.targets[copy.target];
            let request = ShadowRequest {
                head: copy.head,
                body: copy.framing,
                body_ready: copy.body,
                body_rx: None,
                is_head: copy.is_head,
            };
            match target.sender.try_submit(request) {
                Ok(()) => target.outcomes.mirrored.inc(),
                Err(shadow::Rejected::QueueFull) => target.outcomes.queue_full.inc(),
                // Only after shutdown: the connection is draining; the copy is not made.
                Err(shadow::Rejected::Closed) => target.outcomes.abandoned.inc(),
            };
        }
    }

    /// Hands the copies whose originals are still arriving to their targets, with what came of
    /// their bodies so far; the rest follows through a channel.
    fn submit_streaming(&mut self) {
        for copy in std::mem::take(&mut self.starting) {
            let target = &self.engine.targets[copy.target];
            let (tx, rx) = mpsc::channel(BODY_CHANNEL_SLOTS);
            let request = ShadowRequest {
                head: copy.head,
                body: copy.framing,
                body_ready: copy.body,
                body_rx: Some(rx),
                is_head: copy.is_head,
            };
            match target.sender.try_submit(request) {
                Ok(()) => self.copies.push(InFlight {
                    target: copy.target,
                    body: tx,
                    sent: copy.sent,
                }),
                Err(shadow::Rejected::QueueFull) => {
                    target.outcomes.queue_full.inc();
                }
                Err(shadow::Rejected::Closed) => {
                    target.outcomes.abandoned.inc();
                }
            }
        }
    }

    fn tunnel(&mut self, reason: TunnelReason) {
        self.tunnelled = true;
        self.abandon_copies();
        self.engine
            .metrics
            .tunnels
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    fn abandon_copies(&mut self) {
        for copy in self.starting.drain(..) {
            self.engine.targets[copy.target].outcomes.abandoned.inc();
        }
        for copy in self.copies.drain(..) {
            self.engine.targets[copy.target].outcomes.abandoned.inc();
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.abandon_copies();
    }
}
