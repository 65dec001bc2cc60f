//! Keeping what the comparison needs of a compared copy's answer while it is read
//! ([`super::response`] for HTTP/1.1, [`super::http2`] for HTTP/2): the final status, the headers
//! (and HTTP/2 trailers) the comparison looks at, the body up to the compare cap (charged to the
//! copy budget), when its head and end arrived, and for gRPC the `grpc-status` it ended with.
//! Copies that are not compared carry no capture and cost nothing more than before.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::response::AnswerCapture;
use crate::{
    compare::{self, Answer, AnswerBody, BodyCapture, Pair},
    mirror::budget::Budget,
};

/// A copy's part in a comparison: the pair its answer completes, and the budget its captured
/// body is charged to.
#[derive(Debug, Clone)]
pub struct Compared {
    pub pair: Arc<Pair>,
    pub budget: Arc<Budget>,
}

/// What is kept of one answer while it is read.
#[derive(Debug)]
pub(super) struct Capture {
    compared: Compared,
    status: u16,
    headers: Vec<(String, Bytes)>,
    trailers: Vec<(String, Bytes)>,
    body: BodyCapture,
    head_at: Option<Instant>,
}

impl Capture {
    pub fn new(compared: &Compared) -> Self {
        Self {
            compared: compared.clone(),
            status: 0,
            headers: Vec::new(),
            trailers: Vec::new(),
            body: BodyCapture::default(),
            head_at: None,
        }
    }

    /// Hands the complete answer to the pair. `written` is when the copy was completely written
    /// (the shadow's "end of the request"); answers that came before it count from their head.
    pub fn answered(self, written: Option<Instant>) {
        let end = Instant::now();
        let head_at = self.head_at.unwrap_or(end);
        let start = written.map_or(head_at, |w| w.min(head_at));
        let budget = self.compared.budget.clone();
        let body = match self.body.finish(|joined| budget.adopt(joined)) {
            Some(body) => AnswerBody::Complete(body),
            None => AnswerBody::OverCap,
        };
        let answer = Answer {
            grpc_status: compare::grpc::status(&self.headers, &self.trailers),
            status: self.status,
            headers: self.headers,
            body,
            trailers: self.trailers,
            to_head: head_at.duration_since(start),
            to_end: end.duration_since(start),
        };
        self.compared.pair.shadow(compare::Shadow::Answered(answer));
    }
}

impl AnswerCapture for Capture {
    /// A head was read: a final one replaces whatever an interim one left.
    fn head(&mut self, status: u16) {
        self.status = status;
        self.head_at = Some(Instant::now());
        self.headers.clear();
    }

    /// A field of the head being parsed, kept if the comparison looks at it.
    fn field(&mut self, name: &str, value: &[u8]) {
        self.compared
            .pair
            .keep_field(&mut self.headers, name, value);
    }

    /// Payload bytes of the final answer, in order.
    fn data(&mut self, data: &[u8]) {
        self.body.keep(
            data,
            self.compared.pair.max_body_bytes(),
            &self.compared.budget,
        );
    }
}

impl Capture {
    /// A trailer field (HTTP/2), kept if the comparison looks at it.
    pub fn trailer(&mut self, name: &str, value: &[u8]) {
        self.compared
            .pair
            .keep_field(&mut self.trailers, name, value);
    }
}

impl Compared {
    /// The copy failed on its way: the sender's error kind.
    pub fn failed(&self, kind: &'static str) {
        self.pair.shadow(compare::Shadow::Failed(kind));
    }
}
