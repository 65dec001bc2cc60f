//! A steady client load from a pod, for fault tests: several worker threads, each sending HTTP/1.1
//! requests to the recording primary either on a new connection per request or on one keep-alive
//! connection, checking every response byte for byte against the primary's answer
//! ([`crate::primary::expected_response`]), and recording each request's outcome with its
//! timestamps and the connection it went on. [`Probes`] adds a request on a fresh connection at a
//! fixed rate, each on its own thread, so that a hung connection never delays the next probe.
//!
//! Every request has a unique target (`/load/w<worker>/r<seq>`, `/probe/<n>`), so the primary's
//! recording tells how it arrived (the peer is the pod itself when it went direct, the node when
//! the daemon relayed it).
//!
//! Keep-alive workers behave like production HTTP clients: before reusing an idle connection they
//! check that the peer has not closed it (a readable idle connection is dropped), and after a
//! failure they open a new connection.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::client::{Client, Request};
use crate::node::Pod;
use crate::tcp::{self, ConnectOptions};

/// How a worker uses connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connections {
    /// A new connection for every request (`Connection: close`).
    PerRequest,
    /// One connection for as long as it works.
    KeepAlive,
}

/// What the load looks like.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub workers: Vec<Connections>,
    /// Pause between two requests of one worker.
    pub pace: Duration,
    pub connect_timeout: Duration,
    /// Read and write timeout of each request.
    pub io_timeout: Duration,
    /// `Host` of every request.
    pub host: String,
    /// Every `n`th request of a worker is a POST with a body of `body_bytes` (else GETs only).
    pub post_every: Option<u64>,
    pub body_bytes: usize,
}

impl LoadSpec {
    /// `per_request` workers opening a connection per request and `keep_alive` workers on
    /// keep-alive connections; a request every 10 ms per worker; every third one a 2 KiB POST.
    pub fn new(per_request: usize, keep_alive: usize) -> LoadSpec {
        let mut workers = vec![Connections::PerRequest; per_request];
        workers.extend(std::iter::repeat_n(Connections::KeepAlive, keep_alive));
        LoadSpec {
            workers,
            pace: Duration::from_millis(10),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
            host: "orders.prod:8080".into(),
            post_every: Some(3),
            body_bytes: 2048,
        }
    }

    pub fn pace(mut self, pace: Duration) -> LoadSpec {
        self.pace = pace;
        self
    }

    pub fn io_timeout(mut self, timeout: Duration) -> LoadSpec {
        self.io_timeout = timeout;
        self
    }

    fn request(&self, target: &str, seq: u64, close: bool) -> Request {
        let request = match self.post_every {
            Some(every) if every > 0 && seq % every == every - 1 => {
                let body: Vec<u8> = target
                    .bytes()
                    .chain(b" payload ".iter().copied())
                    .cycle()
                    .take(self.body_bytes)
                    .collect();
                Request::post(&self.host, target, &body)
            }
            _ => Request::get(&self.host, target),
        };
        if close {
            request.header("Connection", "close")
        } else {
            request
        }
    }
}

/// One request and how it went.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub worker: usize,
    pub seq: u64,
    pub method: String,
    pub target: String,
    /// Serial number of the worker's connection the request went on.
    pub connection: u64,
    /// When that connection's connect began.
    pub connection_opened: Instant,
    /// Whether this request opened its connection.
    pub opened_connection: bool,
    /// When the request began (before the idle check and the connect, if any).
    pub started: Instant,
    pub finished: Instant,
    /// The client's address (`None` when the connect failed).
    pub local: Option<SocketAddr>,
    /// Why it failed; `None`: the response was exactly the primary's.
    pub error: Option<String>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    pub fn took(&self) -> Duration {
        self.finished.saturating_duration_since(self.started)
    }
}

/// A running load; [`Load::stop`] ends it and returns every outcome.
pub struct Load {
    origin: Instant,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    workers: Vec<JoinHandle<Result<Vec<Outcome>>>>,
}

