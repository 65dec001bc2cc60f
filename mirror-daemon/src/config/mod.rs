//! The daemon's configuration: TOML in, a validated [`Config`] out.
//!
//! Every key has a default so that a short file is a complete one; unknown keys are errors, so a
//! typo never silently falls back to a default. [`Config::from_toml`] is the only way in, and it
//! validates everything it can before the daemon touches the kernel.

mod locate;
mod mirror;

use std::{net::SocketAddr, path::Path, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The configuration built into the binary, used when `--config` is not given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// One line: where (file, line, column), which key, and what is wrong.
    #[error("invalid config {origin}:{line}:{column}: {key}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub interception: Interception,
    #[serde(default)]
    pub relay: Relay,
    #[serde(default)]
    pub shutdown: Shutdown,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub mirror: Mirror,
}

pub use mirror::{
    is_local_address, split_host_port, Compare, Framing, HeaderMatch, Match, Mirror, MirrorRule,
    Noise, Sampling, Target, Tls, MAX_IGNORE_PATHS, MAX_LAST_MISMATCHES, MAX_NOISE_WINDOW,
};

/// Which pod flows the kernel hands to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Interception {
    /// Globs of host-side pod interface names to attach to.
    pub interfaces: Vec<String>,
    /// Destinations whose flows are intercepted.
    pub rules: Vec<InterceptRule>,
    /// New flows go direct when the accept loop has not beaten for this long; 0 disables.
    #[serde(with = "humantime_serde")]
    pub watchdog_timeout: Duration,
    /// Mark bit(s) that route a selected packet to the local listener.
    pub fwmark: u32,
    /// Policy routing table holding the `local` default routes.
    pub route_table: u32,
    /// Priority of the fwmark rule; the loopback guard rule uses `rule_priority - 1`.
    pub rule_priority: u32,
}

impl Default for Interception {
    fn default() -> Self {
        Self {
            interfaces: ["veth*", "cali*", "lxc*", "eni*", "gke*", "azv*"]
                .map(String::from)
                .to_vec(),
            rules: Vec::new(),
            watchdog_timeout: Duration::from_secs(2),
            fwmark: 0x1,
            route_table: 100,
            rule_priority: 100,
        }
    }
}

/// One intercepted destination: a CIDR and the ports on it (every port when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptRule {
    pub cidr: IpNet,
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// The most worker threads `relay.workers` may ask for.
pub const MAX_WORKERS: usize = 1024;

/// How intercepted connections are relayed to their original destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Relay {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bytes buffered per direction per connection.
    pub buffer_size: usize,
    /// Connections held at once; beyond this, new flows are not intercepted (they go direct).
    pub max_connections: usize,
    /// Worker threads, each with its own runtime, listeners and shadow connections; 0: one per
    /// CPU the daemon may use.
    pub workers: usize,
}

