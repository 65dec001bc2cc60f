//! The test bed (one node, built once) and one run of one scenario on it.
//!
//! ```text
//!  pod ns "a"            NODE ns                               primary ns
//!  load generator ──▶ [daemon, or nginx proxy at 10.244.1.1] ──▶ nginx 10.96.0.10:8080 (1 KiB)
//!                                   │ copies                       h2c  10.96.0.10:8090 (1 KiB)
//!                                   │                          shadow ns
//!                                   └────────────────────────▶ nginx 172.20.0.10:8080 (healthy)
//!                                                                h2c  172.20.0.10:8090 (healthy)
//!                                                              harness server :8081 (1 s delay)
//!                                                              h2c server :8091 (1 s delay)
//!                                                              :8082 blackholed (SYNs dropped)
//! ```
//!
//! The comparison scenarios (`mirror-json`, `compare`) use the same nginx processes on a port of
//! their own (8070) where both serve the same ~1 KiB JSON document (one field, `request_id`,
//! generated per answer), so mirroring alone and mirroring with every answer compared are
//! measured on the same answers.
//!
//! The HTTP/2 scenarios use the same nginx processes on their h2c ports (`listen … http2` on a
//! plain port: prior knowledge only), the harness's Python h2c server (`tests/h2/h2_server.py
//! --delay 1`, under SCHED_IDLE: it takes a core only when the bed does not need it) as the slow
//! shadow, and the same blackholed port.
//!
//! Each run starts the scenario's proxy fresh (so its peak RSS is its own), runs the phases (at a
//! fixed rate, then at saturation; keep-alive and, for HTTP/1.1, new connections), and stops it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mirror_tests::daemon::{Daemon, DaemonConfig, MirrorRule, ShadowTarget};
use mirror_tests::h2c::{H2Options, H2Server};
use mirror_tests::node::{Family, Node, SHADOW_V4};
use mirror_tests::{Behaviour, ShadowServer};

use super::callgrind::{Callgrind, Counts};
use super::load::{self, ConstantRate, H2Rate, H2Saturation, LoadResult, Mode, Wrk};
use super::nginx::{self, MirrorTo, Nginx, Role, ShadowAnswer};
use super::procstat::{self, MachineCpu};

pub const PRIMARY_PORT: u16 = 8080;
const HEALTHY_PORT: u16 = 8080;
const SLOW_PORT: u16 = 8081;
const BLACKHOLE_PORT: u16 = 8082;
const PROXY_PORT: u16 = 8888;
/// The primary's and the healthy shadow's h2c port, and the slow h2c shadow's.
pub const H2_PRIMARY_PORT: u16 = 8090;
const H2_HEALTHY_PORT: u16 = 8090;
const H2_SLOW_PORT: u16 = 8091;
/// Where the primary and the healthy shadow serve the JSON document.
pub const JSON_PORT: u16 = 8070;
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
    /// HTTP/2 (h2c): the daemon not running.
    H2Direct,
    /// HTTP/2: the daemon intercepting, no mirror rule.
    H2Intercept,
    /// HTTP/2: the daemon copying every stream to the healthy h2c shadow.
    H2Mirror,
    /// HTTP/2: the daemon copying every stream to the slow h2c and to the blackholed shadow.
    H2Degraded,
    /// The daemon copying every request to the healthy shadow, both answering the JSON document:
    /// `compare`'s baseline.
    MirrorJson,
    /// As `mirror-json`, every answer pair compared (`[mirror.rules.compare]`, 100 %).
    Compare,
}

/// What the pod speaks to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// h2c with prior knowledge.
    Http2,
}

impl Scenario {
    /// The HTTP/1.1 scenarios: the default run.
    pub const HTTP1: [Scenario; 6] = [
        Scenario::Direct,
        Scenario::Intercept,
        Scenario::Mirror,
        Scenario::Degraded,
        Scenario::NginxMirror,
        Scenario::NginxDegraded,
    ];

    pub const HTTP2: [Scenario; 4] = [
        Scenario::H2Direct,
        Scenario::H2Intercept,
        Scenario::H2Mirror,
        Scenario::H2Degraded,
    ];

