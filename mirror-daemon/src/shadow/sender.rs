//! The way of one copy, from leaving the queue to the end of its response.
//!
//! A copy takes the newest pooled connection that is still open, or dials a new one, and has
//! `request_timeout` for all of it. Whatever happens is counted: the response's status class and
//! latency, or the error's kind. A copy that finds its pooled connection closed by the shadow
//! just as it went out is sent again on another connection, but only if it has no body: a body
//! is consumed as it is written.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::{timeout_at, Instant};

use super::{
    dial::Dialer,
    error::{CopyError, Failure, Phase},
    exchange::exchange,
    health::Health,
    metrics::TargetMetrics,
    pool::{Connection, Pool},
    request::ShadowRequest,
    response::Response,
};

/// What every copy of one target needs on its way.
#[derive(Debug)]
pub(super) struct Sender {
    name: Arc<str>,
    /// As configured, for messages before there is a connected address.
    address: String,
    dialer: Dialer,
    request_timeout: Duration,
    pool: Arc<Pool>,
    /// Shared by the target's lanes: a failing shadow is logged once, not once per worker.
    health: Arc<Health>,
    metrics: TargetMetrics,
}

impl Sender {
    pub fn new(
        name: Arc<str>,
        address: String,
        dialer: Dialer,
        request_timeout: Duration,
        pool: Arc<Pool>,
        health: Arc<Health>,
        metrics: TargetMetrics,
    ) -> Self {
        Self {
            name,
            address,
            dialer,
            request_timeout,
            pool,
            health,
            metrics,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Copies waiting in the target's queue.
    pub fn queue_depth(&self) -> &Gauge {
        &self.metrics.queue_depth
    }

    /// Sends one copy and counts how it went.
    pub async fn deliver(&self, mut copy: ShadowRequest, dequeued: Instant) {
        let mut peer = None;
        let result = timeout_at(
            dequeued + self.request_timeout,
            self.send(&mut copy, &mut peer),
        )
        .await
        .unwrap_or(Err(Failure::Timeout(self.request_timeout)));
        match result {
            Ok(response) => {
                let latency = dequeued.elapsed();
                self.metrics.latency.observe(latency.as_secs_f64());
                self.metrics.response(response.status).inc();
                self.health.answered(&self.name);
                tracing::debug!(
                    target_name = %self.name,
                    status = response.status,
                    ?latency,
                    "shadow copy answered"
                );
            }
            Err(failure) => {
                let error = CopyError {
                    target: self.name.clone(),
                    peer: peer.map_or_else(|| self.address.clone(), |p| p.to_string()),
                    failure,
                };
                self.metrics.error(error.kind()).inc();
                self.health.failed(&error);
            }
        }
    }

    /// Sends `copy` on a pooled connection, or a new one; `peer` follows the address in use.
    async fn send(
        &self,
        copy: &mut ShadowRequest,
        peer: &mut Option<SocketAddr>,
    ) -> Result<Response, Failure> {
        loop {
            let mut connection = match self.pool.take().await {
                Some(connection) => connection,
                None => self.connect(peer).await?,
            };
            *peer = Some(connection.peer);
            match exchange(&mut connection, copy, &self.metrics.requests).await {
                Ok(exchanged) => {
                    if exchanged.reusable {
                        self.pool.put(connection);
                    }
                    return Ok(exchanged.response);
                }
                // The shadow closed a kept-alive connection just as we reused it. A copy without
                // body can be sent again on another connection; a body has been consumed.
                Err(failure)
                    if connection.reused && !copy.body.has_body() && closed_under_us(&failure) =>
                {
                    tracing::debug!(target_name = %self.name, %failure, "pooled shadow connection was stale; sending again");
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    async fn connect(&self, peer: &mut Option<SocketAddr>) -> Result<Connection, Failure> {
        let slot = self.pool.slot().await;
        let (stream, address) = self.dialer.dial().await.map_err(|(failure, address)| {
            *peer = address;
            failure
        })?;
        Ok(self.pool.opened(stream, address, slot))
    }
}

fn closed_under_us(failure: &Failure) -> bool {
    matches!(
        failure,
        Failure::Closed(Phase::ReadingHead)
            | Failure::Io {
                phase: Phase::Sending | Phase::ReadingHead,
                ..
            }
    )
}
