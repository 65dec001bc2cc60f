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
use crate::http::{h2::CLIENT_PREFACE, FramingLimits, TunnelReason};

/// What both protocols' copiers need: the engine in force and the rules of this connection.
pub(super) struct Context {
    /// Where the engine in force is published; checked at each request.
    source: Arc<ArcSwapOption<Engine>>,
    orig_dst: SocketAddr,
    /// The engine of the last request, with the rules that may match this connection under it.
    engine: Option<Arc<Engine>>,
    pub rules: Vec<usize>,
}

impl Context {
    /// The engine a request starting now is mirrored under (following reloads), or `None` when no
    /// rule may match this connection now: the request is framed but not decided, nor counted.
    pub fn refresh_engine(&mut self) -> Option<Arc<Engine>> {
        let current = self.source.load();
        match (current.as_ref(), &self.engine) {
            (Some(engine), Some(mine)) if Arc::ptr_eq(engine, mine) => {}
            (Some(engine), _) => {
                self.rules = engine.rules_for(self.orig_dst);
                self.engine = Some(engine.clone());
            }
            (None, _) => {
                self.engine = None;
                self.rules.clear();
            }
        }
        self.engine.clone().filter(|_| !self.rules.is_empty())
    }

    /// Whether a rule that may match this connection now compares answers.
    pub fn compares(&mut self) -> bool {
        self.refresh_engine()
            .is_some_and(|engine| engine.compares_any(&self.rules))
    }

    /// Counts an HTTP/2 stream whose request could not be copied (if the connection is mirrored).
    pub fn count_skipped(&self, reason: &'static str) {
        if let Some(engine) = self.engine.as_ref().filter(|_| !self.rules.is_empty()) {
            engine
                .metrics
                .requests_skipped
                .get_or_create(&[("reason", reason)])
                .inc();
        }
    }

    /// Counts a connection that is relayed unmirrored from now on (if it is mirrored at all).
    pub fn count_tunnel(&self, reason: &'static str) {
        if let Some(engine) = self.engine.as_ref().filter(|_| !self.rules.is_empty()) {
            engine
                .metrics
                .tunnels
                .get_or_create(&[("reason", reason)])
                .inc();
        }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "the HTTP/1.1 framers are what nearly every connection holds, inside its task's one allocation"
)]
enum Observer {
    Http1(http1::Copies),
    Http2(Box<http2::Copies>),
    /// Unmirrored from now on.
    Tunnel,
}

/// What a connection was found to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge, followed by the decoder.
    Http2,
    /// Opaque: unmirrored, never idle.
    Tunnel,
}

/// The per-connection observer of both directions.
pub struct Tap {
    context: Context,
    protocol: Observer,
    limits: FramingLimits,
    /// Client bytes seen so far, counted while they may still be the HTTP/2 preface.
    seen: usize,
    /// The primary's bytes forwarded while the client's may still be the HTTP/2 preface: an
    /// HTTP/2 server may send its SETTINGS first, and the decoder must see them before the
    /// client's acknowledgement. At most [`EARLY_ANSWER_BYTES`]; `None` once the primary said
    /// more than that.
    early_answer: Option<Vec<u8>>,
}

/// The most bytes of the primary's kept before the protocol is known (an HTTP/2 server's first
/// SETTINGS frame is far smaller).
const EARLY_ANSWER_BYTES: usize = 16 * 1024;
/// The tunnel reason when the primary said more than that before the client's preface.
const EARLY_ANSWER_TOO_LARGE: &str = "primary_spoke_first";

impl Tap {
    /// A tap for a connection to `orig_dst`. It frames the connection whether or not a rule may
    /// match it now (a reload may add one, and a drain needs to know where the connection is
    /// idle), framing HTTP/1.1 within `limits`.
    pub fn new(
        source: &Arc<ArcSwapOption<Engine>>,
        orig_dst: SocketAddr,
        limits: FramingLimits,
    ) -> Self {
        let mut context = Context {
            source: source.clone(),
            orig_dst,
            engine: None,
            rules: Vec::new(),
        };
        let _ = context.refresh_engine();
        Self {
            protocol: Observer::Http1(http1::Copies::new(limits)),
            context,
            limits,
            seen: 0,
            early_answer: Some(Vec::new()),
        }
    }