    /// Comparing the answers, and its baseline (mirroring the same answers alone), first.
    pub const COMPARE: [Scenario; 2] = [Scenario::MirrorJson, Scenario::Compare];

    /// HTTP/1.1, then HTTP/2 (the comparison scenarios are not part of it: `compare`).
    pub const ALL: [Scenario; 10] = {
        let mut all = [Scenario::Direct; 10];
        let mut i = 0;
        while i < all.len() {
            all[i] = if i < Scenario::HTTP1.len() {
                Scenario::HTTP1[i]
            } else {
                Scenario::HTTP2[i - Scenario::HTTP1.len()]
            };
            i += 1;
        }
        all
    };

    /// The name on the command line and in the tables.
    pub fn key(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Intercept => "intercept",
            Scenario::Mirror => "mirror",
            Scenario::Degraded => "mirror-degraded",
            Scenario::NginxMirror => "nginx-mirror",
            Scenario::NginxDegraded => "nginx-degraded",
            Scenario::H2Direct => "h2-direct",
            Scenario::H2Intercept => "h2-intercept",
            Scenario::H2Mirror => "h2-mirror",
            Scenario::H2Degraded => "h2-mirror-degraded",
            Scenario::MirrorJson => "mirror-json",
            Scenario::Compare => "compare",
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
            Scenario::H2Direct => "HTTP/2 (h2c): pod -> primary, daemon not running",
            Scenario::H2Intercept => "HTTP/2 (h2c): through the daemon, no mirror rule",
            Scenario::H2Mirror => {
                "HTTP/2 (h2c): through the daemon, every stream mirrored to the healthy h2c shadow"
            }
            Scenario::H2Degraded => {
                "HTTP/2 (h2c): through the daemon, every stream mirrored to the slow (1 s) h2c \
                 and the blackholed shadow"
            }
            Scenario::MirrorJson => {
                "through the daemon, 100 % mirrored to the healthy shadow, both answering the \
                 same 1 KiB JSON document"
            }
            Scenario::Compare => {
                "as mirror-json, and every pair of answers compared (`[mirror.rules.compare]`, \
                 percent = 100)"
            }
        }
    }

    pub fn parse(key: &str) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .chain(Scenario::COMPARE)
            .find(|s| s.key() == key)
    }

    /// A scenario's key, or a group of them: `http1` (the default), `h2`, `all`; `compare` is
    /// `mirror-json,compare`: the comparison with the baseline its goal needs.
    pub fn parse_group(key: &str) -> Option<Vec<Scenario>> {
        match key {
            "http1" => Some(Scenario::HTTP1.to_vec()),
            "h2" => Some(Scenario::HTTP2.to_vec()),
            "all" => Some(Scenario::ALL.to_vec()),
            "compare" => Some(Scenario::COMPARE.to_vec()),
            _ => Scenario::parse(key).map(|scenario| vec![scenario]),
        }
    }

    pub fn protocol(self) -> Protocol {
        if Scenario::HTTP2.contains(&self) {
            Protocol::Http2
        } else {
            Protocol::Http1
        }
    }

    /// The scenario without a proxy that this one's ratios are taken to.
    pub fn baseline(self) -> Scenario {
        match self.protocol() {
            Protocol::Http1 => Scenario::Direct,
            Protocol::Http2 => Scenario::H2Direct,
        }
    }

    /// The modes it is measured in: HTTP/2 keeps its connections.
    pub fn modes(self) -> &'static [Mode] {
        match self.protocol() {
            Protocol::Http1 => &Mode::ALL,
            Protocol::Http2 => &[Mode::KeepAlive],
        }
    }

    /// Copies each request should make.
    pub fn copies_per_request(self) -> u64 {
        match self {
            Scenario::Direct | Scenario::Intercept | Scenario::H2Direct | Scenario::H2Intercept => {
                0
            }
            Scenario::Mirror
            | Scenario::NginxMirror
            | Scenario::H2Mirror
            | Scenario::MirrorJson
            | Scenario::Compare => 1,
            Scenario::Degraded | Scenario::NginxDegraded | Scenario::H2Degraded => 2,
        }
    }

    /// Whether the daemon is the proxy under test (not direct, not nginx).
    pub fn runs_the_daemon(self) -> bool {
        !matches!(
            self,
            Scenario::Direct | Scenario::H2Direct | Scenario::NginxMirror | Scenario::NginxDegraded
        )
    }

    /// Whether the primary and the shadow answer the JSON document (on [`JSON_PORT`]).
    pub fn serves_json(self) -> bool {
        Scenario::COMPARE.contains(&self)
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
    /// h2load's connections and concurrent streams per connection at saturation.
    pub h2_connections: u32,
    pub h2_streams: u32,
    pub warmup: Duration,
    /// Which CPUs the load generator, the servers and the proxy under test run on.
    pub pinning: Pinning,
    pub nginx_workers: usize,
    /// What the healthy shadow answers.
    pub shadow_answer: ShadowAnswer,
    pub daemon: PathBuf,
    pub work_dir: PathBuf,
    /// Count the daemon's instructions under callgrind (`--instructions`): the fixed-rate
    /// phases only.
    pub callgrind: Option<Callgrind>,
    /// The daemon's `relay.workers` (`None`: its default, one per core it may run on).
    pub daemon_workers: Option<usize>,
    /// What the harness starts in the daemon's place (`None`: the daemon itself): a
    /// [`super::launcher`] running it under callgrind or `taskset`.
    pub daemon_launcher: Option<PathBuf>,
    /// What sends HTTP/1.1 keep-alive requests at the fixed rate.
    pub h1_rate_client: RateClient,
}

