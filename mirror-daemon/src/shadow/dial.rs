//! New connections to a shadow target: resolve, connect, and maybe TLS, within `connect_timeout`.
//!
//! A DNS name is resolved again for every new connection, so a shadow ingress that moves is
//! followed without a restart. The resolved addresses are tried in order, each with an equal
//! share of what is left of the timeout, so one blackholed address cannot use it all up.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{timeout_at, Instant},
};
use tokio_rustls::client::TlsStream;

use super::{error::Failure, tls::TlsClient};

/// A connection to the shadow, plain or TLS.
#[derive(Debug)]
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The protocol the copies on a connection speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// Opens connections to one target.
#[derive(Debug)]
pub(super) struct Dialer {
    host: String,
    port: u16,
    tls: Option<TlsClient>,
    connect_timeout: Duration,
    allow_local: bool,
}

impl Dialer {
    pub fn new(
        host: &str,
        port: u16,
        tls: Option<TlsClient>,
        connect_timeout: Duration,
        allow_local: bool,
    ) -> Self {
        Self {
            host: host.to_string(),
            port,
            tls,
            connect_timeout,
            allow_local,
        }
    }

    /// A new connection for HTTP/1.1 copies and the address it goes to; on failure, the address
    /// tried last, if any.
    pub async fn dial(&self) -> Result<(Stream, SocketAddr), (Failure, Option<SocketAddr>)> {
        self.dial_for(Protocol::Http1).await
    }

    /// A new connection for copies of `protocol` (TLS offers it by ALPN; plain HTTP/2 is h2c
    /// with prior knowledge).
    pub async fn dial_for(
        &self,
        protocol: Protocol,
    ) -> Result<(Stream, SocketAddr), (Failure, Option<SocketAddr>)> {
        let deadline = Instant::now() + self.connect_timeout;
        let addresses: Vec<SocketAddr> = timeout_at(
            deadline,
            tokio::net::lookup_host((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| (Failure::ResolveTimeout(self.connect_timeout), None))?
        .map_err(|e| (Failure::Resolve(e), None))?
        .collect();
        // A name may resolve to loopback or link-local addresses at any time (DNS is re-read for
        // each connection), so the config check alone cannot keep copies away from them.
        let resolved = addresses.len();
        let addresses: Vec<SocketAddr> = addresses
            .into_iter()
            .filter(|a| self.allow_local || !crate::config::is_local_address(a.ip()))
            .collect();
        if addresses.is_empty() && resolved > 0 {
            return Err((Failure::LocalAddress, None));
        }
        let (tcp, peer) = self.connect_first(&addresses, deadline).await?;
        // Copies are written as they arrive, often in small pieces; don't let Nagle hold them.
        // Failing to set it only costs latency.
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok((Stream::Plain(tcp), peer));
        };
        let connector = match protocol {
            Protocol::Http1 => &tls.connector,
            Protocol::Http2 => &tls.h2_connector,
        };
        match timeout_at(deadline, connector.connect(tls.server_name.clone(), tcp)).await {
            Ok(Ok(stream)) => Ok((Stream::Tls(Box::new(stream)), peer)),
            Ok(Err(e)) => Err((Failure::Tls(e), Some(peer))),
            Err(_) => Err((Failure::TlsTimeout(self.connect_timeout), Some(peer))),
        }
    }

    async fn connect_first(
        &self,
        addresses: &[SocketAddr],
        deadline: Instant,
    ) -> Result<(TcpStream, SocketAddr), (Failure, Option<SocketAddr>)> {
        let mut last = (Failure::NoAddress, None);
        for (i, &address) in addresses.iter().enumerate() {
            let left = addresses.len() - i;
            let share = deadline.saturating_duration_since(Instant::now()) / left as u32;
            match tokio::time::timeout(share, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => return Ok((tcp, address)),
                Ok(Err(e)) => last = (Failure::Connect(e), Some(address)),
                Err(_) => last = (Failure::ConnectTimeout(self.connect_timeout), Some(address)),
            }
        }
        Err(last)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod local_address_tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let refused = Dialer::new("localhost", port, None, Duration::from_secs(1), false);
        match refused.dial().await {
            Err((Failure::LocalAddress, None)) => {}
            other => panic!("expected LocalAddress, got {:?}", other.map(|(_, a)| a)),
        }
        let allowed = Dialer::new("localhost", port, None, Duration::from_secs(1), true);
        let (_, peer) = allowed
            .dial()
            .await
            .map_err(|(f, _)| f)
            .expect("allowed dial");
        assert!(peer.ip().is_loopback());
    }
}
