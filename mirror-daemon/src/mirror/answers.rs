//! The primary's side of comparisons on an HTTP/1.1 connection: the answers to compared
//! requests, captured from the frames the response framer reports on bytes already forwarded to
//! the client (the relay never waits for this), and handed to each request's pairs.
//!
//! Answers come in request order, so a compared request is known by its place among the requests
//! announced to the framer. For each, the capture keeps the final status, the headers the
//! comparison reads, the body up to the compare cap (charged to the copy budget) and the times
//! from the end of the request to the answer's head and end. When the framer gives up, every
//! pending comparison on the connection ends `not_compared` (`stopped`), and so do those of
//! requests that come after; when the connection ends, an answer under way is cut off and those
//! not begun have none. A connection with no compared request holds nothing here and does no
//! work for it. What is kept of one answer, [`Awaited`], is shared with HTTP/2's streams
//! ([`super::h2answers`]).

use std::{collections::VecDeque, sync::Arc, time::Instant};

use bytes::Bytes;

use super::budget::Budget;
use crate::{
    compare::{self, Answer, AnswerBody, BodyCapture, Pair, Primary},
    http::response::{ResponseFrame, ResponseGiveUp},
};

/// The compared requests of one connection whose answers are awaited or under way.
#[derive(Debug, Default)]
pub(super) struct PrimaryAnswers {
    /// Requests announced to the response framer so far: the next one's place.
    announced: u64,
    /// Answers seen (heads) so far: the next head's place.
    answered: u64,
    captures: VecDeque<Capture>,
    /// The framer gave up: nothing more is compared on this connection.
    stopped: bool,
}

#[derive(Debug)]
struct Capture {
    /// The request's place among those announced.
    request: u64,
    awaited: Awaited,
}

/// One compared request's answer, awaited or under way, in either protocol: what is kept of it
/// (the final status, the compared fields and trailers, the body up to the cap, charged to the
/// budget) and when its request ended and its head came.
#[derive(Debug)]
pub(super) struct Awaited {
    pairs: Vec<Arc<Pair>>,
    budget: Arc<Budget>,
    request_end: Option<Instant>,
    answer: Option<Started>,
}

#[derive(Debug)]
struct Started {
    status: u16,
    headers: Vec<(String, Bytes)>,
    trailers: Vec<(String, Bytes)>,
    body: BodyCapture,
    head_at: Instant,
}

impl PrimaryAnswers {
    /// A request was announced to the response framer; returns its place.
    pub fn announced(&mut self) -> u64 {
        self.announced += 1;
        self.announced - 1
    }

    /// Whether no compared request is awaiting its answer (then frames need not be looked at,
    /// but [`skip`](Self::skip) must count the answers).
    pub fn is_empty(&self) -> bool {
        self.captures.is_empty()
    }

    /// Compares the answer to the request at `place` (`None`: the framer did not take the
    /// request, so its answer will not be framed) with the shadows' in `pairs`.
    pub fn compare(&mut self, place: Option<u64>, pairs: Vec<Arc<Pair>>, budget: Arc<Budget>) {
        let Some(request) = place.filter(|_| !self.stopped) else {
            report(&pairs, Primary::Stopped);
            return;
        };
        self.captures.push_back(Capture {
            request,
            awaited: Awaited::new(pairs, budget),
        });
    }

    /// The request at `place` was sent completely: its answer's times count from now.
    pub fn request_ended(&mut self, place: u64) {
        if let Some(capture) = self.captures.back_mut() {
            if capture.request == place {
                capture.awaited.request_ended();
            }
        }
    }

    /// Counts the answer heads among `frames` without capturing anything: no compared request
    /// is pending.
    pub fn skip(&mut self, frames: &[ResponseFrame]) {
        for frame in frames {
            match frame {
                ResponseFrame::Head(_) => self.answered += 1,
                ResponseFrame::GiveUp(_) => self.stopped = true,
                _ => {}
            }
        }
    }

