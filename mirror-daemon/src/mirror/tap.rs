//! A connection's tap: what the relay shows the mirror engine of the bytes it has forwarded.
//!
//! The relay calls [`Tap::observe`] with every chunk from the client right after forwarding it
//! to the primary, and [`Tap::observe_answer`] with every chunk from the primary right after
//! forwarding it to the client. The tap tells the protocol from the first bytes: the HTTP/2
//! client preface (prior knowledge, what gRPC uses) makes it an HTTP/2 connection, whose streams
//! [`super::http2`] copies; anything else is framed as HTTP/1.1 by [`super::http1`], which tunnels
//! whatever is not HTTP/1.1 (TLS, `Upgrade: h2c`, ...). Neither ever blocks or holds a byte back.

use std::{net::SocketAddr, sync::Arc};

use arc_swap::ArcSwapOption;

use super::{http1, http2, Engine};
use crate::http::{h2::CLIENT_PREFACE, TunnelReason};

/// What both protocols' copiers need: the engine in force and the rules of this connection.
pub(super) struct Context {
    /// Where the engine in force is published; checked at each request.
    source: Arc<ArcSwapOption<Engine>>,
    orig_dst: SocketAddr,
    pub engine: Arc<Engine>,
    pub rules: Vec<usize>,
}

impl Context {
    /// Follows a reload: the next request uses the engine in force now. Returns false when
    /// mirroring is off now.
    pub fn refresh_engine(&mut self) -> bool {
        let current = self.source.load();
        match current.as_ref() {
            Some(engine) if Arc::ptr_eq(engine, &self.engine) => true,
            Some(engine) => {
                self.engine = engine.clone();
                self.rules = engine.rules_for(self.orig_dst);
                true
            }
            None => false,
        }
    }

    /// Counts a connection that is relayed unmirrored from now on.
    pub fn count_tunnel(&self, reason: &'static str) {
        self.engine
            .metrics
            .tunnels
            .get_or_create(&[("reason", reason)])
            .inc();
    }
}

enum Protocol {
    Http1(http1::Copies),
    Http2(Box<http2::Copies>),
    /// Unmirrored from now on.
    Tunnel,
}

/// The per-connection observer of both directions.
pub struct Tap {
    context: Context,
    protocol: Protocol,
    /// Client bytes seen so far, counted while they may still be the HTTP/2 preface.
    seen: usize,
    /// The primary's bytes forwarded while the client's may still be the HTTP/2 preface: an
    /// HTTP/2 server may send its SETTINGS first, and the decoder must see them before the
    /// client's acknowledgement. At most [`EARLY_ANSWER_BYTES`].
    early_answer: Vec<u8>,
}

/// The most bytes of the primary's kept before the protocol is known (an HTTP/2 server's first
/// SETTINGS frame is far smaller).
const EARLY_ANSWER_BYTES: usize = 16 * 1024;
/// The tunnel reason when the primary says more than that before the client's first bytes.
const EARLY_ANSWER_TOO_LARGE: &str = "primary_spoke_first";

impl Tap {
    /// A tap for a connection to `orig_dst`, or `None` when no engine is in force or no rule can
    /// match the connection (it is then relayed without framing at all).
    pub fn new(source: &Arc<ArcSwapOption<Engine>>, orig_dst: SocketAddr) -> Option<Self> {
        let engine = source.load_full()?;
        let rules = engine.rules_for(orig_dst);
        if rules.is_empty() {
            return None;
        }
        Some(Self {
            protocol: Protocol::Http1(http1::Copies::new(engine.limits)),
            context: Context {
                source: source.clone(),
                orig_dst,
                engine,
                rules,
            },
            seen: 0,
            early_answer: Vec::new(),
        })
    }

    /// Describes `chunk` from the client, which the caller has already forwarded to the
    /// primary. Never blocks.
    pub fn observe(&mut self, chunk: &[u8]) {
        let before = self.seen;
        self.seen = self.seen.saturating_add(chunk.len());
        let tunnel = match &mut self.protocol {
            Protocol::Http1(copies) => copies.observe(&mut self.context, chunk),
            Protocol::Http2(copies) => {
                if copies.observe_client(&mut self.context, chunk) {
                    self.protocol = Protocol::Tunnel;
                }
                None
            }
            Protocol::Tunnel => None,
        };
        match tunnel {
            None => {}
            // The HTTP/1.1 framer knows the preface by its first line, before more than the
            // preface has been seen: what came before this chunk was the preface's start.
            Some(TunnelReason::Http2) if before <= CLIENT_PREFACE.len() => {
                let mut copies = Box::new(http2::Copies::new(&self.context.engine));
                let early = std::mem::take(&mut self.early_answer);
                let tunnelled = copies.observe_server(&mut self.context, &early)
                    || copies.observe_client(&mut self.context, &CLIENT_PREFACE[..before])
                    || copies.observe_client(&mut self.context, chunk);
                self.protocol = if tunnelled {
                    Protocol::Tunnel
                } else {
                    Protocol::Http2(copies)
                };
            }
            Some(reason) => {
                self.context.count_tunnel(reason.as_str());
                self.protocol = Protocol::Tunnel;
            }
        }
        if self.seen > CLIENT_PREFACE.len() {
            self.early_answer = Vec::new();
        }
    }

    /// Describes `chunk` from the primary, which the caller has already forwarded to the
    /// client. Never blocks.
    pub fn observe_answer(&mut self, chunk: &[u8]) {
        match &mut self.protocol {
            Protocol::Http2(copies) => {
                if copies.observe_server(&mut self.context, chunk) {
                    self.protocol = Protocol::Tunnel;
                }
            }
            Protocol::Http1(_) if self.seen <= CLIENT_PREFACE.len() => {
                if self.early_answer.len() + chunk.len() <= EARLY_ANSWER_BYTES {
                    self.early_answer.extend_from_slice(chunk);
                } else {
                    // Not what an HTTP/2 server sends first; and were the client's bytes still to
                    // turn into the preface, the decoder would lack these.
                    self.context.count_tunnel(EARLY_ANSWER_TOO_LARGE);
                    self.protocol = Protocol::Tunnel;
                }
            }
            Protocol::Http1(_) | Protocol::Tunnel => {}
        }
    }
}
