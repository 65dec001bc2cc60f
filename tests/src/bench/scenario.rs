//! The test bed (one node, built once) and one run of one scenario on it.
//!
//! ```text
//!  pod ns "a"            NODE ns                               primary ns
//!  load generator ──▶ [daemon, or nginx proxy at 10.244.1.1] ──▶ nginx 10.96.0.10:8080 (1 KiB)
//!                                   │ copies                   shadow ns
//!                                   └────────────────────────▶ nginx 172.20.0.10:8080 (healthy)
//!                                                              harness server :8081 (1 s delay)
//!                                                              :8082 blackholed (SYNs dropped)
//! ```
//!
//! Each run starts the scenario's proxy fresh (so its peak RSS is its own), runs the phases (at a
//! fixed rate, then at saturation; keep-alive and new connections), and stops it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mirror_tests::daemon::{Daemon, DaemonConfig, MirrorRule, ShadowTarget};
use mirror_tests::node::{Family, Node, SHADOW_V4};
use mirror_tests::{Behaviour, ShadowServer};

use super::load::{self, ConstantRate, LoadResult, Mode, Wrk};
use super::nginx::{self, MirrorTo, Nginx, Role};
use super::procstat::{self, MachineCpu};

pub const PRIMARY_PORT: u16 = 8080;
const HEALTHY_PORT: u16 = 8080;
const SLOW_PORT: u16 = 8081;
const BLACKHOLE_PORT: u16 = 8082;
const PROXY_PORT: u16 = 8888;
/// The slow shadow's delay.
pub const SLOW_DELAY: Duration = Duration::from_secs(1);

/// What stands between the pod and the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The daemon not running.
    Direct,
    /// The daemon intercepting, no mirror rule.
    Intercept,
    /// The daemon copying every request to the healthy shadow.
    Mirror,
    /// The daemon copying every request to the slow and to the blackholed shadow.
    Degraded,
    /// nginx as an explicit proxy, `mirror` to the healthy shadow.
    NginxMirror,
    /// nginx as an explicit proxy, `mirror` to the slow and the blackholed shadow.
    NginxDegraded,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Direct,
        Scenario::Intercept,
        Scenario::Mirror,
        Scenario::Degraded,
        Scenario::NginxMirror,
        Scenario::NginxDegraded,
    ];

    /// The name on the command line and in the tables.
    pub fn key(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Intercept => "intercept",
            Scenario::Mirror => "mirror",
            Scenario::Degraded => "mirror-degraded",
            Scenario::NginxMirror => "nginx-mirror",
            Scenario::NginxDegraded => "nginx-degraded",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Direct => "pod -> primary, daemon not running",
            Scenario::Intercept => "through the daemon, no mirror rule (interception only)",
            Scenario::Mirror => "through the daemon, 100 % mirrored to the healthy shadow",
            Scenario::Degraded => {
                "through the daemon, 100 % mirrored to the slow (1 s) and the blackholed shadow"
            }
            Scenario::NginxMirror => "nginx explicit proxy, `mirror` to the healthy shadow",
            Scenario::NginxDegraded => {
                "nginx explicit proxy, `mirror` to the slow (1 s) and the blackholed shadow"
            }
        }
    }

    pub fn parse(key: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.key() == key)
    }

    /// Copies each request should make.
    pub fn copies_per_request(self) -> u64 {
        match self {
            Scenario::Direct | Scenario::Intercept => 0,
            Scenario::Mirror | Scenario::NginxMirror => 1,
            Scenario::Degraded | Scenario::NginxDegraded => 2,
        }
    }
}

/// Knobs of a bench run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub rate: f64,
    pub rate_duration: Duration,
    pub rate_connections: usize,
    pub saturation_duration: Duration,
    pub wrk_connections: usize,
    pub warmup: Duration,
    /// Pin the load generator to CPU 0 and the primary and shadow to CPU 1.
    pub pin: bool,
    pub nginx_workers: usize,
    pub daemon: PathBuf,
    pub work_dir: PathBuf,
}

impl Settings {
    fn load_cpu(&self) -> Option<usize> {
        self.pin.then_some(0)
    }

    fn load_cpus(&self) -> Option<&'static str> {
        self.pin.then_some("0")
    }

    fn server_cpus(&self) -> Option<&'static str> {
        self.pin.then_some("1")
    }
}

/// The node with its servers, for the whole bench.
pub struct Bed {
    // Drop order: servers before the namespaces they live in.
    slow: ShadowServer,
    _blackhole: ShadowServer,
    healthy_shadow: Nginx,
    primary_server: Nginx,
    node: Node,
    script: PathBuf,
}

