//! One intercepted connection: learn where the pod was going, connect there, relay.
//!
//! The original destination is the accepted socket's local address (the listener is
//! transparent). The daemon's own connection to it leaves from the node's network namespace and
//! never crosses a pod interface's ingress, so it is never intercepted itself.

use std::{fmt, io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use crate::{config, http::FramingLimits, metrics::Metrics, mirror, relay};

/// The pod's address, as seen on an intercepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Where the pod was connecting to (the primary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrigDstAddr(pub SocketAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for OrigDstAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("client: cannot read the original destination: {0}")]
    OrigDst(io::Error),
    #[error("primary {0}: connect timed out after {1:?}")]
    ConnectTimeout(OrigDstAddr, Duration),
    #[error("primary {0}: connect failed: {1}")]
    Connect(OrigDstAddr, io::Error),
    #[error("{0}")]
    Relay(#[from] relay::Error),
}

/// What every connection shares.
pub struct Context {
    pub relay: config::Relay,
    pub metrics: Arc<Metrics>,
    /// The mirror engine in force (none without mirror rules); reloads replace it, and taps
    /// follow it from one request to the next.
    pub mirror: Arc<arc_swap::ArcSwapOption<mirror::Engine>>,
    /// Cancelled when the drain deadline passes: remaining connections are reset.
    pub abort: CancellationToken,
    /// Cancelled at SIGTERM: connections close at their next idle point.
    pub drain: CancellationToken,
    /// How HTTP/1.1 is framed (`mirror.framing`), on every connection.
    pub framing: FramingLimits,
}

/// Serves one accepted connection to its end.
pub async fn serve(client: TcpStream, peer: SocketAddr, context: Arc<Context>) {
    let client_addr = ClientAddr(peer);
    let orig_dst = match client.local_addr() {
        Ok(addr) => OrigDstAddr(addr),
        Err(e) => {
            debug!(client = %client_addr, error = %Error::OrigDst(e), "dropped");
            return;
        }
    };
    let span = tracing::debug_span!("connection", client = %client_addr, orig_dst = %orig_dst);
    async move {
        context.metrics.intercepted_connections.inc();
        context.metrics.active_connections.inc();
        let result = proxy(client, orig_dst, &context).await;
        context.metrics.active_connections.dec();
        match result {
            Ok(relay::Ended::Closed(totals)) => debug!(
                client_to_primary = totals.client_to_primary,
                primary_to_client = totals.primary_to_client,
                "closed"
            ),
            Ok(relay::Ended::Idle) => debug!("closed at an idle point while draining"),
            Err(e) => debug!(error = %e, "ended with an error"),
        }
    }
    .instrument(span)
    .await
}

async fn proxy(
    mut client: TcpStream,
    orig_dst: OrigDstAddr,
    context: &Context,
) -> Result<relay::Ended, Error> {
    let _ = client.set_nodelay(true);
    let timeout = context.relay.connect_timeout;
    let connect = tokio::time::timeout(timeout, TcpStream::connect(orig_dst.0));
    let mut primary = match connect.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            context.metrics.primary_connect_errors.inc();
            // The pod would have been refused or reset; an RST is the closest we can give.
            relay::reset(&client);
            return Err(Error::Connect(orig_dst, e));
        }
        Err(_) => {
            context.metrics.primary_connect_errors.inc();
            relay::reset(&client);
            return Err(Error::ConnectTimeout(orig_dst, timeout));
        }
    };
    let _ = primary.set_nodelay(true);
    let mut tap = mirror::Tap::new(&context.mirror, orig_dst.0, context.framing);
    Ok(relay::relay(
        &mut client,
        &mut primary,
        context.relay.buffer_size,
        &context.metrics,
        &context.abort,
        &context.drain,
        Some(&mut tap),
    )
    .await?)
}
