//! HTTP/1.1 copies: the client's requests framed as they stream past ([`crate::http`]), and for
//! each one chosen for a target, its copy: the head rewritten ([`super::copy`]), the body
//! following as it arrives, up to the target's cap.
//!
//! A copy whose original ends within the same [`Copies::observe`] call (most do: a head and a
//! small body arrive in one read) goes to its target complete, ready to be written together with
//! others; the others go at the end of the call, and their bodies follow through a channel.
//!
//! Under a rule that compares answers, a sampled request's copies carry a [`Pair`] each, and the
//! primary's answer to it is captured from the response frames ([`super::answers`]).

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{answers::PrimaryAnswers, copy, tap::Context, BODY_CHANNEL_SLOTS};
use crate::{
    compare::{Protocol, RequestLine},
    http::{
        response::{Expected, ResponseFrame, ResponseFramer},
        BodyKind, Frame, FramingLimits, RequestFramer, RequestHead, TunnelReason,
    },
    shadow::{self, BodyChunk, BodyFraming, ShadowRequest},
};

/// A copy made during the current [`Copies::observe`] call, not yet handed to its target.
struct Starting {
    target: usize,
    head: Bytes,
    framing: BodyFraming,
    is_head: bool,
    body: Vec<Bytes>,
    sent: u64,
    compare: Option<shadow::Compared>,
}

/// A copy handed to its target whose body is still streaming.
struct InFlight {
    target: usize,
    body: mpsc::Sender<BodyChunk>,
    sent: u64,
}

/// The HTTP/1.1 side of a tap.
pub(super) struct Copies {
    framer: RequestFramer,
    frames: Vec<Frame>,
    /// The primary's answers, framed in request order: where the connection is idle.
    answers: ResponseFramer,
    answer_frames: Vec<ResponseFrame>,
    /// The compared requests' answers (nothing unless a rule compares).
    compared: PrimaryAnswers,
    /// The place of the last request announced to `answers`, if it took it.
    last_place: Option<u64>,
    starting: Vec<Starting>,
    copies: Vec<InFlight>,
    /// The engine the copies in progress were made under (their targets' indices are its).
    engine: Option<std::sync::Arc<super::Engine>>,
}

impl Copies {
    pub fn new(limits: FramingLimits) -> Self {
        Self {
            framer: RequestFramer::new(limits),
            frames: Vec::new(),
            answers: ResponseFramer::new(limits),
            answer_frames: Vec::new(),
            compared: PrimaryAnswers::default(),
            last_place: None,
            starting: Vec::new(),
            copies: Vec::new(),
            engine: None,
        }
    }

    /// Describes `chunk`. Returns why the connection is no longer framed, if it stops here (not
    /// counted yet: the caller decides what an HTTP/2 preface means).
    pub fn observe(&mut self, context: &mut Context, chunk: &[u8]) -> Option<TunnelReason> {
        let mut frames = std::mem::take(&mut self.frames);
        self.framer.feed(chunk, &mut frames);
        let mut tunnel = None;
        for frame in frames.drain(..) {
            match frame {
                Frame::Head(head) => {
                    let waiting = self.answers.pending_requests();
                    self.answers.expect(Expected::of(&head));
                    // Taken unless the framer stopped, or will give up on a pipeline too deep.
                    self.last_place = (self.answers.pending_requests() > waiting)
                        .then(|| self.compared.announced());
                    self.start(context, &head);
                }
                Frame::Body(range) => self.body(chunk.get(range).unwrap_or_default()),
                Frame::End => {
                    if let (Some(place), false) = (self.last_place, self.compared.is_empty()) {
                        self.compared.request_ended(place);
                    }
                    self.end();
                }
                Frame::Tunnel(reason) => {
                    self.answers.requests_opaque();
                    self.abandon_copies();
                    tunnel = Some(reason);
                }
            }
        }
        self.frames = frames;
        // Originals still arriving: their copies go now, and their bodies follow as they come.
        self.submit_streaming();
        tunnel
    }

    /// Describes `chunk` from the primary.
    pub fn observe_answer(&mut self, chunk: &[u8]) {
        if self.answers.is_stopped() {
            return;
        }
        self.answers.feed(chunk, &mut self.answer_frames);
        if self.compared.is_empty() {
            self.compared.skip(&self.answer_frames);
        } else {
            self.compared.frames(chunk, &self.answer_frames);
        }
        self.answer_frames.clear();
    }

    /// The primary closed the connection: an answer delimited by the close ends, and any
    /// compared request still waiting has no answer. Only compared answers need it: the framer
    /// is otherwise only asked where the connection is idle, and a closed one never is.
    pub fn primary_closed(&mut self) {
        if self.compared.is_empty() || self.answers.is_stopped() {
            return;
        }
        self.answers.finish(&mut self.answer_frames);
        self.compared.finish(&self.answer_frames);
        self.answer_frames.clear();
    }

    /// Whether the connection is at an idle point: every request has its complete answer, the
    /// connection stays open after it, and no byte of another request or answer has arrived.
    pub fn is_idle(&self) -> bool {
        self.framer.is_between_requests() && self.answers.is_idle()
    }