impl Bed {
    pub fn build(settings: &Settings) -> Result<Bed> {
        let node = Node::new()?.with_pod("a")?.with_primary()?.with_shadow()?;
        let pod = node.pod("a").netns().clone();
        // Many short connections from one address: a wide port range, TIME_WAIT reuse.
        pod.sysctl("net/ipv4/ip_local_port_range", "1024 65000")?;
        pod.sysctl("net/ipv4/tcp_tw_reuse", "1")?;
        for netns in [node.netns(), node.primary().netns(), node.shadow().netns()] {
            netns.sysctl("net/core/somaxconn", "4096")?;
            netns.sysctl("net/ipv4/tcp_max_syn_backlog", "4096")?;
        }
        std::fs::create_dir_all(&settings.work_dir)?;
        let primary_addresses = [
            node.primary().addr(Family::V4, PRIMARY_PORT),
            node.primary().addr(Family::V6, PRIMARY_PORT),
        ];
        let primary = Nginx::start(
            node.primary().netns(),
            &Role::Primary {
                listen: &primary_addresses,
            },
            &settings.work_dir.join("nginx-primary"),
            settings.server_cpus(),
            primary_addresses[0],
        )?;
        let healthy_address = shadow(HEALTHY_PORT);
        let healthy = Nginx::start(
            node.shadow().netns(),
            &Role::Shadow {
                listen: healthy_address,
            },
            &settings.work_dir.join("nginx-shadow"),
            settings.server_cpus(),
            healthy_address,
        )?;
        let slow = ShadowServer::start(
            node.shadow().netns(),
            shadow(SLOW_PORT),
            Behaviour::Delay(SLOW_DELAY),
        )?;
        let blackhole = ShadowServer::start(
            node.shadow().netns(),
            shadow(BLACKHOLE_PORT),
            Behaviour::Blackhole,
        )?;
        let script = settings.work_dir.join("wrk-report.lua");
        std::fs::write(&script, load::WRK_SCRIPT)?;
        Ok(Bed {
            slow,
            _blackhole: blackhole,
            healthy_shadow: healthy,
            primary_server: primary,
            node,
            script,
        })
    }

    /// CPU seconds used so far by everything the bench runs besides the proxy, by part.
    fn bed_cpu_seconds(&self) -> BedCpu {
        let of = |pids: Vec<u32>| procstat::cpu_seconds_of(&pids).unwrap_or(f64::NAN);
        BedCpu {
            client: procstat::own_and_children_cpu_seconds(),
            primary: of(self.primary_server.pids()),
            shadow: of(self.healthy_shadow.pids()),
        }
    }

    fn primary(&self) -> SocketAddr {
        self.node.primary().addr(Family::V4, PRIMARY_PORT)
    }

    fn proxy(&self) -> SocketAddr {
        // The pod's gateway: the node's end of the pod's veth.
        let pod = self.node.pod("a").v4().octets();
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(pod[0], pod[1], pod[2], 1)),
            PROXY_PORT,
        )
    }

    /// Copies that have reached the shadows so far.
    fn delivered(&self) -> u64 {
        nginx::shadow_requests(self.node.shadow().netns(), shadow(HEALTHY_PORT)).unwrap_or(0)
            + self.slow.recording().count() as u64
    }

    /// Waits (up to `limit`) until no more copies arrive for 200 ms.
    fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = self.delivered();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.delivered();
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Runs `scenario` once: starts its proxy, runs every phase, stops it.
    pub fn run(&self, scenario: Scenario, settings: &Settings) -> Result<Run> {
        let loadavg = procstat::loadavg();
        let proxy = Proxy::start(self, scenario, settings)?;
        let target = match scenario {
            Scenario::NginxMirror | Scenario::NginxDegraded => self.proxy(),
            _ => self.primary(),
        };
        let pod = self.node.pod("a").netns();
        if !settings.warmup.is_zero() {
            load::wrk(&Wrk {
                netns: pod,
                target,
                connections: settings.wrk_connections,
                duration: settings.warmup,
                mode: Mode::KeepAlive,
                cpus: settings.load_cpus(),
                script: &self.script,
            })
            .context("warm-up")?;
            self.settle(Duration::from_secs(1));
        }
        let mut phases = Vec::new();
        let mut rss = Vec::new();
        for kind in [Kind::Rate, Kind::Saturation] {
            let sampler = RssSampler::start(proxy.pids());
            for mode in Mode::ALL {
                let before = (proxy.cpu_seconds(), self.delivered(), MachineCpu::now());
                let switches_before = proxy.context_switches();
                let bed_before = self.bed_cpu_seconds();
                let result = match kind {
                    Kind::Rate => load::constant_rate(&ConstantRate {
                        netns: pod,
                        target,
                        rate: settings.rate,
                        duration: settings.rate_duration,
                        mode,
                        connections: settings.rate_connections,
                        cpu: settings.load_cpu(),
                    }),
                    Kind::Saturation => load::wrk(&Wrk {
                        netns: pod,
                        target,
                        connections: settings.wrk_connections,
                        duration: settings.saturation_duration,
                        mode,
                        cpus: settings.load_cpus(),
                        script: &self.script,
                    }),
                }
                .with_context(|| format!("{} {:?} {}", scenario.key(), kind, mode.label()))?;
                let machine_busy = before.2.busy_share(&MachineCpu::now());
                let bed = self.bed_cpu_seconds().since(&bed_before);
                if scenario.copies_per_request() > 0 {
                    self.settle(Duration::from_secs(1));
                }
                let proxy_cpu = proxy.cpu_seconds() - before.0;
                let proxy_switches = proxy.context_switches().saturating_sub(switches_before);
                let delivered = self.delivered().saturating_sub(before.1);
                phases.push(Phase {
                    kind,
                    mode,
                    load: result,
                    proxy_cpu,
                    proxy_switches,
                    bed_cpu: bed.client + bed.primary + bed.shadow + proxy_cpu,
                    primary_cpu: bed.primary,
                    shadow_cpu: bed.shadow,
                    copies_expected: 0,
                    copies_delivered: delivered,
                    machine_busy,
                });
                if let Some(phase) = phases.last_mut() {
                    phase.copies_expected = phase.load.completed * scenario.copies_per_request();
                }
            }
            rss.push(sampler.finish().filter(|&bytes| bytes > 0));
        }
        let daemon_drops = proxy.daemon_drops();
        Ok(Run {
            scenario,
            loadavg,
            phases,
            rss_at_rate: rss.first().copied().flatten(),
            rss_at_saturation: rss.get(1).copied().flatten(),
            peak_rss: proxy.peak_rss(),
            daemon_drops,
        })
    }
}

