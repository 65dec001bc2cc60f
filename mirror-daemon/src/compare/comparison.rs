//! One (rule, target)'s comparison: judging each pair, the noise window, the counts, latencies
//! and last mismatches the report shows, the metrics and the rate-limited log.
//!
//! Worker threads record pairs concurrently; the state sits behind one mutex per (rule, target),
//! held for O(differing fields) work: the pair is judged (decoding, parsing, walking) before the
//! lock is taken, and the log line is written after it is released.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use super::{
    answer::{Answer, Primary, RequestLine, Shadow},
    differences::{Differences, MAX_SHAPES},
    judge::{judge, Judgement},
    latency::Histogram,
    log::Limiter,
    metrics::ComparisonMetrics,
    noise::{FieldId, Noise, OTHER},
    report::{
        ComparisonReport, FieldDifference, FieldReport, Latency, Mismatch, NoiseSettings,
        Percentiles, SideLatency, VerdictCounts, MAX_MISMATCH_FIELDS,
    },
    settings::Settings,
    verdict::{NotCompared, Verdict},
};

/// Compares the answers of one rule's copies to one target with the primary's.
#[derive(Debug)]
pub struct Comparison {
    rule: String,
    target: String,
    settings: Settings,
    state: Mutex<State>,
    metrics: ComparisonMetrics,
}

struct State {
    verdicts: [u64; 6],
    not_compared: [u64; NotCompared::ALL.len()],
    /// By kind; kinds are the sender's fixed names, so this stays short.
    shadow_errors: Vec<(&'static str, u64)>,
    matched_apart_from_noise: u64,
    noise: Noise,
    /// Primary to head, primary to end, shadow to head, shadow to end.
    latency: [Histogram; 4],
    mismatches: VecDeque<Mismatch>,
    log: Limiter,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("verdicts", &self.verdicts)
            .finish_non_exhaustive()
    }
}

/// What the verdict was drawn from, for the mismatch record and the log.
struct Decided<'j, 'a> {
    verdict: Verdict,
    differences: Option<&'j Differences<'a>>,
    /// Bit i: `differences.list[i]` made the verdict (is not noise left out).
    deciding: u64,
    noisy_left_out: u32,
}

impl Comparison {
    pub(super) fn new(
        rule: &str,
        target: &str,
        settings: Settings,
        metrics: ComparisonMetrics,
    ) -> Self {
        Self {
            rule: rule.to_string(),
            target: target.to_string(),
            state: Mutex::new(State {
                verdicts: [0; 6],
                not_compared: [0; NotCompared::ALL.len()],
                shadow_errors: Vec::new(),
                matched_apart_from_noise: 0,
                noise: Noise::new(&settings.noise),
                latency: Default::default(),
                mismatches: VecDeque::new(),
                log: Limiter::default(),
            }),
            settings,
            metrics,
        }
    }