    fn start(&mut self, context: &mut Context, head: &RequestHead) {
        self.abandon_copies();
        let Some(engine) = context.refresh_engine() else {
            self.engine = None;
            return;
        };
        // HTTP/1.1 requires a Host (RFC 9112 section 3.2): the primary refuses such a request
        // with 400, and its copy could not carry the shadow's Host.
        let no_host = head.version() == 1 && head.host().is_none_or(<[u8]>::is_empty);
        let declared = match head.body() {
            BodyKind::ContentLength(length) => Some(length),
            BodyKind::None | BodyKind::Chunked => None,
        };
        let Some((rule, chosen)) =
            engine.choose_under_rule(&context.rules, head, no_host, declared)
        else {
            self.engine = Some(engine);
            return;
        };
        let compared = engine.pairs(rule, &chosen, || {
            RequestLine::new(head.method(), head.target(), Protocol::Http1)
        });
        let mut pairs = Vec::new();
        for (i, index) in chosen.into_iter().enumerate() {
            let target = &engine.targets[index];
            let framing = match head.body() {
                BodyKind::None => BodyFraming::None,
                BodyKind::ContentLength(n) => BodyFraming::ContentLength(n),
                BodyKind::Chunked => BodyFraming::Chunked,
            };
            let Some(copy_head) = engine.budget.adopt(copy::build_head(head, &target.edits)) else {
                target.outcomes.queue_full.inc();
                continue;
            };
            self.starting.push(Starting {
                target: index,
                head: copy_head,
                framing,
                is_head: head.method() == "HEAD",
                body: Vec::new(),
                sent: 0,
                compare: compared.get(i).cloned().flatten().map(|pair| {
                    pairs.push(pair.clone());
                    shadow::Compared {
                        pair,
                        budget: engine.budget.clone(),
                    }
                }),
            });
        }
        if !pairs.is_empty() {
            self.compared
                .compare(self.last_place, pairs, engine.budget.clone());
        }
        self.engine = Some(engine);
    }

    fn body(&mut self, data: &[u8]) {
        if (self.copies.is_empty() && self.starting.is_empty()) || data.is_empty() {
            return;
        }
        let Some(engine) = &self.engine else {
            return;
        };
        let targets = &engine.targets;
        // One buffer, shared by every target's copy.
        let Some(data) = engine.budget.copy(data) else {
            for copy in self.starting.drain(..) {
                targets[copy.target].outcomes.body_backpressure.inc();
            }
            for copy in self.copies.drain(..) {
                targets[copy.target].outcomes.body_backpressure.inc();
            }
            return;
        };
        self.starting.retain_mut(|copy| {
            let target = &targets[copy.target];
            copy.sent += data.len() as u64;
            if copy.sent > target.max_body_bytes {
                target.outcomes.body_over_cap.inc();
                return false;
            }
            copy.body.push(data.clone());
            true
        });
        self.copies.retain_mut(|copy| {
            let target = &targets[copy.target];
            copy.sent += data.len() as u64;
            if copy.sent > target.max_body_bytes {
                // Dropping the sender without End aborts the copy on the wire.
                target.outcomes.body_over_cap.inc();
                return false;
            }
            // Keep one slot free so that End always fits.
            if copy.body.capacity() <= 1 {
                target.outcomes.body_backpressure.inc();
                return false;
            }
            if copy.body.try_send(BodyChunk::Data(data.clone())).is_err() {
                target.outcomes.abandoned.inc();
                return false;
            }
            true
        });
    }

    fn end(&mut self) {
        self.submit_complete();
        let Some(engine) = &self.engine else {
            return;
        };
        for copy in self.copies.drain(..) {
            let outcomes = &engine.targets[copy.target].outcomes;
            let outcome = match copy.body.try_send(BodyChunk::End) {
                Ok(()) => &outcomes.mirrored,
                Err(_) => &outcomes.abandoned,
            };
            outcome.inc();
        }
    }

    /// Hands the copies whose originals are complete to their targets, whole.
    fn submit_complete(&mut self) {
        let Some(engine) = &self.engine else {
            return;
        };
        for copy in self.starting.drain(..) {
            let target = &engine.targets[copy.target];
            let request = ShadowRequest {
                head: copy.head,
                body: copy.framing,
                body_ready: copy.body,
                body_rx: None,
                is_head: copy.is_head,
                compare: copy.compare,
            };
            match target.sender.try_submit(request) {
                Ok(()) => target.outcomes.mirrored.inc(),
                Err(shadow::Rejected::QueueFull) => target.outcomes.queue_full.inc(),
                // Only after shutdown: the connection is draining; the copy is not made.
                Err(shadow::Rejected::Closed) => target.outcomes.abandoned.inc(),
            };
        }
    }

    /// Hands the copies whose originals are still arriving to their targets, with what came of
    /// their bodies so far; the rest follows through a channel.
    fn submit_streaming(&mut self) {
        let Some(engine) = &self.engine else {
            return;
        };
        for copy in self.starting.drain(..) {
            let target = &engine.targets[copy.target];
            let (tx, rx) = mpsc::channel(BODY_CHANNEL_SLOTS);
            let request = ShadowRequest {
                head: copy.head,
                body: copy.framing,
                body_ready: copy.body,
                body_rx: Some(rx),
                is_head: copy.is_head,
                compare: copy.compare,
            };
            match target.sender.try_submit(request) {
                Ok(()) => self.copies.push(InFlight {
                    target: copy.target,
                    body: tx,
                    sent: copy.sent,
                }),
                Err(shadow::Rejected::QueueFull) => {
                    target.outcomes.queue_full.inc();
                }
                Err(shadow::Rejected::Closed) => {
                    target.outcomes.abandoned.inc();
                }
            }
        }
    }

    fn abandon_copies(&mut self) {
        let Some(engine) = &self.engine else {
            return;
        };
        for copy in self.starting.drain(..) {
            engine.targets[copy.target].outcomes.abandoned.inc();
        }
        for copy in self.copies.drain(..) {
            engine.targets[copy.target].outcomes.abandoned.inc();
        }
    }
}

impl Drop for Copies {
    fn drop(&mut self) {
        self.abandon_copies();
        // The connection ended (if the primary's close was not seen, its answers were cut off).
        self.primary_closed();
    }
}
