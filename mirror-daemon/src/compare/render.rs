//! The report for a person at a terminal: `mirror-daemon comparisons` prints [`render`] of what
//! `/comparisons` serves.
//!
//! One block per (rule, target): verdict counts and shares, latency percentiles of both sides,
//! the fields that differ with how often (noise marked as such), and the last mismatches with
//! both values. Plain text, aligned columns, no colour: it reads the same in a pipe.

use std::fmt::Write as _;

use super::{
    report::{ComparisonReport, Mismatch, Percentiles, Report},
    verdict::Verdict,
};

/// The report as tables.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    if report.comparisons.is_empty() {
        out.push_str(
            "No comparisons: no mirror rule has a [mirror.rules.compare] section \
             (README: Comparing the shadow's answers).\n",
        );
        return out;
    }
    for (i, comparison) in report.comparisons.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_comparison(&mut out, comparison);
    }
    out
}

fn render_comparison(out: &mut String, c: &ComparisonReport) {
    let _ = writeln!(
        out,
        "{} -> {}: {} pairs compared ({} of mirrored requests, bodies up to {})",
        c.rule,
        c.target,
        thousands(c.pairs),
        percent_value(c.percent),
        bytes(c.max_body_bytes),
    );
    // Verdicts.
    let _ = writeln!(out, "\n  {:<17} {:>9} {:>7}", "verdict", "pairs", "share");
    for (label, count) in Verdict::LABELS.iter().zip(c.verdicts.as_array()) {
        let detail = match *label {
            "match" if c.matched_apart_from_noise > 0 => {
                format!("{} apart from noise", thousands(c.matched_apart_from_noise))
            }
            "shadow_error" => breakdown(c.shadow_errors.iter()),
            "not_compared" => breakdown(c.not_compared.iter()),
            _ => String::new(),
        };
        let line = format!(
            "  {label:<17} {:>9} {:>7}   {detail}",
            thousands(count),
            share(count, c.pairs)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    // Latency.
    let _ = writeln!(
        out,
        "\n  {:<17} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p90", "p99", "answers"
    );
    for (name, side) in [
        ("primary", &c.latency.primary),
        ("shadow", &c.latency.shadow),
    ] {
        for (point, percentiles) in [("head", &side.to_head), ("end", &side.to_end)] {
            let _ = writeln!(
                out,
                "  {:<17} {}",
                format!("{name} {point}"),
                latency_row(percentiles)
            );
        }
    }
    // Fields.
    let noise = &c.noise;
    let _ = writeln!(
        out,
        "\n  fields that differ, over the last {} pairs of equal status (noise: differs in >= {} \
         of >= {} pairs{})",
        thousands(u64::from(c.window_pairs)),
        percent_value(noise.threshold * 100.0),
        noise.min_pairs,
        if noise.ignore_noisy {
            ", left out of verdicts"
        } else {
            ", still counted in verdicts"
        }
    );
    if c.fields.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let width = c
        .fields
        .iter()
        .map(|f| f.field.chars().count())
        .max()
        .unwrap_or(0);
    for field in &c.fields {
        let line = format!(
            "  {:<width$}  differs in {:>7} of pairs  ({} of {}){}",
            field.field,
            share(
                u64::from(field.differing_pairs),
                u64::from(field.compared_pairs)
            ),
            thousands(u64::from(field.differing_pairs)),
            thousands(u64::from(field.compared_pairs)),
            if field.noise { "  noise" } else { "" },
        );
        let _ = writeln!(out, "{line}");
    }
    // Mismatches.
    if !c.last_mismatches.is_empty() {
        let _ = writeln!(out, "\n  last mismatches, newest first (time UTC)");
        for mismatch in &c.last_mismatches {
            render_mismatch(out, mismatch);
        }
    }
}

fn render_mismatch(out: &mut String, m: &Mismatch) {
    let status = |status: Option<u16>, grpc: Option<u32>| match (status, grpc) {
        (Some(status), Some(grpc)) => format!("{status} grpc-status {grpc}"),
        (Some(status), None) => status.to_string(),
        (None, _) => "-".to_string(),
    };
    let shadow = match &m.shadow_error {
        Some(kind) => format!("error {kind}"),
        None => status(m.shadow_status, m.shadow_grpc_status),
    };
    let _ = writeln!(
        out,
        "  {}  {:<15}  {}  primary {}, shadow {}",
        time_of_day(m.at_unix_ms),
        m.verdict,
        m.request,
        status(m.primary_status, m.primary_grpc_status),
        shadow
    );
    let width = m
        .fields
        .iter()
        .map(|f| field_label(f.field.as_str(), f.more_places).chars().count())
        .max()
        .unwrap_or(0);
    for field in &m.fields {
        let value = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".to_string());
        let _ = writeln!(
            out,
            "            {:<width$}  primary {}",
            field_label(&field.field, field.more_places),
            value(&field.primary)
        );
        let _ = writeln!(
            out,
            "            {:<width$}  shadow  {}",
            "",
            value(&field.shadow)
        );
    }
    let mut notes = Vec::new();
    let fields = |n: u32| if n == 1 { "field" } else { "fields" };
    if m.more_fields > 0 {
        notes.push(format!("{} more {}", m.more_fields, fields(m.more_fields)));
    }
    if m.noisy_fields_left_out > 0 {
        notes.push(format!(
            "{} noisy {} left out",
            m.noisy_fields_left_out,
            fields(m.noisy_fields_left_out)
        ));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "            ({})", notes.join("; "));
    }
}

fn field_label(field: &str, more_places: u32) -> String {
    match more_places {
        0 => field.to_string(),
        n => format!("{field} (+{n} places)"),
    }
}

fn latency_row(p: &Percentiles) -> String {
    let ms = |v: Option<f64>| match v {
        None => "-".to_string(),
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) if v < 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    };
    format!(
        "{:>9} {:>9} {:>9} {:>9}",
        ms(p.p50_ms),
        ms(p.p90_ms),
        ms(p.p99_ms),
        thousands(p.count)
    )
}

/// `timeout 3, reset 1` for the non-zero counts.
fn breakdown<'a>(counts: impl Iterator<Item = (&'a String, &'a u64)>) -> String {
    counts
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name} {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `part` of `whole` as a percentage a person reads at a glance: `2 %`, `1.6 %`, `<0.1 %`,
/// `99.9 %` (never `100 %` unless all).
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_string();
    }
    let value = part as f64 * 100.0 / whole as f64;
    if part == 0 {
        "0 %".to_string()
    } else if value < 0.1 {
        "<0.1 %".to_string()
    } else if part < whole && value > 99.9 {
        "99.9 %".to_string()
    } else {
        percent_value(value)
    }
}

/// `10 %`, `2.5 %`.
fn percent_value(value: f64) -> String {
    let text = format!("{value:.1}");
    format!("{} %", text.strip_suffix(".0").unwrap_or(&text))
}

/// `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `64 KiB`, `1 MiB`, `1000 bytes`.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
fn time_of_day(unix_ms: u64) -> String {
    let seconds = (unix_ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_read_at_a_glance() {
        assert_eq!(share(20, 1000), "2 %");
        assert_eq!(share(1000, 1000), "100 %");
        assert_eq!(share(999_999, 1_000_000), "99.9 %");
        assert_eq!(share(16, 1000), "1.6 %");
        assert_eq!(share(1, 100_000), "<0.1 %");
        assert_eq!(share(0, 10), "0 %");
        assert_eq!(share(0, 0), "-");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(bytes(65536), "64 KiB");
        assert_eq!(time_of_day(3_723_000), "01:02:03");
    }
}
