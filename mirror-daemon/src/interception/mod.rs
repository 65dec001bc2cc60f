//! Interception: everything the daemon puts in the kernel so that selected pod flows reach its
//! listeners, and takes out again at exit.
//!
//! Order of set-up (each step undone in reverse by [`Interception::shutdown`]):
//! 1. check that the kernel has what the programs need (see [`support`]), load the embedded
//!    eBPF object and fill its maps (settings, intercept rules);
//! 2. turn TCP early demux off in this network namespace (see [`sysctl`]);
//! 3. install policy routing for the mark (see [`routing`]);
//! 4. attach the sk_lookup program to the namespace and the TC program to every watched
//!    interface, now and as they appear (see [`links`]).
//!
//! Listeners are registered separately ([`Interception::register_listener`]); until then, and
//! whenever the slots are empty, the kernel side passes every packet untouched.

pub mod attach;
pub mod links;
mod object;
pub mod routing;
pub mod support;
pub mod sysctl;

use std::{
    net::IpAddr,
    os::fd::AsRawFd,
    sync::{Arc, Mutex},
};

use aya::maps::{lpm_trie::Key, Array, LpmTrie, MapData, PerCpuArray, SockMap};
use mirror_common::{counter, InterceptKey, InterceptValue, Settings, ANY_PORT, STEER_GENERATION};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Already says "kernel ...".
    #[error("{0}")]
    Unsupported(#[from] support::Unsupported),
    #[error("kernel: {0}")]
    Object(#[from] object::Error),
    #[error("kernel: map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("kernel: {0}")]
    Attach(#[from] attach::Error),
    #[error("kernel: policy routing: {0}")]
    Routing(#[from] routing::Error),
    #[error("kernel: {0}")]
    Sysctl(#[from] sysctl::Error),
    #[error("kernel: watching interfaces: {0}")]
    Links(#[from] links::Error),
    #[error("kernel: reading the eBPF programs' log: {0}")]
    Log(String),
}

impl Error {
    /// Whether the failure comes from missing privileges rather than a missing kernel feature.
    pub fn is_permission_denied(&self) -> bool {
        // EPERM only: the verifier reports a rejected program as EACCES.
        format!("{self:?}").contains("os error 1)")
    }
}

/// The kernel side, set up and owned by the daemon.
pub struct Interception {
    attacher: Arc<Mutex<attach::Attacher>>,
    rules: Mutex<Rules>,
    listeners: Mutex<SockMap<MapData>>,
    heartbeat: Mutex<Array<MapData, u64>>,
    counters: PerCpuArray<MapData, u64>,
    routing: routing::PolicyRouting,
    early_demux: sysctl::EarlyDemux,
    watcher: CancellationToken,
}

/// The intercept-rule trie, the settings, and which generation of rules is in force.
struct Rules {
    trie: LpmTrie<MapData, InterceptKey, InterceptValue>,
    settings: Array<MapData, Settings>,
    generation: u8,
    config: config::Interception,
}

impl Interception {
    /// Sets up interception as described in the module documentation.
    pub async fn start(config: &config::Interception) -> Result<Self, Error> {
        support::check(support::FEATURES)?;
        let mut ebpf = object::load()?;
        let kernel_log =
            aya_log::EbpfLogger::init(&mut ebpf).map_err(|e| Error::Log(e.to_string()))?;
        let mut rules = Rules {
            trie: LpmTrie::try_from(take_map(&mut ebpf, mirror_common::maps::INTERCEPT_RULES)?)
                .map_err(|source| map_error(mirror_common::maps::INTERCEPT_RULES, source))?,
            settings: Array::try_from(take_map(&mut ebpf, mirror_common::maps::SETTINGS)?)
                .map_err(|source| map_error(mirror_common::maps::SETTINGS, source))?,
            generation: 0,
            config: config.clone(),
        };
        rules.write(0)?;
        let listeners = SockMap::try_from(take_map(&mut ebpf, mirror_common::maps::LISTENERS)?)
            .map_err(|source| map_error(mirror_common::maps::LISTENERS, source))?;
        let heartbeat = Array::try_from(take_map(&mut ebpf, mirror_common::maps::HEARTBEAT)?)
            .map_err(|source| map_error(mirror_common::maps::HEARTBEAT, source))?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, mirror_common::maps::COUNTERS)?)
            .map_err(|source| map_error(mirror_common::maps::COUNTERS, source))?;

        let early_demux = sysctl::EarlyDemux::disable()?;
        let routing = match routing::PolicyRouting::install(config).await {
            Ok(routing) => routing,
            Err(e) => {
                early_demux.restore(&config.rules);
                return Err(e.into());
            }
        };
        let attached = async {
            let attacher = Arc::new(Mutex::new(attach::Attacher::new(ebpf, config.clone())?));
            let watcher = CancellationToken::new();
            links::watch(attacher.clone(), watcher.clone()).await?;
            Ok::<_, Error>((attacher, watcher))
        };
        let (attacher, watcher) = match attached.await {
            Ok(attached) => attached,
            Err(e) => {
                // Programs and links go with the object; the rest is undone by hand.
                routing.remove().await;
                early_demux.restore(&config.rules);
                return Err(e);
            }
        };
        forward_kernel_log(kernel_log, watcher.clone());
        {
            let attacher = lock(&attacher);
            info!(
                mode = %attacher.mode(),
                interfaces = attacher.attached_count(),
                "interception attached"
            );
        }
        Ok(Self {
            attacher,
            listeners: Mutex::new(listeners),
            heartbeat: Mutex::new(heartbeat),
            counters,
            routing,
            early_demux,
            watcher,
            rules: Mutex::new(rules),
        })
    }

    /// Replaces the intercept rules, the watchdog timeout and the interface globs.
    ///
    /// The new rules are written beside the old ones under the other generation, and one update
    /// of the settings switches the classifier to them: no packet sees a mix of the two sets.
    /// Mark, table and rule priority cannot change while running (the caller checks).
    pub fn update(&self, config: &config::Interception) -> Result<(), Error> {
        {
            let mut rules = lock(&self.rules);
            let next = rules.generation ^ 1;
            rules.config = config.clone();
            rules.write(next)?;
        }
        lock(&self.attacher).set_config(config.clone());
        Ok(())
    }

    /// Puts `listener` in its SOCKMAP slot: from now on, selected flows of its family reach it.
    pub fn register_listener(&self, slot: u32, listener: &impl AsRawFd) -> Result<(), Error> {
        lock(&self.listeners)
            .set(slot, &listener.as_raw_fd(), 0)
            .map_err(|source| map_error(mirror_common::maps::LISTENERS, source))
    }

    /// Empties a SOCKMAP slot: new flows of that family go direct.
    pub fn unregister_listener(&self, slot: u32) {
        // Fails only when the slot is already empty.
        let _ = lock(&self.listeners).clear_index(&slot);
    }

    /// Records that the accept path made progress now (read by the TC program's watchdog).
    pub fn beat(&self) {
        self.beat_aged(std::time::Duration::ZERO);
    }

    /// Records that the accept path made progress `age` ago: the oldest of the workers' beats.
    pub fn beat_aged(&self, age: std::time::Duration) {
        let now = monotonic_ns().saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX));
        if let Err(e) = lock(&self.heartbeat).set(0, now, 0) {
            warn!(error = %e, "kernel: could not write heartbeat");
        }
    }

    /// Kernel-side counters, summed over CPUs, in [`counter::NAMES`] order.
    pub fn kernel_counters(&self) -> [u64; counter::COUNT as usize] {
        let mut out = [0; counter::COUNT as usize];
        for (index, slot) in out.iter_mut().enumerate() {
            if let Ok(values) = self.counters.get(&(index as u32), 0) {
                *slot = values.iter().sum();
            }
        }
        out
    }

    /// Number of interfaces the TC program is attached to.
    pub fn attached_interfaces(&self) -> usize {
        lock(&self.attacher).attached_count()
    }

    /// Removes everything interception added: programs, filters, qdiscs, rules, routes.
    pub async fn shutdown(&self) {
        self.watcher.cancel();
        let created_clsact = lock(&self.attacher).detach_all();
        links::remove_clsact(&created_clsact).await;
        self.routing.remove().await;
        self.early_demux.restore(&lock(&self.rules).config.rules);
        info!("interception removed");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain kernel handles behind, still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn map_error(name: &'static str, source: aya::maps::MapError) -> Error {
    Error::Map { name, source }
}

fn take_map(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<aya::maps::Map, Error> {
    ebpf.take_map(name)
        .ok_or(Error::Object(object::Error::Missing(name)))
}

impl Rules {
    /// Writes the configured rules under `generation` and adds them to the steering set, switches
    /// the classifier to `generation`, then removes the entries of the other one.
    fn write(&mut self, generation: u8) -> Result<(), Error> {
        let trie_name = mirror_common::maps::INTERCEPT_RULES;
        // Entries of `generation` left by an interrupted earlier write go first.
        self.remove_all_but(self.generation)?;
        for (key, value) in rule_entries(&self.config.rules, generation)
            .into_iter()
            .chain(rule_entries(&self.config.rules, STEER_GENERATION))
        {
            self.trie
                .insert(&key, value, 0)
                .map_err(|source| map_error(trie_name, source))?;
        }
        let settings = Settings {
            mark: self.config.fwmark,
            mark_mask: self.config.fwmark,
            watchdog_timeout_ns: u64::try_from(self.config.watchdog_timeout.as_nanos())
                .unwrap_or(u64::MAX),
            rules_generation: u32::from(generation),
            _pad: 0,
        };
        self.settings
            .set(0, settings, 0)
            .map_err(|source| map_error(mirror_common::maps::SETTINGS, source))?;
        self.generation = generation;
        self.remove_all_but(generation)
    }

    /// Removes the entries of every selecting generation but `keep` (steering entries stay).
    fn remove_all_but(&mut self, keep: u8) -> Result<(), Error> {
        let stale: Vec<Key<InterceptKey>> = self
            .trie
            .keys()
            .filter_map(Result::ok)
            .filter(|key| ![keep, STEER_GENERATION].contains(&key.data().generation))
            .collect();
        for key in stale {
            self.trie
                .remove(&key)
                .map_err(|source| map_error(mirror_common::maps::INTERCEPT_RULES, source))?;
        }
        Ok(())
    }
}

/// The LPM entries that express `rules`: one per (CIDR, port), or one under [`ANY_PORT`].
pub fn rule_entries(
    rules: &[config::InterceptRule],
    generation: u8,
) -> Vec<(Key<InterceptKey>, InterceptValue)> {
    let mut entries = Vec::new();
    for (rule_id, rule) in rules.iter().enumerate() {
        let value = InterceptValue {
            rule_id: rule_id as u32,
        };
        let ports: &[u16] = if rule.ports.is_empty() {
            &[ANY_PORT]
        } else {
            &rule.ports
        };
        for &port in ports {
            let key = match rule.cidr.addr() {
                IpAddr::V4(addr) => Key::new(
                    InterceptKey::v4_prefix_len(rule.cidr.prefix_len()),
                    InterceptKey::v4(generation, port, addr.octets()),
                ),
                IpAddr::V6(addr) => Key::new(
                    InterceptKey::v6_prefix_len(rule.cidr.prefix_len()),
                    InterceptKey::v6(generation, port, addr.octets()),
                ),
            };
            entries.push((key, value));
        }
    }
    entries
}

/// Forwards the eBPF programs' aya-log records into this process's logs (through the `log`
/// facade, which tracing-subscriber bridges) until `stop` is cancelled.
fn forward_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>, stop: CancellationToken) {
    // SAFETY: the logger owns its ring buffer's fd, which stays open and the same for as long
    // as the logger lives, and the AsyncFd owns the logger.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut readable = match registered {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "kernel: the eBPF programs' log will not be shown");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                guard = readable.readable_mut() => match guard {
                    Ok(mut guard) => {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                    Err(_) => break,
                },
            }
        }
    });
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads.
fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64) * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InterceptRule;

    #[test]
    fn each_port_of_a_rule_becomes_one_entry() {
        let rules = [InterceptRule {
            cidr: "10.96.0.0/12".parse().expect("cidr"),
            ports: vec![80, 8080],
        }];
        let entries = rule_entries(&rules, 1);
        assert_eq!(entries.len(), 2);
        let (key, value) = &entries[1];
        let (prefix_len, data) = (key.prefix_len(), key.data());
        assert_eq!(prefix_len, 8 + 16 + 96 + 12);
        assert_eq!(data, InterceptKey::v4(1, 8080, [10, 96, 0, 0]));
        assert_eq!(value.rule_id, 0);
    }

    #[test]
    fn a_rule_without_ports_is_stored_under_any_port() {
        let rules = [InterceptRule {
            cidr: "fd00:96::/64".parse().expect("cidr"),
            ports: vec![],
        }];
        let entries = rule_entries(&rules, 0);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0.prefix_len(), 8 + 16 + 64);
        assert_eq!(entries[0].0.data().port, ANY_PORT.to_be_bytes());
    }
}
