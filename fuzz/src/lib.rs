//! Helpers shared by the fuzz targets in `fuzz_targets/` (see `README.md` beside this crate).
//!
//! - [`input`]: how a target's raw input is cut into a split schedule, limits and a stream.
//! - [`events`]: frames the stream chunk by chunk with the daemon's `RequestFramer`, checking the
//!   frame API's invariants on the way, into a normal form that does not depend on the cuts.
//! - [`differential`]: compares the framer's requests with the reference's.
//! - [`reference`]: an independent, whole-buffer framer with the same strictness rules, written
//!   for obviousness rather than speed, to compare request boundaries against.
//! - [`copy`]: checks that the copy of a request the daemon would send to a shadow is
//!   unambiguous.
//! - [`gen`]: a structure-aware generator of mostly valid request pipelines, with mutations.
//! - [`h2`]: feeds an HTTP/2 connection to the daemon's `H2Decoder`, checking its event API,
//!   into a normal form and the requests it describes.
//! - [`known`]: findings already reported, skipped on request so fuzzing can go past them.
//! - [`answers`], [`response_differential`], [`response_reference`], [`response_gen`]: the same
//!   four roles for the daemon's `ResponseFramer` (the primary's answers).
//! - [`memory`]: a global allocator that counts live heap bytes, for the memory bounds.

pub mod answers;
pub mod copy;
pub mod differential;
pub mod events;
pub mod gen;
pub mod h2;
pub mod input;
pub mod known;
pub mod memory;
pub mod reference;
pub mod response_differential;
pub mod response_gen;
pub mod response_reference;