fn shadow(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SHADOW_V4), port)
}

/// CPU seconds of the bed's parts other than the proxy.
#[derive(Clone, Copy, Debug)]
struct BedCpu {
    /// The bench's own process and its waited-for children: the load generator (wrk, or the
    /// constant-rate client's threads) and the in-process slow and blackholed shadows.
    client: f64,
    primary: f64,
    shadow: f64,
}

impl BedCpu {
    fn since(&self, before: &BedCpu) -> BedCpu {
        BedCpu {
            client: self.client - before.client,
            primary: self.primary - before.primary,
            shadow: self.shadow - before.shadow,
        }
    }
}

/// The phase of a run: latency at a fixed rate, or throughput at saturation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rate,
    Saturation,
}

/// One measured phase.
#[derive(Clone, Debug)]
pub struct Phase {
    pub kind: Kind,
    pub mode: Mode,
    pub load: LoadResult,
    /// CPU seconds the daemon (or nginx proxy) used during the phase.
    pub proxy_cpu: f64,
    /// Context switches of the daemon's (or nginx proxy's) threads during the phase.
    pub proxy_switches: u64,
    /// CPU seconds of everything in the bed during the phase: load generator, primary, shadows and
    /// proxy (kernel work done in their context included; other processes' excluded).
    pub bed_cpu: f64,
    /// Of which the primary server's (nginx) ...
    pub primary_cpu: f64,
    /// ... and the healthy shadow's (nginx; the slow and blackholed shadows live in the bench's
    /// own process, with the load generator's share).
    pub shadow_cpu: f64,
    pub copies_expected: u64,
    pub copies_delivered: u64,
    /// Share of the machine's CPUs busy during the phase (everything, ours and others').
    pub machine_busy: f64,
}

/// One run of one scenario.
#[derive(Clone, Debug)]
pub struct Run {
    pub scenario: Scenario,
    pub loadavg: f64,
    pub phases: Vec<Phase>,
    /// Largest resident set sampled during the fixed-rate phases (bytes).
    pub rss_at_rate: Option<u64>,
    /// Largest resident set sampled during the saturation phases.
    pub rss_at_saturation: Option<u64>,
    /// `VmHWM` at the end: the peak over the process's life, start-up included.
    pub peak_rss: Option<u64>,
    /// The daemon's own count of copies not made, by outcome (`queue_full`, ...), summed over
    /// targets.
    pub daemon_drops: Vec<(String, u64)>,
}

impl Run {
    pub fn phase(&self, kind: Kind, mode: Mode) -> Option<&Phase> {
        self.phases
            .iter()
            .find(|p| p.kind == kind && p.mode == mode)
    }
}

/// Samples the resident set of some processes (`VmRSS`, summed) every 50 ms and keeps the
/// largest value: the RSS while under load, apart from the start-up peak `VmHWM` also holds.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    fn start(pids: Vec<u32>) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let handle = (!pids.is_empty()).then(|| {
            std::thread::spawn(move || {
                let mut max = 0;
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    let now: u64 = pids.iter().filter_map(|&p| procstat::rss(p).ok()).sum();
                    max = max.max(now);
                    std::thread::sleep(Duration::from_millis(50));
                }
                max
            })
        });
        RssSampler { stop, handle }
    }

    fn finish(mut self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take()?.join().ok()
    }
}

