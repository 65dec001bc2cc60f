//! A server that holds many connections at once on one thread (epoll), for resource tests: ten
//! thousand idle keep-alive connections, connections beyond a limit, or a peer that accepts and
//! never reads. The recording servers use a thread per connection and read timeouts, which suit
//! neither.
//!
//! In [`Hold::Answer`] mode every request head (`…\r\n\r\n`, no body) is answered with
//! [`HOLD_RESPONSE`] and the connection stays open; in [`Hold::Silent`] mode nothing is ever read,
//! so the peer's writes stall once the (optionally small) receive buffer is full. Connections stay
//! open until the peer closes them or the server is dropped.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::Netns;

/// The answer to every request in [`Hold::Answer`] mode.
pub const HOLD_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nheld\n";

/// What the server does with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Answers each request head with [`HOLD_RESPONSE`]; keeps the connection.
    Answer,
    /// Never reads.
    Silent,
}

#[derive(Debug, Default)]
struct State {
    peers: Vec<SocketAddr>,
    open: usize,
    answered: u64,
}

/// The server; stops and closes every connection on drop.
pub struct HoldServer {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HoldServer {
    /// Listens on `address` inside `netns`; `receive_buffer` sets `SO_RCVBUF` on the listener
    /// (accepted connections inherit it).
    pub fn start(
        netns: &Netns,
        address: SocketAddr,
        mode: Hold,
        receive_buffer: Option<usize>,
    ) -> Result<HoldServer> {
        let listener = netns
            .run(|| listen(address, receive_buffer))?
            .with_context(|| format!("cannot listen on {address} in {}", netns.name()))?;
        HoldServer::from_listener(listener, mode)
    }

