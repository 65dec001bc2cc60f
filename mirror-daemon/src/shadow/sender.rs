//! The way of copies from leaving the queue to the end of their responses, and how it is counted.
//!
//! The lane ([`super::lane`]) hands the sender a batch of copies with a connection to send them
//! on: an idle pooled one, or a slot to dial a new one. A batch has `request_timeout` from leaving
//! the queue to the end of its last response. Whatever happens to each copy is counted: its
//! response's status class and latency, or the error's kind. Copies the shadow never took up
//! (it closed the connection after an answer, or a pooled connection turned out closed just as
//! the batch went out) are handed back to be sent again, once, but only if they have no body: a
//! body may have been acted on.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::{timeout_at, Instant};

use super::{
    capture::Capture,
    dial::Dialer,
    error::{CopyError, Failure, Phase},
    exchange::{exchange, exchange_batch, Answers},
    health::Health,
    metrics::{GrpcStatus, TargetMetrics},
    pool::{Connection, Pool, Slot},
    request::ShadowRequest,
};

/// What every copy of one lane needs on its way, HTTP/1.1 and HTTP/2 alike, and how each copy's
/// end is counted: its answer's status class (and gRPC status) and latency, or its error's kind;
/// a failing shadow is logged once per target, not once per copy or worker ([`Health`]).
#[derive(Debug)]
pub(super) struct Delivery {
    pub name: Arc<str>,
    /// As configured, for messages before there is a connected address.
    pub address: String,
    pub dialer: Arc<Dialer>,
    pub request_timeout: Duration,
    pub pool: Arc<Pool>,
    /// Shared by the target's lanes.
    pub health: Arc<Health>,
    pub metrics: TargetMetrics,
}

impl Delivery {
    /// Counts a copy answered by the shadow after `latency`.
    pub fn answered(&self, status: u16, grpc: Option<GrpcStatus>, latency: Duration) {
        self.metrics.latency.observe(latency.as_secs_f64());
        self.metrics.response(status).inc();
        if let Some(grpc) = grpc {
            self.metrics.grpc(grpc).inc();
        }
        self.health.answered(&self.name);
        tracing::debug!(
            target_name = %self.name,
            status,
            ?latency,
            "shadow copy answered"
        );
    }

    /// Counts a copy that failed on its way to `peer` (the configured address if none yet).
    pub fn failed(&self, failure: Failure, peer: Option<SocketAddr>) {
        let error = CopyError {
            target: self.name.clone(),
            peer: peer.map_or_else(|| self.address.clone(), |p| p.to_string()),
            failure,
        };
        self.metrics.error(error.kind()).inc();
        self.health.failed(&error);
    }

    /// Counts `copies` copies cut off by one `failure` (logged once).
    fn failed_many(&self, failure: Failure, peer: Option<SocketAddr>, copies: usize) {
        if copies == 0 {
            return;
        }
        self.metrics.error(failure.kind()).inc_by(copies as u64 - 1);
        self.failed(failure, peer);
    }
}

/// HTTP/1.1 copies' way: alone when their body streams, in pipelined batches otherwise.
#[derive(Debug)]
pub(super) struct Sender {
    parts: Arc<Delivery>,
}

/// A connection to send on: one from the pool, or a slot to dial one.
#[derive(Debug)]
pub(super) enum Way {
    Pooled(Connection),
    Dial(Slot),
}

/// A copy queued, with whether it was sent once already.
#[derive(Debug)]
pub(super) struct Queued {
    pub copy: ShadowRequest,
    pub retried: bool,
}

impl Sender {
    pub fn new(parts: Arc<Delivery>) -> Self {
        Self { parts }
    }

    pub fn name(&self) -> &str {
        &self.parts.name
    }

    pub fn pool(&self) -> &Pool {
        &self.parts.pool
    }

    /// Copies waiting in the target's queue.
    pub fn queue_depth(&self) -> &Gauge {
        &self.parts.metrics.queue_depth
    }

