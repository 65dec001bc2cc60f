//! TCP early demux, switched off in the daemon's network namespace while it runs.
//!
//! Early demux attaches a packet to an established or TIME_WAIT socket with the same 4-tuple
//! before routing. Once the daemon is gone, a pod that reuses the 4-tuple of a proxied connection
//! whose node-side socket is still in TIME_WAIT would have its SYN attached to that socket and then
//! dropped by the forwarding path (for up to 60 s). With early demux off the SYN is routed as
//! usual and reaches its destination directly. The setting is per network namespace.
//!
//! At a clean exit the previous value is restored, unless sockets in TIME_WAIT remain whose local
//! address is an intercepted destination, i.e. the daemon's side of proxied connections
//! (restoring then would arm the trap for up to 60 s): then it stays off and a log line says so. After a SIGKILL it stays off, which is what keeps the node's traffic flowing directly.

use std::{
    fs, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tracing::{debug, warn};

use crate::config::InterceptRule;

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

    pub fn restore(&self, rules: &[InterceptRule]) {
        if let Some(previous) = self.previous.as_deref().filter(|v| *v != "0") {
            let waiting = proxied_time_wait_sockets(rules);
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

/// Sockets in TIME_WAIT in this namespace whose local address matches an intercept rule.
fn proxied_time_wait_sockets(rules: &[InterceptRule]) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .map(|table| {
            time_wait_local_addresses(&table)
                .filter(|local| intercepted(rules, *local))
                .count()
        })
        .sum()
}

fn intercepted(rules: &[InterceptRule], local: SocketAddr) -> bool {
    rules.iter().any(|rule| {
        rule.cidr.contains(&local.ip())
            && (rule.ports.is_empty() || rule.ports.contains(&local.port()))
    })
}

/// Local addresses of the TIME_WAIT (state 06) rows of a /proc/net/tcp{,6} table.
fn time_wait_local_addresses(table: &str) -> impl Iterator<Item = SocketAddr> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        if fields.nth(1)? != "06" {
            return None;
        }
        parse_proc_addr(local)
    })
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits + `:port` (IPv6), as the kernel prints them:
/// each 32-bit word in host byte order.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.swap_bytes())),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_time_wait_sockets_on_intercepted_destinations() {
        // 10.96.0.10:8080 in TIME_WAIT (proxied), 127.0.0.1:15090 in TIME_WAIT (admin), one
        // established socket on the intercepted destination.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
            0: 0A00600A:1F90 0201F40A:C350 06 00000000:00000000\n\
            1: 0100007F:3AFA 0100007F:C351 06 00000000:00000000\n\
            2: 0A00600A:1F90 0201F40A:C352 01 00000000:00000000\n";
        let rules = [InterceptRule {
            cidr: "10.96.0.0/24".parse().expect("cidr"),
            ports: vec![8080],
        }];
        let waiting: Vec<_> = time_wait_local_addresses(table).collect();
        assert_eq!(waiting.len(), 2);
        assert_eq!(waiting[0], "10.96.0.10:8080".parse().expect("addr"));
        assert_eq!(
            waiting.iter().filter(|a| intercepted(&rules, **a)).count(),
            1
        );
    }

    #[test]
    fn ipv6_proc_addresses_parse() {
        // fd00:96::10 port 8080 as /proc/net/tcp6 prints it.
        let addr = parse_proc_addr("960000FD000000000000000010000000:1F90").expect("parses");
        assert_eq!(addr, "[fd00:96::10]:8080".parse().expect("addr"));
    }
}
