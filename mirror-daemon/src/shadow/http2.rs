//! HTTP/2 copies: each one a stream on its lane's own HTTP/2 connection to the target.
//!
//! A lane keeps one HTTP/2 connection per target (h2c with prior knowledge for plain targets,
//! TLS with ALPN `h2` for `[tls]` ones), made by the `h2` crate's client, with its own flow
//! control and HPACK state (and server push refused); many copies share it, within the shadow's
//! `MAX_CONCURRENT_STREAMS`. The connection holds one of the target's `max_concurrent` slots;
//! its driver runs as a task of the lane's worker, and so does each copy, started by
//! [`super::Target::try_submit_h2`] without passing through the lane's queue. A copy that
//! would have to wait for a stream (every one the shadow allows is busy) is not sent: counted
//! `refused`. Body data goes out as the shadow's flow-control windows allow, within
//! `request_timeout`; data still arriving from the original follows through a channel, as for
//! HTTP/1.1 copies. The shadow's answer (head, data, trailers) is read and dropped, its windows
//! released as it comes; its `:status` class is counted, and for gRPC its `grpc-status` (from
//! the trailers, or from the head of a Trailers-Only answer). A compared copy's answer is kept
//! as it is read ([`super::capture`]: status, the compared fields and trailers, data up to the
//! compare cap) and handed to its pair; a copy that fails (timeout, reset, refused, ...) hands
//! its error kind instead.

use std::{
    future::poll_fn,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use futures::FutureExt;
use h2::client::SendRequest;
use http::HeaderMap;
use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::{mpsc, Mutex},
    time::{timeout_at, Instant},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    capture::{Capture, Compared},
    dial::Protocol,
    error::{Abort, Failure, Phase},
    metrics::GrpcStatus,
    response::AnswerCapture,
    sender::Delivery,
};

/// One HTTP/2 request copy, produced by the mirror engine while the original streams.
#[derive(Debug)]
pub struct H2Copy {
    /// Method, URI (scheme, the rewritten authority, path) and fields, already edited.
    pub head: http::Request<()>,
    /// Body data received before the copy was submitted.
    pub body_ready: Vec<Bytes>,
    /// The original's trailers, when it is complete and had some.
    pub trailers: Option<HeaderMap>,
    /// The rest as it arrives; absent when the copy is complete (`body_ready` and `trailers`
    /// are all of it). A channel that closes without [`H2Chunk::End`] or
    /// [`H2Chunk::Trailers`], or an [`H2Chunk::Abort`], cancels the copy's stream.
    pub rest: Option<mpsc::Receiver<H2Chunk>>,
    /// Set when the copy's answer is compared with the primary's.
    pub compare: Option<Compared>,
}

impl H2Copy {
    /// Bytes of the copy held now.
    pub fn len(&self) -> usize {
        self.body_ready.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One item of an HTTP/2 copy's body stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2Chunk {
    Data(Bytes),
    /// The trailers, which end the copy.
    Trailers(HeaderMap),
    /// The copy is complete, without trailers.
    End,
    /// The original broke off (reset, connection gone): cancel the copy.
    Abort,
}

/// What the shadow answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct H2Answer {
    pub status: u16,
    pub grpc: Option<GrpcStatus>,
}

/// A lane's HTTP/2 connection to its target, made when the first copy needs it.
#[derive(Debug)]
pub(super) struct H2Sender {
    parts: Arc<Delivery>,
    tasks: TaskTracker,
    /// Ends the connection's driver at shutdown's deadline.
    aborting: CancellationToken,
    connection: Mutex<Option<Live>>,
}

/// The lane's connection, while it works.
#[derive(Debug, Clone)]
struct Live {
    send: SendRequest<Bytes>,
    address: SocketAddr,
    /// Copies whose streams are open on it now.
    streams: Arc<AtomicUsize>,
}

/// A copy's place in its target's queue (`queue_size`), held until its stream is open: copies
/// waiting for a connection to be made (a blackholed shadow takes `connect_timeout` to fail) stay
/// within the queue's bound, and the ones over it are refused `queue_full` at submission.
pub struct QueuePlace(Option<Gauge>);

impl QueuePlace {
    pub fn new(depth: Gauge) -> Self {
        Self(Some(depth))
    }

    /// Gives the place back (once).
    fn leave(&mut self) {
        if let Some(depth) = self.0.take() {
            depth.dec();
        }
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.leave();
    }
}

