//! Helpers for the HTTP/2 decoder's targets: feeding a connection to `H2Decoder` chunk by
//! chunk while checking the event API's promises, a normal form of the events that does not
//! depend on the cuts, and the requests the events describe.

use std::collections::BTreeMap;

use mirror_daemon::http::h2::{ErrorCode, Event, H2Decoder, H2Limits, Peer, SkipReason};

/// An event with its data copied out of the chunk, adjacent data of a stream merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Norm {
    Data {
        stream: u32,
        bytes: Vec<u8>,
        end_stream: bool,
    },
    Other(Event),
}

/// Feeds `chunks` in order, checking: data ranges inside their chunk and in order, empty only
/// at an end; no event after the tunnel, the tunnel last.
pub fn decode<'a>(
    limits: H2Limits,
    chunks: impl IntoIterator<Item = (Peer, &'a [u8])>,
) -> Vec<Norm> {
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
            match event {
                Event::Data {
                    stream,
                    range,
                    end_stream,
                } => {
                    assert_eq!(peer, Peer::Client);
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
                            stream: last,
                            bytes,
                            end_stream: ended,
                        }) if *last == stream && !*ended => {
                            bytes.extend_from_slice(&chunk[range]);
                            *ended = end_stream;
                        }
                        _ => out.push(Norm::Data {
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
    out
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

/// What the decoder's events say: requests complete and not abandoned, the streams skipped (and
/// why), and whether it tunnelled.
#[derive(Debug, Default)]
pub struct Described {
    pub complete: BTreeMap<u32, Request>,
    pub skipped: BTreeMap<u32, SkipReason>,
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

pub fn describe(events: &[Norm]) -> Described {
    let mut open: BTreeMap<u32, Request> = BTreeMap::new();
    let mut described = Described::default();
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
            Norm::Data {
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
                open.remove(&stream.value());
                described.complete.remove(&stream.value());
                described.skipped.insert(stream.value(), *reason);
            }
            // A reset abandons a request still open; one already complete was complete when
            // reported (a client may cancel a request it has sent whole).
            Norm::Other(Event::Reset { stream, .. }) => {
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
                described
                    .complete
                    .retain(|id, _| *id <= last_stream_id.value());
            }
            Norm::Other(Event::GoAway { .. }) => {}
            Norm::Other(Event::Tunnel(_)) => described.tunnelled = true,
            Norm::Other(Event::Data { .. }) => unreachable!("normalised"),
        }
    }
    described
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
