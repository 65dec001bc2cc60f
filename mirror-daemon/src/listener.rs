//! The transparent listeners and their accept loops: where intercepted connections arrive.
//!
//! Each listener is bound to loopback (the proxy port is never reachable from the network) with
//! `IP_TRANSPARENT`/`IPV6_TRANSPARENT`, and sits in a SOCKMAP slot from which the sk_lookup
//! program hands it the flows the classifier selected. The accept loop also:
//! - beats the kernel watchdog (every [`BEAT_INTERVAL`]); a hung loop stops beating and the
//!   kernel sends new flows direct after the configured timeout;
//! - counts what it accepts with [`crate::admission`], which sends new flows direct at the
//!   connection limit or when accept runs out of descriptors.

use std::{io, net::SocketAddr, os::fd::AsRawFd, sync::Arc, time::Duration};

use futures::FutureExt;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::warn;

use crate::{connection, reload::Live};

/// How often the accept loop beats the watchdog.
pub const BEAT_INTERVAL: Duration = Duration::from_millis(250);
const BACKLOG: i32 = 1024;

/// A transparent listener and the SOCKMAP slot it belongs in.
pub struct Listener {
    pub slot: u32,
    pub inner: TcpListener,
}

/// Binds the IPv4 listener, and the IPv6 one unless the node has no IPv6.
pub fn bind() -> io::Result<Vec<Listener>> {
    let mut listeners = vec![Listener {
        slot: mirror_common::LISTENER_V4,
        inner: bind_transparent(SocketAddr::from(([127, 0, 0, 1], 0)))?,
    }];
    match bind_transparent(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))) {
        Ok(inner) => listeners.push(Listener {
            slot: mirror_common::LISTENER_V6,
            inner,
        }),
        Err(e) => warn!(error = %e, "no IPv6 listener; IPv6 flows will go direct"),
    }
    Ok(listeners)
}

fn bind_transparent(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        set_ipv6_transparent(&socket)?;
    } else {
        socket.set_ip_transparent(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
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

/// What the accept loops share.
pub struct Shared {
    pub live: Arc<Live>,
    pub tracker: TaskTracker,
}

/// Accepts until `stop` is cancelled, then takes what is already queued and returns.
pub async fn accept_loop(listener: Listener, shared: Arc<Shared>, stop: CancellationToken) {
    let Listener { slot, inner } = listener;
    let admission = shared.live.admission.clone();
    let mut beat = tokio::time::interval(BEAT_INTERVAL);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = beat.tick() => {
                shared.live.interception.beat();
                admission.recheck_descriptors();
            }
            accepted = inner.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ticket = admission.admit(stream.as_raw_fd());
                    let context = shared.live.connection.load_full();
                    shared.tracker.spawn(async move {
                        connection::serve(stream, peer, context).await;
                        drop(ticket);
                    });
                }
                Err(e) if is_out_of_descriptors(&e) => {
                    admission.out_of_descriptors(true);
                    warn!(slot, error = %e, "out of file descriptors: new flows go direct for a moment");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    admission.out_of_descriptors(false);
                }
                Err(e) => warn!(slot, error = %e, "client: accept failed"),
            },
        }
    }
    // New flows go direct from here on; connections already queued are still served.
    admission.withdraw();
    while let Some(Ok((stream, peer))) = inner.accept().now_or_never() {
        let ticket = admission.admit(stream.as_raw_fd());
        let context = shared.live.connection.load_full();
        shared.tracker.spawn(async move {
            connection::serve(stream, peer, context).await;
            drop(ticket);
        });
    }
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
