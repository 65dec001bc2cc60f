//! The incremental framer against an independent whole-buffer parse, on generated pipelines;
//! and every request it would mirror, as the copy a shadow receives, is unambiguous.
//!
//! Input: a `mirror_fuzz::gen::Case` drawn with `arbitrary` (requests with framing-field and
//! chunk variants, mutations, a split schedule, limits, and the target's edits as a config).
//! Checks: the frame API's promises while feeding per the schedule; the requests the framer
//! completes have exactly the reference's boundaries, fields and body kinds, and both end the
//! stream alike (`mirror_fuzz::differential`); for each, `build_head` + body is one request
//! with the original's framing, no CL+TE, one CL, TE exactly chunked, no obs-fold, no bare CR or
//! LF, one Host at most, read alike by the strict reference and by httparse
//! (`mirror_fuzz::copy`).
#![no_main]

use std::{cell::RefCell, collections::HashMap, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use mirror_daemon::{
    http::FramingLimits,
    mirror::copy::{build_head, Edits},
};
use mirror_fuzz::{copy, differential, events, gen::Case, input};

/// The edits for `target`, or the default target's when the config refuses it. Parsing a
/// config is the slowest step of a run, so results are kept (nearby inputs share targets).
fn edits(target: &copy::TargetToml) -> Edits {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Option<Edits>>> = RefCell::new(HashMap::new());
    }
    static DEFAULT: OnceLock<Edits> = OnceLock::new();
    let default = || {
        DEFAULT
            .get_or_init(|| {
                copy::TargetToml::default()
                    .edits()
                    .expect("the default target is valid")
            })
            .clone()
    };
    let key = format!("{target:?}");
    CACHE.with_borrow_mut(|cache| {
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache
            .entry(key)
            .or_insert_with(|| target.edits())
            .clone()
            .unwrap_or_else(default)
    })
}

fuzz_target!(|case: Case| {
    let stream = case.stream();
    let limits = case
        .small_limits
        .map_or(FramingLimits::default(), |(bytes, fields)| FramingLimits {
            max_header_bytes: 128 + 4 * usize::from(bytes),
            max_headers: 1 + usize::from(fields % 16),
        });
    let events = events::frame(limits, input::chunks(&stream, &case.schedule));
    events::check_coverage(&events, &stream, limits);
    differential::compare(&stream, &events, limits);

    let edits = edits(&case.target.toml());
    for request in events::completed(&events) {
        let head = &request.head.head;
        copy::check(
            head,
            &build_head(head, &edits),
            &stream[request.body.clone()],
        );
    }
});
