//! A rule's `[compare]` section compiled for one of its targets: what the hot path reads.

use super::{
    excerpt::ALWAYS_SECRET,
    path::{IgnorePath, IgnoreSet},
};
use crate::config;

/// How one (rule, target) pair of answers is compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Share of mirrored requests compared, 0 to 100.
    pub percent: f64,
    /// Bytes of each side's (decoded) body compared at most.
    pub max_body_bytes: usize,
    pub(super) headers: Vec<ComparedHeader>,
    pub(super) ignore: IgnoreSet,
    pub(super) noise: config::Noise,
    pub(super) last_mismatches: usize,
}

/// A header whose values are compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ComparedHeader {
    /// Lower case.
    pub name: String,
    /// Its name in reports and noise counts: `header:etag`.
    pub field: String,
    /// Its values are never shown: one of [`ALWAYS_SECRET`], or removed from copies by the
    /// target (then it is a credential the operator keeps from the shadow).
    pub secret: bool,
}

impl Settings {
    /// The settings of `compare` for a target that removes `remove_headers` from its copies.
    pub fn new(compare: &config::Compare, remove_headers: &[String]) -> Self {
        let headers = compare
            .headers
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .map(|name| ComparedHeader {
                field: format!("header:{name}"),
                secret: ALWAYS_SECRET.contains(&name.as_str())
                    || remove_headers.iter().any(|r| r.eq_ignore_ascii_case(&name)),
                name,
            })
            .collect();
        Self {
            percent: compare.percent,
            max_body_bytes: usize::try_from(compare.max_body_bytes).unwrap_or(usize::MAX),
            headers,
            // The config was validated with the same parser; a path that does not parse
            // cannot reach here.
            ignore: IgnoreSet::new(
                compare
                    .ignore
                    .iter()
                    .filter_map(|path| IgnorePath::parse(path).ok())
                    .collect(),
            ),
            noise: compare.noise.clone(),
            last_mismatches: compare.last_mismatches,
        }
    }

    /// Whether the comparison reads header `name` (any case) of the answers: the configured
    /// ones, those that say how to read a body (`content-encoding`, `content-type`), and
    /// `grpc-status` (a gRPC answer's status, in its trailers or a Trailers-Only head).
    pub fn keeps_header(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("content-encoding")
            || name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("grpc-status")
            || self
                .headers
                .iter()
                .any(|header| header.name.eq_ignore_ascii_case(name))
    }

    /// Whether a request is compared: a draw against `percent`.
    pub fn sample(&self) -> bool {
        self.percent >= 100.0
            || (self.percent > 0.0 && rand::random::<f64>() * 100.0 < self.percent)
    }
}