/// The HTTP/1.1 keep-alive client at the fixed rate (`--h1-rate-client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateClient {
    /// Our open-loop client ([`load::constant_rate`]): the default.
    Ours,
    /// h2load `--h1`, paced exactly as the HTTP/2 scenarios are ([`load::h2load_rate`]): the
    /// same client process and schedule for both protocols, so their daemon CPU compares
    /// without the two clients' own differences. New-connection phases keep our client.
    H2load,
}

impl RateClient {
    pub fn parse(text: &str) -> Option<RateClient> {
        match text {
            "ours" => Some(RateClient::Ours),
            "h2load" => Some(RateClient::H2load),
            _ => None,
        }
    }
}

/// Which CPUs the bench's processes run on (`--no-pin`, `--proxy-alone`); the bed has two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// Nothing pinned.
    None,
    /// The default: the load generator on CPU 0, the primary and shadows on CPU 1, the proxy
    /// under test (daemon or nginx) on either, wherever the scheduler puts it.
    Split,
    /// The proxy under test alone on CPU 1, the load generator, primary and shadows together
    /// on CPU 0: nothing the bench runs shares the proxy's core or preempts it (the daemon then
    /// runs one worker). What a bed with a core for the load would show, on two cores.
    ProxyAlone,
}

impl Pinning {
    /// The load generator's CPU, when pinned.
    pub fn load_cpu(self) -> Option<usize> {
        (self != Pinning::None).then_some(0)
    }

    /// The `taskset -c` list of the load generator, when pinned.
    pub fn load_cpus(self) -> Option<&'static str> {
        self.load_cpu().map(|_| "0")
    }

    /// The `taskset -c` list of the primary and shadows, when pinned.
    pub fn server_cpus(self) -> Option<&'static str> {
        match self {
            Pinning::None => None,
            Pinning::Split => Some("1"),
            Pinning::ProxyAlone => Some("0"),
        }
    }

    /// The `taskset -c` list of the proxy under test, when pinned.
    pub fn proxy_cpus(self) -> Option<&'static str> {
        (self == Pinning::ProxyAlone).then_some("1")
    }

    /// The report's line.
    pub fn describe(self) -> &'static str {
        match self {
            Pinning::None => "none",
            Pinning::Split => {
                "load generator (wrk, constant-rate client, h2load) on CPU 0, primary and shadow \
                 nginx on CPU 1; the daemon and the nginx proxy are not pinned"
            }
            Pinning::ProxyAlone => {
                "the proxy under test alone on CPU 1 (the daemon, which then runs one worker, or \
                 the nginx proxy with its workers); load generator (wrk, constant-rate client, \
                 h2load), primary and shadow nginx together on CPU 0 (`--proxy-alone`)"
            }
        }
    }
}

