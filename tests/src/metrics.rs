//! Parsing the daemon's Prometheus / OpenMetrics text exposition.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{bail, Context, Result};

/// The daemon's metric names (the contract the tests hold it to).
pub mod names {
    /// Connections accepted from interception.
    pub const INTERCEPTED: &str = "mirror_intercepted_connections_total";
    /// Bytes relayed, labelled `direction`.
    pub const RELAYED_BYTES: &str = "mirror_relayed_bytes_total";
    /// Kernel-side events, labelled `event`.
    pub const KERNEL_EVENTS: &str = "mirror_kernel_events_total";
    /// Interfaces the classifier is attached to.
    pub const ATTACHED_INTERFACES: &str = "mirror_attached_interfaces";
    /// HTTP/1.1 requests framed on intercepted connections.
    pub const REQUESTS_FRAMED: &str = "mirror_requests_framed_total";
    /// Framed requests that matched no mirror rule.
    pub const REQUESTS_UNMATCHED: &str = "mirror_requests_unmatched_total";
    /// Request copies, labelled `target` and `outcome`.
    pub const COPIES: &str = "mirror_copies_total";
    /// Connections relayed as opaque tunnels, labelled `reason`.
    pub const TUNNELLED: &str = "mirror_tunnelled_connections_total";
    /// Copies completely written to a shadow, labelled `target`.
    pub const SHADOW_REQUESTS: &str = "mirror_shadow_requests_total";
    /// Responses read from a shadow, labelled `target` and `class` (`2xx`, ...).
    pub const SHADOW_RESPONSES: &str = "mirror_shadow_responses_total";
    /// Copies that failed on their way to a shadow, labelled `target` and `kind`.
    pub const SHADOW_ERRORS: &str = "mirror_shadow_errors_total";
    /// Configuration reloads, labelled `result` (`success`, `failure`).
    pub const CONFIG_RELOADS: &str = "mirror_config_reloads_total";

