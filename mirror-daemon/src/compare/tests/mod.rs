//! Tests of whole comparisons: pairs in, verdicts, report, rendering and metrics out.

mod lazy;
mod reporting;
mod secrets;
mod verdicts;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use prometheus_client::registry::Registry;

use super::{
    Answer, AnswerBody, Comparison, Metrics, Primary, Protocol, Reports, RequestLine, Shadow,
};
use crate::config;

/// One differing shape: the shape, its first path, its places and both excerpts.
pub(super) type Found = (String, String, u32, Option<String>, Option<String>);

/// What comparing two JSON bodies found, and whether more shapes differed than a pair keeps.
#[derive(Debug, PartialEq)]
pub(super) struct JsonDiff {
    pub found: Vec<Found>,
    pub overflow: bool,
}

/// The differences [`super::json::diff`] finds between two bodies, parsed whole first (both must
/// parse) or (`lazy`) given unparsed, as the daemon gives them.
pub(super) fn json_diff<'t>(
    primary: &'t str,
    shadow: &'t str,
    ignore: &super::path::IgnoreSet,
    lazy: bool,
) -> Result<JsonDiff, super::json::NotJson> {
    use super::document::Node;
    let arena = bumpalo::Bump::new();
    let document = |text: &'t str| {
        let node = if lazy {
            Node::unparsed(text.as_bytes())
        } else {
            Node::parse(text.as_bytes(), &arena)
        };
        arena.alloc(node.expect("the test's documents parse"))
    };
    let (primary, shadow) = (document(primary), document(shadow));
    let mut out = super::differences::Differences::default();
    super::json::diff(primary, shadow, &arena, ignore, &mut out)?;
    let found = out
        .list
        .iter()
        .map(|d| {
            let excerpts = (d.primary.excerpt(), d.shadow.excerpt());
            (
                d.shape.clone(),
                d.path.clone(),
                d.places,
                excerpts.0,
                excerpts.1,
            )
        })
        .collect();
    Ok(JsonDiff {
        found,
        overflow: out.overflow,
    })
}

/// A config with one target `staging` (removing `x-api-key` from copies) and one rule
/// `orders` whose `[compare]` section is `compare` (TOML lines).
fn config(compare: &str) -> config::Config {
    let text = format!(
        r#"
        [[mirror.targets]]
        name = "staging"
        address = "10.0.0.1:80"
        remove_headers = ["x-api-key"]

        [[mirror.rules]]
        name = "orders"
        targets = ["staging"]
        [mirror.rules.compare]
        {compare}
        "#
    );
    config::Config::from_toml(&text, "test.toml").expect("valid config")
}

/// The comparison of rule `orders` to `staging`, its registry, and the metrics text.
struct Fixture {
    comparison: Arc<Comparison>,
    reports: Arc<Reports>,
    registry: Registry,
}

impl Fixture {
    fn new(compare: &str) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let reports = Reports::new(metrics);
        let rules = reports.configure(&config(compare).mirror);
        let comparison = rules[0]
            .as_ref()
            .and_then(|rule| rule.target(0))
            .expect("orders compares staging")
            .clone();
        Self {
            comparison,
            reports,
            registry,
        }
    }

    fn record(&self, primary: Answer, shadow: Answer) -> super::Verdict {
        self.record_at(std::time::Instant::now(), primary, shadow)
    }

    fn record_at(
        &self,
        now: std::time::Instant,
        primary: Answer,
        shadow: Answer,
    ) -> super::Verdict {
        self.comparison.record_at(
            &request(),
            &Primary::Answered(primary),
            &Shadow::Answered(shadow),
            now,
        )
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }
}

/// Rule `orders` comparing target `staging` under `[compare]` lines `compare`: the registry
/// (for the report) and the comparison, for the captures' tests elsewhere.
pub(crate) fn comparison(compare: &str) -> (Arc<Reports>, Arc<Comparison>) {
    let fixture = Fixture::new(compare);
    (fixture.reports, fixture.comparison)
}

fn request() -> RequestLine {
    RequestLine::new("GET", "/api/orders/7?currency=EUR", Protocol::Http1)
}

/// A 200 answer with `body` and `headers`.
fn answer(body: &str, headers: &[(&str, &str)]) -> Answer {
    Answer {
        status: 200,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
        body: AnswerBody::Complete(Bytes::copy_from_slice(body.as_bytes())),
        trailers: Vec::new(),
        grpc_status: None,
        to_head: Duration::from_millis(2),
        to_end: Duration::from_millis(3),
    }
}

fn json_answer(body: &str) -> Answer {
    answer(body, &[("content-type", "application/json")])
}
