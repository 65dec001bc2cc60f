//! TCP servers (run in a service namespace) and client helpers (run from a pod), all bounded by
//! timeouts so that a broken data path fails a test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::netns::Netns;

/// Read/write timeout of every socket the harness creates: far above anything a healthy test
/// needs, low enough that a stuck data path fails the test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Server`]'s drop waits for its connection handlers before leaving them to their
/// socket timeouts.
const HANDLER_DRAIN: Duration = Duration::from_secs(2);

/// Options of a client connection.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Bind to this source port (with `SO_REUSEADDR`) instead of an ephemeral one.
    pub source_port: Option<u16>,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            source_port: None,
            connect_timeout: Duration::from_secs(5),
            io_timeout: IO_TIMEOUT,
        }
    }
}

impl ConnectOptions {
    /// Default options with a fixed source port.
    pub fn from_port(port: u16) -> Self {
        ConnectOptions {
            source_port: Some(port),
            ..ConnectOptions::default()
        }
    }
}

/// Connects to `destination`, optionally from `source`, in the calling thread's namespace.
pub fn connect(
    source: Option<SocketAddr>,
    destination: SocketAddr,
    options: &ConnectOptions,
) -> Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(destination),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(source) = source {
        socket.set_reuse_address(true)?;
        socket
            .bind(&source.into())
            .with_context(|| format!("cannot bind {source}"))?;
    }
    socket
        .connect_timeout(&destination.into(), options.connect_timeout)
        .with_context(|| {
            format!(
                "connect to {destination} (timeout {:?})",
                options.connect_timeout
            )
        })?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(options.io_timeout))?;
    stream.set_write_timeout(Some(options.io_timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What a server does with each accepted connection.
pub type Handler = dyn Fn(TcpStream) -> io::Result<()> + Send + Sync;

/// A TCP server on its own accept thread; stops accepting on drop.
pub struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    peers: Mutex<Vec<SocketAddr>>,
    errors: Mutex<Vec<String>>,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

impl Server {
    /// Listens on `address` inside `netns` and serves each connection with `handler` on its own
    /// thread.
    pub fn spawn(
        netns: &Netns,
        address: SocketAddr,
        handler: impl Fn(TcpStream) -> io::Result<()> + Send + Sync + 'static,
    ) -> Result<Server> {
        let listener = netns
            .run(|| listen(address))?
            .with_context(|| format!("cannot listen on {address} in {}", netns.name()))?;
        Server::from_listener(listener, handler)
    }

    /// Serves an already bound listener (in whatever namespace it was created).
    pub fn from_listener(
        listener: TcpListener,
        handler: impl Fn(TcpStream) -> io::Result<()> + Send + Sync + 'static,
    ) -> Result<Server> {
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let accept_thread = {
            let stop = Arc::clone(&stop);
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("server {address}"))
                .spawn(move || accept_loop(listener, &stop, &shared, &handler))?
        };
        Ok(Server {
            address,
            stop,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// Echoes everything back; after the client's EOF, shuts down its own side.
    pub fn echo(netns: &Netns, address: SocketAddr) -> Result<Server> {
        Server::spawn(netns, address, echo)
    }

    /// Sends `reply` at once and closes first (the client must not send anything). Through a
    /// relay this makes the relay close its pod-facing socket first, which leaves it in TIME_WAIT.
    pub fn reply_and_close(netns: &Netns, address: SocketAddr, reply: &[u8]) -> Result<Server> {
        let reply = reply.to_vec();
        Server::spawn(netns, address, move |mut stream| {
            stream.write_all(&reply)?;
            stream.shutdown(Shutdown::Write)
        })
    }

    /// Reads until the client's EOF (half-close), then replies `reply:<what it received>` and
    /// closes.
    pub fn reply_after_eof(netns: &Netns, address: SocketAddr) -> Result<Server> {
        Server::spawn(netns, address, |mut stream| {
            let mut received = Vec::new();
            stream.read_to_end(&mut received)?;
            let mut reply = b"reply:".to_vec();
            reply.extend_from_slice(&received);
            stream.write_all(&reply)?;
            stream.shutdown(Shutdown::Write)
        })
    }

    /// Reads one chunk of request, then aborts the connection (`SO_LINGER` 0 close: RST).
    pub fn reset_after_request(netns: &Netns, address: SocketAddr) -> Result<Server> {
        Server::spawn(netns, address, |mut stream| {
            let mut buffer = [0; 1024];
            let _ = stream.read(&mut buffer)?;
            SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
            drop(stream);
            Ok(())
        })
    }

    /// A minimal HTTP/1.1 server answering every request with `200 OK` and `body`, then closing.
    pub fn http(netns: &Netns, address: SocketAddr, body: &str) -> Result<Server> {
        let body = body.to_owned();
        Server::spawn(netns, address, move |mut stream| {
            crate::http::read_request_head(&mut stream)?;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes())?;
            stream.shutdown(Shutdown::Write)?;
            // Let the client's FIN arrive before closing, so no unread byte turns the close
            // into a reset.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            Ok(())
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Number of connections accepted so far.
    pub fn accepted(&self) -> usize {
        lock(&self.shared.peers).len()
    }

    /// Peer addresses of the accepted connections, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        lock(&self.shared.peers).clone()
    }

    /// Errors the handlers returned (for diagnosis).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared.errors).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let deadline = Instant::now() + HANDLER_DRAIN;
        let handlers = std::mem::take(&mut *lock(&self.shared.handlers));
        for handler in handlers {
            while !handler.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if handler.is_finished() {
                let _ = handler.join();
            }
        }
    }
}

/// The echo handler: copies everything back, half-closes after the client's EOF.
pub fn echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buffer[..read])?;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn accept_loop(
    listener: TcpListener,
    stop: &AtomicBool,
    shared: &Arc<Shared>,
    handler: &Arc<Handler>,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                lock(&shared.peers).push(peer);
                let handler = Arc::clone(handler);
                let errors = Arc::clone(shared);
                let thread = thread::spawn(move || {
                    let result = stream
                        .set_nonblocking(false)
                        .and_then(|()| stream.set_read_timeout(Some(IO_TIMEOUT)))
                        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
                        .and_then(|()| handler(stream));
                    if let Err(error) = result {
                        lock(&errors.errors).push(format!("{peer}: {error}"));
                    }
                });
                let mut handlers = lock(&shared.handlers);
                handlers.retain(|handler| !handler.is_finished());
                handlers.push(thread);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(
                    std::os::fd::AsFd::as_fd(&listener),
                    PollFlags::POLLIN,
                )];
                let _ = poll(&mut fds, PollTimeout::from(50u8));
            }
            Err(error) => {
                lock(&shared.errors).push(format!("accept: {error}"));
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// How a read loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A clean end of stream (FIN).
    Eof,
    /// `ECONNRESET`.
    Reset,
    /// No data nor end within the read timeout.
    TimedOut,
    /// Another error.
    Error(io::ErrorKind),
}

/// Reads until end of stream or error; returns what arrived and how it ended.
pub fn read_until_end(stream: &mut TcpStream) -> (Vec<u8>, Ending) {
    let mut received = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (received, Ending::Eof),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                let ending = match error.kind() {
                    io::ErrorKind::ConnectionReset => Ending::Reset,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ending::TimedOut,
                    kind => Ending::Error(kind),
                };
                return (received, ending);
            }
        }
    }
}