impl Default for Relay {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            buffer_size: 8 * 1024,
            max_connections: 10_000,
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    /// How long open connections may finish after SIGTERM before they are reset.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address of the metrics and health endpoint.
    pub address: SocketAddr,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 15090)),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Result<Self, Error> {
        Self::from_toml(EMBEDDED_DEFAULT, "(embedded default)")
    }

    /// Parses and validates TOML; `origin` names the source in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        let config: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|error| {
                let key = match error.path().to_string() {
                    path if path == "." => "(top level)".to_string(),
                    path => path,
                };
                let error = error.into_inner();
                let span = error.span().or_else(|| locate::span_of(text, &key));
                invalid_at(text, origin, &key, error.message(), span)
            })?;
        config.validate(text, origin)?;
        Ok(config)
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), Error> {
        let invalid = |key: &str, message: String| {
            invalid_at(text, origin, key, &message, locate::span_of(text, key))
        };
        let interception = &self.interception;
        if interception.interfaces.is_empty() {
            return Err(invalid(
                "interception.interfaces",
                "at least one interface glob is needed".into(),
            ));
        }
        for (i, glob) in interception.interfaces.iter().enumerate() {
            if glob.is_empty() || glob.len() > 15 && !glob.contains(['*', '?', '[']) {
                return Err(invalid(
                    &format!("interception.interfaces[{i}]"),
                    format!("{glob:?} cannot match an interface name (1 to 15 characters)"),
                ));
            }
            glob::Pattern::new(glob).map_err(|e| {
                invalid(
                    &format!("interception.interfaces[{i}]"),
                    format!("{glob:?} is not a valid glob: {e}"),
                )
            })?;
        }
        // Two generations of rules coexist for a moment during a reload.
        let entries: usize = interception
            .rules
            .iter()
            .map(|r| r.ports.len().max(1))
            .sum();
        if entries > mirror_common::MAX_INTERCEPT_RULES as usize / 2 {
            return Err(invalid(
                "interception.rules",
                format!(
                    "{entries} (CIDR, port) pairs; at most {} are supported",
                    mirror_common::MAX_INTERCEPT_RULES / 2
                ),
            ));
        }
        for (i, rule) in interception.rules.iter().enumerate() {
            if rule.cidr != rule.cidr.trunc() {
                return Err(invalid(
                    &format!("interception.rules[{i}].cidr"),
                    format!(
                        "{} has host bits set; did you mean {}?",
                        rule.cidr,
                        rule.cidr.trunc()
                    ),
                ));
            }
            if rule.ports.contains(&0) {
                return Err(invalid(
                    &format!("interception.rules[{i}].ports"),
                    "port 0 is not a port; leave `ports` out to intercept every port".into(),
                ));
            }
        }
        if interception.fwmark == 0 {
            return Err(invalid(
                "interception.fwmark",
                "must have at least one bit set".into(),
            ));
        }
        if !(1..=0xfffe_ffff).contains(&interception.route_table)
            || [253, 254, 255].contains(&interception.route_table)
        {
            return Err(invalid(
                "interception.route_table",
                format!(
                    "{} is reserved (default 253, main 254, local 255) or out of range",
                    interception.route_table
                ),
            ));
        }
        if !(2..=32765).contains(&interception.rule_priority) {
            return Err(invalid(
                "interception.rule_priority",
                "must be between 2 and 32765 (ahead of the main table at 32766)".into(),
            ));
        }
        if self.relay.buffer_size < 1024 || self.relay.buffer_size > 1 << 20 {
            return Err(invalid(
                "relay.buffer_size",
                "must be between 1024 and 1048576 bytes".into(),
            ));
        }
        if self.relay.max_connections == 0 {
            return Err(invalid(
                "relay.max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.relay.workers > MAX_WORKERS {
            return Err(invalid(
                "relay.workers",
                format!("must be between 0 (one per CPU) and {MAX_WORKERS}"),
            ));
        }
        self.mirror.validate(&invalid)?;
        if self.relay.connect_timeout.is_zero() {
            return Err(invalid(
                "relay.connect_timeout",
                "must be greater than 0".into(),
            ));
        }
        Ok(())
    }
}

/// An [`Error::Invalid`] at `span` of `text` (the top of the file when unknown).
fn invalid_at(
    text: &str,
    origin: &str,
    key: &str,
    message: &str,
    span: Option<std::ops::Range<usize>>,
) -> Error {
    let (line, column) = locate::line_column(text, span.map_or(0, |s| s.start));
    Error::Invalid {
        origin: origin.to_string(),
        line,
        column,
        // Quoted TOML keys may hold any character; a config error is one line.
        key: key
            .chars()
            .flat_map(char::escape_default)
            .collect::<String>()
            .replace("\\\"", "\""),
        // TOML syntax errors span several lines; a config error is one line.
        message: message.trim().replace('\n', "; "),
    }
}

impl Interception {
    /// Whether `name` matches one of the interface globs.
    pub fn watches(&self, name: &str) -> bool {
        self.interfaces.iter().any(|glob| {
            glob::Pattern::new(glob)
                .map(|p| p.matches(name))
                .unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::from_toml(text, "test.toml")
    }

    #[test]
    fn embedded_default_is_valid_and_intercepts_service_ports() {
        let config = Config::embedded_default().expect("embedded default parses");
        assert!(config
            .interception
            .rules
            .iter()
            .any(|r| r.ports == [80, 8080]));
        assert!(config.interception.watches("cali0123456789a"));
    }

    #[test]
    fn the_complete_example_file_is_valid() {
        let text = include_str!("../../../examples/mirror.toml");
        let config = Config::from_toml(text, "examples/mirror.toml").expect("example is valid");
        assert_eq!(config.mirror.targets[0].percent, 10.0);
        assert_eq!(config.mirror.rules[0].targets, ["staging"]);
        assert!(config.mirror.targets[0].tls.is_some());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").expect("empty config");
        assert_eq!(config.interception.fwmark, 1);
        assert_eq!(config.relay.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.admin.address.port(), 15090);
        assert!(config.interception.rules.is_empty());
    }

    #[test]
    fn rules_parse_ipv4_and_ipv6_with_durations() {
        let config = parse(
            r#"
            [interception]
            watchdog_timeout = "500ms"
            [[interception.rules]]
            cidr = "10.96.0.0/24"
            ports = [8080]
            [[interception.rules]]
            cidr = "fd00:96::/64"
            "#,
        )
        .expect("valid");
        assert_eq!(
            config.interception.watchdog_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(config.interception.rules.len(), 2);
        assert!(config.interception.rules[1].ports.is_empty());
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = parse("[relay]\nconect_timeout = \"1s\"\n").expect_err("typo");
        assert!(err.to_string().contains("conect_timeout"), "{err}");
    }

    #[test]
    fn cidr_with_host_bits_is_rejected_with_a_suggestion() {
        let err =
            parse("[[interception.rules]]\ncidr = \"10.96.0.1/24\"\n").expect_err("host bits");
        assert!(
            err.to_string().contains("did you mean 10.96.0.0/24"),
            "{err}"
        );
    }

    #[test]
    fn invalid_cidr_and_port_zero_are_rejected() {
        assert!(parse("[[interception.rules]]\ncidr = \"10.96.0.0/33\"\n").is_err());
        let err = parse("[[interception.rules]]\ncidr = \"10.0.0.0/8\"\nports = [0]\n")
            .expect_err("port 0");
        assert!(
            err.to_string().contains("interception.rules[0].ports"),
            "{err}"
        );
        assert!(parse("[[interception.rules]]\ncidr = \"10.0.0.0/8\"\nports = [70000]\n").is_err());
    }

    #[test]
    fn bad_glob_and_reserved_table_are_rejected() {
        let err = parse("[interception]\ninterfaces = [\"veth[\"]\n").expect_err("glob");
        assert!(
            err.to_string().contains("interception.interfaces[0]"),
            "{err}"
        );
        let err = parse("[interception]\nroute_table = 254\n").expect_err("main table");
        assert!(err.to_string().contains("route_table"), "{err}");
    }

    #[test]
    fn interface_globs_match_cni_names_only() {
        let config = parse("").expect("defaults");
        for name in ["veth1234", "cali12345678901", "lxc0a1b2c3d", "eni3f2a"] {
            assert!(config.interception.watches(name), "{name}");
        }
        for name in ["eth0", "lo", "cilium_host", "docker0", "up0"] {
            assert!(!config.interception.watches(name), "{name}");
        }
    }
}
