//! Test harness for mirror: a Kubernetes node simulated with network namespaces, the daemon run
//! inside it, and what is needed to watch both.
//!
//! - [`node`]: the node, its pods (CNI-named veths) and services (the primary).
//! - [`netns`]: named namespaces and running code inside them.
//! - [`tcp`], [`http`]: bounded servers and clients.
//! - [`primary`], [`shadow`]: recording HTTP/1.1 servers ([`recording`], [`wire`]) for the primary
//!   and the shadow target; [`client`]: a keep-alive client for the pods; [`scenario`]: node,
//!   servers and daemon set up for mirroring.
//! - [`daemon`]: the daemon's config, process, log and admin endpoint; [`metrics`] parses scrapes;
//!   [`config_file`]: a config file rewritten while the daemon runs (plain or ConfigMap-style).
//! - [`prometheus`]: a real Prometheus scraping the daemon; [`dashboard`]: the Grafana
//!   dashboard's queries and variables.
//! - [`kernel_state`]: before/after snapshots of what the daemon adds to the node's kernel.
//! - [`environment`]: run, skip loudly, or (under `CI=true`) fail when privileges are missing.
//! - HTTP/2: [`grpc`] (a recording `grpcio` server, a scripted client, expected answers),
//!   [`h2c`] (a recording h2c server, `nghttpd`, `curl --http2-prior-knowledge`, `nghttp`),
//!   [`h2load`]; the Python programs and their venv in [`python`]; [`background`]: a program
//!   run in a namespace, killed on drop; [`scratch`]: a directory removed on drop.
//! - [`load`]: a steady client load with per-request outcomes; [`hold`]: a server holding many
//!   connections; [`process`]: a process's memory, descriptors and limits; [`config_patch`]:
//!   settings the config builder has no method for.
//!
//! This is test code, an edge of the project: errors are `anyhow` with context.

pub mod background;
pub mod bpf;
pub mod client;
pub mod command;
pub mod config_file;
pub mod config_patch;
pub mod daemon;
pub mod dashboard;
pub mod environment;
pub mod grpc;
pub mod h2c;
pub mod h2load;
pub mod hold;
pub mod http;
pub mod kernel_state;
pub mod load;
pub mod metrics;
pub mod names;
pub mod netns;
pub mod node;
pub mod primary;
pub mod process;
pub mod prometheus;
pub mod python;
pub mod recording;
pub mod scenario;
pub mod scratch;
pub mod shadow;
pub mod tcp;
pub mod wait;
pub mod wire;

pub use client::{Client, Request};
pub use daemon::{Daemon, DaemonConfig, MirrorRule, ShadowTarget};
pub use kernel_state::KernelState;
pub use metrics::Metrics;
pub use names::Cni;
pub use netns::Netns;
pub use node::{Node, Pod, Service};
pub use primary::PrimaryServer;
pub use shadow::{Behaviour, ShadowServer};
pub use tcp::{ConnectOptions, Server};
