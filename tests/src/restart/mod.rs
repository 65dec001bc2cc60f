//! `cargo xtask restart-bench`: what a restart of the daemon (a DaemonSet's rolling update on
//! one node) does to keep-alive clients, measured on a simulated node (see README.md,
//! "Failure behaviour").
//!
//! - [`bed`]: the node with its nginx primary, and one restart under load;
//! - [`wrk`]: wrk across the restart, its own counters and a per-millisecond timeline;
//! - [`sessions`]: Python `requests` sessions across the restart;
//! - [`timeline`]: the shared clock and the phases (before, during, after);
//! - [`report`]: the markdown tables.

pub mod bed;
pub mod report;
pub mod sessions;
pub mod timeline;
pub mod wrk;
