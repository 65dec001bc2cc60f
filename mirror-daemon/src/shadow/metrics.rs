//! Shadow metrics: one set of families for all targets, labelled by target name only.
//!
//! Labels stay bounded: the target name comes from the config, every other label is a fixed
//! enum; paths, hosts and addresses never become labels. Each [`super::Target`] takes its own
//! handles once at start (`TargetMetrics`), so counting on the hot path is an atomic add.

use std::fmt::Write as _;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use super::error::ErrorKind;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    target: String,
    class: StatusClass,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    target: String,
    grpc_status: GrpcStatus,
}

/// The `grpc_status` label: `ok`, a gRPC status code's name in lower case, or `other` for a value
/// outside the 17 codes gRPC defines.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct GrpcStatus(u8);

impl GrpcStatus {
    const NAMES: [&'static str; 18] = [
        "ok",
        "cancelled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
        "other",
    ];
    const OTHER: u8 = 17;

    /// The status of a `grpc-status` field value.
    pub fn parse(value: &[u8]) -> Self {
        let code = std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.trim().parse::<u8>().ok())
            .filter(|code| *code < Self::OTHER);
        Self(code.unwrap_or(Self::OTHER))
    }

    /// The `grpc-status` of a header section, if it has one.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        headers
            .get("grpc-status")
            .map(|value| Self::parse(value.as_bytes()))
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[usize::from(self.0)]
    }

    fn all() -> impl Iterator<Item = Self> {
        (0..=Self::OTHER).map(Self)
    }
}

impl EncodeLabelValue for GrpcStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    target: String,
    kind: ErrorKind,
}

/// The `class` label of responses: the first digit of the status code.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(super) struct StatusClass(u8);

impl StatusClass {
    const ALL: [Self; 5] = [Self(1), Self(2), Self(3), Self(4), Self(5)];

    /// The class of a status code; the response reader lets only 100 to 599 through, anything
    /// else would count as 5xx (a broken server).
    pub(super) fn of(status: u16) -> Self {
        match status / 100 {
            digit @ 1..=5 => Self(digit as u8),
            _ => Self(5),
        }
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write!(encoder, "{}xx", self.0)
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

type HistogramFamily = Family<TargetLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// All shadow metrics, created once and registered into the daemon's registry.
#[derive(Debug, Clone)]
pub struct ShadowMetrics {
    requests: Family<TargetLabel, Counter>,
    responses: Family<ResponseLabels, Counter>,
    grpc: Family<GrpcLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: HistogramFamily,
    queue_depth: Family<TargetLabel, Gauge>,
    open_connections: Family<TargetLabel, Gauge>,
}

impl ShadowMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            responses: Family::default(),
            grpc: Family::default(),
            errors: Family::default(),
            latency: HistogramFamily::new_with_constructor(latency_histogram),
            queue_depth: Family::default(),
            open_connections: Family::default(),
        };
        registry.register(
            "mirror_shadow_requests",
            "Request copies completely written to a shadow target",
            metrics.requests.clone(),
        );
        registry.register(
            "mirror_shadow_responses",
            "Final responses read from a shadow target, by status class",
            metrics.responses.clone(),
        );
        registry.register(
            "mirror_shadow_grpc_responses",
            "gRPC answers read from a shadow target (HTTP/2 copies), by grpc-status (ok, a code's name, other)",
            metrics.grpc.clone(),
        );
        registry.register(
            "mirror_shadow_errors",
            "Copies that failed on their way to a shadow target, by kind",
            metrics.errors.clone(),
        );
        registry.register(
            "mirror_shadow_latency_seconds",
            "From taking a copy off the queue to having read its whole response",
            metrics.latency.clone(),
        );
        registry.register(
            "mirror_shadow_queue_depth",
            "Copies waiting for a free sender slot",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "mirror_shadow_open_connections",
            "Connections open to a shadow target, busy or idle",
            metrics.open_connections.clone(),
        );
        metrics
    }

    /// The handles of one target; every label combination exists from now on, at zero.
    pub(super) fn target(&self, name: &str) -> TargetMetrics {
        let target = || TargetLabel {
            target: name.to_string(),
        };
        TargetMetrics {
            requests: self.requests.get_or_create(&target()).clone(),
            responses: StatusClass::ALL.map(|class| {
                self.responses
                    .get_or_create(&ResponseLabels {
                        target: name.to_string(),
                        class,
                    })
                    .clone()
            }),
            grpc: GrpcStatus::all()
                .map(|grpc_status| {
                    self.grpc
                        .get_or_create(&GrpcLabels {
                            target: name.to_string(),
                            grpc_status,
                        })
                        .clone()
                })
                .collect(),
            errors: ErrorKind::ALL.map(|kind| {
                self.errors
                    .get_or_create(&ErrorLabels {
                        target: name.to_string(),
                        kind,
                    })
                    .clone()
            }),
            latency: self.latency.get_or_create(&target()).clone(),
            queue_depth: self.queue_depth.get_or_create(&target()).clone(),
            open_connections: self.open_connections.get_or_create(&target()).clone(),
        }
    }
}

/// One target's metric handles.
#[derive(Debug, Clone)]
pub(super) struct TargetMetrics {
    pub requests: Counter,
    responses: [Counter; 5],
    /// Indexed by [`GrpcStatus`].
    grpc: Vec<Counter>,
    errors: [Counter; ErrorKind::ALL.len()],
    pub latency: Histogram,
    pub queue_depth: Gauge,
    pub open_connections: Gauge,
}

impl TargetMetrics {
    pub fn response(&self, status: u16) -> &Counter {
        let StatusClass(digit) = StatusClass::of(status);
        &self.responses[usize::from(digit - 1)]
    }

    pub fn grpc(&self, status: GrpcStatus) -> &Counter {
        &self.grpc[usize::from(status.0)]
    }

    pub fn error(&self, kind: ErrorKind) -> &Counter {
        // `ErrorKind::ALL` lists the kinds in declaration order.
        &self.errors[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::GrpcStatus;

    #[test]
    fn grpc_statuses_are_named_like_the_codes_and_anything_else_is_other() {
        for (value, name) in [
            (&b"0"[..], "ok"),
            (b"1", "cancelled"),
            (b"4", "deadline_exceeded"),
            (b"14", "unavailable"),
            (b"16", "unauthenticated"),
            (b"17", "other"),
            (b"255", "other"),
            (b"x", "other"),
            (b"", "other"),
        ] {
            assert_eq!(GrpcStatus::parse(value).as_str(), name, "{value:?}");
        }
    }
}
