//! Behaviour of shadow targets against fake shadows on loopback, checked through the metrics
//! they export and what the fakes saw on the wire.
//!
//! `delivery` is about the bytes of a copy, `pooling` about connections and responses, `limits`
//! about queue, concurrency, timeouts and shutdown, `tls` about names and certificates.

mod delivery;
mod fake;
mod fake_h2;
mod http2;
mod limits;
mod pooling;
mod tls;

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use super::{target::Tuning, BodyChunk, BodyFraming, ShadowMetrics, ShadowRequest, Target};
use crate::config::{self, Config};

/// How long a test waits for something that should happen at once; generous for slow CI.
const PATIENCE: Duration = Duration::from_secs(10);

/// A registry with the shadow metrics in it, and targets registered there.
struct Harness {
    registry: Registry,
    metrics: ShadowMetrics,
}

impl Harness {
    fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = ShadowMetrics::register(&mut registry);
        Self { registry, metrics }
    }

    fn spawn(&self, config: config::Target) -> Arc<Target> {
        Target::spawn(config, &self.metrics).expect("target starts")
    }

    fn spawn_tuned(&self, config: config::Target, tuning: Tuning) -> Arc<Target> {
        Target::spawn_tuned(config, &self.metrics, tuning).expect("target starts")
    }

    /// The value of one sample of the `staging` target, e.g. `mirror_shadow_errors_total` with
    /// `kind="connect"`.
    fn value(&self, metric: &str, label: Option<(&str, &str)>) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode");
        let labels = match label {
            Some((name, value)) => format!("{{target=\"staging\",{name}=\"{value}\"}}"),
            None => "{target=\"staging\"}".to_string(),
        };
        let prefix = format!("{metric}{labels} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no sample {prefix:?} in\n{text}"))
            .parse()
            .expect("a number")
    }

    fn errors(&self, kind: &str) -> f64 {
        self.value("mirror_shadow_errors_total", Some(("kind", kind)))
    }

    fn responses(&self, class: &str) -> f64 {
        self.value("mirror_shadow_responses_total", Some(("class", class)))
    }

    fn requests(&self) -> f64 {
        self.value("mirror_shadow_requests_total", None)
    }

    fn open_connections(&self) -> f64 {
        self.value("mirror_shadow_open_connections", None)
    }

    /// Waits until `metric` reaches `value`, failing the test after [`PATIENCE`].
    async fn reaches(&self, what: &str, value: f64, read: impl Fn(&Self) -> f64) {
        eventually(what, || read(self) == value).await;
        assert_eq!(read(self), value, "{what}");
    }
}

/// A target named `staging` at `address`, with the config's defaults.
fn target_config(address: impl std::fmt::Display) -> config::Target {
    // The fake shadows listen on loopback.
    let text = format!("[[mirror.targets]]\nname = \"staging\"\naddress = \"{address}\"\nallow_local_addresses = true\n");
    let mut config = Config::from_toml(&text, "test").expect("valid target config");
    config.mirror.targets.remove(0)
}

/// Polls `done` until it holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `future`, failing the test if it takes longer than [`PATIENCE`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn get(path: &str) -> ShadowRequest {
    ShadowRequest {
        head: Bytes::from(format!(
            "GET {path} HTTP/1.1\r\nHost: orders-shadow\r\nX-Case: Kept\r\n\r\n"
        )),
        body: BodyFraming::None,
        body_ready: Vec::new(),
        body_rx: None,
        is_head: false,
        compare: None,
    }
}

/// A copy whose body the test sends through the returned sender.
fn post(head: &str, body: BodyFraming) -> (ShadowRequest, mpsc::Sender<BodyChunk>) {
    let (tx, rx) = mpsc::channel(16);
    let copy = ShadowRequest {
        head: Bytes::from(head.to_string()),
        body,
        body_ready: Vec::new(),
        body_rx: Some(rx),
        is_head: false,
        compare: None,
    };
    (copy, tx)
}

fn data(bytes: &[u8]) -> BodyChunk {
    BodyChunk::Data(Bytes::copy_from_slice(bytes))
}