    /// Captures what `frames` (about `chunk`) say of the compared answers.
    pub fn frames(&mut self, chunk: &[u8], frames: &[ResponseFrame]) {
        for frame in frames {
            match frame {
                ResponseFrame::Interim(_) | ResponseFrame::Chunking(_) => {}
                ResponseFrame::Head(head) => {
                    let place = self.answered;
                    self.answered += 1;
                    // Answers to earlier requests whose head never came (cannot happen while the
                    // framer frames) are left behind as unanswered.
                    while self.captures.front().is_some_and(|c| c.request < place) {
                        if let Some(capture) = self.captures.pop_front() {
                            capture.awaited.unanswered(Primary::NoAnswer);
                        }
                    }
                    if let Some(capture) = self.captures.front_mut() {
                        if capture.request == place {
                            capture.awaited.head(head.status(), head.headers());
                        }
                    }
                }
                ResponseFrame::Body(range) => {
                    if let Some(capture) = self.captures.front_mut() {
                        capture
                            .awaited
                            .body(chunk.get(range.clone()).unwrap_or_default());
                    }
                }
                ResponseFrame::End { .. } => {
                    if self.captures.front().is_some_and(|c| c.awaited.has_head()) {
                        if let Some(capture) = self.captures.pop_front() {
                            capture.awaited.ended(false);
                        }
                    }
                }
                ResponseFrame::GiveUp(reason) => self.give_up(*reason),
            }
        }
    }

    /// The framer gave up: an answer cut off by the end of the connection is compared as cut
    /// off, and answers that never came have none; for any other reason, nothing pending is
    /// compared.
    fn give_up(&mut self, reason: ResponseGiveUp) {
        self.stopped = true;
        for capture in self.captures.drain(..) {
            match reason {
                ResponseGiveUp::AnswerCutOff => capture.awaited.gone(),
                ResponseGiveUp::RequestsUnanswered => capture.awaited.unanswered(Primary::NoAnswer),
                _ => capture.awaited.unanswered(Primary::Stopped),
            }
        }
    }

    /// The connection ended with `frames` from the framer's finish: a close-delimited answer
    /// ends; whatever is still pending has no answer.
    pub fn finish(&mut self, frames: &[ResponseFrame]) {
        self.frames(&[], frames);
        for capture in self.captures.drain(..) {
            capture.awaited.gone();
        }
    }
}

impl Awaited {
    pub fn new(pairs: Vec<Arc<Pair>>, budget: Arc<Budget>) -> Self {
        Self {
            pairs,
            budget,
            request_end: None,
            answer: None,
        }
    }

    /// The request was sent completely (the first time counts): the answer's times count from
    /// now.
    pub fn request_ended(&mut self) {
        if self.request_end.is_none() {
            self.request_end = Some(Instant::now());
        }
    }

