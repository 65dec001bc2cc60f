//! The primary's side of comparisons on an HTTP/2 connection: for each compared stream, the
//! primary's answer as the decoder reports it from bytes already forwarded to the client
//! (`:status` and fields, DATA, trailers; [`crate::http::h2`] with `decode_responses`), kept as
//! an [`Awaited`] answer and handed to the stream's pairs when it ends. The relay never waits for
//! this.
//!
//! Streams answer in any order: each is known by its identifier, and its pairs are judged as its
//! answer ends (END_STREAM on the head, on DATA, or the trailers), in order of completion. The
//! times count from the end of the stream's request (its END_STREAM or trailers), or from the
//! answer's head when that came first (a server-streaming call answering before the client is
//! done). A stream reset by either side, a request the decoder skips, and a stream the primary's
//! GOAWAY abandons are compared as cut off when their head came (`not_compared`,
//! `primary_cut_off`, unless the statuses already differ) and as unanswered otherwise
//! (`no_answer`); so is every stream still awaited when the connection ends. A response the
//! decoder stops describing (malformed, or over one of its limits) and every stream awaited when
//! the connection becomes a tunnel end `not_compared` (`stopped`): that answer could not be
//! followed with certainty.
//!
//! Memory: one entry per compared stream whose answer is awaited or under way (the decoder
//! follows at most its `max_streams` responses; those beyond are skipped, so `stopped`), each
//! with the compared fields and its body up to the compare cap, charged to the copy budget.
//! Nothing when no stream is compared.

use std::sync::Arc;

use fnv::FnvHashMap;

use super::{answers::Awaited, budget::Budget};
use crate::compare::{Pair, Primary};

/// The compared streams of one connection whose answers are awaited or under way.
#[derive(Debug, Default)]
pub(super) struct PrimaryStreams {
    awaited: FnvHashMap<u32, Awaited>,
}

impl PrimaryStreams {
    /// Whether no compared stream awaits its answer (then response events need no look-up).
    pub fn is_empty(&self) -> bool {
        self.awaited.is_empty()
    }

    /// Compares the primary's answer on `stream` with the shadows' in `pairs`.
    pub fn compare(&mut self, stream: u32, pairs: Vec<Arc<Pair>>, budget: Arc<Budget>) {
        if pairs.is_empty() {
            return;
        }
        // A stream identifier is never reused; an entry left from one cannot be answered.
        if let Some(old) = self.awaited.insert(stream, Awaited::new(pairs, budget)) {
            old.gone();
        }
    }

    /// The request of `stream` ended (END_STREAM or trailers).
    pub fn request_ended(&mut self, stream: u32) {
        if let Some(awaited) = self.awaited.get_mut(&stream) {
            awaited.request_ended();
        }
    }

    /// The final head of `stream`'s answer; `end_stream`: it is the whole answer (no body, or a
    /// gRPC Trailers-Only answer).
    pub fn response<'a>(
        &mut self,
        stream: u32,
        status: u16,
        fields: impl Iterator<Item = (&'a str, &'a [u8])>,
        end_stream: bool,
    ) {
        if let Some(awaited) = self.awaited.get_mut(&stream) {
            awaited.head(status, fields);
            if end_stream {
                self.end(stream);
            }
        }
    }

    /// Body bytes of `stream`'s answer; `end_stream`: the answer ends with them.
    pub fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        if let Some(awaited) = self.awaited.get_mut(&stream) {
            awaited.body(data);
            if end_stream {
                self.end(stream);
            }
        }
    }

    /// The trailers of `stream`'s answer, which end it.
    pub fn trailers<'a>(&mut self, stream: u32, fields: impl Iterator<Item = (&'a str, &'a [u8])>) {
        if let Some(awaited) = self.awaited.get_mut(&stream) {
            for (name, value) in fields {
                awaited.trailer(name, value);
            }
            self.end(stream);
        }
    }

    /// The decoder stopped describing `stream`'s answer.
    pub fn not_followed(&mut self, stream: u32) {
        if let Some(awaited) = self.awaited.remove(&stream) {
            awaited.unanswered(Primary::Stopped);
        }
    }

    /// `stream` ends without the rest of its answer (reset, skipped, abandoned by GOAWAY).
    pub fn gone(&mut self, stream: u32) {
        if let Some(awaited) = self.awaited.remove(&stream) {
            awaited.gone();
        }
    }

    /// The primary's GOAWAY: streams above `last_stream` were not processed; with an error
    /// (`closing`), none will be answered further.
    pub fn go_away(&mut self, last_stream: u32, closing: bool) {
        let gone: Vec<u32> = self
            .awaited
            .keys()
            .copied()
            .filter(|&id| closing || id > last_stream)
            .collect();
        for id in gone {
            self.gone(id);
        }
    }

    /// The connection became a tunnel: nothing awaited can be followed any more.
    pub fn stop(&mut self) {
        for (_, awaited) in self.awaited.drain() {
            awaited.unanswered(Primary::Stopped);
        }
    }

    fn end(&mut self, stream: u32) {
        if let Some(awaited) = self.awaited.remove(&stream) {
            awaited.ended(false);
        }
    }
}

