//! What users see: the JSON report, the terminal rendering, the metrics; all bounded.

use std::time::Duration;

use super::*;
use crate::compare::{render::render, report::Report, Verdict};

/// A comparison with a known history: 98 matches (differing only in a noisy timestamp after the
/// first 20), 2 price changes, one 500, one timeout.
fn fixture_with_history() -> Fixture {
    let fixture = Fixture::new("last_mismatches = 3\n[mirror.rules.compare.noise]\nmin_pairs = 20");
    for i in 0..100 {
        let price = if i == 40 || i == 90 { "13.00" } else { "12.50" };
        let mut primary = json_answer(&format!(r#"{{"generated_at":{i},"price":"12.50"}}"#));
        let mut shadow = json_answer(&format!(
            r#"{{"generated_at":{},"price":"{price}"}}"#,
            i + 1
        ));
        primary.to_end = Duration::from_millis(10);
        shadow.to_end = Duration::from_millis(40);
        fixture.record(primary, shadow);
    }
    let mut failed = json_answer("{}");
    failed.status = 500;
    fixture.record(json_answer("{}"), failed);
    fixture.comparison.record(
        &request(),
        &Primary::Answered(json_answer("{}")),
        &Shadow::Failed("timeout"),
    );
    fixture
}

#[test]
fn the_report_counts_verdicts_latencies_fields_and_keeps_the_last_mismatches() {
    let fixture = fixture_with_history();
    let report = fixture.reports.report();
    assert_eq!(report.comparisons.len(), 1);
    let c = &report.comparisons[0];
    assert_eq!((c.rule.as_str(), c.target.as_str()), ("orders", "staging"));
    assert_eq!(c.pairs, 102);
    // 20 before the timestamp is known as noise, and the two price changes.
    assert_eq!(c.verdicts.body_mismatch, 22);
    assert_eq!(c.verdicts.matched, 78);
    assert_eq!(c.verdicts.status_mismatch, 1);
    assert_eq!(c.verdicts.shadow_error, 1);
    // Every answer's latency counts, whatever its verdict.
    assert_eq!(c.latency.primary.to_end.count, 102);
    assert_eq!(c.latency.shadow.to_end.count, 101);
    let p50 = |p: &crate::compare::report::Percentiles| p.p50_ms.expect("answers");
    assert!(
        (10.0..12.0).contains(&p50(&c.latency.primary.to_end)),
        "{c:?}"
    );
    assert!(
        (40.0..48.0).contains(&p50(&c.latency.shadow.to_end)),
        "{c:?}"
    );
    assert!(
        (2.0..2.4).contains(&p50(&c.latency.shadow.to_head)),
        "{c:?}"
    );
    assert_eq!(c.window_pairs, 100);
    assert_eq!(c.fields.len(), 2);
    assert_eq!(
        (
            c.fields[0].field.as_str(),
            c.fields[0].rate,
            c.fields[0].noise
        ),
        ("/generated_at", 1.0, true)
    );
    assert_eq!(
        (
            c.fields[1].field.as_str(),
            c.fields[1].rate,
            c.fields[1].noise
        ),
        ("/price", 0.02, false)
    );
    // Newest first, bounded by last_mismatches.
    let verdicts: Vec<&str> = c
        .last_mismatches
        .iter()
        .map(|m| m.verdict.as_str())
        .collect();
    assert_eq!(
        verdicts,
        ["shadow_error", "status_mismatch", "body_mismatch"]
    );
    assert_eq!(c.last_mismatches[1].shadow_status, Some(500));
    let price = &c.last_mismatches[2].fields[0];
    assert_eq!(
        (
            price.field.as_str(),
            price.primary.as_deref(),
            price.shadow.as_deref()
        ),
        ("/price", Some("\"12.50\""), Some("\"13.00\""))
    );
    // The JSON round-trips: the terminal command reads what the endpoint serves.
    let json = serde_json::to_string(&report).expect("serialize");
    assert!(json.contains(r#""match":78"#), "{json}");
    let back: Report = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, report);
}

#[test]
fn the_metrics_count_verdicts_and_latencies_with_bounded_labels() {
    let fixture = fixture_with_history();
    let text = fixture.metrics();
    for line in [
        r#"mirror_comparisons_total{rule="orders",target="staging",verdict="match"} 78"#,
        r#"mirror_comparisons_total{rule="orders",target="staging",verdict="body_mismatch"} 22"#,
        r#"mirror_comparisons_total{rule="orders",target="staging",verdict="shadow_error"} 1"#,
        r#"mirror_comparisons_total{rule="orders",target="staging",verdict="not_compared"} 0"#,
        r#"mirror_comparisons_not_compared_total{rule="orders",target="staging",reason="over_cap"} 0"#,
        r#"mirror_answer_latency_seconds_count{rule="orders",target="staging",side="primary"} 102"#,
        r#"mirror_answer_latency_seconds_count{rule="orders",target="staging",side="shadow"} 101"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(
        !text.contains("/price") && !text.contains("generated_at"),
        "{text}"
    );
}

#[test]
fn the_terminal_rendering_reads_at_a_glance() {
    let mut report = fixture_with_history().reports.report();
    // Fixed times, for a stable rendering.
    for (i, mismatch) in report.comparisons[0].last_mismatches.iter_mut().enumerate() {
        mismatch.at_unix_ms = 1_700_000_000_000 + i as u64 * 1000;
    }
    let text = render(&report);
    let expected = r#"orders -> staging: 102 pairs compared (100 % of mirrored requests, bodies up to 64 KiB)

  verdict               pairs   share
  match                    78  76.5 %   78 apart from noise
  status_mismatch           1     1 %
  body_mismatch            22  21.6 %
  header_mismatch           0     0 %
  shadow_error              1     1 %   timeout 1
  not_compared              0     0 %

  latency (ms)            p50       p90       p99   answers
  primary head           2.26      2.26      2.26       102
  primary end            10.8      10.8      10.8       102
  shadow head            2.26      2.26      2.26       101
  shadow end             43.1      43.1      43.1       101

  fields that differ, over the last 100 pairs of equal status (noise: differs in >= 90 % of >= 20 pairs, left out of verdicts)
  /generated_at  differs in   100 % of pairs  (100 of 100)  noise
  /price         differs in     2 % of pairs  (2 of 100)

  last mismatches, newest first (time UTC)
  22:13:20  shadow_error     GET /api/orders/7?currency=EUR HTTP/1.1  primary 200, shadow error timeout
  22:13:21  status_mismatch  GET /api/orders/7?currency=EUR HTTP/1.1  primary 200, shadow 500
  22:13:22  body_mismatch    GET /api/orders/7?currency=EUR HTTP/1.1  primary 200, shadow 200
            /price  primary "12.50"
                    shadow  "13.00"
            (1 noisy field left out)
"#;
    assert_eq!(text, expected, "got:\n{text}");
    assert!(render(&Report::default()).starts_with("No comparisons"));
}

#[test]
fn reconfiguring_keeps_unchanged_comparisons_and_drops_removed_ones() {
    let mut registry = Registry::default();
    let reports = Reports::new(Metrics::register(&mut registry));
    let first = reports.configure(&config("").mirror);
    let comparison = first[0]
        .as_ref()
        .and_then(|r| r.target(0))
        .expect("one")
        .clone();
    comparison.record(
        &request(),
        &Primary::Answered(json_answer("{}")),
        &Shadow::Failed("reset"),
    );
    let again = reports.configure(&config("").mirror);
    let kept = again[0].as_ref().and_then(|r| r.target(0)).expect("one");
    assert!(
        Arc::ptr_eq(kept, &comparison),
        "same settings: same window and counts"
    );
    let changed = reports.configure(&config("percent = 50").mirror);
    let fresh = changed[0].as_ref().and_then(|r| r.target(0)).expect("one");
    assert!(!Arc::ptr_eq(fresh, &comparison));
    assert_eq!(reports.report().comparisons[0].pairs, 0);
    assert_eq!(reports.report().comparisons[0].percent, 50.0);
    // Without [compare], nothing is compared, reported or labelled.
    let off = crate::config::Config::from_toml(
        "[[mirror.targets]]\nname = \"staging\"\naddress = \"10.0.0.1:80\"\n[[mirror.rules]]\nname = \"orders\"\ntargets = [\"staging\"]\n",
        "off.toml",
    )
    .expect("valid");
    assert!(reports.configure(&off.mirror)[0].is_none());
    assert!(reports.report().comparisons.is_empty());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(!text.contains("rule=\"orders\""), "{text}");
}

#[test]
fn sampling_follows_percent() {
    let fixture_rules = |percent: &str| {
        let mut registry = Registry::default();
        let reports = Reports::new(Metrics::register(&mut registry));
        reports.configure(&config(&format!("percent = {percent}")).mirror)[0]
            .clone()
            .expect("compared")
    };
    let all = fixture_rules("100");
    assert!((0..1000).all(|_| all.sample()));
    let none = fixture_rules("0");
    assert!((0..1000).all(|_| !none.sample()));
    let some = fixture_rules("25");
    let hits = (0..10_000).filter(|_| some.sample()).count();
    assert!((2000..3000).contains(&hits), "{hits}");
    assert_eq!(all.max_body_bytes(), 65536);
}

#[test]
fn memory_stays_bounded_with_endless_distinct_fields_and_mismatches() {
    let fixture = Fixture::new("last_mismatches = 5");
    for i in 0..600 {
        let fields: String = (0..100).map(|j| format!(r#""f{i}_{j}":{j},"#)).collect();
        fixture.record(
            json_answer(&format!("{{{fields}\"x\":0}}")),
            json_answer(r#"{"x":1}"#),
        );
    }
    let report = fixture.comparison.report();
    assert_eq!(report.last_mismatches.len(), 5);
    assert!(report.fields.len() <= crate::compare::MAX_FIELDS);
    assert!(report
        .fields
        .iter()
        .any(|f| f.field == crate::compare::OTHER_FIELDS));
    let mismatch = &report.last_mismatches[0];
    assert_eq!(
        mismatch.fields.len(),
        crate::compare::report::MAX_MISMATCH_FIELDS
    );
    assert!(mismatch.more_fields > 0);
    assert_eq!(report.verdicts.body_mismatch, 600);
    let verdict = fixture.record(json_answer(r#"{"x":1}"#), json_answer(r#"{"x":1}"#));
    assert_eq!(verdict, Verdict::Match);
}

#[test]
fn the_admin_endpoint_serves_the_report_that_the_command_reads() {
    let fixture = fixture_with_history();
    let expected = fixture.reports.report();
    let config = crate::config::Config::from_toml("", "empty").expect("defaults");
    let mut registry = Registry::default();
    let ready = crate::admin::Readiness::register(&mut registry);
    let state = Arc::new(crate::admin::State {
        registry,
        config: Arc::new(arc_swap::ArcSwap::from_pointee(config)),
        ready,
        comparisons: fixture.reports.clone(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fetched = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = listener.local_addr().expect("address");
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(crate::admin::serve(listener, state, stop.clone()));
        let fetched = crate::compare::fetch::fetch(admin).await;
        stop.cancel();
        let _ = server.await;
        fetched
    });
    assert_eq!(fetched.expect("report"), expected);
}