/// Reads to a clean end of stream, failing on reset or timeout.
pub fn read_to_eof(stream: &mut TcpStream) -> Result<Vec<u8>> {
    match read_until_end(stream) {
        (received, Ending::Eof) => Ok(received),
        (received, ending) => anyhow::bail!(
            "stream ended with {ending:?} after {} bytes instead of EOF",
            received.len()
        ),
    }
}

/// Writes `payload` (then half-closes) while concurrently reading everything the peer sends back
/// until its EOF; returns what came back. Suits an echo server of any payload size.
pub fn write_while_reading(stream: TcpStream, payload: Arc<Vec<u8>>) -> Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let writing = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&payload)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let received = read_to_eof(&mut reader);
    let written = writing
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    written.context("writing the payload")?;
    received.context("reading the echo")
}

/// Linux `TCP_CLOSE`, as `tcp_info.tcpi_state` reports it.
const TCP_STATE_CLOSE: u8 = 7;

/// Closes our side after the peer closed: sends our FIN and waits (up to `timeout`) until it is
/// acknowledged, so the next connection on the same 4-tuple cannot find this one in LAST_ACK.
pub fn close_after_peer(stream: TcpStream, timeout: Duration) -> Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + timeout;
    loop {
        if tcp_state(&stream)? == TCP_STATE_CLOSE {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("our FIN was not acknowledged within {timeout:?}");
        }
        thread::sleep(Duration::from_micros(200));
    }
}

/// The kernel's TCP state of `stream` (`tcpi_state`).
pub fn tcp_state(stream: &TcpStream) -> io::Result<u8> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes, and `len` is a valid in/out length.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised and (partly) filled by the kernel; every bit pattern is valid.
    Ok(unsafe { info.assume_init() }.tcpi_state)
}

/// `len` bytes from the kernel's random source.
/// A TLS client's first bytes, which the daemon tunnels: a TLS 1.0 handshake record header
/// (0x16 0x03 0x01, length) and the start of a ClientHello, then `random` random bytes and
/// `trailer` (e.g. bytes that would frame as a request if the daemon kept framing).
pub fn tls_looking_stream(random: usize, trailer: &[u8]) -> Result<Vec<u8>> {
    let mut stream = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    stream.extend(random_bytes(random)?);
    stream.extend_from_slice(trailer);
    Ok(stream)
}

pub fn random_bytes(len: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Index of the first byte where `a` and `b` differ (or where the shorter one ends).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_finds_mismatch_and_truncation() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"abc", b"ab"), Some(2));
        assert_eq!(first_difference(b"", b"x"), Some(0));
    }

    #[test]
    fn echo_of_a_large_payload_arrives_intact_on_loopback() -> Result<()> {
        // The test's own namespace, loopback only: needs no privileges.
        let server = Server::from_listener(TcpListener::bind("127.0.0.1:0")?, echo)?;
        let stream = connect(None, server.address(), &ConnectOptions::default())?;
        let payload = Arc::new(random_bytes(3 << 20)?);
        let echoed = write_while_reading(stream, Arc::clone(&payload))?;
        assert_eq!(first_difference(&payload, &echoed), None);
        assert_eq!(server.accepted(), 1);
        Ok(())
    }

    #[test]
    fn closing_after_the_peer_waits_for_our_fin_to_be_acknowledged() -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let server = Server::from_listener(listener, |mut stream| {
            stream.write_all(b"bye")?;
            stream.shutdown(Shutdown::Write)
        })?;
        let mut stream = connect(None, server.address(), &ConnectOptions::default())?;
        assert_eq!(read_to_eof(&mut stream)?, b"bye");
        let observer = stream.try_clone()?;
        close_after_peer(stream, Duration::from_secs(1))?;
        assert_eq!(tcp_state(&observer)?, TCP_STATE_CLOSE);
        Ok(())
    }
}
