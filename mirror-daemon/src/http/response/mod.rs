//! HTTP/1.1 framing of the primary-to-client stream: the primary's answers, in request order.
//!
//! The daemon forwards every byte the primary sends to the client unchanged and as it arrives;
//! this module only describes those bytes, beside the relay, so that the answers can be compared
//! with the shadow's and a connection can be closed at a point where no answer is under way.
//! [`ResponseFramer`] splits the stream into interim heads, answer heads, payload and answer ends
//! (RFC 9112), matching each answer to the oldest request announced with
//! [`ResponseFramer::expect`]. It shares the head scanner and the chunked walker with the request
//! framer and is as strict: whatever clients could read differently, or what is no longer
//! HTTP/1.1 (upgrades, CONNECT tunnels), ends the framing for good with a [`ResponseGiveUp`].
//! The path is: `expected` says what an answer depends on and queues the requests, `head` parses
//! a head and decides its body, `framer` ties them into the per-connection state machine,
//! `give_up` names the ways out.

mod expected;
mod framer;
mod give_up;
mod head;

#[cfg(test)]
mod tests;

pub use expected::{Expected, MAX_PENDING};
pub use framer::{ResponseFrame, ResponseFramer};
pub use give_up::ResponseGiveUp;
pub use head::{ResponseBody, ResponseHead};
