//! Wiring: builds each component from a validated [`Config`], runs them, and takes them down in
//! order on SIGTERM/SIGINT.
//!
//! Start: admin endpoint (serving, not ready) -> mirror engine -> kernel interception ->
//! listeners registered -> ready. A signal during start-up is acted on as soon as the kernel
//! set-up returns (it is never interrupted half-way, so it can always be undone).
//! Stop: not ready -> listeners leave the SOCKMAP (new flows go direct) -> open connections drain
//! until the deadline, then are reset -> kernel interception removed -> shadow senders stopped.

use std::{
    io,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use prometheus_client::registry::Registry;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::Semaphore,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    admin, config::Config, connection, interception, interception::Interception, listener, metrics,
    mirror,
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
    #[error("{0}")]
    Mirror(#[from] mirror::Error),
}

/// Runs the daemon until a termination signal, then drains and cleans up.
pub async fn run(config: Config) -> Result<(), Error> {
    let stop = stop_on_signal()?;
    let mut registry = Registry::default();
    let metrics = Arc::new(metrics::Metrics::register(&mut registry));
    let kernel = metrics::KernelCollector::default();
    registry.register_collector(Box::new(kernel.clone()));
    let mirror = if config.mirror.rules.is_empty() {
        None
    } else {
        Some(Arc::new(mirror::Engine::new(
            &config.mirror,
            &mut registry,
        )?))
    };
    let admin_listener = tokio::net::TcpListener::bind(config.admin.address)
        .await
        .map_err(|source| Error::AdminBind {
            address: config.admin.address,
            source,
        })?;
    let admin_state = Arc::new(admin::State {
        registry,
        ready: Default::default(),
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
            let result = serve(
                &config,
                &interception,
                metrics,
                mirror.clone(),
                &admin_state,
                stop,
            )
            .await;
            interception.shutdown().await;
            result
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(e),
    };
    if let Some(mirror) = mirror {
        mirror.shutdown(SHADOW_DEADLINE).await;
    }
    admin_stop.cancel();
    let _ = admin_task.await;
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
    config: &Config,
    interception: &Arc<Interception>,
    metrics: Arc<metrics::Metrics>,
    mirror: Option<Arc<mirror::Engine>>,
    admin_state: &admin::State,
    stop: CancellationToken,
) -> Result<(), Error> {
    let listeners = listener::bind().map_err(Error::Listen)?;
    let abort = CancellationToken::new();
    let shared = Arc::new(listener::Shared {
        interception: interception.clone(),
        connection: Arc::new(connection::Context {
            relay: config.relay.clone(),
            metrics,
            mirror,
            abort: abort.clone(),
        }),
        limit: Arc::new(Semaphore::new(config.relay.max_connections)),
        tracker: TaskTracker::new(),
    });
    interception.beat();
    for listener in &listeners {
        interception.register_listener(listener.slot, &listener.inner)?;
    }
    let stop_accepting = CancellationToken::new();
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            tokio::spawn(listener::accept_loop(
                l,
                shared.clone(),
                stop_accepting.clone(),
            ))
        })
        .collect();
    admin_state.ready.store(true, Ordering::Release);
    info!(admin = %config.admin.address, "ready");

    stop.cancelled().await;
    admin_state.ready.store(false, Ordering::Release);
    stop_accepting.cancel();
    for task in accept_loops {
        let _ = task.await;
    }
    drain(&shared.tracker, config.shutdown.drain_timeout, &abort).await;
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
