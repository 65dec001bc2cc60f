//! The byte relay between a client (the pod) and its primary: both directions at once, with
//! half-close and reset carried across, and a fixed buffer per direction.
//!
//! - EOF from one side becomes a FIN (`shutdown(SHUT_WR)`) to the other; the opposite direction
//!   goes on until it ends too.
//! - An error on either side (a reset, typically) aborts both: the other side gets an RST (linger
//!   0), as it would have seen if the two had talked directly.
//! - A direction holds its buffer only while data is moving: it waits for the socket to be
//!   readable with no buffer, and gives the buffer back once a read drains the socket. An idle
//!   keep-alive connection therefore costs its sockets and task, not `2 x buffer_size`.

use std::{
    fmt, io,
    os::fd::{AsRawFd, RawFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        PoisonError,
    },
    time::Duration,
};

use tokio::sync::Notify;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{ReadHalf, WriteHalf},
        TcpStream,
    },
};
use tokio_util::sync::CancellationToken;

use crate::{metrics::Metrics, mirror::Tap};

/// Which peer of a relayed connection something happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Primary,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Primary => "primary",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{side}: {source}")]
    Io { side: Side, source: io::Error },
    #[error("reset by the daemon at the end of the drain deadline")]
    Drained,
}

/// Bytes relayed in each direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub client_to_primary: u64,
    pub primary_to_client: u64,
}

/// How a relay ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both directions ended (EOF both ways).
    Closed(Totals),
    /// Closed by the daemon at an idle point while draining.
    Idle,
}

/// Relays until both directions have ended, one side fails, `abort` is cancelled, or, once
/// `drain` is cancelled, the connection is at an idle point: no request or answer under way and
/// no byte in hand (see [`Tap::is_idle`]); it is then closed gracefully, both ways, so that a
/// keep-alive client opens its next connection (direct, once the daemon's listeners are gone)
/// instead of seeing a reset.
///
/// `tap`, when given, sees every client chunk right after it was written to the primary, and
/// every primary chunk right after it was written to the client.
pub async fn relay(
    client: &mut TcpStream,
    primary: &mut TcpStream,
    buffer_size: usize,
    metrics: &Metrics,
    abort: &CancellationToken,
    drain: &CancellationToken,
    tap: Option<&mut Tap>,
) -> Result<Ended, Error> {
    // Both directions run in this one task, one at a time: each holds the tap only for the
    // moment it describes a chunk, so the lock is never contended (a `RefCell` would do, but
    // the task must be `Send`).
    let tap = std::sync::Mutex::new(tap);
    // Bytes read but not yet written and described, per direction; and a wake-up for the drain
    // when either direction moved.
    let in_hand = [AtomicBool::new(false), AtomicBool::new(false)];
    let moved = Notify::new();
    let client_fd = client.as_raw_fd();
    let result = {
        let (client_read, client_write) = client.split();
        let (primary_read, primary_write) = primary.split();
        let upstream = pump(
            client_read,
            primary_write,
            Side::Client,
            Side::Primary,
            buffer_size,
            &in_hand[0],
            |bytes| {
                metrics.client_to_primary_bytes.inc_by(bytes.len() as u64);
                if let Some(tap) = tap.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                    tap.observe(bytes);
                }
                moved.notify_one();
            },
        );
        let downstream = async {
            let pumped = pump(
                primary_read,
                client_write,
                Side::Primary,
                Side::Client,
                buffer_size,
                &in_hand[1],
                |bytes| {
                    metrics.primary_to_client_bytes.inc_by(bytes.len() as u64);
                    if let Some(tap) = tap.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                        tap.observe_answer(bytes);
                    }
                    moved.notify_one();
                },
            )
            .await;
            // The primary's side ended cleanly: an answer delimited by the close ends here,
            // while the client may keep its side open.
            if pumped.is_ok() {
                if let Some(tap) = tap.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                    tap.primary_closed();
                }
            }
            pumped
        };
        let idle = async {
            drain.cancelled().await;
            loop {
                let idle = !in_hand.iter().any(|b| b.load(Ordering::Acquire))
                    && tap
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .as_ref()
                        .is_some_and(|tap| tap.is_idle())
                    && !has_unread_bytes(client_fd);
                if idle {
                    return;
                }
                moved.notified().await;
            }
        };
        tokio::select! {
            result = async { tokio::try_join!(upstream, downstream) } => result.map(|(c, p)| Ended::Closed(Totals {
                client_to_primary: c,
                primary_to_client: p,
            })),
            _ = abort.cancelled() => Err(Error::Drained),
            () = idle => Ok(Ended::Idle),
        }
    };
    if result.is_err() {
        reset(client);
        reset(primary);
    }
    result
}

/// Whether bytes from the client wait unread on `fd` (a request just begun: the connection is
/// not idle after all).
fn has_unread_bytes(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is the client socket, open for the whole relay; the buffer is one byte we
    // own; MSG_PEEK leaves the byte for the relay, MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            fd,
            std::ptr::addr_of_mut!(byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

/// Copies `from` to `to` until EOF, then half-closes `to`. Returns the bytes copied.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    from_side: Side,
    to_side: Side,
    buffer_size: usize,
    in_hand: &AtomicBool,
    mut on_bytes: impl FnMut(&[u8]),
) -> Result<u64, Error> {
    let read_error = |source| Error::Io {
        side: from_side,
        source,
    };
    let write_error = |source| Error::Io {
        side: to_side,
        source,
    };
    let mut buffer: Vec<u8> = Vec::new();
    let mut total = 0u64;
    // The last read left the socket empty (it was short, or would have blocked): readiness is
    // clear, so the next one comes from a new event and data (or EOF) is waiting.
    let mut drained = true;
    loop {
        from.readable().await.map_err(read_error)?;
        if buffer.capacity() == 0 {
            // Not zeroed: reads go into the spare capacity (zeroing 16 KiB for every burst
            // showed as 3 % of the daemon's CPU at saturation).
            buffer = Vec::with_capacity(buffer_size);
        }
        buffer.clear();
        let n = if drained {
            // Through `poll_read`, which clears readiness after a short read: the next wait
            // needs no read that would block first (one syscall fewer per message each way).
            from.read_buf(&mut buffer).await.map_err(read_error)?
        } else {
            // The buffer was filled: more may be waiting, or not. A read that would block is
            // the usual way into an idle wait here: wait without the buffer.
            match from.try_read_buf(&mut buffer) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    buffer = Vec::new();
                    drained = true;
                    continue;
                }
                Err(e) => return Err(read_error(e)),
            }
        };
        if n == 0 {
            to.shutdown().await.map_err(write_error)?;
            return Ok(total);
        }
        in_hand.store(true, Ordering::Release);
        to.write_all(&buffer[..n]).await.map_err(write_error)?;
        total += n as u64;
        on_bytes(&buffer[..n]);
        in_hand.store(false, Ordering::Release);
        drained = n < buffer.capacity();
        if drained {
            // Don't hold the buffer while the peer is quiet.
            buffer = Vec::new();
        }
    }
}

/// Makes the next close send an RST instead of a FIN.
pub fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
