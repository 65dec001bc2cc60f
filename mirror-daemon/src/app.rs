//! Wiring: builds each component from a validated [`Config`], runs them, and takes them down in
//! order on SIGTERM/SIGINT.
//!
//! Start: worker threads ([`workers`]) -> admin endpoint (serving, not ready) -> mirror engine ->
//! kernel interception -> listeners registered -> ready; from then on the config is reloaded on SIGHUP and on file
//! changes ([`reload`]). A signal during start-up is acted on as soon as the kernel
//! set-up returns (it is never interrupted half-way, so it can always be undone).
//! Stop: not ready -> listeners leave the SOCKMAP (new flows go direct) -> open connections drain
//! until the deadline, then are reset -> kernel interception removed -> shadow senders stopped ->
//! worker threads stopped.
//!
//! This runs on the control thread's runtime; connections and copies run on the workers.

use std::{io, os::fd::AsRawFd, path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;

use prometheus_client::registry::Registry;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    admin, config::Config, connection, interception, interception::Interception, listener, metrics,
    mirror, reload, workers,
};

/// Kernel set-up that takes longer than this is given up (and undone at the next start).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shadow copies still in flight may finish at exit.
const SHADOW_DEADLINE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("admin endpoint: cannot listen on {address}: {source}")]
    AdminBind {
        address: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("{0}")]
    Interception(#[from] interception::Error),
    #[error("kernel: set-up did not finish within {0:?}")]
    StartTimeout(Duration),
    #[error("kernel: cannot open the transparent listeners: {0}")]
    Listen(io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("cannot start the worker threads: {0}")]
    Workers(io::Error),
    #[error("{0}")]
    Mirror(#[from] mirror::Error),
}

/// Runs the daemon until a termination signal, then drains and cleans up. `path` is where
/// `config` came from (reloaded from there), `None` for the embedded default.
pub async fn run(config: Config, path: Option<PathBuf>) -> Result<(), Error> {
    let stop = stop_on_signal()?;
    let workers =
        workers::Workers::start(workers::count(config.relay.workers)).map_err(Error::Workers)?;
    info!(workers = workers.len(), "worker threads started");
    let mut registry = Registry::default();
    let metrics = Arc::new(metrics::Metrics::register(&mut registry));
    let kernel = metrics::KernelCollector::default();
    registry.register_collector(Box::new(kernel.clone()));
    let mirror_metrics = mirror::Metrics::register(&mut registry);
    // Filled by each engine from its config's `[mirror.rules.compare]` sections.
    let comparisons = mirror_metrics.comparisons.clone();
    // Registered now: metrics cannot be added once the registry serves.
    let reloads = reload::Metrics::register(&mut registry);
    let ready = admin::Readiness::register(&mut registry);
    let mirror = if config.mirror.rules.is_empty() {
        None
    } else {
        Some(Arc::new(mirror::Engine::new(
            &config.mirror,
            &mirror_metrics,
            None,
            workers.handles(),
        )?))
    };
    let shared_config = Arc::new(ArcSwap::from_pointee(config.clone()));
    let abort = CancellationToken::new();
    let connection = connection::Context {
        relay: config.relay.clone(),
        metrics,
        mirror: Arc::new(arc_swap::ArcSwapOption::new(mirror)),
        abort: abort.clone(),
        drain: CancellationToken::new(),
        framing: config.mirror.framing.limits(),
    };
    let admin_listener = tokio::net::TcpListener::bind(config.admin.address)
        .await
        .map_err(|source| Error::AdminBind {
            address: config.admin.address,
            source,
        })?;
    let admin_state = Arc::new(admin::State {
        registry,
        config: shared_config.clone(),
        ready,
        comparisons,
    });
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        admin_stop.clone(),
    ));

    let started = tokio::time::timeout(START_TIMEOUT, Interception::start(&config.interception))
        .await
        .map_err(|_| Error::StartTimeout(START_TIMEOUT));
    let result = match started {
        Ok(Ok(interception)) => {
            let interception = Arc::new(interception);
            let _ = kernel.0.set(interception.clone());
            let live = Arc::new(reload::Live::new(
                shared_config,
                interception.clone(),
                connection,
                mirror_metrics,
                reloads,
                workers.handles().to_vec(),
            ));
            let result = serve(&live, path, &admin_state, &abort, stop).await;
            interception.shutdown().await;
            if let Some(mirror) = live.connection.load().mirror.load_full() {
                mirror.shutdown(SHADOW_DEADLINE).await;
            }
            result
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(e),
    };
    admin_stop.cancel();
    let _ = admin_task.await;
    // Joins threads that have nothing left to run: every connection and copy has ended.
    workers.stop();
    result
}

/// A token cancelled by the first SIGTERM or SIGINT.
fn stop_on_signal() -> Result<CancellationToken, Error> {
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => info!("SIGTERM: draining"),
            _ = interrupt.recv() => info!("SIGINT: draining"),
        }
        token.cancel();
    });
    Ok(stop)
}

async fn serve(
    live: &Arc<reload::Live>,
    path: Option<PathBuf>,
    admin_state: &admin::State,
    abort: &CancellationToken,
    stop: CancellationToken,
) -> Result<(), Error> {
    let handles = &live.workers;
    let listeners = listener::bind(handles.len()).map_err(Error::Listen)?;
    let shared = Arc::new(listener::Shared {
        live: live.clone(),
        tracker: TaskTracker::new(),
        heartbeat: listener::Heartbeat::new(handles.len()),
    });
    live.interception.beat();
    // The first worker's listener of each family stands for its SO_REUSEPORT group.
    for listener in listeners.first().into_iter().flatten() {
        live.admission
            .add_listener(listener.slot, listener.inner.as_raw_fd());
    }
    let stop_accepting = CancellationToken::new();
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .zip(handles)
        .enumerate()
        .flat_map(|(worker, (listeners, handle))| {
            listeners
                .into_iter()
                .map(|l| {
                    handle.spawn(listener::accept_loop(
                        worker,
                        l,
                        shared.clone(),
                        stop_accepting.clone(),
                    ))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let reloader = tokio::spawn(reload::watch(path, live.clone(), stop.clone()));
    admin_state.ready.set(true);
    info!(admin = %live.config.load().admin.address, "ready");

    stop.cancelled().await;
    admin_state.ready.set(false);
    stop_accepting.cancel();
    // Open connections close at their next idle point from now on.
    live.connection.load().drain.cancel();
    for task in accept_loops {
        let _ = task.await;
    }
    let _ = reloader.await;
    let deadline = live.config.load().shutdown.drain_timeout;
    drain(&shared.tracker, deadline, abort).await;
    Ok(())
}

/// Waits for open connections to finish, up to `deadline`; then resets the rest.
async fn drain(tracker: &TaskTracker, deadline: Duration, abort: &CancellationToken) {
    tracker.close();
    let open = tracker.len();
    if open > 0 {
        info!(open, ?deadline, "waiting for open connections");
    }
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            open = tracker.len(),
            "drain deadline passed: resetting the remaining connections"
        );
        abort.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    }
}