/// One open stream of a [`Live`] connection, counted until dropped.
struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl H2Sender {
    pub fn new(parts: Arc<Delivery>, tasks: TaskTracker, aborting: CancellationToken) -> Self {
        Self {
            parts,
            tasks,
            aborting,
            connection: Mutex::new(None),
        }
    }

    /// Sends one copy and counts how it went; `request_timeout` runs from `submitted`.
    pub async fn deliver(&self, mut copy: H2Copy, place: QueuePlace, submitted: Instant) {
        let mut peer = None;
        let compared = copy.compare.take();
        let mut capture = compared.as_ref().map(Capture::new);
        let mut written = None;
        let result = timeout_at(
            submitted + self.parts.request_timeout,
            self.exchange(copy, place, &mut peer, capture.as_mut(), &mut written),
        )
        .await
        .unwrap_or(Err(Failure::Timeout(self.parts.request_timeout)));
        match result {
            Ok(answer) => {
                self.parts
                    .answered(answer.status, answer.grpc, submitted.elapsed());
                if let Some(capture) = capture {
                    capture.answered(written);
                }
            }
            Err(failure) => {
                if let Some(compared) = &compared {
                    compared.failed(failure.kind().as_str());
                }
                self.parts.failed(failure, peer);
            }
        }
    }

    /// Sends the copy and reads the answer (into `capture`, when compared); `written` is set
    /// when the copy is completely sent.
    async fn exchange(
        &self,
        copy: H2Copy,
        mut place: QueuePlace,
        peer: &mut Option<SocketAddr>,
        capture: Option<&mut Capture>,
        written_at: &mut Option<Instant>,
    ) -> Result<H2Answer, Failure> {
        let Live {
            send,
            address,
            streams,
        } = self.connection().await?;
        *peer = Some(address);
        // A stream now, or not at all: a copy never waits for one (h2 would queue it until the
        // shadow's MAX_CONCURRENT_STREAMS lets it open).
        if streams.fetch_add(1, Ordering::Relaxed) >= send.current_max_send_streams() {
            streams.fetch_sub(1, Ordering::Relaxed);
            return Err(Failure::NoStream);
        }
        let _open = OpenStream(streams);
        let mut send = match send.ready().now_or_never() {
            Some(Ok(send)) => send,
            Some(Err(e)) => {
                self.forget(&e).await;
                return Err(Failure::Http2(e));
            }
            None => return Err(Failure::NoStream),
        };
        let H2Copy {
            head,
            body_ready,
            trailers,
            rest,
            compare: _,
        } = copy;
        let ends_with_head =
            rest.is_none() && body_ready.iter().all(Bytes::is_empty) && trailers.is_none();
        let (response, mut stream) = match send.send_request(head, ends_with_head) {
            Ok(sent) => sent,
            Err(e) => {
                self.forget(&e).await;
                return Err(Failure::Http2(e));
            }
        };
        place.leave();
        let write = async {
            if !ends_with_head {
                write_body(&mut stream, body_ready, trailers, rest).await?;
            }
            self.parts.metrics.requests.inc();
            Ok::<_, Failure>(Instant::now())
        };
        let read = read_answer(response, capture);
        tokio::pin!(write, read);
        let mut written = ends_with_head;
        if written {
            self.parts.metrics.requests.inc();
            *written_at = Some(Instant::now());
        }
        loop {
            tokio::select! {
                biased;
                result = &mut write, if !written => {
                    // A failure ends only this stream: the connection carries the others on.
                    *written_at = Some(result?);
                    written = true;
                }
                answer = &mut read => return answer,
            }
        }
    }

    /// The lane's connection, connecting first if there is none or it has failed.
    async fn connection(&self) -> Result<Live, Failure> {
        let mut connection = self.connection.lock().await;
        if let Some(live) = connection.as_ref() {
            return Ok(live.clone());
        }
        let slot = match self.parts.pool.try_slot() {
            Some(slot) => slot,
            None => self.parts.pool.freed_slot().await,
        };
        let (stream, address) = self
            .parts
            .dialer
            .dial_for(Protocol::Http2)
            .await
            .map_err(|(failure, _)| failure)?;
        let (send, driver) = h2::client::Builder::new()
            // No server push: nothing would read a pushed answer, whose data would sit in the
            // connection's window until its copy ended.
            .enable_push(false)
            // The shadow's answers are drained as they come: generous windows cost nothing.
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| Failure::Io {
                phase: Phase::Sending,
                source: std::io::Error::other(e),
            })?;
        let held = self.parts.pool.held(slot);
        let name = self.parts.name.clone();
        let aborting = self.aborting.clone();
        // Runs until every handle to the connection is gone (the lane's and its copies'), or the
        // shutdown's deadline.
        self.tasks.spawn(async move {
            tokio::select! {
                result = driver => if let Err(e) = result {
                    tracing::debug!(target_name = %name, error = %e, "shadow http/2 connection ended");
                },
                () = aborting.cancelled() => {}
            }
            drop(held);
        });
        let live = Live {
            send,
            address,
            streams: Arc::new(AtomicUsize::new(0)),
        };
        *connection = Some(live.clone());
        Ok(live)
    }

    /// Drops a connection that failed, so the next copy makes a new one.
    async fn forget(&self, error: &h2::Error) {
        if error.is_io() || error.is_go_away() || error.is_library() {
            *self.connection.lock().await = None;
        }
    }

    /// Closes the connection: copies in flight end with it.
    pub async fn close(&self) {
        *self.connection.lock().await = None;
    }
}

