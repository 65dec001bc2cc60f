//! Getting two bodies ready to compare: decoded, and parsed as JSON when both are JSON.
//!
//! The cheapest test comes first: the same bytes under the same `Content-Encoding` are equal,
//! with nothing decoded or parsed. Otherwise each body is decoded ([`super::decode`]), and
//! compared as JSON values when both sides are JSON: declared so (`application/json`, `+json`),
//! or starting like a document (`{` or `[`), and parsing as one, as far as the comparison needs
//! ([`json::diff`]). Bodies that are not both JSON are compared byte for byte, and so are gRPC
//! answers' (length-prefixed messages, [`super::grpc`]).

use std::borrow::Cow;

use bumpalo::Bump;

use super::{
    answer::{Answer, AnswerBody},
    decode::{decode, Decoded},
    differences::{Differences, Shown, WHOLE_BODY},
    document::Node,
    json,
    path::IgnoreSet,
    verdict::NotCompared,
};

/// Two bodies, ready.
pub(super) enum Bodies<'a> {
    /// Equal as sent.
    Same,
    NotCompared(NotCompared),
    /// The primary's decoded; the shadow's does not decode.
    ShadowUndecodable,
    /// Decoded, and not equal byte for byte.
    Decoded {
        primary: Cow<'a, [u8]>,
        shadow: Cow<'a, [u8]>,
        /// Both are JSON by their type or their first byte: worth parsing.
        json: bool,
    },
}

impl<'a> Bodies<'a> {
    /// The bodies of two answers whose heads were compared; `cap` is `max_body_bytes`.
    pub fn prepare(primary: &'a Answer, shadow: &'a Answer, cap: usize) -> Self {
        let (left, right) = match (&primary.body, &shadow.body) {
            (AnswerBody::CutOff, _) => return Self::NotCompared(NotCompared::PrimaryCutOff),
            (AnswerBody::OverCap, _) | (_, AnswerBody::OverCap) => {
                return Self::NotCompared(NotCompared::OverCap)
            }
            // The shadow's cut-off answers are shadow errors, settled before bodies.
            (_, AnswerBody::CutOff) => return Self::NotCompared(NotCompared::Undecodable),
            (AnswerBody::Complete(left), AnswerBody::Complete(right)) => (left, right),
        };
        let left_coding = primary.header("content-encoding").map(|v| &v[..]);
        let right_coding = shadow.header("content-encoding").map(|v| &v[..]);
        if left == right && left_coding == right_coding {
            return Self::Same;
        }
        let (left, right) = match (
            decode(left, left_coding, cap),
            decode(right, right_coding, cap),
        ) {
            (Decoded::OverCap, _) | (_, Decoded::OverCap) => {
                return Self::NotCompared(NotCompared::OverCap)
            }
            (Decoded::Undecodable, _) => return Self::NotCompared(NotCompared::Undecodable),
            (Decoded::Bytes(_), Decoded::Undecodable) => return Self::ShadowUndecodable,
            (Decoded::Bytes(left), Decoded::Bytes(right)) => (left, right),
        };
        if left == right {
            return Self::Same;
        }
        let json = is_json(primary, &left) && is_json(shadow, &right);
        Self::Decoded {
            primary: left,
            shadow: right,
            json,
        }
    }

    /// The arena for [`Self::differences`]: one allocation for the levels a comparison of small
    /// documents parses (up to 16 KiB at first; it grows past that), none when nothing will be
    /// parsed.
    pub fn arena(&self) -> Bump {
        const FIRST_CHUNK_MAX: usize = 16 * 1024;
        match self {
            Self::Decoded {
                primary,
                shadow,
                json: true,
            } => Bump::with_capacity((2 * (primary.len() + shadow.len())).min(FIRST_CHUNK_MAX)),
            _ => Bump::new(),
        }
    }

    /// Whether the bodies were compared (and so count for the noise of body fields).
    pub fn compared(&self) -> bool {
        !matches!(self, Self::NotCompared(_))
    }

    /// Adds the bodies' differences to `out`, parsing JSON into `arena` ([`Self::arena`]) as
    /// far as the comparison needs. Bodies that look like JSON and turn out not to be (not UTF-8,
    /// or not parsing where they differ) are compared byte for byte.
    pub fn differences<'s>(
        &'s self,
        arena: &'s Bump,
        ignore: &IgnoreSet,
        out: &mut Differences<'s>,
    ) {
        match self {
            Self::Same | Self::NotCompared(_) => {}
            Self::ShadowUndecodable => out.add(
                WHOLE_BODY,
                || WHOLE_BODY.to_string(),
                Shown::Note("(decoded)"),
                Shown::Note("(does not decode as its Content-Encoding says)"),
                true,
            ),
            Self::Decoded {
                primary,
                shadow,
                json,
            } => {
                if *json {
                    if let (Some(left), Some(right)) =
                        (Node::unparsed(primary), Node::unparsed(shadow))
                    {
                        let (left, right) = (arena.alloc(left), arena.alloc(right));
                        if json::diff(left, right, arena, ignore, out).is_ok() {
                            return;
                        }
                    }
                }
                let at = primary
                    .iter()
                    .zip(shadow.iter())
                    .position(|(l, r)| l != r)
                    .unwrap_or(primary.len().min(shadow.len()));
                out.add(
                    WHOLE_BODY,
                    || WHOLE_BODY.to_string(),
                    Shown::Body { bytes: primary, at },
                    Shown::Body { bytes: shadow, at },
                    true,
                );
            }
        }
    }
}

/// Whether `body` of `answer` is worth parsing as JSON. Never a gRPC answer's: its body is
/// length-prefixed messages (`application/grpc+json` included), compared byte for byte.
fn is_json(answer: &Answer, body: &[u8]) -> bool {
    let content_type = answer.header("content-type");
    if content_type.is_some_and(|value| super::grpc::is_grpc(value)) {
        return false;
    }
    let declared = content_type.is_some_and(|value| {
        let media_type = value
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        media_type.eq_ignore_ascii_case(b"application/json")
            || media_type.len() > 5
                && media_type[media_type.len() - 5..].eq_ignore_ascii_case(b"+json")
    });
    declared
        || matches!(
            body.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        )
}