impl Load {
    /// Starts the workers in `pod`'s namespace, sending to `destination`.
    pub fn start(pod: &Pod, destination: SocketAddr, spec: &LoadSpec) -> Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for (worker, &connections) in spec.workers.iter().enumerate() {
            let netns = pod.netns().clone();
            let (spec, stop, completed) = (spec.clone(), Arc::clone(&stop), Arc::clone(&completed));
            workers.push(
                thread::Builder::new()
                    .name(format!("load worker {worker}"))
                    .spawn(move || {
                        netns.run(|| {
                            run_worker(worker, connections, destination, &spec, &stop, &completed)
                        })
                    })?,
            );
        }
        Ok(Load {
            origin: Instant::now(),
            stop,
            completed,
            workers,
        })
    }

    /// When the load started.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Requests finished so far (successful or not).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Waits until `n` more requests than now have finished.
    pub fn wait_for_more(&self, n: u64, timeout: Duration) -> Result<()> {
        let target = self.completed() + n;
        crate::wait::until("load requests to finish", timeout, || {
            let done = self.completed();
            Ok(if done >= target { Ok(()) } else { Err(done) })
        })
    }

    /// Stops the workers (each finishes its request in flight) and returns every outcome.
    pub fn stop(mut self) -> Result<LoadReport> {
        self.stop.store(true, Ordering::SeqCst);
        let mut outcomes = Vec::new();
        for worker in std::mem::take(&mut self.workers) {
            let result = worker
                .join()
                .map_err(|_| anyhow!("a load worker panicked"))?;
            outcomes.extend(result?);
        }
        outcomes.sort_by_key(|outcome| outcome.started);
        Ok(LoadReport {
            origin: self.origin,
            outcomes,
        })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn run_worker(
    worker: usize,
    connections: Connections,
    destination: SocketAddr,
    spec: &LoadSpec,
    stop: &AtomicBool,
    completed: &AtomicU64,
) -> Vec<Outcome> {
    let options = ConnectOptions {
        source_port: None,
        connect_timeout: spec.connect_timeout,
        io_timeout: spec.io_timeout,
    };
    let mut outcomes = Vec::new();
    // The open keep-alive connection: client, serial, when it was opened, local address.
    let mut open: Option<(Client, u64, Instant, SocketAddr)> = None;
    let mut serial = 0u64;
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let target = format!("/load/w{worker}/r{seq}");
        let request = spec.request(&target, seq, connections == Connections::PerRequest);
        let started = Instant::now();
        if open
            .as_mut()
            .is_some_and(|(client, ..)| connection_dropped(client))
        {
            open = None;
        }
        let opened_connection = open.is_none();
        if opened_connection {
            let opened = Instant::now();
            serial += 1;
            match tcp::connect(None, destination, &options) {
                Ok(stream) => {
                    let local = stream.local_addr().unwrap_or(destination);
                    open = Some((Client::from_stream(stream), serial, opened, local));
                }
                Err(error) => {
                    outcomes.push(Outcome {
                        worker,
                        seq,
                        method: request.method.clone(),
                        target,
                        connection: serial,
                        connection_opened: opened,
                        opened_connection,
                        started,
                        finished: Instant::now(),
                        local: None,
                        error: Some(format!("connect: {error:#}")),
                    });
                    completed.fetch_add(1, Ordering::SeqCst);
                    seq += 1;
                    thread::sleep(spec.pace);
                    continue;
                }
            }
        }
        let Some((client, connection, connection_opened, local)) = open.as_mut() else {
            continue;
        };
        let error = client
            .exchange_checked(&request)
            .err()
            .map(|error| format!("{error:#}"));
        outcomes.push(Outcome {
            worker,
            seq,
            method: request.method.clone(),
            target,
            connection: *connection,
            connection_opened: *connection_opened,
            opened_connection,
            started,
            finished: Instant::now(),
            local: Some(*local),
            error: error.clone(),
        });
        completed.fetch_add(1, Ordering::SeqCst);
        if error.is_some() || connections == Connections::PerRequest {
            open = None;
        }
        seq += 1;
        thread::sleep(spec.pace);
    }
    outcomes
}

/// Whether an idle keep-alive connection was closed (or sent something unasked) by the peer.
fn connection_dropped(client: &mut Client) -> bool {
    if !client.take_buffered().is_empty() {
        return true;
    }
    let stream = client.stream();
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let idle = matches!(stream.peek(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_err() || !idle
}

/// Every outcome of a load, in order of start.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub origin: Instant,
    pub outcomes: Vec<Outcome>,
}

impl LoadReport {
    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| !o.succeeded()).collect()
    }

    pub fn succeeded(&self) -> usize {
        self.outcomes.iter().filter(|o| o.succeeded()).count()
    }

    /// Milliseconds from the load's start to `instant` (negative when before).
    pub fn at(&self, instant: Instant) -> f64 {
        if instant >= self.origin {
            instant.duration_since(self.origin).as_secs_f64() * 1000.0
        } else {
            -(self.origin.duration_since(instant).as_secs_f64() * 1000.0)
        }
    }

    /// The `q` quantile (0..=1) of the successful requests' durations.
    pub fn latency(&self, q: f64) -> Duration {
        let mut took: Vec<Duration> = self
            .outcomes
            .iter()
            .filter(|o| o.succeeded())
            .map(Outcome::took)
            .collect();
        took.sort();
        if took.is_empty() {
            return Duration::ZERO;
        }
        let index = ((took.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        took[index]
    }

    /// One line per outcome in `outcomes`, times in ms since the load's start.
    pub fn describe<'a>(&self, outcomes: impl IntoIterator<Item = &'a Outcome>) -> String {
        outcomes
            .into_iter()
            .map(|o| {
                format!(
                    "  worker {} #{} {} {} conn {} (opened at {:.1} ms{}) started {:.1} ms, ended {:.1} ms: {}\n",
                    o.worker,
                    o.seq,
                    o.method,
                    o.target,
                    o.connection,
                    self.at(o.connection_opened),
                    if o.opened_connection { ", by this request" } else { "" },
                    self.at(o.started),
                    self.at(o.finished),
                    o.error.as_deref().unwrap_or("ok"),
                )
            })
            .collect()
    }

    /// Counts and latencies in one line.
    pub fn summary(&self) -> String {
        format!(
            "{} requests, {} failed; latency p50 {:?}, p99 {:?}, max {:?}",
            self.outcomes.len(),
            self.outcomes.len() - self.succeeded(),
            self.latency(0.5),
            self.latency(0.99),
            self.latency(1.0)
        )
    }
}

