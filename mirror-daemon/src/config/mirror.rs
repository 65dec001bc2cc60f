//! The `[mirror]` section: shadow targets, and the rules that send copies of requests to them.
//!
//! Targets are named once and referenced by rules, so that several rules share one target's
//! queue, connection pool and limits (like Istio's `mirrors` naming destinations).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Error;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mirror {
    /// Bytes of copies (heads and bodies) the daemon holds for all targets together; copies that
    /// do not fit are dropped and counted. Bounds the shadow path's memory.
    pub max_buffered_bytes: u64,
    pub framing: Framing,
    pub targets: Vec<Target>,
    pub rules: Vec<MirrorRule>,
}

impl Default for Mirror {
    fn default() -> Self {
        Self {
            max_buffered_bytes: 64 * 1024 * 1024,
            framing: Framing::default(),
            targets: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// Limits of the HTTP/1.1 framing of intercepted connections; beyond them a connection is
/// tunnelled (relayed, not mirrored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Framing {
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Framing {
    /// The framers' limits.
    pub fn limits(&self) -> crate::http::FramingLimits {
        crate::http::FramingLimits {
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
        }
    }
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

/// Where copies go, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    /// `host:port`; a DNS name is resolved again for every new connection.
    pub address: String,
    /// Share of matching requests copied, 0 to 100 (fractions allowed).
    #[serde(default = "defaults::percent")]
    pub percent: f64,
    #[serde(default)]
    pub sampling: Sampling,
    /// Appended to the host name (before any port) on the copy, unless `host` or `keep_host`.
    #[serde(default = "defaults::host_suffix")]
    pub host_suffix: String,
    /// A literal Host for the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The copy keeps the original Host.
    #[serde(default)]
    pub keep_host: bool,
    /// Headers set on the copy (replacing any of the same name).
    #[serde(default)]
    pub add_headers: BTreeMap<String, String>,
    /// Headers removed from the copy.
    #[serde(default)]
    pub remove_headers: Vec<String>,
    /// Methods that may be copied; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Copies made per second at most, on this node, after sampling (a token bucket); none
    /// means no limit. A shadow fed by N nodes receives at most N times this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_copies_per_second: Option<f64>,
    /// Copies the bucket holds: how many may go at once after a quiet spell. Defaults to one
    /// second's worth of `max_copies_per_second` (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests with larger bodies go to the primary only.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// From handing the copy to the sender until its response has been read.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Copies in flight at once (= connections at most).
    #[serde(default = "defaults::max_concurrent")]
    pub max_concurrent: usize,
    /// Copies waiting for a free slot; beyond it copies are dropped and counted.
    #[serde(default = "defaults::queue_size")]
    pub queue_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Allow loopback and link-local addresses (e.g. the node's own services, cloud metadata at
    /// 169.254.169.254). Off by default: copies carry production credentials and cookies.
    #[serde(default)]
    pub allow_local_addresses: bool,
}

impl Target {
    /// Whether `other` delivers copies the same way: same address, TLS, timeouts and limits on
    /// connections and queue. Targets that differ only in what they copy (sampling, edits, rate,
    /// methods, body cap) keep their queue and connections across a reload.
    pub fn delivers_like(&self, other: &Target) -> bool {
        self.name == other.name
            && self.address == other.address
            && self.tls == other.tls
            && self.connect_timeout == other.connect_timeout
            && self.request_timeout == other.request_timeout
            && self.max_concurrent == other.max_concurrent
            && self.queue_size == other.queue_size
            && self.allow_local_addresses == other.allow_local_addresses
    }
}

/// Whether `ip` is loopback, link-local or unspecified (also as an IPv4-mapped IPv6 address):
/// places a shadow target may not be unless `allow_local_addresses` is set.
pub fn is_local_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_address(IpAddr::V4(v4)),
            None => {
                v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// TLS to the target (rustls).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// SNI and certificate name; defaults to the host of `address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// PEM bundle of trusted CAs; defaults to the Mozilla roots built into the binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// How a request is picked for copying.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// An independent draw per request.
    #[default]
    Random,
    /// Decided from the trace id of `traceparent` (else `x-request-id`), so every hop and node
    /// makes the same decision for one request; requests with neither are drawn at random.
    Consistent,
}

/// Requests matching `match` are copied to `targets`; the first matching rule wins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matches: Match,
    pub targets: Vec<String>,
    /// Comparing the shadows' answers with the primary's; off without this section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Compare>,
}

impl MirrorRule {
    /// The name in logs, metric labels and reports: `name`, else `rule-N` (N its index).
    pub fn effective_name(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("rule-{index}"))
    }
}

/// `[mirror.rules.compare]`: which of a rule's copies have their answers compared with the
/// primary's, and how.
///
/// It belongs to the rule, not to a target: the API a rule selects decides which fields are noise
/// and which headers matter, and every target of the rule runs a version of that same API, so
/// each (rule, target) pair is compared, and reported, under the rule's settings.
///
/// Both protocols are compared: HTTP/1.1 answers in request order, HTTP/2 (h2c, gRPC) stream by
/// stream, gRPC answers by their `grpc-status` as well as their HTTP status. An HTTP/2
/// connection's responses are decoded only when a rule that may match the connection compares,
/// decided when the connection starts: one that began before a reload added comparing is not
/// compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// Share of the rule's mirrored requests whose answers are compared, 0 to 100.
    #[serde(default = "defaults::percent")]
    pub percent: f64,
    /// Bytes of each side's body (decoded) that are compared; a larger answer is compared by
    /// status and headers only, and says so (`not_compared`, reason `over_cap`).
    #[serde(default = "defaults::compare_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Header (and trailer) names whose values are compared; none by default, so `Date`-like
    /// noise never counts unless asked for.
    #[serde(default)]
    pub headers: Vec<String>,
    /// JSON paths left out of the comparison, JSON-Pointer-like, `*` for any array item or
    /// object member: `/items/*/id`, `/generated_at`.
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub noise: Noise,
    /// Mismatches kept for the report (newest first).
    #[serde(default = "defaults::last_mismatches")]
    pub last_mismatches: usize,
}

/// How fields that differ in nearly every pair are told apart from regressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Noise {
    /// Share (0 to 1) of the window's pairs a field must differ in to be noise.
    pub threshold: f64,
    /// Pairs the window must hold before any field is called noise.
    pub min_pairs: u32,
    /// The last this many compared pairs are the window.
    pub window: u32,
    /// Noisy fields leave the verdict (a pair differing only in them is a `match`).
    pub ignore_noisy: bool,
}

