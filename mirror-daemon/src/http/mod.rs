//! HTTP/1.1 framing of the client-to-primary stream, for mirroring.
//!
//! The daemon forwards every byte a client sends to the primary unchanged and as it arrives; this
//! module only describes those bytes. [`RequestFramer`] splits the stream into request heads,
//! bodies and request ends (RFC 9112), so sampled requests can be copied to the shadow target. It
//! is strict: whatever servers could frame differently (request smuggling patterns, non-HTTP
//! protocols, upgrades) switches the connection to tunnel mode for good, with a [`TunnelReason`].
//! The path is: `head` finds and validates request heads, `chunked` walks chunked bodies,
//! `framer` ties them into the per-connection state machine, `tunnel` names the ways out.
//! Connections that open with the HTTP/2 preface are decoded by [`h2`] instead.
//! [`response`] frames the other direction, the primary's answers, with the same pieces.

mod chunked;
mod framer;
pub mod h2;
mod head;
pub mod response;
mod tunnel;

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod label_checks;

pub use framer::{Frame, FramingLimits, RequestFramer};
pub use head::{BodyKind, RequestHead};
pub use tunnel::TunnelReason;
