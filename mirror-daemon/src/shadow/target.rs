//! One shadow target: its queue, its dispatcher, and a worker per copy in flight.
//!
//! [`Target::try_submit`] is the primary path's only contact with a shadow, and it cannot wait:
//! the copy joins a bounded queue or is rejected. The dispatcher takes a copy off the queue only
//! once one of `max_concurrent` slots is free, so copies wait in the queue (and count against
//! `queue_size`) rather than anywhere hidden. Each copy then gets `request_timeout` from leaving
//! the queue to the end of its response, on a pooled or new connection.

use std::{sync::Arc, time::Duration};

use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::{mpsc, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::config::split_host_port;

use super::{
    dial::Dialer,
    error::{Error, Rejected},
    metrics::ShadowMetrics,
    pool::Pool,
    request::ShadowRequest,
    sender::Sender,
    tls::TlsClient,
};
use crate::config;

/// Idle pooled connections are closed after this long, well before typical ingress idle
/// timeouts (60 s and more), so the shadow rarely closes one under a copy.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running shadow target.
#[derive(Debug)]
pub struct Target {
    name: Arc<str>,
    queue: mpsc::Sender<ShadowRequest>,
    queue_depth: Gauge,
    /// Stops the dispatcher: no more copies leave the queue.
    closing: CancellationToken,
    /// Cuts off copies in flight.
    aborting: CancellationToken,
    tasks: TaskTracker,
    pool: Arc<Pool>,
}

/// Knobs the config does not expose, so tests can turn them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuning {
    pub idle_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

impl Target {
    /// Checks the target's address and TLS material (reading the CA file) and starts its sender.
    /// Must be called inside a tokio runtime.
    pub fn spawn(config: config::Target, metrics: &ShadowMetrics) -> Result<Arc<Self>, Error> {
        Self::spawn_tuned(config, metrics, Tuning::default())
    }

    pub(super) fn spawn_tuned(
        config: config::Target,
        metrics: &ShadowMetrics,
        tuning: Tuning,
    ) -> Result<Arc<Self>, Error> {
        let name: Arc<str> = config.name.as_str().into();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime {
                target: config.name,
            });
        }
        let (host, port) = split_host_port(&config.address).ok_or_else(|| Error::Address {
            target: config.name.clone(),
            address: config.address.clone(),
        })?;
        let tls = config
            .tls
            .as_ref()
            .map(|tls| TlsClient::new(&name, tls, host))
            .transpose()?;
        let metrics = metrics.target(&name);
        // The config rejects zeros; a zero here would mean a sender that never sends.
        let max_concurrent = config.max_concurrent.max(1);
        let pool = Arc::new(Pool::new(
            max_concurrent,
            tuning.idle_timeout,
            metrics.open_connections.clone(),
        ));
        let (queue, waiting) = mpsc::channel(config.queue_size.max(1));
        let sender = Arc::new(Sender::new(
            name.clone(),
            config.address.clone(),
            Dialer::new(
                host,
                port,
                tls,
                config.connect_timeout,
                config.allow_local_addresses,
            ),
            config.request_timeout,
            pool.clone(),
            metrics.clone(),
        ));
        let target = Arc::new(Self {
            name,
            queue,
            queue_depth: metrics.queue_depth,
            closing: CancellationToken::new(),
            aborting: CancellationToken::new(),
            tasks: TaskTracker::new(),
            pool,
        });
        target.tasks.spawn(dispatch(
            sender,
            waiting,
            max_concurrent,
            target.closing.clone(),
            target.aborting.clone(),
            target.tasks.clone(),
        ));
        target.tasks.spawn(reap(
            target.pool.clone(),
            tuning.idle_timeout,
            target.closing.clone(),
        ));
        Ok(target)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues a copy for sending. Never waits: when `queue_size` copies are already waiting the
    /// copy is dropped (with its body stream, which tells the mirror engine) and rejected.
    pub fn try_submit(&self, request: ShadowRequest) -> Result<(), Rejected> {
        // Counted before it is queued, so the dispatcher never takes it off the gauge first.
        self.queue_depth.inc();
        self.queue.try_send(request).map_err(|e| {
            self.queue_depth.dec();
            match e {
                mpsc::error::TrySendError::Full(_) => Rejected::QueueFull,
                mpsc::error::TrySendError::Closed(_) => Rejected::Closed,
            }
        })
    }

    /// Stops the sender: copies still waiting are dropped, copies in flight get up to
    /// `deadline` to finish and are cut off after it; then idle connections are closed.
    pub async fn shutdown(&self, deadline: Duration) {
        self.closing.cancel();
        self.tasks.close();
        if tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::debug!(target_name = %self.name, "shadow copies in flight cut off at shutdown");
            self.aborting.cancel();
            self.tasks.wait().await;
        }
        self.pool.close();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.closing.cancel();
        self.aborting.cancel();
        self.pool.close();
    }
}

/// Takes copies off the queue as slots free up, one task per copy in flight.
async fn dispatch(
    sender: Arc<Sender>,
    mut waiting: mpsc::Receiver<ShadowRequest>,
    max_concurrent: usize,
    closing: CancellationToken,
    aborting: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(max_concurrent));
    loop {
        let slot = tokio::select! {
            biased;
            () = closing.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let copy = tokio::select! {
            biased;
            () = closing.cancelled() => break,
            copy = waiting.recv() => match copy {
                Some(copy) => copy,
                None => break,
            },
        };
        sender.queue_depth().dec();
        let dequeued = Instant::now();
        let sender = sender.clone();
        let aborting = aborting.clone();
        tasks.spawn(async move {
            tokio::select! {
                biased;
                () = aborting.cancelled() => {
                    tracing::debug!(target_name = %sender.name(), "shadow copy cut off by shutdown");
                }
                () = sender.deliver(copy, dequeued) => {}
            }
            drop(slot);
        });
    }
    waiting.close();
    let mut dropped = 0usize;
    while waiting.try_recv().is_ok() {
        sender.queue_depth().dec();
        dropped += 1;
    }
    if dropped > 0 {
        tracing::debug!(target_name = %sender.name(), dropped, "waiting shadow copies dropped at shutdown");
    }
}

/// Closes idle connections that have waited too long, even when no copy comes to notice.
async fn reap(pool: Arc<Pool>, idle_timeout: Duration, closing: CancellationToken) {
    let mut tick = tokio::time::interval(idle_timeout / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = closing.cancelled() => return,
            _ = tick.tick() => pool.reap(),
        }
    }
}
