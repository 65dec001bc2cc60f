//! Shadow verdicts: comparing each compared copy's answer with the primary's, and reporting where
//! they differ, told apart from noise.
//!
//! Off unless a rule has a `[mirror.rules.compare]` section (see [`crate::config::Compare`]).
//! [`Reports::configure`] makes one [`Comparison`] per (rule, target) from the config; the
//! engine asks the rule's [`RuleComparisons::sample`] whether to compare a mirrored request,
//! captures both answers (bodies up to [`RuleComparisons::max_body_bytes`] per side) and hands
//! each pair, as plain data ([`Primary`], [`Shadow`], [`RequestLine`]), to
//! [`Comparison::record`], which returns the pair's [`Verdict`] and counts it. This module does
//! no I/O but the log line of a mismatch: capture and pairing belong to the relay and the shadow
//! sender.
//!
//! How a verdict is reached: [`verdict`]. How bodies are compared: [`bodies`] (decoding in
//! [`decode`], parsing JSON in [`document`], comparing its values in [`json`], paths and `ignore`
//! patterns in [`path`]). Noise: [`noise`]. What leaves the daemon: [`excerpt`] (never a
//! credential), [`report`] (served as JSON on `/comparisons`), [`render`] (for a terminal, via
//! [`fetch`]), [`metrics`] (`mirror_comparisons_total`, `mirror_answer_latency_seconds`) and one
//! log line per mismatch, at most [`log::LINES_PER_SECOND`] per (rule, target).

mod answer;
mod bodies;
mod comparison;
mod decode;
mod differences;
mod document;
mod excerpt;
pub mod fetch;
pub mod grpc;
mod json;
mod judge;
mod latency;
mod log;
mod metrics;
mod noise;
mod pair;
mod path;
pub mod render;
pub mod report;
mod reports;
mod settings;
mod verdict;

#[cfg(test)]
pub(crate) mod tests;

pub use answer::{Answer, AnswerBody, Primary, Protocol, RequestLine, Shadow};
pub use comparison::Comparison;
pub use excerpt::{ALWAYS_SECRET, MAX_EXCERPT_CHARS};
pub use metrics::Metrics;
pub use noise::{MAX_FIELDS, OTHER_FIELDS};
pub use pair::{BodyCapture, Pair};
pub use path::IgnorePath;
pub use report::Report;
pub use reports::{Reports, RuleComparisons};
pub use settings::Settings;
pub use verdict::{NotCompared, Verdict};