/// Sends a copy's body and trailers as the shadow's windows allow.
async fn write_body(
    stream: &mut h2::SendStream<Bytes>,
    ready: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<mpsc::Receiver<H2Chunk>>,
) -> Result<(), Failure> {
    let Some(mut rest) = rest else {
        let last = ready.iter().rposition(|b| !b.is_empty());
        for (i, data) in ready.into_iter().enumerate() {
            let end = trailers.is_none() && Some(i) == last;
            send_data(stream, data, end).await?;
        }
        if let Some(trailers) = trailers {
            stream.send_trailers(trailers).map_err(Failure::Http2)?;
        } else if last.is_none() {
            send_data(stream, Bytes::new(), true).await?;
        }
        return Ok(());
    };
    for data in ready {
        send_data(stream, data, false).await?;
    }
    loop {
        match rest.recv().await {
            Some(H2Chunk::Data(data)) => send_data(stream, data, false).await?,
            Some(H2Chunk::Trailers(trailers)) => {
                return stream.send_trailers(trailers).map_err(Failure::Http2);
            }
            Some(H2Chunk::End) => return send_data(stream, Bytes::new(), true).await,
            Some(H2Chunk::Abort) => {
                stream.send_reset(h2::Reason::CANCEL);
                return Err(Failure::Aborted(Abort::Original));
            }
            None => {
                stream.send_reset(h2::Reason::CANCEL);
                return Err(Failure::Aborted(Abort::StreamClosed));
            }
        }
    }
}

/// Sends `data` as the stream's window allows (`end`: it ends the stream).
async fn send_data(
    stream: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), Failure> {
    if data.is_empty() {
        return if end {
            stream.send_data(data, true).map_err(Failure::Http2)
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(granted)) => granted,
            Some(Err(e)) => return Err(Failure::Http2(e)),
            None => return Err(Failure::Closed(Phase::Sending)),
        };
        if granted == 0 {
            continue;
        }
        let part = data.split_to(granted.min(data.len()));
        stream
            .send_data(part, end && data.is_empty())
            .map_err(Failure::Http2)?;
    }
    Ok(())
}

/// Reads the answer to its end, releasing flow-control capacity as data comes, and keeps what
/// the comparison needs in `capture`, if compared.
async fn read_answer(
    response: h2::client::ResponseFuture,
    mut capture: Option<&mut Capture>,
) -> Result<H2Answer, Failure> {
    let response = response.await.map_err(Failure::Http2)?;
    let status = response.status().as_u16();
    // Trailers-Only: a gRPC answer with no message carries its status in the head.
    let mut grpc = GrpcStatus::from_headers(response.headers());
    if let Some(capture) = capture.as_deref_mut() {
        capture.head(status);
        for (name, value) in response.headers() {
            capture.field(name.as_str(), value.as_bytes());
        }
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.map_err(Failure::Http2)?;
        let _ = body.flow_control().release_capacity(data.len());
        if let Some(capture) = capture.as_deref_mut() {
            capture.data(&data);
        }
    }
    if let Some(trailers) = body.trailers().await.map_err(Failure::Http2)? {
        grpc = GrpcStatus::from_headers(&trailers).or(grpc);
        if let Some(capture) = capture {
            for (name, value) in &trailers {
                capture.trailer(name.as_str(), value.as_bytes());
            }
        }
    }
    Ok(H2Answer { status, grpc })
}
