//! The HTTP/2 decoder fed arbitrary client bytes, split at arbitrary points.
//!
//! Input: `mirror_fuzz::input` (flags, schedule, stream). The stream is what the client sends
//! after its preface and an empty SETTINGS frame, which are put in front unless flag `0x20` is
//! set; the primary's side is an empty SETTINGS frame, fed first. Flag `0x40`: small limits
//! (256-byte field sections, 2 open streams). Checks: no panic; the event API's promises; the
//! connection decoded whole, per the schedule and byte by byte gives the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_daemon::http::h2::{H2Limits, Peer, CLIENT_PREFACE};
use mirror_fuzz::{h2, input};

/// The primary's preface: an empty SETTINGS frame (its ACK of the client's would come after
/// the client's SETTINGS, which are in the stream).
const SERVER: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const CLIENT_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fuzz_target!(|data: &[u8]| {
    let layout = input::Layout::parse(data);
    let limits = if layout.flags & 0x40 != 0 {
        H2Limits {
            max_header_bytes: 256,
            max_streams: 2,
            max_table_size: 4096,
        }
    } else {
        H2Limits::default()
    };
    let stream = if layout.flags & 0x20 != 0 {
        layout.stream.to_vec()
    } else {
        [&CLIENT_PREFACE[..], CLIENT_SETTINGS, layout.stream].concat()
    };
    let server = std::iter::once((Peer::Server, SERVER));
    let whole = h2::decode(limits, server.clone().chain([(Peer::Client, &stream[..])]));
    let split = h2::decode(
        limits,
        server.clone().chain(
            input::chunks(&stream, layout.schedule)
                .into_iter()
                .map(|c| (Peer::Client, c)),
        ),
    );
    assert_eq!(split, whole, "split per the schedule {:?}", layout.schedule);
    let bytes = h2::decode(
        limits,
        server.chain(stream.chunks(1).map(|c| (Peer::Client, c))),
    );
    assert_eq!(bytes, whole, "fed byte by byte");
    h2::describe(&whole);
});
