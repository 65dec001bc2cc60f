//! A target's keep-alive connections: reused newest first, closed when idle too long.
//!
//! Each worker's lane keeps its own idle connections ([`Pool`]): a copy only ever uses a connection
//! of its own worker, whose readiness that worker's runtime watches. Every connection holds one of
//! the target's `max_concurrent` slots for its whole life, busy or idle, and the slots are shared
//! by the lanes ([`Slots`]), so the connections open to a target never exceed `max_concurrent`
//! whatever the timing. A lane that needs a slot while idle connections hold them all closes the
//! oldest idle one, its own first, another lane's otherwise. Before an idle connection is reused
//! it is polled once: one the shadow has closed meanwhile (or that has unexpected bytes waiting)
//! is dropped instead of failing the next copy.

use std::{
    future::poll_fn,
    mem,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::Poll,
    time::Duration,
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    io::{AsyncRead, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use super::dial::Stream;

/// Another lane's idle connection may be closed for a slot once it has been idle this long.
pub(super) const EVICTABLE_AFTER: Duration = Duration::from_millis(100);

/// One open connection, counted in `mirror_shadow_open_connections` until dropped.
#[derive(Debug)]
pub(super) struct Connection {
    pub stream: Stream,
    pub peer: SocketAddr,
    /// It came from the pool rather than from a fresh dial.
    pub reused: bool,
    _slot: OwnedSemaphorePermit,
    _open: OpenGuard,
}

#[derive(Debug)]
struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A connection slot, taken before dialing.
#[derive(Debug)]
pub(super) struct Slot(OwnedSemaphorePermit);

#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
}

/// A target's connection slots, shared by its lanes, and every lane's idle connections (so a
/// lane short of a slot can close another lane's idle connection).
#[derive(Debug)]
pub(super) struct Slots {
    slots: Arc<Semaphore>,
    /// Each lane's idle connections, oldest first; a lane's [`Pool`] is its entry here.
    idle: Vec<Mutex<Vec<Idle>>>,
    closed: AtomicBool,
}

impl Slots {
    /// `max_connections` slots for `lanes` lanes.
    pub fn new(max_connections: usize, lanes: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max_connections)),
            idle: (0..lanes.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            closed: AtomicBool::new(false),
        })
    }

    pub fn lanes(&self) -> usize {
        self.idle.len()
    }

    /// Closes every idle connection of every lane, and gives out no more slots.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.slots.close();
        for lane in 0..self.idle.len() {
            drop(mem::take(&mut *self.lock(lane)));
        }
    }

    fn lock(&self, lane: usize) -> MutexGuard<'_, Vec<Idle>> {
        self.idle[lane]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One lane's view of the target's connections.
#[derive(Debug)]
pub(super) struct Pool {
    lane: usize,
    slots: Arc<Slots>,
    idle_timeout: Duration,
    open: Gauge,
}

impl Pool {
    pub fn new(slots: Arc<Slots>, lane: usize, idle_timeout: Duration, open: Gauge) -> Self {
        Self {
            lane,
            slots,
            idle_timeout,
            open,
        }
    }

    /// The most recently used idle connection that still looks usable.
    pub async fn take(&self) -> Option<Connection> {
        loop {
            let Idle {
                mut connection,
                since,
            } = self.lock().pop()?;
            if since.elapsed() >= self.idle_timeout {
                // The newest is too old, so all are.
                self.lock().clear();
                return None;
            }
            if still_open(&mut connection.stream).await {
                connection.reused = true;
                return Some(connection);
            }
        }
    }

    /// Keeps a connection whose last exchange left it clean, for the next copy.
    pub fn put(&self, connection: Connection) {
        if self.slots.closed.load(Ordering::Acquire) {
            return;
        }
        self.lock().push(Idle {
            connection,
            since: Instant::now(),
        });
    }

    /// Closes the connections idle for `idle_timeout` or longer.
    pub fn reap(&self) {
        let expired = {
            let mut idle = self.lock();
            let fresh = idle
                .iter()
                .position(|i| i.since.elapsed() < self.idle_timeout)
                .unwrap_or(idle.len());
            idle.drain(..fresh).collect::<Vec<_>>()
        };
        // Dropped outside the lock: dropping a TLS connection does some work.
        drop(expired);
    }

    /// A slot for a new connection, now or not at all. When idle connections hold every slot,
    /// the oldest idle one of another lane is closed to make room, if it has been idle for
    /// [`EVICTABLE_AFTER`] (so that two busy lanes don't take turns closing each other's
    /// connections). This lane's own idle connections are for [`Pool::take`].
    pub fn try_slot(&self) -> Option<Slot> {
        if let Ok(permit) = self.slots.slots.clone().try_acquire_owned() {
            return Some(Slot(permit));
        }
        let lanes = self.slots.lanes();
        let evicted = (1..lanes)
            .map(|i| (self.lane + i) % lanes)
            .find_map(|lane| {
                let mut idle = self.slots.lock(lane);
                idle.first()
                    .is_some_and(|oldest| oldest.since.elapsed() >= EVICTABLE_AFTER)
                    .then(|| idle.remove(0))
            });
        drop(evicted?);
        self.slots.slots.clone().try_acquire_owned().ok().map(Slot)
    }

    /// Waits until a slot is free (another lane's connection closed). Once the pool is closed
    /// no slot comes.
    pub async fn freed_slot(&self) -> Slot {
        match self.slots.slots.clone().acquire_owned().await {
            Ok(permit) => Slot(permit),
            Err(_closed) => std::future::pending().await,
        }
    }

    /// Counts a freshly dialed connection as open.
    pub fn opened(&self, stream: Stream, peer: SocketAddr, slot: Slot) -> Connection {
        self.open.inc();
        Connection {
            stream,
            peer,
            reused: false,
            _slot: slot.0,
            _open: OpenGuard(self.open.clone()),
        }
    }

    /// Counts a connection the pool does not keep (an HTTP/2 connection, which its own task
    /// drives) as open, holding `slot`, until the returned guard is dropped.
    pub fn held(&self, slot: Slot) -> Held {
        self.open.inc();
        Held {
            _slot: slot.0,
            _open: OpenGuard(self.open.clone()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.slots.lock(self.lane)
    }
}

/// A connection slot held, and counted open, by a connection outside the pool.
#[derive(Debug)]
pub(super) struct Held {
    _slot: OwnedSemaphorePermit,
    _open: OpenGuard,
}

/// Polls an idle connection once: nothing to read means it is still open and clean.
async fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut byte);
        Poll::Ready(matches!(
            Pin::new(&mut *stream).poll_read(cx, &mut buf),
            Poll::Pending
        ))
    })
    .await
}
