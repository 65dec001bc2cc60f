//! Helpers for the HTTP/2 decoder's targets: feeding a connection to `H2Decoder` chunk by
//! chunk while checking the event API's promises, a normal form of the events that does not
//! depend on the cuts, and the requests and responses the events describe.

use std::collections::{BTreeMap, BTreeSet};

use mirror_daemon::http::h2::{
    ErrorCode, Event, H2Decoder, H2Limits, Peer, SkipReason, TunnelReason,
};

/// An event with its data copied out of the chunk, adjacent data of a stream merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Norm {
    /// Request body (`response` false) or response body.
    Data {
        response: bool,
        stream: u32,
        bytes: Vec<u8>,
        end_stream: bool,
    },
    Other(Event),
}

impl Norm {
    /// Whether the event is of the primary's responses.
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Norm::Data { response: true, .. }
                | Norm::Other(
                    Event::Interim { .. }
                        | Event::Response { .. }
                        | Event::ResponseTrailers { .. }
                        | Event::ResponseSkipped { .. }
                )
        )
    }
}

/// Whether `reason` is one only the primary's side, decoded for its responses, ends in.
pub fn is_response_side_tunnel(reason: TunnelReason) -> bool {
    matches!(
        reason,
        TunnelReason::ServerProtocolError
            | TunnelReason::ServerHeaderBlockTooLarge
            | TunnelReason::ServerHpackTableSizeOverSetting
            | TunnelReason::ServerHpackTableSizeOverLimit
            | TunnelReason::ServerHpackInvalid
    )
}

/// Checks that decoding responses (`with`) described the requests as decoding without them
/// (`without`) did, up to a tunnel of the primary's side.
pub fn assert_requests_unchanged(with: &[Norm], without: &[Norm]) {
    let requests = requests_merged(with);
    let mut requests: Vec<&Norm> = requests.iter().collect();
    let without: Vec<&Norm> = without.iter().collect();
    match requests.last() {
        Some(Norm::Other(Event::Tunnel(reason))) if is_response_side_tunnel(*reason) => {
            requests.pop();
            // The tunnel may have cut a request body short: its last piece is then a prefix.
            let cut_short = match (requests.last(), without.get(requests.len().wrapping_sub(1))) {
                (
                    Some(Norm::Data {
                        stream, bytes: cut, ..
                    }),
                    Some(Norm::Data {
                        stream: same,
                        bytes: whole,
                        ..
                    }),
                ) if stream == same && whole.starts_with(cut) => requests.pop().is_some(),
                _ => false,
            };
            assert!(
                without.starts_with(&requests),
                "responses changed the requests (cut short: {cut_short}): {requests:?}\nwithout: {without:?}"
            );
        }
        _ => assert_eq!(requests, without, "responses changed the requests"),
    }
}

/// The request events of `events`, adjacent data of a stream merged again: a response event
/// between two pieces of one request body keeps them apart in `events`, where decoding without
/// responses gives them as one.
fn requests_merged(events: &[Norm]) -> Vec<Norm> {
    let mut out: Vec<Norm> = Vec::new();
    for event in events.iter().filter(|e| !e.is_response()) {
        if let (
            Some(Norm::Data {
                stream: last,
                bytes,
                end_stream: ended,
                ..
            }),
            Norm::Data {
                stream,
                bytes: more,
                end_stream,
                ..
            },
        ) = (out.last_mut(), event)
        {
            if last == stream && !*ended {
                bytes.extend_from_slice(more);
                *ended = *end_stream;
                continue;
            }
        }
        out.push(event.clone());
    }
    out
}

/// Feeds `chunks` in order, checking: data ranges inside their chunk and in order, empty only
/// at an end, of the chunk's side; no event after the tunnel, the tunnel last.
pub fn decode<'a>(
    limits: H2Limits,
    chunks: impl IntoIterator<Item = (Peer, &'a [u8])>,
) -> Vec<Norm> {
    decode_to_end(limits, chunks).0
}

