//! The report `/comparisons` serves as JSON, and `mirror-daemon comparisons` reads back.
//!
//! Everything in it is bounded: fields by the noise table, mismatches by `last_mismatches`, each
//! with at most [`MAX_MISMATCH_FIELDS`] fields whose values are excerpts of at most
//! [`super::excerpt::MAX_EXCERPT_CHARS`] characters, credentials redacted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Fields listed per mismatch; the rest are counted in [`Mismatch::more_fields`].
pub const MAX_MISMATCH_FIELDS: usize = 16;

/// Every comparison the daemon runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    pub comparisons: Vec<ComparisonReport>,
}

/// One (rule, target).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonReport {
    pub rule: String,
    pub target: String,
    /// Share of mirrored requests compared.
    pub percent: f64,
    pub max_body_bytes: u64,
    /// Pairs given a verdict since the comparison started (or its settings last changed).
    pub pairs: u64,
    pub verdicts: VerdictCounts,
    /// Pairs whose verdict is `match` only because their differing fields are noise.
    pub matched_apart_from_noise: u64,
    /// `not_compared` by reason; every reason is listed.
    pub not_compared: BTreeMap<String, u64>,
    /// `shadow_error` by kind.
    pub shadow_errors: BTreeMap<String, u64>,
    pub latency: Latency,
    pub noise: NoiseSettings,
    /// Pairs in the noise window, and those of them whose bodies were compared.
    pub window_pairs: u32,
    pub window_body_pairs: u32,
    /// Fields that differ in the window, most often first.
    pub fields: Vec<FieldReport>,
    /// Newest first.
    pub last_mismatches: Vec<Mismatch>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VerdictCounts {
    #[serde(rename = "match")]
    pub matched: u64,
    pub status_mismatch: u64,
    pub body_mismatch: u64,
    pub header_mismatch: u64,
    pub shadow_error: u64,
    pub not_compared: u64,
}

impl VerdictCounts {
    /// In the order of [`super::Verdict::LABELS`].
    pub fn as_array(&self) -> [u64; 6] {
        [
            self.matched,
            self.status_mismatch,
            self.body_mismatch,
            self.header_mismatch,
            self.shadow_error,
            self.not_compared,
        ]
    }

    pub fn from_array(counts: [u64; 6]) -> Self {
        let [matched, status_mismatch, body_mismatch, header_mismatch, shadow_error, not_compared] =
            counts;
        Self {
            matched,
            status_mismatch,
            body_mismatch,
            header_mismatch,
            shadow_error,
            not_compared,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Latency {
    pub primary: SideLatency,
    pub shadow: SideLatency,
}

/// From the end of the request to the answer's head, and to its end.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SideLatency {
    pub to_head: Percentiles,
    pub to_end: Percentiles,
}

/// Milliseconds; `None` before the first answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseSettings {
    pub threshold: f64,
    pub min_pairs: u32,
    pub window: u32,
    pub ignore_noisy: bool,
}

/// A field that differs in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldReport {
    /// `/items/*/price`, `header:etag`, `body`, or `(other fields)`.
    pub field: String,
    pub differing_pairs: u32,
    /// Pairs of the window in which the field was compared.
    pub compared_pairs: u32,
    /// `differing_pairs / compared_pairs`.
    pub rate: f64,
    pub noise: bool,
    /// Pairs it differed in since it was first tracked.
    pub total_differing_pairs: u64,
}

/// One reported mismatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// `GET /api/orders/7 HTTP/1.1`.
    pub request: String,
    pub verdict: String,
    /// The shadow's error kind, for `shadow_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_grpc_status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_grpc_status: Option<u32>,
    /// The fields that made the verdict.
    pub fields: Vec<FieldDifference>,
    /// Fields beyond [`MAX_MISMATCH_FIELDS`] (or beyond what a pair keeps).
    pub more_fields: u32,
    /// Noisy fields that differed too, left out of the verdict.
    pub noisy_fields_left_out: u32,
}

/// A differing field of a mismatch: excerpts of both values, `None` where the field is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDifference {
    /// Its first differing place: `/items/3/price`.
    pub field: String,
    pub primary: Option<String>,
    pub shadow: Option<String>,
    /// Other places of the same shape (`/items/*/price`) that differ too.
    pub more_places: u32,
}
