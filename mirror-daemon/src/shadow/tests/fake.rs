//! A fake shadow target on 127.0.0.1: frames the requests it gets, records them, answers with
//! a scripted response, and counts connections.
//!
//! `FakeShadow::new().reply(..).close_after_reply().start()` reads like what the shadow does.
//! Requests are framed with `Content-Length` or chunked encoding, so the fake knows when one is
//! complete; bytes of a request still incomplete when the client closes are kept as a leftover.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

use super::super::chunked::ChunkedDrain;

pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// What the fake has seen so far.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub accepted: usize,
    /// Connections open now, and the most at once.
    pub open: usize,
    pub most_open: usize,
    /// Requests between their head and their reply now, and the most at once.
    pub serving: usize,
    pub most_serving: usize,
    pub heads: Vec<String>,
    /// Complete requests, head and body, byte for byte (the tests send ASCII).
    pub requests: Vec<String>,
    /// Connections that ended (either side closing), and the bytes of any incomplete request
    /// they ended in.
    pub closed: usize,
    pub leftovers: Vec<String>,
}

#[derive(Clone)]
pub struct FakeShadow {
    reply: Option<Vec<u8>>,
    delay: Duration,
    close_after_reply: bool,
    answers_per_connection: usize,
    tls: Option<TlsAcceptor>,
}

/// A running fake; it stops when dropped.
pub struct Running {
    pub address: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _tasks: JoinSet<()>,
}

impl FakeShadow {
    /// A shadow answering every request with [`OK`].
    pub fn new() -> Self {
        Self {
            reply: Some(OK.to_vec()),
            delay: Duration::ZERO,
            close_after_reply: false,
            answers_per_connection: usize::MAX,
            tls: None,
        }
    }

    /// Answers each request with these raw bytes.
    pub fn reply(mut self, raw: &[u8]) -> Self {
        self.reply = Some(raw.to_vec());
        self
    }

    /// Reads requests but never answers.
    pub fn silent(mut self) -> Self {
        self.reply = None;
        self
    }

    /// Waits this long before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn close_after_reply(mut self) -> Self {
        self.close_after_reply = true;
        self
    }

    /// Answers this many requests per connection, keep-alive; the next request read on it is
    /// dropped with the connection, as when a server closes an idle connection just as a
    /// request arrives.
    pub fn answers_per_connection(mut self, answers: usize) -> Self {
        self.answers_per_connection = answers;
        self
    }

    /// Speaks TLS with the `localhost` certificate of `testdata/`.
    pub fn tls(mut self) -> Self {
        self.tls = Some(test_tls_acceptor());
        self
    }

    pub async fn start(self) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake shadow");
        let address = listener.local_addr().expect("fake shadow address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = JoinSet::new();
        let fake = Arc::new(self);
        let seen_by_accept = seen.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                update(&seen_by_accept, |s| {
                    s.accepted += 1;
                    s.open += 1;
                    s.most_open = s.most_open.max(s.open);
                });
                let (fake, seen) = (fake.clone(), seen_by_accept.clone());
                connections.spawn(async move {
                    match &fake.tls {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                fake.serve(tls, &seen).await;
                            }
                        }
                        None => fake.serve(tcp, &seen).await,
                    }
                    update(&seen, |s| {
                        s.open -= 1;
                        s.closed += 1;
                    });
                });
            }
        });
        Running {
            address,
            seen,
            _tasks: tasks,
        }
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut io: S, seen: &Mutex<Seen>) {
        let mut buf = Vec::new();
        for answered in 0.. {
            let Some(request) = read_request(&mut io, &mut buf, seen).await else {
                if !buf.is_empty() {
                    update(seen, |s| s.leftovers.push(text(&buf)));
                }
                return;
            };
            if answered == self.answers_per_connection {
                return;
            }
            update(seen, |s| {
                s.requests.push(text(&request));
                s.serving += 1;
                s.most_serving = s.most_serving.max(s.serving);
            });
            let Some(reply) = &self.reply else {
                // Hold the connection until the client gives up.
                while matches!(io.read(&mut [0; 1024]).await, Ok(1..)) {}
                update(seen, |s| s.serving -= 1);
                return;
            };
            tokio::time::sleep(self.delay).await;
            update(seen, |s| s.serving -= 1);
            if io.write_all(reply).await.is_err() || self.close_after_reply {
                let _ = io.shutdown().await;
                return;
            }
        }
    }
}

impl Running {
    pub fn seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn update(seen: &Mutex<Seen>, change: impl FnOnce(&mut Seen)) {
    change(&mut seen.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Reads the next complete request off `io` (its bytes removed from `buf`); `None` when the
/// client closes first, leaving what it sent in `buf`.
async fn read_request<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    seen: &Mutex<Seen>,
) -> Option<Vec<u8>> {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        read_more(io, buf).await?;
    };
    update(seen, |s| s.heads.push(text(&buf[..head_end])));
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let end = if head.contains("transfer-encoding: chunked") {
        let mut chunked = ChunkedDrain::default();
        let mut at = head_end;
        loop {
            let (consumed, done) = chunked.advance(&buf[at..]).ok()?;
            at += consumed;
            if done {
                break at;
            }
            read_more(io, buf).await?;
        }
    } else {
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().unwrap_or(0));
        while buf.len() < head_end + length {
            read_more(io, buf).await?;
        }
        head_end + length
    };
    Some(buf.drain(..end).collect())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn read_more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0; 4096];
    match io.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// The path of a file in `testdata/`.
pub fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/shadow/testdata")
        .join(name)
}

fn test_tls_acceptor() -> TlsAcceptor {
    TlsAcceptor::from(Arc::new(test_tls_config()))
}

/// A server config with the `localhost` certificate of `testdata/`.
pub fn test_tls_config() -> rustls::ServerConfig {
    let pem = |name| std::io::BufReader::new(std::fs::File::open(testdata(name)).expect(name));
    let certs = rustls_pemfile::certs(&mut pem("server.pem"))
        .collect::<Result<Vec<_>, _>>()
        .expect("server.pem");
    let key = rustls_pemfile::private_key(&mut pem("server.key"))
        .expect("server.key")
        .expect("a key in server.key");
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate")
}
