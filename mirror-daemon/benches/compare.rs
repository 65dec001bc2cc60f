//! Micro-benchmarks of comparing a pair of answers (`compare::Comparison::record`: judging,
//! the noise window, counts, metrics), in ns per pair: `cargo bench -p mirror-daemon --bench
//! compare`.
//!
//! The answers are 1 KiB JSON documents like an orders API's, the size of the issue's cost goal
//! (comparing every mirrored request costs at most 25 % more daemon CPU than mirroring alone).

use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mirror_daemon::{
    compare::{Answer, AnswerBody, Metrics, Primary, Protocol, Reports, RequestLine, Shadow},
    config::Config,
};
use prometheus_client::registry::Registry;

/// A 1 KiB order: `price` of its second item and `generated_at` are the knobs.
fn order(price: &str, generated_at: &str) -> Bytes {
    let mut items = String::new();
    for i in 0..15 {
        let price = if i == 1 { price } else { "12.50" };
        items.push_str(&format!(
            r#"{{"sku":"SKU-{i:04}","name":"Widget {i}","qty":{},"price":"{price}"}},"#,
            i % 3 + 1
        ));
    }
    items.pop();
    let body = format!(
        r#"{{"order":7,"customer":"c-00000042","currency":"EUR","status":"confirmed","items":[{items}],"total":"112.50","generated_at":"{generated_at}"}}"#
    );
    Bytes::from(body)
}

fn answer(body: Bytes) -> Answer {
    Answer {
        status: 200,
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"application/json"),
            ),
            ("etag".into(), Bytes::from_static(b"\"v7\"")),
            (
                "date".into(),
                Bytes::from_static(b"Mon, 01 Jan 2024 00:00:00 GMT"),
            ),
        ],
        body: AnswerBody::Complete(body),
        trailers: Vec::new(),
        grpc_status: None,
        to_head: Duration::from_micros(300),
        to_end: Duration::from_micros(350),
    }
}

fn comparison() -> std::sync::Arc<mirror_daemon::compare::Comparison> {
    let config = Config::from_toml(
        r#"
        [[mirror.targets]]
        name = "staging"
        address = "10.0.0.1:80"
        [[mirror.rules]]
        name = "orders"
        targets = ["staging"]
        [mirror.rules.compare]
        headers = ["etag"]
        "#,
        "bench.toml",
    )
    .expect("valid config");
    let mut registry = Registry::default();
    let reports = Reports::new(Metrics::register(&mut registry));
    let rules = reports.configure(&config.mirror);
    rules[0]
        .as_ref()
        .and_then(|rule| rule.target(0))
        .expect("compared")
        .clone()
}

fn bench_pairs(c: &mut Criterion) {
    let request = RequestLine::new("GET", "/api/v1/orders/7", Protocol::Http1);
    let same = order("12.50", "2024-01-01T00:00:00Z");
    assert!((1000..1100).contains(&same.len()), "{} bytes", same.len());
    let cases = [
        // Equal bytes: the fast path, nothing decoded or parsed.
        (
            "identical_1k_json",
            order("12.50", "t"),
            order("12.50", "t"),
        ),
        // Equal as values, not as bytes (`12.5` for `"12.50"` would differ; a timestamp that is
        // the same instant spelled alike is not): both parsed and walked.
        ("equal_values_1k_json", same.clone(), {
            let text = String::from_utf8(same.to_vec()).expect("utf8");
            Bytes::from(text.replace(r#""order":7"#, r#""order":7.0"#))
        }),
        // The case the issue sizes the cost with: one field differs in every pair.
        (
            "one_field_differs_1k_json",
            order("12.50", "t"),
            order("13.00", "t"),
        ),
    ];
    let mut group = c.benchmark_group("compare");
    group.throughput(Throughput::Elements(1));
    for (name, primary, shadow) in cases {
        let comparison = comparison();
        let primary = Primary::Answered(answer(primary));
        let shadow = Shadow::Answered(answer(shadow));
        group.bench_function(name, |b| {
            b.iter(|| black_box(comparison.record(&request, &primary, &shadow)))
        });
    }
    // A timestamp that differs in every pair: noise after 20 pairs, so pairs are `match`.
    let comparison = comparison();
    let primary = Primary::Answered(answer(order("12.50", "2024-01-01T00:00:00.000001Z")));
    let shadow = Shadow::Answered(answer(order("12.50", "2024-01-01T00:00:00.000002Z")));
    for _ in 0..100 {
        comparison.record(&request, &primary, &shadow);
    }
    group.bench_function("noisy_timestamp_1k_json", |b| {
        b.iter(|| black_box(comparison.record(&request, &primary, &shadow)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_pairs
}
criterion_main!(benches);