    /// Every `outcome` of [`COPIES`].
    pub const COPY_OUTCOMES: [&str; 9] = [
        "mirrored",
        "sampled_out",
        "method_not_allowed",
        "no_host",
        "rate_limited",
        "body_over_cap",
        "queue_full",
        "body_backpressure",
        "abandoned",
    ];
    /// Every `kind` of [`SHADOW_ERRORS`].
    pub const SHADOW_ERROR_KINDS: [&str; 8] = [
        "dns", "connect", "timeout", "reset", "tls", "protocol", "aborted", "refused",
    ];
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    samples: Vec<Sample>,
    /// Names declared by `# TYPE` / `# HELP`, so an empty labelled family still counts as known.
    declared: BTreeSet<String>,
    /// `# HELP` text by family name.
    help: BTreeMap<String, String>,
    /// `# TYPE` by family name.
    types: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses the text format; comments other than `# TYPE`/`# HELP` are ignored.
    pub fn parse(text: &str) -> Result<Metrics> {
        let mut metrics = Metrics::default();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, ' ');
                if let (Some(kind @ ("TYPE" | "HELP")), Some(name)) = (words.next(), words.next()) {
                    metrics.declared.insert(name.to_owned());
                    let text = words.next().unwrap_or_default().trim().to_owned();
                    let table = match kind {
                        "TYPE" => &mut metrics.types,
                        _ => &mut metrics.help,
                    };
                    table.insert(name.to_owned(), text);
                }
                continue;
            }
            metrics
                .samples
                .push(parse_sample(line).with_context(|| format!("bad metrics line {line:?}"))?);
        }
        Ok(metrics)
    }

    /// Whether the daemon exposes a metric of this name (with or without samples yet).
    pub fn has(&self, name: &str) -> bool {
        let family = name.strip_suffix("_total").unwrap_or(name);
        self.declared.contains(name)
            || self.declared.contains(family)
            || self.samples.iter().any(|sample| sample.name == name)
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|sample| sample.name == name && sample.labels == wanted)
            .map(|sample| sample.value)
    }

    /// A counter's value; 0 when the metric is declared but that label set has no sample yet.
    /// Fails when the daemon does not expose the metric at all, naming what it does expose.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Result<u64> {
        if let Some(value) = self.get(name, labels) {
            return Ok(value as u64);
        }
        if self.has(name) {
            return Ok(0);
        }
        bail!(
            "the daemon exposes no metric {name}; it has: {}",
            self.names().join(", ")
        )
    }

    /// `mirror_intercepted_connections_total`.
    pub fn intercepted(&self) -> Result<u64> {
        self.counter(names::INTERCEPTED, &[])
    }

    /// `mirror_kernel_events_total{event=...}`.
    pub fn kernel_event(&self, event: &str) -> Result<u64> {
        self.counter(names::KERNEL_EVENTS, &[("event", event)])
    }

    /// `mirror_relayed_bytes_total{direction=...}`.
    pub fn relayed_bytes(&self, direction: &str) -> Result<u64> {
        self.counter(names::RELAYED_BYTES, &[("direction", direction)])
    }

    /// `mirror_copies_total{target, outcome}`.
    pub fn copies(&self, target: &str, outcome: &str) -> Result<u64> {
        self.counter(names::COPIES, &[("target", target), ("outcome", outcome)])
    }

    /// `mirror_tunnelled_connections_total{reason}`.
    pub fn tunnelled(&self, reason: &str) -> Result<u64> {
        self.counter(names::TUNNELLED, &[("reason", reason)])
    }

    /// `mirror_shadow_errors_total{target, kind}`.
    pub fn shadow_errors(&self, target: &str, kind: &str) -> Result<u64> {
        self.counter(names::SHADOW_ERRORS, &[("target", target), ("kind", kind)])
    }

    /// `mirror_shadow_responses_total{target, class}`.
    pub fn shadow_responses(&self, target: &str, class: &str) -> Result<u64> {
        self.counter(
            names::SHADOW_RESPONSES,
            &[("target", target), ("class", class)],
        )
    }

    /// `mirror_shadow_requests_total{target}`.
    pub fn shadow_requests(&self, target: &str) -> Result<u64> {
        self.counter(names::SHADOW_REQUESTS, &[("target", target)])
    }

    /// `mirror_config_reloads_total{result=...}` (`success` or `failure`).
    pub fn config_reloads(&self, result: &str) -> Result<u64> {
        self.counter(names::CONFIG_RELOADS, &[("result", result)])
    }

    /// The `# HELP` text of family `name` (as declared, e.g. `mirror_copies`), if any.
    pub fn help(&self, family: &str) -> Option<&str> {
        self.help.get(family).map(String::as_str)
    }

    /// Families declared by `# TYPE`, with their type (`counter`, `gauge`, `histogram`, ...).
    pub fn types(&self) -> &BTreeMap<String, String> {
        &self.types
    }

    /// The declared family a sample belongs to: `name` itself, or `name` without the suffix its
    /// type adds (`_total`, `_bucket`, `_sum`, `_count`, `_created`, `_info`).
    pub fn family_of(&self, sample: &str) -> Option<&str> {
        if let Some((family, _)) = self.types.get_key_value(sample) {
            return Some(family);
        }
        ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
            .iter()
            .filter_map(|suffix| sample.strip_suffix(suffix))
            .find_map(|family| {
                self.types
                    .get_key_value(family)
                    .map(|(name, _)| name.as_str())
            })
    }

    /// Every sample of `name` (for printing a family on failure).
    pub fn family(&self, name: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .collect()
    }

    /// Distinct sample and declared names.
    pub fn names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.declared.clone();
        names.extend(self.samples.iter().map(|sample| sample.name.clone()));
        names.into_iter().collect()
    }

    /// All samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for sample in &self.samples {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(key, value)| format!("{key}={value:?}"))
                .collect();
            writeln!(
                f,
                "{}{{{}}} {}",
                sample.name,
                labels.join(","),
                sample.value
            )?;
        }
        Ok(())
    }
}

