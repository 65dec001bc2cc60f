//! The admin endpoint: `/metrics` (Prometheus text), `/healthz`, `/readyz`, `/config` (the
//! effective config, as TOML), `/comparisons` (the shadow verdicts report, as JSON).
//!
//! It runs on its own address (loopback by default), never on the intercepted path.
//! Readiness is served twice: as `/readyz` for probes and as the `mirror_ready` gauge for alerts.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// What the endpoint serves.
pub struct State {
    pub registry: Registry,
    /// The config in force, for `/config`.
    pub config: Arc<arc_swap::ArcSwap<crate::config::Config>>,
    /// Programs attached and listeners registered.
    pub ready: Readiness,
    /// The comparisons of shadows' answers with the primaries', for `/comparisons`.
    pub comparisons: Arc<crate::compare::Reports>,
}

/// Whether the daemon intercepts new flows now (programs attached, listeners registered, no
/// SIGTERM yet): `/readyz` answers 200 exactly while the `mirror_ready` gauge reads 1.
#[derive(Debug)]
pub struct Readiness {
    ready: AtomicBool,
    gauge: Gauge,
}

impl Readiness {
    /// Not ready, with the gauge registered (at 0) in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let gauge = Gauge::default();
        registry.register(
            "mirror_ready",
            "1 while new flows are intercepted (what /readyz answers 200 for), 0 while starting and from SIGTERM on",
            gauge.clone(),
        );
        Self {
            ready: AtomicBool::new(false),
            gauge,
        }
    }

    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        self.gauge.set(i64::from(ready));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Serves until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "admin: accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&request, &state)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(request: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/metrics" => {
            let mut body = String::new();
            if prometheus_client::encoding::text::encode(&mut body, &state.registry).is_err() {
                return text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
            }
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        "/config" => encoded(
            toml::to_string_pretty(&**state.config.load()).ok(),
            "application/toml",
        ),
        "/comparisons" => encoded(
            serde_json::to_vec(&state.comparisons.report()).ok(),
            "application/json",
        ),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.ready.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// A document served with its content type, or a 500 when it could not be encoded.
fn encoded(body: Option<impl Into<Bytes>>, content_type: &'static str) -> Response<Full<Bytes>> {
    let Some(body) = body else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
    };
    let mut response = Response::new(Full::new(body.into()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry)
            .expect("encoding a registry of gauges cannot fail");
        text
    }

    #[test]
    fn the_ready_gauge_follows_readiness() {
        let mut registry = Registry::default();
        let readiness = Readiness::register(&mut registry);
        assert!(!readiness.is_ready());
        assert!(exposition(&registry).contains("\nmirror_ready 0\n"));
        readiness.set(true);
        assert!(readiness.is_ready());
        assert!(exposition(&registry).contains("\nmirror_ready 1\n"));
        readiness.set(false);
        assert!(!readiness.is_ready());
        assert!(exposition(&registry).contains("\nmirror_ready 0\n"));
    }
}
