//! Configuration reload: on SIGHUP, and when the config file's contents change.
//!
//! The file is read through its path every second and compared byte for byte, so Kubernetes'
//! way of updating a mounted ConfigMap (a new directory swapped in under a symlink) is seen like
//! any edit, with no inotify subtleties; changed contents are applied once they have stayed the
//! same for [`SETTLE`], so a file caught half-written is not applied. A valid new config is applied by [`Live::apply`]:
//! intercept rules switch atomically in the kernel, new connections get the new relay settings and
//! mirror rules, connections already open keep what they started with, and shadow targets whose
//! settings did not change keep their queues and connections. An invalid config is logged and
//! counted, and the running one stays in force.

use std::{path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    admission::Admission, config, config::Config, connection, interception,
    interception::Interception, mirror,
};

/// How often the config file is read for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long changed file contents must stay the same before they are applied.
const SETTLE: Duration = Duration::from_millis(200);
/// How long copies in flight to a removed or changed target may finish.
const RETIRE_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(#[from] config::Error),
    #[error("{0} cannot change while running; restart the daemon to change it")]
    NeedsRestart(&'static str),
    #[error("{0}")]
    Mirror(#[from] mirror::Error),
    #[error("{0}")]
    Interception(#[from] interception::Error),
}

/// Everything a reload may replace, shared by the running components.
pub struct Live {
    /// The config in force (shared with the admin endpoint's `/config`).
    pub config: Arc<ArcSwap<Config>>,
    pub interception: Arc<Interception>,
    /// What new connections are served with.
    pub connection: ArcSwap<connection::Context>,
    pub admission: Arc<Admission>,
    /// The worker threads' runtimes: where connections and shadow lanes run.
    pub workers: Vec<tokio::runtime::Handle>,
    mirror_metrics: Arc<mirror::Metrics>,
    reloads: Metrics,
}

/// Reload outcomes, registered before the registry starts serving.
#[derive(Clone, Default)]
pub struct Metrics(Family<[(&'static str, &'static str); 1], Counter>);

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "mirror_config_reloads",
            "Configuration reloads, by result (success, failure)",
            metrics.0.clone(),
        );
        // Both series exist from the start, at 0: an alert on `increase(...)` then sees the
        // first failure too (a series born at 1 shows no increase).
        for result in ["success", "failure"] {
            let _created = metrics.0.get_or_create(&[("result", result)]);
        }
        metrics
    }
}

impl Live {
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        interception: Arc<Interception>,
        connection: connection::Context,
        mirror_metrics: Arc<mirror::Metrics>,
        reloads: Metrics,
        workers: Vec<tokio::runtime::Handle>,
    ) -> Self {
        let current = config.load();
        let admission = Admission::new(
            interception.clone(),
            current.relay.max_connections,
            shadow_connections(&current),
        );
        Self {
            admission,
            config,
            interception,
            connection: ArcSwap::from_pointee(connection),
            workers,
            mirror_metrics,
            reloads,
        }
    }

    /// Applies a validated config, or leaves the running one untouched and says why not.
    pub async fn apply(&self, new: Config) -> Result<(), Error> {
        let old = self.config.load_full();
        if new.admin.address != old.admin.address {
            return Err(Error::NeedsRestart("admin.address"));
        }
        if new.relay.workers != old.relay.workers {
            return Err(Error::NeedsRestart("relay.workers"));
        }
        let (a, b) = (&old.interception, &new.interception);
        if a.fwmark != b.fwmark {
            return Err(Error::NeedsRestart("interception.fwmark"));
        }
        if a.route_table != b.route_table {
            return Err(Error::NeedsRestart("interception.route_table"));
        }
        if a.rule_priority != b.rule_priority {
            return Err(Error::NeedsRestart("interception.rule_priority"));
        }
        // Everything that can fail comes before the kernel switches to the new rules.
        let current = self.connection.load_full();
        let old_mirror = current.mirror.load_full();
        let mirror = if new.mirror.rules.is_empty() {
            // No engine to configure them: the comparisons of the old rules leave the report.
            let _ = self.mirror_metrics.comparisons.configure(&new.mirror);
            None
        } else {
            Some(Arc::new(mirror::Engine::new(
                &new.mirror,
                &self.mirror_metrics,
                old_mirror.as_deref(),
                &self.workers,
            )?))
        };
        // Bulk bpf() calls, on the control thread: no connection is served there.
        self.interception.update(&new.interception)?;
        // Every connection, open or new, takes the new engine at its next request.
        current.mirror.store(mirror.clone());
        self.connection.store(Arc::new(connection::Context {
            relay: new.relay.clone(),
            metrics: current.metrics.clone(),
            mirror: current.mirror.clone(),
            abort: current.abort.clone(),
            drain: current.drain.clone(),
            framing: new.mirror.framing.limits(),
        }));
        self.admission
            .set_max(new.relay.max_connections, shadow_connections(&new));
        self.config.store(Arc::new(new));
        if let Some(old_mirror) = old_mirror {
            tokio::spawn(async move {
                old_mirror.retire(mirror.as_deref(), RETIRE_DEADLINE).await;
            });
        }
        Ok(())
    }

    fn count(&self, result: &'static str) {
        self.reloads.0.get_or_create(&[("result", result)]).inc();
    }
}

/// Descriptors shadow connections may use: each target's `max_concurrent`.
fn shadow_connections(config: &Config) -> usize {
    config.mirror.targets.iter().map(|t| t.max_concurrent).sum()
}

/// Reloads on SIGHUP and on file changes until `stop` is cancelled.
pub async fn watch(path: Option<PathBuf>, live: Arc<Live>, stop: CancellationToken) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            warn!(error = %e, "cannot handle SIGHUP; reloading on file changes only");
            return;
        }
    };
    let mut last = path.as_ref().and_then(|p| std::fs::read(p).ok());
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            _ = hangup.recv() => true,
            _ = poll.tick() => false,
        };
        let Some(path) = path.as_ref() else {
            if forced {
                info!("SIGHUP: running with the embedded default config; nothing to reload");
            }
            continue;
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                if forced {
                    live.count("failure");
                    warn!(error = %e, path = %path.display(), "config reload failed: the running config stays in force");
                }
                continue;
            }
        };
        if !forced && last.as_ref() == Some(&bytes) {
            continue;
        }
        if !forced {
            // A file rewritten in place can be read half-written (and an empty file is a valid
            // config): apply only contents that stay the same for a moment.
            tokio::time::sleep(SETTLE).await;
            if std::fs::read(path).ok().as_ref() != Some(&bytes) {
                continue;
            }
        }
        last = Some(bytes.clone());
        let origin = path.display().to_string();
        let result = match Config::from_toml(&String::from_utf8_lossy(&bytes), &origin) {
            Ok(config) => live.apply(config).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => {
                live.count("success");
                info!(path = %origin, trigger = if forced { "SIGHUP" } else { "file change" }, "config reloaded");
            }
            Err(e) => {
                live.count("failure");
                warn!(error = %e, "config reload failed: the running config stays in force");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_reload_results_are_exposed_at_zero_before_any_reload() {
        let mut registry = Registry::default();
        Metrics::register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("encoding a registry of counters cannot fail");
        for result in ["success", "failure"] {
            assert!(
                text.contains(&format!(
                    "mirror_config_reloads_total{{result=\"{result}\"}} 0\n"
                )),
                "{text}"
            );
        }
    }
}
