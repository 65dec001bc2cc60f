//! What a recording HTTP/1.1 server received, and the connection loop both recording servers
//! (the primary in [`crate::primary`], the shadow in [`crate::shadow`]) run.
//!
//! Every request is recorded as it arrived: the raw head, the parsed request line and fields in
//! order, the body both as on the wire and de-chunked, trailers, the connection it came on and
//! when its head was complete. A request cut short (the peer closed or reset mid-head or
//! mid-body) is recorded too, marked incomplete, with whatever bytes did arrive.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::wire::{self, Body, Head, Reader};

/// One request as a recording server saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Sequence number of the connection it came on (0-based, per server).
    pub connection: usize,
    /// Position on that connection (0-based).
    pub index: usize,
    pub peer: SocketAddr,
    /// The head. For a request cut short inside its head, `raw` holds the bytes that arrived and
    /// the rest is empty.
    pub head: Head,
    pub body: Body,
    /// Whether head and body arrived completely.
    pub complete: bool,
    /// When the head was complete (or the connection ended, for a head cut short).
    pub arrived: Instant,
}

impl RecordedRequest {
    pub fn method(&self) -> &str {
        &self.head.start[0]
    }

    /// The request target as sent (`/path?query`).
    pub fn target(&self) -> &str {
        &self.head.start[1]
    }

    pub fn version(&self) -> &str {
        &self.head.start[2]
    }

    /// Fields in order, as received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.head.headers
    }

    /// The first field of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// Head and body bytes exactly as received.
    pub fn raw(&self) -> Vec<u8> {
        [self.head.raw.as_slice(), &self.body.raw].concat()
    }
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<RecordedRequest>,
    connections: usize,
    complete: usize,
}

/// The requests a server received, shared with its connection threads.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    log: Arc<Mutex<Log>>,
}

impl Recording {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Complete requests, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|request| request.complete)
            .cloned()
            .collect()
    }

    /// Requests cut short, in arrival order.
    pub fn incomplete(&self) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|request| !request.complete)
            .cloned()
            .collect()
    }

    /// Number of complete requests (cheap: no copies).
    pub fn count(&self) -> usize {
        self.lock().complete
    }

    /// Number of requests cut short.
    pub fn incomplete_count(&self) -> usize {
        let log = self.lock();
        log.requests.len() - log.complete
    }

    /// Connections accepted (and, for TLS, handshaken or not).
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Waits until at least `count` complete requests have arrived; returns them all.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Result<Vec<RecordedRequest>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count() >= count {
                return Ok(self.requests());
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|request| format!("{} {}", request.method(), request.target()))
                    .collect();
                bail!(
                    "{count} complete requests did not arrive within {timeout:?}; got {}: {seen:?} \
                     ({} incomplete)",
                    seen.len(),
                    self.incomplete_count()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `done` holds for the complete requests; returns them.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[RecordedRequest]) -> bool,
    ) -> Result<Vec<RecordedRequest>> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return Ok(requests);
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = requests
                    .iter()
                    .map(|request| format!("{} {}", request.method(), request.target()))
                    .collect();
                bail!("{what}: not within {timeout:?}; complete requests: {seen:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn connection(&self) -> usize {
        let mut log = self.lock();
        log.connections += 1;
        log.connections - 1
    }

    fn push(&self, request: RecordedRequest) {
        let mut log = self.lock();
        log.complete += usize::from(request.complete);
        log.requests.push(request);
    }
}

/// A server-side connection, plain or TLS.
pub trait Connection: Read + Write {
    /// Ends our direction (FIN, after a TLS close_notify).
    fn close_write(&mut self) -> io::Result<()>;
}

impl Connection for TcpStream {
    fn close_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Connection for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn close_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()?;
        self.sock.shutdown(Shutdown::Write)
    }
}

/// What the server answers.
pub(crate) enum Role {
    /// Deterministic answers ([`crate::primary::expected_response`]), `100 Continue` on
    /// `Expect: 100-continue`, `101` and echo on an upgrade.
    Primary,
    /// `200 OK` with `body` after `delay` (cut short when `stop` is set).
    Shadow {
        delay: Duration,
        body: String,
        stop: Arc<AtomicBool>,
    },
}

/// `HTTP/1.1 100 Continue`, the primary's interim answer to `Expect: 100-continue`.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// The primary's answer to an upgrade request; the connection then echoes.
pub const UPGRADE_RESPONSE: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n";

/// Serves requests on one connection until the peer closes, recording each.
pub(crate) fn serve<C: Connection>(
    connection: C,
    peer: SocketAddr,
    recording: &Recording,
    role: &Role,
) -> io::Result<()> {
    let number = recording.connection();
    let mut reader = Reader::new(connection);
    for index in 0.. {
        let mut partial = Vec::new();
        let record = |head: Head, body: Body, complete: bool, arrived: Instant| {
            recording.push(RecordedRequest {
                connection: number,
                index,
                peer,
                head,
                body,
                complete,
                arrived,
            });
        };
        let head = match reader.read_head(&mut partial) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(error) => {
                if !partial.is_empty() {
                    let head = Head {
                        raw: partial,
                        start: Default::default(),
                        headers: Vec::new(),
                    };
                    record(head, Body::default(), false, Instant::now());
                }
                return Err(error);
            }
        };
        let arrived = Instant::now();
        if matches!(role, Role::Primary)
            && head.header("upgrade").is_some()
            && head.has_token("connection", "upgrade")
        {
            record(head, Body::default(), true, arrived);
            return echo_after_upgrade(reader);
        }
        let framing = match head.request_body() {
            Ok(framing) => framing,
            Err(error) => {
                record(head, Body::default(), false, arrived);
                return Err(error);
            }
        };
        if matches!(role, Role::Primary)
            && head.has_token("expect", "100-continue")
            && framing != wire::Framing::Length(0)
        {
            reader.get_mut().write_all(CONTINUE_RESPONSE)?;
        }
        let mut body = Body::default();
        if let Err(error) = reader.read_body(framing, &mut body) {
            record(head, body, false, arrived);
            return Err(error);
        }
        let close = head.has_token("connection", "close") || head.start[2] == "HTTP/1.0";
        let response = match role {
            Role::Primary => {
                crate::primary::expected_response(&head.start[0], &head.start[1], &body.data, close)
            }
            Role::Shadow { body, .. } => shadow_response(body, close),
        };
        record(head, body, true, arrived);
        if let Role::Shadow { delay, stop, .. } = role {
            let until = Instant::now() + *delay;
            while Instant::now() < until {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let connection = reader.get_mut();
        connection.write_all(&response)?;
        connection.flush()?;
        if close {
            connection.close_write()?;
            // Let the peer's FIN arrive before closing, so nothing unread turns into a reset.
            let _ = io::copy(connection, &mut io::sink());
            return Ok(());
        }
    }
    Ok(())
}

/// The shadow's answer: `200 OK` with `body`.
pub fn shadow_response(body: &str, close: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

/// After `101 Switching Protocols`: echoes every byte (those already read first) until EOF.
fn echo_after_upgrade<C: Connection>(mut reader: Reader<C>) -> io::Result<()> {
    let early = reader.take_buffered();
    let connection = reader.get_mut();
    connection.write_all(UPGRADE_RESPONSE)?;
    connection.write_all(&early)?;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = connection.read(&mut buffer)?;
        if read == 0 {
            return connection.close_write();
        }
        connection.write_all(&buffer[..read])?;
    }
}
