//! Bounded polling for conditions that become true asynchronously (a counter the daemon updates
//! after the connection it counts has ended, an interface attached after a netlink event).

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How often [`until`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `check` until it returns `Ok(Some(value))` or `timeout` passes; an error from `check`
/// ends the wait at once. On timeout the error names `what` and the last value seen.
pub fn until<T, S: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Result<T, S>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check()? {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}; last seen {last:?}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() -> Result<()> {
        let mut calls = 0;
        let value = until("three calls", Duration::from_secs(5), || {
            calls += 1;
            Ok(if calls == 3 { Ok(calls) } else { Err(calls) })
        })?;
        assert_eq!(value, 3);
        Ok(())
    }

    #[test]
    fn times_out_naming_the_last_state() {
        let result: Result<()> = until("never", Duration::from_millis(50), || Ok(Err("stuck")));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("never") && message.contains("stuck"),
            "{message}"
        );
    }
}
