//! One shadow target: a delivery lane per worker, and the limits the lanes share.
//!
//! [`Target::try_submit`] is the primary path's only contact with a shadow, and it cannot wait:
//! the copy joins the queue of the calling worker's lane or is rejected. Each lane runs on its
//! worker's runtime ([`crate::workers`]): its queue, its batches in flight and its pooled
//! connections ([`super::lane`]), so a copy never crosses a thread. An HTTP/2 copy waits for no
//! batch: [`Target::try_submit_h2`] starts its delivery at once, a task on the calling worker,
//! a stream of that worker's HTTP/2 connection to the target ([`super::http2`]). The lanes share
//! the target's limits: `queue_size` copies waiting (counted in the queue-depth gauge) and
//! `max_concurrent` connections open ([`super::pool::Slots`]), each carrying one batch of copies
//! (or many HTTP/2 streams) at a time.

use std::{sync::Arc, time::Duration};

use prometheus_client::metrics::gauge::Gauge;
use tokio::{runtime::Handle, sync::mpsc, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::split_host_port, workers};

use super::{
    dial::Dialer,
    error::{Error, Rejected},
    health::Health,
    http2::{H2Copy, H2Sender, QueuePlace},
    lane,
    metrics::ShadowMetrics,
    pool::{Pool, Slots},
    request::ShadowRequest,
    sender::{Delivery, Sender},
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
    /// One per worker, in worker order (one only when started off the workers).
    lanes: Vec<Lane>,
    queue_size: i64,
    queue_depth: Gauge,
    /// Stops the dispatchers: no more copies leave the queues.
    closing: CancellationToken,
    /// Cuts off copies in flight.
    aborting: CancellationToken,
    tasks: TaskTracker,
    slots: Arc<Slots>,
}

/// What the primary path reaches of one lane.
#[derive(Debug)]
struct Lane {
    /// The lane's queue of HTTP/1.1 copies ([`lane::run`] takes them off).
    queue: mpsc::UnboundedSender<ShadowRequest>,
    /// The lane's HTTP/2 connection, and the runtime its copies run on.
    h2: Arc<H2Sender>,
    runtime: Handle,
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
    /// Checks the target's address and TLS material (reading the CA file) and starts one lane on
    /// the current runtime.
    pub fn spawn(config: config::Target, metrics: &ShadowMetrics) -> Result<Arc<Self>, Error> {
        let current = Handle::try_current().map_err(|_| Error::NoRuntime {
            target: config.name.clone(),
        })?;
        Self::spawn_on(config, metrics, &[current], Tuning::default())
    }

    /// As [`Target::spawn`], with a lane on each of `workers` (the runtimes of the worker
    /// threads, in worker order).
    pub fn spawn_on_workers(
        config: config::Target,
        metrics: &ShadowMetrics,
        workers: &[Handle],
    ) -> Result<Arc<Self>, Error> {
        if workers.is_empty() {
            return Self::spawn(config, metrics);
        }
        Self::spawn_on(config, metrics, workers, Tuning::default())
    }

    #[cfg(test)]
    pub(super) fn spawn_tuned(
        config: config::Target,
        metrics: &ShadowMetrics,
        tuning: Tuning,
    ) -> Result<Arc<Self>, Error> {
        let current = Handle::try_current().map_err(|_| Error::NoRuntime {
            target: config.name.clone(),
        })?;
        Self::spawn_on(config, metrics, &[current], tuning)
    }