    /// The answer's final head came now, with `fields`.
    pub fn head<'a>(&mut self, status: u16, fields: impl Iterator<Item = (&'a str, &'a [u8])>) {
        let pair = &self.pairs[0];
        let mut headers = Vec::new();
        for (name, value) in fields {
            pair.keep_field(&mut headers, name, value);
        }
        self.answer = Some(Started {
            status,
            headers,
            trailers: Vec::new(),
            body: BodyCapture::default(),
            head_at: Instant::now(),
        });
    }

    /// Whether the answer's head came.
    pub fn has_head(&self) -> bool {
        self.answer.is_some()
    }

    /// The answer's next body bytes.
    pub fn body(&mut self, data: &[u8]) {
        if let Some(answer) = &mut self.answer {
            answer
                .body
                .keep(data, self.pairs[0].max_body_bytes(), &self.budget);
        }
    }

    /// A trailer field of the answer (HTTP/2).
    pub fn trailer(&mut self, name: &str, value: &[u8]) {
        if let Some(answer) = &mut self.answer {
            self.pairs[0].keep_field(&mut answer.trailers, name, value);
        }
    }

    /// The answer will not come to its end (the connection ended, the stream was reset): cut
    /// off if its head came, else none.
    pub fn gone(self) {
        self.ended(true);
    }

    /// There is no answer to compare, for `why` ([`Primary::NoAnswer`], [`Primary::Stopped`]).
    pub fn unanswered(self, why: Primary) {
        report(&self.pairs, why);
    }

    /// Hands the answer (complete, or `cut_off`) to the pairs; one whose head never came has
    /// none.
    pub fn ended(self, cut_off: bool) {
        let Some(answer) = self.answer else {
            return report(&self.pairs, Primary::NoAnswer);
        };
        let end = Instant::now();
        // An answer that came before the request ended (an early 413) counts from its head.
        let start = self
            .request_end
            .map_or(answer.head_at, |at| at.min(answer.head_at));
        let budget = self.budget;
        let body = if cut_off {
            AnswerBody::CutOff
        } else {
            match answer.body.finish(|joined| budget.adopt(joined)) {
                Some(body) => AnswerBody::Complete(body),
                None => AnswerBody::OverCap,
            }
        };
        let answer = Answer {
            grpc_status: compare::grpc::status(&answer.headers, &answer.trailers),
            status: answer.status,
            headers: answer.headers,
            body,
            trailers: answer.trailers,
            to_head: answer.head_at.duration_since(start),
            to_end: end.duration_since(start),
        };
        report(&self.pairs, Primary::Answered(answer));
    }
}