/// [`decode`], and whether the decoder calls the connection idle after the last chunk.
pub fn decode_to_end<'a>(
    limits: H2Limits,
    chunks: impl IntoIterator<Item = (Peer, &'a [u8])>,
) -> (Vec<Norm>, bool) {
    let mut decoder = H2Decoder::new(limits);
    let mut out: Vec<Norm> = Vec::new();
    let mut events = Vec::new();
    for (peer, chunk) in chunks {
        let tunnelled = decoder.is_tunnel();
        events.clear();
        match peer {
            Peer::Client => decoder.feed_client(chunk, &mut events),
            Peer::Server => decoder.feed_server(chunk, &mut events),
        }
        assert!(
            !tunnelled || events.is_empty(),
            "events after the tunnel: {events:?}"
        );
        let count = events.len();
        let mut floor = 0;
        for (i, event) in events.drain(..).enumerate() {
            let response = matches!(event, Event::ResponseData { .. });
            match event {
                Event::Data {
                    stream,
                    range,
                    end_stream,
                }
                | Event::ResponseData {
                    stream,
                    range,
                    end_stream,
                } => {
                    assert_eq!(peer == Peer::Server, response, "data of the other side");
                    assert!(
                        range.start >= floor
                            && range.start <= range.end
                            && range.end <= chunk.len()
                    );
                    assert!(!range.is_empty() || end_stream, "empty data without end");
                    floor = range.end;
                    let stream = stream.value();
                    match out.last_mut() {
                        Some(Norm::Data {
                            response: same_side,
                            stream: last,
                            bytes,
                            end_stream: ended,
                        }) if *same_side == response && *last == stream && !*ended => {
                            bytes.extend_from_slice(&chunk[range]);
                            *ended = end_stream;
                        }
                        _ => out.push(Norm::Data {
                            response,
                            stream,
                            bytes: chunk[range].to_vec(),
                            end_stream,
                        }),
                    }
                }
                Event::Tunnel(reason) => {
                    assert_eq!(i + 1, count, "the tunnel is the last event");
                    assert_eq!(decoder.tunnel_reason(), Some(reason));
                    out.push(Norm::Other(Event::Tunnel(reason)));
                }
                other => out.push(Norm::Other(other)),
            }
        }
    }
    let idle = decoder.is_idle();
    assert!(!idle || !decoder.is_tunnel(), "a tunnel is never idle");
    (out, idle)
}

/// One request as a side saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Sorted (h2's server groups fields by name).
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
}

/// One response as a side saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Interim (1xx) statuses, in order.
    pub interim: Vec<u16>,
    pub status: u16,
    /// Sorted (h2's client groups fields by name).
    pub fields: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
}

/// What the decoder's events say: requests complete and not abandoned, the streams skipped (and
/// why), the responses complete and those skipped, and whether it tunnelled.
#[derive(Debug, Default)]
pub struct Described {
    pub complete: BTreeMap<u32, Request>,
    pub skipped: BTreeMap<u32, SkipReason>,
    /// Responses complete before the client sent a GOAWAY with an error code (after it, the
    /// client reads nothing more).
    pub answers: BTreeMap<u32, Answer>,
    /// Responses completed after the client's GOAWAY with an error code.
    pub late_answers: BTreeSet<u32>,
    pub answers_skipped: BTreeMap<u32, SkipReason>,
    pub tunnelled: bool,
}

pub fn sorted<'a>(
    fields: impl Iterator<Item = (&'a http::HeaderName, &'a http::HeaderValue)>,
) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<_> = fields
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    fields.sort();
    fields
}

/// Folds the events into requests and responses, checking the order the response events come
/// in: only for a request reported and not skipped, reset or excluded by the primary's GOAWAY
/// since; interim heads, one head, data and trailers, or a skip; nothing after the end.
pub fn describe(events: &[Norm]) -> Described {
    let mut open: BTreeMap<u32, Request> = BTreeMap::new();
    let mut described = Described::default();
    let mut responses = Responses::default();
    let finish =
        |id: u32, open: &mut BTreeMap<u32, Request>, complete: &mut BTreeMap<u32, Request>| {
            if let Some(request) = open.remove(&id) {
                complete.insert(id, request);
            }
        };
    for event in events {
        match event {
            Norm::Other(Event::Request {
                stream,
                head,
                end_stream,
            }) => {
                let id = stream.value();
                assert!(
                    !open.contains_key(&id) && !described.complete.contains_key(&id),
                    "stream {id} opened twice"
                );
                responses.awaited.insert(id);
                open.insert(
                    id,
                    Request {
                        method: head.method().to_string(),
                        path: head.path_and_query().to_string(),
                        fields: sorted(head.fields().iter()),
                        ..Request::default()
                    },
                );
                if *end_stream {
                    finish(id, &mut open, &mut described.complete);
                }
            }
            Norm::Data { response: true, .. }
            | Norm::Other(
                Event::Interim { .. }
                | Event::Response { .. }
                | Event::ResponseTrailers { .. }
                | Event::ResponseSkipped { .. },
            ) => responses.take(event, &mut described),
            Norm::Data {
                response: false,
                stream,
                bytes,
                end_stream,
            } => {
                let request = open.get_mut(stream).expect("data of an open request");
                request.body.extend_from_slice(bytes);
                if *end_stream {
                    finish(*stream, &mut open, &mut described.complete);
                }
            }
            Norm::Other(Event::Trailers { stream, trailers }) => {
                let id = stream.value();
                let request = open.get_mut(&id).expect("trailers of an open request");
                request.trailers = sorted(trailers.iter());
                finish(id, &mut open, &mut described.complete);
            }
            Norm::Other(Event::Skipped { stream, reason }) => {
                responses.forget(stream.value());
                open.remove(&stream.value());
                described.complete.remove(&stream.value());
                described.skipped.insert(stream.value(), *reason);
            }
            // A reset abandons a request still open; one already complete was complete when
            // reported (a client may cancel a request it has sent whole).
            Norm::Other(Event::Reset { stream, .. }) => {
                responses.forget(stream.value());
                open.remove(&stream.value());
            }
            Norm::Other(Event::GoAway {
                by: Peer::Server,
                last_stream_id,
                code,
            }) => {
                let last = if *code == ErrorCode::NO_ERROR {
                    last_stream_id.value()
                } else {
                    0
                };
                open.retain(|id, _| *id <= last);
                // Answers to streams up to the last may still come, whatever the code.
                let answered = last_stream_id.value();
                responses.awaited.retain(|id| *id <= answered);
                responses.heads.retain(|id, _| *id <= answered);
                described
                    .complete
                    .retain(|id, _| *id <= last_stream_id.value());
            }
            Norm::Other(Event::GoAway {
                by: Peer::Client,
                code,
                ..
            }) => {
                if *code != ErrorCode::NO_ERROR {
                    responses.client_closed = true;
                }
            }
            Norm::Other(Event::Tunnel(_)) => described.tunnelled = true,
            Norm::Other(Event::Data { .. } | Event::ResponseData { .. }) => {
                unreachable!("normalised")
            }
        }
    }
    described
}