/// The node with its servers, for the whole bench.
pub struct Bed {
    // Drop order: servers before the namespaces they live in.
    slow: ShadowServer,
    /// Only when an HTTP/2 degraded scenario runs (it needs the harness's Python venv).
    slow_h2: Option<H2Server>,
    _blackhole: ShadowServer,
    healthy_shadow: Nginx,
    primary_server: Nginx,
    node: Node,
    script: PathBuf,
}

impl Bed {
    pub fn build(settings: &Settings, scenarios: &[Scenario]) -> Result<Bed> {
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
                listen_h2: &[node.primary().addr(Family::V4, H2_PRIMARY_PORT)],
                listen_json: &[node.primary().addr(Family::V4, JSON_PORT)],
            },
            &settings.work_dir.join("nginx-primary"),
            settings.pinning.server_cpus(),
            primary_addresses[0],
        )?;
        let healthy_address = shadow(HEALTHY_PORT);
        let healthy = Nginx::start(
            node.shadow().netns(),
            &Role::Shadow {
                listen: healthy_address,
                listen_h2: Some(shadow(H2_HEALTHY_PORT)),
                listen_json: Some(shadow(JSON_PORT)),
                answer: settings.shadow_answer,
            },
            &settings.work_dir.join("nginx-shadow"),
            settings.pinning.server_cpus(),
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
        let slow_h2 = if scenarios.contains(&Scenario::H2Degraded) {
            let server = H2Server::start(
                "slow shadow",
                node.shadow().netns(),
                &[shadow(H2_SLOW_PORT)],
                &H2Options::default().delay(SLOW_DELAY),
            )?;
            // It stands for a service on another machine, but shares the bed's two cores: in
            // Python, holding its copies costs as much CPU as the daemon mirroring them, and at
            // the normal priority that, not the daemon, set the primary's tail (p99 ×2.4 of the
            // healthy run against ×1.3 with it idle-scheduled, on the same day).
            procstat::run_when_idle(server.pid())?;
            Some(server)
        } else {
            None
        };
        let script = settings.work_dir.join("wrk-report.lua");
        std::fs::write(&script, load::WRK_SCRIPT)?;
        Ok(Bed {
            slow,
            slow_h2,
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
        // The slow h2c shadow is a process of its own, counted with the in-process slow shadow.
        let slow_h2 = self
            .slow_h2
            .as_ref()
            .map_or(0.0, |server| of(vec![server.pid()]));
        BedCpu {
            client: procstat::own_and_children_cpu_seconds() + slow_h2,
            primary: of(self.primary_server.pids()),
            shadow: of(self.healthy_shadow.pids()),
        }
    }

    fn primary(&self) -> SocketAddr {
        self.node.primary().addr(Family::V4, PRIMARY_PORT)
    }

    fn h2_primary(&self) -> SocketAddr {
        self.node.primary().addr(Family::V4, H2_PRIMARY_PORT)
    }

    fn proxy(&self) -> SocketAddr {
        // The pod's gateway: the node's end of the pod's veth.
        let pod = self.node.pod("a").v4().octets();
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(pod[0], pod[1], pod[2], 1)),
            PROXY_PORT,
        )
    }

    /// Copies that have reached the shadows so far (the healthy nginx counts HTTP/1.1 and
    /// HTTP/2 requests alike).
    fn delivered(&self) -> u64 {
        let slow_h2 = self
            .slow_h2
            .as_ref()
            .and_then(|server| server.requests().ok())
            .map_or(0, |requests| requests.len() as u64);
        nginx::shadow_requests(self.node.shadow().netns(), shadow(HEALTHY_PORT)).unwrap_or(0)
            + self.slow.recording().count() as u64
            + slow_h2
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
            _ if scenario.protocol() == Protocol::Http2 => self.h2_primary(),
            _ if scenario.serves_json() => self.node.primary().addr(Family::V4, JSON_PORT),
            _ => self.primary(),
        };
        if !settings.warmup.is_zero() {
            let warmup = Load {
                protocol: scenario.protocol(),
                kind: Kind::Saturation,
                mode: Mode::KeepAlive,
                target,
                duration: settings.warmup,
            };
            self.load(&warmup, settings).context("warm-up")?;
            self.settle(Duration::from_secs(1));
        }
        let mut phases = Vec::new();
        let mut rss = Vec::new();
        let kinds: &[Kind] = if settings.callgrind.is_some() {
            &[Kind::Rate]
        } else {
            &[Kind::Rate, Kind::Saturation]
        };
        for &kind in kinds {
            let sampler = RssSampler::start(proxy.pids());
            for &mode in scenario.modes() {
                let before = (proxy.cpu_seconds(), self.delivered(), MachineCpu::now());
                let switches_before = proxy.context_switches();
                let bed_before = self.bed_cpu_seconds();
                let counting = match (&settings.callgrind, &proxy) {
                    (Some(callgrind), Proxy::Daemon(daemon)) => {
                        callgrind.start(daemon.pid())?;
                        Some((callgrind, daemon.pid()))
                    }
                    _ => None,
                };
                let load = Load {
                    protocol: scenario.protocol(),
                    kind,
                    mode,
                    target,
                    duration: match kind {
                        Kind::Rate => settings.rate_duration,
                        Kind::Saturation => settings.saturation_duration,
                    },
                };
                let result = self
                    .load(&load, settings)
                    .with_context(|| format!("{} {:?} {}", scenario.key(), kind, mode.label()))?;
                let machine = MachineCpu::now();
                let machine_busy = before.2.busy_share(&machine);
                let bed = self.bed_cpu_seconds().since(&bed_before);
                let cpu_seconds = before.2.cpu_seconds_until(&machine);
                if scenario.copies_per_request() > 0 {
                    self.settle(Duration::from_secs(1));
                }
                // Counted until the last copies are answered, as the CPU is.
                let counted = counting
                    .map(|(callgrind, pid)| callgrind.stop(pid))
                    .transpose()
                    .context("counting the daemon's instructions")?;
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
                    counted,
                    machine_busy,
                    others_busy: others_busy(
                        machine_busy,
                        bed.client + bed.primary + bed.shadow + proxy_cpu,
                        cpu_seconds,
                    ),
                });
                if let Some(phase) = phases.last_mut() {
                    phase.copies_expected = phase.load.completed * scenario.copies_per_request();
                }
            }
            rss.push(sampler.finish().filter(|&bytes| bytes > 0));
        }
        let daemon_drops = proxy.daemon_totals("mirror_copies_total", "outcome", "mirrored");
        let shadow_errors = proxy.daemon_totals("mirror_shadow_errors_total", "kind", "");
        // Comparisons are made as each copy's answer arrives: give the last ones a moment.
        let comparisons = if scenario == Scenario::Compare {
            std::thread::sleep(Duration::from_millis(200));
            proxy.daemon_totals("mirror_comparisons_total", "verdict", "")
        } else {
            Vec::new()
        };
        Ok(Run {
            scenario,
            loadavg,
            phases,
            rss_at_rate: rss.first().copied().flatten(),
            rss_at_saturation: rss.get(1).copied().flatten(),
            peak_rss: proxy.peak_rss(),
            daemon_drops,
            shadow_errors,
            comparisons,
        })
    }
}

