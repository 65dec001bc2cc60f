//! Types and constants shared by the eBPF programs (`mirror-ebpf`) and the daemon.
//!
//! Everything here is `#[repr(C)]`, `Copy`, made of integers only, with explicit padding, so the
//! kernel side and the user side agree on every byte. The daemon checks at start (and a test checks
//! at build time) that the names below exist in the embedded object.
#![no_std]

/// The TC classifier attached at ingress of each pod's host-side interface.
pub const TC_PROGRAM: &str = "mirror_tc_ingress";
/// The sk_lookup program attached to the node's network namespace.
pub const SK_LOOKUP_PROGRAM: &str = "mirror_sk_lookup";

/// Map names, as they appear in the object file.
pub mod maps {
    /// LPM trie of [`InterceptKey`](crate::InterceptKey) -> [`InterceptValue`](crate::InterceptValue).
    pub const INTERCEPT_RULES: &str = "INTERCEPT_RULES";
    /// SOCKMAP holding the daemon's transparent listeners at [`LISTENER_V4`](crate::LISTENER_V4)
    /// and [`LISTENER_V6`](crate::LISTENER_V6). An empty slot means "no daemon": pass traffic.
    pub const LISTENERS: &str = "LISTENERS";
    /// LRU hash of [`FlowKey`](crate::FlowKey): SYNs the classifier selected, for sk_lookup.
    pub const PENDING_SYNS: &str = "PENDING_SYNS";
    /// Array of one [`Settings`](crate::Settings).
    pub const SETTINGS: &str = "SETTINGS";
    /// Array of one `u64`: CLOCK_MONOTONIC nanoseconds of the daemon's last accept-loop beat.
    pub const HEARTBEAT: &str = "HEARTBEAT";
    /// Per-CPU array of `u64` counters indexed by [`counter`](crate::counter).
    pub const COUNTERS: &str = "COUNTERS";
    /// Hash of interface index -> 1: the interfaces whose SYNs are selected. An interface the
    /// program is attached to but that is not here (its glob was removed by a reload) only steers
    /// the flows it already has.
    pub const SELECTING: &str = "SELECTING";
}

/// SOCKMAP slot of the IPv4 listener.
pub const LISTENER_V4: u32 = 0;
/// SOCKMAP slot of the IPv6 listener.
pub const LISTENER_V6: u32 = 1;
/// Number of SOCKMAP slots.
pub const LISTENER_SLOTS: u32 = 2;

/// Capacity of the intercept-rule trie.
pub const MAX_INTERCEPT_RULES: u32 = 16384;
/// Capacity of the selecting-interfaces hash.
pub const MAX_INTERFACES: u32 = 8192;
/// The generation under which every rule ever in force since the daemon started is kept: later
/// packets of a flow are steered if its destination matches one of them, so a reload that
/// removes a rule does not cut the flows it already intercepted.
pub const STEER_GENERATION: u8 = 0xff;
/// Capacity of the pending-SYN LRU (handshakes in flight on one node).
pub const MAX_PENDING_SYNS: u32 = 65536;

/// Kernel-side counters (indices into the per-CPU `COUNTERS` array).
pub mod counter {
    /// A SYN matched an intercept rule and was marked for the daemon.
    pub const SYN_MATCHED: u32 = 0;
    /// A SYN matched, but no listener was registered: passed untouched (fail-open).
    pub const PASSED_NO_LISTENER: u32 = 1;
    /// A SYN matched, but the daemon's heartbeat was stale: passed untouched (watchdog).
    pub const PASSED_WATCHDOG: u32 = 2;
    /// A later packet of an intercepted flow was steered to its socket.
    pub const STEERED: u32 = 3;
    /// sk_lookup assigned a selected SYN to the listener.
    pub const ASSIGNED: u32 = 4;
    /// sk_lookup found a selected SYN but could not assign it (listener gone meanwhile).
    pub const ASSIGN_FAILED: u32 = 5;
    /// Number of counters.
    pub const COUNT: u32 = 6;
    /// Names used for metrics and logs, in index order.
    pub const NAMES: [&str; COUNT as usize] = [
        "syn_matched",
        "passed_no_listener",
        "passed_watchdog",
        "steered",
        "assigned",
        "assign_failed",
    ];
}

/// Bits of the LPM key that cover the rule generation.
pub const GENERATION_BITS: u32 = 8;
/// Bits of the LPM key that cover the port.
pub const PORT_BITS: u32 = 16;
/// Bits of the LPM key that cover the address (IPv4 is stored IPv4-mapped, `::ffff:a.b.c.d`).
pub const ADDR_BITS: u32 = 128;
/// Prefix bits an IPv4 address carries before its own prefix (`::ffff:0:0/96`).
pub const V4_MAPPED_BITS: u32 = 96;
/// Port value meaning "any port" in an intercept rule.
pub const ANY_PORT: u16 = 0;