    pub fn rule(&self) -> &str {
        &self.rule
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Judges one pair, counts it (report, metrics, noise window), logs it when it is a
    /// mismatch (rate-limited), and returns its verdict.
    pub fn record(&self, request: &RequestLine, primary: &Primary, shadow: &Shadow) -> Verdict {
        self.record_at(request, primary, shadow, Instant::now())
    }

    /// [`Self::record`] with the log's rate limit reading `now`, so tests need no wall clock.
    pub(crate) fn record_at(
        &self,
        request: &RequestLine,
        primary: &Primary,
        shadow: &Shadow,
        now: Instant,
    ) -> Verdict {
        judge(&self.settings, primary, shadow, |judgement| {
            self.conclude(request, primary, shadow, judgement, now)
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts, not invariants the next pair relies on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn conclude(
        &self,
        request: &RequestLine,
        primary: &Primary,
        shadow: &Shadow,
        judgement: Judgement<'_>,
        now: Instant,
    ) -> Verdict {
        let primary_answer = match primary {
            Primary::Answered(answer) => Some(answer),
            _ => None,
        };
        let shadow_answer = match shadow {
            Shadow::Answered(answer) => Some(answer),
            Shadow::Failed(_) => None,
        };
        let mut state = self.lock();
        let decided = match &judgement {
            Judgement::Settled(verdict) => Decided {
                verdict: *verdict,
                differences: None,
                deciding: 0,
                noisy_left_out: 0,
            },
            Judgement::Compared {
                differences,
                bodies_compared,
                body_not_compared,
            } => decide(
                &mut state,
                differences,
                *bodies_compared,
                *body_not_compared,
            ),
        };
        let verdict = decided.verdict;
        state.verdicts[verdict.index()] += 1;
        match verdict {
            Verdict::NotCompared(reason) => state.not_compared[reason.index()] += 1,
            Verdict::ShadowError(kind) => {
                match state.shadow_errors.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, count)) => *count += 1,
                    None => state.shadow_errors.push((kind, 1)),
                }
            }
            Verdict::Match if decided.differences.is_some_and(|d| !d.is_empty()) => {
                state.matched_apart_from_noise += 1
            }
            _ => {}
        }
        for (answer, first) in [(primary_answer, 0), (shadow_answer, 2)] {
            if let Some(answer) = answer {
                state.latency[first].record(answer.to_head);
                if answer.ended() {
                    state.latency[first + 1].record(answer.to_end);
                }
            }
        }
        let mut log = None;
        if verdict.is_mismatch() {
            let wanted = self.settings.last_mismatches > 0;
            let admitted = state.log.admit(now);
            if wanted || admitted.is_some() {
                let mismatch = mismatch(request, primary_answer, shadow_answer, &decided);
                if let Some(suppressed) = admitted {
                    log = Some((mismatch.clone(), suppressed));
                }
                if wanted {
                    if state.mismatches.len() == self.settings.last_mismatches {
                        state.mismatches.pop_back();
                    }
                    state.mismatches.push_front(mismatch);
                }
            }
        }
        drop(state);
        self.metrics.count(verdict);
        if let Some(answer) = primary_answer.filter(|a| a.ended()) {
            self.metrics.primary_latency(answer.to_end);
        }
        if let Some(answer) = shadow_answer.filter(|a| a.ended()) {
            self.metrics.shadow_latency(answer.to_end);
        }
        if let Some((mismatch, suppressed)) = log {
            self.log(&mismatch, suppressed);
        }
        verdict
    }

    fn log(&self, mismatch: &Mismatch, suppressed: u64) {
        let fields = mismatch
            .fields
            .iter()
            .map(|f| f.field.as_str())
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(
            rule = %self.rule,
            target = %self.target,
            verdict = %mismatch.verdict,
            shadow_error = mismatch.shadow_error.as_deref().unwrap_or_default(),
            request = %mismatch.request,
            primary_status = mismatch.primary_status.unwrap_or_default(),
            shadow_status = mismatch.shadow_status.unwrap_or_default(),
            primary_grpc_status = mismatch.primary_grpc_status,
            shadow_grpc_status = mismatch.shadow_grpc_status,
            fields = %fields,
            suppressed_before = suppressed,
            "shadow answered differently from the primary"
        );
    }

    /// This comparison's part of the report.
    pub fn report(&self) -> ComparisonReport {
        let state = self.lock();
        let percentiles = |histogram: &Histogram| {
            let ms = |q| histogram.quantile(q).map(|d| d.as_secs_f64() * 1e3);
            Percentiles {
                count: histogram.count(),
                p50_ms: ms(0.5),
                p90_ms: ms(0.9),
                p99_ms: ms(0.99),
            }
        };
        let side = |first: usize| SideLatency {
            to_head: percentiles(&state.latency[first]),
            to_end: percentiles(&state.latency[first + 1]),
        };
        let (window_pairs, window_body_pairs) = state.noise.window();
        let noise = &self.settings.noise;
        ComparisonReport {
            rule: self.rule.clone(),
            target: self.target.clone(),
            percent: self.settings.percent,
            max_body_bytes: self.settings.max_body_bytes as u64,
            pairs: state.verdicts.iter().sum(),
            verdicts: VerdictCounts::from_array(state.verdicts),
            matched_apart_from_noise: state.matched_apart_from_noise,
            not_compared: NotCompared::ALL
                .iter()
                .map(|reason| {
                    (
                        reason.as_str().to_string(),
                        state.not_compared[reason.index()],
                    )
                })
                .collect(),
            shadow_errors: state
                .shadow_errors
                .iter()
                .map(|(kind, count)| (kind.to_string(), *count))
                .collect(),
            latency: Latency {
                primary: side(0),
                shadow: side(2),
            },
            noise: NoiseSettings {
                threshold: noise.threshold,
                min_pairs: noise.min_pairs,
                window: noise.window,
                ignore_noisy: noise.ignore_noisy,
            },
            window_pairs,
            window_body_pairs,
            fields: state
                .noise
                .standings()
                .into_iter()
                .map(|s| FieldReport {
                    rate: f64::from(s.differing_pairs) / f64::from(s.compared_pairs.max(1)),
                    field: s.name,
                    differing_pairs: s.differing_pairs,
                    compared_pairs: s.compared_pairs,
                    noise: s.noise,
                    total_differing_pairs: s.total,
                })
                .collect(),
            last_mismatches: state.mismatches.iter().cloned().collect(),
        }
    }
}

/// The verdict of a pair of equal status: counts its fields in the noise window and lets the
/// fields that are not (ignored) noise decide.
fn decide<'j, 'a>(
    state: &mut State,
    differences: &'j Differences<'a>,
    bodies_compared: bool,
    body_not_compared: Option<NotCompared>,
) -> Decided<'j, 'a> {
    let ignore_noisy = state.noise.ignore_noisy();
    let mut ids: [FieldId; MAX_SHAPES + 1] = [OTHER; MAX_SHAPES + 1];
    let mut count = 0;
    let mut other = false;
    let mut deciding = 0u64;
    let mut noisy_left_out = 0;
    let (mut body_decides, mut header_decides) = (differences.overflow, false);
    for (i, difference) in differences.list.iter().enumerate() {
        let id = state.noise.field(&difference.shape, difference.in_body);
        if difference.may_be_noise() && ignore_noisy && state.noise.is_noise(id) {
            noisy_left_out += 1;
        } else {
            deciding |= 1 << i;
            body_decides |= difference.in_body;
            header_decides |= !difference.in_body;
        }
        if id == OTHER {
            if other {
                continue;
            }
            other = true;
        }
        ids[count] = id;
        count += 1;
    }
    if differences.overflow && !other {
        ids[count] = OTHER;
        count += 1;
    }
    state.noise.record(&ids[..count], bodies_compared);
    let verdict = if body_decides {
        Verdict::BodyMismatch
    } else if header_decides {
        Verdict::HeaderMismatch
    } else if let Some(reason) = body_not_compared {
        Verdict::NotCompared(reason)
    } else {
        Verdict::Match
    };
    Decided {
        verdict,
        differences: Some(differences),
        deciding,
        noisy_left_out,
    }
}

/// The report's record of a mismatch: excerpts of the fields that made it.
fn mismatch(
    request: &RequestLine,
    primary: Option<&Answer>,
    shadow: Option<&Answer>,
    decided: &Decided<'_, '_>,
) -> Mismatch {
    let mut fields = Vec::new();
    let mut more_fields = 0u32;
    if let Some(differences) = decided.differences {
        for (i, difference) in differences.list.iter().enumerate() {
            if decided.deciding & (1 << i) == 0 {
                continue;
            }
            if fields.len() == MAX_MISMATCH_FIELDS {
                more_fields += 1;
                continue;
            }
            fields.push(FieldDifference {
                field: difference.path.clone(),
                primary: difference.primary.excerpt(),
                shadow: difference.shadow.excerpt(),
                more_places: difference.places - 1,
            });
        }
        more_fields += u32::from(differences.overflow);
    }
    let at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Mismatch {
        at_unix_ms,
        request: request.as_str().to_string(),
        verdict: decided.verdict.label().to_string(),
        shadow_error: match decided.verdict {
            Verdict::ShadowError(kind) => Some(kind.to_string()),
            _ => None,
        },
        primary_status: primary.map(|a| a.status),
        shadow_status: shadow.map(|a| a.status),
        primary_grpc_status: primary.and_then(|a| a.grpc_status),
        shadow_grpc_status: shadow.and_then(|a| a.grpc_status),
        fields,
        more_fields,
        noisy_fields_left_out: decided.noisy_left_out,
    }
}