impl Default for Noise {
    fn default() -> Self {
        Self {
            threshold: 0.9,
            min_pairs: 20,
            window: 1000,
            ignore_noisy: true,
        }
    }
}

/// The largest `noise.window`: the window keeps up to 65 field numbers per pair, so this bounds
/// it to ~1.3 MB per (rule, target) even when every pair differs everywhere.
pub const MAX_NOISE_WINDOW: u32 = 10_000;
/// The largest `last_mismatches`.
pub const MAX_LAST_MISMATCHES: usize = 1000;
/// The most `ignore` paths a rule may have (they are matched as one 64-bit set).
pub const MAX_IGNORE_PATHS: usize = 64;

/// Conditions of a rule; all given ones must hold. An empty match matches every request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Match {
    /// Intercepted destination CIDR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<IpNet>,
    /// Intercepted destination ports.
    pub ports: Vec<u16>,
    /// Host without port: exact (`orders.prod`) or wildcard (`*.prod.svc.cluster.local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Regular expression on the path (without query), `regex` crate syntax.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    pub methods: Vec<String>,
    pub headers: Vec<HeaderMatch>,
}

/// A header that must be present, with `value` if given (exact, case-sensitive).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

mod defaults {
    use std::time::Duration;

    pub fn percent() -> f64 {
        100.0
    }
    pub fn host_suffix() -> String {
        "-shadow".into()
    }
    pub fn max_body_bytes() -> u64 {
        1024 * 1024
    }
    pub fn compare_max_body_bytes() -> u64 {
        64 * 1024
    }
    pub fn last_mismatches() -> usize {
        20
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn max_concurrent() -> usize {
        32
    }
    pub fn queue_size() -> usize {
        1024
    }
}

/// Fields a target's header edits may not touch: they frame the message (an edited copy could
/// read as a different request, or several) or belong to the connection.
pub const PROTECTED_FIELDS: [&str; 10] = [
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// Whether `name` is one of [`PROTECTED_FIELDS`], ignoring case and counting `_` as `-` (some
/// servers, CGI-style, do).
pub fn is_protected_field(name: &str) -> bool {
    let name = name.replace('_', "-");
    PROTECTED_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(&name))
}

/// Whether `name` is an HTTP token (RFC 9110 5.6.2), as header names and methods must be.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits `host:port` (or `[v6]:port`) into host and port.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(':') && !address.starts_with('[') {
        return None;
    }
    Some((host, port.parse().ok().filter(|p| *p != 0)?))
}