/// Data part of an intercept-rule LPM key: rule generation, destination port, destination address.
///
/// The generation comes first so that a reload can write a whole new rule set beside the old one
/// and switch to it with one update of [`Settings::rules_generation`]. The port comes before the
/// address so that a prefix can cover "this port, this CIDR"; rules for every port are stored
/// under [`ANY_PORT`] and looked up second.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterceptKey {
    /// The rule set this entry belongs to (see [`Settings::rules_generation`]).
    pub generation: u8,
    /// Destination port, network byte order.
    pub port: [u8; 2],
    /// Destination address, IPv6 or IPv4-mapped IPv6, network byte order.
    pub addr: [u8; 16],
}

impl InterceptKey {
    /// Full-length prefix for a lookup key.
    pub const LOOKUP_PREFIX_LEN: u32 = GENERATION_BITS + PORT_BITS + ADDR_BITS;

    /// Prefix length for a rule on an IPv4 CIDR of `prefix` bits.
    pub const fn v4_prefix_len(prefix: u8) -> u32 {
        GENERATION_BITS + PORT_BITS + V4_MAPPED_BITS + prefix as u32
    }

    /// Prefix length for a rule on an IPv6 CIDR of `prefix` bits.
    pub const fn v6_prefix_len(prefix: u8) -> u32 {
        GENERATION_BITS + PORT_BITS + prefix as u32
    }

    /// Key data for an IPv4 destination (address in network byte order).
    pub const fn v4(generation: u8, port: u16, addr: [u8; 4]) -> Self {
        Self {
            generation,
            port: port.to_be_bytes(),
            addr: [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
            ],
        }
    }

    /// Key data for an IPv6 destination (address in network byte order).
    pub const fn v6(generation: u8, port: u16, addr: [u8; 16]) -> Self {
        Self {
            generation,
            port: port.to_be_bytes(),
            addr,
        }
    }
}

/// Value of an intercept rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterceptValue {
    /// Index of the rule in the daemon's config, for counters and logs.
    pub rule_id: u32,
}

/// Settings the daemon writes once at start (and again on reload).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Mark value set on selected packets (policy routing sends them to `lo`).
    pub mark: u32,
    /// Bits of the mark the daemon owns; other bits are preserved.
    pub mark_mask: u32,
    /// A SYN is passed untouched when the heartbeat is older than this; 0 disables the watchdog.
    pub watchdog_timeout_ns: u64,
    /// The generation of intercept rules in force (low 8 bits; see [`InterceptKey::generation`]).
    pub rules_generation: u32,
    /// Explicit padding to 8-byte alignment.
    pub _pad: u32,
}

/// Address family values used in [`FlowKey::family`].
pub const FAMILY_V4: u32 = 2;
/// Address family values used in [`FlowKey::family`].
pub const FAMILY_V6: u32 = 10;

/// A TCP flow as the node sees it: remote = the pod (source), local = original destination.
///
/// IPv4 addresses use the first word; the others are zero. Ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub remote_addr: [u32; 4],
    pub local_addr: [u32; 4],
    pub remote_port: u16,
    pub local_port: u16,
    pub family: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY (all impls): the types are repr(C), Copy, made of integers with no implicit padding,
    // so every bit pattern is valid and none is uninitialised.
    unsafe impl aya::Pod for super::InterceptKey {}
    unsafe impl aya::Pod for super::InterceptValue {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::FlowKey {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn map_types_have_no_implicit_padding() {
        assert_eq!(size_of::<InterceptKey>(), 1 + 2 + 16);
        assert_eq!(size_of::<InterceptValue>(), 4);
        assert_eq!(size_of::<Settings>(), 4 + 4 + 8 + 4 + 4);
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 4);
    }

    #[test]
    fn v4_keys_are_ipv4_mapped() {
        let key = InterceptKey::v4(1, 8080, [10, 96, 0, 10]);
        assert_eq!(key.generation, 1);
        assert_eq!(key.port, [0x1f, 0x90]);
        assert_eq!(&key.addr[10..], &[0xff, 0xff, 10, 96, 0, 10]);
        assert_eq!(InterceptKey::v4_prefix_len(24), 8 + 16 + 96 + 24);
        assert_eq!(InterceptKey::v6_prefix_len(64), 8 + 16 + 64);
    }
}