/// One load to run from the pod.
struct Load {
    protocol: Protocol,
    kind: Kind,
    mode: Mode,
    target: SocketAddr,
    duration: Duration,
}

impl Bed {
    /// Runs `load` with the generator for its protocol and kind: our open-loop client (or h2load
    /// `--h1`, when asked) or wrk (HTTP/1.1), h2load paced or closed loop (HTTP/2, keep-alive
    /// only).
    fn load(&self, load: &Load, settings: &Settings) -> Result<LoadResult> {
        let netns = self.node.pod("a").netns();
        let h2load_h1 = settings.h1_rate_client == RateClient::H2load;
        match (load.protocol, load.kind) {
            (Protocol::Http1, Kind::Rate) if h2load_h1 && load.mode == Mode::KeepAlive => {
                load::h2load_rate(&H2Rate {
                    netns,
                    target: load.target,
                    rate: settings.rate,
                    duration: load.duration,
                    cpus: settings.pinning.load_cpus(),
                    http1: true,
                })
            }
            (Protocol::Http1, Kind::Rate) => load::constant_rate(&ConstantRate {
                netns,
                target: load.target,
                rate: settings.rate,
                duration: load.duration,
                mode: load.mode,
                connections: settings.rate_connections,
                cpu: settings.pinning.load_cpu(),
            }),
            (Protocol::Http1, Kind::Saturation) => load::wrk(&Wrk {
                netns,
                target: load.target,
                connections: settings.wrk_connections,
                duration: load.duration,
                mode: load.mode,
                cpus: settings.pinning.load_cpus(),
                script: &self.script,
            }),
            (Protocol::Http2, Kind::Rate) => load::h2load_rate(&H2Rate {
                netns,
                target: load.target,
                rate: settings.rate,
                duration: load.duration,
                cpus: settings.pinning.load_cpus(),
                http1: false,
            }),
            (Protocol::Http2, Kind::Saturation) => load::h2load_saturation(&H2Saturation {
                netns,
                target: load.target,
                connections: settings.h2_connections,
                streams: settings.h2_streams,
                duration: load.duration,
                cpus: settings.pinning.load_cpus(),
            }),
        }
    }
}

