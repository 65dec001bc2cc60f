//! Prometheus metrics: one registry, every metric with help text and bounded labels.
//!
//! Counters the data path updates live in [`Metrics`]; kernel-side counters are read from the
//! per-CPU map at scrape time by [`KernelCollector`].

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
    },
    registry::Registry,
};

use crate::interception::Interception;

type Labels = [(&'static str, &'static str); 1];

/// Metrics of the data path.
#[derive(Debug, Default)]
pub struct Metrics {
    pub intercepted_connections: Counter,
    pub active_connections: Gauge,
    pub primary_connect_errors: Counter,
    pub client_to_primary_bytes: Counter,
    pub primary_to_client_bytes: Counter,
    /// HTTP/1.1 connections closed at an idle point while draining.
    pub drained_http1: Counter,
    /// HTTP/2 connections closed at an idle point while draining.
    pub drained_http2: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "mirror_intercepted_connections",
            "Connections handed to the daemon by the kernel",
            metrics.intercepted_connections.clone(),
        );
        registry.register(
            "mirror_active_connections",
            "Intercepted connections open now",
            metrics.active_connections.clone(),
        );
        registry.register(
            "mirror_primary_connect_errors",
            "Connections to the original destination that failed or timed out",
            metrics.primary_connect_errors.clone(),
        );
        let relayed = Family::<Labels, Counter>::default();
        registry.register(
            "mirror_relayed_bytes",
            "Bytes relayed between clients and primaries, by direction",
            relayed.clone(),
        );
        let client_to_primary_bytes = relayed
            .get_or_create(&[("direction", "client_to_primary")])
            .clone();
        let primary_to_client_bytes = relayed
            .get_or_create(&[("direction", "primary_to_client")])
            .clone();
        let drained = Family::<Labels, Counter>::default();
        registry.register(
            "mirror_drained_connections",
            "Connections closed at an idle point after SIGTERM (no request or answer under way), \
             by protocol; connections still busy at the drain deadline are reset instead",
            drained.clone(),
        );
        let drained_http1 = drained.get_or_create(&[("protocol", "http1")]).clone();
        let drained_http2 = drained.get_or_create(&[("protocol", "http2")]).clone();
        Self {
            client_to_primary_bytes,
            primary_to_client_bytes,
            drained_http1,
            drained_http2,
            ..metrics
        }
    }
}

/// Reads the kernel side at scrape time (nothing until interception has started).
#[derive(Clone, Default)]
pub struct KernelCollector(pub Arc<std::sync::OnceLock<Arc<Interception>>>);

impl std::fmt::Debug for KernelCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelCollector")
    }
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(interception) = self.0.get() else {
            return Ok(());
        };
        let counters = interception.kernel_counters();
        let mut events = encoder.encode_descriptor(
            "mirror_kernel_events",
            "Decisions of the eBPF programs, by event (summed over CPUs)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (name, value) in mirror_common::counter::NAMES.iter().zip(counters) {
            let labels: Labels = [("event", name)];
            ConstCounter::new(value).encode(events.encode_family(&labels)?)?;
        }
        let attached = ConstGauge::new(interception.attached_interfaces() as i64);
        attached.encode(encoder.encode_descriptor(
            "mirror_attached_interfaces",
            "Pod interfaces whose new flows are intercepted",
            None,
            attached.metric_type(),
        )?)?;
        Ok(())
    }
}
