//! The incremental response framer against an independent whole-buffer parse, on generated
//! answer pipelines.
//!
//! Input: a `mirror_fuzz::response_gen::Case` drawn with `arbitrary` (answers with interim
//! heads, statuses, framing-field and chunk variants, the requests they answer, mutations, a
//! split schedule, limits, an opaque request stream, the primary closing). Checks: the frame
//! API's promises while feeding per the schedule; the answers the framer completes have exactly
//! the reference's boundaries, interim heads, status lines, fields, body kinds, payload and
//! reuse, and both end the stream alike (`mirror_fuzz::response_differential`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_fuzz::{answers, input, response_differential, response_gen::Case};

fuzz_target!(|case: Case| {
    let stream = case.stream();
    let setup = case.setup();
    let (events, _) = answers::frame(&setup, input::chunks(&stream, &case.schedule));
    answers::check_coverage(&events, &stream, setup.limits);
    response_differential::compare(&stream, &setup, &events);
});
