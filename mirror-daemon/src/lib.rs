//! mirror-daemon: takes pod egress flows the kernel intercepts, forwards them to their real
//! destination untouched, and mirrors sampled HTTP/1.1 copies to shadow targets.
//!
//! The life of a request, in module order:
//! [`interception`] (kernel side: eBPF, policy routing, interfaces) ->
//! [`listener`] (transparent listeners, accept loop, watchdog) ->
//! [`connection`] (original destination, connect to the primary) ->
//! [`relay`] (bytes both ways) -> [`http`] (framing the client's requests) -> [`mirror`]
//! (which copies to make) -> [`shadow`] (delivering them). [`app`] wires them, [`reload`]
//! replaces their configuration while they run; [`admin`] and [`metrics`] observe them.

pub mod admin;
pub mod admission;
pub mod app;
pub mod compare;
pub mod config;
pub mod connection;
pub mod http;
pub mod interception;
pub mod listener;
pub mod metrics;
pub mod mirror;
pub mod privilege;
pub mod relay;
pub mod reload;
pub mod shadow;
pub mod workers;