/// The mirror engine's and one shadow target's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorCounters {
    pub framed: u64,
    pub unmatched: u64,
    /// `mirror_copies_total` by outcome, in [`names::COPY_OUTCOMES`] order.
    pub copies: [u64; names::COPY_OUTCOMES.len()],
    pub shadow_requests: u64,
    /// `mirror_shadow_responses_total` of class 2xx.
    pub shadow_2xx: u64,
    /// `mirror_shadow_errors_total` by kind, in [`names::SHADOW_ERROR_KINDS`] order.
    pub shadow_errors: [u64; names::SHADOW_ERROR_KINDS.len()],
}

impl MirrorCounters {
    /// Reads the counters of `target`; fails if the daemon lacks one of the families.
    pub fn from_metrics(metrics: &Metrics, target: &str) -> Result<MirrorCounters> {
        let mut copies = [0; names::COPY_OUTCOMES.len()];
        for (slot, outcome) in copies.iter_mut().zip(names::COPY_OUTCOMES) {
            *slot = metrics.copies(target, outcome)?;
        }
        let mut shadow_errors = [0; names::SHADOW_ERROR_KINDS.len()];
        for (slot, kind) in shadow_errors.iter_mut().zip(names::SHADOW_ERROR_KINDS) {
            *slot = metrics.shadow_errors(target, kind)?;
        }
        Ok(MirrorCounters {
            framed: metrics.counter(names::REQUESTS_FRAMED, &[])?,
            unmatched: metrics.counter(names::REQUESTS_UNMATCHED, &[])?,
            copies,
            shadow_requests: metrics.shadow_requests(target)?,
            shadow_2xx: metrics.shadow_responses(target, "2xx")?,
            shadow_errors,
        })
    }

    /// Copies that ended in `outcome` (one of [`names::COPY_OUTCOMES`]).
    pub fn copies(&self, outcome: &str) -> u64 {
        names::COPY_OUTCOMES
            .iter()
            .position(|name| *name == outcome)
            .map_or(0, |index| self.copies[index])
    }

    /// Shadow errors of `kind` (one of [`names::SHADOW_ERROR_KINDS`]).
    pub fn shadow_errors(&self, kind: &str) -> u64 {
        names::SHADOW_ERROR_KINDS
            .iter()
            .position(|name| *name == kind)
            .map_or(0, |index| self.shadow_errors[index])
    }

    /// How much each counter grew since `earlier`.
    pub fn since(&self, earlier: &MirrorCounters) -> MirrorCounters {
        fn minus<const N: usize>(now: [u64; N], then: [u64; N]) -> [u64; N] {
            let mut delta = [0; N];
            for (slot, (a, b)) in delta.iter_mut().zip(now.iter().zip(then)) {
                *slot = a.saturating_sub(b);
            }
            delta
        }
        MirrorCounters {
            framed: self.framed.saturating_sub(earlier.framed),
            unmatched: self.unmatched.saturating_sub(earlier.unmatched),
            copies: minus(self.copies, earlier.copies),
            shadow_requests: self.shadow_requests.saturating_sub(earlier.shadow_requests),
            shadow_2xx: self.shadow_2xx.saturating_sub(earlier.shadow_2xx),
            shadow_errors: minus(self.shadow_errors, earlier.shadow_errors),
        }
    }
}

impl fmt::Display for MirrorCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "framed {}, unmatched {}; copies:",
            self.framed, self.unmatched
        )?;
        for (outcome, count) in names::COPY_OUTCOMES.iter().zip(self.copies) {
            if count > 0 {
                write!(f, " {outcome} {count}")?;
            }
        }
        write!(
            f,
            "; shadow: written {}, 2xx {}, errors:",
            self.shadow_requests, self.shadow_2xx
        )?;
        for (kind, count) in names::SHADOW_ERROR_KINDS.iter().zip(self.shadow_errors) {
            if count > 0 {
                write!(f, " {kind} {count}")?;
            }
        }
        Ok(())
    }
}

/// The daemon's connection and kernel counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub intercepted: u64,
    pub client_to_primary_bytes: u64,
    pub primary_to_client_bytes: u64,
    pub syn_matched: u64,
    pub passed_no_listener: u64,
    pub passed_watchdog: u64,
    pub steered: u64,
    pub assigned: u64,
    pub assign_failed: u64,
}

