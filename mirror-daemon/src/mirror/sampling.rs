//! Deciding whether a request is copied to a target: a random draw, or a consistent decision
//! derived from the request's trace id so that every hop and node agrees.
//!
//! Consistent sampling hashes the trace id of a W3C `traceparent` header (else the value of
//! `x-request-id`) with 64-bit FNV-1a, a fixed, documented function: two daemons, or two versions
//! of this one, always decide alike: the request is copied when
//! `hash % 1_000_000 < percent * 10_000` (so percentages resolve to 0.0001).

use std::hash::Hasher;

use super::request::RequestView;
use crate::config::Sampling;

/// Whether to copy this request, for a target with `percent` and `sampling`.
pub fn sample(head: &impl RequestView, percent: f64, sampling: Sampling) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    let threshold = (percent * 10_000.0) as u64;
    let draw = match sampling {
        Sampling::Consistent => match sampling_key(head) {
            Some(key) => fnv1a(key) % 1_000_000,
            None => rand::random::<u64>() % 1_000_000,
        },
        Sampling::Random => rand::random::<u64>() % 1_000_000,
    };
    draw < threshold
}

/// The trace id of `traceparent` (`version-traceid-parentid-flags`), else `x-request-id`.
fn sampling_key(head: &impl RequestView) -> Option<&[u8]> {
    if let Some(trace_id) = head
        .header("traceparent")
        .and_then(|value| value.trim_ascii().split(|b| *b == b'-').nth(1))
        .filter(|id| id.len() == 32 && id.iter().all(u8::is_ascii_hexdigit))
    {
        return Some(trace_id);
    }
    head.header("x-request-id")
        .map(<[u8]>::trim_ascii)
        .filter(|id| !id.is_empty())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::RequestHead;
    use crate::http::{Frame, FramingLimits, RequestFramer};

    fn head(headers: &str) -> RequestHead {
        let mut framer = RequestFramer::new(FramingLimits::default());
        let mut frames = Vec::new();
        framer.feed(
            format!("GET / HTTP/1.1\r\nHost: a\r\n{headers}\r\n").as_bytes(),
            &mut frames,
        );
        match frames.into_iter().next() {
            Some(Frame::Head(head)) => head,
            other => panic!("no head: {other:?}"),
        }
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn consistent_sampling_decides_from_the_trace_id_only() {
        let mut mirrored = 0;
        for i in 0..2000u32 {
            let trace = format!("{:032x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15);
            let a = head(&format!("traceparent: 00-{trace}-00f067aa0ba902b7-01\r\n"));
            let b = head(&format!("traceparent: 00-{trace}-b7ad6b7169203331-00\r\n"));
            let first = sample(&a, 50.0, Sampling::Consistent);
            assert_eq!(first, sample(&b, 50.0, Sampling::Consistent), "{trace}");
            assert_eq!(first, sample(&a, 50.0, Sampling::Consistent), "{trace}");
            mirrored += u32::from(first);
        }
        assert!(
            (900..=1100).contains(&mirrored),
            "{mirrored} of 2000 at 50%"
        );
    }

    #[test]
    fn x_request_id_is_the_fallback_key() {
        let decisions: Vec<bool> = (0..50)
            .map(|_| {
                sample(
                    &head("x-request-id: 7f3c9a\r\n"),
                    50.0,
                    Sampling::Consistent,
                )
            })
            .collect();
        assert!(decisions.iter().all(|d| *d == decisions[0]));
    }

    #[test]
    fn random_sampling_hits_the_percentage() {
        let head = head("");
        let mirrored = (0..20_000)
            .filter(|_| sample(&head, 25.0, Sampling::Random))
            .count();
        assert!(
            (4_500..=5_500).contains(&mirrored),
            "{mirrored} of 20000 at 25%"
        );
        assert!((0..1000).all(|_| sample(&head, 100.0, Sampling::Random)));
        assert!((0..1000).all(|_| !sample(&head, 0.0, Sampling::Random)));
    }
}