impl Drop for PrimaryStreams {
    /// The connection ended: answers under way were cut off, the others never came.
    fn drop(&mut self) {
        for (_, awaited) in self.awaited.drain() {
            awaited.gone();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::compare::{Answer, Protocol, Report, Reports, RequestLine, Shadow};
    use crate::mirror::answers::tests::{comparison, shadow_answer};

    const GRPC: (&str, &[u8]) = ("content-type", b"application/grpc");

    /// A connection's compared streams, each with its shadow's answer already in.
    struct Fixture {
        reports: Arc<Reports>,
        budget: Arc<Budget>,
        streams: PrimaryStreams,
    }

    impl Fixture {
        fn new(shadows: &[(u32, Shadow)]) -> Self {
            let (reports, comparison) = comparison();
            let budget = Budget::new(1 << 20);
            let mut streams = PrimaryStreams::default();
            for (stream, shadow) in shadows {
                let request = RequestLine::new("POST", &format!("/s{stream}"), Protocol::Http2);
                let pair = Pair::new(comparison.clone(), request);
                pair.shadow(shadow.clone());
                streams.compare(*stream, vec![pair], budget.clone());
                streams.request_ended(*stream);
            }
            Self {
                reports,
                budget,
                streams,
            }
        }

        /// The report once the connection is gone (the budget given back).
        fn finish(self) -> Report {
            drop(self.streams);
            assert_eq!(self.budget.used(), 0, "captured bodies are given back");
            self.reports.report()
        }
    }

    /// A gRPC answer of the shadow: 200, `message` (length-prefixed), ending with `code`.
    fn grpc_shadow(message: &[u8], code: &str) -> Shadow {
        let Shadow::Answered(answer) = shadow_answer(200, "") else {
            unreachable!("shadow_answer answers");
        };
        let headers = vec![(GRPC.0.to_string(), Bytes::from_static(GRPC.1))];
        let trailers = vec![(
            "grpc-status".to_string(),
            Bytes::copy_from_slice(code.as_bytes()),
        )];
        Shadow::Answered(Answer {
            grpc_status: crate::compare::grpc::status(&headers, &trailers),
            headers,
            trailers,
            body: crate::compare::AnswerBody::Complete(Bytes::copy_from_slice(&framed(message))),
            ..answer
        })
    }

    /// `message` as gRPC frames it: uncompressed, 4-byte length, the bytes.
    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn status(code: &str) -> [(&str, &[u8]); 1] {
        [("grpc-status", code.as_bytes())]
    }

    #[test]
    fn streams_pair_each_with_its_own_shadow_in_order_of_completion() {
        let mut fixture = Fixture::new(&[
            (1, grpc_shadow(b"one", "0")),
            (3, grpc_shadow(b"three!", "0")),
            (5, grpc_shadow(b"", "0")),
            (7, shadow_answer(200, "plain")),
        ]);
        let streams = &mut fixture.streams;
        // Heads out of order, bodies interleaved and split, a Trailers-Only answer.
        streams.response(3, 200, [GRPC].into_iter(), false);
        streams.response(1, 200, [GRPC].into_iter(), false);
        let one = framed(b"one");
        streams.data(1, &one[..2], false);
        streams.data(3, &framed(b"three?"), false);
        streams.data(1, &one[2..], false);
        streams.trailers(3, status("0").into_iter());
        streams.response(5, 200, [GRPC, ("grpc-status", b"5")].into_iter(), true);
        streams.response(7, 200, std::iter::empty(), false);
        streams.data(7, b"plain", true);
        streams.trailers(1, status("0").into_iter());
        assert!(streams.is_empty(), "every answer ended");
        let report = fixture.finish();
        let comparison = &report.comparisons[0];
        assert_eq!(comparison.verdicts.matched, 2, "{comparison:?}");
        assert_eq!(comparison.verdicts.body_mismatch, 1);
        assert_eq!(comparison.verdicts.status_mismatch, 1);
        // Newest first: stream 3's answer ended before stream 5's.
        let mismatches: Vec<(&str, &str, Option<u32>, Option<u32>)> = comparison
            .last_mismatches
            .iter()
            .map(|m| {
                (
                    m.request.as_str(),
                    m.verdict.as_str(),
                    m.primary_grpc_status,
                    m.shadow_grpc_status,
                )
            })
            .collect();
        assert_eq!(
            mismatches,
            [
                ("POST /s5 HTTP/2", "status_mismatch", Some(5), Some(0)),
                ("POST /s3 HTTP/2", "body_mismatch", Some(0), Some(0)),
            ]
        );
    }

    #[test]
    fn reset_cut_off_unfollowed_and_abandoned_streams_are_not_compared() {
        let shadows: Vec<(u32, Shadow)> = (0..7)
            .map(|i| (2 * i + 1, grpc_shadow(b"m", "0")))
            .collect();
        let mut fixture = Fixture::new(&shadows);
        let streams = &mut fixture.streams;
        // 1: head, then reset: cut off. 3: reset before its head: no answer.
        streams.response(1, 200, [GRPC].into_iter(), false);
        streams.data(1, &framed(b"m")[..3], false);
        streams.gone(1);
        streams.gone(3);
        // 5: the decoder stops describing its answer.
        streams.not_followed(5);
        // The primary's GOAWAY says it processed up to 9: 11 (its head in) is cut off, 13 (nothing
        // came) unanswered; 7 goes on and ends; 9 is cut off by the end of the connection.
        for stream in [7, 9, 11] {
            streams.response(stream, 200, [GRPC].into_iter(), false);
        }
        streams.go_away(9, false);
        streams.data(7, &framed(b"m"), false);
        streams.trailers(7, status("0").into_iter());
        // Events for streams not compared change nothing.
        streams.response(15, 500, std::iter::empty(), true);
        streams.data(17, b"x", true);
        let report = fixture.finish();
        let comparison = &report.comparisons[0];
        assert_eq!(comparison.pairs, 7);
        assert_eq!(comparison.verdicts.matched, 1, "{comparison:?}");
        assert_eq!(comparison.verdicts.not_compared, 6);
        assert_eq!(comparison.not_compared.get("primary_cut_off"), Some(&3));
        assert_eq!(comparison.not_compared.get("no_answer"), Some(&2));
        assert_eq!(comparison.not_compared.get("stopped"), Some(&1));
    }

    #[test]
    fn a_tunnel_stops_every_stream_awaited() {
        let mut fixture = Fixture::new(&[(1, grpc_shadow(b"m", "0")), (3, grpc_shadow(b"m", "0"))]);
        fixture.streams.response(1, 200, [GRPC].into_iter(), false);
        fixture.streams.stop();
        assert!(fixture.streams.is_empty());
        let report = fixture.finish();
        assert_eq!(report.comparisons[0].not_compared.get("stopped"), Some(&2));
    }

    #[test]
    fn a_primary_answer_over_the_cap_is_compared_by_status_only() {
        let long = vec![7u8; 100];
        let mut fixture =
            Fixture::new(&[(1, grpc_shadow(&long, "0")), (3, grpc_shadow(&long, "0"))]);
        let streams = &mut fixture.streams;
        for (stream, code) in [(1, "0"), (3, "13")] {
            streams.response(stream, 200, [GRPC].into_iter(), false);
            for piece in framed(&long).chunks(30) {
                streams.data(stream, piece, false);
            }
            streams.trailers(stream, status(code).into_iter());
        }
        let report = fixture.finish();
        let comparison = &report.comparisons[0];
        assert_eq!(comparison.not_compared.get("over_cap"), Some(&1));
        assert_eq!(comparison.verdicts.status_mismatch, 1, "{comparison:?}");
    }
}