/// The process under test, if any.
enum Proxy {
    None,
    Daemon(Daemon),
    Nginx(Nginx),
}

impl Proxy {
    fn start(bed: &Bed, scenario: Scenario, settings: &Settings) -> Result<Proxy> {
        let intercept = DaemonConfig::intercepting_primary(&[PRIMARY_PORT]).drain_timeout("1s");
        let healthy = [MirrorTo {
            name: "healthy".into(),
            address: shadow(HEALTHY_PORT),
        }];
        let degraded = [
            MirrorTo {
                name: "slow".into(),
                address: shadow(SLOW_PORT),
            },
            MirrorTo {
                name: "blackhole".into(),
                address: shadow(BLACKHOLE_PORT),
            },
        ];
        let daemon = |config: DaemonConfig| -> Result<Proxy> {
            let mut daemon = Daemon::start(&settings.daemon, bed.node.netns(), &config)?;
            daemon.print_log_on_drop(false);
            Ok(Proxy::Daemon(daemon))
        };
        let to_daemon = |mirrors: &[MirrorTo]| {
            let names: Vec<&str> = mirrors.iter().map(|m| m.name.as_str()).collect();
            let mut config = intercept.clone();
            for mirror in mirrors {
                config = config.shadow_target(
                    ShadowTarget::new(&mirror.name, mirror.address)
                        .connect_timeout(nginx::MIRROR_CONNECT_TIMEOUT)
                        .request_timeout(nginx::MIRROR_REQUEST_TIMEOUT),
                );
            }
            config.mirror_rule(MirrorRule::to(&names))
        };
        let nginx = |mirrors: &[MirrorTo]| -> Result<Proxy> {
            let nginx = Nginx::start(
                bed.node.netns(),
                &Role::Proxy {
                    listen: bed.proxy(),
                    primary: bed.primary(),
                    mirrors,
                    workers: settings.nginx_workers,
                },
                &settings
                    .work_dir
                    .join(format!("nginx-proxy-{}", scenario.key())),
                None,
                bed.proxy(),
            )?;
            Ok(Proxy::Nginx(nginx))
        };
        match scenario {
            Scenario::Direct => Ok(Proxy::None),
            Scenario::Intercept => daemon(intercept.clone()),
            Scenario::Mirror => daemon(to_daemon(&healthy)),
            Scenario::Degraded => daemon(to_daemon(&degraded)),
            Scenario::NginxMirror => nginx(&healthy),
            Scenario::NginxDegraded => nginx(&degraded),
        }
    }

    fn cpu_seconds(&self) -> f64 {
        match self {
            Proxy::None => 0.0,
            Proxy::Daemon(daemon) => procstat::cpu_seconds(daemon.pid()).unwrap_or(f64::NAN),
            Proxy::Nginx(nginx) => nginx.cpu_seconds(),
        }
    }

    fn context_switches(&self) -> u64 {
        procstat::context_switches_of(&self.pids()).unwrap_or(0)
    }

    fn peak_rss(&self) -> Option<u64> {
        match self {
            Proxy::None => None,
            Proxy::Daemon(daemon) => procstat::peak_rss(daemon.pid()).ok(),
            Proxy::Nginx(nginx) => Some(nginx.peak_rss()),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Proxy::None => Vec::new(),
            Proxy::Daemon(daemon) => vec![daemon.pid()],
            Proxy::Nginx(nginx) => nginx.pids(),
        }
    }

    fn daemon_drops(&self) -> Vec<(String, u64)> {
        let Proxy::Daemon(daemon) = self else {
            return Vec::new();
        };
        let Ok(metrics) = daemon.metrics() else {
            return Vec::new();
        };
        let mut drops: Vec<(String, u64)> = Vec::new();
        for sample in metrics.samples() {
            if sample.name != "mirror_copies_total" {
                continue;
            }
            let Some(outcome) = sample.labels.get("outcome") else {
                continue;
            };
            if outcome == "mirrored" || sample.value == 0.0 {
                continue;
            }
            match drops.iter_mut().find(|(name, _)| name == outcome) {
                Some((_, count)) => *count += sample.value as u64,
                None => drops.push((outcome.clone(), sample.value as u64)),
            }
        }
        drops
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Proxy::Daemon(daemon) = self {
            if let Err(error) = daemon.terminate() {
                eprintln!("bench: daemon did not stop cleanly: {error:#}");
            }
        }
    }
}

/// Removes what a run left in `dir` (nginx prefixes).
pub fn clean(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
