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
}

impl Metrics {
    /// Parses the text format; comments other than `# TYPE`/`# HELP` are ignored.
    pub fn parse(text: &str) -> Result<Metrics> {
        let mut metrics = Metrics::default();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if let (Some("TYPE" | "HELP"), Some(name)) = (words.next(), words.next()) {
                    metrics.declared.insert(name.to_owned());
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
    fn malformed_lines_are_rejected() {
        assert!(Metrics::parse("mirror_x{a=\"1\" 3").is_err());
        assert!(Metrics::parse("mirror_x").is_err());
        assert!(Metrics::parse("mirror_x abc").is_err());
    }
}
