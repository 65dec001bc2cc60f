//! Admission: how many intercepted connections the daemon holds, and what happens beyond that.
//!
//! The daemon never refuses a flow it was handed, and never lets one wait: when it holds
//! `relay.max_connections` connections, or accept runs out of file descriptors, it takes its
//! listeners out of the SOCKMAP, so that new flows go direct; when it can take more, it puts them
//! back. Connections the kernel queued meanwhile are still accepted and served (a bounded
//! overshoot, at most the listen backlog).
//!
//! The limit in force is the configured one, lowered if needed to what the open-files limit
//! allows (two descriptors per connection, plus a reserve for shadow connections and the
//! daemon's own); the soft limit is raised to the hard one at start. Each accepted descriptor is
//! also checked against the limit in force, so a limit lowered while running sends new flows
//! direct before accept or connect can fail.

use std::{
    os::fd::RawFd,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use tracing::{info, warn};

use crate::interception::Interception;

/// Descriptors kept for everything but relayed connections (netlink, maps, admin, logs...).
const BASE_RESERVE: usize = 64;
/// An accepted descriptor this close to the open-files limit sends new flows direct: the
/// connection just accepted still needs one for its primary, and the limit may have been lowered
/// while running (e.g. `prlimit`).
const DESCRIPTOR_HEADROOM: usize = 16;

/// Why new flows currently go direct.
#[derive(Debug, Default)]
struct State {
    full: bool,
    out_of_descriptors: bool,
    closing: bool,
    registered: bool,
    listeners: Vec<(u32, RawFd)>,
}

pub struct Admission {
    interception: Arc<Interception>,
    active: AtomicUsize,
    max: AtomicUsize,
    state: Mutex<State>,
}

/// Held by each admitted connection; releasing it may let new flows in again.
pub struct Ticket(Arc<Admission>);

impl Drop for Ticket {
    fn drop(&mut self) {
        let admission = &self.0;
        let active = admission.active.fetch_sub(1, Ordering::AcqRel) - 1;
        admission.recheck_descriptors();
        if active < admission.max.load(Ordering::Acquire) {
            admission.update(|state| {
                if state.full {
                    state.full = false;
                    info!("below the connection limit again: intercepting new flows");
                }
            });
        }
    }
}

impl Admission {
    /// `configured` connections at most (lowered to what descriptors allow); `reserve` extra
    /// descriptors are kept for shadow connections.
    pub fn new(interception: Arc<Interception>, configured: usize, reserve: usize) -> Arc<Self> {
        raise_open_files_limit();
        let admission = Arc::new(Self {
            interception,
            active: AtomicUsize::new(0),
            max: AtomicUsize::new(1),
            state: Mutex::new(State::default()),
        });
        admission.set_max(configured, reserve);
        admission
    }

    /// The limit in force.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Acquire)
    }

    /// Applies a (re)configured limit.
    pub fn set_max(&self, configured: usize, reserve: usize) {
        let allowed = descriptor_budget(BASE_RESERVE + reserve) / 2;
        let max = configured.min(allowed).max(1);
        if max < configured {
            warn!(
                configured,
                max, "relay.max_connections lowered by the open-files limit; raise it (ulimit -n) to hold more"
            );
        }
        self.max.store(max, Ordering::Release);
        let active = self.active.load(Ordering::Acquire);
        self.update(|state| state.full = active >= max);
    }

    /// Registers a listener (in its SOCKMAP slot unless new flows currently go direct).
    pub fn add_listener(&self, slot: u32, fd: RawFd) {
        self.update(|state| {
            state.listeners.push((slot, fd));
            // Forces a fresh registration of every listener, the new one included.
            state.registered = false;
        });
    }

    /// Counts a connection just accepted on descriptor `fd`.
    pub fn admit(self: &Arc<Self>, fd: RawFd) -> Ticket {
        // Linux hands out the lowest free descriptor, so a high one means few are left.
        if usize::try_from(fd).unwrap_or(0) + DESCRIPTOR_HEADROOM >= open_files_limit() {
            self.update(|state| {
                if !state.out_of_descriptors {
                    state.out_of_descriptors = true;
                    warn!(fd, "close to the open-files limit: new flows go direct until descriptors are freed");
                }
            });
        }
        let active = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        if active >= self.max() {
            self.update(|state| {
                if !state.full {
                    state.full = true;
                    warn!(
                        active,
                        "connection limit reached: new flows go direct until connections close"
                    );
                }
            });
        }
        Ticket(self.clone())
    }

    /// Accept ran out of descriptors (`true`), or may try again (`false`).
    pub fn out_of_descriptors(&self, out: bool) {
        self.update(|state| state.out_of_descriptors = out);
    }

    /// Ends a shortage of descriptors once enough are free again: connections closed, or the
    /// limit was raised (`prlimit`). Called when a connection ends and on every heartbeat, so
    /// that a raised limit is noticed even when nothing closes.
    pub fn recheck_descriptors(&self) {
        self.update(|state| {
            if state.out_of_descriptors && descriptor_budget(DESCRIPTOR_HEADROOM * 2) > 0 {
                state.out_of_descriptors = false;
                info!("descriptors free again: intercepting new flows");
            }
        });
    }

    /// From now on new flows go direct, for good (shutdown).
    pub fn withdraw(&self) {
        self.update(|state| state.closing = true);
    }

    /// Connections held now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut state);
        let wanted = !(state.full || state.out_of_descriptors || state.closing);
        if wanted == state.registered {
            return;
        }
        for &(slot, fd) in &state.listeners {
            if wanted {
                if let Err(e) = self.interception.register_listener(slot, &fd) {
                    warn!(slot, error = %e, "kernel: could not register the listener; its flows go direct");
                }
            } else {
                self.interception.unregister_listener(slot);
            }
        }
        state.registered = wanted;
    }
}

/// The soft open-files limit.
fn open_files_limit() -> usize {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| {
            usize::try_from(soft).unwrap_or(usize::MAX)
        })
}

/// Descriptors this process may still open, less `reserve`.
fn descriptor_budget(reserve: usize) -> usize {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count());
    open_files_limit()
        .saturating_sub(open)
        .saturating_sub(reserve)
}

/// Raises the soft open-files limit to the hard one (allowed without privileges).
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