impl Counters {
    /// Reads the counters from a scrape; fails if the daemon lacks one of the metric families.
    pub fn from_metrics(metrics: &Metrics) -> Result<Counters> {
        Ok(Counters {
            intercepted: metrics.intercepted()?,
            client_to_primary_bytes: metrics.relayed_bytes("client_to_primary")?,
            primary_to_client_bytes: metrics.relayed_bytes("primary_to_client")?,
            syn_matched: metrics.kernel_event("syn_matched")?,
            passed_no_listener: metrics.kernel_event("passed_no_listener")?,
            passed_watchdog: metrics.kernel_event("passed_watchdog")?,
            steered: metrics.kernel_event("steered")?,
            assigned: metrics.kernel_event("assigned")?,
            assign_failed: metrics.kernel_event("assign_failed")?,
        })
    }

    /// How much each counter grew since `earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            intercepted: self.intercepted.saturating_sub(earlier.intercepted),
            client_to_primary_bytes: self
                .client_to_primary_bytes
                .saturating_sub(earlier.client_to_primary_bytes),
            primary_to_client_bytes: self
                .primary_to_client_bytes
                .saturating_sub(earlier.primary_to_client_bytes),
            syn_matched: self.syn_matched.saturating_sub(earlier.syn_matched),
            passed_no_listener: self
                .passed_no_listener
                .saturating_sub(earlier.passed_no_listener),
            passed_watchdog: self.passed_watchdog.saturating_sub(earlier.passed_watchdog),
            steered: self.steered.saturating_sub(earlier.steered),
            assigned: self.assigned.saturating_sub(earlier.assigned),
            assign_failed: self.assign_failed.saturating_sub(earlier.assign_failed),
        }
    }
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .context("no value")?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, remainder) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remainder;
    }
    // The value may be followed by a timestamp or an exemplar; take the first field.
    let value_text = rest.split_whitespace().next().context("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        text => text
            .parse()
            .with_context(|| format!("bad value {text:?}"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `key="value",...}` and returns the labels and what follows the closing brace.
fn parse_labels(mut text: &str) -> Result<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (key, rest) = text.split_once('=').context("label without '='")?;
        let mut chars = rest
            .strip_prefix('"')
            .context("label value without quotes")?
            .chars();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => bail!("unterminated label value"),
                },
                Some(other) => value.push(other),
                None => bail!("unterminated label value"),
            }
        }
        labels.insert(key.trim().to_owned(), value);
        text = chars.as_str().trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP mirror_intercepted_connections Connections accepted from interception.
