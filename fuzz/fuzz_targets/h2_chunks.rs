//! The HTTP/2 decoder, the primary's responses decoded, fed arbitrary bytes split at arbitrary
//! points.
//!
//! Input: `mirror_fuzz::input` (flags, schedule, stream). The primary's empty SETTINGS frame is
//! fed first, then the client's preface and an empty SETTINGS frame (unless flag `0x20`), then
//! the stream: without flag `0x80` all the client's; with it, turns of either side, each a
//! 2-byte big-endian header (top bit set: the primary's, else the client's; the low 15 bits: a
//! length, cut to what is left) and its bytes. Flag `0x40`: small limits (256-byte field
//! sections, 2 open streams and awaited responses). Checks: no panic; the event API's promises;
//! the connection decoded whole, per the schedule (each turn cut alike) and byte by byte gives
//! the same events and the same idleness at the end; the response events come in the
//! documented order (`h2::describe`); and the requests are described as when responses are not
//! decoded, up to a tunnel of the primary's side (and the idleness alike when neither tunnels).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_daemon::http::h2::{H2Limits, Peer, CLIENT_PREFACE};
use mirror_fuzz::{h2, input};

/// The primary's preface: an empty SETTINGS frame (its ACK of the client's would come after
/// the client's SETTINGS, which are in the stream).
const SERVER: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const CLIENT_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// The stream as turns of either side (flag `0x80`).
fn turns(mut stream: &[u8]) -> Vec<(Peer, &[u8])> {
    let mut out = Vec::new();
    while let [high, low, rest @ ..] = stream {
        let peer = if high & 0x80 != 0 {
            Peer::Server
        } else {
            Peer::Client
        };
        let len = (usize::from(high & 0x7f) << 8 | usize::from(*low)).min(rest.len());
        out.push((peer, &rest[..len]));
        stream = &rest[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let layout = input::Layout::parse(data);
    let limits = H2Limits {
        decode_responses: true,
        ..if layout.flags & 0x40 != 0 {
            H2Limits {
                max_header_bytes: 256,
                max_streams: 2,
                max_table_size: 4096,
                ..H2Limits::default()
            }
        } else {
            H2Limits::default()
        }
    };
    let preface = [&CLIENT_PREFACE[..], CLIENT_SETTINGS].concat();
    let mut script: Vec<(Peer, &[u8])> = vec![(Peer::Server, SERVER)];
    if layout.flags & 0x20 == 0 {
        script.push((Peer::Client, &preface));
    }
    if layout.flags & 0x80 != 0 {
        script.extend(turns(layout.stream));
    } else {
        script.push((Peer::Client, layout.stream));
    }

    let (whole, idle) = h2::decode_to_end(limits, script.iter().copied());
    let split = h2::decode_to_end(
        limits,
        script.iter().flat_map(|&(peer, turn)| {
            input::chunks(turn, layout.schedule)
                .into_iter()
                .map(move |c| (peer, c))
        }),
    );
    assert_eq!(
        split,
        (whole.clone(), idle),
        "split per the schedule {:?}",
        layout.schedule
    );
    let bytes = h2::decode_to_end(
        limits,
        script
            .iter()
            .flat_map(|&(peer, turn)| turn.chunks(1).map(move |c| (peer, c))),
    );
    assert_eq!(bytes, (whole.clone(), idle), "fed byte by byte");
    h2::describe(&whole);
    let without = H2Limits {
        decode_responses: false,
        ..limits
    };
    let (requests_only, idle_without) = h2::decode_to_end(without, script.iter().copied());
    h2::assert_requests_unchanged(&whole, &requests_only);
    let tunnelled = |events: &[h2::Norm]| {
        matches!(
            events.last(),
            Some(h2::Norm::Other(mirror_daemon::http::h2::Event::Tunnel(_)))
        )
    };
    if !tunnelled(&whole) && !tunnelled(&requests_only) {
        assert_eq!(idle, idle_without, "idleness depends on decoding responses");
    }
});