impl Mirror {
    pub(super) fn validate(&self, invalid: &dyn Fn(&str, String) -> Error) -> Result<(), Error> {
        if self.max_buffered_bytes < 1024 * 1024 {
            return Err(invalid(
                "mirror.max_buffered_bytes",
                "must be at least 1048576 (1 MiB)".into(),
            ));
        }
        if !(128..=1 << 20).contains(&self.framing.max_header_bytes) {
            return Err(invalid(
                "mirror.framing.max_header_bytes",
                "must be between 128 and 1048576".into(),
            ));
        }
        if !(1..=1000).contains(&self.framing.max_headers) {
            return Err(invalid(
                "mirror.framing.max_headers",
                "must be between 1 and 1000".into(),
            ));
        }
        for (i, target) in self.targets.iter().enumerate() {
            let key = |field: &str| format!("mirror.targets[{i}].{field}");
            if target.name.is_empty() || self.targets[..i].iter().any(|t| t.name == target.name) {
                return Err(invalid(
                    &key("name"),
                    format!("{:?} must be non-empty and unique", target.name),
                ));
            }
            let Some((host, _)) = split_host_port(&target.address) else {
                return Err(invalid(
                    &key("address"),
                    format!("{:?} is not host:port", target.address),
                ));
            };
            let local_name =
                host.eq_ignore_ascii_case("localhost") || host.parse().is_ok_and(is_local_address);
            if local_name && !target.allow_local_addresses {
                return Err(invalid(
                    &key("address"),
                    format!(
                        "{:?} is a loopback or link-local address; copies carry credentials, so \
                         set allow_local_addresses = true if this is really wanted",
                        target.address
                    ),
                ));
            }
            if let Some(rate) = target.max_copies_per_second {
                if !(rate.is_finite() && rate > 0.0 && rate <= 1e9) {
                    return Err(invalid(
                        &key("max_copies_per_second"),
                        format!("{rate} is not a rate between 0 (excluded) and 1e9"),
                    ));
                }
            }
            match (target.burst, target.max_copies_per_second) {
                (Some(0), _) => {
                    return Err(invalid(&key("burst"), "must be at least 1".into()));
                }
                (Some(_), None) => {
                    return Err(invalid(
                        &key("burst"),
                        "needs max_copies_per_second, the rate the bucket refills at".into(),
                    ));
                }
                _ => {}
            }
            if !(0.0..=100.0).contains(&target.percent) {
                return Err(invalid(
                    &key("percent"),
                    format!("{} is not between 0 and 100", target.percent),
                ));
            }
            if target.host.is_some() && target.keep_host {
                return Err(invalid(
                    &key("keep_host"),
                    "contradicts `host`: choose a literal host or keeping the original".into(),
                ));
            }
            if let Some(host) = &target.host {
                if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(invalid(&key("host"), format!("{host:?} is not a host")));
                }
            }
            if target
                .host_suffix
                .bytes()
                .any(|b| b <= b' ' || b == b':' || b == 0x7f)
            {
                return Err(invalid(
                    &key("host_suffix"),
                    format!("{:?} cannot be part of a host name", target.host_suffix),
                ));
            }
            for name in target.add_headers.keys().chain(&target.remove_headers) {
                if is_protected_field(name) {
                    return Err(invalid(
                        &key(if target.add_headers.contains_key(name) {
                            "add_headers"
                        } else {
                            "remove_headers"
                        }),
                        format!(
                            "{name:?} cannot be edited: it frames the message or the connection \
                             (use host, host_suffix or keep_host for Host)"
                        ),
                    ));
                }
            }
            for (name, value) in &target.add_headers {
                // A field value is visible characters, spaces and tabs (RFC 9110 5.5).
                let bad_value = value.bytes().any(|b| b != b'\t' && (b < 0x20 || b == 0x7f));
                if !is_token(name) || bad_value {
                    return Err(invalid(
                        &key("add_headers"),
                        format!("{name:?}: {value:?} is not a valid header"),
                    ));
                }
            }
            for name in &target.remove_headers {
                if !is_token(name) {
                    return Err(invalid(
                        &key("remove_headers"),
                        format!("{name:?} is not a header name"),
                    ));
                }
            }
            for method in &target.methods {
                if !is_token(method) {
                    return Err(invalid(
                        &key("methods"),
                        format!("{method:?} is not a method"),
                    ));
                }
            }
            for (field, value) in [
                ("connect_timeout", target.connect_timeout),
                ("request_timeout", target.request_timeout),
            ] {
                if value.is_zero() {
                    return Err(invalid(&key(field), "must be greater than 0".into()));
                }
            }
            if target.max_concurrent == 0 || target.queue_size == 0 {
                return Err(invalid(
                    &key(if target.max_concurrent == 0 {
                        "max_concurrent"
                    } else {
                        "queue_size"
                    }),
                    "must be at least 1".into(),
                ));
            }
            if let Some(ca_file) = target.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
                if let Err(e) = std::fs::metadata(ca_file) {
                    return Err(invalid(
                        &key("tls.ca_file"),
                        format!("{}: {e}", ca_file.display()),
                    ));
                }
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let key = |field: &str| format!("mirror.rules[{i}].{field}");
            if rule.targets.is_empty() {
                return Err(invalid(&key("targets"), "name at least one target".into()));
            }
            for name in &rule.targets {
                if !self.targets.iter().any(|t| &t.name == name) {
                    return Err(invalid(
                        &key("targets"),
                        format!("no target is named {name:?}"),
                    ));
                }
            }
            let m = &rule.matches;
            if m.ports.contains(&0) {
                return Err(invalid(&key("match.ports"), "port 0 is not a port".into()));
            }
            if let Some(prefix) = &m.path_prefix {
                if !prefix.starts_with('/') {
                    return Err(invalid(
                        &key("match.path_prefix"),
                        format!("{prefix:?} must start with '/'"),
                    ));
                }
            }
            if let Some(pattern) = &m.path_regex {
                if let Err(e) = regex::Regex::new(pattern) {
                    // The regex crate draws a multi-line caret diagram; its last line says it all.
                    let text = e.to_string();
                    let reason = text.lines().last().unwrap_or_default();
                    let reason = reason.trim().trim_start_matches("error: ");
                    return Err(invalid(
                        &key("match.path_regex"),
                        format!("{pattern:?} is not a valid regex: {reason}"),
                    ));
                }
            }
            if let Some(host) = &m.host {
                let bare = host.strip_prefix("*.").unwrap_or(host);
                if bare.is_empty() || bare.contains(['*', ':', ' ', '/']) {
                    return Err(invalid(
                        &key("match.host"),
                        format!("{host:?} is neither a host name nor `*.suffix`"),
                    ));
                }
            }
            for method in &m.methods {
                if !is_token(method) {
                    return Err(invalid(
                        &key("match.methods"),
                        format!("{method:?} is not a method"),
                    ));
                }
            }
            for header in &m.headers {
                if !is_token(&header.name) {
                    return Err(invalid(
                        &key("match.headers"),
                        format!("{:?} is not a header name", header.name),
                    ));
                }
            }
            if let Some(compare) = &rule.compare {
                let compare_key = |field: &str| key(&format!("compare.{field}"));
                self.validate_compare(compare, &compare_key, invalid)?;
                let name = rule.effective_name(i);
                let earlier = self.rules[..i].iter().enumerate();
                if earlier
                    .filter(|(_, r)| r.compare.is_some())
                    .any(|(j, r)| r.effective_name(j) == name)
                {
                    return Err(invalid(
                        &key("name"),
                        format!(
                            "{name:?} names an earlier rule with [compare] too; comparisons are \
                             reported by rule name, so give each its own"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_compare(
        &self,
        compare: &Compare,
        key: &dyn Fn(&str) -> String,
        invalid: &dyn Fn(&str, String) -> Error,
    ) -> Result<(), Error> {
        if !(0.0..=100.0).contains(&compare.percent) {
            return Err(invalid(
                &key("percent"),
                format!("{} is not between 0 and 100", compare.percent),
            ));
        }
        // Both answers of a pair are held at once, charged to the copy budget.
        if compare.max_body_bytes.saturating_mul(2) > self.max_buffered_bytes {
            return Err(invalid(
                &key("max_body_bytes"),
                format!(
                    "{} bytes per side do not fit twice in mirror.max_buffered_bytes ({})",
                    compare.max_body_bytes, self.max_buffered_bytes
                ),
            ));
        }
        for (j, name) in compare.headers.iter().enumerate() {
            if !is_token(name) {
                return Err(invalid(
                    &key(&format!("headers[{j}]")),
                    format!("{name:?} is not a header name"),
                ));
            }
        }
        if compare.ignore.len() > MAX_IGNORE_PATHS {
            return Err(invalid(
                &key("ignore"),
                format!("{} paths; at most {MAX_IGNORE_PATHS}", compare.ignore.len()),
            ));
        }
        for (j, path) in compare.ignore.iter().enumerate() {
            if let Err(reason) = crate::compare::IgnorePath::parse(path) {
                return Err(invalid(
                    &key(&format!("ignore[{j}]")),
                    format!("{path:?} {reason}"),
                ));
            }
        }
        let noise = &compare.noise;
        if !(noise.threshold > 0.0 && noise.threshold <= 1.0) {
            return Err(invalid(
                &key("noise.threshold"),
                format!(
                    "{} is not a share of pairs between 0 (excluded) and 1, e.g. 0.9",
                    noise.threshold
                ),
            ));
        }
        if !(1..=MAX_NOISE_WINDOW).contains(&noise.window) {
            return Err(invalid(
                &key("noise.window"),
                format!("must be between 1 and {MAX_NOISE_WINDOW} pairs"),
            ));
        }
        if !(1..=noise.window).contains(&noise.min_pairs) {
            return Err(invalid(
                &key("noise.min_pairs"),
                format!(
                    "must be between 1 and noise.window ({}): the window never holds more",
                    noise.window
                ),
            ));
        }
        if compare.last_mismatches > MAX_LAST_MISMATCHES {
            return Err(invalid(
                &key("last_mismatches"),
                format!("must be at most {MAX_LAST_MISMATCHES}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::from_toml(text, "test.toml")
    }

    const TARGET: &str = r#"
        [[mirror.targets]]
        name = "staging"
        address = "ingress.staging.example:443"
    "#;

    #[test]
    fn target_defaults_follow_istio() {
        let config = parse(TARGET).expect("valid");
        let target = &config.mirror.targets[0];
        assert_eq!(target.percent, 100.0);
        assert_eq!(target.host_suffix, "-shadow");
        assert_eq!(target.sampling, Sampling::Random);
        assert!(target.tls.is_none());
    }

    #[test]
    fn rules_reference_targets_by_name() {
        let err = parse(&format!(
            "{TARGET}\n[[mirror.rules]]\ntargets = [\"prod\"]\n"
        ))
        .expect_err("unknown target");
        assert!(
            err.to_string().contains("no target is named \"prod\""),
            "{err}"
        );
        let ok = parse(&format!(
            "{TARGET}\n[[mirror.rules]]\ntargets = [\"staging\"]\n[mirror.rules.match]\nhost = \"*.prod.svc\"\npath_regex = \"^/v[0-9]+/\"\n"
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn percent_out_of_range_and_contradictory_host_are_rejected() {
        let err = parse(&format!("{TARGET}percent = 100.5\n")).expect_err("percent");
        assert!(
            err.to_string().contains("mirror.targets[0].percent"),
            "{err}"
        );
        let err = parse(&format!("{TARGET}host = \"a\"\nkeep_host = true\n")).expect_err("host");
        assert!(err.to_string().contains("keep_host"), "{err}");
    }

    #[test]
    fn bad_regex_address_and_header_are_rejected() {
        let err = parse(&format!(
            "{TARGET}\n[[mirror.rules]]\ntargets = [\"staging\"]\nmatch = {{ path_regex = \"(\" }}\n"
        ))
        .expect_err("regex");
        assert!(err.to_string().contains("match.path_regex"), "{err}");
        let err = parse("[[mirror.targets]]\nname = \"a\"\naddress = \"no-port\"\n")
            .expect_err("address");
        assert!(err.to_string().contains("address"), "{err}");
        let err = parse(&format!(
            "{TARGET}add_headers = {{ \"bad header\" = \"x\" }}\n"
        ))
        .expect_err("header");
        assert!(err.to_string().contains("add_headers"), "{err}");
    }

    #[test]
    fn local_targets_need_an_explicit_allowance() {
        for address in [
            "127.0.0.1:80",
            "localhost:80",
            "[::1]:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            let text = format!("[[mirror.targets]]\nname = \"t\"\naddress = \"{address}\"\n");
            let err = parse(&text).expect_err(address);
            assert!(err.to_string().contains("allow_local_addresses"), "{err}");
            assert!(
                parse(&format!("{text}allow_local_addresses = true\n")).is_ok(),
                "{address}"
            );
        }
        assert!(parse("[[mirror.targets]]\nname = \"t\"\naddress = \"10.0.0.1:80\"\n").is_ok());
    }

    const RULE: &str = "\n[[mirror.rules]]\nname = \"orders\"\ntargets = [\"staging\"]\n";

    #[test]
    fn compare_is_off_without_its_section_and_defaults_with_it() {
        let config = parse(&format!("{TARGET}{RULE}")).expect("valid");
        assert!(config.mirror.rules[0].compare.is_none());
        let config = parse(&format!("{TARGET}{RULE}[mirror.rules.compare]\n")).expect("valid");
        let compare = config.mirror.rules[0].compare.as_ref().expect("on");
        assert_eq!(compare.percent, 100.0);
        assert_eq!(compare.max_body_bytes, 65536);
        assert!(compare.headers.is_empty() && compare.ignore.is_empty());
        assert_eq!(compare.noise, Noise::default());
        assert_eq!(
            (
                compare.noise.threshold,
                compare.noise.min_pairs,
                compare.noise.window
            ),
            (0.9, 20, 1000)
        );
        assert!(compare.noise.ignore_noisy);
        assert_eq!(compare.last_mismatches, 20);
    }

    #[test]
    fn compare_settings_out_of_range_are_rejected_with_their_key() {
        for (lines, key, message) in [
            ("percent = 101", "compare.percent", "not between 0 and 100"),
            (
                "ignore = [\"items/*/id\"]",
                "compare.ignore",
                "must start with '/'",
            ),
            (
                "headers = [\"bad header\"]",
                "compare.headers",
                "not a header name",
            ),
            (
                "max_body_bytes = 67108864",
                "compare.max_body_bytes",
                "do not fit twice",
            ),
            (
                "last_mismatches = 1001",
                "compare.last_mismatches",
                "at most 1000",
            ),
            (
                "noise = { threshold = 90.0 }",
                "compare.noise.threshold",
                "e.g. 0.9",
            ),
            (
                "noise = { window = 0 }",
                "compare.noise.window",
                "between 1 and 10000",
            ),
            (
                "noise = { window = 10, min_pairs = 11 }",
                "compare.noise.min_pairs",
                "never holds more",
            ),
        ] {
            let err = parse(&format!("{TARGET}{RULE}[mirror.rules.compare]\n{lines}\n"))
                .expect_err(lines);
            let text = err.to_string();
            assert!(
                text.contains(&format!("mirror.rules[0].{key}")) && text.contains(message),
                "{lines}: {text}"
            );
        }
    }

    #[test]
    fn compared_rules_need_distinct_names() {
        let text = format!("{TARGET}{RULE}[mirror.rules.compare]\n{RULE}[mirror.rules.compare]\n");
        let err = parse(&text).expect_err("same name");
        assert!(err.to_string().contains("mirror.rules[1].name"), "{err}");
        // Without [compare] on both, names may repeat as before.
        assert!(parse(&format!("{TARGET}{RULE}[mirror.rules.compare]\n{RULE}")).is_ok());
    }

    #[test]
    fn host_port_splitting_handles_ipv6_and_rejects_missing_ports() {
        assert_eq!(split_host_port("a.example:80"), Some(("a.example", 80)));
        assert_eq!(split_host_port("[fd00::1]:8080"), Some(("fd00::1", 8080)));
        assert_eq!(split_host_port("fd00::1:8080"), None);
        assert_eq!(split_host_port("a.example"), None);
        assert_eq!(split_host_port("a.example:0"), None);
    }
}