fn shadow(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SHADOW_V4), port)
}

/// CPU seconds of the bed's parts other than the proxy.
#[derive(Clone, Copy, Debug)]
struct BedCpu {
    /// The bench's own process and its waited-for children: the load generator (wrk, h2load,
    /// or the constant-rate client's threads), the in-process slow and blackholed shadows, and
    /// the slow h2c shadow's process.
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
    /// What the daemon executed during the phase, when counted (`--instructions`).
    pub counted: Option<Counts>,
    /// Share of the machine's CPUs busy during the phase (everything, ours and others').
    pub machine_busy: f64,
    /// Share of the machine's CPUs busy with anything but the bed during the phase: the competition
    /// (the load average before a run cannot tell it apart from the bench's own previous phase).
    pub others_busy: f64,
}

impl Phase {
    /// One of the daemon's counts per completed request, when counted.
    pub fn per_request(&self, count: impl Fn(&Counts) -> u64) -> Option<f64> {
        let counts = self.counted.as_ref()?;
        (self.load.completed > 0).then(|| count(counts) as f64 / self.load.completed as f64)
    }
}

/// The machine's busy share less the bed's own share (its CPU seconds over all the cores' seconds).
fn others_busy(machine_busy: f64, bed_cpu: f64, cpu_seconds: f64) -> f64 {
    if cpu_seconds <= 0.0 {
        return f64::NAN;
    }
    (machine_busy - bed_cpu / cpu_seconds).max(0.0)
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
    /// The daemon's count of copies that failed towards a shadow, by kind (`connect`, `timeout`,
    /// `refused` (HTTP/2: no stream free), ...), summed over targets.
    pub shadow_errors: Vec<(String, u64)>,
    /// `compare` only: the daemon's verdicts (`mirror_comparisons_total`) over the whole run,
    /// warm-up included, summed over targets, by verdict (zeros left out).
    pub comparisons: Vec<(String, u64)>,
}

impl Run {
    pub fn phase(&self, kind: Kind, mode: Mode) -> Option<&Phase> {
        self.phases
            .iter()
            .find(|p| p.kind == kind && p.mode == mode)
    }

    /// Pairs whose answers were compared (a verdict other than `shadow_error` and
    /// `not_compared`).
    pub fn compared_pairs(&self) -> u64 {
        self.comparisons
            .iter()
            .filter(|(verdict, _)| !matches!(verdict.as_str(), "shadow_error" | "not_compared"))
            .map(|(_, count)| count)
            .sum()
    }