    /// Serves an already bound, non-blocking listener (in whatever namespace it was made).
    pub fn from_listener(listener: TcpListener, mode: Hold) -> Result<HoldServer> {
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("hold {address}"))
                .spawn(move || {
                    if let Err(error) = serve(&listener, mode, &state, &stop) {
                        eprintln!("mirror-tests: hold server {address}: {error:#}");
                    }
                })?
        };
        Ok(HoldServer {
            address,
            state,
            stop,
            thread: Some(thread),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Peers of every connection accepted so far, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        lock(&self.state).peers.clone()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        lock(&self.state).peers.len()
    }

    /// Connections open now (in [`Hold::Silent`] mode: accepted, as closes are not watched).
    pub fn open(&self) -> usize {
        lock(&self.state).open
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        lock(&self.state).answered
    }
}

impl Drop for HoldServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn listen(address: SocketAddr, receive_buffer: Option<usize>) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// An epoll instance, closed on drop.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is valid for the call; `fd` is an open descriptor we own.
        let rc = unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Tokens of ready descriptors (at most `events.len()`), waiting up to `timeout_ms`.
    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<Vec<u64>> {
        let capacity = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` is a writable buffer of `capacity` entries.
        let n = unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), capacity, timeout_ms) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(error);
        }
        Ok(events[..n as usize].iter().map(|event| event.u64).collect())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

const LISTENER_TOKEN: u64 = u64::MAX;

struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

fn serve(
    listener: &TcpListener,
    mode: Hold,
    state: &Mutex<State>,
    stop: &AtomicBool,
) -> Result<()> {
    let epoll = Epoll::new()?;
    epoll.add(listener.as_raw_fd(), LISTENER_TOKEN)?;
    let mut connections: HashMap<u64, Connection> = HashMap::new();
    let mut next_token = 0u64;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut chunk = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        for token in epoll.wait(&mut events, 20)? {
            if token == LISTENER_TOKEN {
                accept_all(
                    listener,
                    mode,
                    &epoll,
                    &mut connections,
                    &mut next_token,
                    state,
                )?;
                continue;
            }
            let Some(connection) = connections.get_mut(&token) else {
                continue;
            };
            if !serve_readable(connection, &mut chunk, state) {
                // Closing the stream also removes it from the epoll set.
                connections.remove(&token);
                lock(state).open = connections.len();
            }
        }
    }
    Ok(())
}

fn accept_all(
    listener: &TcpListener,
    mode: Hold,
    epoll: &Epoll,
    connections: &mut HashMap<u64, Connection>,
    next_token: &mut u64,
    state: &Mutex<State>,
) -> Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(true)?;
                let token = *next_token;
                *next_token += 1;
                if mode == Hold::Answer {
                    epoll.add(stream.as_raw_fd(), token)?;
                }
                connections.insert(
                    token,
                    Connection {
                        stream,
                        buffer: Vec::new(),
                    },
                );
                let mut state = lock(state);
                state.peers.push(peer);
                state.open = connections.len();
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::EMFILE) => {
                bail!("accept: out of file descriptors (raise RLIMIT_NOFILE): {error}")
            }
            Err(error) => {
                eprintln!("mirror-tests: hold server accept: {error}");
                return Ok(());
            }
        }
    }
}

/// Reads what is there and answers complete request heads; `false` when the connection ended.
fn serve_readable(connection: &mut Connection, chunk: &mut [u8], state: &Mutex<State>) -> bool {
    loop {
        match connection.stream.read(chunk) {
            Ok(0) => return false,
            Ok(n) => connection.buffer.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while let Some(end) = find(&connection.buffer, b"\r\n\r\n") {
        connection.buffer.drain(..end + 4);
        if write_all_nonblocking(&mut connection.stream, HOLD_RESPONSE).is_err() {
            return false;
        }
        lock(state).answered += 1;
    }
    true
}

fn write_all_nonblocking(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let mut stalls = 0;
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock && stalls < 1000 => {
                stalls += 1;
                thread::sleep(Duration::from_millis(1));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::{self, ConnectOptions};
    use std::time::Instant;

    /// A server on loopback in the test's own namespace (no privileges needed).
    fn loopback(mode: Hold) -> Result<HoldServer> {
        HoldServer::from_listener(listen("127.0.0.1:0".parse()?, None)?, mode)
    }

    fn wait_for(what: &str, mut check: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            if Instant::now() > deadline {
                bail!("{what}: not within 5 s");
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    #[test]
    fn answers_requests_and_keeps_many_connections_open_on_loopback() -> Result<()> {
        let server = loopback(Hold::Answer)?;
        let mut streams = Vec::new();
        for _ in 0..200 {
            streams.push(tcp::connect(
                None,
                server.address(),
                &ConnectOptions::default(),
            )?);
        }
        for stream in &mut streams {
            // Two pipelined requests, the second in two pieces.
            stream.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n")?;
            stream.write_all(b"Host: x\r\n\r\n")?;
        }
        for stream in &mut streams {
            let mut response = vec![0; HOLD_RESPONSE.len() * 2];
            stream.read_exact(&mut response)?;
            assert_eq!(response, [HOLD_RESPONSE, HOLD_RESPONSE].concat());
        }
        // The count follows the write the client has just read.
        wait_for("400 answers counted", || server.answered() == 400)?;
        assert_eq!(server.accepted(), 200);
        assert_eq!(server.open(), 200);
        streams.truncate(50);
        wait_for("closes seen", || server.open() == 50)?;
        Ok(())
    }

    #[test]
    fn a_silent_server_never_reads_so_writes_stall() -> Result<()> {
        let server = loopback(Hold::Silent)?;
        let mut stream = tcp::connect(None, server.address(), &ConnectOptions::default())?;
        stream.set_nonblocking(true)?;
        let block = vec![0u8; 64 * 1024];
        let mut written = 0usize;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match stream.write(&block) {
                Ok(n) => written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error.into()),
            }
            if Instant::now() > deadline || written > 256 << 20 {
                bail!("{written} bytes went into a connection nobody reads");
            }
        }
        wait_for("accepted", || server.accepted() == 1)?;
        assert_eq!(server.answered(), 0);
        Ok(())
    }
}