/// The responses being followed while the events are folded.
#[derive(Debug, Default)]
struct Responses {
    /// Streams whose request was reported and whose response has not ended.
    awaited: BTreeSet<u32>,
    /// Responses whose final head came, and their interim heads before it.
    heads: BTreeMap<u32, Answer>,
    client_closed: bool,
}

impl Responses {
    fn forget(&mut self, id: u32) {
        self.awaited.remove(&id);
        self.heads.remove(&id);
    }

    fn complete(&mut self, id: u32, described: &mut Described) {
        self.awaited.remove(&id);
        let answer = self.heads.remove(&id).expect("complete answer");
        if self.client_closed {
            described.late_answers.insert(id);
        } else {
            described.answers.insert(id, answer);
        }
    }

    fn take(&mut self, event: &Norm, described: &mut Described) {
        match event {
            Norm::Other(Event::Interim { stream, head }) => {
                let id = stream.value();
                assert!(
                    self.awaited.contains(&id),
                    "interim head of stream {id} unasked"
                );
                let answer = self.heads.entry(id).or_default();
                assert_eq!(answer.status, 0, "interim head after the final one");
                answer.interim.push(head.status().as_u16());
            }
            Norm::Other(Event::Response {
                stream,
                head,
                end_stream,
            }) => {
                let id = stream.value();
                assert!(
                    self.awaited.contains(&id),
                    "response on stream {id} unasked"
                );
                let answer = self.heads.entry(id).or_default();
                assert_eq!(answer.status, 0, "two final heads");
                answer.status = head.status().as_u16();
                answer.fields = sorted(head.fields().iter());
                if *end_stream {
                    self.complete(id, described);
                }
            }
            Norm::Data {
                stream,
                bytes,
                end_stream,
                ..
            } => {
                let answer = self.heads.get_mut(stream).expect("data of a response head");
                answer.body.extend_from_slice(bytes);
                if *end_stream {
                    self.complete(*stream, described);
                }
            }
            Norm::Other(Event::ResponseTrailers { stream, trailers }) => {
                let id = stream.value();
                let answer = self
                    .heads
                    .get_mut(&id)
                    .expect("trailers of a response head");
                answer.trailers = sorted(trailers.iter());
                self.complete(id, described);
            }
            Norm::Other(Event::ResponseSkipped { stream, reason }) => {
                let id = stream.value();
                assert!(self.awaited.contains(&id), "skip of stream {id} unasked");
                self.forget(id);
                described.answers_skipped.insert(id, *reason);
            }
            other => unreachable!("not a response event: {other:?}"),
        }
    }
}

/// Reads one response as h2's client hands it over: interim heads, head, body, trailers. Returns
/// the stream and the answer, if it came whole.
pub async fn receive(mut response: ::h2::client::ResponseFuture) -> (u32, Option<Answer>) {
    let id = response.stream_id().as_u32();
    let mut answer = Answer::default();
    loop {
        match std::future::poll_fn(|cx| response.poll_informational(cx)).await {
            Some(Ok(interim)) => answer.interim.push(interim.status().as_u16()),
            Some(Err(_)) => return (id, None),
            None => break,
        }
    }
    let Ok(response) = response.await else {
        return (id, None);
    };
    let (parts, mut body) = response.into_parts();
    answer.status = parts.status.as_u16();
    answer.fields = sorted(parts.headers.iter());
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return (id, None);
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        answer.body.extend_from_slice(&chunk);
    }
    let Ok(trailers) = body.trailers().await else {
        return (id, None);
    };
    answer.trailers = trailers
        .as_ref()
        .map(|t| sorted(t.iter()))
        .unwrap_or_default();
    (id, Some(answer))
}

/// The h2 client the differential target compares with: windows and limits high enough that
/// only the protocol decides.
pub fn client_builder() -> ::h2::client::Builder {
    let mut builder = ::h2::client::Builder::new();
    builder
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .max_header_list_size(1 << 20)
        .enable_push(true);
    builder
}

/// The h2 server the differential target compares with: limits high enough that only the
/// protocol decides (the inputs are small).
pub fn server_builder() -> ::h2::server::Builder {
    let mut builder = ::h2::server::Builder::new();
    builder
        .max_concurrent_streams(10_000)
        .initial_window_size(1 << 20)
        .max_header_list_size(1 << 20);
    builder
}
