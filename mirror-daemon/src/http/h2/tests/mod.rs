//! Behaviour tests for the HTTP/2 decoder: hand-written connections (`cases`) and connections
//! written by the `h2` crate's client and answered by its server (`real_client`). Every
//! connection is decoded whole, split at every byte and fed byte by byte, and all must describe
//! it identically.

mod cases;
mod real_client;

use super::{Event, H2Decoder, H2Limits, Peer, SkipReason, TunnelReason};

/// An event with its data copied out of the chunk and adjacent data of a stream merged, so that
/// different chunkings compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    Request {
        stream: u32,
        method: String,
        scheme: String,
        authority: Option<String>,
        path: String,
        fields: Vec<(String, Vec<u8>)>,
        end_stream: bool,
    },
    Data {
        stream: u32,
        bytes: Vec<u8>,
        end_stream: bool,
    },
    Trailers {
        stream: u32,
        fields: Vec<(String, Vec<u8>)>,
    },
    Skipped {
        stream: u32,
        reason: SkipReason,
    },
    Reset {
        stream: u32,
        by: Peer,
        code: u32,
    },
    GoAway {
        by: Peer,
        last: u32,
        code: u32,
    },
    Tunnel(TunnelReason),
}

/// Feeds `chunks` in order to one decoder, checking the event API's promises, and returns what
/// it said.
pub(super) fn decode_chunks<'a>(
    limits: H2Limits,
    chunks: impl IntoIterator<Item = (Peer, &'a [u8])>,
) -> Vec<Seen> {
    let mut decoder = H2Decoder::new(limits);
    let mut seen: Vec<Seen> = Vec::new();
    let mut events = Vec::new();
    for (peer, chunk) in chunks {
        let tunnel_before = decoder.is_tunnel();
        events.clear();
        match peer {
            Peer::Client => decoder.feed_client(chunk, &mut events),
            Peer::Server => decoder.feed_server(chunk, &mut events),
        }
        assert!(!tunnel_before || events.is_empty(), "events after tunnel");
        let count = events.len();
        let mut floor = 0;
        for (i, event) in events.drain(..).enumerate() {
            match event {
                Event::Request {
                    stream,
                    head,
                    end_stream,
                } => seen.push(Seen::Request {
                    stream: stream.value(),
                    method: head.method().to_string(),
                    scheme: head.scheme().to_string(),
                    authority: head.authority().map(|a| a.to_string()),
                    path: head.path_and_query().to_string(),
                    fields: fields(head.fields().iter()),
                    end_stream,
                }),
                Event::Data {
                    stream,
                    range,
                    end_stream,
                } => {
                    assert_eq!(peer, Peer::Client, "data from the primary's side");
                    assert!(
                        range.start >= floor && range.end <= chunk.len(),
                        "range {range:?} in {} bytes",
                        chunk.len()
                    );
                    assert!(!range.is_empty() || end_stream, "empty data without end");
                    floor = range.end;
                    let stream = stream.value();
                    match seen.last_mut() {
                        Some(Seen::Data {
                            stream: last,
                            bytes,
                            end_stream: ended,
                        }) if *last == stream && !*ended => {
                            bytes.extend_from_slice(&chunk[range]);
                            *ended = end_stream;
                        }
                        _ => seen.push(Seen::Data {
                            stream,
                            bytes: chunk[range].to_vec(),
                            end_stream,
                        }),
                    }
                }
                Event::Trailers { stream, trailers } => seen.push(Seen::Trailers {
                    stream: stream.value(),
                    fields: fields(trailers.iter()),
                }),
                Event::Skipped { stream, reason } => seen.push(Seen::Skipped {
                    stream: stream.value(),
                    reason,
                }),
                Event::Reset { stream, by, code } => seen.push(Seen::Reset {
                    stream: stream.value(),
                    by,
                    code: code.0,
                }),
                Event::GoAway {
                    by,
                    last_stream_id,
                    code,
                } => seen.push(Seen::GoAway {
                    by,
                    last: last_stream_id.value(),
                    code: code.0,
                }),
                Event::Tunnel(reason) => {
                    assert_eq!(decoder.tunnel_reason(), Some(reason));
                    assert_eq!(i + 1, count, "tunnel must be the last event");
                    seen.push(Seen::Tunnel(reason));
                }
            }
        }
    }
    seen
}

fn fields<'a>(
    iter: impl Iterator<Item = (&'a http::HeaderName, &'a http::HeaderValue)>,
) -> Vec<(String, Vec<u8>)> {
    iter.map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// Decodes a script whole, with each chunk split in two at every position, and byte by byte;
/// all must agree. Returns the events.
pub(super) fn decode_every_way(limits: H2Limits, script: &[(Peer, Vec<u8>)]) -> Vec<Seen> {
    let whole = decode_chunks(limits, script.iter().map(|(p, c)| (*p, &c[..])));
    for (index, (_, chunk)) in script.iter().enumerate() {
        for split in 1..chunk.len() {
            let pieces = script.iter().enumerate().flat_map(|(i, (peer, c))| {
                if i == index {
                    vec![(*peer, &c[..split]), (*peer, &c[split..])]
                } else {
                    vec![(*peer, &c[..])]
                }
            });
            assert_eq!(
                decode_chunks(limits, pieces),
                whole,
                "chunk {index} split at {split}"
            );
        }
    }
    let bytes = script
        .iter()
        .flat_map(|(peer, c)| c.chunks(1).map(move |b| (*peer, b)));
    assert_eq!(decode_chunks(limits, bytes), whole, "byte by byte");
    whole
}
