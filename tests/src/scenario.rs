//! The mirroring set-up most tests start from: a node with pod "a", a recording primary on
//! 10.96.0.10:8080 and [fd00:96::10]:8080, a recording shadow (the remote cluster ingress) on
//! 172.20.0.10:8080, and the daemon in the node intercepting the primary's port and copying every
//! request to the shadow target [`TARGET`].

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;

use crate::daemon::{Daemon, DaemonConfig, ShadowTarget};
use crate::metrics::MirrorCounters;
use crate::node::{Family, Node, Pod};
use crate::primary::PrimaryServer;
use crate::shadow::{Behaviour, ShadowServer};

/// The port the primary listens on (intercepted).
pub const PRIMARY_PORT: u16 = 8080;
/// The port the shadow listens on.
pub const SHADOW_PORT: u16 = 8080;
/// The shadow target's name in the daemon's config (the `target` label of its metrics).
pub const TARGET: &str = "staging";

/// Node, servers and daemon. Fields drop in order: the daemon first (closing its connections to
/// both servers), then the servers, then the namespaces.
pub struct Mirroring {
    pub daemon: Daemon,
    pub shadow: ShadowServer,
    pub primary: PrimaryServer,
    pub node: Node,
}

impl Mirroring {
    /// The target every test starts from: [`TARGET`] at the shadow, defaults otherwise.
    pub fn target() -> ShadowTarget {
        ShadowTarget::new(TARGET, shadow_address())
    }

    /// Intercepts the primary's port and copies every request to `target`.
    pub fn config(target: ShadowTarget) -> DaemonConfig {
        DaemonConfig::intercepting_primary(&[PRIMARY_PORT])
            .drain_timeout("2s")
            .mirror_all_to(target)
    }

    /// Builds everything with the shadow behaving as `behaviour` and the daemon on `config`.
    pub fn start(binary: &Path, behaviour: Behaviour, config: &DaemonConfig) -> Result<Mirroring> {
        Mirroring::start_with_shadow_at(binary, behaviour, shadow_address(), config)
    }

    /// [`Mirroring::start`] with the shadow listening on `shadow` (one of its addresses, e.g.
    /// [`shadow_address_v6`]).
    pub fn start_with_shadow_at(
        binary: &Path,
        behaviour: Behaviour,
        shadow: SocketAddr,
        config: &DaemonConfig,
    ) -> Result<Mirroring> {
        Mirroring::build(behaviour, shadow, |node| {
            Daemon::start(binary, node.netns(), config)
        })
    }

    /// [`Mirroring::start`] with the daemon given `--config path`, a file the caller owns (and
    /// may change while the daemon runs), whose admin endpoint is `admin`.
    pub fn start_with_config_file(
        binary: &Path,
        behaviour: Behaviour,
        path: &Path,
        admin: SocketAddr,
    ) -> Result<Mirroring> {
        Mirroring::build(behaviour, shadow_address(), |node| {
            Daemon::start_with_config_file(binary, node.netns(), path, admin)
        })
    }

    fn build(
        behaviour: Behaviour,
        shadow: SocketAddr,
        start_daemon: impl FnOnce(&Node) -> Result<Daemon>,
    ) -> Result<Mirroring> {
        let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
        let primary = PrimaryServer::start(
            node.primary().netns(),
            &[
                node.primary().addr(Family::V4, PRIMARY_PORT),
                node.primary().addr(Family::V6, PRIMARY_PORT),
            ],
        )?;
        let shadow = ShadowServer::start(node.shadow().netns(), shadow, behaviour)?;
        let daemon = start_daemon(&node)?;
        Ok(Mirroring {
            daemon,
            shadow,
            primary,
            node,
        })
    }

    /// The pod the clients run in.
    pub fn pod(&self) -> &Pod {
        self.node.pod("a")
    }

    /// The primary's address of `family` (what the pod connects to).
    pub fn primary_address(&self, family: Family) -> SocketAddr {
        self.node.primary().addr(family, PRIMARY_PORT)
    }

    /// The engine's and [`TARGET`]'s counters now.
    pub fn counters(&self) -> Result<MirrorCounters> {
        MirrorCounters::from_metrics(&self.daemon.metrics()?, TARGET)
    }
}

/// Where the shadow listens.
pub fn shadow_address() -> SocketAddr {
    SocketAddr::new(crate::node::SHADOW_V4.into(), SHADOW_PORT)
}

/// The shadow's IPv6 address and port.
pub fn shadow_address_v6() -> SocketAddr {
    SocketAddr::new(crate::node::SHADOW_V6.into(), SHADOW_PORT)
}

/// A distinct, random-looking W3C trace id (32 lowercase hex digits) for each `n`.
pub fn trace_id(n: u64) -> String {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    format!("{:016x}{:016x}", mix(2 * n), mix(2 * n + 1))
}

/// The trace id of a `traceparent` value (`version-traceid-parentid-flags`).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    traceparent.split('-').nth(1)
}

/// The daemon's documented consistent-sampling decision for a trace id (or `x-request-id`):
/// copied when `fnv1a(key) % 1_000_000 < percent * 10_000`.
pub fn sampled_consistently(key: &str, percent: f64) -> bool {
    crate::wire::fnv1a(key.as_bytes()) % 1_000_000 < (percent * 10_000.0) as u64
}
