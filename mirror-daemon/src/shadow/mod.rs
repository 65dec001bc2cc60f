//! Delivery of request copies to shadow targets, fire-and-forget.
//!
//! The mirror engine hands each sampled copy to a [`Target`] with [`Target::try_submit`], which
//! never waits: the copy joins a bounded queue or is rejected. Behind the queue, each target runs
//! its own sender: up to `max_concurrent` copies in flight, over a keep-alive connection pool,
//! with the response read and thrown away. Nothing here can slow, block or fail the primary path;
//! a shadow's troubles only show in metrics and (rate-limited) logs.
//!
//! The path of a copy: [`request`] (what the mirror engine submits) -> `target` (a lane per
//! worker, shared limits) -> `lane` (queue, batches, the relay first) -> `sender` (a batch's way,
//! with its timeout) -> `pool` (idle connections) or `dial` with `tls` (new ones) -> `exchange`
//! (copies on one connection, pipelined) -> `write` (raw request bytes out, vectored) and
//! `response` with `chunked` (the responses read and thrown away, or kept by `capture` for a
//! comparison with the primary's, [`crate::compare`]). An HTTP/2 copy goes from `target`
//! straight to `http2`: a stream of the worker's HTTP/2 connection to the target, at once.
//! [`error`], [`metrics`] and `health` (logging) say how it went.

mod capture;
mod chunked;
mod dial;
pub mod error;
mod exchange;
mod health;
mod http2;
mod lane;
pub mod metrics;
mod pool;
pub mod request;
mod response;
mod sender;
mod target;
mod tls;
mod write;

#[cfg(test)]
mod tests;

pub use capture::Compared;
pub use error::{CopyError, Error, ErrorKind, Rejected};
pub use http2::{H2Chunk, H2Copy};
pub use metrics::ShadowMetrics;
pub use request::{BodyChunk, BodyFraming, ShadowRequest};
pub use target::Target;
