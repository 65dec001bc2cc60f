//! A fake HTTP/2 shadow on 127.0.0.1, made with the `h2` crate's server: records each stream's
//! request (head, body, trailers), answers with a scripted status and gRPC status, and counts
//! connections. Plain h2c with prior knowledge, or TLS with ALPN `h2`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use tokio::{net::TcpListener, task::JoinSet};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct H2Seen {
    pub method: String,
    pub authority: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// The stream ended normally (not reset).
    pub complete: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub accepted: usize,
    pub requests: Vec<H2Seen>,
    /// Server pushes tried ([`FakeH2::try_push`]) that the client's SETTINGS allowed, and
    /// refused.
    pub pushes_sent: usize,
    pub pushes_refused: usize,
}

/// How the fake answers.
#[derive(Debug, Clone)]
pub struct FakeH2 {
    status: u16,
    /// `grpc-status` in the trailers (or, with `trailers_only`, in the head).
    grpc_status: Option<u8>,
    trailers_only: bool,
    delay: Duration,
    max_streams: Option<u32>,
    tls: bool,
    try_push: bool,
}

pub struct RunningH2 {
    pub address: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _tasks: JoinSet<()>,
}

impl RunningH2 {
    pub fn seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl FakeH2 {
    pub fn new() -> Self {
        Self {
            status: 200,
            grpc_status: None,
            trailers_only: false,
            delay: Duration::ZERO,
            max_streams: None,
            tls: false,
            try_push: false,
        }
    }

    /// Answers like a gRPC server: `grpc-status` in the trailers.
    pub fn grpc(mut self, status: u8) -> Self {
        self.grpc_status = Some(status);
        self
    }

    /// A gRPC error without a message: `grpc-status` in the head, which ends the stream.
    pub fn trailers_only(mut self, status: u8) -> Self {
        self.grpc_status = Some(status);
        self.trailers_only = true;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub fn max_streams(mut self, streams: u32) -> Self {
        self.max_streams = Some(streams);
        self
    }

    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Before answering, tries to push a 64 KiB answer for `/pushed` (PUSH_PROMISE).
    pub fn try_push(mut self) -> Self {
        self.try_push = true;
        self
    }

    pub async fn start(self) -> RunningH2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = JoinSet::new();
        let fake = Arc::new(self);
        let acceptor = fake.tls.then(|| {
            let mut config = super::fake::test_tls_config();
            config.alpn_protocols = vec![b"h2".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let seen_by_accept = seen.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                update(&seen_by_accept, |s| s.accepted += 1);
                let (fake, seen, acceptor) =
                    (fake.clone(), seen_by_accept.clone(), acceptor.clone());
                connections.spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                fake.serve(tls, seen).await;
                            }
                        }
                        None => fake.serve(tcp, seen).await,
                    }
                });
            }
        });
        RunningH2 {
            address,
            seen,
            _tasks: tasks,
        }
    }

    async fn serve<S>(self: Arc<Self>, io: S, seen: Arc<Mutex<Seen>>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = h2::server::Builder::new();
        if let Some(streams) = self.max_streams {
            builder.max_concurrent_streams(streams);
        }
        let Ok(mut connection) = builder.handshake::<_, Bytes>(io).await else {
            return;
        };
        let mut streams = JoinSet::new();
        while let Some(Ok((request, respond))) = connection.accept().await {
            let (fake, seen) = (self.clone(), seen.clone());
            streams.spawn(async move { fake.answer(request, respond, &seen).await });
        }
    }

    async fn answer(
        &self,
        request: Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
        seen: &Mutex<Seen>,
    ) {
        let (parts, mut body) = request.into_parts();
        let mut data = Vec::new();
        let mut complete = true;
        while let Some(chunk) = body.data().await {
            match chunk {
                Ok(chunk) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    data.extend_from_slice(&chunk);
                }
                Err(_) => {
                    complete = false;
                    break;
                }
            }
        }
        let trailers = if complete {
            body.trailers().await.unwrap_or_else(|_| {
                complete = false;
                None
            })
        } else {
            None
        };
        update(seen, |s| {
            s.requests.push(H2Seen {
                method: parts.method.to_string(),
                authority: parts
                    .uri
                    .authority()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                path: parts.uri.path().to_owned(),
                headers: parts.headers.clone(),
                body: data,
                trailers,
                complete,
            })
        });
        if !complete {
            return;
        }
        if self.try_push {
            self.push(&parts, &mut respond, seen);
        }
        tokio::time::sleep(self.delay).await;
        let mut head = Response::builder().status(self.status);
        if self.grpc_status.is_some() {
            head = head.header("content-type", "application/grpc");
        }
        if self.trailers_only {
            head = head.header("grpc-status", self.grpc_status.unwrap_or(0).to_string());
            let _ = respond.send_response(head.body(()).expect("head"), true);
            return;
        }
        let Ok(mut stream) = respond.send_response(head.body(()).expect("head"), false) else {
            return;
        };
        let _ = stream.send_data(Bytes::from_static(b"answer"), self.grpc_status.is_none());
        if let Some(status) = self.grpc_status {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", status.to_string().parse().expect("value"));
            let _ = stream.send_trailers(trailers);
        }
    }

    /// Promises `/pushed` on the request's stream and, if the client allowed it, sends it.
    fn push(
        &self,
        parts: &http::request::Parts,
        respond: &mut h2::server::SendResponse<Bytes>,
        seen: &Mutex<Seen>,
    ) {
        let authority = parts
            .uri
            .authority()
            .map_or("localhost", http::uri::Authority::as_str);
        let promised = Request::get(format!("http://{authority}/pushed"))
            .body(())
            .expect("a pushed request");
        match respond.push_request(promised) {
            Ok(mut pushed) => {
                update(seen, |s| s.pushes_sent += 1);
                let head = Response::builder().status(200).body(()).expect("head");
                if let Ok(mut stream) = pushed.send_response(head, false) {
                    let _ = stream.send_data(Bytes::from(vec![b'p'; 64 * 1024]), true);
                }
            }
            Err(_) => update(seen, |s| s.pushes_refused += 1),
        }
    }
}

fn update(seen: &Mutex<Seen>, change: impl FnOnce(&mut Seen)) {
    change(&mut seen.lock().unwrap_or_else(PoisonError::into_inner));
}