    /// Sends one copy whose body still streams, alone on its connection, and counts how it went.
    pub async fn deliver_one(&self, mut copy: ShadowRequest, way: Way, dequeued: Instant) {
        let mut peer = None;
        let deadline = dequeued + self.parts.request_timeout;
        let mut capture = copy.compare.as_ref().map(Capture::new);
        let result = timeout_at(deadline, async {
            let mut connection = self.connection(way, &mut peer).await?;
            let exchanged = exchange(
                &mut connection,
                &mut copy,
                &self.parts.metrics.requests,
                capture.as_mut(),
            )
            .await?;
            if exchanged.reusable {
                self.parts.pool.put(connection);
            }
            Ok(exchanged)
        })
        .await
        .unwrap_or(Err(Failure::Timeout(self.parts.request_timeout)));
        match result {
            Ok(exchanged) => {
                self.parts
                    .answered(exchanged.response.status, None, dequeued.elapsed());
                if let Some(capture) = capture {
                    capture.answered(exchanged.written_at);
                }
            }
            Err(failure) => {
                if let Some(compared) = &copy.compare {
                    compared.failed(failure.kind().as_str());
                }
                self.parts.failed(failure, peer);
            }
        }
    }

    /// Sends complete copies pipelined on one connection and counts how each went. Returns the
    /// copies to send again.
    pub async fn deliver_batch(
        &self,
        batch: Vec<Queued>,
        way: Way,
        dequeued: Instant,
    ) -> Vec<Queued> {
        let copies: Vec<&ShadowRequest> = batch.iter().map(|q| &q.copy).collect();
        let mut answers = Answers::default();
        if copies.iter().any(|copy| copy.compare.is_some()) {
            answers.captures = copies
                .iter()
                .map(|copy| copy.compare.as_ref().map(Capture::new))
                .collect();
        }
        let mut peer = None;
        let mut reused = false;
        let result = timeout_at(dequeued + self.parts.request_timeout, async {
            let mut connection = self.connection(way, &mut peer).await?;
            reused = connection.reused;
            let reusable = exchange_batch(
                &mut connection,
                &copies,
                &self.parts.metrics.requests,
                &mut answers,
            )
            .await?;
            if reusable {
                self.parts.pool.put(connection);
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(Failure::Timeout(self.parts.request_timeout)));
        drop(copies);
        let answered = answers.responses.len();
        for (response, at) in answers.responses.drain(..) {
            self.parts
                .answered(response.status, None, at.duration_since(dequeued));
        }
        for capture in answers.captures.drain(..).take(answered).flatten() {
            capture.answered(answers.written_at);
        }
        let mut again = Vec::new();
        let rest = batch.into_iter().skip(answered);
        if answers.closed_by_shadow {
            // Never taken up: all of them go again (every round answers one at least).
            again.extend(rest);
        } else if let Err(failure) = result {
            // A pooled connection the shadow had closed just as we used it, or one that broke
            // after answering some: copies without a body go again, once.
            if (reused || answered > 0) && closed_under_us(&failure) {
                tracing::debug!(target_name = %self.parts.name, %failure, "shadow connection closed under a batch; sending its copies again");
                let (mut retry, lost): (Vec<_>, Vec<_>) =
                    rest.partition(|q| !q.retried && !q.copy.body.has_body());
                for queued in &mut retry {
                    queued.retried = true;
                }
                again = retry;
                compared_failed(lost.iter(), &failure);
                self.parts.failed_many(failure, peer, lost.len());
            } else {
                let lost: Vec<Queued> = rest.collect();
                compared_failed(lost.iter(), &failure);
                self.parts.failed_many(failure, peer, lost.len());
            }
        }
        again
    }

    async fn connection(
        &self,
        way: Way,
        peer: &mut Option<SocketAddr>,
    ) -> Result<Connection, Failure> {
        let connection = match way {
            Way::Pooled(connection) => connection,
            Way::Dial(slot) => {
                let (stream, address) =
                    self.parts
                        .dialer
                        .dial()
                        .await
                        .map_err(|(failure, address)| {
                            *peer = address;
                            failure
                        })?;
                self.parts.pool.opened(stream, address, slot)
            }
        };
        *peer = Some(connection.peer);
        Ok(connection)
    }
}

/// Tells the pairs of compared copies among `lost` that the shadow failed them.
fn compared_failed<'a>(lost: impl Iterator<Item = &'a Queued>, failure: &Failure) {
    for compared in lost.filter_map(|queued| queued.copy.compare.as_ref()) {
        compared.failed(failure.kind().as_str());
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