fn report(pairs: &[Arc<Pair>], primary: Primary) {
    if let Some((last, others)) = pairs.split_last() {
        for pair in others {
            pair.primary(primary.clone());
        }
        last.primary(primary);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::{
        compare::{Protocol, Reports, RequestLine, Shadow},
        config,
        http::{
            response::{Expected, ResponseFramer},
            FramingLimits,
        },
    };

    /// Rule `orders` comparing target `staging`, bodies up to 64 bytes.
    pub(in crate::mirror) fn comparison() -> (Arc<Reports>, Arc<crate::compare::Comparison>) {
        let config = config::Config::from_toml(
            r#"
            [[mirror.targets]]
            name = "staging"
            address = "10.0.0.1:80"
            [[mirror.rules]]
            name = "orders"
            targets = ["staging"]
            [mirror.rules.compare]
            percent = 100
            max_body_bytes = 64
            "#,
            "test.toml",
        )
        .expect("valid config");
        let mut registry = prometheus_client::registry::Registry::default();
        let reports = Reports::new(crate::compare::Metrics::register(&mut registry));
        let rules = reports.configure(&config.mirror);
        let comparison = rules[0]
            .as_ref()
            .and_then(|rule| rule.target(0))
            .expect("orders compares staging")
            .clone();
        (reports, comparison)
    }

    pub(in crate::mirror) fn shadow_answer(status: u16, body: &str) -> Shadow {
        Shadow::Answered(Answer {
            status,
            headers: Vec::new(),
            body: AnswerBody::Complete(Bytes::copy_from_slice(body.as_bytes())),
            trailers: Vec::new(),
            grpc_status: None,
            to_head: std::time::Duration::ZERO,
            to_end: std::time::Duration::ZERO,
        })
    }

    /// Announces `requests` (method, path) to a framer and `answers`, all compared, and feeds
    /// `wire` in pieces of `piece` bytes; the shadow answers each with `shadow[i]`.
    fn run(
        requests: &[(&str, &str)],
        shadow: &[Shadow],
        wire: &[u8],
        piece: usize,
    ) -> Arc<Reports> {
        let (reports, comparison) = comparison();
        let budget = Budget::new(1 << 20);
        let mut framer = ResponseFramer::new(FramingLimits::default());
        let mut answers = PrimaryAnswers::default();
        for (i, (method, path)) in requests.iter().enumerate() {
            framer.expect(Expected {
                head: *method == "HEAD",
                ..Expected::plain()
            });
            let place = answers.announced();
            let pair = Pair::new(
                comparison.clone(),
                RequestLine::new(method, path, Protocol::Http1),
            );
            pair.shadow(shadow[i].clone());
            answers.compare(Some(place), vec![pair], budget.clone());
            answers.request_ended(place);
        }
        let mut frames = Vec::new();
        for part in wire.chunks(piece) {
            framer.feed(part, &mut frames);
            answers.frames(part, &frames);
            frames.clear();
        }
        framer.finish(&mut frames);
        answers.finish(&frames);
        assert_eq!(budget.used(), 0, "captured bodies are given back");
        reports
    }

    const PIPELINE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst\
        HTTP/1.1 204 No Content\r\n\r\n\
        HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n\
        HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
        HTTP/1.1 200 OK\r\n\r\nuntil the end";

    fn pipeline_requests() -> Vec<(&'static str, &'static str)> {
        vec![
            ("POST", "/a"),
            ("GET", "/b"),
            ("GET", "/c"),
            ("HEAD", "/d"),
            ("GET", "/e"),
            ("GET", "/f"),
        ]
    }

    #[test]
    fn pipelined_answers_pair_in_request_order_however_split() {
        let shadow = [
            shadow_answer(200, "first"),
            shadow_answer(204, ""),
            shadow_answer(304, ""),
            shadow_answer(200, ""),
            shadow_answer(200, "hello world"),
            shadow_answer(200, "until the end"),
        ];
        for piece in 1..=PIPELINE.len() {
            let report = run(&pipeline_requests(), &shadow, PIPELINE, piece).report();
            let verdicts = &report.comparisons[0].verdicts;
            assert_eq!(verdicts.matched, 6, "piece {piece}: {verdicts:?}");
        }
    }

    #[test]
    fn a_different_answer_is_told_apart_at_its_place() {
        let shadow = [
            shadow_answer(200, "first"),
            shadow_answer(204, ""),
            shadow_answer(304, ""),
            shadow_answer(200, ""),
            shadow_answer(200, "hello there"),
            shadow_answer(500, "until the end"),
        ];
        let report = run(&pipeline_requests(), &shadow, PIPELINE, 7).report();
        let comparison = &report.comparisons[0];
        assert_eq!(comparison.verdicts.matched, 4);
        assert_eq!(comparison.verdicts.body_mismatch, 1);
        assert_eq!(comparison.verdicts.status_mismatch, 1);
        let requests: Vec<&str> = comparison
            .last_mismatches
            .iter()
            .map(|m| m.request.as_str())
            .collect();
        assert_eq!(requests, ["GET /f HTTP/1.1", "GET /e HTTP/1.1"]);
    }

    #[test]
    fn comparison_stops_where_the_framer_gives_up() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokNOT HTTP AT ALL\r\n\r\n";
        let shadow = [shadow_answer(200, "ok"), shadow_answer(200, "ok")];
        let report = run(&[("GET", "/1"), ("GET", "/2")], &shadow, wire, 5).report();
        let comparison = &report.comparisons[0];
        assert_eq!(comparison.verdicts.matched, 1);
        assert_eq!(comparison.verdicts.not_compared, 1);
        assert_eq!(comparison.not_compared.get("stopped"), Some(&1));
    }

    #[test]
    fn bodies_over_the_cap_and_cut_off_answers_are_said_so() {
        let long = "x".repeat(65);
        let wire = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n{long}HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncut"
        );
        let shadow = [shadow_answer(200, &long), shadow_answer(200, "cut short")];
        let report = run(
            &[("GET", "/1"), ("GET", "/2")],
            &shadow,
            wire.as_bytes(),
            10,
        )
        .report();
        let comparison = &report.comparisons[0];
        assert_eq!(comparison.not_compared.get("over_cap"), Some(&1));
        assert_eq!(comparison.not_compared.get("primary_cut_off"), Some(&1));
    }
}
