//! Comparing one pair, without the window: the verdict's steps 1 to 3 (see [`super::verdict`]),
//! and for answers of equal status every differing header and body field.
//!
//! Pure: it reads the two answers and the settings, and hands its result, which borrows decoded
//! bodies and parsed documents, to a closure, so that nothing is copied out of them unless a
//! mismatch is reported.

use super::{
    answer::{Answer, AnswerBody, Primary, Shadow},
    bodies::Bodies,
    differences::{Differences, Shown},
    settings::Settings,
    verdict::{NotCompared, Verdict},
};

/// What the comparison found before noise is taken into account.
pub(super) enum Judgement<'a> {
    /// Decided without looking at fields (steps 1 to 3); not counted for noise.
    Settled(Verdict),
    /// Heads of equal status: the differing fields, and why the bodies were not compared, if
    /// they were not.
    Compared {
        differences: Differences<'a>,
        bodies_compared: bool,
        body_not_compared: Option<NotCompared>,
    },
}

/// The cut-off shadow answer's error kind.
pub(super) const CUT_OFF: &str = "cut_off";

/// Judges the pair and hands the judgement to `then`.
pub(super) fn judge<R>(
    settings: &Settings,
    primary: &Primary,
    shadow: &Shadow,
    then: impl FnOnce(Judgement<'_>) -> R,
) -> R {
    let (primary, shadow) = match (primary, shadow) {
        (Primary::Stopped, _) => {
            return then(Judgement::Settled(Verdict::NotCompared(
                NotCompared::Stopped,
            )))
        }
        (Primary::NoAnswer, _) => {
            return then(Judgement::Settled(Verdict::NotCompared(
                NotCompared::NoAnswer,
            )))
        }
        (_, Shadow::Failed(kind)) => return then(Judgement::Settled(Verdict::ShadowError(kind))),
        (
            _,
            Shadow::Answered(Answer {
                body: AnswerBody::CutOff,
                ..
            }),
        ) => return then(Judgement::Settled(Verdict::ShadowError(CUT_OFF))),
        (Primary::Answered(primary), Shadow::Answered(shadow)) => (primary, shadow),
    };
    // The primary's gRPC status is unknown when its answer broke off before the trailers.
    let grpc_known = !matches!(primary.body, AnswerBody::CutOff);
    if primary.status != shadow.status || grpc_known && primary.grpc_status != shadow.grpc_status {
        return then(Judgement::Settled(Verdict::StatusMismatch));
    }
    let mut differences = Differences::default();
    for header in &settings.headers {
        if !primary.values(&header.name).eq(shadow.values(&header.name)) {
            let show = |answer| Shown::Header {
                answer,
                name: &header.name,
                secret: header.secret,
            };
            differences.add(
                &header.field,
                || header.field.clone(),
                show(primary),
                show(shadow),
                false,
            );
        }
    }
    let bodies = Bodies::prepare(primary, shadow, settings.max_body_bytes);
    let arena = bodies.arena();
    bodies.differences(&arena, &settings.ignore, &mut differences);
    then(Judgement::Compared {
        differences,
        bodies_compared: bodies.compared(),
        body_not_compared: match &bodies {
            Bodies::NotCompared(reason) => Some(*reason),
            _ => None,
        },
    })
}
