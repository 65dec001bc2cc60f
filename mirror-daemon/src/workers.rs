//! One runtime per core: the worker threads that carry every intercepted connection.
//!
//! Each worker is an OS thread running its own current-thread tokio runtime. A connection lives
//! its whole life on the worker that accepted it: its relay, its framing, the copies it makes and
//! the shadow connections they travel on. Nothing on the request path hands work to another
//! thread, so serving a request costs no cross-thread wake-up (a futex and an IPI each, dear in a
//! VM) and no work stealing.
//!
//! Per worker (lives on its thread, never shared):
//! - its transparent listeners, one per address family, members of SO_REUSEPORT groups: the
//!   kernel spreads new flows over the group by their 4-tuple ([`crate::listener`]);
//! - its connections and their taps;
//! - one delivery lane per shadow target: a queue, the copies in flight and a pool of keep-alive
//!   connections ([`crate::shadow`]).
//!
//! Shared by the process, across workers (atomics, or locks off the request path):
//! - the config and its reload, the mirror engine's rules (read-only between reloads);
//! - metrics (atomic counters), the copy budget (`mirror.max_buffered_bytes`), admission
//!   (`relay.max_connections`, descriptors), each target's limits (`max_concurrent` copies and
//!   connections, `queue_size`);
//! - the watchdog: every worker beats, and the kernel sees the oldest beat, so one hung worker
//!   sends new flows direct;
//! - drain: one tracker of every connection, one abort token.
//!
//! The control thread (main) runs the rest on its own runtime: signals, the admin endpoint,
//! reloads, kernel set-up and link events.

use std::{cell::Cell, io, thread};

use tokio::{runtime, sync::oneshot};

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker this thread is, or `None` off the workers (control thread, tests).
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// How many workers to run: `configured`, or one per CPU this process may use when 0.
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// The running worker threads.
pub struct Workers {
    handles: Vec<runtime::Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers (at least one); each has its runtime running when this returns.
    pub fn start(count: usize) -> io::Result<Self> {
        let mut workers = Self {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for index in 0..count.max(1) {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    CURRENT.with(|current| current.set(Some(index)));
                    let runtime = match runtime::Builder::new_current_thread().enable_all().build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(runtime.handle().clone()));
                    // Runs the worker's tasks until told to stop; tasks still there are dropped
                    // with the runtime.
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                })?;
            let handle = ready_rx.recv().map_err(|_| {
                io::Error::other("worker thread ended before its runtime started")
            })??;
            workers.handles.push(handle);
            workers.stops.push(stop_tx);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Handles to spawn tasks on each worker, in worker order.
    pub fn handles(&self) -> &[runtime::Handle] {
        &self.handles
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Stops every worker's runtime (dropping the tasks still on it) and joins the threads.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_their_own_worker_and_know_which_it_is() {
        let workers = Workers::start(3).expect("workers");
        assert_eq!(workers.len(), 3);
        let seen: Vec<_> = workers
            .handles()
            .iter()
            .map(|handle| {
                let (tx, rx) = std::sync::mpsc::channel();
                handle.spawn(async move {
                    let _ = tx.send((current(), thread::current().name().map(str::to_owned)));
                });
                rx.recv_timeout(std::time::Duration::from_secs(5))
                    .expect("the task ran")
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some(0), Some("worker-0".to_owned())),
                (Some(1), Some("worker-1".to_owned())),
                (Some(2), Some("worker-2".to_owned())),
            ]
        );
        assert_eq!(current(), None, "the test thread is no worker");
        workers.stop();
    }

    #[test]
    fn zero_means_one_per_cpu() {
        assert_eq!(count(3), 3);
        assert!(count(0) >= 1);
    }
}
