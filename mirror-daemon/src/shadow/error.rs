//! What can go wrong with a shadow target, always naming the shadow side.
//!
//! [`Error`] is a target that cannot be set up (bad TLS material), found at start. [`Rejected`]
//! is the only answer the primary path ever gets. [`CopyError`] is one copy that failed on its
//! way to the shadow, with the [`ErrorKind`] it is counted under; it never leaves the sender.

use std::{fmt, io, path::PathBuf, sync::Arc, time::Duration};

/// A target that cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shadow {target}: address {address:?} is not host:port")]
    Address { target: String, address: String },
    #[error("shadow {target}: cannot read tls.ca_file {}: {source}", path.display())]
    CaFile {
        target: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("shadow {target}: tls.ca_file {} holds no usable CA certificate", path.display())]
    NoCaCertificate { target: String, path: PathBuf },
    #[error("shadow {target}: {name:?} is not a valid tls server name")]
    ServerName { target: String, name: String },
    #[error("shadow {target}: tls setup failed: {source}")]
    Tls {
        target: String,
        source: rustls::Error,
    },
    #[error("shadow {target}: must be started inside a tokio runtime")]
    NoRuntime { target: String },
}

/// Why [`super::Target::try_submit`] did not take a copy. The copy is dropped either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// `queue_size` copies are already waiting for this target.
    #[error("shadow queue is full")]
    QueueFull,
    /// The target is shutting down.
    #[error("shadow target is shut down")]
    Closed,
}

/// The `kind` label of `mirror_shadow_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The target's name did not resolve (or not in time).
    Dns,
    /// No TCP connection within `connect_timeout` (refused, unreachable, timed out).
    Connect,
    /// The copy did not finish within `request_timeout`.
    Timeout,
    /// The connection broke or closed before the response was complete.
    Reset,
    /// The TLS handshake failed (or did not finish within `connect_timeout`).
    Tls,
    /// The response was not valid HTTP (HTTP/1.x framing, or an HTTP/2 protocol error).
    Protocol,
    /// The original's body broke off, so the copy was never completed.
    Aborted,
    /// HTTP/2: no stream was free on the connection to the shadow (its MAX_CONCURRENT_STREAMS),
    /// or the shadow refused the stream: the copy was cancelled rather than left to wait.
    Refused,
}

impl ErrorKind {
    pub const ALL: [Self; 8] = [
        Self::Dns,
        Self::Connect,
        Self::Timeout,
        Self::Reset,
        Self::Tls,
        Self::Protocol,
        Self::Aborted,
        Self::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Tls => "tls",
            Self::Protocol => "protocol",
            Self::Aborted => "aborted",
            Self::Refused => "refused",
        }
    }
}

/// One copy that did not make it, e.g. `shadow staging (10.0.0.5:443): connect timed out after 1s`.
#[derive(Debug, thiserror::Error)]
#[error("shadow {target} ({peer}): {failure}")]
pub struct CopyError {
    pub target: Arc<str>,
    /// The address connected to, or the configured `host:port` before there was one.
    pub peer: String,
    pub failure: Failure,
}

impl CopyError {
    pub fn kind(&self) -> ErrorKind {
        self.failure.kind()
    }
}

/// What failed, without saying where (that is [`CopyError`]'s job).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("name lookup failed: {0}")]
    Resolve(io::Error),
    #[error("name lookup timed out after {0:?}")]
    ResolveTimeout(Duration),
    #[error("name resolved to no address")]
    NoAddress,
    #[error("name resolved only to loopback or link-local addresses, which need allow_local_addresses = true")]
    LocalAddress,
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("tls handshake failed: {0}")]
    Tls(io::Error),
    #[error("tls handshake timed out after {0:?}")]
    TlsTimeout(Duration),
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    #[error("connection lost while {phase}: {source}")]
    Io { phase: Phase, source: io::Error },
    #[error("connection closed by the shadow while {0}")]
    Closed(Phase),
    #[error("malformed response: {0}")]
    Protocol(ProtocolError),
    #[error("copy aborted: {0}")]
    Aborted(Abort),
    /// HTTP/2: the shadow's stream limit left no room for the copy now; it was not sent.
    #[error("no stream free on the http/2 connection (the shadow's MAX_CONCURRENT_STREAMS)")]
    NoStream,
    /// HTTP/2: the shadow refused or reset the copy's stream, or the connection failed.
    #[error("http/2: {0}")]
    Http2(h2::Error),
}

impl Failure {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Resolve(_) | Self::ResolveTimeout(_) | Self::NoAddress | Self::LocalAddress => {
                ErrorKind::Dns
            }
            Self::Connect(_) | Self::ConnectTimeout(_) => ErrorKind::Connect,
            Self::Tls(_) | Self::TlsTimeout(_) => ErrorKind::Tls,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Io { .. } | Self::Closed(_) => ErrorKind::Reset,
            Self::Protocol(_) => ErrorKind::Protocol,
            Self::Aborted(_) => ErrorKind::Aborted,
            Self::NoStream => ErrorKind::Refused,
            Self::Http2(e) if e.is_io() => ErrorKind::Reset,
            Self::Http2(e) if e.is_go_away() || e.is_reset() => match e.reason() {
                Some(h2::Reason::REFUSED_STREAM) => ErrorKind::Refused,
                Some(h2::Reason::NO_ERROR | h2::Reason::CANCEL) => ErrorKind::Reset,
                _ => ErrorKind::Protocol,
            },
            Self::Http2(_) => ErrorKind::Protocol,
        }
    }
}

/// Where in the exchange the connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Sending,
    ReadingHead,
    ReadingBody,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sending => "sending the copy",
            Self::ReadingHead => "reading the response head",
            Self::ReadingBody => "reading the response body",
        })
    }
}

/// Why a copy was never completed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Abort {
    #[error("the original's body broke off")]
    Original,
    #[error("the body stream ended without its end")]
    StreamClosed,
    #[error("a body was declared but no body stream was given")]
    NoBodyStream,
    #[error("the body is longer than its Content-Length of {0}")]
    TooLong(u64),
    #[error("the body ended {missing} bytes short of its Content-Length")]
    TooShort { missing: u64 },
}

/// How a response broke HTTP/1.x.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unparsable head: {0}")]
    Head(httparse::Error),
    #[error("status {0:03} is not 100 to 599")]
    Status(u16),
    #[error("head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    #[error("more than {0} interim (1xx) responses before the final one")]
    TooManyInterim(usize),
}