    fn spawn_on(
        config: config::Target,
        metrics: &ShadowMetrics,
        runtimes: &[Handle],
        tuning: Tuning,
    ) -> Result<Arc<Self>, Error> {
        let name: Arc<str> = config.name.as_str().into();
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
        let slots = Slots::new(max_concurrent, runtimes.len());
        let health = Arc::new(Health::default());
        let closing = CancellationToken::new();
        let aborting = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut lanes = Vec::with_capacity(runtimes.len());
        for (lane, runtime) in runtimes.iter().enumerate() {
            let pool = Arc::new(Pool::new(
                slots.clone(),
                lane,
                tuning.idle_timeout,
                metrics.open_connections.clone(),
            ));
            let dialer = Arc::new(Dialer::new(
                host,
                port,
                tls.clone(),
                config.connect_timeout,
                config.allow_local_addresses,
            ));
            let parts = Arc::new(Delivery {
                name: name.clone(),
                address: config.address.clone(),
                dialer,
                request_timeout: config.request_timeout,
                pool: pool.clone(),
                health: health.clone(),
                metrics: metrics.clone(),
            });
            let sender = Arc::new(Sender::new(parts.clone()));
            let h2 = Arc::new(H2Sender::new(parts, tasks.clone(), aborting.clone()));
            let (queue, waiting) = mpsc::unbounded_channel();
            lanes.push(Lane {
                queue,
                h2,
                runtime: runtime.clone(),
            });
            let _guard = runtime.enter();
            tasks.spawn(lane::run(
                sender,
                waiting,
                closing.clone(),
                aborting.clone(),
                tasks.clone(),
            ));
            tasks.spawn(reap(pool, tuning.idle_timeout, closing.clone()));
        }
        Ok(Arc::new(Self {
            name,
            lanes,
            queue_size: i64::try_from(config.queue_size.max(1)).unwrap_or(i64::MAX),
            queue_depth: metrics.queue_depth,
            closing,
            aborting,
            tasks,
            slots,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues a copy on the calling worker's lane. Never waits: when `queue_size` copies are
    /// already waiting (all lanes together) the copy is dropped (with its body stream, which
    /// tells the mirror engine) and rejected.
    pub fn try_submit(&self, request: ShadowRequest) -> Result<(), Rejected> {
        self.take_place()?;
        self.lane().queue.send(request).map_err(|_| {
            self.queue_depth.dec();
            Rejected::Closed
        })
    }

    /// As [`Target::try_submit`], for an HTTP/2 copy: its delivery starts now, on the calling
    /// worker, and it keeps its place in the queue until its stream is open.
    pub fn try_submit_h2(&self, copy: H2Copy) -> Result<(), Rejected> {
        if self.closing.is_cancelled() {
            return Err(Rejected::Closed);
        }
        self.take_place()?;
        let place = QueuePlace::new(self.queue_depth.clone());
        let lane = self.lane();
        let h2 = lane.h2.clone();
        let aborting = self.aborting.clone();
        let submitted = Instant::now();
        // Boxed: the delivery's state machine runs to a few kilobytes, which the task's cell
        // would otherwise copy in when spawned and again at each change of stage.
        self.tasks.spawn_on(
            Box::pin(async move {
                tokio::select! {
                    biased;
                    () = aborting.cancelled() => {}
                    () = h2.deliver(copy, place, submitted) => {}
                }
            }),
            &lane.runtime,
        );
        Ok(())
    }

    /// Counts a copy as waiting, unless `queue_size` already are. Counted before it is queued,
    /// so the dispatcher never takes it off the gauge first.
    fn take_place(&self) -> Result<(), Rejected> {
        if self.queue_depth.inc() >= self.queue_size {
            self.queue_depth.dec();
            return Err(Rejected::QueueFull);
        }
        Ok(())
    }

    /// The calling worker's lane.
    fn lane(&self) -> &Lane {
        &self.lanes[workers::current().unwrap_or(0) % self.lanes.len()]
    }

    /// Stops the sender: copies still waiting are dropped, copies in flight get up to
    /// `deadline` to finish and are cut off after it; then idle connections are closed.
    pub async fn shutdown(&self, deadline: Duration) {
        self.closing.cancel();
        self.tasks.close();
        let finish = async {
            // In-flight HTTP/2 copies keep their connection until they end.
            for lane in &self.lanes {
                lane.h2.close().await;
            }
            self.tasks.wait().await;
        };
        if tokio::time::timeout(deadline, finish).await.is_err() {
            tracing::debug!(target_name = %self.name, "shadow copies in flight cut off at shutdown");
            self.aborting.cancel();
            self.tasks.wait().await;
        }
        self.slots.close();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.closing.cancel();
        self.aborting.cancel();
        self.slots.close();
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