# TYPE mirror_intercepted_connections counter
mirror_intercepted_connections_total 3
# TYPE mirror_relayed_bytes counter
mirror_relayed_bytes_total{direction="client_to_primary"} 1048576
# TYPE mirror_kernel_events counter
mirror_kernel_events_total{event="syn_matched"} 4
mirror_kernel_events_total{event="assigned"} 3
mirror_odd{path="a\"b\\c",x="1"} 2.5 1700000000
# TYPE mirror_attached_interfaces gauge
mirror_attached_interfaces 2
# EOF
"#;

    #[test]
    fn counters_and_labels_are_read() -> Result<()> {
        let metrics = Metrics::parse(SCRAPE)?;
        assert_eq!(metrics.intercepted()?, 3);
        assert_eq!(metrics.relayed_bytes("client_to_primary")?, 1_048_576);
        assert_eq!(metrics.kernel_event("syn_matched")?, 4);
        assert_eq!(metrics.get(names::ATTACHED_INTERFACES, &[]), Some(2.0));
        assert_eq!(
            metrics.get("mirror_odd", &[("path", "a\"b\\c"), ("x", "1")]),
            Some(2.5)
        );
        Ok(())
    }

    #[test]
    fn declared_family_without_sample_reads_as_zero() -> Result<()> {
        let metrics = Metrics::parse(SCRAPE)?;
        assert_eq!(metrics.relayed_bytes("primary_to_client")?, 0);
        assert_eq!(metrics.kernel_event("assign_failed")?, 0);
        Ok(())
    }

    #[test]
    fn unknown_metric_is_an_error_naming_what_exists() -> Result<()> {
        let metrics = Metrics::parse(SCRAPE)?;
        let error = metrics
            .counter("mirror_nope_total", &[])
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("mirror_intercepted_connections_total"),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn counters_are_read_and_subtracted() -> Result<()> {
        let counters = Counters::from_metrics(&Metrics::parse(SCRAPE)?)?;
        assert_eq!(counters.intercepted, 3);
        assert_eq!(counters.assigned, 3);
        assert_eq!(counters.primary_to_client_bytes, 0);
        let earlier = Counters {
            intercepted: 1,
            syn_matched: 9,
            ..Counters::default()
        };
        let delta = counters.since(&earlier);
        assert_eq!(delta.intercepted, 2);
        assert_eq!(delta.syn_matched, 0);
        Ok(())
    }

    #[test]
    fn mirror_counters_are_read_by_label_and_subtracted() -> Result<()> {
        let scrape = r#"# TYPE mirror_requests_framed counter
mirror_requests_framed_total 10
# TYPE mirror_requests_unmatched counter
mirror_requests_unmatched_total 1
# TYPE mirror_copies counter
mirror_copies_total{target="staging",outcome="mirrored"} 7
mirror_copies_total{target="staging",outcome="body_over_cap"} 2
mirror_copies_total{target="other",outcome="mirrored"} 99
# TYPE mirror_shadow_requests counter
mirror_shadow_requests_total{target="staging"} 6
# TYPE mirror_shadow_responses counter
mirror_shadow_responses_total{target="staging",class="2xx"} 5
# TYPE mirror_shadow_errors counter
mirror_shadow_errors_total{target="staging",kind="timeout"} 1
"#;
        let metrics = Metrics::parse(scrape)?;
        let now = MirrorCounters::from_metrics(&metrics, "staging")?;
        assert_eq!(now.copies("mirrored"), 7);
        assert_eq!(now.copies("body_over_cap"), 2);
        assert_eq!(now.copies("queue_full"), 0);
        assert_eq!(now.shadow_errors("timeout"), 1);
        assert_eq!(now.shadow_2xx, 5);
        let earlier = MirrorCounters {
            framed: 4,
            copies: [3, 0, 0, 0, 0, 0, 0, 0, 0],
            ..MirrorCounters::default()
        };
        let delta = now.since(&earlier);
        assert_eq!(delta.framed, 6);
        assert_eq!(delta.copies("mirrored"), 4);
        assert!(delta.to_string().contains("mirrored 4"), "{delta}");
        Ok(())
    }

    #[test]
    fn help_text_and_families_are_read() -> Result<()> {
        let metrics = Metrics::parse(SCRAPE)?;
        assert_eq!(
            metrics.help("mirror_intercepted_connections"),
            Some("Connections accepted from interception.")
        );
        assert_eq!(metrics.help("mirror_relayed_bytes"), None);
        assert_eq!(
            metrics
                .types()
                .get("mirror_attached_interfaces")
                .map(String::as_str),
            Some("gauge")
        );
        assert_eq!(
            metrics.family_of("mirror_kernel_events_total"),
            Some("mirror_kernel_events")
        );
        assert_eq!(
            metrics.family_of("mirror_attached_interfaces"),
            Some("mirror_attached_interfaces")
        );
        assert_eq!(metrics.family_of("mirror_odd"), None);
        Ok(())
    }

    #[test]
    fn config_reloads_are_read_by_result() -> Result<()> {
        let scrape = "# HELP mirror_config_reloads Configuration reloads.\n\
                      # TYPE mirror_config_reloads counter\n\
                      mirror_config_reloads_total{result=\"success\"} 2\n";
        let metrics = Metrics::parse(scrape)?;
        assert_eq!(metrics.config_reloads("success")?, 2);
        assert_eq!(metrics.config_reloads("failure")?, 0);
        Ok(())
    }

    #[test]
    fn malformed_lines_are_rejected() {
        assert!(Metrics::parse("mirror_x{a=\"1\" 3").is_err());
        assert!(Metrics::parse("mirror_x").is_err());
        assert!(Metrics::parse("mirror_x abc").is_err());
    }
}
