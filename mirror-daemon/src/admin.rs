//! The admin endpoint: `/metrics` (Prometheus text), `/healthz`, `/readyz`, `/config` (the
//! effective config, as TOML), `/comparisons` (the shadow verdicts report, as JSON).
//!
//! It runs on its own address (loopback by default), never on the intercepted path.

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
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// What the endpoint serves.
pub struct State {
    pub registry: Registry,
    /// The config in force, for `/config`.
    pub config: Arc<arc_swap::ArcSwap<crate::config::Config>>,
    /// Programs attached and listeners registered.
    pub ready: AtomicBool,
    /// The comparisons of shadows' answers with the primaries', for `/comparisons`.
    pub comparisons: Arc<crate::compare::Reports>,
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
        "/readyz" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
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