/// A request on a fresh connection every `interval`, each on its own thread.
pub struct Probes {
    origin: Instant,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    spawner: Option<JoinHandle<Result<Vec<JoinHandle<()>>>>>,
}

impl Probes {
    /// Starts probing `destination` from `pod`: `GET /probe/<n>` with `Connection: close`.
    pub fn start(
        pod: &Pod,
        destination: SocketAddr,
        interval: Duration,
        io_timeout: Duration,
        host: &str,
    ) -> Result<Probes> {
        let origin = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let netns = pod.netns().clone();
        let host = host.to_owned();
        let spawner = {
            let (stop, outcomes) = (Arc::clone(&stop), Arc::clone(&outcomes));
            thread::Builder::new().name("probe spawner".into()).spawn(
                move || -> Result<Vec<JoinHandle<()>>> {
                    // Threads started from inside the namespace stay in it.
                    netns.run(|| -> Result<Vec<JoinHandle<()>>> {
                        let mut probes = Vec::new();
                        let mut n = 0u64;
                        while !stop.load(Ordering::SeqCst) {
                            let (outcomes, host) = (Arc::clone(&outcomes), host.clone());
                            probes.push(thread::Builder::new().name(format!("probe {n}")).spawn(
                                move || {
                                    let outcome = probe(n, destination, io_timeout, &host);
                                    lock(&outcomes).push(outcome);
                                },
                            )?);
                            n += 1;
                            thread::sleep(interval);
                        }
                        Ok(probes)
                    })?
                },
            )?
        };
        Ok(Probes {
            origin,
            stop,
            outcomes,
            spawner: Some(spawner),
        })
    }

    /// Stops probing and waits for every probe to end (each within its timeouts).
    pub fn stop(mut self) -> Result<LoadReport> {
        self.stop.store(true, Ordering::SeqCst);
        let spawner = self.spawner.take().context("stopped twice")?;
        let probes = spawner
            .join()
            .map_err(|_| anyhow!("the probe spawner panicked"))??;
        for probe in probes {
            probe.join().map_err(|_| anyhow!("a probe panicked"))?;
        }
        let mut outcomes = std::mem::take(&mut *lock(&self.outcomes));
        outcomes.sort_by_key(|outcome| outcome.started);
        Ok(LoadReport {
            origin: self.origin,
            outcomes,
        })
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn probe(n: u64, destination: SocketAddr, io_timeout: Duration, host: &str) -> Outcome {
    let target = format!("/probe/{n}");
    let request = Request::get(host, &target).header("Connection", "close");
    let started = Instant::now();
    let options = ConnectOptions {
        source_port: None,
        connect_timeout: io_timeout,
        io_timeout,
    };
    let mut local = None;
    let result = tcp::connect(None, destination, &options).and_then(|stream: TcpStream| {
        local = stream.local_addr().ok();
        Client::from_stream(stream).exchange_checked(&request)
    });
    Outcome {
        worker: usize::MAX,
        seq: n,
        method: request.method.clone(),
        target,
        connection: n,
        connection_opened: started,
        opened_connection: true,
        started,
        finished: Instant::now(),
        local,
        error: result.err().map(|error| format!("{error:#}")),
    }
}

/// Fails unless every outcome succeeded, listing the failures.
pub fn ensure_all_succeeded(report: &LoadReport, what: &str) -> Result<()> {
    let failures = report.failures();
    if !failures.is_empty() {
        bail!(
            "{what}: {} of {} requests failed:\n{}",
            failures.len(),
            report.outcomes.len(),
            report.describe(failures.iter().copied().take(30))
        );
    }
    Ok(())
}
