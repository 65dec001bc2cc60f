//! No credential leaves the daemon: not in the report, not in the log line.

use super::*;
use crate::compare::Verdict;

#[test]
fn secret_header_values_differ_without_being_shown() {
    let fixture = Fixture::new(r#"headers = ["authorization", "set-cookie", "x-api-key", "etag"]"#);
    let primary = answer(
        "x",
        &[
            ("authorization", "Bearer primary-secret"),
            ("set-cookie", "session=primary-cookie"),
            ("x-api-key", "primary-key"),
            ("etag", "\"1\""),
        ],
    );
    let shadow = answer(
        "x",
        &[
            ("authorization", "Bearer shadow-secret"),
            ("set-cookie", "session=shadow-cookie"),
            ("x-api-key", "shadow-key"),
            ("etag", "\"2\""),
        ],
    );
    assert_eq!(fixture.record(primary, shadow), Verdict::HeaderMismatch);
    let report = fixture.reports.report();
    let json = serde_json::to_string(&report).expect("json");
    for secret in [
        "secret",
        "primary-cookie",
        "shadow-cookie",
        "primary-key",
        "shadow-key",
    ] {
        assert!(!json.contains(secret), "{secret} leaked: {json}");
    }
    let mismatch = &report.comparisons[0].last_mismatches[0];
    let shown: Vec<(&str, Option<&str>)> = mismatch
        .fields
        .iter()
        .map(|f| (f.field.as_str(), f.shadow.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            ("header:authorization", Some("[redacted]")),
            ("header:set-cookie", Some("[redacted]")),
            ("header:x-api-key", Some("[redacted]")),
            ("header:etag", Some("\"2\"")),
        ]
    );
    let rendered = crate::compare::render::render(&report);
    assert!(
        !rendered.contains("secret") && !rendered.contains("primary-key"),
        "{rendered}"
    );
}

#[test]
fn credentials_in_the_query_are_redacted_from_request_lines() {
    let line = RequestLine::new(
        "GET",
        "/login?user=ann&access_token=abc123",
        Protocol::Http2,
    );
    assert_eq!(
        line.as_str(),
        "GET /login?user=ann&access_token=[redacted] HTTP/2"
    );
    let long = RequestLine::new("GET", &format!("/{}", "a".repeat(500)), Protocol::Http1);
    assert!(long.as_str().chars().count() < 230, "{long}");
}

#[test]
fn the_log_line_names_fields_but_never_values() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let fixture = Fixture::new(r#"headers = ["authorization"]"#);
    // One instant for all 30 pairs: the limit is counted per second of the log's clock, and a
    // test thread descheduled for a second on a loaded machine must not change the count.
    let now = std::time::Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..30 {
            fixture.record_at(
                now,
                answer(
                    r#"{"card":"4111-1111"}"#,
                    &[("authorization", "Bearer s3cr3t")],
                ),
                answer(
                    &format!(r#"{{"card":"9999-{i}"}}"#),
                    &[("authorization", "Bearer other")],
                ),
            );
        }
    });
    let log = String::from_utf8(capture.0.lock().expect("capture").clone()).expect("utf8");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 10, "rate-limited to 10 a second: {log}");
    for line in &lines {
        assert!(
            line.contains("rule=orders") && line.contains("target=staging"),
            "{line}"
        );
        assert!(line.contains("verdict=body_mismatch"), "{line}");
        assert!(line.contains("fields=header:authorization,/card"), "{line}");
        assert!(
            line.contains("GET /api/orders/7?currency=EUR HTTP/1.1"),
            "{line}"
        );
        assert!(!line.contains("s3cr3t") && !line.contains("4111"), "{line}");
    }
}
