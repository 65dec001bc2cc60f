//! The transparent listeners and their accept loops: where intercepted connections arrive.
//!
//! Each listener is bound to loopback (the proxy port is never reachable from the network) with
//! `IP_TRANSPARENT`/`IPV6_TRANSPARENT`. Every worker ([`crate::workers`]) has one per address
//! family, and the workers' listeners of a family form a SO_REUSEPORT group on one port. The first
//! listener of each group sits in a SOCKMAP slot, from which the sk_lookup program hands it the
//! flows the classifier selected; the kernel then picks the group member by the flow's 4-tuple,
//! so each worker accepts its share of new flows itself. The accept loop also:
//! - beats the kernel watchdog (every [`BEAT_INTERVAL`]) with the oldest beat of all workers
//!   ([`Heartbeat`]); a hung worker stops beating and the kernel sends new flows direct after
//!   the configured timeout;
//! - counts what it accepts with [`crate::admission`], which sends new flows direct at the
//!   connection limit or when accept runs out of descriptors.

use std::{
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::FutureExt;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::warn;

use crate::{connection, reload::Live};

/// How often the accept loop beats the watchdog.
pub const BEAT_INTERVAL: Duration = Duration::from_millis(250);
const BACKLOG: i32 = 1024;

/// A transparent listener and the SOCKMAP slot its group belongs in. It is a std listener until
/// its accept loop starts on its worker, so that its readiness is watched by that worker's
/// runtime, not by the one that bound it.
pub struct Listener {
    pub slot: u32,
    pub inner: std::net::TcpListener,
}

/// Binds `workers` listeners per family, in SO_REUSEPORT groups: IPv4, and IPv6 unless the node
/// has no IPv6. Returns each worker's listeners, in worker order; the first worker's are the ones
/// to put in the SOCKMAP.
pub fn bind(workers: usize) -> io::Result<Vec<Vec<Listener>>> {
    let workers = workers.max(1);
    let mut out: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
    for (slot, addr) in [
        (
            mirror_common::LISTENER_V4,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ),
        (
            mirror_common::LISTENER_V6,
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
        ),
    ] {
        let group = match bind_group(addr, workers) {
            Ok(group) => group,
            Err(e) if slot == mirror_common::LISTENER_V6 => {
                warn!(error = %e, "no IPv6 listener; IPv6 flows will go direct");
                continue;
            }
            Err(e) => return Err(e),
        };
        for (worker, inner) in group.into_iter().enumerate() {
            out[worker].push(Listener { slot, inner });
        }
    }
    Ok(out)
}

/// `count` listeners on one port of `addr`'s loopback, the first on a port the kernel picks.
fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind_transparent(addr)?;
    let addr = first.local_addr()?;
    let mut group = vec![first];
    for _ in 1..count {
        group.push(bind_transparent(addr)?);
    }
    Ok(group)
}

fn bind_transparent(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        set_ipv6_transparent(&socket)?;
    } else {
        socket.set_ip_transparent(true)?;
    }
    // Every worker's listener of a family shares the port; the kernel spreads flows over them.
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

fn set_ipv6_transparent(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a plain int option on a socket we own; the pointer and length describe `on`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_IPV6,
            libc::IPV6_TRANSPARENT,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The watchdog's view of the workers: each worker's last beat. The kernel is given the oldest,
/// so new flows go direct as soon as any one worker stops beating (one hung worker would
/// otherwise blackhole its share of new flows).
pub struct Heartbeat {
    start: Instant,
    /// Per worker: nanoseconds since `start` of its last beat.
    beats: Vec<AtomicU64>,
}

impl Heartbeat {
    pub fn new(workers: usize) -> Self {
        Self {
            start: Instant::now(),
            beats: (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records a beat of `worker`; returns how long ago the oldest worker beat.
    pub fn beat(&self, worker: usize) -> Duration {
        let now = self.start.elapsed().as_nanos() as u64;
        if let Some(beat) = self.beats.get(worker) {
            beat.store(now, Ordering::Release);
        }
        let oldest = self
            .beats
            .iter()
            .map(|beat| beat.load(Ordering::Acquire))
            .min()
            .unwrap_or(now);
        Duration::from_nanos(now.saturating_sub(oldest))
    }
}

/// What the accept loops share.
pub struct Shared {
    pub live: Arc<Live>,
    pub tracker: TaskTracker,
    pub heartbeat: Heartbeat,
}

/// Accepts on one worker's listener until `stop` is cancelled, then takes what is already queued
/// and returns. Runs on that worker's runtime: the connections it spawns stay there.
pub async fn accept_loop(
    worker: usize,
    listener: Listener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let Listener { slot, inner } = listener;
    let inner = match TcpListener::from_std(inner) {
        Ok(inner) => inner,
        Err(e) => {
            // Its share of the group's flows would wait unserved: take them all off the daemon.
            warn!(slot, worker, error = %e, "kernel: cannot watch a listener; new flows go direct");
            shared.live.admission.withdraw();
            return;
        }
    };
    let admission = shared.live.admission.clone();
    let mut beat = tokio::time::interval(BEAT_INTERVAL);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = beat.tick() => {
                let age = shared.heartbeat.beat(worker);
                shared.live.interception.beat_aged(age);
                admission.recheck_descriptors();
            }
            accepted = inner.accept() => match accepted {
                Ok((stream, peer)) => serve(stream, peer, &shared),
                Err(e) if is_out_of_descriptors(&e) => {
                    admission.out_of_descriptors(true);
                    warn!(slot, worker, error = %e, "out of file descriptors: new flows go direct for a moment");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    admission.out_of_descriptors(false);
                }
                Err(e) => warn!(slot, worker, error = %e, "client: accept failed"),
            },
        }
    }
    // New flows go direct from here on; connections already queued are still served.
    admission.withdraw();
    while let Some(Ok((stream, peer))) = inner.accept().now_or_never() {
        serve(stream, peer, &shared);
    }
}

/// Serves an accepted connection on this worker, counted by admission and drain.
fn serve(stream: tokio::net::TcpStream, peer: SocketAddr, shared: &Shared) {
    let ticket = shared.live.admission.admit(stream.as_raw_fd());
    let context = shared.live.connection.load_full();
    shared.tracker.spawn(async move {
        connection::serve(stream, peer, context).await;
        drop(ticket);
    });
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