    /// Describes `chunk` from the client, which the caller has already forwarded to the
    /// primary. Never blocks.
    pub fn observe(&mut self, chunk: &[u8]) {
        let before = self.seen;
        self.seen = self.seen.saturating_add(chunk.len());
        let tunnel = match &mut self.protocol {
            Observer::Http1(copies) => copies.observe(&mut self.context, chunk),
            Observer::Http2(copies) => {
                if copies.observe_client(&mut self.context, chunk) {
                    self.protocol = Observer::Tunnel;
                }
                None
            }
            Observer::Tunnel => None,
        };
        match tunnel {
            None => {}
            // The HTTP/1.1 framer knows the preface by its first line, before more than the
            // preface has been seen: what came before this chunk was the preface's start.
            Some(TunnelReason::Http2) if before <= CLIENT_PREFACE.len() => {
                let Some(early) = self.early_answer.take() else {
                    // What an HTTP/2 server says first is far smaller: the decoder would lack
                    // the start of the primary's side.
                    self.context.count_tunnel(EARLY_ANSWER_TOO_LARGE);
                    self.protocol = Observer::Tunnel;
                    return;
                };
                let compares = self.context.compares();
                let mut copies =
                    Box::new(http2::Copies::new(self.limits.max_header_bytes, compares));
                let tunnelled = copies.observe_server(&mut self.context, &early)
                    || copies.observe_client(&mut self.context, &CLIENT_PREFACE[..before])
                    || copies.observe_client(&mut self.context, chunk);
                self.protocol = if tunnelled {
                    Observer::Tunnel
                } else {
                    Observer::Http2(copies)
                };
            }
            Some(reason) => {
                self.context.count_tunnel(reason.as_str());
                self.protocol = Observer::Tunnel;
            }
        }
        if self.seen > CLIENT_PREFACE.len() {
            self.early_answer = None;
        }
    }

    /// Describes `chunk` from the primary, which the caller has already forwarded to the
    /// client. Never blocks.
    pub fn observe_answer(&mut self, chunk: &[u8]) {
        match &mut self.protocol {
            Observer::Http2(copies) => {
                if copies.observe_server(&mut self.context, chunk) {
                    self.protocol = Observer::Tunnel;
                }
            }
            Observer::Http1(copies) if self.seen <= CLIENT_PREFACE.len() => {
                copies.observe_answer(chunk);
                if let Some(early) = &mut self.early_answer {
                    if early.len() + chunk.len() <= EARLY_ANSWER_BYTES {
                        early.extend_from_slice(chunk);
                    } else {
                        self.early_answer = None;
                    }
                }
            }
            Observer::Http1(copies) => copies.observe_answer(chunk),
            Observer::Tunnel => {}
        }
    }

    /// The primary closed its side of the connection (after the last chunk given to
    /// [`observe_answer`](Self::observe_answer)).
    pub fn primary_closed(&mut self) {
        if let Observer::Http1(copies) = &mut self.protocol {
            copies.primary_closed();
        }
    }

    /// Whether the connection is at a point where closing it loses nothing: no request or answer
    /// under way (HTTP/1.1), no stream open in either direction and no frame half-read (HTTP/2).
    /// Never for a tunnel, whose bytes say nothing.
    pub fn is_idle(&self) -> bool {
        match &self.protocol {
            Observer::Http1(copies) => copies.is_idle(),
            Observer::Http2(copies) => copies.is_idle(),
            Observer::Tunnel => false,
        }
    }

    /// What the connection was found to be so far.
    pub fn protocol(&self) -> Protocol {
        match &self.protocol {
            Observer::Http1(_) => Protocol::Http1,
            Observer::Http2(_) => Protocol::Http2,
            Observer::Tunnel => Protocol::Tunnel,
        }
    }
}