    /// Copies the shadows answered in the measured phases.
    pub fn copies_delivered(&self) -> u64 {
        self.phases.iter().map(|p| p.copies_delivered).sum()
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
        // Each protocol has its ports; the blackholed port drops every SYN, whatever follows.
        let (primary_port, healthy_port, slow_port) = match scenario.protocol() {
            Protocol::Http1 if scenario.serves_json() => (JSON_PORT, JSON_PORT, SLOW_PORT),
            Protocol::Http1 => (PRIMARY_PORT, HEALTHY_PORT, SLOW_PORT),
            Protocol::Http2 => (H2_PRIMARY_PORT, H2_HEALTHY_PORT, H2_SLOW_PORT),
        };
        let intercept = DaemonConfig::intercepting_primary(&[primary_port]).drain_timeout("1s");
        let mirror_to = |shadows: &[(&str, u16)]| -> Vec<MirrorTo> {
            shadows
                .iter()
                .map(|&(name, port)| MirrorTo {
                    name: name.into(),
                    address: shadow(port),
                })
                .collect()
        };
        let healthy = mirror_to(&[("healthy", healthy_port)]);
        let degraded = mirror_to(&[("slow", slow_port), ("blackhole", BLACKHOLE_PORT)]);
        let daemon = |mut config: DaemonConfig| -> Result<Proxy> {
            if let Some(workers) = settings.daemon_workers {
                config = config.workers(workers);
            }
            let binary = settings
                .daemon_launcher
                .as_ref()
                .unwrap_or(&settings.daemon);
            let mut daemon = Daemon::start(binary, bed.node.netns(), &config)?;
            daemon.print_log_on_drop(false);
            Ok(Proxy::Daemon(daemon))
        };
        let to_daemon = |mirrors: &[MirrorTo], compare: bool| {
            let names: Vec<&str> = mirrors.iter().map(|m| m.name.as_str()).collect();
            let mut config = intercept.clone();
            for mirror in mirrors {
                config = config.shadow_target(
                    ShadowTarget::new(&mirror.name, mirror.address)
                        .connect_timeout(nginx::MIRROR_CONNECT_TIMEOUT)
                        .request_timeout(nginx::MIRROR_REQUEST_TIMEOUT),
                );
            }
            let rule = MirrorRule::to(&names);
            config.mirror_rule(if compare { rule.compare(100) } else { rule })
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
                settings.pinning.proxy_cpus(),
                bed.proxy(),
            )?;
            Ok(Proxy::Nginx(nginx))
        };
        match scenario {
            Scenario::Direct | Scenario::H2Direct => Ok(Proxy::None),
            Scenario::Intercept | Scenario::H2Intercept => daemon(intercept.clone()),
            Scenario::Mirror | Scenario::H2Mirror | Scenario::MirrorJson => {
                daemon(to_daemon(&healthy, false))
            }
            Scenario::Compare => daemon(to_daemon(&healthy, true)),
            Scenario::Degraded | Scenario::H2Degraded => daemon(to_daemon(&degraded, false)),
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

    /// The daemon's counter `family` summed over targets by the value of `label`, leaving out
    /// zeros and the value `except`.
    fn daemon_totals(&self, family: &str, label: &str, except: &str) -> Vec<(String, u64)> {
        let Proxy::Daemon(daemon) = self else {
            return Vec::new();
        };
        let Ok(metrics) = daemon.metrics() else {
            return Vec::new();
        };
        let mut totals: Vec<(String, u64)> = Vec::new();
        for sample in metrics.samples() {
            if sample.name != family {
                continue;
            }
            let Some(value) = sample.labels.get(label) else {
                continue;
            };
            if value == except || sample.value == 0.0 {
                continue;
            }
            match totals.iter_mut().find(|(name, _)| name == value) {
                Some((_, count)) => *count += sample.value as u64,
                None => totals.push((value.clone(), sample.value as u64)),
            }
        }
        totals
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http1_rate_client_is_ours_or_h2load() {
        assert_eq!(RateClient::parse("ours"), Some(RateClient::Ours));
        assert_eq!(RateClient::parse("h2load"), Some(RateClient::H2load));
        assert_eq!(RateClient::parse("wrk"), None);
        assert_eq!(RateClient::parse(""), None);
    }

    #[test]
    fn only_proxy_alone_gives_the_proxy_a_core_of_its_own() {
        let cpus = |p: Pinning| (p.load_cpus(), p.server_cpus(), p.proxy_cpus());
        assert_eq!(cpus(Pinning::None), (None, None, None));
        assert_eq!(cpus(Pinning::Split), (Some("0"), Some("1"), None));
        assert_eq!(cpus(Pinning::ProxyAlone), (Some("0"), Some("0"), Some("1")));
    }

    #[test]
    fn groups_name_the_scenarios_of_each_protocol() {
        assert_eq!(
            Scenario::parse_group("http1"),
            Some(Scenario::HTTP1.to_vec())
        );
        assert_eq!(Scenario::parse_group("h2"), Some(Scenario::HTTP2.to_vec()));
        let all = Scenario::parse_group("all").expect("all");
        assert_eq!(all, [&Scenario::HTTP1[..], &Scenario::HTTP2[..]].concat());
        assert_eq!(
            Scenario::parse_group("h2-mirror-degraded"),
            Some(vec![Scenario::H2Degraded])
        );
        assert_eq!(Scenario::parse_group("h3"), None);
        // `compare` brings its baseline, first; `all` stays HTTP/1.1 and HTTP/2 (the default
        // run and `all` are no longer for it).
        assert_eq!(
            Scenario::parse_group("compare"),
            Some(vec![Scenario::MirrorJson, Scenario::Compare])
        );
        assert_eq!(
            Scenario::parse_group("mirror-json"),
            Some(vec![Scenario::MirrorJson])
        );
        assert!(!all.contains(&Scenario::Compare) && !all.contains(&Scenario::MirrorJson));
        assert!(!Scenario::HTTP1.contains(&Scenario::Compare));
        // Every key reads back as its scenario.
        for scenario in Scenario::ALL.into_iter().chain(Scenario::COMPARE) {
            assert_eq!(Scenario::parse(scenario.key()), Some(scenario));
        }
    }

    #[test]
    fn http2_scenarios_are_compared_with_h2_direct_and_keep_their_connections() {
        for scenario in Scenario::HTTP2 {
            assert_eq!(scenario.protocol(), Protocol::Http2);
            assert_eq!(scenario.baseline(), Scenario::H2Direct);
            assert_eq!(scenario.modes(), [Mode::KeepAlive]);
        }
        for scenario in Scenario::HTTP1 {
            assert_eq!(scenario.baseline(), Scenario::Direct);
            assert_eq!(scenario.modes(), Mode::ALL);
        }
        let copies: Vec<u64> = Scenario::HTTP2
            .iter()
            .map(|s| s.copies_per_request())
            .collect();
        assert_eq!(copies, [0, 0, 1, 2]);
    }

    #[test]
    fn compare_scenarios_mirror_the_json_answers_over_http1() {
        for scenario in Scenario::COMPARE {
            assert!(scenario.serves_json());
            assert_eq!(scenario.protocol(), Protocol::Http1);
            assert_eq!(scenario.baseline(), Scenario::Direct);
            assert_eq!(scenario.modes(), Mode::ALL);
            assert_eq!(scenario.copies_per_request(), 1);
        }
        assert!(!Scenario::Mirror.serves_json());
    }

    #[test]
    fn compared_pairs_leave_out_shadow_errors_and_pairs_not_compared() {
        let mut runs = super::super::fixture::runs(&[Scenario::Compare], 1, 0.5, |_, _| {
            super::super::fixture::Measured {
                p99: 100.0,
                cpu: 0.05,
                rps: 500.0,
                proxy_us: 30.0,
                rest_us: 40.0,
            }
        });
        let run = &mut runs[0];
        run.comparisons = vec![
            ("match".into(), 90),
            ("body_mismatch".into(), 20),
            ("shadow_error".into(), 3),
            ("not_compared".into(), 7),
        ];
        assert_eq!(run.compared_pairs(), 110);
        // 1000 per fixed-rate phase and 500 per saturation phase, in both modes.
        assert_eq!(run.copies_delivered(), 3000);
    }
}
