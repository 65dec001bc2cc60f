//! Behaviour tests for the HTTP/2 decoder: hand-written connections (`cases`, and `responses`
//! for the primary's side, `idle` for when a connection is idle) and connections written by the `h2` crate's client and answered by
//! its server (`real_client`). Every connection is decoded whole, split at every byte and fed
//! byte by byte, and all must describe it identically.

mod cases;
mod idle;
mod real_client;
mod responses;

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
    Interim {
        stream: u32,
        status: u16,
        fields: Vec<(String, Vec<u8>)>,
    },
    Response {
        stream: u32,
        status: u16,
        fields: Vec<(String, Vec<u8>)>,
        end_stream: bool,
    },
    ResponseData {
        stream: u32,
        bytes: Vec<u8>,
        end_stream: bool,
    },
    ResponseTrailers {
        stream: u32,
        fields: Vec<(String, Vec<u8>)>,
    },
    ResponseSkipped {
        stream: u32,
        reason: SkipReason,
    },
    Tunnel(TunnelReason),
}

impl Seen {
    /// Whether the event is of the primary's responses.
    pub(super) fn is_response(&self) -> bool {
        matches!(
            self,
            Seen::Interim { .. }
                | Seen::Response { .. }
                | Seen::ResponseData { .. }
                | Seen::ResponseTrailers { .. }
                | Seen::ResponseSkipped { .. }
        )
    }
}

/// Appends body bytes to `seen`, merged with the same stream's piece just before.
fn push_data(seen: &mut Vec<Seen>, response: bool, stream: u32, bytes: &[u8], end_stream: bool) {
    match seen.last_mut() {
        Some(Seen::Data {
            stream: last,
            bytes: earlier,
            end_stream: ended,
        }) if !response && *last == stream && !*ended => {
            earlier.extend_from_slice(bytes);
            *ended = end_stream;
        }
        Some(Seen::ResponseData {
            stream: last,
            bytes: earlier,
            end_stream: ended,
        }) if response && *last == stream && !*ended => {
            earlier.extend_from_slice(bytes);
            *ended = end_stream;
        }
        _ => {
            let (stream, bytes) = (stream, bytes.to_vec());
            seen.push(if response {
                Seen::ResponseData {
                    stream,
                    bytes,
                    end_stream,
                }
            } else {
                Seen::Data {
                    stream,
                    bytes,
                    end_stream,
                }
            });
        }
    }
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
            let response_data = matches!(event, Event::ResponseData { .. });
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
                }
                | Event::ResponseData {
                    stream,
                    range,
                    end_stream,
                } => {
                    let response = peer == Peer::Server;
                    assert_eq!(response, response_data, "data of the other side's kind");
                    assert!(
                        range.start >= floor && range.end <= chunk.len(),
                        "range {range:?} in {} bytes",
                        chunk.len()
                    );
                    assert!(!range.is_empty() || end_stream, "empty data without end");
                    floor = range.end;
                    push_data(
                        &mut seen,
                        response,
                        stream.value(),
                        &chunk[range],
                        end_stream,
                    );
                }
                Event::Interim { stream, head } => seen.push(Seen::Interim {
                    stream: stream.value(),
                    status: head.status().as_u16(),
                    fields: fields(head.fields().iter()),
                }),
                Event::Response {
                    stream,
                    head,
                    end_stream,
                } => seen.push(Seen::Response {
                    stream: stream.value(),
                    status: head.status().as_u16(),
                    fields: fields(head.fields().iter()),
                    end_stream,
                }),
                Event::ResponseTrailers { stream, trailers } => seen.push(Seen::ResponseTrailers {
                    stream: stream.value(),
                    fields: fields(trailers.iter()),
                }),
                Event::ResponseSkipped { stream, reason } => seen.push(Seen::ResponseSkipped {
                    stream: stream.value(),
                    reason,
                }),
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
///
/// Without responses decoded, the script is decoded with them too, whole: the request side
/// must be described alike (decoding responses changes nothing of it), up to a tunnel the
/// primary's side, now checked more closely, may end in.
pub(super) fn decode_every_way(limits: H2Limits, script: &[(Peer, Vec<u8>)]) -> Vec<Seen> {
    let whole = decode_chunks(limits, script.iter().map(|(p, c)| (*p, &c[..])));
    if !limits.decode_responses {
        let with_responses = H2Limits {
            decode_responses: true,
            ..limits
        };
        let mut seen = decode_chunks(with_responses, script.iter().map(|(p, c)| (*p, &c[..])));
        seen.retain(|event| !event.is_response());
        if let Some(Seen::Tunnel(
            TunnelReason::ServerProtocolError
            | TunnelReason::ServerHeaderBlockTooLarge
            | TunnelReason::ServerHpackTableSizeOverSetting
            | TunnelReason::ServerHpackTableSizeOverLimit
            | TunnelReason::ServerHpackInvalid,
        )) = seen.last()
        {
            // The primary's side stopped the decoding early: up to there, the same (a request
            // body it cut short ends in a prefix of its last piece).
            seen.pop();
            if let (
                Some(Seen::Data {
                    stream, bytes: cut, ..
                }),
                Some(Seen::Data {
                    stream: same,
                    bytes: all,
                    ..
                }),
            ) = (seen.last(), whole.get(seen.len().wrapping_sub(1)))
            {
                if stream == same && all.starts_with(cut) {
                    seen.pop();
                }
            }
            assert!(
                whole.starts_with(&seen),
                "decoding responses changed the requests' events: {seen:?}"
            );
        } else {
            assert_eq!(
                seen, whole,
                "decoding responses changed the requests' events"
            );
        }
    }
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
