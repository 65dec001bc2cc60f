//! TCP early demux, switched off in the daemon's network namespace while it runs.
//!
//! Early demux attaches a packet to an established or TIME_WAIT socket with the same 4-tuple
//! before routing. Once the daemon is gone, a pod that reuses the 4-tuple of a proxied connection
//! whose node-side socket is still in TIME_WAIT would have its SYN attached to that socket and then
//! dropped by the forwarding path (for up to 60 s). With early demux off the SYN is routed as
//! usual and reaches its destination directly. The setting is per network namespace.
//!
//! At a clean exit the previous value is restored, unless sockets in TIME_WAIT remain in the
//! namespace (restoring then would arm the trap for up to 60 s): then it stays off and a log line
//! says so. After a SIGKILL it stays off, which is what keeps the node's traffic flowing directly.

use std::{fs, io};

use tracing::{debug, warn};

const PATH: &str = "/proc/sys/net/ipv4/tcp_early_demux";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set {PATH}: {0}")]
    Write(io::Error),
}

/// Early demux switched off; remembers the previous value.
#[derive(Debug)]
pub struct EarlyDemux {
    previous: Option<String>,
}

impl EarlyDemux {
    pub fn disable() -> Result<Self, Error> {
        let previous = fs::read_to_string(PATH).ok().map(|v| v.trim().to_string());
        if previous.as_deref() != Some("0") {
            fs::write(PATH, "0").map_err(Error::Write)?;
            debug!(previous = ?previous, "tcp_early_demux switched off");
        }
        Ok(Self { previous })
    }

    pub fn restore(&self) {
        if let Some(previous) = self.previous.as_deref().filter(|v| *v != "0") {
            let waiting = time_wait_sockets();
            if waiting > 0 {
                tracing::info!(
                    time_wait_sockets = waiting,
                    "leaving tcp_early_demux=0: restoring it now would drop new pod connections \
                     that reuse these sockets' 4-tuples for up to 60 s"
                );
                return;
            }
            if let Err(e) = fs::write(PATH, previous) {
                warn!(error = %e, "kernel: could not restore {PATH}");
            }
        }
    }
}

/// Sockets in TIME_WAIT in this network namespace, from /proc/net/tcp{,6} (state 06).
fn time_wait_sockets() -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .map(|table| count_time_wait(&table))
        .sum()
}

fn count_time_wait(table: &str) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|line| line.split_whitespace().nth(3) == Some("06"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_time_wait_rows() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n\
            1: 0A000A0A:1F90 0201F40A:C350 06 00000000:00000000\n\
            2: 0A000A0A:1F90 0201F40A:C351 01 00000000:00000000\n";
        assert_eq!(count_time_wait(table), 1);
    }
}
