//! The fields in which one pair's answers differ, collected once per field *shape*.
//!
//! A field is a JSON path (`/items/3/price`), a compared header (`header:etag`) or the whole body
//! (`body`: bodies compared byte for byte, or JSON documents that differ at their root). Noise is
//! counted per shape (`/items/*/price`), so a field differing in every item of a list is one
//! difference, with its first place and the number of places. A pair keeps at most
//! [`MAX_SHAPES`] shapes; more only sets [`Differences::overflow`], which counts as a difference
//! that is never noise. The values are borrowed from the answers and rendered only for a
//! mismatch that is reported ([`Shown::excerpt`]).

use super::{answer::Answer, document::Node, excerpt};

/// Distinct field shapes kept per pair.
pub(super) const MAX_SHAPES: usize = 64;

/// The field name of a difference of whole bodies.
pub(super) const WHOLE_BODY: &str = "body";

/// One side's value of a differing field.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shown<'a> {
    /// The field is not there.
    Absent,
    Json(&'a Node<'a>),
    Header {
        answer: &'a Answer,
        name: &'a str,
        secret: bool,
    },
    /// A body compared byte for byte, and where it first differs.
    Body {
        bytes: &'a [u8],
        at: usize,
    },
    /// A fixed description (a body that does not decode).
    Note(&'static str),
}

impl Shown<'_> {
    /// The excerpt the report shows; `None` for an absent field.
    pub fn excerpt(&self) -> Option<String> {
        match *self {
            Self::Absent => None,
            Self::Json(value) => Some(excerpt::json(value)),
            Self::Header {
                answer,
                name,
                secret,
            } => excerpt::header_values(answer.values(name), secret),
            Self::Body { bytes, at } => Some(excerpt::body_bytes(bytes, at)),
            Self::Note(note) => Some(note.to_string()),
        }
    }
}

/// One differing field shape.
#[derive(Debug)]
pub(super) struct Difference<'a> {
    /// Counted for noise under this: `/items/*/price`, `header:etag`, `body`.
    pub shape: String,
    /// Its first differing place: `/items/3/price`.
    pub path: String,
    /// Places of this shape that differ.
    pub places: u32,
    pub primary: Shown<'a>,
    pub shadow: Shown<'a>,
    /// Whether the field belongs to the body (else it is a header).
    pub in_body: bool,
}

impl Difference<'_> {
    /// Whether the field may be found to be noise and left out of verdicts: JSON fields and
    /// headers. A whole body that differs is never left out (a shadow answering something else
    /// every time must not read as `match`).
    pub fn may_be_noise(&self) -> bool {
        self.shape != WHOLE_BODY
    }
}

#[derive(Debug, Default)]
pub(super) struct Differences<'a> {
    pub list: Vec<Difference<'a>>,
    /// More than [`MAX_SHAPES`] shapes differed.
    pub overflow: bool,
}

impl<'a> Differences<'a> {
    /// Adds a difference of `shape` at the place `path` renders; a shape already present only
    /// counts one more place (and `path` is not rendered).
    pub fn add(
        &mut self,
        shape: &str,
        path: impl FnOnce() -> String,
        primary: Shown<'a>,
        shadow: Shown<'a>,
        in_body: bool,
    ) {
        if let Some(known) = self.list.iter_mut().find(|d| d.shape == shape) {
            known.places = known.places.saturating_add(1);
            return;
        }
        if self.list.len() == MAX_SHAPES {
            self.overflow = true;
            return;
        }
        self.list.push(Difference {
            shape: shape.to_string(),
            path: path(),
            places: 1,
            primary,
            shadow,
            in_body,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && !self.overflow
    }
}
