//! The framing state machine fed arbitrary bytes, split at arbitrary points.
//!
//! Input: see `mirror_fuzz::input` (flags, optional small limits, a split schedule, the stream).
//! Checks: no panic; the frame API's promises (body ranges non-empty, inside the chunk and in
//! order; the frame grammar; nothing after the tunnel; Content-Length bodies exact); the frames
//! describe a prefix of the input and, short of a tunnel, all of it but an unfinished head; the
//! stream framed whole, per the schedule and byte by byte gives the same normalised frames; and
//! the whole-buffer reference framer finds the same requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::{differential, events, input};

fuzz_target!(|data: &[u8]| {
    let layout = input::Layout::parse(data);
    let (limits, stream) = (layout.limits, layout.stream);
    let whole = events::frame(limits, [stream]);
    events::check_coverage(&whole, stream, limits);
    let split = events::frame(limits, input::chunks(stream, layout.schedule));
    assert_eq!(split, whole, "split per the schedule {:?}", layout.schedule);
    let bytes = events::frame(limits, stream.chunks(1));
    assert_eq!(bytes, whole, "fed byte by byte");
    differential::compare(stream, &whole, limits);
});
