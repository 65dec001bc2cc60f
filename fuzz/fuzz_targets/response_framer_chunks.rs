//! The response framer fed arbitrary bytes, split at arbitrary points.
//!
//! Input: see `mirror_fuzz::input` (flags, optional small limits, a split schedule), then the
//! requests announced and the stream (`mirror_fuzz::answers::Setup::take`; flag 0x20: the
//! request stream goes opaque after them, 0x40: the primary closes after the stream).
//! Checks: no panic; the frame API's promises (ranges non-empty, inside the chunk and in order;
//! the frame grammar; nothing after GiveUp; Content-Length bodies exact; End agrees with its
//! head); the frames describe a prefix of the stream and, short of giving up, all of it but an
//! unfinished head; whole, per the schedule and byte by byte give the same normalised frames;
//! the framer's heap is bounded by the head limit and empty at idle points (by its own account
//! of its buffers, and the heap in use while framing, by a counting allocator); and the
//! whole-buffer reference finds the same answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::{
    answers::{self, Setup},
    input,
    memory::{self, Counting},
    response_differential,
};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let layout = input::Layout::parse(data);
    let (setup, stream) = Setup::take(layout.limits, layout.flags, layout.stream);
    let base = memory::reset_peak();
    let (whole, most_heap) = answers::frame(&setup, [stream]);
    // The framer holds at most a head of the limit's size (grown by doubling); the frames and
    // their copies made while framing a stream of at most `-max_len` bytes add little.
    let bound = 2 * setup.limits.max_header_bytes + 64 * 1024;
    assert!(most_heap <= bound, "the framer held {most_heap} bytes");
    let used = memory::peak().saturating_sub(base);
    assert!(used <= bound, "framing held {used} bytes at once");
    answers::check_coverage(&whole, stream, setup.limits);
    let (split, _) = answers::frame(&setup, input::chunks(stream, layout.schedule));
    assert_eq!(split, whole, "split per the schedule {:?}", layout.schedule);
    let (bytes, _) = answers::frame(&setup, stream.chunks(1));
    assert_eq!(bytes, whole, "fed byte by byte");
    response_differential::compare(stream, &setup, &whole);
});
