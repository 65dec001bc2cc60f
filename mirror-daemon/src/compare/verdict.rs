//! The one verdict each compared pair ends in, and the order in which it is decided.
//!
//! 1. The primary gave nothing to compare: `not_compared`, reason `stopped` (its connection's
//!    answers could not be framed with certainty) or `no_answer` (no head before the end).
//! 2. The shadow failed (timeout, reset, refused, ...; an answer whose body broke off is `cut_off`):
//!    `shadow_error`.
//! 3. The statuses differ, or for gRPC the `grpc-status` codes (known unless the primary's answer
//!    broke off): `status_mismatch`. Answers of different statuses are not compared further, and
//!    their fields are not counted for noise: a 500 page differs from a 200 answer everywhere.
//!    An answer is gRPC by its `content-type` (`application/grpc*`, [`super::grpc`]); its code
//!    comes from the trailers, or the head of a Trailers-Only answer. gRPC errors travel in
//!    `200` answers, so for them the code is the status that counts: a shadow ending a call
//!    with NOT_FOUND where the primary said OK is a `status_mismatch` though both said `200`.
//!    Reports show such a status as the HTTP status and the code: `/comparisons` gives
//!    `primary_status: 200, primary_grpc_status: 0` beside `shadow_status: 200,
//!    shadow_grpc_status: 5`, `mirror-daemon comparisons` prints `primary 200 grpc-status 0,
//!    shadow 200 grpc-status 5`, and the log line has the same four fields. Labels carry only
//!    the verdict, never a code. A gRPC answer whose code is missing differs from every code.
//! 4. The bodies (when both are complete and within the cap) and the configured headers are
//!    compared, and each differing field is counted for noise. Fields that are not noise (or all,
//!    with `ignore_noisy = false`) decide: a body field makes `body_mismatch`, else a header
//!    `header_mismatch`; the body is what the API answers, so it wins when both differ (the
//!    mismatch record lists every field anyway).
//! 5. Otherwise, when the bodies could not be compared: `not_compared`, reason `primary_cut_off`,
//!    `over_cap` (either side over `max_body_bytes`, decoded or not: compared by status and
//!    headers only) or `undecodable` (the primary's `Content-Encoding` is unknown or its data does
//!    not decode; a shadow body that does not decode is a `body_mismatch`).
//! 6. `match`.

/// A pair's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Match,
    StatusMismatch,
    BodyMismatch,
    HeaderMismatch,
    /// The shadow's error kind.
    ShadowError(&'static str),
    NotCompared(NotCompared),
}

/// Why a pair was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotCompared {
    OverCap,
    PrimaryCutOff,
    Stopped,
    NoAnswer,
    Undecodable,
}

impl Verdict {
    /// The `verdict` label values, in [`Self::index`] order.
    pub const LABELS: [&'static str; 6] = [
        "match",
        "status_mismatch",
        "body_mismatch",
        "header_mismatch",
        "shadow_error",
        "not_compared",
    ];

    /// The `verdict` label: never more than the six values of [`Self::LABELS`].
    pub fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }

    pub(super) fn index(self) -> usize {
        match self {
            Self::Match => 0,
            Self::StatusMismatch => 1,
            Self::BodyMismatch => 2,
            Self::HeaderMismatch => 3,
            Self::ShadowError(_) => 4,
            Self::NotCompared(_) => 5,
        }
    }

    /// Whether the pair goes into the report's last mismatches and the log: the shadow answered
    /// differently, or not at all.
    pub fn is_mismatch(self) -> bool {
        matches!(
            self,
            Self::StatusMismatch | Self::BodyMismatch | Self::HeaderMismatch | Self::ShadowError(_)
        )
    }
}

impl NotCompared {
    pub const ALL: [Self; 5] = [
        Self::OverCap,
        Self::PrimaryCutOff,
        Self::Stopped,
        Self::NoAnswer,
        Self::Undecodable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OverCap => "over_cap",
            Self::PrimaryCutOff => "primary_cut_off",
            Self::Stopped => "stopped",
            Self::NoAnswer => "no_answer",
            Self::Undecodable => "undecodable",
        }
    }

    /// Position in [`Self::ALL`].
    pub(super) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ShadowError(kind) => write!(f, "shadow_error ({kind})"),
            Self::NotCompared(reason) => write!(f, "not_compared ({})", reason.as_str()),
            verdict => f.write_str(verdict.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_reasons_line_up_with_their_indices() {
        for (i, reason) in NotCompared::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        for verdict in [
            Verdict::Match,
            Verdict::StatusMismatch,
            Verdict::BodyMismatch,
            Verdict::HeaderMismatch,
            Verdict::ShadowError("timeout"),
            Verdict::NotCompared(NotCompared::Stopped),
        ] {
            assert_eq!(Verdict::LABELS[verdict.index()], verdict.label());
        }
        assert_eq!(
            Verdict::NotCompared(NotCompared::OverCap).to_string(),
            "not_compared (over_cap)"
        );
    }
}
