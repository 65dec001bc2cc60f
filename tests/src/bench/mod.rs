//! `cargo xtask bench`: the daemon's cost on the primary path, measured on a simulated node and
//! set beside direct traffic and nginx's `mirror` (see README.md, "Performance").
//!
//! - [`scenario`]: the bed (node, primary, shadows) and one run of one scenario;
//! - [`callgrind`]: the daemon under callgrind, its instructions counted per phase;
//! - [`launcher`]: scripts that start the daemon under callgrind or `taskset`;
//! - [`load`]: wrk (saturation) and an open-loop constant-rate client (latency);
//! - [`nginx`]: nginx as the primary, the healthy shadow and the mirroring proxy;
//! - [`procstat`]: CPU seconds, peak RSS, load average from `/proc`;
//! - [`report`]: medians and spreads over repetitions, goals, markdown;
//! - [`plots`]: the report's pictures (SVG).

pub mod callgrind;
pub mod launcher;
pub mod load;
pub mod nginx;
pub mod plots;
pub mod procstat;
pub mod report;
pub mod scenario;

#[cfg(test)]
mod fixture;
