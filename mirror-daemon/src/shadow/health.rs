//! How a failing shadow shows in the logs: once, not once per copy.
//!
//! Every failed copy is a debug line (and a count in the metrics). The first failure after a
//! success is a warning, at most one every [`WARN_INTERVAL`] so a flapping shadow stays quiet
//! too; the first success after a warned-about failure says so at info level.

use std::{
    mem,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use tokio::time::Instant;

use super::error::{CopyError, ErrorKind};

/// A target failing again within this long after a warning is only logged at debug level.
const WARN_INTERVAL: Duration = Duration::from_secs(30);

/// Logs a failing target once, not once per copy.
#[derive(Debug, Default)]
pub(super) struct Health {
    failing: AtomicBool,
    log: Mutex<Logged>,
}

#[derive(Debug, Default)]
struct Logged {
    last_warning: Option<Instant>,
    /// The current failing spell was warned about, so its end is worth a line too.
    warned: bool,
}

impl Health {
    pub fn answered(&self, name: &str) {
        // A plain load first: the flag is shared by the workers, and a write on every answer
        // would bounce its cache line between them.
        if self.failing.load(Ordering::Relaxed)
            && self.failing.swap(false, Ordering::Relaxed)
            && mem::take(&mut self.logged().warned)
        {
            tracing::info!(target_name = %name, "shadow target answers again");
        }
    }

    pub fn failed(&self, error: &CopyError) {
        // A copy whose original broke off says nothing about the shadow.
        if error.kind() == ErrorKind::Aborted || self.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(%error, "shadow copy failed");
            return;
        }
        let now = Instant::now();
        let mut logged = self.logged();
        if logged
            .last_warning
            .is_some_and(|at| now.duration_since(at) < WARN_INTERVAL)
        {
            tracing::debug!(%error, "shadow copy failed");
        } else {
            logged.last_warning = Some(now);
            logged.warned = true;
            tracing::warn!(
                %error,
                "shadow target failing; further failures are only counted until it answers again"
            );
        }
    }

    fn logged(&self) -> MutexGuard<'_, Logged> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::{Level, Subscriber};
    use tracing_subscriber::{layer::Context, prelude::*, Layer};

    use super::*;
    use crate::shadow::error::{Abort, Failure};

    /// Records the level of every event.
    #[derive(Clone, Default)]
    struct Levels(Arc<Mutex<Vec<Level>>>);

    impl<S: Subscriber> Layer<S> for Levels {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(*event.metadata().level());
        }
    }

    impl Levels {
        /// The events logged since the last call: (warnings, infos).
        fn take(&self) -> (usize, usize) {
            let levels = mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
            let count = |level| levels.iter().filter(|l| **l == level).count();
            (count(Level::WARN), count(Level::INFO))
        }
    }

    fn error(failure: Failure) -> CopyError {
        CopyError {
            target: "staging".into(),
            peer: "10.0.0.5:443".into(),
            failure,
        }
    }

    #[test]
    fn a_dead_shadow_warns_once_and_its_recovery_is_noted_once() {
        let levels = Levels::default();
        let _guard = tracing_subscriber::registry()
            .with(levels.clone())
            .set_default();
        let health = Health::default();

        for _ in 0..100 {
            health.failed(&error(Failure::ConnectTimeout(Duration::from_secs(1))));
        }
        assert_eq!(levels.take(), (1, 0));
        health.answered("staging");
        health.answered("staging");
        assert_eq!(levels.take(), (0, 1));

        // Flapping right after a warning stays at debug level, and so does its recovery.
        health.failed(&error(Failure::NoAddress));
        health.answered("staging");
        assert_eq!(levels.take(), (0, 0));
    }

    #[test]
    fn aborted_copies_do_not_make_a_shadow_look_failing() {
        let levels = Levels::default();
        let _guard = tracing_subscriber::registry()
            .with(levels.clone())
            .set_default();
        let health = Health::default();
        health.failed(&error(Failure::Aborted(Abort::Original)));
        assert_eq!(levels.take(), (0, 0));
        health.failed(&error(Failure::NoAddress));
        assert_eq!(levels.take(), (1, 0));
    }
}
